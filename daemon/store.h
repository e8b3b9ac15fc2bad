/* store: the LMDB session store, with writes grouped into one commit per loop turn. */
#ifndef LLAMACHATD_STORE_H
#define LLAMACHATD_STORE_H

#include <stddef.h>

struct event_base;
struct evbuffer;
struct store;
struct store_write;

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

/* Writes one value and commits it durably before returning. */
enum store_result store_put(struct store *store, const char *key, size_t key_len, const void *value, size_t value_len)
    __attribute__((warn_unused_result));

/* Called once a queued write is durable (STORE_OK) or has failed. */
typedef void (*store_write_cb)(enum store_result result, void *arg);

/* Queues a write (key and value are copied) to be committed together with all
 * others queued in this loop turn, in one transaction, after which cb runs.
 * Returns a handle that stays valid until cb runs, or NULL when out of memory
 * (cb will not run). Needs a store opened with an event base. */
struct store_write *store_put_deferred(struct store *store, const char *key, size_t key_len, const void *value,
    size_t value_len, store_write_cb cb, void *arg) __attribute__((warn_unused_result));

/* The caller of a queued write goes away: the write still commits, but its
 * callback will not run. */
void store_write_forget(struct store_write *write);

/* Number of stored sessions, or -1 on failure. */
long store_count(struct store *store);

#endif
