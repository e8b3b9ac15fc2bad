/* store: the LMDB session store, with writes grouped into one commit per loop turn. */
#include "store.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <lmdb.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "log.h"

struct store_write {
	struct store_write *next;
	store_write_cb cb; /* NULL once forgotten */
	void *arg;
	bool remove;
	size_t key_len, value_len, index_key_len;
	unsigned char data[]; /* key, value, index key */
};

struct store {
	MDB_env *env;
	MDB_dbi sessions; /* key -> value */
	MDB_dbi index; /* index key -> key, in the order lists are read */
	MDB_dbi index_of; /* key -> its index key, to move or remove it */
	MDB_txn *reader; /* reset between lookups, renewed for each */
	struct event *commit_event;
	struct store_write *queue_head, **queue_tail;
	char *path;
};

/* mkdir -p with mode 0700 for what it creates. */
static int
store_make_directory(const char *path)
{
	char *copy = strdup(path);
	int rc = 0;

	if (copy == NULL)
		return -1;
	for (char *p = copy + 1; *p != '\0'; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(copy, 0700) != 0 && errno != EEXIST)
			rc = -1;
		*p = '/';
	}
	if (rc == 0 && mkdir(copy, 0700) != 0 && errno != EEXIST)
		rc = -1;
	free(copy);
	return rc;
}

static void store_commit_queued(evutil_socket_t fd, short what, void *arg);

struct store *
store_open(struct event_base *base, const char *path, size_t map_size_mb, char *why, size_t why_size)
{
	struct store *store = calloc(1, sizeof(*store));
	MDB_txn *txn = NULL;
	int dead = 0, rc;

	if (store == NULL || (store->path = strdup(path)) == NULL) {
		snprintf(why, why_size, "%s: out of memory", path);
		goto fail;
	}
	store->queue_tail = &store->queue_head;
	if (store_make_directory(path) != 0) {
		snprintf(why, why_size, "%s: cannot create the store directory: %s", path, strerror(errno));
		goto fail;
	}
	if ((rc = mdb_env_create(&store->env)) != 0 || (rc = mdb_env_set_mapsize(store->env, map_size_mb << 20)) != 0 ||
	    (rc = mdb_env_set_maxdbs(store->env, 8)) != 0 ||
	    (rc = mdb_env_open(store->env, path, MDB_NOTLS, 0600)) != 0) {
		snprintf(why, why_size, "%s: cannot open the LMDB store: %s", path, mdb_strerror(rc));
		goto fail;
	}
	/* Readers left behind by a crashed process would pin old pages forever. */
	mdb_reader_check(store->env, &dead);
	if (dead > 0)
		log_info("store: cleared %d stale reader slot(s)", dead);

	if ((rc = mdb_txn_begin(store->env, NULL, 0, &txn)) != 0 ||
	    (rc = mdb_dbi_open(txn, "sessions", MDB_CREATE, &store->sessions)) != 0 ||
	    (rc = mdb_dbi_open(txn, "index", MDB_CREATE, &store->index)) != 0 ||
	    (rc = mdb_dbi_open(txn, "index_of", MDB_CREATE, &store->index_of)) != 0 ||
	    (rc = mdb_txn_commit(txn)) != 0) {
		if (txn != NULL && rc != 0)
			mdb_txn_abort(txn);
		snprintf(why, why_size, "%s: cannot open the sessions table: %s", path, mdb_strerror(rc));
		goto fail;
	}
	if ((rc = mdb_txn_begin(store->env, NULL, MDB_RDONLY, &store->reader)) != 0) {
		snprintf(why, why_size, "%s: cannot start a reader: %s", path, mdb_strerror(rc));
		goto fail;
	}
	mdb_txn_reset(store->reader);
	if (base != NULL) {
		store->commit_event = event_new(base, -1, 0, store_commit_queued, store);
		if (store->commit_event == NULL) {
			snprintf(why, why_size, "%s: out of memory", path);
			goto fail;
		}
	}
	return store;
fail:
	store_close(store);
	return NULL;
}

enum store_result
store_get(struct store *store, const char *key, size_t key_len, struct evbuffer *out)
{
	MDB_val k = { key_len, (void *)key }, v;
	enum store_result result;
	int rc;

	if ((rc = mdb_txn_renew(store->reader)) != 0) {
		log_warnx("store: cannot start a read: %s", mdb_strerror(rc));
		return STORE_ERR;
	}
	rc = mdb_get(store->reader, store->sessions, &k, &v);
	if (rc == 0)
		result = evbuffer_add(out, v.mv_data, v.mv_size) == 0 ? STORE_OK : STORE_ERR;
	else if (rc == MDB_NOTFOUND)
		result = STORE_NOT_FOUND;
	else {
		log_warnx("store: lookup failed: %s", mdb_strerror(rc));
		result = STORE_ERR;
	}
	mdb_txn_reset(store->reader);
	return result;
}

static enum store_result
store_result_of(int rc)
{
	if (rc == 0)
		return STORE_OK;
	return rc == MDB_MAP_FULL ? STORE_ERR_FULL : STORE_ERR;
}

/* Applies one write inside txn: the value, and the key's place in the index. */
static int
store_apply(struct store *store, MDB_txn *txn, const struct store_write *w)
{
	MDB_val k = { w->key_len, (void *)w->data };
	MDB_val v = { w->value_len, (void *)(w->data + w->key_len) };
	MDB_val ik = { w->index_key_len, (void *)(w->data + w->key_len + w->value_len) };
	MDB_val old;
	int rc;

	rc = mdb_get(txn, store->index_of, &k, &old);
	if (rc == 0) {
		/* old points into the map; copy it before deleting changes pages. */
		unsigned char copy[STORE_MAX_INDEX_KEY];
		MDB_val old_key = { old.mv_size, copy };
		if (old.mv_size > sizeof(copy))
			return MDB_CORRUPTED;
		memcpy(copy, old.mv_data, old.mv_size);
		if ((rc = mdb_del(txn, store->index, &old_key, NULL)) != 0 && rc != MDB_NOTFOUND)
			return rc;
		if ((rc = mdb_del(txn, store->index_of, &k, NULL)) != 0)
			return rc;
	} else if (rc != MDB_NOTFOUND) {
		return rc;
	}
	if (w->remove) {
		rc = mdb_del(txn, store->sessions, &k, NULL);
		return rc == MDB_NOTFOUND ? 0 : rc;
	}
	if ((rc = mdb_put(txn, store->sessions, &k, &v, 0)) != 0)
		return rc;
	if (w->index_key_len == 0)
		return 0;
	if ((rc = mdb_put(txn, store->index, &ik, &k, 0)) != 0)
		return rc;
	return mdb_put(txn, store->index_of, &k, &ik, 0);
}

/* Writes every queued item in one transaction and commits it. */
static enum store_result
store_commit_list(struct store *store, struct store_write *list)
{
	MDB_txn *txn;
	int rc;

	if ((rc = mdb_txn_begin(store->env, NULL, 0, &txn)) != 0)
		goto fail;
	for (struct store_write *w = list; w != NULL; w = w->next) {
		if ((rc = store_apply(store, txn, w)) != 0) {
			mdb_txn_abort(txn);
			goto fail;
		}
	}
	if ((rc = mdb_txn_commit(txn)) != 0)
		goto fail;
	return STORE_OK;
fail:
	if (rc == MDB_MAP_FULL)
		log_warnx("store: %s is full; raise store.map_size_mb", store->path);
	else
		log_warnx("store: %s: write failed: %s", store->path, mdb_strerror(rc));
	return store_result_of(rc);
}

static void
store_commit_queued(evutil_socket_t fd, short what, void *arg)
{
	struct store *store = arg;
	struct store_write *list = store->queue_head, *next;
	enum store_result result;

	(void)fd;
	(void)what;
	store->queue_head = NULL;
	store->queue_tail = &store->queue_head;
	if (list == NULL)
		return;
	result = store_commit_list(store, list);
	for (struct store_write *w = list; w != NULL; w = next) {
		next = w->next;
		if (w->cb != NULL)
			w->cb(result, w->arg);
		free(w);
	}
}

/* A new write holding copies of its parts; the caller frees it. */
static struct store_write *
store_write_new(bool remove, const char *key, size_t key_len, const void *value, size_t value_len,
    const void *index_key, size_t index_key_len, store_write_cb cb, void *arg)
{
	struct store_write *w;

	if (index_key_len > STORE_MAX_INDEX_KEY)
		return NULL;
	if ((w = malloc(sizeof(*w) + key_len + value_len + index_key_len)) == NULL)
		return NULL;
	w->next = NULL;
	w->cb = cb;
	w->arg = arg;
	w->remove = remove;
	w->key_len = key_len;
	w->value_len = value_len;
	w->index_key_len = index_key_len;
	memcpy(w->data, key, key_len);
	if (value_len > 0)
		memcpy(w->data + key_len, value, value_len);
	if (index_key_len > 0)
		memcpy(w->data + key_len + value_len, index_key, index_key_len);
	return w;
}

/* Commits one write on its own, synchronously, and frees it. */
static enum store_result
store_commit_one(struct store *store, struct store_write *w)
{
	enum store_result result;

	if (w == NULL)
		return STORE_ERR;
	result = store_commit_list(store, w);
	free(w);
	return result;
}

enum store_result
store_put(struct store *store, const char *key, size_t key_len, const void *value, size_t value_len,
    const void *index_key, size_t index_key_len)
{
	return store_commit_one(
	    store, store_write_new(false, key, key_len, value, value_len, index_key, index_key_len, NULL, NULL));
}

enum store_result
store_delete(struct store *store, const char *key, size_t key_len)
{
	return store_commit_one(store, store_write_new(true, key, key_len, NULL, 0, NULL, 0, NULL, NULL));
}

/* Queues w (NULL passes through) for the commit at the end of this loop turn. */
static struct store_write *
store_enqueue(struct store *store, struct store_write *w)
{
	if (w == NULL)
		return NULL;
	*store->queue_tail = w;
	store->queue_tail = &w->next;
	/* Activating runs the commit after the callbacks already due in this
	 * turn, so every write that finishes now shares one fsync. Activating
	 * an event that is already active is a no-op. */
	event_active(store->commit_event, 0, 0);
	return w;
}

struct store_write *
store_put_deferred(struct store *store, const char *key, size_t key_len, const void *value, size_t value_len,
    const void *index_key, size_t index_key_len, store_write_cb cb, void *arg)
{
	return store_enqueue(
	    store, store_write_new(false, key, key_len, value, value_len, index_key, index_key_len, cb, arg));
}

struct store_write *
store_delete_deferred(struct store *store, const char *key, size_t key_len, store_write_cb cb, void *arg)
{
	return store_enqueue(store, store_write_new(true, key, key_len, NULL, 0, NULL, 0, cb, arg));
}

enum store_result
store_scan(struct store *store, const void *prefix, size_t prefix_len, const void *after, size_t after_len,
    size_t limit, store_scan_cb cb, void *arg)
{
	MDB_cursor *cursor = NULL;
	MDB_val ik, k, v;
	enum store_result result = STORE_OK;
	size_t seen = 0;
	int rc;

	if ((rc = mdb_txn_renew(store->reader)) != 0) {
		log_warnx("store: cannot start a read: %s", mdb_strerror(rc));
		return STORE_ERR;
	}
	if ((rc = mdb_cursor_open(store->reader, store->index, &cursor)) != 0)
		goto fail;
	ik.mv_data = (void *)(after != NULL ? after : prefix);
	ik.mv_size = after != NULL ? after_len : prefix_len;
	rc = mdb_cursor_get(cursor, &ik, &k, MDB_SET_RANGE);
	/* The position itself was shown already: start after it. */
	if (rc == 0 && after != NULL && ik.mv_size == after_len && memcmp(ik.mv_data, after, after_len) == 0)
		rc = mdb_cursor_get(cursor, &ik, &k, MDB_NEXT);
	while (rc == 0 && seen < limit) {
		if (ik.mv_size < prefix_len || memcmp(ik.mv_data, prefix, prefix_len) != 0)
			break;
		if ((rc = mdb_get(store->reader, store->sessions, &k, &v)) == 0) {
			seen++;
			if (cb(k.mv_data, k.mv_size, v.mv_data, v.mv_size, ik.mv_data, ik.mv_size, arg) != 0)
				break;
		} else if (rc != MDB_NOTFOUND) {
			goto fail;
		}
		rc = mdb_cursor_get(cursor, &ik, &k, MDB_NEXT);
	}
	if (rc != 0 && rc != MDB_NOTFOUND)
		goto fail;
	goto out;
fail:
	log_warnx("store: scan failed: %s", mdb_strerror(rc));
	result = STORE_ERR;
out:
	if (cursor != NULL)
		mdb_cursor_close(cursor);
	mdb_txn_reset(store->reader);
	return result;
}

void
store_write_forget(struct store_write *write)
{
	if (write != NULL)
		write->cb = NULL;
}

long
store_count(struct store *store)
{
	MDB_stat st;
	long count = -1;

	if (mdb_txn_renew(store->reader) != 0)
		return -1;
	if (mdb_stat(store->reader, store->sessions, &st) == 0)
		count = (long)st.ms_entries;
	mdb_txn_reset(store->reader);
	return count;
}

void
store_close(struct store *store)
{
	if (store == NULL)
		return;
	if (store->queue_head != NULL)
		store_commit_queued(-1, 0, store);
	if (store->commit_event != NULL)
		event_free(store->commit_event);
	if (store->reader != NULL)
		mdb_txn_abort(store->reader);
	if (store->env != NULL)
		mdb_env_close(store->env);
	free(store->path);
	free(store);
}
