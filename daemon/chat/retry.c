/* retry: when a failed upstream call may be made again, and after how long. */
#include "chat/retry.h"

#include <stdlib.h>

#include "upstream/upstream.h"

const char *const retry_reason_names[RETRY_REASONS] = { "connect", "reset", "5xx", "429" };

/* Retry-After in seconds (the delta form); -1 when absent or another form. */
static long
retry_after_ms(const char *value)
{
	char *end;
	long seconds;

	if (value == NULL || value[0] < '0' || value[0] > '9')
		return -1;
	seconds = strtol(value, &end, 10);
	return *end == '\0' && seconds < 86400 ? seconds * 1000 : -1;
}

bool
retry_decide(const struct retry_policy *p, bool idempotent, bool keyed, const struct upstream_response *response,
    const char *retry_after, long attempts, long elapsed_ms, double random, long *wait_ms, enum retry_reason *reason)
{
	long after = -1, backoff;

	if (attempts >= p->retries)
		return false;
	if (response->error == UPSTREAM_ERR_CONNECT || response->error == UPSTREAM_ERR_NO_CONNECTION ||
	    (response->error != UPSTREAM_OK && !response->request_sent)) {
		*reason = RETRY_CONNECT; /* nothing reached upstream: safe for any call */
	} else if (!idempotent && !keyed) {
		return false; /* upstream may have acted: a second try could act twice */
	} else if (response->error == UPSTREAM_ERR_OTHER && response->status == 0) {
		*reason = RETRY_RESET;
	} else if (response->error == UPSTREAM_OK && response->status >= 502 && response->status <= 504) {
		*reason = RETRY_5XX;
	} else if (response->error == UPSTREAM_OK && response->status == 429) {
		/* Only a wait upstream names, and a short one. */
		if ((after = retry_after_ms(retry_after)) < 0 || after > p->max_wait_ms)
			return false;
		*reason = RETRY_429;
	} else {
		return false;
	}
	/* Full jitter: anywhere from nothing to base * 2^attempts. */
	backoff = p->base_ms << (attempts < 16 ? attempts : 16);
	*wait_ms = after >= 0 ? after : (long)(random * (double)backoff);
	return elapsed_ms + *wait_ms < p->deadline_ms;
}
