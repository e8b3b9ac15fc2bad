/* retry: when a failed upstream call may be made again, and after how long.
 * Only where repeating is safe: calls that change nothing (GET) or change
 * the same thing again (DELETE), and creates that carry an Idempotency-Key
 * or that never reached upstream. Never a stream's turn. */
#ifndef LLAMACHATD_RETRY_H
#define LLAMACHATD_RETRY_H

#include <stdbool.h>

struct upstream_response;

struct retry_policy {
	long retries; /* upstream.retries: at most this many more attempts */
	long base_ms; /* upstream.retry_base_ms: the backoff's first step */
	long max_wait_ms; /* upstream.retry_max_wait_ms: the longest Retry-After honoured */
	long deadline_ms; /* upstream.request_timeout_ms: the whole call's bound */
};

enum retry_reason { RETRY_CONNECT, RETRY_RESET, RETRY_5XX, RETRY_429, RETRY_REASONS };

extern const char *const retry_reason_names[RETRY_REASONS];

/* Whether a call that just failed with response may go again. idempotent:
 * a GET or DELETE (any failure may be retried); otherwise only a failure
 * where nothing reached upstream, unless keyed (a create with an
 * Idempotency-Key, which upstream dedupes on). attempts: the retries made
 * so far; elapsed_ms since the first. retry_after: the answer's
 * Retry-After header or NULL. On true, *wait_ms is how long to wait
 * (Retry-After, else exponential backoff with full jitter; random is a
 * number in [0, 1)) and *reason why. */
bool retry_decide(const struct retry_policy *policy, bool idempotent, bool keyed,
    const struct upstream_response *response, const char *retry_after, long attempts, long elapsed_ms, double random,
    long *wait_ms, enum retry_reason *reason);

#endif
