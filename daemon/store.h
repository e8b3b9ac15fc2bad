/* store: the LMDB session store, with writes grouped into one commit per loop turn. */
#ifndef LLAMACHATD_STORE_H
#define LLAMACHATD_STORE_H

#include <stddef.h>

struct event_base;
struct evbuffer;
struct store;
struct store_write;

#define STORE_MAX_INDEX_KEY 511 /* LMDB's default key size limit */

enum store_result {
	STORE_OK = 0,
	STORE_NOT_FOUND = 1,
	STORE_ERR = -1, /* I/O or LMDB failure; logged where it happened */
	STORE_ERR_FULL = -2, /* the map is full: raise store.map_size_mb */
};

/* Opens (creating it if needed) the store in directory path with a map of
 * map_size_mb MiB. base may be NULL for tools that only use the synchronous
 * calls. Returns a store the caller frees with store_close(), or NULL with a
 * reason in why. */
struct store *store_open(struct event_base *base, const char *path, size_t map_size_mb, char *why, size_t why_size)
    __attribute__((warn_unused_result));

/* Commits what is still queued, then closes the environment. NULL is fine. */
void store_close(struct store *store);

/* Copies the value stored under key into out. Returns STORE_OK,
 * STORE_NOT_FOUND or STORE_ERR. Never blocks on writers. */
enum store_result store_get(struct store *store, const char *key, size_t key_len, struct evbuffer *out)
    __attribute__((warn_unused_result));

/* Writes one value and commits it durably before returning. index_key
 * (index_key_len bytes, at most STORE_MAX_INDEX_KEY; 0 for none) places the
 * key in the ordered index that store_scan() walks, replacing its old place. */
enum store_result store_put(struct store *store, const char *key, size_t key_len, const void *value, size_t value_len,
    const void *index_key, size_t index_key_len) __attribute__((warn_unused_result));

/* Removes a key, its value and its place in the index, and commits durably.
 * Removing a missing key is STORE_OK. */
enum store_result store_delete(struct store *store, const char *key, size_t key_len)
    __attribute__((warn_unused_result));

/* Called once a queued write is durable (STORE_OK) or has failed. */
typedef void (*store_write_cb)(enum store_result result, void *arg);

/* Queues a write like store_put() (everything is copied) to be committed
 * together with all others queued in this loop turn, in one transaction,
 * after which cb (may be NULL) runs. Returns a handle that stays valid until
 * cb runs, or NULL when out of memory (cb will not run). Needs a store opened
 * with an event base. */
struct store_write *store_put_deferred(struct store *store, const char *key, size_t key_len, const void *value,
    size_t value_len, const void *index_key, size_t index_key_len, store_write_cb cb, void *arg)
    __attribute__((warn_unused_result));

/* Queues a removal like store_delete(), committed as store_put_deferred(). */
struct store_write *store_delete_deferred(struct store *store, const char *key, size_t key_len, store_write_cb cb,
    void *arg) __attribute__((warn_unused_result));

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

/* Number of stored sessions, or -1 on failure. */
long store_count(struct store *store);

#endif
