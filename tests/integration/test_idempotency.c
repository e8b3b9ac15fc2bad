/* Integration: creates that are safe to retry (Idempotency-Key). The same
 * key and request again is replayed from the store, byte for byte, and
 * upstream is not asked; another request under the key is a 422; a key in
 * flight is a 409; an upstream error is not kept; keys are per client,
 * survive a restart and expire; a turn's key is never replayed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <curl/curl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "harness.h"

static struct fake_upstream fake;
static struct daemon_process gw;
static char *dir;

#define ANN "Authorization: Bearer tok-ann-0c1d"
#define BEN "Authorization: Bearer tok-ben-9a8b"

static void
write_config(const char *ttl)
{
	char ann[65], ben[65];
	FILE *f;

	harness_token_hex("tok-ann-0c1d", ann);
	harness_token_hex("tok-ben-9a8b", ben);
	daemon_write_config(&gw, dir, fake.port, NULL, NULL, "  janitor_interval_s = 1;");
	f = fopen(gw.conf_path, "a");
	fprintf(f,
	    "clients = (\n"
	    "  { name = \"ann\"; token_sha256 = \"%s\"; metrics = true; },\n"
	    "  { name = \"ben\"; token_sha256 = \"%s\"; }\n);\n"
	    "idempotency = { %s };\n",
	    ann, ben, ttl);
	fclose(f);
}

static int
start_all(void **state)
{
	(void)state;
	dir = harness_make_dir("idempotency");
	if (dir == NULL || fake_start(&fake, dir) != 0)
		return -1;
	write_config("");
	return daemon_start(&gw, HARNESS_KEY);
}

static int
stop_all(void **state)
{
	(void)state;
	harness_suite_stop(&dir, &fake, &gw);
	return 0;
}

/* POSTs body to path as who with key (NULL: none); the answer in r. */
static long
post(const char *who, const char *path, const char *key, const char *body, struct http_response *r)
{
	char key_line[600];
	const char *headers[] = { "Content-Type: application/json", who, key != NULL ? key_line : NULL, NULL };
	char url[512];

	/* "Name;" is curl's way of sending a header with an empty value. */
	if (key != NULL && key[0] == '\0')
		snprintf(key_line, sizeof(key_line), "Idempotency-Key;");
	else
		snprintf(key_line, sizeof(key_line), "Idempotency-Key: %s", key != NULL ? key : "");
	assert_int_equal(http_call("POST", daemon_url(&gw, path, url, sizeof(url)), headers, body, strlen(body), r), 0);
	return r->status;
}

static bool
replayed(const struct http_response *r)
{
	char value[16];

	return http_header(r, "Idempotent-Replayed", value, sizeof(value)) != NULL && strcmp(value, "true") == 0;
}

static char first_body[4096];

/* The session_id of a Session's JSON text, into id. */
static void
session_id_of(const char *json, char *id, size_t size)
{
	json_t *doc = json_loads(json, 0, NULL);

	assert_non_null(json_string_value(json_object_get(doc, "session_id")));
	snprintf(id, size, "%s", json_string_value(json_object_get(doc, "session_id")));
	json_decref(doc);
}

static void
test_a_retried_create_with_the_same_key_makes_one_session(void **state)
{
	struct http_response r;
	long creates = fake_count(&fake, "creates");
	const char *sent;
	json_t *stats;

	(void)state;
	assert_int_equal(post(ANN, "/api/v1/chat", "order-1", "{}", &r), 200);
	assert_false(replayed(&r));
	snprintf(first_body, sizeof(first_body), "%s", r.body);
	http_response_free(&r);
	assert_int_equal(fake_count(&fake, "creates"), creates + 1);
	/* A key went upstream too: derived from the client's, never the
	 * client's own, so that two clients' keys cannot meet there. */
	stats = fake_stats(&fake);
	sent = json_string_value(
	    json_object_get(json_object_get(json_object_get(stats, "last"), "headers"), "idempotency-key"));
	assert_non_null(sent);
	assert_int_equal(strlen(sent), 64);
	assert_null(strstr(sent, "order-1"));
	json_decref(stats);

	for (int i = 0; i < 3; i++) {
		assert_int_equal(post(ANN, "/api/v1/chat", "order-1", "{}", &r), 200);
		assert_true(replayed(&r));
		assert_string_equal(r.body, first_body);
		http_response_free(&r);
	}
	assert_int_equal(fake_count(&fake, "creates"), creates + 1);
}

static void
test_the_same_key_for_another_request_is_a_422(void **state)
{
	struct http_response r;
	long requests = fake_count(&fake, "api_requests");

	(void)state;
	assert_int_equal(post(ANN, "/api/v1/chat", "order-1", "{\"index_ids\":[\"idx-a\"]}", &r), 422);
	assert_non_null(strstr(r.body, "different request"));
	http_response_free(&r);
	assert_int_equal(post(ANN, "/api/v1/chat?project_id=p-other", "order-1", "{}", &r), 422);
	http_response_free(&r);
	assert_int_equal(fake_count(&fake, "api_requests"), requests);
}

static void
test_keys_are_per_client(void **state)
{
	struct http_response r;
	long creates = fake_count(&fake, "creates");
	char ann_id[64], ben_id[64], path[160];

	(void)state;
	/* The fake dedupes on the key it is sent, as an upstream may: the same
	 * key from two clients still makes two sessions, each its maker's. */
	assert_int_equal(post(BEN, "/api/v1/chat", "order-1", "{}", &r), 200);
	assert_false(replayed(&r));
	assert_string_not_equal(r.body, first_body);
	session_id_of(r.body, ben_id, sizeof(ben_id));
	http_response_free(&r);
	assert_int_equal(fake_count(&fake, "creates"), creates + 1);
	session_id_of(first_body, ann_id, sizeof(ann_id));
	snprintf(path, sizeof(path), "/api/v1/chat/%s/summary", ann_id);
	assert_int_equal(daemon_call(&gw, BEN, "GET", path, NULL, NULL), 404);
	assert_int_equal(daemon_call(&gw, ANN, "GET", path, NULL, NULL), 200);
	snprintf(path, sizeof(path), "/api/v1/chat/%s/summary", ben_id);
	assert_int_equal(daemon_call(&gw, ANN, "GET", path, NULL, NULL), 404);
	assert_int_equal(daemon_call(&gw, BEN, "GET", path, NULL, NULL), 200);
}

/* Upstream answers a create with a session another client owns: the owner
 * keeps it, and the creator gets a 502 that says so. */
static void
test_a_create_answered_with_another_clients_session_is_refused(void **state)
{
	struct http_response r;
	char ann_id[64], path[160], *fault;
	json_t *doc;
	double before = daemon_metric_as(&gw, ANN, "llamachatd_takeovers_refused_total");

	(void)state;
	session_id_of(first_body, ann_id, sizeof(ann_id));
	doc = json_pack("{s:s,s:i,s:s}", "mode", "status", "status", 200, "body", first_body);
	fault = json_dumps(doc, JSON_COMPACT);
	assert_int_equal(fake_fault(&fake, "POST", "/api/v1/chat", fault), 0);
	free(fault);
	json_decref(doc);
	assert_int_equal(daemon_call(&gw, BEN, "POST", "/api/v1/chat", "{}", &r), 502);
	assert_non_null(strstr(r.body, "another client owns"));
	http_response_free(&r);
	snprintf(path, sizeof(path), "/api/v1/chat/%s/summary", ann_id);
	assert_int_equal(daemon_call(&gw, BEN, "GET", path, NULL, NULL), 404);
	assert_int_equal(daemon_call(&gw, ANN, "GET", path, NULL, NULL), 200);
	assert_true(daemon_metric_as(&gw, ANN, "llamachatd_takeovers_refused_total") >= before + 1);
}

static void
test_malformed_keys_are_a_400(void **state)
{
	char long_key[300];
	struct http_response r;
	long requests = fake_count(&fake, "api_requests");
	const char *bad[] = { "", long_key, "caf\xc3\xa9", "tab\there" };

	(void)state;
	memset(long_key, 'k', 256);
	long_key[256] = '\0';
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(post(ANN, "/api/v1/chat", bad[i], "{}", &r), 400);
		assert_non_null(strstr(r.body, "Idempotency-Key"));
		http_response_free(&r);
	}
	/* 255 bytes is a key. */
	long_key[255] = '\0';
	assert_int_equal(post(ANN, "/api/v1/chat", long_key, "{}", &r), 200);
	http_response_free(&r);
	assert_int_equal(fake_count(&fake, "api_requests"), requests + 1);
}

#define RACERS 6

/* Requests with one key at once, while upstream takes its time: one goes
 * upstream; the others get 409 (in flight) or, once it is done, the
 * replay. */
static void
test_concurrent_requests_with_one_key_make_one_session(void **state)
{
	CURLM *multi = curl_multi_init();
	CURL *easy[RACERS];
	static struct harness_body bodies[RACERS];
	struct curl_slist *headers = NULL;
	long creates = fake_count(&fake, "creates");
	int running = 1, fresh = 0, conflicts = 0, replays = 0;
	char url[256];

	(void)state;
	assert_int_equal(fake_fault(&fake, "POST", "/api/v1/chat", "{\"mode\":\"delay\",\"ms\":1500,\"count\":1}"), 0);
	headers = curl_slist_append(headers, "Content-Type: application/json");
	headers = curl_slist_append(headers, ANN);
	headers = curl_slist_append(headers, "Idempotency-Key: race-1");
	daemon_url(&gw, "/api/v1/chat", url, sizeof(url));
	for (int i = 0; i < RACERS; i++) {
		easy[i] = curl_easy_init();
		bodies[i].len = 0;
		curl_easy_setopt(easy[i], CURLOPT_URL, url);
		curl_easy_setopt(easy[i], CURLOPT_POSTFIELDS, "{}");
		curl_easy_setopt(easy[i], CURLOPT_HTTPHEADER, headers);
		curl_easy_setopt(easy[i], CURLOPT_WRITEFUNCTION, harness_body_sink);
		curl_easy_setopt(easy[i], CURLOPT_WRITEDATA, &bodies[i]);
		curl_easy_setopt(easy[i], CURLOPT_HEADERFUNCTION, harness_body_sink);
		curl_easy_setopt(easy[i], CURLOPT_HEADERDATA, &bodies[i]);
		curl_easy_setopt(easy[i], CURLOPT_TIMEOUT_MS, 30000L);
		curl_easy_setopt(easy[i], CURLOPT_PROXY, "");
		curl_easy_setopt(easy[i], CURLOPT_FRESH_CONNECT, 1L);
		curl_multi_add_handle(multi, easy[i]);
	}
	while (running > 0) {
		curl_multi_perform(multi, &running);
		if (running > 0)
			curl_multi_poll(multi, NULL, 0, 1000, NULL);
	}
	for (int i = 0; i < RACERS; i++) {
		long status = 0;
		bool is_replay;
		curl_easy_getinfo(easy[i], CURLINFO_RESPONSE_CODE, &status);
		bodies[i].data[bodies[i].len] = '\0';
		is_replay = strstr(bodies[i].data, "Idempotent-Replayed: true") != NULL;
		if (status == 200 && !is_replay)
			fresh++;
		else if (status == 200)
			replays++;
		else if (status == 409 && strstr(bodies[i].data, "Retry-After: 1") != NULL)
			conflicts++;
		curl_multi_remove_handle(multi, easy[i]);
		curl_easy_cleanup(easy[i]);
	}
	assert_int_equal(fresh, 1);
	assert_int_equal(fresh + replays + conflicts, RACERS);
	assert_true(conflicts >= 1);
	assert_int_equal(fake_count(&fake, "creates"), creates + 1);
	curl_slist_free_all(headers);
	curl_multi_cleanup(multi);
}

static void
test_an_upstream_error_is_not_kept_and_a_final_refusal_is(void **state)
{
	struct http_response r;
	long creates = fake_count(&fake, "creates"), requests;

	(void)state;
	/* Three 503s: the first try and the daemon's own two retries of a
	 * keyed create (upstream.retries). */
	assert_int_equal(
	    fake_fault(&fake, "POST", "/api/v1/chat",
	        "{\"mode\":\"status\",\"status\":503,\"body\":\"{\\\"detail\\\":\\\"busy\\\"}\",\"count\":3}"),
	    0);
	assert_int_equal(post(ANN, "/api/v1/chat", "order-5xx", "{}", &r), 503);
	http_response_free(&r);
	/* The retry goes upstream again, and makes the session. */
	assert_int_equal(post(ANN, "/api/v1/chat", "order-5xx", "{}", &r), 200);
	assert_false(replayed(&r));
	http_response_free(&r);
	assert_int_equal(fake_count(&fake, "creates"), creates + 1);

	/* A 4xx upstream gives for good is the key's answer. */
	assert_int_equal(fake_fault(&fake, "POST", "/api/v1/chat",
	                     "{\"mode\":\"status\",\"status\":422,\"body\":\"{\\\"detail\\\":\\\"no such index\\\"}\","
	                     "\"count\":1}"),
	    0);
	assert_int_equal(post(ANN, "/api/v1/chat", "order-4xx", "{}", &r), 422);
	http_response_free(&r);
	requests = fake_count(&fake, "api_requests");
	assert_int_equal(post(ANN, "/api/v1/chat", "order-4xx", "{}", &r), 422);
	assert_true(replayed(&r));
	assert_string_equal(r.body, "{\"detail\":\"no such index\"}");
	http_response_free(&r);
	assert_int_equal(fake_count(&fake, "api_requests"), requests);
}

static void
test_a_turn_with_a_used_key_is_a_409(void **state)
{
	struct http_response r;
	json_t *doc;
	char path[256];
	long streams;

	(void)state;
	assert_int_equal(post(ANN, "/api/v1/chat", NULL, "{}", &r), 200);
	doc = json_loads(r.body, 0, NULL);
	snprintf(path, sizeof(path), "/api/v1/chat/%s/messages/stream",
	    json_string_value(json_object_get(doc, "session_id")));
	json_decref(doc);
	http_response_free(&r);
	assert_int_equal(post(ANN, path, "turn-1", "{\"prompt\":\"hi\",\"index_ids\":[]}", &r), 200);
	assert_non_null(strstr(r.body, "\"type\":\"stop\""));
	http_response_free(&r);
	streams = fake_count(&fake, "streams");
	assert_int_equal(post(ANN, path, "turn-1", "{\"prompt\":\"hi\",\"index_ids\":[]}", &r), 409);
	assert_non_null(strstr(r.body, "cannot be replayed"));
	http_response_free(&r);
	/* Nor does a create take a turn's key. */
	assert_int_equal(post(ANN, "/api/v1/chat", "turn-1", "{}", &r), 422);
	http_response_free(&r);
	assert_int_equal(fake_count(&fake, "streams"), streams);
}

static void
test_a_replay_survives_a_restart(void **state)
{
	struct http_response r;
	long creates;

	(void)state;
	assert_int_equal(daemon_stop(&gw), 0);
	assert_int_equal(daemon_start(&gw, HARNESS_KEY), 0);
	creates = fake_count(&fake, "creates");
	assert_int_equal(post(ANN, "/api/v1/chat", "order-1", "{}", &r), 200);
	assert_true(replayed(&r));
	assert_string_equal(r.body, first_body);
	http_response_free(&r);
	assert_int_equal(fake_count(&fake, "creates"), creates);
}

struct removed_wait {
	double at_least;
};

static bool
keys_removed(void *arg)
{
	struct removed_wait *w = arg;

	return daemon_metric_as(&gw, ANN, "llamachatd_janitor_removed_total{kind=\"idempotency_keys\"}") >= w->at_least;
}

static void
test_keys_expire_and_the_janitor_removes_them(void **state)
{
	struct http_response r;
	struct removed_wait w;
	long offset = daemon_log_offset(&gw), requests;

	(void)state;
	write_config("ttl_s = 1;");
	kill(gw.pid, SIGHUP);
	daemon_wait_log(&gw, offset, "reloaded");
	w.at_least = daemon_metric_as(&gw, ANN, "llamachatd_janitor_removed_total{kind=\"idempotency_keys\"}") + 1;
	/* Every key stored so far is older than a second: order-1 is gone. */
	harness_wait(keys_removed, &w, 15000, "the janitor removing expired keys");
	requests = fake_count(&fake, "api_requests");
	assert_int_equal(post(ANN, "/api/v1/chat", "order-1", "{\"index_ids\":[\"idx-a\"]}", &r), 200);
	assert_false(replayed(&r));
	http_response_free(&r);
	/* Asked upstream again (which may dedupe on its own key for longer). */
	assert_int_equal(fake_count(&fake, "api_requests"), requests + 1);
}

/* A key whose record cannot be committed (the store is full for its
 * session) stays held: a retry gets 409, and never goes upstream again. */
static void
test_a_key_that_could_not_be_stored_stays_held(void **state)
{
	struct daemon_process d;
	struct http_response r;
	char sub[512], url[256];
	const char *headers[] = { "Content-Type: application/json", "Idempotency-Key: too-big-1", NULL };
	long requests;

	(void)state;
	snprintf(sub, sizeof(sub), "%s/full", dir);
	assert_int_equal(mkdir(sub, 0700), 0);
	daemon_write_config(&d, sub, fake.port, NULL, NULL, "map_size_mb = 1;");
	assert_int_equal(daemon_start(&d, HARNESS_KEY), 0);
	/* A session larger than the whole map: answered, not stored. */
	assert_int_equal(fake_fault(&fake, "POST", "/api/v1/chat", "{\"mode\":\"padded\",\"bytes\":1500000}"), 0);
	assert_int_equal(http_call("POST", daemon_url(&d, "/api/v1/chat", url, sizeof(url)), headers, "{}", 2, &r), 0);
	assert_int_equal(r.status, 200);
	http_response_free(&r);
	requests = fake_count(&fake, "api_requests");
	assert_int_equal(http_call("POST", daemon_url(&d, "/api/v1/chat", url, sizeof(url)), headers, "{}", 2, &r), 0);
	assert_int_equal(r.status, 409);
	http_response_free(&r);
	assert_int_equal(fake_count(&fake, "api_requests"), requests);
	assert_true(daemon_log_contains(&d, "stays held in memory"));
	assert_int_equal(daemon_stop(&d), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_a_retried_create_with_the_same_key_makes_one_session),
		cmocka_unit_test(test_the_same_key_for_another_request_is_a_422),
		cmocka_unit_test(test_keys_are_per_client),
		cmocka_unit_test(test_a_create_answered_with_another_clients_session_is_refused),
		cmocka_unit_test(test_malformed_keys_are_a_400),
		cmocka_unit_test(test_concurrent_requests_with_one_key_make_one_session),
		cmocka_unit_test(test_an_upstream_error_is_not_kept_and_a_final_refusal_is),
		cmocka_unit_test(test_a_turn_with_a_used_key_is_a_409),
		cmocka_unit_test(test_a_replay_survives_a_restart),
		cmocka_unit_test(test_keys_expire_and_the_janitor_removes_them),
		cmocka_unit_test(test_a_key_that_could_not_be_stored_stays_held),
	};
	int failed;

	curl_global_init(CURL_GLOBAL_DEFAULT);
	failed = cmocka_run_group_tests_name("integration: idempotency keys", tests, start_all, stop_all);
	curl_global_cleanup();
	return failed;
}
