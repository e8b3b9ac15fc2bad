/* Integration: the rest of the chat API through the daemon: lists from the
 * store, history, delete, relayed message streams, and the route policy. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"

static struct fake_upstream fake;
static struct daemon_process daemon_proc;
static char *dir;

static const char *const json_headers[] = { "Content-Type: application/json", NULL };

static int
start_all(void **state)
{
	(void)state;
	return harness_suite_start("chat-api", &dir, &fake, &daemon_proc);
}

static int
stop_all(void **state)
{
	(void)state;
	harness_suite_stop(&dir, &fake, &daemon_proc);
	return 0;
}

static json_t *
call_json(const char *method, const char *path, const char *body, long expect_status)
{
	struct http_response r;
	char url[512];
	json_t *doc;

	assert_int_equal(http_call(method, daemon_url(&daemon_proc, path, url, sizeof(url)), json_headers, body,
	                     body != NULL ? strlen(body) : 0, &r),
	    0);
	if (r.status != expect_status)
		fprintf(stderr, "%s %s -> %ld %s\n", method, path, r.status, r.body);
	assert_int_equal(r.status, expect_status);
	doc = json_loads(r.body, 0, NULL);
	http_response_free(&r);
	return doc;
}

/* Creates a session through the daemon in project; copies its id into id. */
static void
create(const char *project, char *id, size_t size)
{
	char path[256];
	json_t *doc;

	snprintf(path, sizeof(path), "/api/v1/chat%s%s", project != NULL ? "?project_id=" : "",
	    project != NULL ? project : "");
	doc = call_json("POST", path, "{}", 200);
	snprintf(id, size, "%s", json_string_value(json_object_get(doc, "session_id")));
	json_decref(doc);
}

/* Walks every page of a project's list with page_size, checking that the ids
 * come in order and each once; returns how many. */
static size_t
walk_pages(const char *project, int page_size, char ids[][16], size_t max_ids, bool create_midway)
{
	char path[1024], token[700] = "";
	size_t seen = 0;

	for (int pages = 0; pages < 1000; pages++) {
		json_t *doc, *items, *item, *next;
		size_t i;
		snprintf(path, sizeof(path), "/api/v1/chat?project_id=%s&page_size=%d%s%s", project, page_size,
		    token[0] != '\0' ? "&page_token=" : "", token);
		doc = call_json("GET", path, NULL, 200);
		items = json_object_get(doc, "items");
		next = json_object_get(doc, "next_page_token");
		assert_true(json_is_array(items));
		/* Never an empty page with a token: SDKs would page forever. */
		if (json_array_size(items) == 0)
			assert_null(next);
		assert_true(json_array_size(items) <= (size_t)page_size);
		json_array_foreach(items, i, item) {
			assert_true(seen < max_ids);
			snprintf(ids[seen++], 16, "%s", json_string_value(json_object_get(item, "session_id")));
		}
		if (next == NULL) {
			json_decref(doc);
			return seen;
		}
		snprintf(token, sizeof(token), "%s", json_string_value(next));
		json_decref(doc);
		if (create_midway && pages == 0) {
			char fresh[64];
			create(project, fresh, sizeof(fresh)); /* newer than anything paged */
		}
	}
	fail_msg("paging did not end");
	return seen;
}

static void
test_paging_returns_every_session_once_in_order_without_upstream(void **state)
{
	static char created[250][16], listed[300][16];
	const int sizes[] = { 1, 7, 100 };
	long before;

	(void)state;
	for (int i = 0; i < 250; i++)
		create("page-proj", created[i], sizeof(created[i]));
	create("other-proj", created[0] + 15, 1); /* another scope: never listed here */
	create("page-proj", created[0] + 15, 1);
	before = fake_count(&fake, "api_requests");
	(void)before;
	for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
		size_t n;
		long asked = fake_count(&fake, "api_requests");
		n = walk_pages("page-proj", sizes[s], listed, 300, false);
		assert_int_equal(fake_count(&fake, "api_requests"), asked);
		/* Newest first: the last one created (an empty-id stand-in above
		 * aside) leads, then the 250 in reverse order. */
		assert_int_equal(n, 251);
		for (int i = 0; i < 250; i++)
			assert_string_equal(listed[1 + i], created[249 - i]);
	}
}

static void
test_a_session_created_while_paging_is_not_seen_twice(void **state)
{
	static char listed[300][16];
	size_t n;

	(void)state;
	n = walk_pages("page-proj", 7, listed, 300, true);
	for (size_t i = 0; i < n; i++)
		for (size_t j = i + 1; j < n; j++)
			assert_string_not_equal(listed[i], listed[j]);
	assert_int_equal(n, 251);
}

static void
test_bad_page_parameters_are_400(void **state)
{
	const char *bad[] = {
		"/api/v1/chat?page_size=0",
		"/api/v1/chat?page_size=101",
		"/api/v1/chat?page_size=seven",
		"/api/v1/chat?page_size=-3",
		"/api/v1/chat?page_token=p1.AAAA",
		"/api/v1/chat?page_token=garbage",
		"/api/v1/chat?page_token=p1.%%%%",
	};
	char path[1400], token[600];
	json_t *doc;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		json_decref(call_json("GET", bad[i], NULL, 400));
	/* A real token from one project is refused in another. */
	doc = call_json("GET", "/api/v1/chat?project_id=page-proj&page_size=2", NULL, 200);
	snprintf(token, sizeof(token), "%s", json_string_value(json_object_get(doc, "next_page_token")));
	json_decref(doc);
	snprintf(path, sizeof(path), "/api/v1/chat?project_id=other-proj&page_token=%s", token);
	json_decref(call_json("GET", path, NULL, 400));
	/* Empty values mean absent, as the SDKs send them. */
	doc = call_json("GET", "/api/v1/chat?page_size=&page_token=&project_id=page-proj", NULL, 200);
	assert_int_equal(json_array_size(json_object_get(doc, "items")), 20);
	json_decref(doc);
}

static bool
listed_in(const char *project, const char *id)
{
	char path[256];
	json_t *doc, *item;
	size_t i;
	bool found = false;

	snprintf(path, sizeof(path), "/api/v1/chat?project_id=%s&page_size=100", project);
	doc = call_json("GET", path, NULL, 200);
	json_array_foreach(json_object_get(doc, "items"), i, item)
		if (strcmp(json_string_value(json_object_get(item, "session_id")), id) == 0)
			found = true;
	json_decref(doc);
	return found;
}

static void
test_delete_removes_from_lookups_and_lists(void **state)
{
	char id[64], path[256], url[256], value[16];
	struct http_response r;

	(void)state;
	create("del-proj", id, sizeof(id));
	assert_true(listed_in("del-proj", id));
	snprintf(path, sizeof(path), "/api/v1/chat/%s", id);
	assert_int_equal(http_call("DELETE", daemon_url(&daemon_proc, path, url, sizeof(url)), NULL, NULL, 0, &r), 0);
	assert_int_equal(r.status, 204);
	http_response_free(&r);
	assert_false(listed_in("del-proj", id));
	snprintf(path, sizeof(path), "/api/v1/chat/%s/summary", id);
	assert_int_equal(http_call("GET", daemon_url(&daemon_proc, path, url, sizeof(url)), NULL, NULL, 0, &r), 0);
	assert_int_equal(r.status, 404);
	assert_string_equal(http_header(&r, "X-Cache", value, sizeof(value)), "MISS");
	http_response_free(&r);
}

static void
test_delete_of_a_session_gone_upstream_still_forgets_it(void **state)
{
	char id[64], path[256], url[256], fake_url[256];
	const char *key[] = { "Authorization: Bearer " HARNESS_KEY, NULL };
	struct http_response r;

	(void)state;
	create("del-proj", id, sizeof(id));
	snprintf(fake_url, sizeof(fake_url), "http://127.0.0.1:%d/api/v1/chat/%s", fake.port, id);
	assert_int_equal(http_call("DELETE", fake_url, key, NULL, 0, &r), 0);
	http_response_free(&r);
	snprintf(path, sizeof(path), "/api/v1/chat/%s", id);
	assert_int_equal(http_call("DELETE", daemon_url(&daemon_proc, path, url, sizeof(url)), NULL, NULL, 0, &r), 0);
	assert_int_equal(r.status, 404);
	http_response_free(&r);
	assert_false(listed_in("del-proj", id));
}

static json_t *
summary(const char *id, const char *expect_cache)
{
	char path[256], url[256], value[16];
	struct http_response r;
	json_t *doc;

	snprintf(path, sizeof(path), "/api/v1/chat/%s/summary", id);
	assert_int_equal(http_call("GET", daemon_url(&daemon_proc, path, url, sizeof(url)), NULL, NULL, 0, &r), 0);
	assert_int_equal(r.status, 200);
	if (expect_cache != NULL)
		assert_string_equal(http_header(&r, "X-Cache", value, sizeof(value)), expect_cache);
	doc = json_loads(r.body, 0, NULL);
	http_response_free(&r);
	return doc;
}

static void
test_history_is_forwarded_and_refreshes_the_summary(void **state)
{
	char id[64], path[256], fake_url[256];
	struct http_response r;
	json_t *doc;
	long histories = fake_count(&fake, "histories");

	(void)state;
	create(NULL, id, sizeof(id));
	/* A turn the daemon never saw changes the session upstream. */
	snprintf(fake_url, sizeof(fake_url), "http://127.0.0.1:%d/_fake/turn?id=%s", fake.port, id);
	assert_int_equal(http_call("POST", fake_url, NULL, "", 0, &r), 0);
	http_response_free(&r);
	doc = summary(id, "HIT");
	assert_true(json_is_null(json_object_get(doc, "generated_title")));
	json_decref(doc);

	snprintf(path, sizeof(path), "/api/v1/chat/%s", id);
	doc = call_json("GET", path, NULL, 200);
	assert_int_equal(json_array_size(json_object_get(doc, "events")), 1);
	json_decref(doc);
	assert_int_equal(fake_count(&fake, "histories"), histories + 1);

	doc = summary(id, "HIT");
	assert_string_equal(json_string_value(json_object_get(doc, "generated_title")), "a turn run elsewhere");
	assert_null(json_object_get(doc, "events"));
	assert_non_null(json_object_get(doc, "x_future_field")); /* unknown fields kept */
	json_decref(doc);
}

/* What a streaming client saw, and a hook for when the first event came. */
struct stream_client {
	char data[65536];
	size_t len;
	bool released;
	bool was_held; /* the fake said it had held the stream back */
	int fake_port;
};

static size_t
stream_sink(char *data, size_t size, size_t count, void *userp)
{
	struct stream_client *c = userp;
	size_t len = size * count;

	if (c->len + len < sizeof(c->data)) {
		memcpy(c->data + c->len, data, len);
		c->len += len;
		c->data[c->len] = '\0';
	}
	/* The first event is here: only now may the fake send the rest. */
	if (!c->released && c->fake_port > 0 && strstr(c->data, "\n\n") != NULL) {
		char url[128];
		struct http_response r;
		c->released = true;
		snprintf(url, sizeof(url), "http://127.0.0.1:%d/_fake/release", c->fake_port);
		if (http_call("POST", url, NULL, "", 0, &r) == 0 && strstr(r.body, "\"released\":true") != NULL)
			c->was_held = true;
		http_response_free(&r);
	}
	return len;
}

/* Streams a turn through the daemon; returns the curl result and status. */
static CURLcode
stream_turn(const char *id, const char *body, struct stream_client *c, long *status, char *content_type, size_t ct_size)
{
	CURL *curl = curl_easy_init();
	struct curl_slist *list = curl_slist_append(NULL, "Content-Type: application/json");
	char path[256], url[256];
	char *ct = NULL;
	CURLcode rc;

	list = curl_slist_append(list, "Accept: application/json"); /* as the SDK sends it */
	snprintf(path, sizeof(path), "/api/v1/chat/%s/messages/stream", id);
	curl_easy_setopt(curl, CURLOPT_URL, daemon_url(&daemon_proc, path, url, sizeof(url)));
	curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(curl, CURLOPT_HTTPHEADER, list);
	curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, stream_sink);
	curl_easy_setopt(curl, CURLOPT_WRITEDATA, c);
	curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, 10000L);
	curl_easy_setopt(curl, CURLOPT_PROXY, "");
	rc = curl_easy_perform(curl);
	curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, status);
	curl_easy_getinfo(curl, CURLINFO_CONTENT_TYPE, &ct);
	snprintf(content_type, ct_size, "%s", ct != NULL ? ct : "");
	curl_easy_cleanup(curl);
	curl_slist_free_all(list);
	return rc;
}

/* True once the stored summary of session id carries a generated title. */
static bool
has_title(void *arg)
{
	json_t *doc = summary(arg, "HIT");
	bool titled = json_is_string(json_object_get(doc, "generated_title"));

	json_decref(doc);
	return titled;
}

static void
test_stream_relays_events_and_records_usage_then_title(void **state)
{
	static struct stream_client c;
	char id[64], ct[128];
	long status = 0;
	json_t *doc, *meta;

	(void)state;
	create(NULL, id, sizeof(id));
	memset(&c, 0, sizeof(c));
	assert_int_equal(stream_turn(id, "{\"prompt\":\"What were the Q3 findings?\",\"index_ids\":[]}", &c, &status,
	                     ct, sizeof(ct)),
	    CURLE_OK);
	assert_int_equal(status, 200);
	assert_string_equal(ct, "text/event-stream");
	assert_non_null(strstr(c.data, "\"content\":\"Hel\""));
	assert_non_null(strstr(c.data, "\"type\":\"stop\""));
	assert_non_null(strstr(c.data, ": keep-alive")); /* relayed untouched */

	/* The usage is in the store by the time the stream has ended. */
	doc = summary(id, "HIT");
	meta = json_object_get(doc, "job_metadata");
	assert_int_equal(json_integer_value(json_object_get(meta, "total_input_tokens")), 126);
	assert_int_equal(json_integer_value(json_object_get(meta, "total_output_tokens")), 7);
	assert_int_equal(json_integer_value(json_object_get(meta, "turns")), 1);
	assert_true(json_is_false(json_object_get(meta, "is_error")));
	json_decref(doc);

	/* The refresh after the turn brings the generated title. */
	harness_wait(has_title, id, HARNESS_WAIT_MS, "the summary to be refreshed with a title after the turn");
	doc = summary(id, "HIT");
	assert_string_equal(json_string_value(json_object_get(doc, "generated_title")), "What were the Q3 findings?");
	json_decref(doc);
}

static void
test_relay_does_not_buffer(void **state)
{
	static struct stream_client c;
	char id[64], ct[128];
	long status = 0;

	(void)state;
	create(NULL, id, sizeof(id));
	memset(&c, 0, sizeof(c));
	c.fake_port = fake.port;
	/* The fake sends one event and then waits until this client has it: a
	 * relay that held bytes back would make this time out. */
	assert_int_equal(fake_fault(&fake, "POST", "/api/v1/chat/{id}/messages/stream", "{\"mode\":\"hold\"}"), 0);
	assert_int_equal(
	    stream_turn(id, "{\"prompt\":\"hi\",\"index_ids\":[]}", &c, &status, ct, sizeof(ct)), CURLE_OK);
	assert_true(c.released);
	assert_true(c.was_held);
	assert_int_equal(status, 200);
	assert_non_null(strstr(c.data, "\"type\":\"stop\""));
}

static void
test_stream_errors_before_and_during(void **state)
{
	static struct stream_client c;
	char id[64], ct[128];
	long status = 0;
	long aborted, log_at;
	double unmetered, cuts;

	(void)state;
	/* Before the stream starts: upstream's status and JSON body. */
	memset(&c, 0, sizeof(c));
	assert_int_equal(
	    stream_turn("ses-nobody", "{\"prompt\":\"hi\",\"index_ids\":[]}", &c, &status, ct, sizeof(ct)), CURLE_OK);
	assert_int_equal(status, 404);
	assert_string_equal(ct, "application/json");
	assert_non_null(strstr(c.data, "Session not found"));

	/* Bad bodies never reach upstream. */
	json_decref(call_json("POST", "/api/v1/chat/ses-1/messages/stream", "{\"index_ids\":[]}", 422));
	json_decref(call_json("POST", "/api/v1/chat/ses-1/messages/stream", "{\"prompt\":\"\",\"index_ids\":[]}", 422));
	json_decref(
	    call_json("POST", "/api/v1/chat/ses-1/messages/stream", "{\"prompt\":\"x\",\"index_ids\":[1]}", 422));
	json_decref(call_json("POST", "/api/v1/chat/ses-1/messages/stream", "{\"prompt\":", 400));

	/* Cut in the middle: the client's answer looks cut (no last chunk, so
	 * curl reports a partial body), with a comment naming the cause; the
	 * cut is counted and marked in the access line, and the turn that
	 * could not be charged is counted and said. */
	create(NULL, id, sizeof(id));
	aborted = fake_count(&fake, "streams_aborted");
	unmetered = daemon_metric(&daemon_proc, "llamachatd_unmetered_turns_total");
	cuts = daemon_metric(&daemon_proc, "llamachatd_streams_cut_total{cause=\"reset\"}");
	log_at = daemon_log_offset(&daemon_proc);
	memset(&c, 0, sizeof(c));
	assert_int_equal(fake_fault(&fake, "POST", "/api/v1/chat/{id}/messages/stream", "{\"mode\":\"cut\"}"), 0);
	assert_int_equal(
	    stream_turn(id, "{\"prompt\":\"hi\",\"index_ids\":[]}", &c, &status, ct, sizeof(ct)), CURLE_PARTIAL_FILE);
	assert_int_equal(status, 200);
	assert_non_null(strstr(c.data, "\"content\":\"Hel\""));
	assert_non_null(strstr(c.data, ": upstream ended the stream early: reset"));
	assert_null(strstr(c.data, "\"type\":\"stop\""));
	daemon_wait_log(&daemon_proc, log_at, "is not charged: upstream cut the stream off");
	daemon_wait_log(&daemon_proc, log_at, "cut=reset");
	assert_true(daemon_metric(&daemon_proc, "llamachatd_unmetered_turns_total") >= unmetered + 1);
	assert_true(daemon_metric(&daemon_proc, "llamachatd_streams_cut_total{cause=\"reset\"}") >= cuts + 1);
	(void)aborted;
}

/* Tracks the fake's stream_bytes: stalled once it grew by over 1 MB and then
 * by less than one flood piece (64 KB) over ten looks in a row. A socket
 * buffer that the kernel still grows a little at a time is a stall too. */
struct stall {
	long base, last, run_start;
	int unchanged;
};

static bool
flood_stalled(void *arg)
{
	struct stall *st = arg;
	long now = fake_count(&fake, "stream_bytes");

	st->last = now;
	if (now - st->run_start < 65536) {
		st->unchanged++;
	} else {
		st->run_start = now;
		st->unchanged = 0;
	}
	return now - st->base > 1000000 && st->unchanged >= 10;
}

static void
test_slow_client_is_bounded_and_a_hang_up_drains_upstream(void **state)
{
	const char *body = "{\"prompt\":\"flood\",\"index_ids\":[]}";
	char id[64];
	long rss_before, rss_during, sent, completed;
	int fd;
	json_t *doc;

	(void)state;
	create(NULL, id, sizeof(id));
	rss_before = harness_rss_kib(daemon_proc.pid);
	completed = fake_count(&fake, "streams_completed");
	assert_int_equal(
	    fake_fault(&fake, "POST", "/api/v1/chat/{id}/messages/stream", "{\"mode\":\"flood\",\"bytes\":52428800}"),
	    0);

	/* A client that asks for a stream and then reads nothing. */
	fd = harness_send_raw_stream(daemon_proc.port, id, body);
	assert_true(fd >= 0);

	/* Wait until the transfer has stalled: the bytes upstream sent stop
	 * growing once every buffer on the way is full. */
	{
		struct stall stall = { .base = fake_count(&fake, "stream_bytes"), .run_start = -65536 };
		harness_wait(flood_stalled, &stall, HARNESS_WAIT_MS, "the flood to start and then stall");
		sent = stall.last - stall.base;
	}
	assert_true(sent > 1000000); /* the flood did start */
	assert_true(sent < 52428800L / 2); /* and stalled, far from all 50 MB */
	rss_during = harness_rss_kib(daemon_proc.pid);
	assert_true(rss_during - rss_before < 16 * 1024); /* bounded, not 50 MB */

	/* Others are served meanwhile. */
	doc = summary(id, "HIT");
	json_decref(doc);

	/* The client hangs up: the turn runs upstream to its end all the same,
	 * so the daemon reads it out (discarding it) to charge it. */
	close(fd);
	assert_int_equal(fake_wait_count(&fake, "streams_completed", completed + 1), completed + 1);
}

/* A client that leaves while the stream is quiet: nothing is being written
 * to it, yet the daemon notices at once, and keeps reading upstream's
 * stream until its stop event (the turn runs there anyway, and is charged). */
static void
test_hang_up_during_a_quiet_stream_keeps_reading_upstream(void **state)
{
	const char *body = "{\"prompt\":\"quiet\",\"index_ids\":[]}";
	char id[64], got[4096] = "";
	size_t have = 0;
	long aborted, completed, held, log_at;
	int fd;

	(void)state;
	create(NULL, id, sizeof(id));
	aborted = fake_count(&fake, "streams_aborted");
	completed = fake_count(&fake, "streams_completed");
	held = fake_count(&fake, "streams_held");
	log_at = daemon_log_offset(&daemon_proc);
	assert_int_equal(fake_fault(&fake, "POST", "/api/v1/chat/{id}/messages/stream", "{\"mode\":\"hold\"}"), 0);
	fd = harness_send_raw_stream(daemon_proc.port, id, body);
	assert_true(fd >= 0);
	/* Read until the first event is in, then leave. */
	while (have < sizeof(got) - 1 && strstr(got, "\n\n\r\n") == NULL) {
		ssize_t n = read(fd, got + have, sizeof(got) - 1 - have);
		assert_true(n > 0);
		have += (size_t)n;
		got[have] = '\0';
	}
	assert_non_null(strstr(got, "\"Hel\""));
	/* The stream is held upstream, quiet, when the client leaves. */
	assert_int_equal(fake_count(&fake, "streams_held"), held + 1);
	close(fd);
	daemon_wait_log(&daemon_proc, log_at, "went away mid-answer");
	/* Upstream's stream is still there to finish. */
	assert_int_equal(fake_release(&fake), 1);
	assert_int_equal(fake_wait_count(&fake, "streams_completed", completed + 1), completed + 1);
	assert_int_equal(fake_count(&fake, "streams_aborted"), aborted);
}

/* A finished stream leaves its connection fit for the next request: the
 * buffers it let go of while streaming come back. */
static void
test_a_connection_serves_a_request_after_a_stream(void **state)
{
	const char *next = "GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n";
	char id[64], got[16384] = "";
	size_t have = 0;
	int fd;

	(void)state;
	create(NULL, id, sizeof(id));
	fd = harness_send_raw_stream(daemon_proc.port, id, "{\"prompt\":\"then more\",\"index_ids\":[]}");
	assert_true(fd >= 0);
	/* The whole chunked answer, to its last chunk. */
	while (have < sizeof(got) - 1 && strstr(got, "\r\n0\r\n\r\n") == NULL) {
		ssize_t n = read(fd, got + have, sizeof(got) - 1 - have);
		assert_true(n > 0);
		have += (size_t)n;
		got[have] = '\0';
	}
	assert_non_null(strstr(got, "\"type\":\"stop\""));
	assert_int_equal(write(fd, next, strlen(next)), (ssize_t)strlen(next));
	have = 0;
	got[0] = '\0';
	while (have < sizeof(got) - 1 && strstr(got, "\"status\":\"ok\"") == NULL) {
		ssize_t n = read(fd, got + have, sizeof(got) - 1 - have);
		assert_true(n > 0);
		have += (size_t)n;
		got[have] = '\0';
	}
	assert_true(strncmp(got, "HTTP/1.1 200 ", 13) == 0);
	close(fd);
}

/* A client that leaves before upstream has even answered: the turn was
 * sent, so it is read to its end (and charged) all the same. */
static void
test_hang_up_before_upstream_answers_still_reads_the_turn(void **state)
{
	const char *body = "{\"prompt\":\"early\",\"index_ids\":[]}";
	char id[64];
	long requests, log_at, completed;
	int fd;

	(void)state;
	create(NULL, id, sizeof(id));
	requests = fake_count(&fake, "api_requests");
	completed = fake_count(&fake, "streams_completed");
	log_at = daemon_log_offset(&daemon_proc);
	assert_int_equal(
	    fake_fault(&fake, "POST", "/api/v1/chat/{id}/messages/stream", "{\"mode\":\"delay\",\"ms\":3000}"), 0);
	fd = harness_send_raw_stream(daemon_proc.port, id, body);
	assert_true(fd >= 0);
	/* Leave once the call is upstream and waiting there. */
	fake_wait_count(&fake, "api_requests", requests + 1);
	close(fd);
	daemon_wait_log(&daemon_proc, log_at, "went away before upstream answered");
	fake_wait_count(&fake, "streams_completed", completed + 1);
	daemon_wait_log(&daemon_proc, log_at, "stored session");
}

static void
test_route_policy(void **state)
{
	struct http_response r;
	char url[256], sub[512];
	struct daemon_process allowed;
	long before = fake_count(&fake, "api_requests");
	CURL *curl;
	long status = 0;

	(void)state;
	/* Not in the default policy: 403, and upstream never hears of it. */
	json_decref(call_json("GET", "/api/v1/projects", NULL, 403));
	json_decref(call_json("PUT", "/api/v1/chat", "{}", 403));
	json_decref(call_json("GET", "/api/v1/chatty", NULL, 403));
	json_decref(call_json("GET", "/api/v1/chat/%2e%2e/%2e%2e/projects", NULL, 400));
	/* curl would tidy "..", so send it as it is. */
	curl = curl_easy_init();
	curl_easy_setopt(curl, CURLOPT_URL, daemon_url(&daemon_proc, "/api/v1/chat/../projects", url, sizeof(url)));
	curl_easy_setopt(curl, CURLOPT_PATH_AS_IS, 1L);
	curl_easy_setopt(curl, CURLOPT_PROXY, "");
	curl_easy_setopt(curl, CURLOPT_NOBODY, 0L);
	curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, stream_sink);
	{
		static struct stream_client c;
		memset(&c, 0, sizeof(c));
		curl_easy_setopt(curl, CURLOPT_WRITEDATA, &c);
		assert_int_equal(curl_easy_perform(curl), CURLE_OK);
	}
	curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_cleanup(curl);
	assert_int_equal(status, 400);
	assert_int_equal(fake_count(&fake, "api_requests"), before);

	/* Allowed by a route: passed through with the key, answer and all. */
	snprintf(sub, sizeof(sub), "%s/routes", dir);
	assert_int_equal(mkdir(sub, 0700), 0);
	daemon_write_config(&allowed, sub, fake.port, NULL, NULL, NULL);
	{
		FILE *f = fopen(allowed.conf_path, "a");
		fprintf(f,
		    "routes = ( { prefix = \"/api/v1/chat\"; methods = [\"GET\", \"POST\", \"DELETE\"]; },\n"
		    "           { prefix = \"/api/v1/projects\"; methods = [\"GET\"]; } );\n");
		fclose(f);
	}
	assert_int_equal(daemon_start(&allowed, HARNESS_KEY), 0);
	assert_int_equal(
	    http_call("GET", daemon_url(&allowed, "/api/v1/projects", url, sizeof(url)), NULL, NULL, 0, &r), 0);
	assert_int_equal(r.status, 200);
	assert_non_null(strstr(r.body, "prj-1"));
	http_response_free(&r);
	assert_int_equal(
	    http_call("POST", daemon_url(&allowed, "/api/v1/projects", url, sizeof(url)), json_headers, "{}", 2, &r),
	    0);
	assert_int_equal(r.status, 403);
	http_response_free(&r);
	assert_int_equal(daemon_stop(&allowed), 0);
}

static void
test_daemon_stops_cleanly(void **state)
{
	(void)state;
	assert_int_equal(daemon_stop(&daemon_proc), 0);
	assert_false(daemon_log_contains(&daemon_proc, HARNESS_KEY));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_paging_returns_every_session_once_in_order_without_upstream),
		cmocka_unit_test(test_a_session_created_while_paging_is_not_seen_twice),
		cmocka_unit_test(test_bad_page_parameters_are_400),
		cmocka_unit_test(test_delete_removes_from_lookups_and_lists),
		cmocka_unit_test(test_delete_of_a_session_gone_upstream_still_forgets_it),
		cmocka_unit_test(test_history_is_forwarded_and_refreshes_the_summary),
		cmocka_unit_test(test_stream_relays_events_and_records_usage_then_title),
		cmocka_unit_test(test_relay_does_not_buffer),
		cmocka_unit_test(test_stream_errors_before_and_during),
		cmocka_unit_test(test_slow_client_is_bounded_and_a_hang_up_drains_upstream),
		cmocka_unit_test(test_hang_up_during_a_quiet_stream_keeps_reading_upstream),
		cmocka_unit_test(test_hang_up_before_upstream_answers_still_reads_the_turn),
		cmocka_unit_test(test_a_connection_serves_a_request_after_a_stream),
		cmocka_unit_test(test_route_policy),
		cmocka_unit_test(test_daemon_stops_cleanly),
	};
	int failed;

	curl_global_init(CURL_GLOBAL_DEFAULT);
	failed = cmocka_run_group_tests_name("integration: the chat API", tests, start_all, stop_all);
	curl_global_cleanup();
	return failed;
}
