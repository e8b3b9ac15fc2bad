/* store_write: writes. The loop queues a copy of each change; the writer
 * thread commits every queued change in one transaction (a group commit),
 * and one that fails is retried alone so that it fails alone; the loop then
 * runs each write's callback, once its change is on disk. */
#include "store/store.h"

#include <errno.h>
#include <event2/buffer.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/eventfd.h>
#include <event2/event.h>
#include <lmdb.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/counters.h"
#include "base/log.h"
#include "store/store_private.h"

enum store_result
store_result_of(int rc)
{
	if (rc == 0)
		return STORE_OK;
	return rc == MDB_MAP_FULL ? STORE_ERR_FULL : STORE_ERR;
}

/* Removes the index entries key has now. */
static int
store_unindex(struct store *store, MDB_txn *txn, MDB_val *k)
{
	/* The list points into the map; copy it before deleting changes pages. */
	unsigned char copy[STORE_MAX_INDEX_KEYS * (2 + STORE_MAX_INDEX_KEY)];
	MDB_val old;
	size_t at = 0;
	int rc = mdb_get(txn, store->index_of, k, &old);

	if (rc == MDB_NOTFOUND)
		return 0;
	if (rc != 0)
		return rc;
	if (old.mv_size > sizeof(copy))
		return MDB_CORRUPTED;
	memcpy(copy, old.mv_data, old.mv_size);
	while (at + 2 <= old.mv_size) {
		MDB_val entry = { (size_t)copy[at] | (size_t)copy[at + 1] << 8, copy + at + 2 };
		if (at + 2 + entry.mv_size > old.mv_size)
			return MDB_CORRUPTED;
		if ((rc = mdb_del(txn, store->index, &entry, NULL)) != 0 && rc != MDB_NOTFOUND)
			return rc;
		at += 2 + entry.mv_size;
	}
	return mdb_del(txn, store->index_of, k, NULL);
}

/* Adds delta to the counters stored in table dbi (the ledger, the daily totals). */
static int
store_add_counters(MDB_txn *txn, MDB_dbi dbi, const struct store_ledger_delta *delta)
{
	MDB_val k = { delta->key.len, (void *)delta->key.data }, v;
	unsigned char counters[STORE_LEDGER_FIELDS * 8];
	int rc = mdb_get(txn, dbi, &k, &v);

	memset(counters, 0, sizeof(counters));
	if (rc == 0 && v.mv_size == sizeof(counters))
		memcpy(counters, v.mv_data, sizeof(counters));
	else if (rc != 0 && rc != MDB_NOTFOUND)
		return rc;
	for (int f = 0; f < STORE_LEDGER_FIELDS; f++) {
		unsigned long long value = 0;
		for (int b = 0; b < 8; b++)
			value |= (unsigned long long)counters[f * 8 + b] << (8 * b);
		value += delta->add[f];
		for (int b = 0; b < 8; b++)
			counters[f * 8 + b] = (unsigned char)(value >> (8 * b));
	}
	v.mv_size = sizeof(counters);
	v.mv_data = counters;
	return mdb_put(txn, dbi, &k, &v, 0);
}

/* Applies one change inside txn: the value, its index entries, the ledger. */
static int
store_apply_in(struct store *store, MDB_txn *txn, const struct store_change *c)
{
	MDB_val k = { c->key.len, (void *)c->key.data };
	MDB_val v = { c->value.len, (void *)c->value.data };
	unsigned char list[STORE_MAX_INDEX_KEYS * (2 + STORE_MAX_INDEX_KEY)];
	size_t list_len = 0;
	MDB_dbi dbi;
	int rc;

	store_table_dbi(store, c->table, &dbi);
	if (c->remove && c->remove_only_if_value) {
		MDB_val now;
		rc = mdb_get(txn, dbi, &k, &now);
		if (rc == MDB_NOTFOUND)
			return 0;
		if (rc != 0)
			return rc;
		if (now.mv_size != v.mv_size || memcmp(now.mv_data, v.mv_data, v.mv_size) != 0)
			return 0; /* replaced meanwhile: it stays */
	}
	if ((rc = store_unindex(store, txn, &k)) != 0)
		return rc;
	if (c->ledger != NULL && (rc = store_add_counters(txn, store->ledger, c->ledger)) != 0)
		return rc;
	if (c->daily != NULL && (rc = store_add_counters(txn, store->daily, c->daily)) != 0)
		return rc;
	if (c->remove) {
		rc = mdb_del(txn, dbi, &k, NULL);
		return rc == MDB_NOTFOUND ? 0 : rc;
	}
	if ((rc = mdb_put(txn, dbi, &k, &v, 0)) != 0)
		return rc;
	for (size_t i = 0; i < c->index_count; i++) {
		MDB_val ik = { c->index_keys[i].len, (void *)c->index_keys[i].data };
		if ((rc = mdb_put(txn, store->index, &ik, &k, 0)) != 0)
			return rc;
		list[list_len++] = (unsigned char)(ik.mv_size & 0xff);
		list[list_len++] = (unsigned char)(ik.mv_size >> 8);
		memcpy(list + list_len, ik.mv_data, ik.mv_size);
		list_len += ik.mv_size;
	}
	if (list_len == 0)
		return 0;
	v.mv_size = list_len;
	v.mv_data = list;
	return mdb_put(txn, store->index_of, &k, &v, 0);
}

/* Applies one queued item (and what goes with it) in txn. */
static int
store_apply_write(struct store *store, MDB_txn *txn, struct store_write *w)
{
	MDB_val mk = { w->change.key.len, (void *)w->change.key.data };
	MDB_val mv = { w->change.value.len, (void *)w->change.value.data };
	int rc = w->is_probe ? mdb_put(txn, store->meta, &mk, &mv, 0) : store_apply_in(store, txn, &w->change);

	for (const struct store_change *also = w->change.also; rc == 0 && also != NULL; also = also->also)
		rc = store_apply_in(store, txn, also);
	return rc;
}

static void
store_log_failure(const struct store *store, int rc)
{
	if (rc == MDB_MAP_FULL)
		log_warnx("store: %s is full; raise store.map_size_mb", store->path);
	else
		log_warnx("store: %s: write failed: %s", store->path, mdb_strerror(rc));
}

static void
store_set_results(struct store_write *list, enum store_result result)
{
	for (struct store_write *w = list; w != NULL; w = w->next)
		w->result = result;
}

/* The slow path, after a batch failed: each item in a nested transaction
 * of its own, so that the one that fails (the map is full for a large
 * record, say) fails alone and the others still commit. */
static void
store_commit_each(struct store *store, struct store_write *list)
{
	MDB_txn *txn, *child;
	int rc;

	if ((rc = mdb_txn_begin(store->env, NULL, 0, &txn)) != 0) {
		store_log_failure(store, rc);
		store_set_results(list, store_result_of(rc));
		return;
	}
	for (struct store_write *w = list; w != NULL; w = w->next) {
		if ((rc = mdb_txn_begin(store->env, txn, 0, &child)) == 0 &&
		    (rc = store_apply_write(store, child, w)) != 0)
			mdb_txn_abort(child);
		else if (rc == 0)
			rc = mdb_txn_commit(child);
		w->result = store_result_of(rc);
	}
	if ((rc = mdb_txn_commit(txn)) != 0) {
		store_log_failure(store, rc);
		store_set_results(list, store_result_of(rc));
	}
}

/* Writes every queued item in one transaction and commits it, setting each
 * item's result. */
static void
store_commit_list(struct store *store, struct store_write *list)
{
	MDB_txn *txn;
	int rc;

	if ((rc = mdb_txn_begin(store->env, NULL, 0, &txn)) != 0) {
		store_log_failure(store, rc);
		store_set_results(list, store_result_of(rc));
		return;
	}
	for (struct store_write *w = list; w != NULL; w = w->next) {
		if ((rc = store_apply_write(store, txn, w)) != 0) {
			mdb_txn_abort(txn);
			store_log_failure(store, rc);
			if (list->next != NULL)
				store_commit_each(store, list);
			else
				list->result = store_result_of(rc);
			return;
		}
	}
	rc = mdb_txn_commit(txn);
	if (rc != 0)
		store_log_failure(store, rc);
	store_set_results(list, store_result_of(rc));
}

/* Called by the writer thread before each commit; test builds define it
 * (tests/support/testhooks.c) to hold the thread, the daemon does not. */
extern void store_hook_before_commit(const char *path) __attribute__((weak));

/* The writer thread: commit whatever is queued, batch after batch. */
void *
store_writer_main(void *arg)
{
	struct store *store = arg;
	uint64_t one = 1;

	pthread_mutex_lock(&store->lock);
	for (;;) {
		struct store_write *batch;

		while (store->queue_head == NULL && !store->stopping)
			pthread_cond_wait(&store->wake, &store->lock);
		if (store->queue_head == NULL && store->stopping)
			break;
		batch = store->queue_head;
		store->queue_head = NULL;
		store->queue_tail = &store->queue_head;
		store->queued = 0;
		pthread_mutex_unlock(&store->lock);

		if (store_hook_before_commit != NULL)
			store_hook_before_commit(store->path);
		double started = clock_monotonic_s();
		store_commit_list(store, batch);
		batch->commit_seconds = clock_monotonic_s() - started;
		batch->first_of_batch = true;
		atomic_fetch_add(&store->commits, 1);

		pthread_mutex_lock(&store->lock);
		*store->done_tail = batch;
		while (*store->done_tail != NULL)
			store->done_tail = &(*store->done_tail)->next;
		if (write(store->done_fd, &one, sizeof(one)) != (ssize_t)sizeof(one))
			log_warn("store: cannot wake the event loop");
	}
	pthread_mutex_unlock(&store->lock);
	return NULL;
}

/* On the loop: the writer finished batches; run their callbacks. */
void
store_on_done(evutil_socket_t fd, short what, void *arg)
{
	struct store *store = arg;
	struct store_write *list, *next;
	uint64_t count;

	(void)what;
	if (fd >= 0 && read(fd, &count, sizeof(count)) < 0 && errno != EAGAIN)
		log_warn("store: reading the writer's wake-up");
	pthread_mutex_lock(&store->lock);
	list = store->done_head;
	store->done_head = NULL;
	store->done_tail = &store->done_head;
	pthread_mutex_unlock(&store->lock);
	for (struct store_write *w = list; w != NULL; w = next) {
		next = w->next;
		if (w->first_of_batch)
			histogram_observe(&store->commit_durations, w->commit_seconds);
		if (w->is_probe) {
			store->probe_result = w->result;
			if (w->result == STORE_OK)
				store->last_commit = STORE_OK; /* the store takes writes again */
		} else {
			store->last_commit = w->result;
		}
		if (w->cb != NULL)
			w->cb(w->result, w->arg);
		free(w);
	}
	if (list != NULL)
		store_check_fill(store);
}

/* Hands w to the writer thread; false when the queue is full. */
static bool
store_enqueue(struct store *store, struct store_write *w)
{
	pthread_mutex_lock(&store->lock);
	if (store->queued >= store->max_queued) {
		pthread_mutex_unlock(&store->lock);
		return false;
	}
	*store->queue_tail = w;
	store->queue_tail = &w->next;
	store->queued++;
	pthread_cond_signal(&store->wake);
	pthread_mutex_unlock(&store->lock);
	return true;
}

/* Copies b into the write's data at *at and points dst at the copy. */
static void
store_copy_bytes(struct store_write *w, size_t *at, const struct store_bytes *b, struct store_bytes *dst)
{
	if (b->len > 0)
		memcpy(w->data + *at, b->data, b->len);
	dst->data = w->data + *at;
	dst->len = b->len;
	*at += b->len;
}

/* Bytes a change's copy takes, or 0 when it breaks the limits. */
static size_t
store_change_size(const struct store_change *c)
{
	size_t size = c->key.len + c->value.len;

	if (c->index_count > STORE_MAX_INDEX_KEYS || (unsigned)c->table > STORE_META)
		return 0;
	for (size_t i = 0; i < c->index_count; i++) {
		if (c->index_keys[i].len == 0 || c->index_keys[i].len > STORE_MAX_INDEX_KEY)
			return 0;
		size += c->index_keys[i].len;
	}
	if (c->ledger != NULL)
		size += c->ledger->key.len;
	if (c->daily != NULL)
		size += c->daily->key.len;
	return size + 1; /* never 0 */
}

/* Copies the key, value and index keys of c into dst, their bytes into w. */
static void
store_copy_change(struct store_write *w, size_t *at, const struct store_change *c, struct store_change *dst)
{
	dst->table = c->table;
	dst->remove = c->remove;
	dst->remove_only_if_value = c->remove_only_if_value;
	store_copy_bytes(w, at, &c->key, &dst->key);
	store_copy_bytes(w, at, &c->value, &dst->value);
	dst->index_count = c->index_count;
	for (size_t i = 0; i < c->index_count; i++)
		store_copy_bytes(w, at, &c->index_keys[i], &dst->index_keys[i]);
}

/* A new write holding copies of the change (and of its also); NULL when out
 * of memory or when the change breaks the limits. The caller frees it. */
static struct store_write *
store_write_new(const struct store_change *c, store_write_cb cb, void *arg)
{
	const struct store_change *also[STORE_MAX_ALSO];
	size_t size = store_change_size(c), n = 0, at = 0;
	struct store_write *w;

	if (size == 0)
		return NULL;
	for (const struct store_change *a = c->also; a != NULL; a = a->also) {
		size_t also_size = store_change_size(a);
		if (n == STORE_MAX_ALSO || also_size == 0 || a->ledger != NULL || a->daily != NULL)
			return NULL;
		also[n++] = a;
		size += also_size;
	}
	if ((w = calloc(1, sizeof(*w) + size)) == NULL)
		return NULL;
	w->cb = cb;
	w->arg = arg;
	store_copy_change(w, &at, c, &w->change);
	if (c->ledger != NULL) {
		w->ledger = *c->ledger;
		store_copy_bytes(w, &at, &c->ledger->key, &w->ledger.key);
		w->change.ledger = &w->ledger;
	}
	if (c->daily != NULL) {
		w->daily = *c->daily;
		store_copy_bytes(w, &at, &c->daily->key, &w->daily.key);
		w->change.daily = &w->daily;
	}
	/* The chain again, in the write's own copies. */
	for (size_t i = 0; i < n; i++) {
		store_copy_change(w, &at, also[i], &w->also[i]);
		if (i == 0)
			w->change.also = &w->also[0];
		else
			w->also[i - 1].also = &w->also[i];
	}
	return w;
}

enum store_result
store_apply(struct store *store, const struct store_change *change)
{
	struct store_write *w = store_write_new(change, NULL, NULL);
	enum store_result result;

	if (w == NULL)
		return STORE_ERR;
	store_commit_list(store, w);
	result = w->result;
	free(w);
	return result;
}

enum store_result
store_put(struct store *store, const char *key, size_t key_len, const void *value, size_t value_len,
    const void *index_key, size_t index_key_len)
{
	struct store_change change = {
		.key = { key, key_len },
		.value = { value, value_len },
		.index_keys = { { index_key, index_key_len } },
		.index_count = index_key != NULL ? 1 : 0,
	};
	return store_apply(store, &change);
}

enum store_result
store_delete(struct store *store, const char *key, size_t key_len)
{
	struct store_change change = { .key = { key, key_len }, .remove = 1 };
	return store_apply(store, &change);
}

struct store_write *
store_queue(struct store *store, const struct store_change *change, store_write_cb cb, void *arg)
{
	struct store_write *w = store_write_new(change, cb, arg);

	if (w == NULL)
		return NULL;
	if (!store_enqueue(store, w)) {
		store->queue_full++;
		log_warnx("store: the write queue is full (store.max_queued_writes = %zu); a write is refused",
		    store->max_queued);
		free(w);
		return NULL;
	}
	return w;
}

const struct histogram *
store_commit_durations(const struct store *store)
{
	return &store->commit_durations;
}

unsigned long long
store_commits(const struct store *store)
{
	return atomic_load(&((struct store *)store)->commits);
}

unsigned long long
store_queue_refusals(const struct store *store)
{
	return store->queue_full;
}

void
store_write_forget(struct store_write *write)
{
	if (write != NULL)
		write->cb = NULL;
}

enum store_result
store_probe(struct store *store)
{
	static const double seconds_marker = 0;
	struct store_change change = {
		.key = { "health", 6 },
		.value = { &seconds_marker, sizeof(seconds_marker) },
	};
	struct store_write *w;
	double seconds = clock_monotonic_s();

	/* At most one probe write a second, through the writer thread like any
	 * write: the answer is the last one's result, never a wait here. */
	if (store->writer_running && (store->probed_at == 0 || seconds - store->probed_at >= 1.0)) {
		store->probed_at = seconds;
		if ((w = store_write_new(&change, NULL, NULL)) != NULL) {
			w->is_probe = true;
			if (!store_enqueue(store, w))
				free(w);
		}
	}
	/* The daemon's own last commit failed: that is the answer, until a
	 * write succeeds again. */
	if (store->last_commit != STORE_OK)
		return store->last_commit;
	return store->probe_result;
}
