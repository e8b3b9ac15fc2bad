/* Unit: the LMDB store on a real temporary directory: put, get, reopen,
 * grouped commits on an event loop, and a full map. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdbool.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store/store.h"

static char dir[256];

static int
make_dir(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "%s/llamachatd-store-XXXXXX", getenv("TMPDIR") != NULL ? getenv("TMPDIR") : "/tmp");
	return mkdtemp(dir) != NULL ? 0 : -1;
}

static int
remove_dir(void **state)
{
	char cmd[300];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

static struct store *
open_store(struct event_base *base, size_t map_mb)
{
	char why[256] = "";
	struct store *store = store_open(base, dir, map_mb, 4, why, sizeof(why));

	if (store == NULL)
		fprintf(stderr, "store_open: %s\n", why);
	assert_non_null(store);
	return store;
}

static void
expect_stored(struct store *store, const char *key, const char *value)
{
	struct evbuffer *out = evbuffer_new();

	assert_int_equal(store_get(store, key, strlen(key), out), STORE_OK);
	assert_int_equal(evbuffer_get_length(out), strlen(value));
	assert_memory_equal(evbuffer_pullup(out, -1), value, strlen(value));
	evbuffer_free(out);
}

static int
count_entry(const char *key, size_t key_len, const void *value, size_t value_len, const void *index_key,
    size_t index_key_len, void *arg)
{
	(void)key;
	(void)key_len;
	(void)value;
	(void)value_len;
	(void)index_key;
	(void)index_key_len;
	(*(int *)arg)++;
	return 0;
}

/* A change and its also commit together, each into its table; a remove in
 * the keys table takes its index entry along. */
static void
test_a_linked_change_commits_with_its_change(void **state)
{
	struct store *store = open_store(NULL, 8);
	struct store_change key = {
		.table = STORE_KEYS,
		.key = { "al\0k1", 5 },
		.value = { "answer", 6 },
		.index_keys = { { "K00000001", 9 } },
		.index_count = 1,
	};
	struct store_change session = { .key = { "ses-9", 5 }, .value = { "json", 4 }, .also = &key };
	struct store_change two = { .key = { "ses-7", 5 }, .value = { "y", 1 }, .also = &session };
	struct store_change bad_also = { .key = { "ses-8", 5 }, .value = { "x", 1 }, .also = &two };
	struct evbuffer *out = evbuffer_new();
	int seen = 0;

	(void)state;
	assert_int_equal(store_apply(store, &session), STORE_OK);
	expect_stored(store, "ses-9", "json");
	assert_int_equal(store_get_in(store, STORE_KEYS, "al\0k1", 5, out), STORE_OK);
	assert_memory_equal(evbuffer_pullup(out, -1), "answer", 6);
	/* The tables are apart. */
	assert_int_equal(store_get(store, "al\0k1", 5, out), STORE_NOT_FOUND);
	assert_int_equal(store_get_in(store, STORE_KEYS, "ses-9", 5, out), STORE_NOT_FOUND);
	assert_int_equal(store_scan_in(store, STORE_KEYS, "K", 1, NULL, 0, 10, count_entry, &seen), STORE_OK);
	assert_int_equal(seen, 1);
	/* Two carried along is the most: three are refused whole. */
	assert_int_equal(store_apply(store, &bad_also), STORE_ERR);
	assert_int_equal(store_get(store, "ses-8", 5, out), STORE_NOT_FOUND);
	assert_int_equal(store_get(store, "ses-7", 5, out), STORE_NOT_FOUND);
	assert_int_equal(store_apply(store, &two), STORE_OK);
	expect_stored(store, "ses-7", "y");
	key.remove = 1;
	key.index_count = 0;
	key.also = NULL;
	assert_int_equal(store_apply(store, &key), STORE_OK);
	seen = 0;
	assert_int_equal(store_scan_in(store, STORE_KEYS, "K", 1, NULL, 0, 10, count_entry, &seen), STORE_OK);
	assert_int_equal(seen, 0);
	expect_stored(store, "ses-9", "json");
	evbuffer_free(out);
	store_close(store);
}

/* An outbox entry is removed once acknowledged, unless a newer one
 * replaced it meanwhile; the count of a table is its keys. */
static void
test_a_remove_only_if_value_keeps_a_newer_value(void **state)
{
	struct store *store = open_store(NULL, 8);
	const char key[] = { STORE_OUTBOX_KEY_TAG, 's', '1' };
	struct store_change put = { .table = STORE_OUTBOX,
		.key = { key, 3 },
		.value = { "v1", 2 },
		.index_keys = { { "Pv1s1", 5 } },
		.index_count = 1 };
	struct store_change ack = {
		.table = STORE_OUTBOX, .key = { key, 3 }, .value = { "v1", 2 }, .remove = 1, .remove_only_if_value = 1
	};
	int seen = 0;

	(void)state;
	assert_int_equal(store_apply(store, &put), STORE_OK);
	assert_int_equal(store_count_in(store, STORE_OUTBOX), 1);
	assert_int_equal(store_count(store), 0); /* no session */
	/* Replaced by a newer version before the first was acknowledged. */
	put.value.data = "v2";
	put.index_keys[0].data = "Pv2s1";
	assert_int_equal(store_apply(store, &put), STORE_OK);
	assert_int_equal(store_apply(store, &ack), STORE_OK);
	assert_int_equal(store_count_in(store, STORE_OUTBOX), 1);
	assert_int_equal(store_scan_in(store, STORE_OUTBOX, "P", 1, NULL, 0, 10, count_entry, &seen), STORE_OK);
	assert_int_equal(seen, 1);
	/* The newer one acknowledged: gone, its index entry too. */
	ack.value.data = "v2";
	assert_int_equal(store_apply(store, &ack), STORE_OK);
	assert_int_equal(store_count_in(store, STORE_OUTBOX), 0);
	seen = 0;
	assert_int_equal(store_scan_in(store, STORE_OUTBOX, "P", 1, NULL, 0, 10, count_entry, &seen), STORE_OK);
	assert_int_equal(seen, 0);
	/* Acknowledging what is gone is no failure. */
	assert_int_equal(store_apply(store, &ack), STORE_OK);
	store_close(store);
}

static void
test_put_get_and_reopen(void **state)
{
	struct store *store = open_store(NULL, 8);
	struct evbuffer *out = evbuffer_new();

	(void)state;
	assert_int_equal(store_put(store, "ses-1", 5, "one", 3, NULL, 0), STORE_OK);
	assert_int_equal(store_put(store, "ses-2", 5, "two", 3, NULL, 0), STORE_OK);
	assert_int_equal(store_put(store, "ses-1", 5, "uno", 3, NULL, 0), STORE_OK); /* replaces */
	expect_stored(store, "ses-1", "uno");
	expect_stored(store, "ses-2", "two");
	assert_int_equal(store_get(store, "ses-3", 5, out), STORE_NOT_FOUND);
	assert_int_equal(evbuffer_get_length(out), 0);
	assert_int_equal(store_count(store), 2);
	store_close(store);

	store = open_store(NULL, 8);
	expect_stored(store, "ses-1", "uno");
	expect_stored(store, "ses-2", "two");
	assert_int_equal(store_count(store), 2);
	store_close(store);
	evbuffer_free(out);
}

/* Queues a plain write, as the daemon queues its changes. */
static struct store_write *
queue_put(struct store *store, const char *key, size_t key_len, const char *value, size_t value_len, store_write_cb cb,
    void *arg)
{
	struct store_change change = { .key = { key, key_len }, .value = { value, value_len } };
	return store_queue(store, &change, cb, arg);
}

struct commit_log {
	int calls;
	enum store_result results[8];
};

static void
on_commit(enum store_result result, void *arg)
{
	struct commit_log *log = arg;
	log->results[log->calls++] = result;
}

/* Turns the loop (blocking on the writer's wake-up) until *counter reaches
 * target, for at most a few hundred turns. */
static void
run_loop_until(struct event_base *base, int *counter, int target)
{
	for (int turn = 0; turn < 500 && *counter < target; turn++)
		event_base_loop(base, EVLOOP_ONCE);
}

/* The writer thread's hook: while held, it waits before each commit. */
static pthread_mutex_t hold_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t hold_change = PTHREAD_COND_INITIALIZER;
static bool hold_writer, writer_waiting;

void store_hook_before_commit(const char *path);

void
store_hook_before_commit(const char *path)
{
	(void)path;
	pthread_mutex_lock(&hold_lock);
	while (hold_writer) {
		writer_waiting = true;
		pthread_cond_broadcast(&hold_change);
		pthread_cond_wait(&hold_change, &hold_lock);
	}
	writer_waiting = false;
	pthread_mutex_unlock(&hold_lock);
}

/* A commit held in the writer thread stops neither reads nor the loop; the
 * write's callback runs only once it is committed. */
static void
test_reads_go_on_while_a_commit_is_held(void **state)
{
	struct event_base *base = event_base_new();
	struct store *store = open_store(base, 8);
	struct commit_log log = { 0 };
	struct evbuffer *out = evbuffer_new();

	(void)state;
	assert_non_null(queue_put(store, "first", 5, "1", 1, on_commit, &log));
	run_loop_until(base, &log.calls, 1);
	assert_int_equal(log.calls, 1);

	pthread_mutex_lock(&hold_lock);
	hold_writer = true;
	pthread_mutex_unlock(&hold_lock);
	assert_non_null(queue_put(store, "second", 6, "2", 1, on_commit, &log));
	pthread_mutex_lock(&hold_lock);
	while (!writer_waiting)
		pthread_cond_wait(&hold_change, &hold_lock);
	pthread_mutex_unlock(&hold_lock);
	/* The writer has the batch and is held before its commit. */
	expect_stored(store, "first", "1");
	assert_int_equal(store_get(store, "second", 6, out), STORE_NOT_FOUND);
	event_base_loop(base, EVLOOP_NONBLOCK);
	assert_int_equal(log.calls, 1); /* not answered before the commit */

	pthread_mutex_lock(&hold_lock);
	hold_writer = false;
	pthread_cond_broadcast(&hold_change);
	pthread_mutex_unlock(&hold_lock);
	run_loop_until(base, &log.calls, 2);
	assert_int_equal(log.calls, 2);
	assert_int_equal(log.results[1], STORE_OK);
	expect_stored(store, "second", "2");
	evbuffer_free(out);
	store_close(store);
	event_base_free(base);
}

/* A queue at its bound refuses the next write at once. */
static void
test_a_full_queue_refuses_writes(void **state)
{
	struct event_base *base = event_base_new();
	struct store *store = open_store(base, 8); /* at most 4 waiting */
	struct commit_log log = { 0 };
	int queued = 0;
	char key[16];

	(void)state;
	pthread_mutex_lock(&hold_lock);
	hold_writer = true;
	pthread_mutex_unlock(&hold_lock);
	assert_non_null(queue_put(store, "taken", 5, "t", 1, on_commit, &log));
	pthread_mutex_lock(&hold_lock);
	while (!writer_waiting)
		pthread_cond_wait(&hold_change, &hold_lock);
	pthread_mutex_unlock(&hold_lock);
	/* The thread holds one batch; four more may wait, the fifth may not. */
	for (int i = 0; i < 5; i++) {
		snprintf(key, sizeof(key), "k%d", i);
		if (queue_put(store, key, strlen(key), "v", 1, on_commit, &log) != NULL)
			queued++;
	}
	assert_int_equal(queued, 4);
	assert_int_equal(store_queue_refusals(store), 1);
	pthread_mutex_lock(&hold_lock);
	hold_writer = false;
	pthread_cond_broadcast(&hold_change);
	pthread_mutex_unlock(&hold_lock);
	run_loop_until(base, &log.calls, 5);
	assert_int_equal(log.calls, 5);
	store_close(store);
	event_base_free(base);
}

static void
test_deferred_writes_commit_together_then_call_back(void **state)
{
	struct event_base *base = event_base_new();
	struct store *store = open_store(base, 8);
	struct commit_log log = { 0 };
	struct commit_log forgotten = { 0 };
	struct store_write *w;

	(void)state;
	assert_non_null(queue_put(store, "a", 1, "A", 1, on_commit, &log));
	assert_non_null(queue_put(store, "b", 1, "B", 1, on_commit, &log));
	w = queue_put(store, "c", 1, "C", 1, on_commit, &forgotten);
	assert_non_null(w);
	store_write_forget(w);
	/* Nothing runs before the loop turns: callbacks run on the loop, once
	 * the writer thread has committed. */
	assert_int_equal(log.calls, 0);
	run_loop_until(base, &log.calls, 2);
	assert_int_equal(log.calls, 2);
	assert_int_equal(log.results[0], STORE_OK);
	assert_int_equal(log.results[1], STORE_OK);
	assert_int_equal(forgotten.calls, 0);
	expect_stored(store, "a", "A");
	expect_stored(store, "c", "C"); /* a forgotten write still commits */
	store_close(store);
	event_base_free(base);
}

static void
test_close_commits_what_is_queued(void **state)
{
	struct event_base *base = event_base_new();
	struct store *store = open_store(base, 8);

	(void)state;
	assert_non_null(queue_put(store, "late", 4, "L", 1, NULL, NULL));
	store_close(store);
	event_base_free(base);
	store = open_store(NULL, 8);
	expect_stored(store, "late", "L");
	store_close(store);
}

static void
test_full_map_is_an_error_not_a_crash(void **state)
{
	struct store *store = open_store(NULL, 1);
	size_t big = 2u << 20;
	char *value = calloc(1, big);
	enum store_result result = STORE_OK;

	(void)state;
	assert_int_equal(store_put(store, "small", 5, "s", 1, NULL, 0), STORE_OK);
	result = store_put(store, "huge", 4, value, big, NULL, 0);
	assert_int_equal(result, STORE_ERR_FULL);
	/* The store still works for what fits. */
	expect_stored(store, "small", "s");
	assert_int_equal(store_put(store, "small2", 6, "t", 1, NULL, 0), STORE_OK);
	free(value);
	store_close(store);
}

/* One write of a batch that cannot go in (the map is full for it) fails
 * alone: the others of its group commit still commit. */
static void
test_a_failing_write_fails_alone_in_its_batch(void **state)
{
	struct event_base *base = event_base_new();
	struct store *store = open_store(base, 1);
	struct commit_log log = { 0 };
	size_t big = 2u << 20;
	char *value = calloc(1, big);

	(void)state;
	/* The writer takes a first write and is held before committing it, so
	 * that the next three gather into one batch. */
	pthread_mutex_lock(&hold_lock);
	hold_writer = true;
	pthread_mutex_unlock(&hold_lock);
	assert_non_null(queue_put(store, "x", 1, "X", 1, on_commit, &log));
	pthread_mutex_lock(&hold_lock);
	while (!writer_waiting)
		pthread_cond_wait(&hold_change, &hold_lock);
	pthread_mutex_unlock(&hold_lock);
	assert_non_null(queue_put(store, "a", 1, "A", 1, on_commit, &log));
	assert_non_null(queue_put(store, "huge", 4, value, big, on_commit, &log));
	assert_non_null(queue_put(store, "b", 1, "B", 1, on_commit, &log));
	pthread_mutex_lock(&hold_lock);
	hold_writer = false;
	pthread_cond_broadcast(&hold_change);
	pthread_mutex_unlock(&hold_lock);
	run_loop_until(base, &log.calls, 4);
	assert_int_equal(log.calls, 4);
	assert_int_equal(log.results[0], STORE_OK);
	assert_int_equal(log.results[1], STORE_OK);
	assert_int_equal(log.results[2], STORE_ERR_FULL);
	assert_int_equal(log.results[3], STORE_OK);
	expect_stored(store, "a", "A");
	expect_stored(store, "b", "B");
	free(value);
	store_close(store);
	event_base_free(base);
}

struct scan_log {
	char keys[16][16];
	int count;
};

static int
collect_keys(const char *key, size_t key_len, const void *value, size_t value_len, const void *index_key,
    size_t index_key_len, void *arg)
{
	struct scan_log *log = arg;

	(void)value;
	(void)value_len;
	(void)index_key;
	(void)index_key_len;
	snprintf(log->keys[log->count++], 16, "%.*s", (int)key_len, key);
	return 0;
}

static void
test_index_orders_moves_and_forgets(void **state)
{
	struct store *store = open_store(NULL, 8);
	struct scan_log log = { .count = 0 };

	(void)state;
	/* Index keys "a:<n>" order the keys; "b:" is another run. */
	assert_int_equal(store_put(store, "k3", 2, "v", 1, "a:3", 3), STORE_OK);
	assert_int_equal(store_put(store, "k1", 2, "v", 1, "a:1", 3), STORE_OK);
	assert_int_equal(store_put(store, "k2", 2, "v", 1, "a:2", 3), STORE_OK);
	assert_int_equal(store_put(store, "other", 5, "v", 1, "b:1", 3), STORE_OK);
	assert_int_equal(store_scan(store, "a:", 2, NULL, 0, 10, collect_keys, &log), STORE_OK);
	assert_int_equal(log.count, 3);
	assert_string_equal(log.keys[0], "k1");
	assert_string_equal(log.keys[2], "k3");

	/* Starting after a position, with a limit. */
	log.count = 0;
	assert_int_equal(store_scan(store, "a:", 2, "a:1", 3, 1, collect_keys, &log), STORE_OK);
	assert_int_equal(log.count, 1);
	assert_string_equal(log.keys[0], "k2");

	/* A new index key moves the entry; the old place is gone. */
	assert_int_equal(store_put(store, "k1", 2, "w", 1, "a:9", 3), STORE_OK);
	log.count = 0;
	assert_int_equal(store_scan(store, "a:", 2, NULL, 0, 10, collect_keys, &log), STORE_OK);
	assert_int_equal(log.count, 3);
	assert_string_equal(log.keys[0], "k2");
	assert_string_equal(log.keys[2], "k1");

	/* Deleting removes the value and the index entry; deleting again is fine. */
	assert_int_equal(store_delete(store, "k2", 2), STORE_OK);
	assert_int_equal(store_delete(store, "k2", 2), STORE_OK);
	log.count = 0;
	assert_int_equal(store_scan(store, "a:", 2, NULL, 0, 10, collect_keys, &log), STORE_OK);
	assert_int_equal(log.count, 2);
	assert_string_equal(log.keys[0], "k3");
	assert_int_equal(store_count(store), 3);
	store_close(store);
}

static void
test_ledger_adds_up_in_the_same_commit(void **state)
{
	struct store *store = open_store(NULL, 8);
	unsigned long long got[STORE_LEDGER_FIELDS];
	struct store_ledger_delta delta = { .key = { "alice/p1", 8 }, .add = { 1, 2, 30, 40, 5, 0 } };
	struct store_change change = { .key = { "s1", 2 }, .value = { "v", 1 }, .ledger = &delta };

	(void)state;
	assert_int_equal(store_ledger_get(store, "alice/p1", 8, got), STORE_OK);
	assert_int_equal(got[0], 0);
	assert_int_equal(store_apply(store, &change), STORE_OK);
	change.key.data = "s2";
	assert_int_equal(store_apply(store, &change), STORE_OK);
	store_close(store);
	store = open_store(NULL, 8); /* it survives a reopen */
	assert_int_equal(store_ledger_get(store, "alice/p1", 8, got), STORE_OK);
	assert_int_equal(got[0], 2);
	assert_int_equal(got[1], 4);
	assert_int_equal(got[2], 60);
	assert_int_equal(got[3], 80);
	assert_int_equal(got[4], 10);
	assert_int_equal(got[5], 0);
	store_close(store);
}

static void
test_unusable_directory_is_reported(void **state)
{
	char why[256] = "";
	struct store *store = store_open(NULL, "/proc/llamachatd-cannot-be-here", 8, 4, why, sizeof(why));

	(void)state;
	assert_null(store);
	assert_non_null(strstr(why, "/proc/llamachatd-cannot-be-here"));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_put_get_and_reopen, make_dir, remove_dir),
		cmocka_unit_test_setup_teardown(test_a_linked_change_commits_with_its_change, make_dir, remove_dir),
		cmocka_unit_test_setup_teardown(test_a_remove_only_if_value_keeps_a_newer_value, make_dir, remove_dir),
		cmocka_unit_test_setup_teardown(
		    test_deferred_writes_commit_together_then_call_back, make_dir, remove_dir),
		cmocka_unit_test_setup_teardown(test_close_commits_what_is_queued, make_dir, remove_dir),
		cmocka_unit_test_setup_teardown(test_reads_go_on_while_a_commit_is_held, make_dir, remove_dir),
		cmocka_unit_test_setup_teardown(test_a_full_queue_refuses_writes, make_dir, remove_dir),
		cmocka_unit_test_setup_teardown(test_full_map_is_an_error_not_a_crash, make_dir, remove_dir),
		cmocka_unit_test_setup_teardown(test_a_failing_write_fails_alone_in_its_batch, make_dir, remove_dir),
		cmocka_unit_test_setup_teardown(test_index_orders_moves_and_forgets, make_dir, remove_dir),
		cmocka_unit_test_setup_teardown(test_ledger_adds_up_in_the_same_commit, make_dir, remove_dir),
		cmocka_unit_test(test_unusable_directory_is_reported),
	};
	return cmocka_run_group_tests_name("unit: store", tests, NULL, NULL);
}
