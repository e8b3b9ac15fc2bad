/* Integration: the store's upkeep. The janitor removes sessions past
 * store.max_age_days in bounded batches (off by default, switched on by a
 * reload), and the daemon warns, in the log and in /metrics, when the store
 * passes 80% full. The old sessions are written into the store before the
 * daemon starts, the way the daemon itself stores them, since the fake
 * upstream only makes sessions of today. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <cmocka.h>

#include "harness.h"
#include "store/session.h"
#include "store/store.h"

#define OLD_SESSIONS 600 /* more than two batches of the janitor */
#define YOUNG_SESSIONS 5

static struct fake_upstream fake;
static char *dir;

static uint64_t
now_us(void)
{
	struct timespec now;

	clock_gettime(CLOCK_REALTIME, &now);
	return (uint64_t)now.tv_sec * 1000000u + (uint64_t)now.tv_nsec / 1000u;
}

/* Stores one session last updated at updated_us, as the daemon would. */
static void
seed_session(struct store *store, const char *id, uint64_t updated_us)
{
	char json[256], when[SESSION_TIME_TEXT];
	unsigned char index_key[SESSION_INDEX_KEY_MAX], *encoded;
	struct session_record rec = { 0 };
	struct store_change change = { 0 };

	session_time_format(updated_us, when);
	snprintf(json, sizeof(json), "{\"session_id\":\"%s\",\"title\":null,\"last_updated_at\":\"%s\"}", id, when);
	rec.stored_at_us = updated_us;
	rec.json = json;
	rec.json_len = strlen(json);
	encoded = malloc(session_record_encoded_size(&rec));
	assert_non_null(encoded);
	session_record_encode(&rec, encoded);
	change.key.data = id;
	change.key.len = strlen(id);
	change.value.data = encoded;
	change.value.len = session_record_encoded_size(&rec);
	change.index_keys[0].data = index_key;
	change.index_keys[0].len = session_index_key(NULL, NULL, NULL, updated_us, id, strlen(id), index_key);
	change.index_count = 1;
	assert_int_equal(store_apply(store, &change), STORE_OK);
	free(encoded);
}

static void
seed_store(const char *path)
{
	char why[256], id[64];
	struct store *store = store_open(NULL, path, 64, 0, why, sizeof(why));
	uint64_t now = now_us(), day = 86400ull * 1000000u;

	assert_non_null(store);
	for (int i = 0; i < OLD_SESSIONS; i++) {
		snprintf(id, sizeof(id), "old-%04d", i);
		seed_session(store, id, now - (40 + (uint64_t)(i % 7)) * day);
	}
	for (int i = 0; i < YOUNG_SESSIONS; i++) {
		snprintf(id, sizeof(id), "young-%d", i);
		seed_session(store, id, now - (uint64_t)i * day);
	}
	store_close(store);
}

static int
start_all(void **state)
{
	(void)state;
	dir = harness_make_dir("upkeep");
	return dir != NULL && fake_start(&fake, dir) == 0 ? 0 : -1;
}

static int
stop_all(void **state)
{
	(void)state;
	fake_stop(&fake);
	harness_remove_dir(dir);
	free(dir);
	return 0;
}

/* A metric awaited: at least at_least, or at most at_most. */
struct metric_wait {
	const struct daemon_process *d;
	const char *series;
	double at_least, at_most;
};

static bool
metric_reached(void *arg)
{
	struct metric_wait *w = arg;
	double v = daemon_metric(w->d, w->series);

	return v >= w->at_least && v <= w->at_most;
}

static void
wait_metric(const struct daemon_process *d, const char *series, double at_least, double at_most)
{
	struct metric_wait w = { d, series, at_least, at_most };

	harness_wait(metric_reached, &w, 15000, series);
}

static long
lookup(const struct daemon_process *d, const char *id, char *cache, size_t cache_size)
{
	struct http_response r;
	char url[256], path[128];
	long status;

	snprintf(path, sizeof(path), "/api/v1/chat/%s/summary", id);
	assert_int_equal(http_call("GET", daemon_url(d, path, url, sizeof(url)), NULL, NULL, 0, &r), 0);
	status = r.status;
	if (cache != NULL && http_header(&r, "X-Cache", cache, cache_size) == NULL)
		snprintf(cache, cache_size, "-");
	http_response_free(&r);
	return status;
}

static void
test_janitor_removes_old_sessions_once_a_reload_asks_for_it(void **state)
{
	struct daemon_process d;
	char store_path[300], cache[16];
	long offset, before;

	(void)state;
	snprintf(store_path, sizeof(store_path), "%s/store", dir);
	seed_store(store_path);
	daemon_write_config(&d, dir, fake.port, NULL, NULL, "  janitor_interval_s = 3600;");
	assert_int_equal(daemon_start(&d, HARNESS_KEY), 0);
	/* Off by default: a pass runs at start and removes nothing. */
	wait_metric(&d, "llamachatd_janitor_passes_total", 1, 1e9);
	assert_true(daemon_metric(&d, "llamachatd_janitor_removed_total{kind=\"sessions\"}") == 0);
	assert_true(daemon_metric(&d, "llamachatd_store_sessions") == OLD_SESSIONS + YOUNG_SESSIONS);

	/* A reload that sets max_age_days starts a pass at once. */
	daemon_write_config(&d, dir, fake.port, NULL, NULL, "  janitor_interval_s = 3600;\n  max_age_days = 30;");
	offset = daemon_log_offset(&d);
	kill(d.pid, SIGHUP);
	daemon_wait_log(&d, offset, "reloaded");
	wait_metric(&d, "llamachatd_janitor_removed_total{kind=\"sessions\"}", OLD_SESSIONS, 1e9);
	/* The removals commit through the writer thread. */
	wait_metric(&d, "llamachatd_store_sessions", 0, YOUNG_SESSIONS);
	assert_true(daemon_metric(&d, "llamachatd_janitor_removed_total{kind=\"sessions\"}") == OLD_SESSIONS);

	/* The young ones are still answered from the store; an old one is gone
	 * from it, so its lookup goes upstream (which never knew it). */
	for (int i = 0; i < YOUNG_SESSIONS; i++) {
		char id[32];
		snprintf(id, sizeof(id), "young-%d", i);
		assert_int_equal(lookup(&d, id, cache, sizeof(cache)), 200);
		assert_string_equal(cache, "HIT");
	}
	before = fake_count(&fake, "api_requests");
	assert_int_equal(lookup(&d, "old-0001", NULL, 0), 404);
	assert_int_equal(fake_count(&fake, "api_requests"), before + 1);
	assert_int_equal(daemon_stop(&d), 0);
}

/* With a 1 MiB map, creates fill it: past 80% the log says so once and
 * /metrics shows the ratio, and the daemon keeps answering. */
static void
test_a_store_past_80_percent_full_is_reported(void **state)
{
	const char *headers[] = { "Content-Type: application/json", NULL };
	struct daemon_process d;
	struct http_response r;
	char sub[300], url[256];
	long offset;
	bool warned = false;
	int created = 0;

	(void)state;
	snprintf(sub, sizeof(sub), "%s/small", dir);
	assert_int_equal(mkdir(sub, 0700), 0);
	daemon_write_config(&d, sub, fake.port, NULL, NULL, "  map_size_mb = 1;");
	assert_int_equal(daemon_start(&d, HARNESS_KEY), 0);
	offset = daemon_log_offset(&d);
	assert_true(daemon_metric(&d, "llamachatd_store_full_ratio") < 0.8);
	/* About 900 bytes a session: 1 MiB is 80% full after some 900 creates. */
	while (!warned && created < 3000) {
		assert_int_equal(
		    http_call("POST", daemon_url(&d, "/api/v1/chat", url, sizeof(url)), headers, "{}", 2, &r), 0);
		assert_int_equal(r.status, 200);
		http_response_free(&r);
		if (++created % 50 == 0)
			warned = harness_file_contains_since(d.log_path, offset, "% full");
	}
	assert_true(warned);
	assert_true(harness_file_contains_since(d.log_path, offset, "raise store.map_size_mb"));
	assert_true(daemon_metric(&d, "llamachatd_store_full_ratio") >= 0.8);
	assert_int_equal(daemon_stop(&d), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_janitor_removes_old_sessions_once_a_reload_asks_for_it),
		cmocka_unit_test(test_a_store_past_80_percent_full_is_reported),
	};
	return cmocka_run_group_tests(tests, start_all, stop_all);
}
