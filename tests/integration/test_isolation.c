/* Integration: one door, no way around it. Two clients against a fake that
 * routes the way FastAPI does (on the wholly decoded path, a trailing slash
 * taken as the same route): another client's session answers exactly as a
 * missing one under every method and spelling, and nothing reaches
 * upstream; the same spellings of one's own session reach what they name. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <event2/util.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "harness.h"

static struct fake_upstream fake;
static struct daemon_process gw;
static char *dir;
static char bob_id[64], alice_id[64];

#define ALICE_TOKEN "tok-alice-iso-51c2"
#define BOB_TOKEN "tok-bob-iso-90ad"
#define CAROL_TOKEN "tok-carol-iso-3b7e"
#define DAVE_TOKEN "tok-dave-iso-c04f"
#define ALICE "Authorization: Bearer " ALICE_TOKEN
#define BOB "Authorization: Bearer " BOB_TOKEN
#define CAROL "Authorization: Bearer " CAROL_TOKEN
#define DAVE "Authorization: Bearer " DAVE_TOKEN

static int
start_all(void **state)
{
	char a[65], b[65], c[65], d[65];
	FILE *f;

	(void)state;
	dir = harness_make_dir("isolation");
	if (dir == NULL || fake_start(&fake, dir) != 0)
		return -1;
	harness_token_hex(ALICE_TOKEN, a);
	harness_token_hex(BOB_TOKEN, b);
	harness_token_hex(CAROL_TOKEN, c);
	harness_token_hex(DAVE_TOKEN, d);
	daemon_write_config(&gw, dir, fake.port, NULL, NULL, NULL);
	/* Under AddressSanitizer freed memory waits in a quarantine (256 MB by
	 * default) and shows as resident: keep it small, so that the flood test
	 * measures what the daemon holds, not what it freed. */
	if (getenv("ASAN_OPTIONS") != NULL) {
		char options[512];
		snprintf(options, sizeof(options), "%s:quarantine_size_mb=1", getenv("ASAN_OPTIONS"));
		setenv("ASAN_OPTIONS", options, 1);
	}
	f = fopen(gw.conf_path, "a");
	fprintf(f,
	    "routes = (\n"
	    "  { prefix = \"/api/v1/chat\"; methods = [ \"GET\", \"POST\", \"PUT\", \"PATCH\", \"DELETE\" ]; },\n"
	    "  { prefix = \"/api/v1/projects\"; methods = [ \"GET\", \"PUT\", \"PATCH\" ]; }\n);\n"
	    "clients = (\n  { name = \"alice\"; token_sha256 = \"%s\"; metrics = true; "
	    "max_tokens_per_day = 1000000; },\n"
	    "  { name = \"bob\"; token_sha256 = \"%s\"; },\n"
	    "  { name = \"carol\"; token_sha256 = \"%s\"; project_id = \"proj-c\"; },\n"
	    "  { name = \"dave\"; token_sha256 = \"%s\"; project_id = \"proj-c\"; }\n);\n",
	    a, b, c, d);
	fclose(f);
	if (daemon_start(&gw, HARNESS_KEY) != 0)
		return -1;
	daemon_create_session(&gw, BOB, bob_id, sizeof(bob_id));
	daemon_create_session(&gw, ALICE, alice_id, sizeof(alice_id));
	return 0;
}

static int
stop_all(void **state)
{
	(void)state;
	harness_suite_stop(&dir, &fake, &gw);
	return 0;
}

/* One raw request (the target goes as written), with a JSON body. */
static void
raw_call(const char *who, const char *method, const char *target, struct http_response *r)
{
	static const char body[] = "{\"prompt\":\"hi\",\"index_ids\":[]}";
	char request[2048];
	int len = snprintf(request, sizeof(request),
	    "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%s\r\nContent-Type: application/json\r\n"
	    "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
	    method, target, who, strlen(body), body);

	assert_true(len > 0 && (size_t)len < sizeof(request));
	assert_int_equal(harness_raw_exchange(gw.port, request, (size_t)len, r), 0);
}

/* The spellings of a path that names a session, "{id}" standing for it. */
static const char *const spellings[] = {
	"/api/v1/chat/{id}",
	"/api/v1/chat/{id}/",
	"/api/v1/chat/{id}/summary",
	"/api/v1/chat/{id}/%73ummary",
	"/api/v1/chat/{id}/SUMMARY",
	"/api/v1/chat/{id}/summary/",
	"/api/v1/chat/{id}/summary//",
	"/api/v1/chat/{id}//summary",
	"/api/v1/chat//{id}/summary",
	"/api/v1/chat/{id};x/summary",
	"/api/v1/chat/{id}/summary;x",
	"/api/v1/chat/{id}/./summary",
	"/api/v1/chat/nope/../{id}/summary",
	"/api/v1/chat/{id}%2Fsummary",
	"/api/v1/chat/{id}%2fsummary",
	"/api/v1/chat/{id}%3Bx",
	"/api/v1/chat/{id}%20",
	"/api/v1/chat/{id}/messages/stream",
	"/api/v1/chat/{id}/messages/%73tream",
	"/api/v1/chat/{id}/messages/stream/",
	"/api/v1/chat/{id}/messages//stream",
	"/api/v1/chat/{id}/files",
	"/api/v1/chat/{id}/files/",
	"/api/v1/chat/{id}/anything/deeper",
	"/api/v1/ch%61t/{id}/summary",
	"/%61pi/v1/chat/{id}/summary",
	"/api/v1/chat/{id}?organization_id=&project_id=",
	"http://127.0.0.1/api/v1/chat/{id}/summary",
};

/* template with its "{id}" replaced by id, into out. */
static void
spell(const char *template, const char *id, char *out, size_t size)
{
	const char *at = strstr(template, "{id}");

	snprintf(out, size, "%.*s%s%s", (int)(at - template), template, id, at + 4);
}

static const char *const methods[] = { "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS" };

/* id with its first letter percent-encoded ("%73es-000001"): a spelling of
 * the id itself. */
static void
encode_first(const char *id, char *out, size_t size)
{
	snprintf(out, size, "%%%02X%s", (unsigned char)id[0], id + 1);
}

/* What another client gets must be what a session that does not exist
 * gets, for every method and spelling, and upstream hears nothing of it. */
static void
test_another_clients_session_is_missing_under_every_method_and_spelling(void **state)
{
	char missing[64], encoded_bob[80], encoded_missing[80];
	const char *ids[][2] = { { bob_id, missing }, { encoded_bob, encoded_missing } };
	long before = fake_count(&fake, "api_requests");
	int checked = 0;

	(void)state;
	/* The same length as bob's id, so that no length shows in an answer. */
	snprintf(missing, sizeof(missing), "ses-%0*d", (int)strlen(bob_id) - 4, 999999);
	missing[strlen(bob_id)] = '\0';
	encode_first(bob_id, encoded_bob, sizeof(encoded_bob));
	encode_first(missing, encoded_missing, sizeof(encoded_missing));
	for (size_t s = 0; s < sizeof(spellings) / sizeof(spellings[0]); s++) {
		for (size_t m = 0; m < sizeof(methods) / sizeof(methods[0]); m++) {
			for (size_t i = 0; i < 2; i++) {
				struct http_response theirs, none;
				char target[512], target_missing[512];
				spell(spellings[s], ids[i][0], target, sizeof(target));
				spell(spellings[s], ids[i][1], target_missing, sizeof(target_missing));
				raw_call(ALICE, methods[m], target, &theirs);
				raw_call(ALICE, methods[m], target_missing, &none);
				if (theirs.status != 404 && theirs.status != 400)
					fail_msg("%s %s answered %ld to another client: %s", methods[m], target,
					    theirs.status, theirs.body);
				assert_int_equal(theirs.status, none.status);
				assert_int_equal(theirs.body_len, none.body_len);
				assert_memory_equal(theirs.body, none.body, theirs.body_len);
				http_response_free(&theirs);
				http_response_free(&none);
				checked++;
			}
		}
	}
	assert_true(checked > 300);
	assert_int_equal(fake_count(&fake, "api_requests"), before);
}

/* The spellings that mean the same thing reach it for its owner: the check
 * above holds because they are refused or routed, never because they fail. */
static void
test_own_session_under_other_spellings(void **state)
{
	char target[256], encoded[80];
	struct http_response r;
	long subresources = fake_count(&fake, "subresources");

	(void)state;
	snprintf(target, sizeof(target), "/api/v1/chat/%s/%%73ummary", alice_id);
	raw_call(ALICE, "GET", target, &r);
	assert_int_equal(r.status, 200);
	assert_non_null(strstr(r.body, alice_id));
	assert_non_null(strstr(r.headers, "X-Cache: HIT"));
	http_response_free(&r);
	encode_first(alice_id, encoded, sizeof(encoded));
	snprintf(target, sizeof(target), "/api/v1/chat/%s/summary", encoded);
	raw_call(ALICE, "GET", target, &r);
	assert_int_equal(r.status, 200);
	http_response_free(&r);
	/* A sub-resource no handler knows passes through for the owner. */
	snprintf(target, sizeof(target), "/api/v1/chat/%s/files", alice_id);
	raw_call(ALICE, "GET", target, &r);
	assert_int_equal(r.status, 200);
	assert_non_null(strstr(r.body, "\"files\""));
	http_response_free(&r);
	assert_int_equal(fake_count(&fake, "subresources"), subresources + 1);
	/* A trailing slash is refused, for the owner too: upstream might take
	 * it for the route without one. */
	snprintf(target, sizeof(target), "/api/v1/chat/%s/summary/", alice_id);
	raw_call(ALICE, "GET", target, &r);
	assert_int_equal(r.status, 400);
	assert_non_null(strstr(r.body, "\"detail\""));
	http_response_free(&r);
}

/* Outside the chat resource the policy is decided on the decoded path, and
 * the normal form is what goes upstream. */
static void
test_pass_through_forwards_the_normal_form(void **state)
{
	struct http_response r;
	json_t *stats;
	const char *uri;

	(void)state;
	raw_call(ALICE, "GET", "/api/v1/pr%6Fjects?x=%2F", &r);
	assert_int_equal(r.status, 200);
	http_response_free(&r);
	stats = fake_stats(&fake);
	uri = json_string_value(json_object_get(json_object_get(stats, "last"), "uri"));
	assert_string_equal(uri, "/api/v1/projects?x=%2F");
	json_decref(stats);
	/* A prefix the policy does not allow, spelled with escapes. */
	raw_call(ALICE, "GET", "/api/v1/%70rojectsX", &r);
	assert_int_equal(r.status, 403);
	http_response_free(&r);
	raw_call(ALICE, "GET", "/api/v1/proj%C3%A9cts", &r);
	assert_int_equal(r.status, 403);
	http_response_free(&r);
	raw_call(ALICE, "GET", "/api/v1/projects%2F..%2Fchat", &r);
	assert_int_equal(r.status, 400);
	http_response_free(&r);
	raw_call(ALICE, "GET", "/api/v1/projects/%zz", &r);
	assert_int_equal(r.status, 400);
	http_response_free(&r);
}

/* One connection pipelines a flood of requests and never reads an answer:
 * the daemon stops taking requests from it once its unsent answers pass
 * limits.max_pending_output_bytes, so its memory stays flat, and others
 * are served all the while. */
static void
test_a_connection_that_never_reads_costs_bounded_memory(void **state)
{
	static const char one[] = "GET /nope HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
	enum { REQUESTS = 1000000, BATCH = 1000 }; /* more than loopback's socket buffers hold */
	char *batch = malloc(BATCH * (sizeof(one) - 1));
	long rss_before = harness_rss_kib(gw.pid), rss_after;
	long sent = 0, total = (long)REQUESTS * (long)(sizeof(one) - 1);
	int fd = harness_connect(gw.port);
	struct http_response r;

	(void)state;
	assert_non_null(batch);
	assert_true(fd >= 0);
	for (int i = 0; i < BATCH; i++)
		memcpy(batch + i * (sizeof(one) - 1), one, sizeof(one) - 1);
	evutil_make_socket_nonblocking(fd);
	/* Write until all is sent, or until the daemon has taken nothing for a
	 * second: it stopped reading, as it should. */
	while (sent < total) {
		struct pollfd p = { .fd = fd, .events = POLLOUT };
		size_t at = (size_t)(sent % (long)(BATCH * (sizeof(one) - 1)));
		size_t len = BATCH * (sizeof(one) - 1) - at;
		ssize_t n;
		if ((long)len > total - sent)
			len = (size_t)(total - sent);
		if (poll(&p, 1, 1000) <= 0)
			break;
		if ((n = write(fd, batch + at, len)) <= 0)
			break;
		sent += n;
	}
	/* Another client is served meanwhile. */
	assert_int_equal(daemon_call(&gw, ALICE, "GET", "/api/v1/chat", NULL, &r), 200);
	http_response_free(&r);
	rss_after = harness_rss_kib(gw.pid);
	print_message("sent %ld of %ld bytes; daemon RSS %ld KiB -> %ld KiB\n", sent, total, rss_before, rss_after);
	close(fd);
	free(batch);
	assert_true(sent < total);
	assert_true(rss_after - rss_before < 8 * 1024);
}

struct metric_wait {
	const char *series;
	double at_least;
};

static bool
metric_reached(void *arg)
{
	struct metric_wait *w = arg;

	return daemon_metric_as(&gw, ALICE, w->series) >= w->at_least;
}

/* A client that hangs up after the last message event, before the stop
 * event, still pays for its turn: the daemon reads upstream's stream to
 * its end and charges the budget and the ledger. */
static void
test_a_turn_whose_client_hangs_up_before_stop_is_charged(void **state)
{
	static const char prompt[] = "count me";
	char request[1024], body[128], got[4096] = "";
	const char *tokens = "llamachatd_budget_used{client=\"alice\",budget=\"tokens\"}";
	const char *turns = "llamachatd_client_turns_total{client=\"alice\",organization_id=\"\",project_id=\"\"}";
	struct metric_wait used = { tokens, daemon_metric_as(&gw, ALICE, tokens) + 100 + strlen(prompt) + 7 };
	struct metric_wait ran = { turns, daemon_metric_as(&gw, ALICE, turns) + 1 };
	long offset = daemon_log_offset(&gw), held = fake_count(&fake, "streams_held");
	size_t have = 0;
	int fd, len;

	(void)state;
	if (ran.at_least < 1)
		ran.at_least = 1; /* no turn of alice's in the ledger yet */
	assert_int_equal(fake_fault(&fake, "POST", "/api/v1/chat/{id}/messages/stream", "{\"mode\":\"hold\"}"), 0);
	snprintf(body, sizeof(body), "{\"prompt\":\"%s\",\"index_ids\":[]}", prompt);
	len = snprintf(request, sizeof(request),
	    "POST /api/v1/chat/%s/messages/stream HTTP/1.1\r\nHost: 127.0.0.1\r\n%s\r\n"
	    "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
	    alice_id, ALICE, strlen(body), body);
	fd = harness_connect(gw.port);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, request, (size_t)len), len);
	/* The first event arrives; the fake holds the rest, stop included. */
	while (have < sizeof(got) - 1 && strstr(got, "Hel") == NULL) {
		ssize_t n = read(fd, got + have, sizeof(got) - 1 - have);
		assert_true(n > 0);
		have += (size_t)n;
		got[have] = '\0';
	}
	fake_wait_count(&fake, "streams_held", held + 1);
	close(fd);
	daemon_wait_log(&gw, offset, "status=499");
	/* Only now does upstream finish the turn. */
	assert_int_equal(fake_release(&fake), 1);
	harness_wait(metric_reached, &used, HARNESS_WAIT_MS, "the hung-up turn's tokens in alice's budget");
	harness_wait(metric_reached, &ran, HARNESS_WAIT_MS, "the hung-up turn in alice's ledger");
}

/* A passed-through 204 has no body and no chunked framing: the answer
 * after it on the same connection is read as it should be. */
static void
test_a_passed_through_204_keeps_the_connection_in_step(void **state)
{
	char request[1024];
	struct http_response r;
	const char *second;
	int len;

	(void)state;
	len = snprintf(request, sizeof(request),
	    "DELETE /api/v1/chat/%s/files HTTP/1.1\r\nHost: 127.0.0.1\r\n%s\r\n\r\n"
	    "GET /api/v1/chat/%s/summary HTTP/1.1\r\nHost: 127.0.0.1\r\n%s\r\nConnection: close\r\n\r\n",
	    alice_id, ALICE, alice_id, ALICE);
	assert_int_equal(harness_raw_exchange(gw.port, request, (size_t)len, &r), 0);
	assert_int_equal(r.status, 204);
	assert_null(strcasestr(r.headers, "Transfer-Encoding"));
	/* Right after the 204's head comes the next answer, nothing between. */
	second = r.body;
	assert_true(strncmp(second, "HTTP/1.1 200 ", 13) == 0);
	assert_non_null(strstr(second, alice_id));
	http_response_free(&r);
}

/* PUT and PATCH carry their body upstream. */
static void
test_put_and_patch_forward_their_body(void **state)
{
	static const char *const with_body[] = { "PUT", "PATCH" };
	struct http_response r;
	json_t *stats, *last;

	(void)state;
	for (size_t i = 0; i < 2; i++) {
		raw_call(ALICE, with_body[i], "/api/v1/projects", &r);
		http_response_free(&r);
		stats = fake_stats(&fake);
		last = json_object_get(stats, "last");
		assert_string_equal(json_string_value(json_object_get(last, "method")), with_body[i]);
		assert_string_equal(
		    json_string_value(json_object_get(last, "body")), "{\"prompt\":\"hi\",\"index_ids\":[]}");
		json_decref(stats);
	}
}

/* A scope named twice is refused: here first-wins and upstream last-wins
 * would disagree on which scope was checked. */
static void
test_a_scope_given_twice_is_a_400(void **state)
{
	static const char *const queries[] = { "?project_id=a&project_id=b", "?organization_id=a&organization_id=a",
		"?project_id=&project_id=b", "?project%5Fid=a&project_id=b", "?project%5Fid=a&project%5fid=b" };
	long before = fake_count(&fake, "api_requests");
	char path[160];

	(void)state;
	for (size_t i = 0; i < sizeof(queries) / sizeof(queries[0]); i++) {
		snprintf(path, sizeof(path), "/api/v1/chat%s", queries[i]);
		assert_int_equal(daemon_call(&gw, ALICE, "POST", path, "{}", NULL), 400);
		assert_int_equal(daemon_call(&gw, CAROL, "GET", path, NULL, NULL), 400);
	}
	assert_int_equal(fake_count(&fake, "api_requests"), before);
}

/* A pinned client's scope holds in a create's body too, and the sessions
 * of its project are its own and its project mates'. */
static void
test_a_pin_holds_in_the_body_and_shares_the_project(void **state)
{
	char id[64], path[160];
	long before = fake_count(&fake, "creates");

	(void)state;
	assert_int_equal(daemon_call(&gw, CAROL, "POST", "/api/v1/chat", "{\"project_id\":\"proj-x\"}", NULL), 403);
	assert_int_equal(daemon_call(&gw, CAROL, "POST", "/api/v1/chat", "{\"organization_id\":7}", NULL), 200);
	assert_int_equal(fake_count(&fake, "creates"), before + 1);
	assert_int_equal(daemon_call(&gw, CAROL, "POST", "/api/v1/chat", "{\"project_id\":\"proj-c\"}", NULL), 200);
	daemon_create_session(&gw, CAROL, id, sizeof(id));
	snprintf(path, sizeof(path), "/api/v1/chat/%s/summary", id);
	assert_int_equal(daemon_call(&gw, DAVE, "GET", path, NULL, NULL), 200);
	assert_int_equal(daemon_call(&gw, ALICE, "GET", path, NULL, NULL), 404);
	assert_int_equal(daemon_call(&gw, BOB, "GET", path, NULL, NULL), 404);
}

/* In team mode /healthz tells anyone whether the daemon is up, and what it
 * holds only to clients that may read /metrics. */
static void
test_healthz_shows_counts_only_to_metrics_clients(void **state)
{
	struct http_response r;

	(void)state;
	assert_int_equal(daemon_call(&gw, NULL, "GET", "/healthz", NULL, &r), 200);
	assert_null(strstr(r.body, "sessions"));
	http_response_free(&r);
	assert_int_equal(daemon_call(&gw, BOB, "GET", "/healthz", NULL, &r), 200);
	assert_null(strstr(r.body, "sessions"));
	http_response_free(&r);
	assert_int_equal(daemon_call(&gw, ALICE, "GET", "/healthz", NULL, &r), 200);
	assert_non_null(strstr(r.body, "\"sessions\""));
	http_response_free(&r);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_another_clients_session_is_missing_under_every_method_and_spelling),
		cmocka_unit_test(test_own_session_under_other_spellings),
		cmocka_unit_test(test_pass_through_forwards_the_normal_form),
		cmocka_unit_test(test_a_connection_that_never_reads_costs_bounded_memory),
		cmocka_unit_test(test_a_turn_whose_client_hangs_up_before_stop_is_charged),
		cmocka_unit_test(test_a_passed_through_204_keeps_the_connection_in_step),
		cmocka_unit_test(test_put_and_patch_forward_their_body),
		cmocka_unit_test(test_a_scope_given_twice_is_a_400),
		cmocka_unit_test(test_a_pin_holds_in_the_body_and_shares_the_project),
		cmocka_unit_test(test_healthz_shows_counts_only_to_metrics_clients),
	};
	return cmocka_run_group_tests_name("isolation", tests, start_all, stop_all);
}
