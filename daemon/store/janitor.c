/* janitor: the store's housekeeping on a timer, in bounded batches.
 *
 * A pass walks each sweep's run of index keys from start to end, at most
 * JANITOR_BATCH entries per loop turn, remembering the last index key seen
 * so the next batch starts after it. Expired entries are removed through the
 * store's writer thread like any other write, so the loop never waits on the
 * disk and a batch never holds a read open for long. */
#include "store/janitor.h"

#include <event2/event.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/clock.h"
#include "base/log.h"
#include "store/session.h"
#include "store/store.h"

#define JANITOR_MAX_SWEEPS 4
#define JANITOR_PREFIX_MAX 8
/* Batches of one pass follow each other after this pause, so that a pass
 * over millions of entries leaves the loop to its clients. */
#define JANITOR_BATCH_PAUSE_MS 1

struct janitor_sweep {
	const char *name;
	enum store_table table;
	unsigned char prefix[JANITOR_PREFIX_MAX];
	size_t prefix_len;
	janitor_active_cb active;
	janitor_expired_cb expired;
	void *arg;
	unsigned long long removed;
	/* Where the pass is: after this index key (none at the start). */
	unsigned char after[STORE_MAX_INDEX_KEY];
	size_t after_len;
};

struct janitor {
	struct store *store;
	struct event *timer;
	long sweep_interval_ms;
	struct janitor_sweep sweeps[JANITOR_MAX_SWEEPS];
	size_t sweep_count;
	size_t current; /* the sweep the pass is in */
	unsigned long long passes;
};

/* What one batch saw: the keys to remove, and how far it got. */
struct janitor_batch {
	struct janitor_sweep *sweep;
	uint64_t now_us;
	size_t seen;
	struct {
		unsigned char key[STORE_MAX_INDEX_KEY];
		size_t len;
	} expired[JANITOR_BATCH];
	size_t expired_count;
};

static void
janitor_arm(struct janitor *janitor, long ms)
{
	struct timeval tv = clock_timeval_ms(ms);

	evtimer_add(janitor->timer, &tv);
}

static int
janitor_look_at(const char *key, size_t key_len, const void *value, size_t value_len, const void *index_key,
    size_t index_key_len, void *arg)
{
	struct janitor_batch *batch = arg;
	struct janitor_sweep *sweep = batch->sweep;

	(void)value;
	(void)value_len;
	batch->seen++;
	if (index_key_len <= sizeof(sweep->after)) {
		memcpy(sweep->after, index_key, index_key_len);
		sweep->after_len = index_key_len;
	}
	if (key_len <= sizeof(batch->expired[0].key) &&
	    sweep->expired(key, key_len, index_key, index_key_len, batch->now_us, sweep->arg)) {
		memcpy(batch->expired[batch->expired_count].key, key, key_len);
		batch->expired[batch->expired_count++].len = key_len;
	}
	return 0;
}

/* Queues the removal of what a batch found expired. Returns -1 when the
 * writer's queue is full: the pass then stops and the next one retries. */
static int
janitor_remove(struct janitor *janitor, struct janitor_batch *batch)
{
	for (size_t i = 0; i < batch->expired_count; i++) {
		struct store_change change = {
			.table = batch->sweep->table,
			.key = { batch->expired[i].key, batch->expired[i].len },
			.remove = 1,
		};
		if (store_queue(janitor->store, &change, NULL, NULL) == NULL)
			return -1;
		batch->sweep->removed++;
	}
	return 0;
}

static void
janitor_end_pass(struct janitor *janitor)
{
	for (size_t i = 0; i < janitor->sweep_count; i++)
		janitor->sweeps[i].after_len = 0;
	janitor->current = 0;
	janitor->passes++;
	janitor_arm(janitor, janitor->sweep_interval_ms);
}

/* One batch of the pass, then the timer for the next batch or pass. */
static void
janitor_on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct janitor *janitor = arg;
	struct janitor_batch *batch;
	struct janitor_sweep *sweep;
	int dead;

	(void)fd;
	(void)what;
	if (janitor->current == 0 && janitor->sweeps[0].after_len == 0 &&
	    (dead = store_clear_stale_readers(janitor->store)) > 0)
		log_info("janitor: cleared %d stale reader slot(s) of the store", dead);
	if (janitor->current >= janitor->sweep_count) {
		janitor_end_pass(janitor);
		return;
	}
	if ((batch = malloc(sizeof(*batch))) == NULL) {
		janitor_arm(janitor, janitor->sweep_interval_ms);
		return;
	}
	sweep = &janitor->sweeps[janitor->current];
	if (sweep->active != NULL && !sweep->active(sweep->arg)) {
		free(batch);
		janitor->current++;
		janitor_arm(janitor, 0);
		return;
	}
	batch->sweep = sweep;
	batch->now_us = clock_unix_us();
	batch->seen = 0;
	batch->expired_count = 0;
	if (store_scan_in(janitor->store, sweep->table, sweep->prefix, sweep->prefix_len,
	        sweep->after_len > 0 ? sweep->after : NULL, sweep->after_len, JANITOR_BATCH, janitor_look_at,
	        batch) != STORE_OK ||
	    janitor_remove(janitor, batch) != 0) {
		log_warnx("janitor: the %s sweep stopped (the store could not be read, or its writer is busy); "
		          "the next pass goes on",
		    sweep->name);
		free(batch);
		janitor_end_pass(janitor);
		return;
	}
	if (batch->seen < JANITOR_BATCH) {
		sweep->after_len = 0;
		janitor->current++;
	}
	free(batch);
	if (janitor->current >= janitor->sweep_count)
		janitor_end_pass(janitor);
	else
		janitor_arm(janitor, JANITOR_BATCH_PAUSE_MS);
}

struct janitor *
janitor_create(struct event_base *base, struct store *store, long sweep_interval_ms)
{
	struct janitor *janitor = calloc(1, sizeof(*janitor));

	if (janitor == NULL)
		return NULL;
	janitor->store = store;
	janitor->sweep_interval_ms = sweep_interval_ms;
	if ((janitor->timer = evtimer_new(base, janitor_on_timer, janitor)) == NULL) {
		free(janitor);
		return NULL;
	}
	/* The first pass right after start. */
	janitor_arm(janitor, 0);
	return janitor;
}

void
janitor_free(struct janitor *janitor)
{
	if (janitor == NULL)
		return;
	event_free(janitor->timer);
	free(janitor);
}

int
janitor_add_sweep(struct janitor *janitor, const char *name, enum store_table table, const void *prefix,
    size_t prefix_len, janitor_active_cb active, janitor_expired_cb expired, void *arg)
{
	struct janitor_sweep *sweep;

	if (janitor->sweep_count == JANITOR_MAX_SWEEPS || prefix_len > JANITOR_PREFIX_MAX)
		return -1;
	sweep = &janitor->sweeps[janitor->sweep_count++];
	memset(sweep, 0, sizeof(*sweep));
	sweep->name = name;
	sweep->table = table;
	memcpy(sweep->prefix, prefix, prefix_len);
	sweep->prefix_len = prefix_len;
	sweep->active = active;
	sweep->expired = expired;
	sweep->arg = arg;
	return 0;
}

void
janitor_sweep_now(struct janitor *janitor)
{
	for (size_t i = 0; i < janitor->sweep_count; i++)
		janitor->sweeps[i].after_len = 0;
	janitor->current = 0;
	janitor_arm(janitor, 0);
}

unsigned long long
janitor_removed(const struct janitor *janitor, const char *name)
{
	for (size_t i = 0; i < janitor->sweep_count; i++)
		if (strcmp(janitor->sweeps[i].name, name) == 0)
			return janitor->sweeps[i].removed;
	return 0;
}

unsigned long long
janitor_passes(const struct janitor *janitor)
{
	return janitor->passes;
}

bool
janitor_session_active(void *arg)
{
	const long *max_age_days = arg;

	return *max_age_days > 0;
}

bool
janitor_session_expired(
    const void *key, size_t key_len, const void *index_key, size_t index_key_len, uint64_t now_us, void *arg)
{
	const long *max_age_days = arg;
	uint64_t updated_us, max_age_us;

	(void)key;
	if (*max_age_days <= 0)
		return false;
	max_age_us = (uint64_t)*max_age_days * 86400u * 1000000u;
	updated_us = session_index_key_updated_us(index_key, index_key_len, key_len);
	/* A session whose time the index does not know is left alone. */
	return updated_us != 0 && now_us > max_age_us && updated_us < now_us - max_age_us;
}
