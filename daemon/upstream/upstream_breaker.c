/* upstream_breaker: a circuit breaker in front of upstream. After
 * breaker_failures consecutive failed calls (unreachable, broken off, or a
 * 5xx) it opens: calls are refused at once instead of each waiting out the
 * connect timeout, while the store keeps answering. After breaker_open_ms
 * one call goes through as a probe; its success closes the breaker, its
 * failure opens it again for twice as long, up to a minute. One log line
 * per change of state. */
#include "upstream/upstream.h"

#include <math.h>

#include "base/clock.h"
#include "base/log.h"
#include "upstream/upstream_private.h"

#define UPSTREAM_BREAKER_MAX_WAIT_MS 60000L

static const char *const upstream_breaker_names[] = { "closed", "open", "half-open" };

static void
upstream_breaker_enter(struct upstream *upstream, enum upstream_breaker_state state)
{
	struct upstream_breaker *b = &upstream->breaker;

	if (b->state == state)
		return;
	b->state = state;
	b->since_wall = clock_unix_s();
	b->probe_reserved = false;
	b->probe_started = 0;
	if (state == UPSTREAM_BREAKER_OPEN) {
		b->open_until = clock_monotonic_s() + (double)b->wait_ms / 1000.0;
		log_warnx("upstream: circuit breaker open after %ld failed calls in a row: calls that need upstream "
		          "get 503 for %ld ms, then one probe",
		    b->failures, b->wait_ms);
	} else {
		log_info("upstream: circuit breaker %s", upstream_breaker_names[state]);
	}
}

bool
upstream_breaker_admits(struct upstream *upstream, long *retry_after_s, double *since_wall)
{
	struct upstream_breaker *b = &upstream->breaker;
	double now = clock_monotonic_s();

	*since_wall = b->since_wall;
	switch (b->state) {
	case UPSTREAM_BREAKER_CLOSED:
		return true;
	case UPSTREAM_BREAKER_OPEN:
		if (now < b->open_until) {
			*retry_after_s = (long)ceil(b->open_until - now);
			return false;
		}
		upstream_breaker_enter(upstream, UPSTREAM_BREAKER_HALF_OPEN);
		__attribute__((fallthrough)); /* the first call now is the probe */
	case UPSTREAM_BREAKER_HALF_OPEN:
	default:
		/* One probe at a time; one that never came back (its call was not
		 * made after all, or hangs) frees the slot after the timeout. */
		if (b->probe_started > 0 &&
		    now - b->probe_started < (double)upstream->settings.request_timeout_ms / 1000.0) {
			*retry_after_s = 1;
			return false;
		}
		b->probe_reserved = true;
		b->probe_started = now;
		return true;
	}
}

bool
upstream_breaker_take_probe(struct upstream *upstream)
{
	struct upstream_breaker *b = &upstream->breaker;

	if (b->state != UPSTREAM_BREAKER_HALF_OPEN || !b->probe_reserved)
		return false;
	b->probe_reserved = false;
	return true;
}

void
upstream_breaker_outcome(struct upstream *upstream, bool probe, bool failed)
{
	struct upstream_breaker *b = &upstream->breaker;

	if (upstream->settings.breaker_failures <= 0)
		return;
	if (!failed) {
		b->failures = 0;
		b->wait_ms = upstream->settings.breaker_open_ms;
		upstream_breaker_enter(upstream, UPSTREAM_BREAKER_CLOSED);
		return;
	}
	b->failures++;
	if (probe && b->state == UPSTREAM_BREAKER_HALF_OPEN) {
		b->wait_ms =
		    b->wait_ms * 2 > UPSTREAM_BREAKER_MAX_WAIT_MS ? UPSTREAM_BREAKER_MAX_WAIT_MS : b->wait_ms * 2;
		b->state = UPSTREAM_BREAKER_CLOSED; /* so that entering open logs and stamps */
		upstream_breaker_enter(upstream, UPSTREAM_BREAKER_OPEN);
	} else if (b->state == UPSTREAM_BREAKER_CLOSED && b->failures >= upstream->settings.breaker_failures) {
		if (b->wait_ms <= 0)
			b->wait_ms = upstream->settings.breaker_open_ms;
		upstream_breaker_enter(upstream, UPSTREAM_BREAKER_OPEN);
	}
}

enum upstream_breaker_state
upstream_breaker_state(const struct upstream *upstream, double *since_wall)
{
	*since_wall = upstream->breaker.since_wall;
	return upstream->breaker.state;
}
