/* Integration: creating sessions through the daemon and looking them up from its store. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"

static struct fake_upstream fake;
static struct daemon_process daemon_proc;
static char *dir;

static const char *const sdk_headers[] = {
	"Content-Type: application/json",
	"Accept: application/json",
	"Authorization: Bearer client-token-not-the-key",
	"Cookie: session=browser-cookie",
	"X-Stainless-Lang: js",
	"User-Agent: LlamaCloud/JS 2.16.0",
	NULL,
};

static int
start_all(void **state)
{
	(void)state;
	return harness_suite_start("create", &dir, &fake, &daemon_proc);
}

static int
stop_all(void **state)
{
	(void)state;
	harness_suite_stop(&dir, &fake, &daemon_proc);
	return 0;
}

/* Creates a session through the daemon; returns its id in id (64 bytes). */
static void
create_session(const char *body, char *id, struct http_response *out)
{
	char url[256];
	json_t *doc;

	assert_int_equal(http_call("POST", daemon_url(&daemon_proc, "/api/v1/chat?project_id=p-1", url, sizeof(url)),
	                     sdk_headers, body, strlen(body), out),
	    0);
	assert_int_equal(out->status, 200);
	doc = json_loads(out->body, 0, NULL);
	assert_non_null(doc);
	snprintf(id, 64, "%s", json_string_value(json_object_get(doc, "session_id")));
	json_decref(doc);
	assert_true(strncmp(id, "ses-", 4) == 0);
}

static void
test_create_sends_the_real_key_and_never_the_clients_credentials(void **state)
{
	struct http_response r;
	char id[64];
	json_t *stats, *last, *headers;
	const char *body = "{\"index_ids\": [\"idx-1\", \"idx-2\"], \"shared_access\": \"query\"}";

	(void)state;
	create_session(body, id, &r);
	http_response_free(&r);

	stats = fake_stats(&fake);
	last = json_object_get(stats, "last");
	headers = json_object_get(last, "headers");
	assert_string_equal(json_string_value(json_object_get(headers, "authorization")), "Bearer " HARNESS_KEY);
	assert_null(json_object_get(headers, "cookie"));
	assert_string_equal(json_string_value(json_object_get(headers, "x-stainless-lang")), "js");
	assert_string_equal(json_string_value(json_object_get(headers, "content-type")), "application/json");
	assert_string_equal(json_string_value(json_object_get(last, "uri")), "/api/v1/chat?project_id=p-1");
	/* Fields the daemon does not know reach upstream untouched. */
	assert_string_equal(json_string_value(json_object_get(last, "body")), body);
	json_decref(stats);
}

static void
test_created_session_is_served_from_the_store_without_upstream(void **state)
{
	struct http_response created, looked_up;
	char id[64], path[128], url[256], value[64];
	long before;

	(void)state;
	create_session("{}", id, &created);
	before = fake_count(&fake, "api_requests");

	snprintf(path, sizeof(path), "/api/v1/chat/%s/summary", id);
	assert_int_equal(
	    http_call("GET", daemon_url(&daemon_proc, path, url, sizeof(url)), NULL, NULL, 0, &looked_up), 0);
	assert_int_equal(looked_up.status, 200);
	assert_string_equal(http_header(&looked_up, "X-Cache", value, sizeof(value)), "HIT");
	assert_string_equal(http_header(&looked_up, "Content-Type", value, sizeof(value)), "application/json");
	/* Byte for byte what upstream answered, unknown fields included. */
	assert_int_equal(looked_up.body_len, created.body_len);
	assert_memory_equal(looked_up.body, created.body, created.body_len);
	assert_non_null(strstr(looked_up.body, "x_future_field"));
	assert_int_equal(fake_count(&fake, "api_requests"), before);
	http_response_free(&created);
	http_response_free(&looked_up);
}

static void
test_lookup_miss_reads_through_then_hits(void **state)
{
	struct http_response direct, first, second;
	char fake_url[128], path[128], url[256], value[64];
	const char *key_header[] = { "Authorization: Bearer " HARNESS_KEY, NULL };
	json_t *doc;
	long summaries;

	(void)state;
	/* A session the daemon never saw: created at the fake directly. */
	snprintf(fake_url, sizeof(fake_url), "http://127.0.0.1:%d/api/v1/chat", fake.port);
	assert_int_equal(http_call("POST", fake_url, key_header, "", 0, &direct), 0);
	doc = json_loads(direct.body, 0, NULL);
	snprintf(path, sizeof(path), "/api/v1/chat/%s/summary", json_string_value(json_object_get(doc, "session_id")));
	json_decref(doc);
	summaries = fake_count(&fake, "summaries");

	assert_int_equal(http_call("GET", daemon_url(&daemon_proc, path, url, sizeof(url)), NULL, NULL, 0, &first), 0);
	assert_int_equal(first.status, 200);
	assert_string_equal(http_header(&first, "X-Cache", value, sizeof(value)), "MISS");
	assert_string_equal(first.body, direct.body);
	assert_int_equal(fake_count(&fake, "summaries"), summaries + 1);

	assert_int_equal(http_call("GET", url, NULL, NULL, 0, &second), 0);
	assert_int_equal(second.status, 200);
	assert_string_equal(http_header(&second, "X-Cache", value, sizeof(value)), "HIT");
	assert_string_equal(second.body, direct.body);
	assert_int_equal(fake_count(&fake, "summaries"), summaries + 1);
	http_response_free(&direct);
	http_response_free(&first);
	http_response_free(&second);
}

static void
test_lookup_of_unknown_session_is_upstreams_404(void **state)
{
	struct http_response r;
	char url[256], value[64];

	(void)state;
	assert_int_equal(http_call("GET", daemon_url(&daemon_proc, "/api/v1/chat/ses-nobody/summary", url, sizeof(url)),
	                     NULL, NULL, 0, &r),
	    0);
	assert_int_equal(r.status, 404);
	assert_string_equal(http_header(&r, "X-Cache", value, sizeof(value)), "MISS");
	assert_non_null(strstr(r.body, "Session not found"));
	http_response_free(&r);
}

static void
test_sessions_survive_a_restart(void **state)
{
	struct http_response created, looked_up;
	char id[64], path[128], url[256], value[64];
	long before;

	(void)state;
	create_session("{\"index_ids\": null}", id, &created);
	assert_int_equal(daemon_stop(&daemon_proc), 0);
	assert_int_equal(daemon_start(&daemon_proc, HARNESS_KEY), 0);
	before = fake_count(&fake, "api_requests");

	snprintf(path, sizeof(path), "/api/v1/chat/%s/summary", id);
	assert_int_equal(
	    http_call("GET", daemon_url(&daemon_proc, path, url, sizeof(url)), NULL, NULL, 0, &looked_up), 0);
	assert_int_equal(looked_up.status, 200);
	assert_string_equal(http_header(&looked_up, "X-Cache", value, sizeof(value)), "HIT");
	assert_string_equal(looked_up.body, created.body);
	assert_int_equal(fake_count(&fake, "api_requests"), before);
	http_response_free(&created);
	http_response_free(&looked_up);
}

static void
test_acknowledged_session_survives_kill_9(void **state)
{
	struct http_response created, looked_up;
	char id[64], path[128], url[256], value[64];

	(void)state;
	create_session("{}", id, &created);
	daemon_kill(&daemon_proc); /* no chance to flush anything */
	assert_int_equal(daemon_start(&daemon_proc, HARNESS_KEY), 0);

	snprintf(path, sizeof(path), "/api/v1/chat/%s/summary", id);
	assert_int_equal(
	    http_call("GET", daemon_url(&daemon_proc, path, url, sizeof(url)), NULL, NULL, 0, &looked_up), 0);
	assert_int_equal(looked_up.status, 200);
	assert_string_equal(http_header(&looked_up, "X-Cache", value, sizeof(value)), "HIT");
	http_response_free(&created);
	http_response_free(&looked_up);
}

static void
test_client_that_hangs_up_early_loses_nothing(void **state)
{
	struct http_response r;
	char url[256], path[128], value[16], stored[128];
	const char *headers[] = { "Content-Type: application/json", NULL };
	long creates = fake_count(&fake, "creates"), summaries;
	long log_at = daemon_log_offset(&daemon_proc);
	json_t *stats;
	CURL *curl = curl_easy_init();
	struct curl_slist *list = curl_slist_append(NULL, headers[0]);

	(void)state;
	/* Upstream takes 600 ms; the client gives up after 100 ms. */
	assert_int_equal(fake_fault(&fake, "POST", "/api/v1/chat", "{\"mode\":\"delay\",\"ms\":600}"), 0);
	curl_easy_setopt(curl, CURLOPT_URL, daemon_url(&daemon_proc, "/api/v1/chat", url, sizeof(url)));
	curl_easy_setopt(curl, CURLOPT_POSTFIELDS, "{}");
	curl_easy_setopt(curl, CURLOPT_HTTPHEADER, list);
	curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, 100L);
	curl_easy_setopt(curl, CURLOPT_PROXY, "");
	assert_int_equal(curl_easy_perform(curl), CURLE_OPERATION_TIMEDOUT);
	curl_easy_cleanup(curl);
	curl_slist_free_all(list);

	/* Upstream did create it, so the daemon must have stored it. */
	assert_int_equal(fake_wait_count(&fake, "creates", creates + 1), creates + 1);
	stats = fake_stats(&fake);
	snprintf(
	    stored, sizeof(stored), "stored session %s", json_string_value(json_object_get(stats, "last_session_id")));
	snprintf(path, sizeof(path), "/api/v1/chat/%s/summary",
	    json_string_value(json_object_get(stats, "last_session_id")));
	json_decref(stats);
	daemon_wait_log(&daemon_proc, log_at, stored);
	summaries = fake_count(&fake, "summaries");
	assert_int_equal(http_call("GET", daemon_url(&daemon_proc, path, url, sizeof(url)), NULL, NULL, 0, &r), 0);
	assert_int_equal(r.status, 200);
	assert_string_equal(http_header(&r, "X-Cache", value, sizeof(value)), "HIT");
	assert_int_equal(fake_count(&fake, "summaries"), summaries);
	http_response_free(&r);
}

static void
test_upstream_connection_is_reused(void **state)
{
	struct http_response r;
	char url[256];
	long before = fake_count(&fake, "connections");

	(void)state;
	for (int i = 0; i < 10; i++) {
		assert_int_equal(http_call("POST", daemon_url(&daemon_proc, "/api/v1/chat", url, sizeof(url)),
		                     sdk_headers, "{}", 2, &r),
		    0);
		assert_int_equal(r.status, 200);
		http_response_free(&r);
	}
	/* Ten sequential creates: one connection at most (it may be new). */
	assert_true(fake_count(&fake, "connections") <= before + 1);
}

/* A curl multi handle kept moving until the fake has seen target requests. */
struct multi_pump {
	CURLM *multi;
	int running;
	long target;
};

static bool
pump_until_upstream(void *arg)
{
	struct multi_pump *p = arg;

	curl_multi_perform(p->multi, &p->running);
	curl_multi_poll(p->multi, NULL, 0, 10, NULL);
	return fake_count(&fake, "api_requests") >= p->target;
}

/* SIGTERM while a create is upstream: the client still gets its session,
 * the daemon exits 0, and the session is there after a restart. */
static void
test_stop_lets_a_create_in_flight_finish(void **state)
{
	CURL *curl = curl_easy_init();
	CURLM *multi = curl_multi_init();
	struct curl_slist *list = curl_slist_append(NULL, "Content-Type: application/json");
	struct harness_body body = { .len = 0 };
	char url[256], path[128], value[16];
	long status = 0;
	int running = 1;
	json_t *doc;
	struct http_response r;

	(void)state;
	assert_int_equal(fake_fault(&fake, "POST", "/api/v1/chat", "{\"mode\":\"delay\",\"ms\":400}"), 0);
	curl_easy_setopt(curl, CURLOPT_URL, daemon_url(&daemon_proc, "/api/v1/chat", url, sizeof(url)));
	curl_easy_setopt(curl, CURLOPT_POSTFIELDS, "{}");
	curl_easy_setopt(curl, CURLOPT_HTTPHEADER, list);
	curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, harness_body_sink);
	curl_easy_setopt(curl, CURLOPT_WRITEDATA, &body);
	curl_easy_setopt(curl, CURLOPT_PROXY, "");
	/* Send the request, then stop the daemon while upstream holds it. */
	{
		struct multi_pump pump = { multi, 1, fake_count(&fake, "api_requests") + 1 };
		curl_multi_add_handle(multi, curl);
		harness_wait(pump_until_upstream, &pump, HARNESS_WAIT_MS, "the create to reach upstream");
		running = pump.running;
	}
	kill(daemon_proc.pid, SIGTERM);
	while (running > 0) {
		curl_multi_perform(multi, &running);
		curl_multi_poll(multi, NULL, 0, 100, NULL);
	}
	curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
	assert_int_equal(status, 200);
	assert_int_equal(daemon_stop(&daemon_proc), 0);

	doc = json_loads(body.data, 0, NULL);
	assert_non_null(doc);
	snprintf(path, sizeof(path), "/api/v1/chat/%s/summary", json_string_value(json_object_get(doc, "session_id")));
	json_decref(doc);
	assert_int_equal(daemon_start(&daemon_proc, HARNESS_KEY), 0);
	assert_int_equal(http_call("GET", daemon_url(&daemon_proc, path, url, sizeof(url)), NULL, NULL, 0, &r), 0);
	assert_string_equal(http_header(&r, "X-Cache", value, sizeof(value)), "HIT");
	http_response_free(&r);
	curl_multi_remove_handle(multi, curl);
	curl_easy_cleanup(curl);
	curl_multi_cleanup(multi);
	curl_slist_free_all(list);
}

#define CONCURRENT 50

/* Adds n creates with body to multi, each on a connection of its own (so the
 * daemon really has n at once), their answers collected into bodies. */
static void
add_creates(CURLM *multi, CURL **easy, struct harness_body *bodies, int n, struct curl_slist *headers, const char *url,
    const char *body)
{
	for (int i = 0; i < n; i++) {
		easy[i] = curl_easy_init();
		bodies[i].len = 0;
		curl_easy_setopt(easy[i], CURLOPT_URL, url);
		curl_easy_setopt(easy[i], CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(easy[i], CURLOPT_HTTPHEADER, headers);
		curl_easy_setopt(easy[i], CURLOPT_WRITEFUNCTION, harness_body_sink);
		curl_easy_setopt(easy[i], CURLOPT_WRITEDATA, &bodies[i]);
		curl_easy_setopt(easy[i], CURLOPT_TIMEOUT_MS, 30000L);
		curl_easy_setopt(easy[i], CURLOPT_PROXY, "");
		curl_easy_setopt(easy[i], CURLOPT_FRESH_CONNECT, 1L);
		curl_multi_add_handle(multi, easy[i]);
	}
}

/* Runs multi's transfers to their end. */
static void
run_all(CURLM *multi)
{
	int running = 1;

	while (running > 0) {
		curl_multi_perform(multi, &running);
		if (running > 0)
			curl_multi_poll(multi, NULL, 0, 1000, NULL);
	}
}

/* Frees the n easy handles of multi, each of which got a 200. */
static void
remove_creates(CURLM *multi, CURL **easy, int n)
{
	for (int i = 0; i < n; i++) {
		long status = 0;
		curl_easy_getinfo(easy[i], CURLINFO_RESPONSE_CODE, &status);
		assert_int_equal(status, 200);
		curl_multi_remove_handle(multi, easy[i]);
		curl_easy_cleanup(easy[i]);
	}
}

static void
test_fifty_concurrent_creates_all_succeed_and_are_stored(void **state)
{
	CURLM *multi = curl_multi_init();
	CURL *easy[CONCURRENT];
	static struct harness_body bodies[CONCURRENT];
	struct curl_slist *headers = curl_slist_append(NULL, "Content-Type: application/json");
	char url[256];
	long creates_before = fake_count(&fake, "creates");

	(void)state;
	daemon_url(&daemon_proc, "/api/v1/chat", url, sizeof(url));
	add_creates(multi, easy, bodies, CONCURRENT, headers, url, "{\"index_ids\":[\"idx-a\"]}");
	run_all(multi);
	for (int i = 0; i < CONCURRENT; i++) {
		long status = 0;
		json_t *doc;
		char path[128], one[256], value[16];
		struct http_response r;

		curl_easy_getinfo(easy[i], CURLINFO_RESPONSE_CODE, &status);
		assert_int_equal(status, 200);
		doc = json_loads(bodies[i].data, 0, NULL);
		assert_non_null(doc);
		snprintf(path, sizeof(path), "/api/v1/chat/%s/summary",
		    json_string_value(json_object_get(doc, "session_id")));
		json_decref(doc);
		assert_int_equal(
		    http_call("GET", daemon_url(&daemon_proc, path, one, sizeof(one)), NULL, NULL, 0, &r), 0);
		assert_int_equal(r.status, 200);
		assert_string_equal(http_header(&r, "X-Cache", value, sizeof(value)), "HIT");
		http_response_free(&r);
		curl_multi_remove_handle(multi, easy[i]);
		curl_easy_cleanup(easy[i]);
	}
	assert_int_equal(fake_count(&fake, "creates"), creates_before + CONCURRENT);
	curl_slist_free_all(headers);
	curl_multi_cleanup(multi);
}

/* Upstream connections outlive the calls on them: a second crowd of
 * creates finds the first crowd's connections open and opens (almost) none.
 * curl's own bound, four per transfer in its multi, used to close most of
 * them as the first crowd's calls left to commit. */
static void
test_upstream_connections_are_kept_for_the_next_calls(void **state)
{
	CURLM *multi = curl_multi_init();
	CURL *easy[CONCURRENT];
	static struct harness_body bodies[CONCURRENT];
	struct curl_slist *headers = curl_slist_append(NULL, "Content-Type: application/json");
	char url[256];
	long after_first;

	(void)state;
	daemon_url(&daemon_proc, "/api/v1/chat", url, sizeof(url));
	/* Upstream holds each create a while, so that both crowds are all in
	 * flight upstream at once, however slow this machine is. */
	assert_int_equal(fake_fault(&fake, "POST", "/api/v1/chat", "{\"mode\":\"delay\",\"ms\":300,\"count\":50}"), 0);
	add_creates(multi, easy, bodies, CONCURRENT, headers, url, "{}");
	run_all(multi);
	remove_creates(multi, easy, CONCURRENT);
	after_first = fake_count(&fake, "connections");
	assert_int_equal(fake_fault(&fake, "POST", "/api/v1/chat", "{\"mode\":\"delay\",\"ms\":300,\"count\":50}"), 0);
	add_creates(multi, easy, bodies, CONCURRENT, headers, url, "{}");
	run_all(multi);
	remove_creates(multi, easy, CONCURRENT);
	assert_true(fake_count(&fake, "connections") - after_first <= 5);
	curl_slist_free_all(headers);
	curl_multi_cleanup(multi);
}

struct held_wait {
	CURLM *multi;
	int *running;
	const char *held;
};

/* Keeps the create moving until the writer says it holds a commit. */
static bool
writer_is_held(void *arg)
{
	struct held_wait *w = arg;

	curl_multi_perform(w->multi, w->running);
	curl_multi_poll(w->multi, NULL, 0, 10, NULL);
	return access(w->held, F_OK) == 0;
}

/* A commit in progress blocks nothing but its own clients: with the test
 * build's writer thread held before its commit, a lookup is answered from
 * the store at once, while the create whose write is held gets no answer
 * until the commit is done. */
static void
test_a_lookup_is_answered_while_a_commit_is_in_progress(void **state)
{
	struct daemon_process d;
	char sub[512], hold[600], held[620], env_hold[700], url[256], path[128], value[16], id[64];
	char *env[] = { env_hold, NULL };
	struct http_response r;
	CURLM *multi = curl_multi_init();
	CURL *easy = curl_easy_init();
	struct curl_slist *headers = curl_slist_append(NULL, "Content-Type: application/json");
	static struct harness_body body;
	int running = 1;
	long status = 0;
	json_t *doc;
	FILE *f;

	(void)state;
	snprintf(sub, sizeof(sub), "%s/held", dir);
	assert_int_equal(mkdir(sub, 0700), 0);
	snprintf(hold, sizeof(hold), "%s/hold", sub);
	snprintf(held, sizeof(held), "%s.held", hold);
	snprintf(env_hold, sizeof(env_hold), "LLAMACHATD_HOLD_WRITER=%s", hold);
	daemon_write_config(&d, sub, fake.port, NULL, NULL, NULL);
	d.bin = harness_test_daemon_bin();
	assert_int_equal(daemon_start_with(&d, HARNESS_KEY, env, NULL), 0);

	/* A session stored before the hold. */
	assert_int_equal(
	    http_call("POST", daemon_url(&d, "/api/v1/chat", url, sizeof(url)), sdk_headers, "{}", 2, &r), 0);
	assert_int_equal(r.status, 200);
	doc = json_loads(r.body, 0, NULL);
	snprintf(id, sizeof(id), "%s", json_string_value(json_object_get(doc, "session_id")));
	json_decref(doc);
	http_response_free(&r);

	/* Hold the writer, and send a create: its write reaches the thread,
	 * which waits before committing it. */
	f = fopen(hold, "w");
	assert_non_null(f);
	fclose(f);
	body.len = 0;
	curl_easy_setopt(easy, CURLOPT_URL, url);
	curl_easy_setopt(easy, CURLOPT_POSTFIELDS, "{}");
	curl_easy_setopt(easy, CURLOPT_HTTPHEADER, headers);
	curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, harness_body_sink);
	curl_easy_setopt(easy, CURLOPT_WRITEDATA, &body);
	curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, 30000L);
	curl_easy_setopt(easy, CURLOPT_PROXY, "");
	curl_multi_add_handle(multi, easy);
	{
		struct held_wait w = { multi, &running, held };
		harness_wait(writer_is_held, &w, HARNESS_WAIT_MS, "the writer thread to hold the create's commit");
	}

	/* Meanwhile the stored session is served, from the store. */
	snprintf(path, sizeof(path), "/api/v1/chat/%s/summary", id);
	assert_int_equal(http_call("GET", daemon_url(&d, path, url, sizeof(url)), NULL, NULL, 0, &r), 0);
	assert_int_equal(r.status, 200);
	assert_string_equal(http_header(&r, "X-Cache", value, sizeof(value)), "HIT");
	http_response_free(&r);
	/* And the held create is not answered: commit first, then answer. */
	curl_multi_perform(multi, &running);
	assert_int_equal(running, 1);
	assert_int_equal(body.len, 0);

	/* Let go: the commit is done, and the client gets its session. */
	assert_int_equal(unlink(hold), 0);
	while (running > 0) {
		curl_multi_perform(multi, &running);
		if (running > 0)
			curl_multi_poll(multi, NULL, 0, 100, NULL);
	}
	curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
	assert_int_equal(status, 200);
	assert_non_null(strstr(body.data, "\"session_id\""));
	curl_multi_remove_handle(multi, easy);
	curl_easy_cleanup(easy);
	curl_multi_cleanup(multi);
	curl_slist_free_all(headers);
	assert_int_equal(daemon_stop(&d), 0);
}

/* kill -9 while creates stream in, many commits under way: every session a
 * client was answered for is in the store after the restart. */
static void
test_kill_9_during_commits_under_load_loses_nothing_acknowledged(void **state)
{
	enum { LOAD = 40 };
	CURLM *multi = curl_multi_init();
	CURL *easy[LOAD];
	static struct harness_body bodies[LOAD];
	struct curl_slist *headers = curl_slist_append(NULL, "Content-Type: application/json");
	char url[256];
	int running = 1, answered = 0, checked = 0;
	long creates_before = fake_count(&fake, "creates");

	(void)state;
	daemon_url(&daemon_proc, "/api/v1/chat", url, sizeof(url));
	add_creates(multi, easy, bodies, LOAD, headers, url, "{}");
	/* Kill once creates are under way upstream and some are answered. */
	while (running > 0) {
		CURLMsg *msg;
		int left;
		curl_multi_perform(multi, &running);
		while ((msg = curl_multi_info_read(multi, &left)) != NULL)
			if (msg->msg == CURLMSG_DONE && msg->data.result == CURLE_OK)
				answered++;
		if (answered >= LOAD / 4 && fake_count(&fake, "creates") > creates_before + answered)
			break;
		curl_multi_poll(multi, NULL, 0, 5, NULL);
	}
	daemon_kill(&daemon_proc);
	while (running > 0) {
		curl_multi_perform(multi, &running); /* the rest fail: not acknowledged */
		if (running > 0)
			curl_multi_poll(multi, NULL, 0, 100, NULL);
	}
	assert_int_equal(daemon_start(&daemon_proc, HARNESS_KEY), 0);
	for (int i = 0; i < LOAD; i++) {
		long status = 0;
		json_t *doc;
		char path[128], one[256], value[16];
		struct http_response r;

		curl_easy_getinfo(easy[i], CURLINFO_RESPONSE_CODE, &status);
		doc = status == 200 ? json_loads(bodies[i].data, 0, NULL) : NULL;
		if (json_is_string(json_object_get(doc, "session_id"))) {
			/* Acknowledged: it must be a hit, upstream not asked. */
			snprintf(path, sizeof(path), "/api/v1/chat/%s/summary",
			    json_string_value(json_object_get(doc, "session_id")));
			assert_int_equal(
			    http_call("GET", daemon_url(&daemon_proc, path, one, sizeof(one)), NULL, NULL, 0, &r), 0);
			assert_int_equal(r.status, 200);
			assert_string_equal(http_header(&r, "X-Cache", value, sizeof(value)), "HIT");
			http_response_free(&r);
			checked++;
		}
		json_decref(doc);
		curl_multi_remove_handle(multi, easy[i]);
		curl_easy_cleanup(easy[i]);
	}
	assert_true(checked >= LOAD / 4);
	curl_slist_free_all(headers);
	curl_multi_cleanup(multi);
}

/* Last: a clean stop (exit 0) also means no sanitizer report at exit. */
static void
test_daemon_stops_cleanly_and_never_logged_the_key(void **state)
{
	(void)state;
	assert_int_equal(daemon_stop(&daemon_proc), 0);
	assert_false(daemon_log_contains(&daemon_proc, HARNESS_KEY));
	assert_false(daemon_log_contains(&daemon_proc, "client-token-not-the-key"));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_create_sends_the_real_key_and_never_the_clients_credentials),
		cmocka_unit_test(test_created_session_is_served_from_the_store_without_upstream),
		cmocka_unit_test(test_lookup_miss_reads_through_then_hits),
		cmocka_unit_test(test_lookup_of_unknown_session_is_upstreams_404),
		cmocka_unit_test(test_sessions_survive_a_restart),
		cmocka_unit_test(test_acknowledged_session_survives_kill_9),
		cmocka_unit_test(test_fifty_concurrent_creates_all_succeed_and_are_stored),
		cmocka_unit_test(test_upstream_connections_are_kept_for_the_next_calls),
		cmocka_unit_test(test_client_that_hangs_up_early_loses_nothing),
		cmocka_unit_test(test_upstream_connection_is_reused),
		cmocka_unit_test(test_a_lookup_is_answered_while_a_commit_is_in_progress),
		cmocka_unit_test(test_kill_9_during_commits_under_load_loses_nothing_acknowledged),
		cmocka_unit_test(test_stop_lets_a_create_in_flight_finish),
		cmocka_unit_test(test_daemon_stops_cleanly_and_never_logged_the_key),
	};
	int failed;

	curl_global_init(CURL_GLOBAL_DEFAULT);
	failed = cmocka_run_group_tests_name("integration: create and lookup", tests, start_all, stop_all);
	curl_global_cleanup();
	return failed;
}
