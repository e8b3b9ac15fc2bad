/* store: the LMDB session store. Reads run on the event loop, each in a
 * short read transaction (MDB_NOTLS); writes go to one writer thread.
 *
 * The writer thread: LMDB allows one writer, and a commit waits for fsync,
 * so the loop never commits. It hands each write to the thread through a
 * bounded queue and goes on serving. The thread takes everything queued,
 * writes it in one transaction and commits it durably; while it syncs, the
 * next batch collects (group commit that grows with load). It then tells
 * the loop through an eventfd, and the loop runs each write's callback:
 * a client is answered only after its write is on disk. */
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

/* A queued change with copies of everything it points to. The loop owns
 * cb and arg; the writer thread reads only next, change and result. */
struct store_write {
	struct store_write *next;
	store_write_cb cb; /* NULL once forgotten */
	void *arg;
	enum store_result result; /* set by the writer thread */
	double commit_seconds; /* set by the writer thread on a batch's first write */
	bool first_of_batch;
	bool is_probe; /* the health probe's marker write */
	struct store_change change; /* its pointers point into data */
	struct store_change also;
	struct store_ledger_delta ledger, daily;
	unsigned char data[];
};

struct store {
	MDB_env *env;
	MDB_dbi sessions; /* key -> value */
	MDB_dbi index; /* index key -> key, in the order lists are read */
	MDB_dbi index_of; /* key -> its index keys (u16 length, bytes; ...), to move or remove them */
	MDB_dbi ledger; /* ledger key -> STORE_LEDGER_FIELDS little-endian u64 counters */
	MDB_dbi daily; /* daily total key -> the same counters */
	MDB_dbi keys; /* idempotency key -> its record */
	bool has_daily, has_keys; /* a read-only open of an older store may lack them */
	MDB_dbi meta; /* the daemon's own markers (the health probe) */
	bool readonly;
	double probed_at; /* monotonic seconds of the last probe */
	enum store_result probe_result;
	enum store_result last_commit; /* of the daemon's own writes */
	MDB_txn *reader; /* reset between lookups, renewed for each */
	bool peeking; /* reader open for store_peek() */
	/* The writer thread and what it shares with the loop, under lock. */
	pthread_t writer;
	bool writer_running;
	pthread_mutex_t lock;
	pthread_cond_t wake;
	bool stopping;
	struct store_write *queue_head, **queue_tail; /* waiting for the thread */
	size_t queued, max_queued;
	struct store_write *done_head, **done_tail; /* committed, for the loop */
	int done_fd; /* eventfd: the thread's "something is done" */
	struct event *done_event;
	unsigned long long queue_full; /* writes refused: the queue was full */
	_Atomic unsigned long long commits; /* transactions committed, for tests and metrics */
	struct histogram commit_durations; /* the loop's: observed as batches come back */
	bool warned_full; /* said that the map passed 80% */
	char *path;
	int lock_fd; /* held by the daemon that writes here; -1 for readers */
};

/* One daemon per store: a second one would interleave its own commits and
 * caches. Takes an exclusive lock on path/llamachatd.lock and writes our pid
 * into it, so the one refused can say who holds it. */
static int
store_take_lock(struct store *store, char *why, size_t why_size)
{
	char lock_path[4096], holder[32] = "?";
	ssize_t got;

	snprintf(lock_path, sizeof(lock_path), "%s/llamachatd.lock", store->path);
	store->lock_fd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (store->lock_fd < 0) {
		snprintf(why, why_size, "%s: cannot open: %s", lock_path, strerror(errno));
		return -1;
	}
	if (flock(store->lock_fd, LOCK_EX | LOCK_NB) != 0) {
		got = pread(store->lock_fd, holder, sizeof(holder) - 1, 0);
		holder[got > 0 ? got : 0] = '\0';
		holder[strcspn(holder, "\n")] = '\0';
		snprintf(why, why_size, "%s: the store is in use by another llamachatd (pid %s)", store->path,
		    holder[0] != '\0' ? holder : "?");
		return -1;
	}
	if (ftruncate(store->lock_fd, 0) == 0) {
		int len = snprintf(holder, sizeof(holder), "%ld\n", (long)getpid());
		if (pwrite(store->lock_fd, holder, (size_t)len, 0) != len)
			log_warn("%s: cannot write our pid", lock_path);
	}
	return 0;
}

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

static void *store_writer_main(void *arg);
static void store_on_done(evutil_socket_t fd, short what, void *arg);

struct store *
store_open(
    struct event_base *base, const char *path, size_t map_size_mb, size_t max_queued_writes, char *why, size_t why_size)
{
	struct store *store = calloc(1, sizeof(*store));
	MDB_txn *txn = NULL;
	int dead = 0, rc;

	if (store == NULL || (store->path = strdup(path)) == NULL) {
		snprintf(why, why_size, "%s: out of memory", path);
		goto fail;
	}
	store->queue_tail = &store->queue_head;
	store->done_tail = &store->done_head;
	store->done_fd = -1;
	store->lock_fd = -1;
	store->max_queued = max_queued_writes;
	if (store_make_directory(path) != 0) {
		snprintf(why, why_size, "%s: cannot create the store directory: %s", path, strerror(errno));
		goto fail;
	}
	if (base != NULL && store_take_lock(store, why, why_size) != 0)
		goto fail;
	if ((rc = mdb_env_create(&store->env)) != 0 || (rc = mdb_env_set_mapsize(store->env, map_size_mb << 20)) != 0 ||
	    (rc = mdb_env_set_maxdbs(store->env, 8)) != 0 ||
	    (rc = mdb_env_open(store->env, path, MDB_NOTLS, 0600)) != 0) {
		snprintf(why, why_size, "%s: cannot open the LMDB store: %s", path, mdb_strerror(rc));
		goto fail;
	}
	/* Readers left behind by a crashed process would pin old pages forever. */
	if ((dead = store_clear_stale_readers(store)) > 0)
		log_info("store: cleared %d stale reader slot(s)", dead);

	if ((rc = mdb_txn_begin(store->env, NULL, 0, &txn)) != 0 ||
	    (rc = mdb_dbi_open(txn, "sessions", MDB_CREATE, &store->sessions)) != 0 ||
	    (rc = mdb_dbi_open(txn, "index", MDB_CREATE, &store->index)) != 0 ||
	    (rc = mdb_dbi_open(txn, "index_of", MDB_CREATE, &store->index_of)) != 0 ||
	    (rc = mdb_dbi_open(txn, "ledger", MDB_CREATE, &store->ledger)) != 0 ||
	    (rc = mdb_dbi_open(txn, "daily", MDB_CREATE, &store->daily)) != 0 ||
	    (rc = mdb_dbi_open(txn, "keys", MDB_CREATE, &store->keys)) != 0 ||
	    (rc = mdb_dbi_open(txn, "meta", MDB_CREATE, &store->meta)) != 0 || (rc = mdb_txn_commit(txn)) != 0) {
		if (txn != NULL && rc != 0)
			mdb_txn_abort(txn);
		snprintf(why, why_size, "%s: cannot open the sessions table: %s", path, mdb_strerror(rc));
		goto fail;
	}
	store->has_daily = store->has_keys = true;
	if ((rc = mdb_txn_begin(store->env, NULL, MDB_RDONLY, &store->reader)) != 0) {
		snprintf(why, why_size, "%s: cannot start a reader: %s", path, mdb_strerror(rc));
		goto fail;
	}
	mdb_txn_reset(store->reader);
	if (base != NULL) {
		pthread_mutex_init(&store->lock, NULL);
		pthread_cond_init(&store->wake, NULL);
		store->done_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		if (store->done_fd < 0 ||
		    (store->done_event = event_new(base, store->done_fd, EV_READ | EV_PERSIST, store_on_done, store)) ==
		        NULL ||
		    event_add(store->done_event, NULL) != 0) {
			snprintf(why, why_size, "%s: cannot set up the writer: %s", path, strerror(errno));
			goto fail;
		}
		/* Signals are the loop's (libevent's handlers), never the writer's:
		 * it starts with all of them blocked. */
		sigset_t all, old;
		sigfillset(&all);
		pthread_sigmask(SIG_BLOCK, &all, &old);
		rc = pthread_create(&store->writer, NULL, store_writer_main, store);
		pthread_sigmask(SIG_SETMASK, &old, NULL);
		if (rc != 0) {
			snprintf(why, why_size, "%s: cannot start the writer thread: %s", path, strerror(rc));
			goto fail;
		}
		store->writer_running = true;
	}
	return store;
fail:
	store_close(store);
	return NULL;
}

/* The table's handle; false when a read-only store does not have it. */
static bool
store_table_dbi(const struct store *store, enum store_table table, MDB_dbi *dbi)
{
	if (table == STORE_KEYS) {
		*dbi = store->keys;
		return store->has_keys;
	}
	*dbi = store->sessions;
	return true;
}

enum store_result
store_get(struct store *store, const char *key, size_t key_len, struct evbuffer *out)
{
	return store_get_in(store, STORE_SESSIONS, key, key_len, out);
}

enum store_result
store_get_in(struct store *store, enum store_table table, const void *key, size_t key_len, struct evbuffer *out)
{
	MDB_val k = { key_len, (void *)key }, v;
	enum store_result result;
	MDB_dbi dbi;
	int rc;

	if (!store_table_dbi(store, table, &dbi))
		return STORE_NOT_FOUND;
	if ((rc = mdb_txn_renew(store->reader)) != 0) {
		log_warnx("store: cannot start a read: %s", mdb_strerror(rc));
		return STORE_ERR;
	}
	rc = mdb_get(store->reader, dbi, &k, &v);
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

enum store_result
store_peek(struct store *store, const char *key, size_t key_len, const void **data, size_t *len)
{
	MDB_val k = { key_len, (void *)key }, v;
	int rc;

	if ((rc = mdb_txn_renew(store->reader)) != 0) {
		log_warnx("store: cannot start a read: %s", mdb_strerror(rc));
		return STORE_ERR;
	}
	store->peeking = true;
	rc = mdb_get(store->reader, store->sessions, &k, &v);
	if (rc == MDB_NOTFOUND)
		return STORE_NOT_FOUND;
	if (rc != 0) {
		log_warnx("store: lookup failed: %s", mdb_strerror(rc));
		return STORE_ERR;
	}
	*data = v.mv_data;
	*len = v.mv_size;
	return STORE_OK;
}

void
store_peek_done(struct store *store)
{
	if (store->peeking)
		mdb_txn_reset(store->reader);
	store->peeking = false;
}

static enum store_result
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

	if (rc == 0 && w->change.also != NULL)
		rc = store_apply_in(store, txn, w->change.also);
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
static void *
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

/* Says once, when the map passes 80% full, to raise store.map_size_mb (and
 * again after it fell below 75% and passed 80% anew). */
static void
store_check_fill(struct store *store)
{
	unsigned long long entries, used, map;

	if (store_stats(store, &entries, &used, &map) != STORE_OK || map == 0)
		return;
	if (!store->warned_full && used * 5 >= map * 4) {
		log_warnx("store: %s is %llu%% full (%llu of %llu MiB); raise store.map_size_mb", store->path,
		    used * 100 / map, used >> 20, map >> 20);
		store->warned_full = true;
	} else if (store->warned_full && used * 4 < map * 3) {
		store->warned_full = false;
	}
}

/* On the loop: the writer finished batches; run their callbacks. */
static void
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

	if (c->index_count > STORE_MAX_INDEX_KEYS || (unsigned)c->table > STORE_KEYS)
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
	const struct store_change *also = c->also;
	size_t size = store_change_size(c), also_size = also != NULL ? store_change_size(also) : 1, at = 0;
	struct store_write *w;

	if (size == 0 || also_size == 0 ||
	    (also != NULL && (also->ledger != NULL || also->daily != NULL || also->also != NULL)))
		return NULL;
	if ((w = calloc(1, sizeof(*w) + size + also_size)) == NULL)
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
	if (also != NULL) {
		store_copy_change(w, &at, also, &w->also);
		w->change.also = &w->also;
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

/* Reads the counters stored under key in table dbi into out. */
static enum store_result
store_counters_get(
    struct store *store, MDB_dbi dbi, const void *key, size_t key_len, unsigned long long out[STORE_LEDGER_FIELDS])
{
	MDB_val k = { key_len, (void *)key }, v;
	int rc;

	memset(out, 0, sizeof(unsigned long long) * STORE_LEDGER_FIELDS);
	if ((rc = mdb_txn_renew(store->reader)) != 0)
		return STORE_ERR;
	rc = mdb_get(store->reader, dbi, &k, &v);
	if (rc == 0 && v.mv_size == STORE_LEDGER_FIELDS * 8) {
		const unsigned char *p = v.mv_data;
		for (int f = 0; f < STORE_LEDGER_FIELDS; f++)
			for (int b = 0; b < 8; b++)
				out[f] |= (unsigned long long)p[f * 8 + b] << (8 * b);
	}
	mdb_txn_reset(store->reader);
	return rc == 0 || rc == MDB_NOTFOUND ? STORE_OK : STORE_ERR;
}

enum store_result
store_ledger_get(struct store *store, const void *key, size_t key_len, unsigned long long out[STORE_LEDGER_FIELDS])
{
	return store_counters_get(store, store->ledger, key, key_len, out);
}

enum store_result
store_daily_get(struct store *store, const void *key, size_t key_len, unsigned long long out[STORE_LEDGER_FIELDS])
{
	if (!store->has_daily) {
		memset(out, 0, sizeof(unsigned long long) * STORE_LEDGER_FIELDS);
		return STORE_OK;
	}
	return store_counters_get(store, store->daily, key, key_len, out);
}

enum store_result
store_scan(struct store *store, const void *prefix, size_t prefix_len, const void *after, size_t after_len,
    size_t limit, store_scan_cb cb, void *arg)
{
	return store_scan_in(store, STORE_SESSIONS, prefix, prefix_len, after, after_len, limit, cb, arg);
}

enum store_result
store_scan_in(struct store *store, enum store_table table, const void *prefix, size_t prefix_len, const void *after,
    size_t after_len, size_t limit, store_scan_cb cb, void *arg)
{
	MDB_cursor *cursor = NULL;
	MDB_val ik, k, v;
	enum store_result result = STORE_OK;
	size_t seen = 0;
	MDB_dbi dbi;
	int rc;

	if (!store_table_dbi(store, table, &dbi))
		return STORE_OK;
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
		if ((rc = mdb_get(store->reader, dbi, &k, &v)) == 0) {
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

int
store_clear_stale_readers(struct store *store)
{
	int dead = 0;

	if (mdb_reader_check(store->env, &dead) != 0)
		return 0;
	return dead;
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

enum store_result
store_ledger_scan(struct store *store, size_t limit, store_ledger_cb cb, void *arg)
{
	MDB_cursor *cursor = NULL;
	MDB_val k, v;
	size_t seen = 0;
	int rc;

	if (mdb_txn_renew(store->reader) != 0)
		return STORE_ERR;
	if ((rc = mdb_cursor_open(store->reader, store->ledger, &cursor)) == 0) {
		for (rc = mdb_cursor_get(cursor, &k, &v, MDB_FIRST); rc == 0 && seen < limit;
		     rc = mdb_cursor_get(cursor, &k, &v, MDB_NEXT)) {
			unsigned long long counters[STORE_LEDGER_FIELDS] = { 0 };
			const unsigned char *p = v.mv_data;
			if (v.mv_size != sizeof(counters))
				continue;
			for (int f = 0; f < STORE_LEDGER_FIELDS; f++)
				for (int b = 0; b < 8; b++)
					counters[f] |= (unsigned long long)p[f * 8 + b] << (8 * b);
			seen++;
			if (cb(k.mv_data, k.mv_size, counters, arg) != 0)
				break;
		}
		mdb_cursor_close(cursor);
	}
	mdb_txn_reset(store->reader);
	return rc == 0 || rc == MDB_NOTFOUND ? STORE_OK : STORE_ERR;
}

enum store_result
store_stats(
    struct store *store, unsigned long long *entries, unsigned long long *used_bytes, unsigned long long *map_bytes)
{
	MDB_envinfo info;
	MDB_stat st;
	long count;

	if (mdb_env_info(store->env, &info) != 0 || mdb_env_stat(store->env, &st) != 0)
		return STORE_ERR;
	*used_bytes = (unsigned long long)(info.me_last_pgno + 1) * st.ms_psize;
	*map_bytes = (unsigned long long)info.me_mapsize;
	count = store_count(store);
	*entries = count < 0 ? 0 : (unsigned long long)count;
	return STORE_OK;
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

struct store *
store_open_readonly(const char *path, char *why, size_t why_size)
{
	struct store *store = calloc(1, sizeof(*store));
	MDB_txn *txn = NULL;
	struct stat st;
	int rc;

	if (store == NULL || (store->path = strdup(path)) == NULL) {
		snprintf(why, why_size, "%s: out of memory", path);
		goto fail;
	}
	store->queue_tail = &store->queue_head;
	store->done_tail = &store->done_head;
	store->done_fd = -1;
	store->lock_fd = -1;
	store->readonly = true;
	if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode)) {
		snprintf(why, why_size, "%s: no store here", path);
		goto fail;
	}
	/* MDB_RDONLY never takes the writer lock: the daemon writes on. */
	if ((rc = mdb_env_create(&store->env)) != 0 || (rc = mdb_env_set_maxdbs(store->env, 8)) != 0 ||
	    (rc = mdb_env_open(store->env, path, MDB_RDONLY | MDB_NOTLS, 0600)) != 0) {
		snprintf(why, why_size, "%s: cannot open the store: %s", path, mdb_strerror(rc));
		goto fail;
	}
	if ((rc = mdb_txn_begin(store->env, NULL, MDB_RDONLY, &txn)) != 0 ||
	    (rc = mdb_dbi_open(txn, "sessions", 0, &store->sessions)) != 0 ||
	    (rc = mdb_dbi_open(txn, "index", 0, &store->index)) != 0 ||
	    (rc = mdb_dbi_open(txn, "index_of", 0, &store->index_of)) != 0 ||
	    (rc = mdb_dbi_open(txn, "ledger", 0, &store->ledger)) != 0) {
		if (txn != NULL)
			mdb_txn_abort(txn);
		snprintf(why, why_size, "%s: not a llamachatd store: %s", path, mdb_strerror(rc));
		goto fail;
	}
	store->has_daily = mdb_dbi_open(txn, "daily", 0, &store->daily) == 0;
	store->has_keys = mdb_dbi_open(txn, "keys", 0, &store->keys) == 0;
	/* Committing keeps the table handles for the environment. */
	if ((rc = mdb_txn_commit(txn)) != 0 ||
	    (rc = mdb_txn_begin(store->env, NULL, MDB_RDONLY, &store->reader)) != 0) {
		snprintf(why, why_size, "%s: cannot start a reader: %s", path, mdb_strerror(rc));
		goto fail;
	}
	mdb_txn_reset(store->reader);
	return store;
fail:
	store_close(store);
	return NULL;
}

void
store_close(struct store *store)
{
	if (store == NULL)
		return;
	if (store->writer_running) {
		/* Drain: the thread commits what is queued, then stops; the
		 * callbacks of the last batches run here. */
		pthread_mutex_lock(&store->lock);
		store->stopping = true;
		pthread_cond_signal(&store->wake);
		pthread_mutex_unlock(&store->lock);
		pthread_join(store->writer, NULL);
		store_on_done(-1, 0, store);
		pthread_mutex_destroy(&store->lock);
		pthread_cond_destroy(&store->wake);
	}
	if (store->done_event != NULL)
		event_free(store->done_event);
	if (store->done_fd >= 0)
		close(store->done_fd);
	if (store->reader != NULL)
		mdb_txn_abort(store->reader);
	if (store->env != NULL)
		mdb_env_close(store->env);
	if (store->lock_fd >= 0)
		close(store->lock_fd); /* releases the lock */
	free(store->path);
	free(store);
}
