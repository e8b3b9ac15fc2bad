/* upstream_breaker: a circuit breaker for each key calls go with (the
 * default one and each project's, since a project's key can fail alone).
 * After breaker_failures consecutive failed calls (unreachable, broken off,
 * or a 5xx) it opens: calls with that key are refused at once instead of
 * each waiting out the connect timeout, while the store keeps answering.
 * After breaker_open_ms one call goes through as a probe; its success
 * closes the breaker, its failure opens it again for twice as long, up to
 * a minute. One log line per change of state. */
#include "upstream/upstream.h"

#include <math.h>

#include "base/clock.h"
#include "base/log.h"
#include "upstream/upstream_private.h"

#define UPSTREAM_BREAKER_MAX_WAIT_MS 60000L

static const char *const upstream_breaker_names[] = { "closed", "open", "half-open" };

static void
upstream_breaker_enter(const struct upstream_key *key, struct upstream_breaker *b, enum upstream_breaker_state state)
{
	const char *project = key->project[0] != '\0' ? key->project : "default";

	if (b->state == state)
		return;
	b->state = state;
	b->since_wall = clock_unix_s();
	b->probe_reserved = false;
	b->probe_started = 0;
	if (state == UPSTREAM_BREAKER_OPEN) {
		b->open_until = clock_monotonic_s() + (double)b->wait_ms / 1000.0;
		log_warnx("upstream: circuit breaker open for the key of project %s after %ld failed calls in a row: "
		          "its calls get 503 for %ld ms, then one probe",
		    project, b->failures, b->wait_ms);
	} else {
		log_info(
		    "upstream: circuit breaker %s for the key of project %s", upstream_breaker_names[state], project);
	}
}

bool
upstream_breaker_admits(struct upstream *upstream, const char *project, long *retry_after_s, double *since_wall)
{
	struct upstream_key *key = upstream_key_slot_for(upstream, project);
	struct upstream_breaker *b;
	double now = clock_monotonic_s();

	*since_wall = 0;
	if (key == NULL)
		return true; /* no key: the caller answers that */
	b = &key->breaker;
	*since_wall = b->since_wall;
	switch (b->state) {
	case UPSTREAM_BREAKER_CLOSED:
		return true;
	case UPSTREAM_BREAKER_OPEN:
		if (now < b->open_until) {
			*retry_after_s = (long)ceil(b->open_until - now);
			return false;
		}
		upstream_breaker_enter(key, b, UPSTREAM_BREAKER_HALF_OPEN);
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
upstream_breaker_take_probe(struct upstream *upstream, const char *owner)
{
	struct upstream_key *key = upstream_find_key(upstream, owner);

	if (key == NULL || key->breaker.state != UPSTREAM_BREAKER_HALF_OPEN || !key->breaker.probe_reserved)
		return false;
	key->breaker.probe_reserved = false;
	return true;
}

void
upstream_breaker_outcome(struct upstream *upstream, const char *owner, bool probe, bool failed)
{
	struct upstream_key *key = upstream_find_key(upstream, owner);
	struct upstream_breaker *b;

	if (upstream->settings.breaker_failures <= 0 || key == NULL)
		return; /* off, or the key went away with a reload */
	b = &key->breaker;
	if (!failed) {
		b->failures = 0;
		b->wait_ms = upstream->settings.breaker_open_ms;
		upstream_breaker_enter(key, b, UPSTREAM_BREAKER_CLOSED);
		return;
	}
	b->failures++;
	if (probe && b->state == UPSTREAM_BREAKER_HALF_OPEN) {
		b->wait_ms =
		    b->wait_ms * 2 > UPSTREAM_BREAKER_MAX_WAIT_MS ? UPSTREAM_BREAKER_MAX_WAIT_MS : b->wait_ms * 2;
		b->state = UPSTREAM_BREAKER_CLOSED; /* so that entering open logs and stamps */
		upstream_breaker_enter(key, b, UPSTREAM_BREAKER_OPEN);
	} else if (b->state == UPSTREAM_BREAKER_CLOSED && b->failures >= upstream->settings.breaker_failures) {
		if (b->wait_ms <= 0)
			b->wait_ms = upstream->settings.breaker_open_ms;
		upstream_breaker_enter(key, b, UPSTREAM_BREAKER_OPEN);
	}
}

enum upstream_breaker_state
upstream_breaker_state(const struct upstream *upstream, double *since_wall)
{
	/* The worst one: open, then half-open, then closed. */
	static const int rank[] = {
		[UPSTREAM_BREAKER_CLOSED] = 0, [UPSTREAM_BREAKER_HALF_OPEN] = 1, [UPSTREAM_BREAKER_OPEN] = 2
	};
	enum upstream_breaker_state worst = UPSTREAM_BREAKER_CLOSED;

	*since_wall = 0;
	for (size_t i = 0; i < upstream->key_count; i++) {
		const struct upstream_breaker *b = &upstream->keys[i].breaker;
		if (rank[b->state] > rank[worst] || (b->state == worst && worst != UPSTREAM_BREAKER_CLOSED)) {
			worst = b->state;
			*since_wall = b->since_wall;
		}
	}
	return worst;
}
