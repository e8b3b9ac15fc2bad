/* Integration: an upstream that fails. The circuit breaker opens after
 * consecutive failures, answers at once while open (the store still
 * serving), lets one probe through after its wait, and closes when the
 * probe succeeds; one log line per change of state. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"

static struct fake_upstream fake;
static struct daemon_process gw;
static char *dir;

static int
start_all(void **state)
{
	(void)state;
	dir = harness_make_dir("faults");
	if (dir == NULL || fake_start(&fake, dir) != 0)
		return -1;
	daemon_write_config(&gw, dir, fake.port,
	    "stream_idle_timeout_ms = 1000;\nbreaker = { failures = 5; open_ms = 8000; };", NULL, NULL);
	return daemon_start(&gw, HARNESS_KEY);
}

static int
stop_all(void **state)
{
	(void)state;
	harness_suite_stop(&dir, &fake, &gw);
	return 0;
}

/* How often needle occurs in the daemon's log after offset. */
static int
log_count_since(long offset, const char *needle)
{
	FILE *f = fopen(gw.log_path, "r");
	char line[4096];
	int count = 0;

	if (f == NULL)
		return 0;
	fseek(f, offset, SEEK_SET);
	while (fgets(line, sizeof(line), f) != NULL)
		count += strstr(line, needle) != NULL;
	fclose(f);
	return count;
}

static bool
probe_closed_it(void *arg)
{
	(void)arg;
	return daemon_call(&gw, NULL, "POST", "/api/v1/chat", "{}", NULL) == 200;
}

static void
test_the_breaker_opens_sheds_load_and_closes_after_a_probe(void **state)
{
	char id[64], path[160], value[32];
	struct http_response r;
	long offset = daemon_log_offset(&gw), requests;
	json_t *doc;

	(void)state;
	assert_int_equal(daemon_call(&gw, NULL, "POST", "/api/v1/chat", "{}", &r), 200);
	doc = json_loads(r.body, 0, NULL);
	snprintf(id, sizeof(id), "%s", json_string_value(json_object_get(doc, "session_id")));
	json_decref(doc);
	http_response_free(&r);

	/* Five 5xx answers in a row open it. */
	assert_int_equal(
	    fake_fault(&fake, "POST", "/api/v1/chat", "{\"mode\":\"status\",\"status\":503,\"count\":5}"), 0);
	for (int i = 0; i < 5; i++)
		assert_int_equal(daemon_call(&gw, NULL, "POST", "/api/v1/chat", "{}", NULL), 503);
	daemon_wait_log(&gw, offset, "circuit breaker open");
	assert_true(daemon_metric(&gw, "llamachatd_upstream_breaker_state") == 1);

	/* While open (8 s: longer than the 200 calls take, even on a slow
	 * machine), calls are answered at once and nothing goes upstream. */
	requests = fake_count(&fake, "api_requests");
	for (int i = 0; i < 200; i++) {
		assert_int_equal(daemon_call(&gw, NULL, "POST", "/api/v1/chat", "{}", &r), 503);
		if (i == 0) {
			assert_non_null(strstr(r.body, "circuit breaker open since"));
			assert_non_null(http_header(&r, "Retry-After", value, sizeof(value)));
		}
		http_response_free(&r);
	}
	assert_int_equal(fake_count(&fake, "api_requests"), requests);
	/* The store still answers. */
	snprintf(path, sizeof(path), "/api/v1/chat/%s/summary", id);
	assert_int_equal(daemon_call(&gw, NULL, "GET", path, NULL, NULL), 200);
	assert_int_equal(daemon_call(&gw, NULL, "GET", "/api/v1/chat", NULL, NULL), 200);
	assert_int_equal(daemon_call(&gw, NULL, "GET", "/healthz", NULL, &r), 200);
	assert_non_null(strstr(r.body, "\"breaker\":\"open\""));
	http_response_free(&r);

	/* After its wait one probe goes through; upstream is well again, so
	 * the breaker closes. */
	harness_wait(probe_closed_it, NULL, 30000, "a probe to close the breaker");
	assert_true(daemon_metric(&gw, "llamachatd_upstream_breaker_state") == 0);
	assert_int_equal(fake_count(&fake, "api_requests"), requests + 1);
	assert_int_equal(log_count_since(offset, "circuit breaker open"), 1);
	assert_int_equal(log_count_since(offset, "circuit breaker half-open"), 1);
	assert_int_equal(log_count_since(offset, "circuit breaker closed"), 1);
}

/* A session the fake holds and the daemon's store does not: its id. */
static void
session_at_the_fake(char *id, size_t size)
{
	const char *headers[] = { "Authorization: Bearer " HARNESS_KEY, "Content-Type: application/json", NULL };
	struct http_response r;
	char url[256];
	json_t *doc;

	snprintf(url, sizeof(url), "http://127.0.0.1:%d/api/v1/chat", fake.port);
	assert_int_equal(http_call("POST", url, headers, "{}", 2, &r), 0);
	doc = json_loads(r.body, 0, NULL);
	snprintf(id, size, "%s", json_string_value(json_object_get(doc, "session_id")));
	json_decref(doc);
	http_response_free(&r);
}

/* Calls that change nothing, or the same thing again, are retried where
 * repeating is safe; a create only with an Idempotency-Key. */
static void
test_safe_calls_are_retried_and_only_they(void **state)
{
	char id[64], path[160];
	long requests, creates, offset = daemon_log_offset(&gw);
	double retries = daemon_metric(&gw, "llamachatd_upstream_retries_total{reason=\"5xx\"}");
	const char *keyed[] = { "Content-Type: application/json", "Idempotency-Key: retry-me-1", NULL };
	struct http_response r;
	char url[256];

	(void)state;
	/* A summary miss meeting 503 twice, then 200. */
	session_at_the_fake(id, sizeof(id));
	snprintf(path, sizeof(path), "/api/v1/chat/%s/summary", id);
	assert_int_equal(
	    fake_fault(&fake, "GET", "/api/v1/chat/{id}/summary", "{\"mode\":\"status\",\"status\":503,\"count\":2}"),
	    0);
	requests = fake_count(&fake, "api_requests");
	assert_int_equal(daemon_call(&gw, NULL, "GET", path, NULL, NULL), 200);
	assert_int_equal(fake_count(&fake, "api_requests"), requests + 3);
	daemon_wait_log(&gw, offset, "retries=2");
	assert_true(daemon_metric(&gw, "llamachatd_upstream_retries_total{reason=\"5xx\"}") >= retries + 2);

	/* A 429 whose Retry-After is past upstream.retry_max_wait_ms passes
	 * through at once; a short one is waited out. */
	session_at_the_fake(id, sizeof(id));
	snprintf(path, sizeof(path), "/api/v1/chat/%s", id);
	assert_int_equal(fake_fault(&fake, "GET", "/api/v1/chat/{id}",
	                     "{\"mode\":\"status\",\"status\":429,\"retry_after\":\"30\"}"),
	    0);
	requests = fake_count(&fake, "api_requests");
	assert_int_equal(daemon_call(&gw, NULL, "GET", path, NULL, NULL), 429);
	assert_int_equal(fake_count(&fake, "api_requests"), requests + 1);
	assert_int_equal(
	    fake_fault(&fake, "GET", "/api/v1/chat/{id}", "{\"mode\":\"status\",\"status\":429,\"retry_after\":\"1\"}"),
	    0);
	assert_int_equal(daemon_call(&gw, NULL, "GET", path, NULL, NULL), 200);
	assert_int_equal(fake_count(&fake, "api_requests"), requests + 3);

	/* A passed-through GET (a sub-resource no handler knows) meeting 502
	 * once is asked again before its answer starts. */
	session_at_the_fake(id, sizeof(id));
	snprintf(path, sizeof(path), "/api/v1/chat/%s/files", id);
	assert_int_equal(
	    fake_fault(&fake, "GET", "/api/v1/chat/{id}/files", "{\"mode\":\"status\",\"status\":502}"), 0);
	requests = fake_count(&fake, "api_requests");
	assert_int_equal(daemon_call(&gw, NULL, "GET", path, NULL, &r), 200);
	assert_non_null(strstr(r.body, "\"files\""));
	http_response_free(&r);
	assert_int_equal(fake_count(&fake, "api_requests"), requests + 2);

	/* A create without a key is never retried once it may have reached
	 * upstream; with a key it is, and makes one session. */
	assert_int_equal(fake_fault(&fake, "POST", "/api/v1/chat", "{\"mode\":\"status\",\"status\":503}"), 0);
	requests = fake_count(&fake, "api_requests");
	assert_int_equal(daemon_call(&gw, NULL, "POST", "/api/v1/chat", "{}", NULL), 503);
	assert_int_equal(fake_count(&fake, "api_requests"), requests + 1);
	assert_int_equal(fake_fault(&fake, "POST", "/api/v1/chat", "{\"mode\":\"status\",\"status\":503}"), 0);
	creates = fake_count(&fake, "creates");
	assert_int_equal(http_call("POST", daemon_url(&gw, "/api/v1/chat", url, sizeof(url)), keyed, "{}", 2, &r), 0);
	assert_int_equal(r.status, 200);
	http_response_free(&r);
	assert_int_equal(fake_count(&fake, "api_requests"), requests + 3);
	assert_int_equal(fake_count(&fake, "creates"), creates + 1);
}

/* A create without a key whose connection dies once the request went out
 * is never sent again, not even by libcurl on a fresh connection: 502 that
 * says a session may exist, and upstream saw it once. With a key it is
 * retried and makes one session. */
static void
test_a_keyless_create_is_never_sent_twice(void **state)
{
	const char *keyed[] = { "Content-Type: application/json", "Idempotency-Key: reset-me-1", NULL };
	struct http_response r;
	long requests, creates;
	char url[256], value[16];

	(void)state;
	/* A create first, so that the next goes on a reused connection. */
	assert_int_equal(daemon_call(&gw, NULL, "POST", "/api/v1/chat", "{}", NULL), 200);
	assert_int_equal(fake_fault(&fake, "POST", "/api/v1/chat", "{\"mode\":\"reset\"}"), 0);
	requests = fake_count(&fake, "api_requests");
	creates = fake_count(&fake, "creates");
	assert_int_equal(daemon_call(&gw, NULL, "POST", "/api/v1/chat", "{}", &r), 502);
	assert_non_null(strstr(r.body, "session may exist"));
	assert_string_equal(http_header(&r, "x-should-retry", value, sizeof(value)), "false");
	http_response_free(&r);
	assert_int_equal(fake_count(&fake, "api_requests"), requests + 1);
	assert_int_equal(fake_count(&fake, "creates"), creates);

	assert_int_equal(fake_fault(&fake, "POST", "/api/v1/chat", "{\"mode\":\"reset\"}"), 0);
	assert_int_equal(http_call("POST", daemon_url(&gw, "/api/v1/chat", url, sizeof(url)), keyed, "{}", 2, &r), 0);
	assert_int_equal(r.status, 200);
	http_response_free(&r);
	assert_int_equal(fake_count(&fake, "creates"), creates + 1);
}

/* Starts a stream of a new session on d, held by the fake after its first
 * event; returns the client's socket. */
static int
held_stream(struct daemon_process *d)
{
	static const char body[] = "{\"prompt\":\"hold\",\"index_ids\":[]}";
	char request[1024], id[64];
	struct http_response r;
	long held = fake_count(&fake, "streams_held");
	json_t *doc;
	int fd, len;

	assert_int_equal(daemon_call(d, NULL, "POST", "/api/v1/chat", "{}", &r), 200);
	doc = json_loads(r.body, 0, NULL);
	snprintf(id, sizeof(id), "%s", json_string_value(json_object_get(doc, "session_id")));
	json_decref(doc);
	http_response_free(&r);
	assert_int_equal(fake_fault(&fake, "POST", "/api/v1/chat/{id}/messages/stream", "{\"mode\":\"hold\"}"), 0);
	len = snprintf(request, sizeof(request),
	    "POST /api/v1/chat/%s/messages/stream HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
	    "Content-Length: %zu\r\n\r\n%s",
	    id, strlen(body), body);
	fd = harness_connect(d->port);
	assert_int_equal(write(fd, request, (size_t)len), len);
	fake_wait_count(&fake, "streams_held", held + 1);
	return fd;
}

/* Reads the raw chunked answer to its end: it must stop without the last
 * chunk, after a comment naming the cause. */
static void
expect_cut(int fd, const char *comment)
{
	char got[16384];
	size_t have = 0;
	ssize_t n;

	while (have < sizeof(got) - 1 && (n = read(fd, got + have, sizeof(got) - 1 - have)) > 0)
		have += (size_t)n;
	got[have] = '\0';
	close(fd);
	assert_true(strncmp(got, "HTTP/1.1 200 ", 13) == 0);
	assert_non_null(strstr(got, comment));
	if (have >= 5 && strcmp(got + have - 5, "0\r\n\r\n") == 0)
		fail_msg("a cut stream ended with the last chunk:\n%s", got);
}

/* A stream upstream lets go quiet past stream_idle_timeout_ms is cut, and
 * looks cut. */
static void
test_a_stream_timed_out_upstream_looks_cut(void **state)
{
	double cuts = daemon_metric(&gw, "llamachatd_streams_cut_total{cause=\"timeout\"}");
	long offset = daemon_log_offset(&gw);
	int fd = held_stream(&gw);

	(void)state;
	expect_cut(fd, ": upstream ended the stream early: timeout");
	daemon_wait_log(&gw, offset, "cut=timeout");
	assert_true(daemon_metric(&gw, "llamachatd_streams_cut_total{cause=\"timeout\"}") >= cuts + 1);
	fake_release(&fake);
}

/* A daemon stopped past its drain time cuts the streams it still holds. */
static void
test_a_stream_the_daemon_stops_past_its_drain_looks_cut(void **state)
{
	struct daemon_process d;
	char sub[200];
	FILE *f;
	int fd;

	(void)state;
	snprintf(sub, sizeof(sub), "%s/drain", dir);
	assert_int_equal(mkdir(sub, 0700), 0);
	snprintf(d.conf_path, sizeof(d.conf_path), "%s/llamachatd.conf", sub);
	snprintf(d.log_path, sizeof(d.log_path), "%s/daemon.log", sub);
	snprintf(d.dir, sizeof(d.dir), "%s", sub);
	d.bin = NULL;
	f = fopen(d.conf_path, "w");
	fprintf(f,
	    "listen = [ \"127.0.0.1:0\" ];\nupstream = { base_url = \"http://127.0.0.1:%d\"; };\n"
	    "store = { path = \"%s/store\"; };\nlimits = { drain_timeout_ms = 300; };\nlog = { level = \"debug\"; };\n",
	    fake.port, sub);
	fclose(f);
	assert_int_equal(daemon_start(&d, HARNESS_KEY), 0);
	fd = held_stream(&d);
	kill(d.pid, SIGTERM);
	expect_cut(fd, ": llamachatd stopped before the stream ended: shutdown");
	assert_true(daemon_log_contains(&d, "cut=shutdown"));
	daemon_stop(&d);
	fake_release(&fake);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_safe_calls_are_retried_and_only_they),
		cmocka_unit_test(test_a_keyless_create_is_never_sent_twice),
		cmocka_unit_test(test_a_stream_timed_out_upstream_looks_cut),
		cmocka_unit_test(test_a_stream_the_daemon_stops_past_its_drain_looks_cut),
		cmocka_unit_test(test_the_breaker_opens_sheds_load_and_closes_after_a_probe),
	};
	return cmocka_run_group_tests_name("integration: upstream faults", tests, start_all, stop_all);
}
