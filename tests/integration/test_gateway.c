/* Integration: llamachatd as a team gateway: client tokens, ownership,
 * pinned scope, rate limits, the usage ledger, reload, and a key that never
 * shows. */
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
#include <unistd.h>

#include "gate/clients.h"
#include "harness.h"
#include "store/session.h"
#include "store/store.h"

static struct fake_upstream fake;
static struct daemon_process gw;
static char *dir;

#define ALICE "Authorization: Bearer tok-alice-1f9e"
#define BOB "Authorization: Bearer tok-bob-77c0"
#define LEAD "Authorization: Bearer tok-lead-a31d"
#define SLOW "Authorization: Bearer tok-slow-5e2b"

static const char *const tokens[] = { "tok-alice-1f9e", "tok-bob-77c0", "tok-lead-a31d", "tok-slow-5e2b" };

/* The gateway's config: alice only when with_alice; extra_upstream (may be
 * NULL) goes into the upstream group. */
static void
write_gateway_config(bool with_alice, const char *extra_upstream)
{
	char h[4][65];
	FILE *f;

	for (int i = 0; i < 4; i++)
		harness_token_hex(tokens[i], h[i]);
	daemon_write_config(&gw, dir, fake.port, extra_upstream, "client_timeout_ms = 500;", NULL);
	f = fopen(gw.conf_path, "a");
	fprintf(f, "clients = (\n");
	if (with_alice)
		fprintf(f, "  { name = \"alice\"; token_sha256 = \"%s\"; rate_per_s = 1000; },\n", h[0]);
	fprintf(f,
	    "  { name = \"bob\"; token_sha256 = \"%s\"; project_id = \"proj-bob\"; },\n"
	    "  { name = \"lead\"; token_sha256 = \"%s\"; see_all = true; },\n"
	    "  { name = \"slow\"; token_sha256 = \"%s\"; rate_per_s = 0.5; burst = 2; }\n);\n",
	    h[1], h[2], h[3]);
	fclose(f);
}

static int
start_all(void **state)
{
	(void)state;
	dir = harness_make_dir("gateway");
	if (dir == NULL || fake_start(&fake, dir) != 0)
		return -1;
	write_gateway_config(true, NULL);
	return daemon_start(&gw, HARNESS_KEY);
}

static int
stop_all(void **state)
{
	(void)state;
	harness_suite_stop(&dir, &fake, &gw);
	return 0;
}

/* One call as a client; returns the status, the parsed body in *doc (may be
 * NULL) and the response in r when given. */
static long
as(const char *who, const char *method, const char *path, const char *body, json_t **doc)
{
	struct http_response r;
	long status = daemon_call(&gw, who, method, path, body, &r);

	if (doc != NULL)
		*doc = json_loads(r.body, 0, NULL);
	http_response_free(&r);
	return status;
}

static void
create_as(const char *who, const char *query, char *id, size_t size)
{
	char path[256];
	json_t *doc;

	snprintf(path, sizeof(path), "/api/v1/chat%s", query);
	assert_int_equal(as(who, "POST", path, "{}", &doc), 200);
	snprintf(id, size, "%s", json_string_value(json_object_get(doc, "session_id")));
	json_decref(doc);
}

static bool
list_has(const char *who, const char *query, const char *id)
{
	char path[256];
	json_t *doc, *item;
	size_t i;
	bool found = false;

	snprintf(path, sizeof(path), "/api/v1/chat?page_size=100%s", query);
	assert_int_equal(as(who, "GET", path, NULL, &doc), 200);
	json_array_foreach(json_object_get(doc, "items"), i, item)
		found = found || strcmp(json_string_value(json_object_get(item, "session_id")), id) == 0;
	json_decref(doc);
	return found;
}

static void
test_unknown_or_missing_tokens_are_401_and_upstream_untouched(void **state)
{
	long before = fake_count(&fake, "api_requests");
	const char *headers[] = { NULL };
	struct http_response r;
	char url[256], value[64];

	(void)state;
	assert_int_equal(as("X-No-Auth: 1", "POST", "/api/v1/chat", "{}", NULL), 401);
	assert_int_equal(as("Authorization: Bearer tok-nobody", "GET", "/api/v1/chat", NULL, NULL), 401);
	assert_int_equal(as("Authorization: Basic dG9rLWFsaWNlLTFmOWU=", "GET", "/api/v1/chat", NULL, NULL), 401);
	/* The real key is no client token either. */
	assert_int_equal(as("Authorization: Bearer " HARNESS_KEY, "GET", "/api/v1/chat", NULL, NULL), 401);
	assert_int_equal(
	    http_call("GET", daemon_url(&gw, "/api/v1/chat/ses-1/summary", url, sizeof(url)), headers, NULL, 0, &r), 0);
	assert_int_equal(r.status, 401);
	assert_string_equal(http_header(&r, "WWW-Authenticate", value, sizeof(value)), "Bearer");
	assert_non_null(strstr(r.body, "\"detail\""));
	http_response_free(&r);
	assert_int_equal(fake_count(&fake, "api_requests"), before);
}

static void
test_each_client_sees_and_touches_only_its_own(void **state)
{
	char a[64], b[64], path[256];
	long before;

	(void)state;
	create_as(ALICE, "", a, sizeof(a));
	create_as(BOB, "", b, sizeof(b));
	assert_true(list_has(ALICE, "", a));
	assert_false(list_has(ALICE, "", b));
	assert_false(list_has(ALICE, "&project_id=proj-bob", b));
	assert_true(list_has(BOB, "", b)); /* bob's pinned project is added for him */
	assert_false(list_has(BOB, "", a));
	assert_true(list_has(LEAD, "&project_id=proj-bob", b));
	assert_true(list_has(LEAD, "", a));

	/* Someone else's session is a 404, and upstream never hears of it. */
	before = fake_count(&fake, "api_requests");
	snprintf(path, sizeof(path), "/api/v1/chat/%s/summary", b);
	assert_int_equal(as(ALICE, "GET", path, NULL, NULL), 404);
	assert_int_equal(as(LEAD, "GET", path, NULL, NULL), 200);
	snprintf(path, sizeof(path), "/api/v1/chat/%s", b);
	assert_int_equal(as(ALICE, "GET", path, NULL, NULL), 404);
	assert_int_equal(as(ALICE, "DELETE", path, NULL, NULL), 404);
	snprintf(path, sizeof(path), "/api/v1/chat/%s/messages/stream", b);
	assert_int_equal(as(ALICE, "POST", path, "{\"prompt\":\"x\",\"index_ids\":[]}", NULL), 404);
	/* A session the daemon never stored is no one's: a 404 for alice too. */
	assert_int_equal(as(ALICE, "GET", "/api/v1/chat/ses-never-seen/summary", NULL, NULL), 404);
	assert_int_equal(fake_count(&fake, "api_requests"), before);
	/* Her own are hers. */
	snprintf(path, sizeof(path), "/api/v1/chat/%s/summary", a);
	assert_int_equal(as(ALICE, "GET", path, NULL, NULL), 200);
	assert_int_equal(as(BOB, "GET", path, NULL, NULL), 404);
}

static void
test_pinned_scope(void **state)
{
	char id[64];
	json_t *stats;
	const char *uri;
	long before = fake_count(&fake, "api_requests");

	(void)state;
	create_as(BOB, "?project_id=", id, sizeof(id)); /* empty means absent */
	stats = fake_stats(&fake);
	uri = json_string_value(json_object_get(json_object_get(stats, "last"), "uri"));
	assert_string_equal(uri, "/api/v1/chat?project_id=proj-bob");
	json_decref(stats);
	assert_int_equal(as(BOB, "POST", "/api/v1/chat?project_id=proj-other", "{}", NULL), 403);
	assert_int_equal(as(BOB, "GET", "/api/v1/chat?project_id=proj-other", NULL, NULL), 403);
	assert_int_equal(fake_count(&fake, "api_requests"), before + 1);
}

static void
test_rate_limit(void **state)
{
	const char *headers[] = { "Content-Type: application/json", SLOW, NULL };
	struct http_response r;
	char url[256], value[16];
	long before = fake_count(&fake, "api_requests");

	char id[128], path[256];

	(void)state;
	/* Lists and lookups answered from the store take nothing of the rate. */
	for (int i = 0; i < 6; i++)
		assert_int_equal(as(SLOW, "GET", "/api/v1/chat", NULL, NULL), 200);
	assert_int_equal(fake_count(&fake, "api_requests"), before);
	/* A burst of 2 upstream calls, then one every 2 s: the third at once is
	 * too many, and it is not forwarded. */
	create_as(SLOW, "", id, sizeof(id));
	snprintf(path, sizeof(path), "/api/v1/chat/%s", id);
	assert_int_equal(as(SLOW, "GET", path, NULL, NULL), 200);
	assert_int_equal(fake_count(&fake, "api_requests"), before + 2);
	assert_int_equal(http_call("POST", daemon_url(&gw, "/api/v1/chat", url, sizeof(url)), headers, "{}", 2, &r), 0);
	assert_int_equal(r.status, 429);
	assert_non_null(http_header(&r, "Retry-After", value, sizeof(value)));
	assert_true(atoi(value) >= 1 && atoi(value) <= 2);
	assert_non_null(strstr(r.body, "rate"));
	http_response_free(&r);
	assert_int_equal(fake_count(&fake, "api_requests"), before + 2);
	/* Over its rate, it still reads what the store holds. */
	snprintf(path, sizeof(path), "/api/v1/chat/%s/summary", id);
	assert_int_equal(as(SLOW, "GET", path, NULL, NULL), 200);
	assert_int_equal(as(SLOW, "GET", "/api/v1/chat", NULL, NULL), 200);
	assert_int_equal(fake_count(&fake, "api_requests"), before + 2);
	/* Others are not slowed by it. */
	assert_int_equal(as(LEAD, "GET", "/api/v1/chat", NULL, NULL), 200);
}

/* A client entry without rate_per_s is not limited: 300 upstream calls at
 * once all go through (the old default, 50/s with a burst of 100, refused
 * most of them). */
static void
test_no_rate_means_no_limit(void **state)
{
	long before = fake_count(&fake, "api_requests");
	char id[128], path[256];

	(void)state;
	create_as(BOB, "", id, sizeof(id));
	snprintf(path, sizeof(path), "/api/v1/chat/%s", id);
	for (int i = 0; i < 300; i++)
		assert_int_equal(as(BOB, "GET", path, NULL, NULL), 200);
	assert_int_equal(fake_count(&fake, "api_requests"), before + 301);
}

/* A stream through the gateway; the stop event's usage is added into sums. */
static void
stream_as(const char *who, const char *id, const char *prompt, unsigned long long *sums)
{
	char path[256], body[256];
	const char *headers[] = { "Content-Type: application/json", who, NULL };
	struct http_response r;
	char url[256];
	const char *stop;
	json_t *event, *usage;

	snprintf(path, sizeof(path), "/api/v1/chat/%s/messages/stream", id);
	snprintf(body, sizeof(body), "{\"prompt\":\"%s\",\"index_ids\":[]}", prompt);
	assert_int_equal(
	    http_call("POST", daemon_url(&gw, path, url, sizeof(url)), headers, body, strlen(body), &r), 0);
	assert_int_equal(r.status, 200);
	stop = strstr(r.body, "data: {\"type\":\"stop\"");
	assert_non_null(stop);
	event = json_loadb(stop + 6, strcspn(stop + 6, "\n"), 0, NULL);
	usage = json_object_get(event, "usage");
	sums[SESSION_LEDGER_TURNS] += (unsigned long long)json_integer_value(json_object_get(usage, "turns"));
	sums[SESSION_LEDGER_INPUT_TOKENS] +=
	    (unsigned long long)json_integer_value(json_object_get(usage, "total_input_tokens"));
	sums[SESSION_LEDGER_OUTPUT_TOKENS] +=
	    (unsigned long long)json_integer_value(json_object_get(usage, "total_output_tokens"));
	sums[SESSION_LEDGER_DURATION_MS] +=
	    (unsigned long long)json_integer_value(json_object_get(usage, "duration_ms"));
	json_decref(event);
	http_response_free(&r);
}

static unsigned long long alice_sums[SESSION_LEDGER_FIELD_COUNT], lead_sums[SESSION_LEDGER_FIELD_COUNT];

static void
test_three_streamed_turns_by_two_clients(void **state)
{
	char a[64], l[64];

	(void)state;
	create_as(ALICE, "?project_id=ledger-p", a, sizeof(a));
	create_as(LEAD, "?project_id=ledger-p", l, sizeof(l));
	stream_as(ALICE, a, "first question", alice_sums);
	stream_as(ALICE, a, "a second, longer question", alice_sums);
	stream_as(LEAD, l, "the lead asks", lead_sums);
	alice_sums[SESSION_LEDGER_SESSIONS] = 1;
	lead_sums[SESSION_LEDGER_SESSIONS] = 1;
	assert_int_equal(alice_sums[SESSION_LEDGER_TURNS], 2);
}

/* A curl multi handle kept moving while the test waits for the fake's
 * counter to reach target, or (counter NULL) for needle in the log. */
struct multi_pump {
	CURLM *multi;
	int running;
	const char *fake_counter;
	long target;
	long log_at;
	const char *needle;
};

static bool
pump_until(void *arg)
{
	struct multi_pump *p = arg;

	curl_multi_perform(p->multi, &p->running);
	curl_multi_poll(p->multi, NULL, 0, 10, NULL);
	if (p->fake_counter != NULL)
		return fake_count(&fake, p->fake_counter) >= p->target;
	return harness_file_contains_since(gw.log_path, p->log_at, p->needle);
}

static void
test_reload_revokes_tokens_rotates_the_key_and_spares_streams(void **state)
{
	char key_path[512], id[64], path[256], url[256], extra[600];
	const char *headers[] = { "Content-Type: application/json", BOB, NULL };
	struct curl_slist *list = NULL;
	CURL *curl;
	struct multi_pump pump = { .running = 1 };
	json_t *stats;
	long status = 0, held, log_at;
	FILE *f;
	static struct harness_body got;

	(void)state;
	/* A stream of bob's is in flight across the reload: held upstream
	 * from before the SIGHUP until after the reload is done. */
	create_as(BOB, "", id, sizeof(id));
	held = fake_count(&fake, "streams_held");
	assert_int_equal(fake_fault(&fake, "POST", "/api/v1/chat/{id}/messages/stream", "{\"mode\":\"hold\"}"), 0);
	snprintf(path, sizeof(path), "/api/v1/chat/%s/messages/stream", id);
	curl = curl_easy_init();
	pump.multi = curl_multi_init();
	for (int i = 0; headers[i] != NULL; i++)
		list = curl_slist_append(list, headers[i]);
	curl_easy_setopt(curl, CURLOPT_URL, daemon_url(&gw, path, url, sizeof(url)));
	curl_easy_setopt(curl, CURLOPT_POSTFIELDS, "{\"prompt\":\"across a reload\",\"index_ids\":[]}");
	curl_easy_setopt(curl, CURLOPT_HTTPHEADER, list);
	curl_easy_setopt(curl, CURLOPT_PROXY, "");
	curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, 15000L);
	curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, harness_body_sink);
	curl_easy_setopt(curl, CURLOPT_WRITEDATA, &got);
	curl_multi_add_handle(pump.multi, curl);
	pump.fake_counter = "streams_held";
	pump.target = held + 1;
	harness_wait(pump_until, &pump, HARNESS_WAIT_MS, "bob's stream to be held upstream");

	/* New key in a file, alice gone. */
	snprintf(key_path, sizeof(key_path), "%s/api_key", dir);
	f = fopen(key_path, "w");
	fprintf(f, "%s\n", HARNESS_KEY2);
	fclose(f);
	chmod(key_path, 0600);
	snprintf(extra, sizeof(extra), "api_key_file = \"%s\";", key_path);
	write_gateway_config(false, extra);
	log_at = daemon_log_offset(&gw);
	kill(gw.pid, SIGHUP);
	pump.fake_counter = NULL;
	pump.log_at = log_at;
	pump.needle = "reloaded";
	harness_wait(pump_until, &pump, HARNESS_WAIT_MS, "\"reloaded\" in the gateway's log");
	assert_int_equal(pump.running, 1); /* bob's stream is still going */

	assert_int_equal(as(ALICE, "GET", "/api/v1/chat", NULL, NULL), 401);
	assert_int_equal(as(LEAD, "POST", "/api/v1/chat", "{}", NULL), 200);
	stats = fake_stats(&fake);
	assert_string_equal(json_string_value(json_object_get(
	                        json_object_get(json_object_get(stats, "last"), "headers"), "authorization")),
	    "Bearer " HARNESS_KEY2);
	json_decref(stats);

	/* The stream that started before goes on to its end. */
	assert_int_equal(fake_release(&fake), 1);
	while (pump.running > 0) {
		curl_multi_perform(pump.multi, &pump.running);
		curl_multi_poll(pump.multi, NULL, 0, 100, NULL);
	}
	curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
	assert_int_equal(status, 200);
	assert_non_null(strstr(got.data, "\"type\":\"stop\""));
	curl_multi_remove_handle(pump.multi, curl);
	curl_easy_cleanup(curl);
	curl_multi_cleanup(pump.multi);
	curl_slist_free_all(list);

	/* A broken config is refused; the one in force stays. */
	f = fopen(gw.conf_path, "a");
	fprintf(f, "this is not a setting\n");
	fclose(f);
	log_at = daemon_log_offset(&gw);
	kill(gw.pid, SIGHUP);
	daemon_wait_log(&gw, log_at, "reload refused");
	assert_int_equal(as(LEAD, "GET", "/api/v1/chat", NULL, NULL), 200);
	assert_int_equal(as(ALICE, "GET", "/api/v1/chat", NULL, NULL), 401);

	/* A config that drops the key file, the key in force's source, is
	 * refused too, saying why; the key in force stays. */
	write_gateway_config(false, NULL);
	log_at = daemon_log_offset(&gw);
	kill(gw.pid, SIGHUP);
	daemon_wait_log(&gw, log_at, "reload refused: the key in force came from upstream.api_key_file");
	assert_int_equal(as(LEAD, "POST", "/api/v1/chat", "{}", NULL), 200);
	stats = fake_stats(&fake);
	assert_string_equal(json_string_value(json_object_get(
	                        json_object_get(json_object_get(stats, "last"), "headers"), "authorization")),
	    "Bearer " HARNESS_KEY2);
	json_decref(stats);
	write_gateway_config(false, extra);
}

static void
test_slow_headers_are_cut_off_while_others_are_served(void **state)
{
	const char *partial = "GET /api/v1/chat HTTP/1.1\r\nHost: localhost\r\n";
	char buf[256];
	int fd = harness_connect(gw.port);
	ssize_t n;

	(void)state;
	assert_true(fd >= 0);
	assert_true(write(fd, partial, strlen(partial)) > 0);
	/* Meanwhile a normal client is served. */
	assert_int_equal(as(LEAD, "GET", "/api/v1/chat", NULL, NULL), 200);
	/* client_timeout_ms is 500 here: the daemon hangs up on the slow one. */
	struct timeval limit = { 5, 0 };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof(limit));
	n = read(fd, buf, sizeof(buf));
	assert_true(n >= 0); /* closed (0) or an error answer, not the 5 s timeout */
	close(fd);
}

struct ledger_query {
	const char *client, *project;
	unsigned long long *sum;
};

static int
add_if_ours(const void *key, size_t len, const unsigned long long *counters, void *arg)
{
	struct ledger_query *q = arg;
	const char *client, *org, *project;
	size_t client_len, org_len, project_len;
	unsigned day;

	if (session_ledger_key_parse(key, len, &client, &client_len, &org, &org_len, &project, &project_len, &day) ==
	        0 &&
	    client_len == strlen(q->client) && memcmp(client, q->client, client_len) == 0 &&
	    project_len == strlen(q->project) && memcmp(project, q->project, project_len) == 0)
		for (int f = 0; f < STORE_LEDGER_FIELDS; f++)
			q->sum[f] += counters[f];
	return 0;
}

/* A client's totals in a project, over every day of the ledger. */
static void
ledger_sum(struct store *store, const char *client, const char *project, unsigned long long *sum)
{
	struct ledger_query q = { client, project, sum };

	memset(sum, 0, sizeof(unsigned long long) * STORE_LEDGER_FIELDS);
	assert_int_equal(store_ledger_scan(store, SIZE_MAX, add_if_ours, &q), STORE_OK);
}

static void
test_ledger_sums_survive_a_restart_and_nothing_leaked(void **state)
{
	char store_path[512], why[256];
	unsigned long long got[STORE_LEDGER_FIELDS];
	struct store *store;

	(void)state;
	assert_int_equal(daemon_stop(&gw), 0);
	snprintf(store_path, sizeof(store_path), "%s/store", dir);
	store = store_open(NULL, store_path, 1024, 0, why, sizeof(why));
	assert_non_null(store);
	ledger_sum(store, "alice", "ledger-p", got);
	for (int f = 0; f < SESSION_LEDGER_FIELD_COUNT; f++)
		assert_int_equal(got[f], alice_sums[f]);
	ledger_sum(store, "lead", "ledger-p", got);
	for (int f = 0; f < SESSION_LEDGER_FIELD_COUNT; f++)
		assert_int_equal(got[f], lead_sums[f]);
	store_close(store);

	/* Neither key nor any client token ever reached the daemon's output. */
	assert_false(daemon_log_contains(&gw, HARNESS_KEY));
	assert_false(daemon_log_contains(&gw, HARNESS_KEY2));
	for (size_t i = 0; i < sizeof(tokens) / sizeof(tokens[0]); i++)
		assert_false(daemon_log_contains(&gw, tokens[i]));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_unknown_or_missing_tokens_are_401_and_upstream_untouched),
		cmocka_unit_test(test_each_client_sees_and_touches_only_its_own),
		cmocka_unit_test(test_pinned_scope),
		cmocka_unit_test(test_rate_limit),
		cmocka_unit_test(test_no_rate_means_no_limit),
		cmocka_unit_test(test_three_streamed_turns_by_two_clients),
		cmocka_unit_test(test_slow_headers_are_cut_off_while_others_are_served),
		cmocka_unit_test(test_reload_revokes_tokens_rotates_the_key_and_spares_streams),
		cmocka_unit_test(test_ledger_sums_survive_a_restart_and_nothing_leaked),
	};
	int failed;

	curl_global_init(CURL_GLOBAL_DEFAULT);
	failed = cmocka_run_group_tests_name("integration: team gateway", tests, start_all, stop_all);
	curl_global_cleanup();
	return failed;
}
