/* Integration: seeing what the gateway does: /metrics (checked by promtool),
 * /healthz, the access log, and llamachatctl on a store the daemon is
 * writing to. */
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

#include "gate/clients.h"
#include "harness.h"

static struct fake_upstream fake;
static struct daemon_process gw;
static char *dir;
static char access_path[512];

#define WATCHER "Authorization: Bearer tok-watcher-9d1"
#define WORKER "Authorization: Bearer tok-worker-4c7"

static int
start_all(void **state)
{
	char extra[700], watcher[65], worker[65];
	FILE *f;

	(void)state;
	dir = harness_make_dir("observe");
	if (dir == NULL || fake_start(&fake, dir) != 0)
		return -1;
	snprintf(access_path, sizeof(access_path), "%s/access.log", dir);
	daemon_write_config(&gw, dir, fake.port, NULL, NULL, NULL);
	harness_token_hex("tok-watcher-9d1", watcher);
	harness_token_hex("tok-worker-4c7", worker);
	f = fopen(gw.conf_path, "a");
	snprintf(extra, sizeof(extra),
	    "clients = ( { name = \"watcher\"; token_sha256 = \"%s\"; see_all = true; metrics = true; },\n"
	    "            { name = \"worker\"; token_sha256 = \"%s\"; } );\n",
	    watcher, worker);
	fputs(extra, f);
	fclose(f);
	/* The access log goes to a file of its own: swap the log group. */
	{
		char *text, *at;
		long len;
		f = fopen(gw.conf_path, "r");
		fseek(f, 0, SEEK_END);
		len = ftell(f);
		fseek(f, 0, SEEK_SET);
		text = calloc(1, (size_t)len + 1);
		if (fread(text, 1, (size_t)len, f) != (size_t)len)
			return -1;
		fclose(f);
		at = strstr(text, "log = { level = \"debug\"; };");
		f = fopen(gw.conf_path, "w");
		fwrite(text, 1, (size_t)(at - text), f);
		fprintf(f, "log = { level = \"debug\"; access_log = \"%s\"; };%s", access_path,
		    at + strlen("log = { level = \"debug\"; };"));
		fclose(f);
		free(text);
	}
	return daemon_start(&gw, HARNESS_KEY);
}

static int
stop_all(void **state)
{
	(void)state;
	daemon_kill(&gw);
	fake_stop(&fake);
	harness_remove_dir(dir);
	free(dir);
	return 0;
}

static long
call(const char *who, const char *method, const char *path, const char *body, struct http_response *out)
{
	const char *headers[] = { "Content-Type: application/json", who, NULL };
	struct http_response r;
	char url[512];
	long status;

	assert_int_equal(http_call(method, daemon_url(&gw, path, url, sizeof(url)), headers, body,
	                     body != NULL ? strlen(body) : 0, &r),
	    0);
	status = r.status;
	if (out != NULL)
		*out = r;
	else
		http_response_free(&r);
	return status;
}

static char *
scrape(void)
{
	struct http_response r;
	char *text;

	assert_int_equal(call(WATCHER, "GET", "/metrics", NULL, &r), 200);
	text = strdup(r.body);
	http_response_free(&r);
	return text;
}

static double
value_or_zero(double v)
{
	return v < 0 ? 0 : v;
}

/* A gauge in /metrics awaited: at least at_least, or (at_least < 0) at most
 * at_most. */
struct gauge_wait {
	const char *name;
	double at_least, at_most;
};

static bool
gauge_reached(void *arg)
{
	struct gauge_wait *w = arg;
	char *text = scrape();
	double v = harness_metric_sample(text, w->name);

	free(text);
	return w->at_least >= 0 ? v >= w->at_least : v <= w->at_most;
}

struct access_wait {
	long offset;
	char *line;
	size_t size;
	char needle[128];
};

static bool
access_line_found(void *arg)
{
	struct access_wait *w = arg;

	return harness_file_line_since(access_path, w->offset, w->needle, w->line, w->size) != NULL;
}

/* How many lines of the access log after offset hold needle. */
static int
count_lines_since(long offset, const char *needle)
{
	FILE *f = fopen(access_path, "r");
	char line[2048];
	int n = 0;

	if (f == NULL)
		return 0;
	fseek(f, offset, SEEK_SET);
	while (fgets(line, sizeof(line), f) != NULL)
		if (strstr(line, needle) != NULL)
			n++;
	fclose(f);
	return n;
}

static char created[64];

static void
test_metrics_move_and_pass_promtool(void **state)
{
	char *before, *after, path[256], line[1024], file[600], *out;
	struct http_response r;
	json_t *doc;
	FILE *f;

	(void)state;
	before = scrape();
	assert_int_equal(call(WORKER, "POST", "/api/v1/chat", "{}", &r), 200);
	doc = json_loads(r.body, 0, NULL);
	snprintf(created, sizeof(created), "%s", json_string_value(json_object_get(doc, "session_id")));
	json_decref(doc);
	http_response_free(&r);
	snprintf(path, sizeof(path), "/api/v1/chat/%s/summary", created);
	assert_int_equal(call(WORKER, "GET", path, NULL, NULL), 200); /* a hit */
	assert_int_equal(call(WATCHER, "GET", "/api/v1/chat/ses-upstream-only/summary", NULL, NULL), 404); /* a miss */
	assert_int_equal(call("Authorization: Bearer nope", "GET", "/api/v1/chat", NULL, NULL), 401);
	after = scrape();

	assert_true(
	    value_or_zero(harness_metric_sample(after, "llamachatd_requests_total{route=\"create\",status=\"200\"}")) ==
	    value_or_zero(harness_metric_sample(before, "llamachatd_requests_total{route=\"create\",status=\"200\"}")) +
	        1);
	assert_true(harness_metric_sample(after, "llamachatd_cache_hits_total") ==
	    harness_metric_sample(before, "llamachatd_cache_hits_total") + 1);
	assert_true(harness_metric_sample(after, "llamachatd_cache_misses_total") ==
	    harness_metric_sample(before, "llamachatd_cache_misses_total") + 1);
	assert_true(
	    value_or_zero(harness_metric_sample(after, "llamachatd_requests_total{route=\"other\",status=\"401\"}")) ==
	    value_or_zero(harness_metric_sample(before, "llamachatd_requests_total{route=\"other\",status=\"401\"}")) +
	        1);
	assert_true(
	    harness_metric_sample(after,
	        "llamachatd_client_sessions_created_total{client=\"worker\",organization_id=\"\",project_id=\"\"}") >=
	    1);
	assert_true(harness_metric_sample(after, "llamachatd_store_sessions") >= 1);
	/* The create's commit was timed: answered only after it, so it is in. */
	assert_true(harness_metric_sample(after, "llamachatd_store_commit_duration_seconds_count") >=
	    harness_metric_sample(before, "llamachatd_store_commit_duration_seconds_count") + 1);
	assert_true(harness_metric_sample(after, "llamachatd_store_commit_duration_seconds_sum") >
	    harness_metric_sample(before, "llamachatd_store_commit_duration_seconds_sum"));

	snprintf(file, sizeof(file), "%s/metrics.txt", dir);
	f = fopen(file, "w");
	fputs(after, f);
	fclose(f);
	snprintf(line, sizeof(line), "promtool check metrics < %s", file);
	{
		char *argv[] = { "/bin/sh", "-c", line, NULL };
		int rc = run_command(argv, NULL, NULL, &out);
		if (rc != 0)
			fprintf(stderr, "promtool: %s\n", out);
		assert_int_equal(rc, 0);
		free(out);
	}
	free(before);
	free(after);

	/* Connections open now are counted: three idle ones come and go. The
	 * daemon accepts and notices closes on its loop, so wait for it. */
	{
		int fds[3];
		struct gauge_wait w = { .name = "llamachatd_connections_open" };
		char *text = scrape();
		double base = harness_metric_sample(text, w.name);
		free(text);
		for (int i = 0; i < 3; i++)
			fds[i] = harness_connect(gw.port);
		w.at_least = base + 3;
		harness_wait(gauge_reached, &w, HARNESS_WAIT_MS, "three more connections open in /metrics");
		for (int i = 0; i < 3; i++)
			close(fds[i]);
		w.at_least = -1;
		w.at_most = base;
		harness_wait(gauge_reached, &w, HARNESS_WAIT_MS, "the three connections closed in /metrics");
	}

	/* Only clients allowed to may read it. */
	assert_int_equal(call(WORKER, "GET", "/metrics", NULL, NULL), 403);
	assert_int_equal(call("X-No: 1", "GET", "/metrics", NULL, NULL), 401);
}

/* Waits for the access-log line of request id (after offset) and copies it
 * into line. The daemon writes it once the answer is on the socket, which
 * may be just after the client has read it. */
static void
wait_access_line(long offset, const char *id, char *line, size_t size)
{
	struct access_wait w = { .offset = offset, .line = line, .size = size };
	char what[160];

	snprintf(w.needle, sizeof(w.needle), "request_id=%s\n", id);
	snprintf(what, sizeof(what), "the access-log line of request %s", id);
	harness_wait(access_line_found, &w, HARNESS_WAIT_MS, what);
}

static void
test_access_log_has_one_line_per_request_with_its_id(void **state)
{
	const char *headers[] = { "Content-Type: application/json", WORKER, "X-Request-Id: trace-0042.a", NULL };
	struct http_response r;
	char url[256], made[80], replaced[80], line[2048];
	json_t *stats;
	long offset = harness_file_offset(access_path);

	(void)state;
	/* A request id of the client's own is kept and passed upstream. */
	assert_int_equal(http_call("POST", daemon_url(&gw, "/api/v1/chat", url, sizeof(url)), headers, "{}", 2, &r), 0);
	assert_string_equal(http_header(&r, "X-Request-Id", made, sizeof(made)), "trace-0042.a");
	http_response_free(&r);
	stats = fake_stats(&fake);
	assert_string_equal(json_string_value(json_object_get(
	                        json_object_get(json_object_get(stats, "last"), "headers"), "x-request-id")),
	    "trace-0042.a");
	json_decref(stats);
	wait_access_line(offset, "trace-0042.a", line, sizeof(line));
	assert_non_null(strstr(line, "client=worker method=POST path=\"/api/v1/chat\" status=200 bytes="));
	assert_non_null(strstr(line, " duration="));
	assert_non_null(strstr(line, " upstream=0."));

	/* One without gets one made, the same in the answer, upstream and the log. */
	assert_int_equal(call(WORKER, "POST", "/api/v1/chat", "{}", &r), 200);
	assert_non_null(http_header(&r, "X-Request-Id", made, sizeof(made)));
	http_response_free(&r);
	stats = fake_stats(&fake);
	assert_string_equal(json_string_value(json_object_get(
	                        json_object_get(json_object_get(stats, "last"), "headers"), "x-request-id")),
	    made);
	json_decref(stats);
	wait_access_line(offset, made, line, sizeof(line));
	assert_non_null(strstr(line, "client=worker method=POST path=\"/api/v1/chat\" status=200 bytes="));
	assert_non_null(strstr(line, " upstream=0."));

	/* A bad one is replaced, in the answer and in the log. */
	{
		const char *bad[] = { WORKER, "X-Request-Id: has spaces and \"quotes\"", NULL };
		assert_int_equal(
		    http_call("GET", daemon_url(&gw, "/api/v1/chat", url, sizeof(url)), bad, NULL, 0, &r), 0);
		assert_non_null(http_header(&r, "X-Request-Id", replaced, sizeof(replaced)));
		assert_string_not_equal(replaced, "has spaces and \"quotes\"");
		http_response_free(&r);
	}
	wait_access_line(offset, replaced, line, sizeof(line));
	assert_non_null(strstr(line, "client=worker method=GET path=\"/api/v1/chat\" status=200 bytes="));
	assert_null(strstr(line, "quotes"));

	/* Each request has exactly one line. */
	assert_int_equal(count_lines_since(offset, "request_id=trace-0042.a\n"), 1);
	snprintf(line, sizeof(line), "request_id=%s\n", made);
	assert_int_equal(count_lines_since(offset, line), 1);
	snprintf(line, sizeof(line), "request_id=%s\n", replaced);
	assert_int_equal(count_lines_since(offset, line), 1);
}

static void
test_healthz(void **state)
{
	struct http_response r;
	json_t *doc;

	(void)state;
	assert_int_equal(call("X-Anyone: 1", "GET", "/healthz", NULL, &r), 200);
	doc = json_loads(r.body, 0, NULL);
	assert_string_equal(json_string_value(json_object_get(doc, "status")), "ok");
	assert_true(json_is_true(json_object_get(json_object_get(doc, "store"), "writable")));
	assert_true(json_is_string(json_object_get(json_object_get(doc, "upstream"), "last_answer")));
	assert_true(json_number_value(json_object_get(doc, "uptime_seconds")) > 0);
	json_decref(doc);
	http_response_free(&r);
}

static void
test_healthz_turns_503_when_the_store_is_full_and_back(void **state)
{
	struct daemon_process d;
	struct http_response r;
	char sub[512], url[256];
	const char *json[] = { "Content-Type: application/json", NULL };

	(void)state;
	snprintf(sub, sizeof(sub), "%s/full", dir);
	assert_int_equal(mkdir(sub, 0700), 0);
	daemon_write_config(&d, sub, fake.port, NULL, NULL, "map_size_mb = 1;");
	assert_int_equal(daemon_start(&d, HARNESS_KEY), 0);
	assert_int_equal(http_call("GET", daemon_url(&d, "/healthz", url, sizeof(url)), NULL, NULL, 0, &r), 0);
	assert_int_equal(r.status, 200);
	http_response_free(&r);
	/* A session larger than the whole map: the store cannot take it. */
	assert_int_equal(fake_fault(&fake, "POST", "/api/v1/chat", "{\"mode\":\"padded\",\"bytes\":1500000}"), 0);
	assert_int_equal(http_call("POST", daemon_url(&d, "/api/v1/chat", url, sizeof(url)), json, "{}", 2, &r), 0);
	assert_int_equal(r.status, 200);
	http_response_free(&r);
	assert_int_equal(http_call("GET", daemon_url(&d, "/healthz", url, sizeof(url)), NULL, NULL, 0, &r), 0);
	assert_int_equal(r.status, 503);
	assert_non_null(strstr(r.body, "\"full\""));
	http_response_free(&r);
	/* The next write that fits brings it back. */
	assert_int_equal(http_call("POST", daemon_url(&d, "/api/v1/chat", url, sizeof(url)), json, "{}", 2, &r), 0);
	http_response_free(&r);
	assert_int_equal(http_call("GET", daemon_url(&d, "/healthz", url, sizeof(url)), NULL, NULL, 0, &r), 0);
	assert_int_equal(r.status, 200);
	http_response_free(&r);
	assert_int_equal(daemon_stop(&d), 0);
}

/* Runs llamachatctl with args on the gateway's store; output in *out. */
static int
ctl(const char *args, const char *input, char **out)
{
	char line[2048];
	char *argv[] = { "/bin/sh", "-c", line, NULL };

	snprintf(line, sizeof(line), "%s/llamachatctl --store %s/store %s", getenv("LLAMACHATD_BUILD"), dir, args);
	return run_command_input(argv, input, NULL, NULL, out);
}

static void
test_llamachatctl_reads_the_store_the_daemon_writes(void **state)
{
	char *out, id[64], path[256];
	struct http_response r;
	json_t *doc, *item;
	size_t i, sessions;
	int rows = 0;

	(void)state;
	/* The daemon keeps writing while the tool reads. */
	for (int n = 0; n < 3; n++) {
		assert_int_equal(call(WORKER, "POST", "/api/v1/chat?project_id=p-ctl", "{}", &r), 200);
		doc = json_loads(r.body, 0, NULL);
		snprintf(id, sizeof(id), "%s", json_string_value(json_object_get(doc, "session_id")));
		json_decref(doc);
		http_response_free(&r);
		assert_int_equal(ctl("sessions", NULL, &out), 0);
		assert_non_null(strstr(out, id));
		free(out);
	}
	snprintf(path, sizeof(path), "/api/v1/chat/%s/messages/stream", id);
	assert_int_equal(call(WORKER, "POST", path, "{\"prompt\":\"count me\",\"index_ids\":[]}", NULL), 200);

	assert_int_equal(ctl("sessions --client worker --project p-ctl --json", NULL, &out), 0);
	doc = json_loads(out, 0, NULL);
	assert_true(json_is_array(doc));
	assert_int_equal(json_array_size(doc), 3);
	json_array_foreach(doc, i, item) {
		assert_string_equal(json_string_value(json_object_get(item, "client")), "worker");
		assert_string_equal(json_string_value(json_object_get(item, "project_id")), "p-ctl");
	}
	json_decref(doc);
	free(out);

	assert_int_equal(ctl("sessions --csv --limit 1000", NULL, &out), 0);
	{
		const char *header = "session_id,client,organization_id,project_id,last_updated_at,";
		assert_true(strncmp(out, header, strlen(header)) == 0);
	}
	for (char *p = out; (p = strchr(p, '\n')) != NULL; p++)
		rows++;
	free(out);
	assert_int_equal(ctl("stats", NULL, &out), 0);
	sessions = (size_t)atol(strstr(out, "sessions:") + 9);
	assert_true(sessions >= 3);
	free(out);
	assert_int_equal((size_t)rows, sessions + 1); /* a header and a row each */

	snprintf(path, sizeof(path), "show %s", id);
	assert_int_equal(ctl(path, NULL, &out), 0);
	doc = json_loads(out, 0, NULL);
	assert_string_equal(json_string_value(json_object_get(json_object_get(doc, "session"), "session_id")), id);
	assert_string_equal(json_string_value(json_object_get(doc, "client")), "worker");
	json_decref(doc);
	free(out);
	assert_int_equal(ctl("show ses-not-there", NULL, &out), 1);
	free(out);

	assert_int_equal(ctl("usage --json", NULL, &out), 0);
	doc = json_loads(out, 0, NULL);
	json_array_foreach(doc, i, item)
		if (strcmp(json_string_value(json_object_get(item, "client")), "worker") == 0) {
			assert_true(json_integer_value(json_object_get(item, "sessions")) >= 5);
			assert_int_equal(json_integer_value(json_object_get(item, "turns")), 1);
			assert_int_equal(json_integer_value(json_object_get(item, "input_tokens")), 108);
		}
	json_decref(doc);
	free(out);
	assert_int_equal(ctl("usage --by project --csv", NULL, &out), 0);
	assert_non_null(strstr(out, "project,sessions,turns"));
	assert_non_null(strstr(out, "\"p-ctl\",3,1,"));
	free(out);

	assert_int_equal(ctl("hash-token", "tok-worker-4c7\n", &out), 0);
	{
		char worker[65];
		harness_token_hex("tok-worker-4c7", worker);
		assert_non_null(strstr(out, worker));
	}
	free(out);

	/* A missing store is a clear error. */
	{
		char *argv[] = { "/bin/sh", "-c", "$LLAMACHATD_BUILD/llamachatctl --store /nonexistent/store stats",
			NULL };
		assert_int_equal(run_command(argv, NULL, NULL, &out), 1);
		assert_non_null(strstr(out, "/nonexistent/store"));
		free(out);
	}
}

static void
test_purge_removes_exactly_the_old_sessions(void **state)
{
	char *out, recent[64], url[128], path[256], value[16];
	struct http_response r;
	json_t *doc;

	(void)state;
	/* Sessions so far carry the fake's April clock: months old. */
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/_fake/now", fake.port);
	assert_int_equal(http_call("POST", url, NULL, "", 0, &r), 0);
	http_response_free(&r);
	assert_int_equal(call(WORKER, "POST", "/api/v1/chat", "{}", &r), 200);
	doc = json_loads(r.body, 0, NULL);
	snprintf(recent, sizeof(recent), "%s", json_string_value(json_object_get(doc, "session_id")));
	json_decref(doc);
	http_response_free(&r);

	/* Without a terminal, purge wants --yes. */
	assert_int_equal(ctl("purge --older-than 30", NULL, &out), 1);
	assert_non_null(strstr(out, "--yes"));
	free(out);
	snprintf(path, sizeof(path), "/api/v1/chat/%s/summary", created);
	assert_int_equal(call(WORKER, "GET", path, NULL, &r), 200);
	assert_string_equal(http_header(&r, "X-Cache", value, sizeof(value)), "HIT");
	http_response_free(&r);

	assert_int_equal(ctl("purge --older-than 30 --yes", NULL, &out), 0);
	assert_non_null(strstr(out, "removed"));
	free(out);
	assert_int_equal(ctl("sessions --limit 1000", NULL, &out), 0);
	assert_non_null(strstr(out, recent));
	assert_null(strstr(out, created));
	free(out);
	/* The daemon sees it too: the old one is no longer stored, the new one is. */
	assert_int_equal(call(WATCHER, "GET", path, NULL, &r), 200);
	assert_string_equal(http_header(&r, "X-Cache", value, sizeof(value)), "MISS");
	http_response_free(&r);
	snprintf(path, sizeof(path), "/api/v1/chat/%s/summary", recent);
	assert_int_equal(call(WORKER, "GET", path, NULL, &r), 200);
	assert_string_equal(http_header(&r, "X-Cache", value, sizeof(value)), "HIT");
	http_response_free(&r);
}

static void
test_daemon_stops_cleanly(void **state)
{
	(void)state;
	assert_int_equal(daemon_stop(&gw), 0);
	assert_false(daemon_log_contains(&gw, HARNESS_KEY));
}

/* The traceparent upstream saw on the fake's last request ("" for none). */
static void
upstream_traceparent(char *out, size_t size)
{
	json_t *stats = fake_stats(&fake);
	const char *tp = json_string_value(
	    json_object_get(json_object_get(json_object_get(stats, "last"), "headers"), "traceparent"));

	snprintf(out, size, "%s", tp != NULL ? tp : "");
	json_decref(stats);
}

/* W3C trace context: a client's trace goes on upstream with the daemon's
 * span as the parent; without one, or with a malformed one, a new trace
 * starts. The access line carries the trace id. */
static void
test_trace_context_goes_upstream(void **state)
{
	static const char client_trace[] = "0af7651916cd43dd8448eb211c80319c";
	const char *traced[] = { "Content-Type: application/json", WORKER,
		"traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", NULL };
	const char *malformed[] = { "Content-Type: application/json", WORKER, "traceparent: 00-xyz-b7ad6b7169203331-01",
		NULL };
	const char *plain[] = { "Content-Type: application/json", WORKER, NULL };
	char url[256], tp[128], line[2048], needle[64];
	struct http_response r;
	long offset = harness_file_offset(access_path);

	(void)state;
	daemon_url(&gw, "/api/v1/chat", url, sizeof(url));
	assert_int_equal(http_call("POST", url, traced, "{}", 2, &r), 0);
	assert_int_equal(r.status, 200);
	http_response_free(&r);
	upstream_traceparent(tp, sizeof(tp));
	assert_int_equal(strlen(tp), 55);
	assert_true(strncmp(tp, "00-0af7651916cd43dd8448eb211c80319c-", 36) == 0);
	assert_null(strstr(tp, "b7ad6b7169203331")); /* the daemon's span is the parent now */
	assert_string_equal(tp + 52, "-01");
	snprintf(needle, sizeof(needle), "trace_id=%s ", client_trace);
	harness_wait_file(access_path, offset, needle);
	(void)line;

	for (int i = 0; i < 2; i++) {
		assert_int_equal(http_call("POST", url, i == 0 ? plain : malformed, "{}", 2, &r), 0);
		assert_int_equal(r.status, 200);
		http_response_free(&r);
		upstream_traceparent(tp, sizeof(tp));
		assert_int_equal(strlen(tp), 55);
		assert_true(strncmp(tp, "00-", 3) == 0);
		assert_false(strncmp(tp + 3, client_trace, 32) == 0);
		assert_true(strspn(tp + 3, "0123456789abcdef") >= 32);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_metrics_move_and_pass_promtool),
		cmocka_unit_test(test_access_log_has_one_line_per_request_with_its_id),
		cmocka_unit_test(test_trace_context_goes_upstream),
		cmocka_unit_test(test_healthz),
		cmocka_unit_test(test_healthz_turns_503_when_the_store_is_full_and_back),
		cmocka_unit_test(test_llamachatctl_reads_the_store_the_daemon_writes),
		cmocka_unit_test(test_purge_removes_exactly_the_old_sessions),
		cmocka_unit_test(test_daemon_stops_cleanly),
	};
	int failed;

	curl_global_init(CURL_GLOBAL_DEFAULT);
	failed = cmocka_run_group_tests_name("integration: observability", tests, start_all, stop_all);
	curl_global_cleanup();
	return failed;
}
