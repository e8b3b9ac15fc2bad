/* Integration: every error the foundation names, each with a JSON detail, and
 * the daemon serving on afterwards. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"

static struct fake_upstream fake;
static struct daemon_process main_daemon;
static char *dir;

static const char *const json_headers[] = { "Content-Type: application/json", NULL };

static int
start_all(void **state)
{
	(void)state;
	dir = harness_make_dir("errors");
	if (dir == NULL || fake_start(&fake, dir) != 0)
		return -1;
	daemon_write_config(&main_daemon, dir, fake.port, "request_timeout_ms = 700;", "max_body_bytes = 1024;", NULL);
	return daemon_start(&main_daemon, HARNESS_KEY);
}

static int
stop_all(void **state)
{
	(void)state;
	daemon_kill(&main_daemon);
	fake_stop(&fake);
	harness_remove_dir(dir);
	free(dir);
	return 0;
}

/* Calls the main daemon and checks the status and that the answer is a JSON
 * error with a non-empty detail; returns the response for more checks. */
static void
expect_error(const char *method, const char *path, const char *const *headers, const char *body, long status,
    struct http_response *r)
{
	char url[512], value[128];
	json_t *doc;

	assert_int_equal(http_call(method, daemon_url(&main_daemon, path, url, sizeof(url)), headers, body,
	                     body != NULL ? strlen(body) : 0, r),
	    0);
	assert_int_equal(r->status, status);
	assert_non_null(http_header(r, "Content-Type", value, sizeof(value)));
	assert_string_equal(value, "application/json");
	doc = json_loads(r->body, 0, NULL);
	assert_non_null(doc);
	assert_true(json_is_string(json_object_get(doc, "detail")));
	assert_true(json_string_length(json_object_get(doc, "detail")) > 0);
	json_decref(doc);
}

static bool
says_no_retry(const struct http_response *r)
{
	char value[32];
	return http_header(r, "x-should-retry", value, sizeof(value)) != NULL && strcmp(value, "false") == 0;
}

static void
test_bad_client_input_never_reaches_upstream(void **state)
{
	struct http_response r;
	const char *const text_headers[] = { "Content-Type: text/plain", NULL };
	char big[1600];
	long before = fake_count(&fake, "api_requests");

	(void)state;
	expect_error("POST", "/api/v1/chat", json_headers, "{\"index_ids\": [", 400, &r);
	assert_true(says_no_retry(&r));
	assert_non_null(strstr(r.body, "not valid JSON"));
	http_response_free(&r);

	expect_error("POST", "/api/v1/chat", json_headers, "{\"index_ids\": []}", 422, &r);
	assert_true(says_no_retry(&r));
	http_response_free(&r);
	expect_error("POST", "/api/v1/chat", json_headers, "{\"index_ids\": [\"\"]}", 422, &r);
	http_response_free(&r);
	expect_error("POST", "/api/v1/chat", json_headers, "{\"index_ids\": \"idx-1\"}", 422, &r);
	http_response_free(&r);
	expect_error("POST", "/api/v1/chat", json_headers, "[1, 2]", 422, &r);
	http_response_free(&r);

	expect_error("POST", "/api/v1/chat", text_headers, "{}", 415, &r);
	assert_true(says_no_retry(&r));
	http_response_free(&r);

	/* Over limits.max_body_bytes (1024 here), yet valid JSON. */
	memset(big, ' ', sizeof(big));
	memcpy(big, "{\"index_ids\": null", 18);
	big[sizeof(big) - 2] = '}';
	big[sizeof(big) - 1] = '\0';
	expect_error("POST", "/api/v1/chat", json_headers, big, 413, &r);
	assert_non_null(strstr(r.body, "max_body_bytes"));
	http_response_free(&r);

	expect_error("POST", "/api/v1/chat?project_id=bad%20id", json_headers, "{}", 400, &r);
	http_response_free(&r);

	assert_int_equal(fake_count(&fake, "api_requests"), before);
}

static void
test_unknown_paths_and_wrong_methods(void **state)
{
	struct http_response r;
	char allow[64];

	(void)state;
	expect_error("GET", "/nowhere", NULL, NULL, 404, &r);
	http_response_free(&r);
	expect_error("GET", "/api/v1/chat/ses-1/unknown", NULL, NULL, 404, &r);
	http_response_free(&r);

	expect_error("DELETE", "/api/v1/chat", NULL, NULL, 405, &r);
	assert_string_equal(http_header(&r, "Allow", allow, sizeof(allow)), "GET, POST");
	http_response_free(&r);
	expect_error("POST", "/api/v1/chat/ses-1/summary", json_headers, "{}", 405, &r);
	assert_string_equal(http_header(&r, "Allow", allow, sizeof(allow)), "GET");
	http_response_free(&r);
}

static void
test_unusable_session_ids_are_400(void **state)
{
	struct http_response r;
	char path[512];
	long before = fake_count(&fake, "api_requests");

	(void)state;
	expect_error("GET", "/api/v1/chat//summary", NULL, NULL, 400, &r);
	http_response_free(&r);
	expect_error("GET", "/api/v1/chat/ses-1/summary/", NULL, NULL, 400, &r);
	http_response_free(&r);
	expect_error("GET", "/api/v1/chat/ses%2F1/summary", NULL, NULL, 400, &r);
	http_response_free(&r);
	expect_error("GET", "/api/v1/chat/ses%01/summary", NULL, NULL, 400, &r);
	http_response_free(&r);
	memset(path, 0, sizeof(path));
	strcpy(path, "/api/v1/chat/");
	memset(path + strlen(path), 'x', 129);
	strcat(path, "/summary");
	expect_error("GET", path, NULL, NULL, 400, &r);
	http_response_free(&r);
	assert_int_equal(fake_count(&fake, "api_requests"), before);
}

static void
test_upstream_errors_pass_through_faithfully(void **state)
{
	struct http_response r;
	char value[64];

	(void)state;
	assert_int_equal(fake_fault(&fake, "POST", "/api/v1/chat",
	                     "{\"mode\":\"status\",\"status\":429,\"body\":\"{\\\"detail\\\":\\\"slow down\\\"}\"}"),
	    0);
	expect_error("POST", "/api/v1/chat", json_headers, "{}", 429, &r);
	assert_string_equal(r.body, "{\"detail\":\"slow down\"}");
	assert_string_equal(http_header(&r, "Retry-After", value, sizeof(value)), "7");
	assert_null(http_header(&r, "Set-Cookie", value, sizeof(value)));
	http_response_free(&r);

	assert_int_equal(fake_fault(&fake, "GET", "/api/v1/chat/{id}/summary",
	                     "{\"mode\":\"status\",\"status\":500,\"body\":\"{\\\"detail\\\":\\\"boom\\\"}\"}"),
	    0);
	expect_error("GET", "/api/v1/chat/ses-unseen/summary", NULL, NULL, 500, &r);
	assert_string_equal(r.body, "{\"detail\":\"boom\"}");
	http_response_free(&r);
}

static void
test_upstream_redirects_are_never_followed(void **state)
{
	struct http_response r;
	char url[256], value[128];
	long before = fake_count(&fake, "api_requests");

	(void)state;
	assert_int_equal(
	    fake_fault(&fake, "POST", "/api/v1/chat", "{\"mode\":\"status\",\"status\":307,\"body\":\"{}\"}"), 0);
	assert_int_equal(
	    http_call("POST", daemon_url(&main_daemon, "/api/v1/chat", url, sizeof(url)), json_headers, "{}", 2, &r),
	    0);
	assert_int_equal(r.status, 307);
	assert_null(http_header(&r, "Location", value, sizeof(value)));
	http_response_free(&r);
	assert_int_equal(fake_count(&fake, "api_requests"), before + 1);
}

/* Raw bytes that are not HTTP, or half a request: the daemon drops the
 * connection and goes on serving everyone else. */
static void
test_garbage_on_the_wire_does_not_hurt(void **state)
{
	const char *garbage[] = {
		"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 TLS hello\r\n\r\n",
		"GET\r\n\r\n",
		"POST /api/v1/chat HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
		"POST /api/v1/chat HTTP/1.1\r\nContent-Length: 10\r\n\r\n{",
		"GET /api/v1/chat/x/summary HTTP/1.1\r\nBad Header Line\r\n\r\n",
		"POST /api/v1/chat HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
	};
	struct http_response r;
	char url[256];

	(void)state;
	for (size_t i = 0; i < sizeof(garbage) / sizeof(garbage[0]); i++) {
		int fd = harness_connect(main_daemon.port);
		assert_true(fd >= 0);
		assert_true(write(fd, garbage[i], strlen(garbage[i])) > 0);
		/* Half-sent requests are left hanging: close without reading. */
		close(fd);
	}
	assert_int_equal(
	    http_call("POST", daemon_url(&main_daemon, "/api/v1/chat", url, sizeof(url)), json_headers, "{}", 2, &r),
	    0);
	assert_int_equal(r.status, 200);
	http_response_free(&r);
}

static void
test_upstream_answer_that_is_not_a_session_is_502(void **state)
{
	struct http_response r;

	(void)state;
	assert_int_equal(fake_fault(&fake, "POST", "/api/v1/chat", "{\"mode\":\"invalid\"}"), 0);
	expect_error("POST", "/api/v1/chat", json_headers, "{}", 502, &r);
	/* The session may exist upstream: a retry could duplicate it. */
	assert_true(says_no_retry(&r));
	assert_non_null(strstr(r.body, "not a chat session"));
	http_response_free(&r);
}

static void
test_upstream_too_slow_is_504(void **state)
{
	struct http_response r;

	(void)state;
	assert_int_equal(fake_fault(&fake, "POST", "/api/v1/chat", "{\"mode\":\"delay\",\"ms\":3000}"), 0);
	expect_error("POST", "/api/v1/chat", json_headers, "{}", 504, &r);
	assert_true(says_no_retry(&r)); /* a create that was sent may have happened */
	http_response_free(&r);

	assert_int_equal(fake_fault(&fake, "GET", "/api/v1/chat/{id}/summary", "{\"mode\":\"delay\",\"ms\":3000}"), 0);
	expect_error("GET", "/api/v1/chat/ses-slow/summary", NULL, NULL, 504, &r);
	assert_false(says_no_retry(&r)); /* a lookup is safe to retry */
	http_response_free(&r);
}

static void
test_unreachable_upstream_is_502(void **state)
{
	struct daemon_process d;
	struct http_response r;
	char url[256], sub[512];

	(void)state;
	snprintf(sub, sizeof(sub), "%s/unreachable", dir);
	assert_int_equal(mkdir(sub, 0700), 0);
	daemon_write_config(&d, sub, harness_unused_port(), NULL, NULL, NULL);
	assert_int_equal(daemon_start(&d, HARNESS_KEY), 0);
	assert_int_equal(
	    http_call("POST", daemon_url(&d, "/api/v1/chat", url, sizeof(url)), json_headers, "{}", 2, &r), 0);
	assert_int_equal(r.status, 502);
	assert_non_null(strstr(r.body, "unreachable"));
	assert_false(says_no_retry(&r)); /* nothing was sent: a retry is safe */
	http_response_free(&r);
	assert_int_equal(daemon_stop(&d), 0);
}

/* All upstream.max_connections are busy (one, held by a stream): a create
 * waits inside curl for a connection, where curl's own timeouts do not run.
 * It gets 503 after connect_timeout_ms (2 s here) with nothing sent, the daemon counts
 * it, and once the connection is free calls go through again, also ones
 * that then take longer than connect_timeout_ms upstream. */
static void
test_no_free_upstream_connection_is_503_after_connect_timeout(void **state)
{
	struct fake_upstream own; /* its counters see this test's calls alone */
	struct daemon_process d;
	struct http_response r;
	char sub[512], id[64], got[16384] = "";
	const char *kind = "llamachatd_upstream_errors_total{kind=\"no_connection\"}";
	long creates, held;
	double waited;
	size_t have = 0;
	json_t *doc;
	int fd;

	(void)state;
	snprintf(sub, sizeof(sub), "%s/one-connection", dir);
	assert_int_equal(mkdir(sub, 0700), 0);
	assert_int_equal(fake_start(&own, sub), 0);
	daemon_write_config(&d, sub, own.port, "max_connections = 1;", NULL, NULL);
	assert_int_equal(daemon_start(&d, HARNESS_KEY), 0);
	assert_int_equal(daemon_call(&d, NULL, "POST", "/api/v1/chat", "{}", &r), 200);
	doc = json_loads(r.body, 0, NULL);
	snprintf(id, sizeof(id), "%s", json_string_value(json_object_get(doc, "session_id")));
	json_decref(doc);
	http_response_free(&r);

	held = fake_count(&own, "streams_held");
	assert_int_equal(fake_fault(&own, "POST", "/api/v1/chat/{id}/messages/stream", "{\"mode\":\"hold\"}"), 0);
	fd = harness_send_raw_stream(d.port, id, "{\"prompt\":\"hold the line\",\"index_ids\":[]}");
	assert_true(fd >= 0);
	fake_wait_count(&own, "streams_held", held + 1);

	waited = daemon_metric(&d, kind);
	creates = fake_count(&own, "creates");
	assert_int_equal(daemon_call(&d, NULL, "POST", "/api/v1/chat", "{}", &r), 503);
	assert_non_null(strstr(r.body, "no upstream connection was free within upstream.connect_timeout_ms (2000 ms)"));
	assert_false(says_no_retry(&r)); /* nothing was sent: a retry is safe */
	http_response_free(&r);
	assert_int_equal(fake_count(&own, "creates"), creates);
	assert_true(daemon_metric(&d, kind) >= waited + 1);

	/* The stream ends; its connection serves the next calls, a slow one too. */
	assert_int_equal(fake_release(&own), 1);
	while (have < sizeof(got) - 1 && strstr(got, "\r\n0\r\n\r\n") == NULL) {
		ssize_t n = read(fd, got + have, sizeof(got) - 1 - have);
		assert_true(n > 0);
		have += (size_t)n;
		got[have] = '\0';
	}
	close(fd);
	assert_int_equal(fake_fault(&own, "POST", "/api/v1/chat", "{\"mode\":\"delay\",\"ms\":2500}"), 0);
	assert_int_equal(daemon_call(&d, NULL, "POST", "/api/v1/chat", "{}", NULL), 200);
	assert_int_equal(fake_count(&own, "creates"), creates + 1);
	assert_int_equal(daemon_stop(&d), 0);
	fake_stop(&own);
}

static void
test_without_a_key_lookups_work_and_upstream_calls_are_503(void **state)
{
	struct daemon_process d;
	struct http_response r;
	char url[256], sub[512], path[128], value[16];
	json_t *doc;

	(void)state;
	/* A session stored by the main daemon, then a keyless daemon on the same store. */
	assert_int_equal(
	    http_call("POST", daemon_url(&main_daemon, "/api/v1/chat", url, sizeof(url)), json_headers, "{}", 2, &r),
	    0);
	assert_int_equal(r.status, 200);
	doc = json_loads(r.body, 0, NULL);
	snprintf(path, sizeof(path), "/api/v1/chat/%s/summary", json_string_value(json_object_get(doc, "session_id")));
	json_decref(doc);
	http_response_free(&r);

	snprintf(sub, sizeof(sub), "%s/nokey", dir);
	assert_int_equal(mkdir(sub, 0700), 0);
	daemon_write_config(&d, sub, fake.port, NULL, NULL, NULL);
	/* One daemon per store: a second one on the main daemon's store is
	 * refused, so the main one steps aside for the keyless one. */
	{
		FILE *conf = fopen(d.conf_path, "w");
		fprintf(conf, "listen = [\"127.0.0.1:0\"];\nstore = { path = \"%s/store\"; };\n", dir);
		fclose(conf);
		char *argv[] = { (char *)harness_daemon_bin(), "-c", d.conf_path, NULL };
		char *out;
		assert_int_equal(run_command(argv, "LLAMA_CLOUD_API_KEY", NULL, &out), 1);
		assert_non_null(strstr(out, "in use by another llamachatd (pid"));
		free(out);
	}
	assert_int_equal(daemon_stop(&main_daemon), 0);
	FILE *f = fopen(d.conf_path, "w");
	fprintf(f,
	    "listen = [\"127.0.0.1:0\"];\nupstream = { base_url = \"http://127.0.0.1:%d\"; };\n"
	    "store = { path = \"%s/store\"; };\n",
	    fake.port, dir);
	fclose(f);
	assert_int_equal(daemon_start(&d, NULL), 0);
	assert_true(daemon_log_contains(&d, "no LlamaCloud API key"));

	assert_int_equal(http_call("GET", daemon_url(&d, path, url, sizeof(url)), NULL, NULL, 0, &r), 0);
	assert_int_equal(r.status, 200);
	assert_string_equal(http_header(&r, "X-Cache", value, sizeof(value)), "HIT");
	http_response_free(&r);

	assert_int_equal(
	    http_call("POST", daemon_url(&d, "/api/v1/chat", url, sizeof(url)), json_headers, "{}", 2, &r), 0);
	assert_int_equal(r.status, 503);
	assert_non_null(strstr(r.body, "LLAMA_CLOUD_API_KEY"));
	assert_true(says_no_retry(&r));
	http_response_free(&r);
	assert_int_equal(daemon_stop(&d), 0);
	assert_int_equal(daemon_start(&main_daemon, HARNESS_KEY), 0);
}

static void
test_full_store_still_answers_the_client(void **state)
{
	struct daemon_process d;
	struct http_response r;
	char url[256], sub[512], path[128], value[16];
	char last_id[64] = "";

	(void)state;
	snprintf(sub, sizeof(sub), "%s/full", dir);
	assert_int_equal(mkdir(sub, 0700), 0);
	daemon_write_config(&d, sub, fake.port, NULL, NULL, "map_size_mb = 1;");
	assert_int_equal(daemon_start(&d, HARNESS_KEY), 0);
	/* Sessions of 300 KB each: the 1 MiB map fills after a few. */
	assert_int_equal(
	    fake_fault(&fake, "POST", "/api/v1/chat", "{\"mode\":\"padded\",\"bytes\":300000,\"count\":5}"), 0);
	for (int i = 0; i < 5; i++) {
		json_t *doc;
		assert_int_equal(
		    http_call("POST", daemon_url(&d, "/api/v1/chat", url, sizeof(url)), json_headers, "{}", 2, &r), 0);
		/* The session exists upstream: the client gets it, never an error. */
		assert_int_equal(r.status, 200);
		doc = json_loads(r.body, 0, NULL);
		snprintf(last_id, sizeof(last_id), "%s", json_string_value(json_object_get(doc, "session_id")));
		json_decref(doc);
		http_response_free(&r);
	}
	assert_true(daemon_log_contains(&d, "is full"));

	/* What could not be stored is read through on lookup. */
	snprintf(path, sizeof(path), "/api/v1/chat/%s/summary", last_id);
	assert_int_equal(http_call("GET", daemon_url(&d, path, url, sizeof(url)), NULL, NULL, 0, &r), 0);
	assert_int_equal(r.status, 200);
	assert_string_equal(http_header(&r, "X-Cache", value, sizeof(value)), "MISS");
	http_response_free(&r);
	assert_int_equal(daemon_stop(&d), 0);
}

/* The store cannot even queue the write (its copy of the write cannot be
 * allocated): the client still gets upstream's session, once, and the
 * daemon goes on. This pins a use-after-free of the create's state on that
 * path, which the sanitizer build reports. */
static void
test_create_is_answered_when_the_store_cannot_queue_its_write(void **state)
{
	struct daemon_process d;
	struct http_response r;
	char url[256], sub[512], path[128], value[16], logged[128];
	char *env[] = { "LLAMACHATD_FAILALLOC_CALLOC_MIN=200000", NULL };
	long creates = fake_count(&fake, "creates"), log_at;
	json_t *doc;

	(void)state;
	snprintf(sub, sizeof(sub), "%s/nomem", dir);
	assert_int_equal(mkdir(sub, 0700), 0);
	daemon_write_config(&d, sub, fake.port, NULL, NULL, NULL);
	d.bin = harness_test_daemon_bin();
	assert_int_equal(daemon_start_with(&d, HARNESS_KEY, env, NULL), 0);
	log_at = daemon_log_offset(&d);
	/* A 300 KB session: the store's copy of its write is what fails. */
	assert_int_equal(fake_fault(&fake, "POST", "/api/v1/chat", "{\"mode\":\"padded\",\"bytes\":300000}"), 0);
	assert_int_equal(
	    http_call("POST", daemon_url(&d, "/api/v1/chat", url, sizeof(url)), json_headers, "{}", 2, &r), 0);
	assert_int_equal(r.status, 200);
	doc = json_loads(r.body, 0, NULL);
	assert_non_null(json_string_value(json_object_get(doc, "session_id")));
	snprintf(path, sizeof(path), "/api/v1/chat/%s/summary", json_string_value(json_object_get(doc, "session_id")));
	snprintf(logged, sizeof(logged), "could not store session %s",
	    json_string_value(json_object_get(doc, "session_id")));
	json_decref(doc);
	http_response_free(&r);
	assert_int_equal(fake_count(&fake, "creates"), creates + 1);
	daemon_wait_log(&d, log_at, logged);

	/* Nothing was stored, so a lookup reads it through; small writes work. */
	assert_int_equal(http_call("GET", daemon_url(&d, path, url, sizeof(url)), NULL, NULL, 0, &r), 0);
	assert_int_equal(r.status, 200);
	assert_string_equal(http_header(&r, "X-Cache", value, sizeof(value)), "MISS");
	http_response_free(&r);
	assert_int_equal(
	    http_call("POST", daemon_url(&d, "/api/v1/chat", url, sizeof(url)), json_headers, "{}", 2, &r), 0);
	assert_int_equal(r.status, 200);
	http_response_free(&r);
	assert_int_equal(daemon_stop(&d), 0);
}

static void
test_daemon_still_serves_after_all_that(void **state)
{
	struct http_response r;
	char url[256];
	const char *body = "{\"index_ids\":[\"idx-1\"]}";

	(void)state;
	assert_int_equal(http_call("POST", daemon_url(&main_daemon, "/api/v1/chat", url, sizeof(url)), json_headers,
	                     body, strlen(body), &r),
	    0);
	assert_int_equal(r.status, 200);
	http_response_free(&r);
	assert_int_equal(daemon_stop(&main_daemon), 0);
	assert_false(daemon_log_contains(&main_daemon, HARNESS_KEY));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bad_client_input_never_reaches_upstream),
		cmocka_unit_test(test_unknown_paths_and_wrong_methods),
		cmocka_unit_test(test_unusable_session_ids_are_400),
		cmocka_unit_test(test_upstream_errors_pass_through_faithfully),
		cmocka_unit_test(test_upstream_redirects_are_never_followed),
		cmocka_unit_test(test_garbage_on_the_wire_does_not_hurt),
		cmocka_unit_test(test_upstream_answer_that_is_not_a_session_is_502),
		cmocka_unit_test(test_upstream_too_slow_is_504),
		cmocka_unit_test(test_unreachable_upstream_is_502),
		cmocka_unit_test(test_no_free_upstream_connection_is_503_after_connect_timeout),
		cmocka_unit_test(test_without_a_key_lookups_work_and_upstream_calls_are_503),
		cmocka_unit_test(test_full_store_still_answers_the_client),
		cmocka_unit_test(test_create_is_answered_when_the_store_cannot_queue_its_write),
		cmocka_unit_test(test_daemon_still_serves_after_all_that),
	};
	int failed;

	curl_global_init(CURL_GLOBAL_DEFAULT);
	failed = cmocka_run_group_tests_name("integration: errors", tests, start_all, stop_all);
	curl_global_cleanup();
	return failed;
}
