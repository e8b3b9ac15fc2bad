/* janitor: the store's housekeeping on a timer, in bounded batches: removes
 * what has expired (sessions past store.max_age_days, and whatever other
 * kind of entry registers a sweep) and clears stale LMDB readers. */
#ifndef LLAMACHATD_JANITOR_H
#define LLAMACHATD_JANITOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

struct event_base;
struct janitor;

/* The name of the sweep of sessions past store.max_age_days. */
#define JANITOR_SESSIONS "sessions"

/* Entries examined per batch; a batch runs in one loop turn, one short read,
 * and queues at most this many removals. */
#define JANITOR_BATCH 256

/* Says whether an entry of the index is expired at now_us (Unix
 * microseconds). key is the entry's key, index_key its index key. */
typedef bool (*janitor_expired_cb)(
    const void *key, size_t key_len, const void *index_key, size_t index_key_len, uint64_t now_us, void *arg);

/* Says whether a sweep has anything to look for now (a sweep whose setting
 * is off is skipped whole). */
typedef bool (*janitor_active_cb)(void *arg);

/* Creates the janitor over store (both must outlive it). A sweep over all
 * entries runs every sweep_interval_ms, one batch per loop turn until it
 * reaches the end. Returns NULL when out of memory; free with
 * janitor_free(). */
struct janitor *janitor_create(struct event_base *base, struct store *store, long sweep_interval_ms)
    __attribute__((warn_unused_result));
void janitor_free(struct janitor *janitor);

/* Registers a sweep over the index entries of table's keys whose index key
 * starts with prefix (at most 8 bytes, copied), named name (a static string, for the log and
 * /metrics), that removes the entries expired() says are, in the passes
 * where active() (NULL: always) says it is on; both get arg. Returns 0, or
 * -1 when the janitor has no room for another sweep. */
int janitor_add_sweep(struct janitor *janitor, const char *name, enum store_table table, const void *prefix,
    size_t prefix_len, janitor_active_cb active, janitor_expired_cb expired, void *arg)
    __attribute__((warn_unused_result));

/* Starts the next full pass of every sweep now, instead of at the next
 * interval (after a reload that changes what has expired, say). */
void janitor_sweep_now(struct janitor *janitor);

/* Entries a named sweep has removed since start (committed or queued), and
 * full passes finished, for /metrics. */
unsigned long long janitor_removed(const struct janitor *janitor, const char *name);
unsigned long long janitor_passes(const struct janitor *janitor);

/* Sessions: arg points at max_age_days (a long the caller keeps, 0 for
 * off). Expired when their last_updated_at, as the index orders them, is
 * older than max_age_days before now. */
bool janitor_session_active(void *arg);
bool janitor_session_expired(
    const void *key, size_t key_len, const void *index_key, size_t index_key_len, uint64_t now_us, void *arg);

#endif
