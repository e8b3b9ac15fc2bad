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
	size_t key_len, value_len;
	unsigned char data[]; /* key, then value */
};

struct store {
	MDB_env *env;
	MDB_dbi sessions;
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

/* Writes every queued item in one transaction and commits it. */
static enum store_result
store_commit_list(struct store *store, struct store_write *list)
{
	MDB_txn *txn;
	int rc;

	if ((rc = mdb_txn_begin(store->env, NULL, 0, &txn)) != 0)
		goto fail;
	for (struct store_write *w = list; w != NULL; w = w->next) {
		MDB_val k = { w->key_len, w->data };
		MDB_val v = { w->value_len, w->data + w->key_len };
		if ((rc = mdb_put(txn, store->sessions, &k, &v, 0)) != 0) {
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

/* A new write holding copies of key and value; the caller frees it. */
static struct store_write *
store_write_new(const char *key, size_t key_len, const void *value, size_t value_len, store_write_cb cb, void *arg)
{
	struct store_write *w = malloc(sizeof(*w) + key_len + value_len);

	if (w == NULL)
		return NULL;
	w->next = NULL;
	w->cb = cb;
	w->arg = arg;
	w->key_len = key_len;
	w->value_len = value_len;
	memcpy(w->data, key, key_len);
	memcpy(w->data + key_len, value, value_len);
	return w;
}

enum store_result
store_put(struct store *store, const char *key, size_t key_len, const void *value, size_t value_len)
{
	struct store_write *w = store_write_new(key, key_len, value, value_len, NULL, NULL);
	enum store_result result;

	if (w == NULL)
		return STORE_ERR;
	result = store_commit_list(store, w);
	free(w);
	return result;
}

struct store_write *
store_put_deferred(struct store *store, const char *key, size_t key_len, const void *value, size_t value_len,
    store_write_cb cb, void *arg)
{
	struct store_write *w = store_write_new(key, key_len, value, value_len, cb, arg);

	if (w == NULL)
		return NULL;
	*store->queue_tail = w;
	store->queue_tail = &w->next;
	/* Activating runs the commit after the callbacks already due in this
	 * turn, so every create that finishes now shares one fsync. Activating
	 * an event that is already active is a no-op. */
	event_active(store->commit_event, 0, 0);
	return w;
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
