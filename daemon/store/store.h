/* store: the LMDB session store; reads on the loop, writes committed in groups by one writer thread. */
/* Layer store (daemon/store/): LMDB. Owns the environment, the writer
 * thread, the tables and their indexes, the ledger, the janitor, and the
 * session record and its JSON (session.h). May include base/ only. */
#ifndef LLAMACHATD_STORE_H
#define LLAMACHATD_STORE_H

#include <stddef.h>

struct event_base;
struct evbuffer;
struct histogram;
struct store;
struct store_write;

#define STORE_MAX_INDEX_KEY 511 /* LMDB's default key size limit */
#define STORE_MAX_INDEX_KEYS 2 /* ordered index entries one key may have */
#define STORE_LEDGER_FIELDS 6 /* counters of one ledger entry */

struct store_bytes {
	const void *data;
	size_t len;
};

/* Counters to add to one ledger entry, in the same transaction as the
 * change that carries them. */
struct store_ledger_delta {
	struct store_bytes key;
	unsigned long long add[STORE_LEDGER_FIELDS];
};

/* The tables keys and values live in. Their key spaces must not overlap:
 * the index and what it knows of each key are shared. */
enum store_table {
	STORE_SESSIONS = 0, /* sessions, by id */
	STORE_KEYS, /* idempotency keys, by client and key */
	STORE_OUTBOX, /* publications owed to the other daemons, by session */
	STORE_META, /* the daemon's own markers (the health probe, a read position) */
};

/* Keys of STORE_OUTBOX and STORE_META start with a control byte, which no
 * session id and no client name has: the key spaces cannot meet. */
#define STORE_OUTBOX_KEY_TAG '\x02'
#define STORE_META_KEY_TAG '\x03'
#define STORE_MAX_ALSO 2 /* changes one write may carry along */

/* One change to a key: write value (or remove the key), give it the index
 * entries index_keys (replacing all it had), and add to a ledger entry and
 * to a daily total. also (may be NULL) is a second change, without a ledger
 * or a daily total, committed in the same transaction; it may have an also
 * of its own, up to STORE_MAX_ALSO changes carried along in all. With
 * remove and remove_only_if_value, the key is removed only while its value
 * is still value (a publication acknowledged, unless a newer one replaced
 * it meanwhile). */
struct store_change {
	enum store_table table;
	struct store_bytes key;
	struct store_bytes value;
	int remove; /* non-zero: remove the key, its value and its index entries */
	int remove_only_if_value; /* with remove: only while the stored value equals value */
	struct store_bytes index_keys[STORE_MAX_INDEX_KEYS]; /* each at most STORE_MAX_INDEX_KEY */
	size_t index_count;
	const struct store_ledger_delta *ledger; /* NULL for none */
	const struct store_ledger_delta *daily; /* the day's totals; NULL for none */
	const struct store_change *also;
};

enum store_result {
	STORE_OK = 0,
	STORE_NOT_FOUND = 1,
	STORE_ERR = -1, /* I/O or LMDB failure; logged where it happened */
	STORE_ERR_FULL = -2, /* the map is full: raise store.map_size_mb */
};

/* Opens (creating it if needed) the store in directory path with a map of
 * map_size_mb MiB. With an event base (the daemon) it also takes the
 * store's lock, so that a second daemon on the same store fails at start,
 * and starts the writer thread, which takes at most max_queued_writes
 * writes waiting at once (store_queue); base may be NULL for tools, which
 * never take the lock and write only with store_apply(). Returns a store
 * the caller frees with store_close(), or NULL with a reason in why. */
struct store *store_open(struct event_base *base, const char *path, size_t map_size_mb, size_t max_queued_writes,
    char *why, size_t why_size) __attribute__((warn_unused_result));

/* Transactions the writer thread has committed (or tried to), and writes
 * refused because the queue was full. */
unsigned long long store_commits(const struct store *store);
/* How long each of those commits took (writes and fsync), as the loop
 * learned of them. */
const struct histogram *store_commit_durations(const struct store *store);
unsigned long long store_queue_refusals(const struct store *store);

/* Commits what is still queued, then closes the environment. NULL is fine. */
void store_close(struct store *store);

/* Copies the value stored under key into out. Returns STORE_OK,
 * STORE_NOT_FOUND or STORE_ERR. Never blocks on writers. */
enum store_result store_get(struct store *store, const char *key, size_t key_len, struct evbuffer *out)
    __attribute__((warn_unused_result));

/* store_get() from another table. */
enum store_result store_get_in(struct store *store, enum store_table table, const void *key, size_t key_len,
    struct evbuffer *out) __attribute__((warn_unused_result));

/* Points *data at the value stored under key, in the map itself: no copy.
 * The pointer holds until store_peek_done(), which must follow before the
 * loop turn ends (it closes the read). Returns STORE_OK, STORE_NOT_FOUND or
 * STORE_ERR; call store_peek_done() whatever it returned. */
enum store_result store_peek(struct store *store, const char *key, size_t key_len, const void **data, size_t *len)
    __attribute__((warn_unused_result));
void store_peek_done(struct store *store);

/* Applies one change and commits it durably before returning. */
enum store_result store_apply(struct store *store, const struct store_change *change)
    __attribute__((warn_unused_result));

/* Shorthands of store_apply(): write a value with at most one index key
 * (NULL for none), or remove a key (a missing key is STORE_OK). */
enum store_result store_put(struct store *store, const char *key, size_t key_len, const void *value, size_t value_len,
    const void *index_key, size_t index_key_len) __attribute__((warn_unused_result));
enum store_result store_delete(struct store *store, const char *key, size_t key_len)
    __attribute__((warn_unused_result));

/* Called once a queued change is durable (STORE_OK) or has failed. */
typedef void (*store_write_cb)(enum store_result result, void *arg);

/* Queues a change (everything is copied) to be committed together with all
 * others queued in this loop turn, in one transaction, after which cb (may
 * be NULL) runs. Returns a handle that stays valid until cb runs, or NULL
 * when out of memory or too large (cb will not run). Needs a store opened
 * with an event base. */
struct store_write *store_queue(struct store *store, const struct store_change *change, store_write_cb cb, void *arg)
    __attribute__((warn_unused_result));

/* The caller of a queued write goes away: the write still commits, but its
 * callback will not run. NULL is fine. */
void store_write_forget(struct store_write *write);

/* Called by store_scan() for each entry, in index order; the pointers are
 * valid during the call only. Return 0 to go on, anything else to stop. */
typedef int (*store_scan_cb)(const char *key, size_t key_len, const void *value, size_t value_len,
    const void *index_key, size_t index_key_len, void *arg);

/* Walks at most limit index entries whose index key starts with prefix, in
 * ascending order, starting right after the index key after (or at the start
 * of the prefix when after is NULL). One short read transaction that never
 * waits for writers. Returns STORE_OK or STORE_ERR. */
enum store_result store_scan(struct store *store, const void *prefix, size_t prefix_len, const void *after,
    size_t after_len, size_t limit, store_scan_cb cb, void *arg) __attribute__((warn_unused_result));

/* store_scan() over the index entries of another table's keys. */
enum store_result store_scan_in(struct store *store, enum store_table table, const void *prefix, size_t prefix_len,
    const void *after, size_t after_len, size_t limit, store_scan_cb cb, void *arg) __attribute__((warn_unused_result));

/* Reads a ledger entry's counters into out (all zero when it has none).
 * Returns STORE_OK or STORE_ERR. */
enum store_result store_ledger_get(struct store *store, const void *key, size_t key_len,
    unsigned long long out[STORE_LEDGER_FIELDS]) __attribute__((warn_unused_result));

/* The same for a daily total (store_change.daily); all zero as well for a
 * store written before daily totals existed. */
enum store_result store_daily_get(struct store *store, const void *key, size_t key_len,
    unsigned long long out[STORE_LEDGER_FIELDS]) __attribute__((warn_unused_result));

/* Calls cb with each ledger entry (key bytes, counters), at most limit of
 * them, in key order; cb returns non-zero to stop. */
typedef int (*store_ledger_cb)(const void *key, size_t key_len, const unsigned long long *counters, void *arg);
enum store_result store_ledger_scan(struct store *store, size_t limit, store_ledger_cb cb, void *arg)
    __attribute__((warn_unused_result));

/* Sessions stored, bytes of the map in use, and the map's size. */
enum store_result store_stats(struct store *store, unsigned long long *entries, unsigned long long *used_bytes,
    unsigned long long *map_bytes) __attribute__((warn_unused_result));

/* Whether the store takes writes: the result of the daemon's last commit
 * when that failed, else of a small marker committed at most once per second
 * (a newer result is reused). STORE_OK, or why not. */
enum store_result store_probe(struct store *store) __attribute__((warn_unused_result));

/* Opens a store for reading only, as tools do while the daemon runs: no
 * lock, no writer. Free with store_close(). */
struct store *store_open_readonly(const char *path, char *why, size_t why_size) __attribute__((warn_unused_result));

/* Frees the reader slots of processes that died while reading (a tool
 * killed mid-read, say), which would otherwise pin old pages and make the
 * file grow. Returns how many it freed. */
int store_clear_stale_readers(struct store *store);

/* Number of stored sessions, or -1 on failure. */
long store_count(struct store *store);

/* Number of keys in table, or -1 on failure. */
long store_count_in(struct store *store, enum store_table table);

#endif
