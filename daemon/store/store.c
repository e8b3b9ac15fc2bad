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
#include "store/store_private.h"

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

/* A store with nothing open yet, for store_close to free whatever its
 * opener gets to; NULL (and why) when out of memory. */
static struct store *
store_new(const char *path, char *why, size_t why_size)
{
	struct store *store = calloc(1, sizeof(*store));

	if (store == NULL || (store->path = strdup(path)) == NULL) {
		snprintf(why, why_size, "%s: out of memory", path);
		free(store);
		return NULL;
	}
	store->queue_tail = &store->queue_head;
	store->done_tail = &store->done_head;
	store->done_fd = -1;
	store->lock_fd = -1;
	return store;
}

struct store *
store_open(
    struct event_base *base, const char *path, size_t map_size_mb, size_t max_queued_writes, char *why, size_t why_size)
{
	struct store *store = store_new(path, why, why_size);
	MDB_txn *txn = NULL;
	int dead = 0, rc;

	if (store == NULL)
		return NULL;
	store->max_queued = max_queued_writes;
	if (store_make_directory(path) != 0) {
		snprintf(why, why_size, "%s: cannot create the store directory: %s", path, strerror(errno));
		goto fail;
	}
	if (base != NULL && store_take_lock(store, why, why_size) != 0)
		goto fail;
	if ((rc = mdb_env_create(&store->env)) != 0 || (rc = mdb_env_set_mapsize(store->env, map_size_mb << 20)) != 0 ||
	    (rc = mdb_env_set_maxdbs(store->env, 12)) != 0 ||
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
	    (rc = mdb_dbi_open(txn, "meta", MDB_CREATE, &store->meta)) != 0 ||
	    (rc = mdb_dbi_open(txn, "outbox", MDB_CREATE, &store->outbox)) != 0 || (rc = mdb_txn_commit(txn)) != 0) {
		if (txn != NULL && rc != 0)
			mdb_txn_abort(txn);
		snprintf(why, why_size, "%s: cannot open the sessions table: %s", path, mdb_strerror(rc));
		goto fail;
	}
	store->has_daily = store->has_keys = store->has_outbox = store->has_meta = true;
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

int
store_clear_stale_readers(struct store *store)
{
	int dead = 0;

	if (mdb_reader_check(store->env, &dead) != 0)
		return 0;
	return dead;
}

long
store_count(struct store *store)
{
	return store_count_in(store, STORE_SESSIONS);
}

long
store_count_in(struct store *store, enum store_table table)
{
	MDB_stat st;
	MDB_dbi dbi;
	long count = -1;

	if (!store_table_dbi(store, table, &dbi))
		return 0;
	if (mdb_txn_renew(store->reader) != 0)
		return -1;
	if (mdb_stat(store->reader, dbi, &st) == 0)
		count = (long)st.ms_entries;
	mdb_txn_reset(store->reader);
	return count;
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

/* Says once, when the map passes 80% full, to raise store.map_size_mb (and
 * again after it fell below 75% and passed 80% anew). */
void
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

struct store *
store_open_readonly(const char *path, char *why, size_t why_size)
{
	struct store *store = store_new(path, why, why_size);
	MDB_txn *txn = NULL;
	struct stat st;
	int rc;

	if (store == NULL)
		return NULL;
	store->readonly = true;
	if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode)) {
		snprintf(why, why_size, "%s: no store here", path);
		goto fail;
	}
	/* MDB_RDONLY never takes the writer lock: the daemon writes on. */
	if ((rc = mdb_env_create(&store->env)) != 0 || (rc = mdb_env_set_maxdbs(store->env, 12)) != 0 ||
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
	store->has_outbox = mdb_dbi_open(txn, "outbox", 0, &store->outbox) == 0;
	store->has_meta = mdb_dbi_open(txn, "meta", 0, &store->meta) == 0;
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
