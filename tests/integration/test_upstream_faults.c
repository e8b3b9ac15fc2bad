/* Integration: an upstream that fails. The circuit breaker opens after
 * consecutive failures, answers at once while open (the store still
 * serving), lets one probe through after its wait, and closes when the
 * probe succeeds; one log line per change of state. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
	daemon_write_config(&gw, dir, fake.port, "breaker = { failures = 5; open_ms = 8000; };", NULL, NULL);
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

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_safe_calls_are_retried_and_only_they),
		cmocka_unit_test(test_a_keyless_create_is_never_sent_twice),
		cmocka_unit_test(test_the_breaker_opens_sheds_load_and_closes_after_a_probe),
	};
	return cmocka_run_group_tests_name("integration: upstream faults", tests, start_all, stop_all);
}
