/* store_private: what the files of the store share (store.c: opening,
 * closing and the store's state; store_read.c: reads on the loop;
 * store_write.c: the writer thread and its group commits). Nothing outside
 * daemon/store/ includes it. */
#ifndef LLAMACHATD_STORE_PRIVATE_H
#define LLAMACHATD_STORE_PRIVATE_H

#include <event2/event.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "base/counters.h"
#include "store/store.h"

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
	struct store_change also[STORE_MAX_ALSO];
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
	MDB_dbi meta; /* the daemon's own markers (the health probe, a read position) */
	MDB_dbi outbox; /* session -> a publication owed (its version) */
	bool has_outbox, has_meta;
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

/* store_read.c: the LMDB table of a store_table; false when this store lacks it. */
bool store_table_dbi(const struct store *store, enum store_table table, MDB_dbi *dbi);
/* store_write.c: an LMDB return code as a store_result. */
enum store_result store_result_of(int rc);
/* store_write.c: the writer thread's body, and the loop's side of its
 * eventfd (runs the callbacks of committed writes). */
void *store_writer_main(void *arg);
void store_on_done(evutil_socket_t fd, short what, void *arg);
/* store.c: says once when the map passes 80% full. */
void store_check_fill(struct store *store);

#endif
