/* Integration: spans over OTLP/HTTP to a collector (tests/fake/fake_collector.c):
 * a server span per request and a client span per upstream attempt, with
 * their parents, the HTTP and GenAI attributes and the usage of a stream's
 * stop event; nothing secret in them; a collector that is down costs
 * requests nothing and the spans it misses are counted. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

static struct fake_upstream fake;
static struct daemon_process gw;
static char *dir;
static pid_t collector_pid;
static int collector_port;

#define WORKER_TOKEN "tok-worker-otel-5e2"
#define WORKER "Authorization: Bearer " WORKER_TOKEN
#define WATCHER "Authorization: Bearer tok-watcher-otel-81a"
#define CLIENT_TRACE "4bf92f3577b34da6a3ce929d0e0e4736"
#define CLIENT_PARENT "00f067aa0ba902b7"

/* Starts the collector; returns its port, or -1. */
static int
collector_start(const char *where, pid_t *pid)
{
	char port_file[512], log_path[512], bin[512];
	const char *build = getenv("LLAMACHATD_BUILD");
	char *argv[] = { bin, "--port-file", port_file, NULL };

	snprintf(bin, sizeof(bin), "%s/tests/fake_collector", build != NULL ? build : "build/cc");
	snprintf(port_file, sizeof(port_file), "%s/collector.port", where);
	snprintf(log_path, sizeof(log_path), "%s/collector.log", where);
	unlink(port_file);
	if ((*pid = harness_spawn(argv, log_path)) < 0)
		return -1;
	for (int i = 0; i < 1000; i++) {
		char *text = harness_read_file(port_file);
		if (text != NULL) {
			int port = atoi(text);
			free(text);
			return port;
		}
		usleep(10000);
	}
	return -1;
}

/* Appends text to d's config file. */
static void
append_config(const struct daemon_process *d, const char *text)
{
	FILE *f = fopen(d->conf_path, "a");

	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static int
start_all(void **state)
{
	char extra[1024], worker[65], watcher[65];

	(void)state;
	dir = harness_make_dir("otel");
	if (dir == NULL || fake_start(&fake, dir) != 0 || (collector_port = collector_start(dir, &collector_pid)) < 0)
		return -1;
	daemon_write_config(&gw, dir, fake.port, NULL, NULL, NULL);
	harness_token_hex(WORKER_TOKEN, worker);
	harness_token_hex("tok-watcher-otel-81a", watcher);
	snprintf(extra, sizeof(extra),
	    "clients = ( { name = \"worker\"; token_sha256 = \"%s\"; },\n"
	    "            { name = \"watcher\"; token_sha256 = \"%s\"; metrics = true; } );\n"
	    "otel = { endpoint = \"http://127.0.0.1:%d/v1/traces\"; service_name = \"gw-otel-test\";\n"
	    "         export_interval_ms = 50; };\n",
	    worker, watcher, collector_port);
	append_config(&gw, extra);
	return daemon_start(&gw, HARNESS_KEY);
}

static int
stop_all(void **state)
{
	(void)state;
	daemon_kill(&gw);
	fake_stop(&fake);
	harness_stop_process(collector_pid);
	harness_remove_dir(dir);
	free(dir);
	return 0;
}

/* GET on the collector: its JSON (caller decrefs), or NULL. */
static json_t *
collector_get(const char *path)
{
	char url[128];
	struct http_response r;
	json_t *doc = NULL;

	snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", collector_port, path);
	if (http_call("GET", url, NULL, NULL, 0, &r) == 0) {
		doc = json_loads(r.body, 0, NULL);
		http_response_free(&r);
	}
	return doc;
}

/* Every body the collector received, as one string the caller frees. */
static char *
collector_raw(void)
{
	char url[128];
	struct http_response r;
	char *raw;

	snprintf(url, sizeof(url), "http://127.0.0.1:%d/_fake/raw", collector_port);
	assert_int_equal(http_call("GET", url, NULL, NULL, 0, &r), 0);
	raw = strdup(r.body);
	http_response_free(&r);
	return raw;
}

/* The spans the collector holds now (a new reference). */
static json_t *
collector_spans(void)
{
	json_t *doc = collector_get("/_fake/spans");
	json_t *spans = json_incref(json_object_get(doc, "spans"));

	assert_non_null(spans);
	json_decref(doc);
	return spans;
}

static const char *
span_str(const json_t *span, const char *member)
{
	return json_string_value(json_object_get(span, member));
}

static const json_t *
span_attr(const json_t *span, const char *key)
{
	return json_object_get(json_object_get(span, "attrs"), key);
}

static const char *
span_attr_str(const json_t *span, const char *key)
{
	return json_string_value(span_attr(span, key));
}

static long long
span_attr_int(const json_t *span, const char *key)
{
	const json_t *v = span_attr(span, key);

	return json_is_integer(v) ? json_integer_value(v) : -1;
}

/* The first span in spans of kind (2 server, 3 client) whose parent is
 * parent (NULL: any) and whose attribute key is value (NULL: any). */
static const json_t *
find_span(const json_t *spans, int kind, const char *parent, const char *key, const char *value)
{
	size_t i;
	const json_t *s;

	json_array_foreach(spans, i, s) {
		if (json_integer_value(json_object_get(s, "kind")) != kind)
			continue;
		if (parent != NULL &&
		    (span_str(s, "parentSpanId") == NULL || strcmp(span_str(s, "parentSpanId"), parent) != 0))
			continue;
		if (key != NULL && (span_attr_str(s, key) == NULL || strcmp(span_attr_str(s, key), value) != 0))
			continue;
		return s;
	}
	return NULL;
}

/* Spans of kind whose parent is parent. */
static size_t
count_children(const json_t *spans, int kind, const char *parent)
{
	size_t i, n = 0;
	const json_t *s;

	json_array_foreach(spans, i, s)
		if (json_integer_value(json_object_get(s, "kind")) == kind && span_str(s, "parentSpanId") != NULL &&
		    strcmp(span_str(s, "parentSpanId"), parent) == 0)
			n++;
	return n;
}

struct span_wait {
	const char *request_id; /* the server span that must have arrived */
	json_t *spans; /* then, all of them */
};

static bool
server_span_arrived(void *arg)
{
	struct span_wait *w = arg;

	json_decref(w->spans);
	w->spans = collector_spans();
	return find_span(w->spans, 2, NULL, "llamachatd.request_id", w->request_id) != NULL;
}

/* Waits for the server span of the request with request_id; returns every
 * span received by then (caller decrefs). The spans of one request reach
 * the queue before its server span ends (its upstream calls end first). */
static json_t *
wait_server_span(const char *request_id)
{
	struct span_wait w = { request_id, NULL };

	harness_wait(server_span_arrived, &w, HARNESS_WAIT_MS, request_id);
	return w.spans;
}

/* One call to the daemon as the worker, with a traceparent (NULL: none) and
 * a request id of our own to find its span by. Returns the status. */
static long
traced_call(const char *method, const char *path, const char *body, const char *traceparent, const char *request_id,
    struct http_response *r)
{
	char url[512], tp[128], rid[128];
	const char *headers[] = { "Content-Type: application/json", WORKER, rid, traceparent != NULL ? tp : NULL,
		NULL };
	long status;

	snprintf(tp, sizeof(tp), "traceparent: %s", traceparent != NULL ? traceparent : "");
	snprintf(rid, sizeof(rid), "X-Request-Id: %s", request_id);
	assert_int_equal(http_call(method, daemon_url(&gw, path, url, sizeof(url)), headers, body,
	                     body != NULL ? strlen(body) : 0, r),
	    0);
	status = r->status;
	return status;
}

/* The parent id in the traceparent upstream saw last. */
static void
upstream_parent(char out[17])
{
	json_t *stats = fake_stats(&fake);
	const char *tp = json_string_value(
	    json_object_get(json_object_get(json_object_get(stats, "last"), "headers"), "traceparent"));

	assert_non_null(tp);
	assert_int_equal(strlen(tp), 55);
	memcpy(out, tp + 36, 16);
	out[16] = '\0';
	json_decref(stats);
}

/* A create, a HIT and a stream: their server spans (children of the
 * client's span), the create's and the stream's client spans (children of
 * theirs, and the parents upstream was told of), the attributes, and the
 * stream's usage from its stop event. */
static void
test_create_hit_and_stream_make_their_spans(void **state)
{
	static const char tp[] = "00-" CLIENT_TRACE "-" CLIENT_PARENT "-01";
	struct http_response r;
	json_t *doc, *spans;
	const json_t *server, *client;
	char id[160], path[256], create_parent[17];
	const char *prompt = "what-is-in-the-vault-PROMPT-77c1";

	(void)state;
	assert_int_equal(traced_call("POST", "/api/v1/chat", "{}", tp, "otel-create-1", &r), 200);
	doc = json_loads(r.body, 0, NULL);
	snprintf(id, sizeof(id), "%s", json_string_value(json_object_get(doc, "session_id")));
	json_decref(doc);
	http_response_free(&r);
	upstream_parent(create_parent);

	snprintf(path, sizeof(path), "/api/v1/chat/%s/summary", id);
	assert_int_equal(traced_call("GET", path, NULL, tp, "otel-hit-1", &r), 200);
	http_response_free(&r);

	snprintf(path, sizeof(path), "/api/v1/chat/%s/messages/stream", id);
	{
		char body[256];
		snprintf(body, sizeof(body), "{\"prompt\":\"%s\",\"index_ids\":[]}", prompt);
		assert_int_equal(traced_call("POST", path, body, tp, "otel-stream-1", &r), 200);
		assert_non_null(strstr(r.body, "\"stop\""));
		http_response_free(&r);
	}
	spans = wait_server_span("otel-stream-1");
	json_decref(spans);
	spans = wait_server_span("otel-hit-1");

	/* The create: a server span under the client's, a client span under it. */
	server = find_span(spans, 2, CLIENT_PARENT, "llamachatd.request_id", "otel-create-1");
	assert_non_null(server);
	assert_string_equal(span_str(server, "traceId"), CLIENT_TRACE);
	assert_string_equal(span_str(server, "name"), "POST /api/v1/chat");
	assert_string_equal(span_attr_str(server, "http.request.method"), "POST");
	assert_string_equal(span_attr_str(server, "http.route"), "/api/v1/chat");
	assert_int_equal(span_attr_int(server, "http.response.status_code"), 200);
	assert_string_equal(span_attr_str(server, "enduser.id"), "worker");
	assert_string_equal(span_attr_str(server, "gen_ai.operation.name"), "chat");
	assert_string_equal(span_attr_str(server, "gen_ai.conversation.id"), id);
	client = find_span(spans, 3, span_str(server, "spanId"), NULL, NULL);
	assert_non_null(client);
	assert_int_equal(count_children(spans, 3, span_str(server, "spanId")), 1);
	assert_string_equal(span_str(client, "traceId"), CLIENT_TRACE);
	/* Upstream was told the client span is its parent. */
	assert_string_equal(span_str(client, "spanId"), create_parent);
	assert_string_equal(span_attr_str(client, "http.request.method"), "POST");
	assert_string_equal(span_attr_str(client, "server.address"), "127.0.0.1");
	assert_int_equal(span_attr_int(client, "server.port"), fake.port);
	assert_string_equal(span_attr_str(client, "url.path"), "/api/v1/chat");
	assert_int_equal(span_attr_int(client, "http.response.status_code"), 200);
	assert_int_equal(span_attr_int(client, "llamachatd.attempt"), 1);
	assert_string_equal(span_attr_str(client, "gen_ai.operation.name"), "chat");
	assert_true(strtoll(span_str(client, "startTimeUnixNano"), NULL, 10) >=
	    strtoll(span_str(server, "startTimeUnixNano"), NULL, 10));
	assert_true(strtoll(span_str(client, "endTimeUnixNano"), NULL, 10) <=
	    strtoll(span_str(server, "endTimeUnixNano"), NULL, 10));

	/* The HIT: a server span, and no upstream call under it. */
	server = find_span(spans, 2, CLIENT_PARENT, "llamachatd.request_id", "otel-hit-1");
	assert_non_null(server);
	assert_string_equal(span_str(server, "name"), "GET /api/v1/chat/{session_id}/summary");
	assert_string_equal(span_attr_str(server, "llamachatd.cache"), "HIT");
	assert_string_equal(span_attr_str(server, "gen_ai.conversation.id"), id);
	assert_int_equal(count_children(spans, 3, span_str(server, "spanId")), 0);

	/* The stream: usage from the stop event, on both spans. */
	server = find_span(spans, 2, CLIENT_PARENT, "llamachatd.request_id", "otel-stream-1");
	assert_non_null(server);
	assert_string_equal(span_attr_str(server, "http.route"), "/api/v1/chat/{session_id}/messages/stream");
	assert_int_equal(span_attr_int(server, "gen_ai.usage.input_tokens"), 100 + (long long)strlen(prompt));
	assert_int_equal(span_attr_int(server, "gen_ai.usage.output_tokens"), 7);
	client = find_span(spans, 3, span_str(server, "spanId"), NULL, NULL);
	assert_non_null(client);
	assert_int_equal(span_attr_int(client, "gen_ai.usage.input_tokens"), 100 + (long long)strlen(prompt));
	assert_int_equal(span_attr_int(client, "gen_ai.usage.output_tokens"), 7);
	assert_string_equal(span_attr_str(client, "gen_ai.conversation.id"), id);
	assert_string_equal(span_attr_str(client, "enduser.id"), "worker");
	json_decref(spans);

	/* The resource names the service. */
	doc = collector_get("/_fake/spans");
	assert_string_equal(
	    json_string_value(json_object_get(json_object_get(doc, "resource"), "service.name")), "gw-otel-test");
	assert_int_equal(json_integer_value(json_object_get(doc, "bad")), 0);
	json_decref(doc);

	/* Nothing secret went to the collector: no key, no token, no prompt,
	 * no answer. */
	{
		char *raw = collector_raw();
		assert_null(strstr(raw, HARNESS_KEY));
		assert_null(strstr(raw, WORKER_TOKEN));
		assert_null(strstr(raw, "Bearer"));
		assert_null(strstr(raw, prompt));
		assert_null(strstr(raw, "text_delta"));
		free(raw);
	}
}

/* A retried call has a client span per attempt, each with its number. */
static void
test_each_upstream_attempt_has_its_own_span(void **state)
{
	struct http_response r;
	json_t *spans;
	const json_t *server, *first, *second;
	char id[160], path[256];
	size_t i;
	const json_t *s;

	(void)state;
	daemon_create_session(&gw, WORKER, id, sizeof(id));
	assert_int_equal(
	    fake_fault(&fake, "GET", "/api/v1/chat/{id}/files", "{\"mode\":\"status\",\"status\":503,\"count\":1}"), 0);
	snprintf(path, sizeof(path), "/api/v1/chat/%s/files", id);
	assert_int_equal(traced_call("GET", path, NULL, NULL, "otel-retry-1", &r), 200);
	http_response_free(&r);
	spans = wait_server_span("otel-retry-1");
	server = find_span(spans, 2, NULL, "llamachatd.request_id", "otel-retry-1");
	assert_non_null(server);
	/* A trace of its own: no client traceparent, so no parent. */
	assert_null(span_str(server, "parentSpanId"));
	assert_int_equal(span_attr_int(server, "llamachatd.retries"), 1);
	assert_int_equal(count_children(spans, 3, span_str(server, "spanId")), 2);
	first = second = NULL;
	json_array_foreach(spans, i, s)
		if (json_integer_value(json_object_get(s, "kind")) == 3 && span_str(s, "parentSpanId") != NULL &&
		    strcmp(span_str(s, "parentSpanId"), span_str(server, "spanId")) == 0) {
			if (span_attr_int(s, "llamachatd.attempt") == 1)
				first = s;
			else if (span_attr_int(s, "llamachatd.attempt") == 2)
				second = s;
		}
	assert_non_null(first);
	assert_non_null(second);
	assert_int_equal(span_attr_int(first, "http.response.status_code"), 503);
	assert_string_equal(span_attr_str(first, "error.type"), "503");
	assert_int_equal(json_integer_value(json_object_get(json_object_get(first, "status"), "code")), 2);
	assert_int_equal(span_attr_int(second, "http.response.status_code"), 200);
	assert_int_equal(span_attr_int(second, "http.request.resend_count"), 1);
	assert_string_not_equal(span_str(first, "spanId"), span_str(second, "spanId"));
	json_decref(spans);
}

/* A client's "not sampled" is honoured: no span of its trace is recorded,
 * and upstream is told the same. */
static void
test_a_parent_that_is_not_sampled_records_nothing(void **state)
{
	static const char quiet_trace[] = "7a3c0e9b1d2f4a6c8e0b2d4f6a8c0e1f";
	struct http_response r;
	json_t *spans, *stats;
	char id[160], path[256];
	size_t i;
	const json_t *s;

	(void)state;
	daemon_create_session(&gw, WORKER, id, sizeof(id));
	snprintf(path, sizeof(path), "/api/v1/chat/%s", id);
	assert_int_equal(traced_call("GET", path, NULL, "00-7a3c0e9b1d2f4a6c8e0b2d4f6a8c0e1f-1111111111111111-00",
	                     "otel-quiet-1", &r),
	    200);
	http_response_free(&r);
	stats = fake_stats(&fake);
	assert_string_equal(json_string_value(json_object_get(
	                        json_object_get(json_object_get(stats, "last"), "headers"), "traceparent")) +
	        53,
	    "00");
	json_decref(stats);
	/* A sampled call after it: once its span is in, the quiet one's would be. */
	assert_int_equal(traced_call("GET", path, NULL, NULL, "otel-loud-1", &r), 200);
	http_response_free(&r);
	spans = wait_server_span("otel-loud-1");
	json_array_foreach(spans, i, s)
		assert_string_not_equal(span_str(s, "traceId"), quiet_trace);
	json_decref(spans);
}

/* A batch the collector refuses once is sent again: nothing is dropped. */
static void
test_a_batch_refused_once_is_sent_again(void **state)
{
	char url[128];
	struct http_response r;
	json_t *spans;
	double dropped = daemon_metric_as(&gw, WATCHER, "llamachatd_otel_spans_dropped_total");

	(void)state;
	assert_true(dropped >= 0);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/_fake/fail?count=1", collector_port);
	assert_int_equal(http_call("POST", url, NULL, "", 0, &r), 0);
	http_response_free(&r);
	assert_int_equal(traced_call("GET", "/api/v1/chat", NULL, NULL, "otel-again-1", &r), 200);
	http_response_free(&r);
	spans = wait_server_span("otel-again-1");
	json_decref(spans);
	assert_true(daemon_metric_as(&gw, WATCHER, "llamachatd_otel_spans_dropped_total") == dropped);
	assert_true(daemon_metric_as(&gw, WATCHER, "llamachatd_otel_spans_exported_total") > 0);
}

struct dropped_wait {
	const struct daemon_process *d;
	double baseline;
};

static bool
dropped_moved(void *arg)
{
	struct dropped_wait *w = arg;

	return daemon_metric(w->d, "llamachatd_otel_spans_dropped_total") > w->baseline;
}

/* With the collector down, every request is served and the spans it
 * misses are counted. */
static void
test_with_the_collector_down_requests_are_served_and_spans_counted(void **state)
{
	struct daemon_process solo;
	char *solo_dir = harness_make_dir("otel-down");
	char extra[256], id[160], path[256];
	struct dropped_wait w = { &solo, 0 };
	long offset;

	(void)state;
	daemon_write_config(&solo, solo_dir, fake.port, NULL, NULL, NULL);
	snprintf(extra, sizeof(extra),
	    "otel = { endpoint = \"http://127.0.0.1:%d/v1/traces\"; export_interval_ms = 20; timeout_ms = 500; "
	    "max_queued_spans = 16; };\n",
	    harness_unused_port());
	append_config(&solo, extra);
	assert_int_equal(daemon_start(&solo, HARNESS_KEY), 0);
	offset = daemon_log_offset(&solo);
	w.baseline = daemon_metric(&solo, "llamachatd_otel_spans_dropped_total");
	assert_true(w.baseline >= 0);
	daemon_create_session(&solo, NULL, id, sizeof(id));
	snprintf(path, sizeof(path), "/api/v1/chat/%s/summary", id);
	for (int i = 0; i < 200; i++)
		assert_int_equal(daemon_call(&solo, NULL, "GET", path, NULL, NULL), 200);
	harness_wait(dropped_moved, &w, HARNESS_WAIT_MS, "llamachatd_otel_spans_dropped_total to move");
	assert_int_equal(daemon_call(&solo, NULL, "GET", "/healthz", NULL, NULL), 200);
	daemon_wait_log(&solo, offset, "otel: cannot export spans");
	assert_int_equal(daemon_stop(&solo), 0);
	harness_remove_dir(solo_dir);
	free(solo_dir);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_create_hit_and_stream_make_their_spans),
		cmocka_unit_test(test_each_upstream_attempt_has_its_own_span),
		cmocka_unit_test(test_a_parent_that_is_not_sampled_records_nothing),
		cmocka_unit_test(test_a_batch_refused_once_is_sent_again),
		cmocka_unit_test(test_with_the_collector_down_requests_are_served_and_spans_counted),
	};

	return cmocka_run_group_tests(tests, start_all, stop_all);
}
