/* Integration: credentials for a whole team. Three LlamaCloud keys (the
 * default, project A's and project B's) against a fake that remembers the
 * key each session was created with and counts every later call about it
 * that carries another; client tokens with lifetimes, rotated across
 * reloads without a failed call; the client list in an @included file. */
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
#include <time.h>
#include <unistd.h>

#include "harness.h"

static struct fake_upstream fake;
static struct daemon_process gw;
static char *dir;

#define ANN "Authorization: Bearer tok-ann-cred-01"
#define BEN "Authorization: Bearer tok-ben-cred-02"
#define UNA "Authorization: Bearer tok-una-cred-03"
#define CARL "Authorization: Bearer tok-carl-cred-04"
#define LEAD "Authorization: Bearer tok-lead-cred-05"

static void
write_key(const char *name, const char *key)
{
	char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/keys/%s", dir, name);
	f = fopen(path, "w");
	fprintf(f, "%s\n", key);
	fclose(f);
	chmod(path, 0600);
}

/* An RFC 3339 UTC time offset seconds from now. */
static const char *
utc_from_now(long offset, char *buf, size_t size)
{
	time_t t = time(NULL) + offset;
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
	return buf;
}

/* The config: the default key unless without_default, the project keys,
 * and the clients in clients.conf (@included). */
static void
write_config(bool without_default)
{
	char extra[1024];
	FILE *f;

	snprintf(extra, sizeof(extra),
	    "%s%s/keys/default\";\n"
	    "  project_keys = ( { project_id = \"proj-a\"; api_key_file = \"%s/keys/a\"; },\n"
	    "                   { project_id = \"proj-b\"; api_key_file = \"%s/keys/b\"; } );",
	    without_default ? "  # no default: api_key_file = \"" : "  api_key_file = \"", dir, dir, dir);
	daemon_write_config(&gw, dir, fake.port, extra, NULL, NULL);
	f = fopen(gw.conf_path, "a");
	fprintf(f, "@include \"clients.conf\"\n");
	fclose(f);
}

/* clients.conf: ann's tokens are given (a list's text), the rest fixed. */
static void
write_clients(const char *ann_tokens)
{
	char path[512], h[5][65];
	const char *tokens[] = { "tok-ann-cred-01", "tok-ben-cred-02", "tok-una-cred-03", "tok-carl-cred-04",
		"tok-lead-cred-05" };
	FILE *f;

	for (int i = 0; i < 5; i++)
		harness_token_hex(tokens[i], h[i]);
	snprintf(path, sizeof(path), "%s/clients.conf", dir);
	f = fopen(path, "w");
	fprintf(f,
	    "clients = (\n"
	    "  { name = \"ann\"; project_id = \"proj-a\"; %s },\n"
	    "  { name = \"ben\"; token_sha256 = \"%s\"; project_id = \"proj-b\"; },\n"
	    "  { name = \"una\"; token_sha256 = \"%s\"; },\n"
	    "  { name = \"carl\"; token_sha256 = \"%s\"; project_id = \"proj-c\"; },\n"
	    "  { name = \"lead\"; token_sha256 = \"%s\"; see_all = true; metrics = true; }\n);\n",
	    ann_tokens != NULL ? ann_tokens : "", h[1], h[2], h[3], h[4]);
	fclose(f);
	chmod(path, 0600);
}

/* ann's usual single token, as a tokens entry. */
static void
ann_plain(char *out, size_t size)
{
	char h[65];

	harness_token_hex("tok-ann-cred-01", h);
	snprintf(out, size, "token_sha256 = \"%s\";", h);
}

static void
reload(const char *needle)
{
	long offset = daemon_log_offset(&gw);

	kill(gw.pid, SIGHUP);
	daemon_wait_log(&gw, offset, needle);
}

static int
start_all(void **state)
{
	char path[512], ann[256];

	(void)state;
	dir = harness_make_dir("credentials");
	if (dir == NULL || fake_start(&fake, dir) != 0)
		return -1;
	snprintf(path, sizeof(path), "%s/keys", dir);
	mkdir(path, 0700);
	write_key("default", HARNESS_KEY);
	write_key("a", HARNESS_KEY_A);
	write_key("b", HARNESS_KEY_B);
	ann_plain(ann, sizeof(ann));
	write_clients(ann);
	write_config(false);
	/* Started from another directory: the @include follows the config. */
	return daemon_start(&gw, NULL);
}

static int
stop_all(void **state)
{
	(void)state;
	harness_suite_stop(&dir, &fake, &gw);
	return 0;
}

/* The Authorization of the fake's last API request. */
static const char *
last_key(char *buf, size_t size)
{
	json_t *stats = fake_stats(&fake);
	const char *auth = json_string_value(
	    json_object_get(json_object_get(json_object_get(stats, "last"), "headers"), "authorization"));

	snprintf(buf, size, "%s", auth != NULL ? auth : "");
	json_decref(stats);
	return buf;
}

/* Every kind of call, for clients of project A, project B and none: each
 * carries its project's key, never another. */
static void
test_every_call_carries_its_projects_key(void **state)
{
	const char *who[] = { ANN, BEN, UNA };
	const char *expect[] = { "Bearer " HARNESS_KEY_A, "Bearer " HARNESS_KEY_B, "Bearer " HARNESS_KEY };
	char id[64], path[256], key[256];
	long mismatches = fake_count(&fake, "key_mismatches");

	(void)state;
	for (int i = 0; i < 3; i++) {
		daemon_create_session(&gw, who[i], id, sizeof(id));
		assert_string_equal(last_key(key, sizeof(key)), expect[i]);
		snprintf(path, sizeof(path), "/api/v1/chat/%s/summary", id);
		assert_int_equal(daemon_call(&gw, who[i], "GET", path, NULL, NULL), 200);
		snprintf(path, sizeof(path), "/api/v1/chat/%s", id);
		assert_int_equal(daemon_call(&gw, who[i], "GET", path, NULL, NULL), 200);
		assert_string_equal(last_key(key, sizeof(key)), expect[i]);
		snprintf(path, sizeof(path), "/api/v1/chat/%s/messages/stream", id);
		assert_int_equal(
		    daemon_call(&gw, who[i], "POST", path, "{\"prompt\":\"p\",\"index_ids\":[]}", NULL), 200);
		assert_string_equal(last_key(key, sizeof(key)), expect[i]);
		/* The lead, unpinned and see-all, still uses the session's project. */
		snprintf(path, sizeof(path), "/api/v1/chat/%s", id);
		assert_int_equal(daemon_call(&gw, LEAD, "GET", path, NULL, NULL), 200);
		assert_string_equal(last_key(key, sizeof(key)), expect[i]);
		assert_int_equal(daemon_call(&gw, who[i], "DELETE", path, NULL, NULL), 204);
		assert_string_equal(last_key(key, sizeof(key)), expect[i]);
	}
	/* A read-through of a session the store never saw: the default key for
	 * an unpinned see-all caller. */
	{
		struct http_response r;
		const char *headers[] = { "Authorization: Bearer " HARNESS_KEY, "Content-Type: application/json",
			NULL };
		char url[256];
		json_t *doc;
		snprintf(url, sizeof(url), "http://127.0.0.1:%d/api/v1/chat", fake.port);
		assert_int_equal(http_call("POST", url, headers, "{}", 2, &r), 0);
		doc = json_loads(r.body, 0, NULL);
		snprintf(path, sizeof(path), "/api/v1/chat/%s/summary",
		    json_string_value(json_object_get(doc, "session_id")));
		json_decref(doc);
		http_response_free(&r);
		assert_int_equal(daemon_call(&gw, LEAD, "GET", path, NULL, NULL), 200);
		assert_string_equal(last_key(key, sizeof(key)), "Bearer " HARNESS_KEY);
	}
	assert_int_equal(fake_count(&fake, "key_mismatches"), mismatches);
}

/* A project without a key of its own goes with the default key; without a
 * default key it is a 403 naming the project, and nothing is sent. */
static void
test_a_project_without_a_key(void **state)
{
	struct http_response r;
	char key[256];
	long requests;

	(void)state;
	assert_int_equal(daemon_call(&gw, CARL, "POST", "/api/v1/chat", "{}", NULL), 200);
	assert_string_equal(last_key(key, sizeof(key)), "Bearer " HARNESS_KEY);
	write_config(true);
	reload("reloaded");
	requests = fake_count(&fake, "api_requests");
	assert_int_equal(daemon_call(&gw, CARL, "POST", "/api/v1/chat", "{}", &r), 403);
	assert_non_null(strstr(r.body, "proj-c"));
	http_response_free(&r);
	assert_int_equal(daemon_call(&gw, UNA, "POST", "/api/v1/chat", "{}", &r), 403);
	assert_non_null(strstr(r.body, "no project"));
	http_response_free(&r);
	assert_int_equal(fake_count(&fake, "api_requests"), requests);
	assert_int_equal(daemon_call(&gw, ANN, "POST", "/api/v1/chat", "{}", NULL), 200);
	write_config(false);
	reload("reloaded");
}

/* Upstream refusing a key is counted per project, logged once, and shown
 * on /healthz by project, never the key. */
static void
test_a_rejected_key_is_counted_and_said(void **state)
{
	const char *series = "llamachatd_upstream_key_rejections_total{project=\"proj-b\"}";
	double before = daemon_metric_as(&gw, LEAD, series);
	long offset = daemon_log_offset(&gw);
	struct http_response r;

	(void)state;
	assert_int_equal(fake_fault(&fake, "POST", "/api/v1/chat",
	                     "{\"mode\":\"status\",\"status\":401,\"count\":2,"
	                     "\"body\":\"{\\\"detail\\\":\\\"Invalid API key\\\"}\"}"),
	    0);
	assert_int_equal(daemon_call(&gw, BEN, "POST", "/api/v1/chat", "{}", NULL), 401);
	assert_int_equal(daemon_call(&gw, BEN, "POST", "/api/v1/chat", "{}", NULL), 401);
	assert_true(daemon_metric_as(&gw, LEAD, series) >= before + 2);
	daemon_wait_log(&gw, offset, "refused the API key of project proj-b");
	assert_int_equal(daemon_call(&gw, LEAD, "GET", "/healthz", NULL, &r), 200);
	assert_non_null(strstr(r.body, "\"proj-b\""));
	assert_non_null(strstr(r.body, "last_rejection"));
	assert_null(strstr(r.body, HARNESS_KEY_B));
	http_response_free(&r);
}

/* A key rotated by SIGHUP in the middle of a held stream: the stream runs
 * to its end, and new calls carry the new key. */
static void
test_a_key_rotated_under_a_held_stream(void **state)
{
	char id[64], key[256];
	long held = fake_count(&fake, "streams_held");
	int fd;
	struct http_response r;

	(void)state;
	daemon_create_session(&gw, ANN, id, sizeof(id));
	assert_int_equal(fake_fault(&fake, "POST", "/api/v1/chat/{id}/messages/stream", "{\"mode\":\"hold\"}"), 0);
	{
		char request[1024], body[] = "{\"prompt\":\"held\",\"index_ids\":[]}";
		int len = snprintf(request, sizeof(request),
		    "POST /api/v1/chat/%s/messages/stream HTTP/1.1\r\nHost: localhost\r\n%s\r\n"
		    "Content-Type: application/json\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n%s",
		    id, ANN, strlen(body), body);
		fd = harness_connect(gw.port);
		assert_int_equal(write(fd, request, (size_t)len), len);
	}
	fake_wait_count(&fake, "streams_held", held + 1);
	write_key("a", HARNESS_KEY2);
	reload("reloaded");
	assert_int_equal(daemon_call(&gw, ANN, "POST", "/api/v1/chat", "{}", NULL), 200);
	assert_string_equal(last_key(key, sizeof(key)), "Bearer " HARNESS_KEY2);
	assert_int_equal(fake_release(&fake), 1);
	{
		char got[8192];
		size_t have = 0;
		ssize_t n;
		while ((n = read(fd, got + have, sizeof(got) - 1 - have)) > 0)
			have += (size_t)n;
		got[have] = '\0';
		assert_true(strncmp(got, "HTTP/1.1 200 ", 13) == 0);
		assert_non_null(strstr(got, "\"type\":\"stop\""));
	}
	close(fd);
	write_key("a", HARNESS_KEY_A);
	reload("reloaded");
	(void)r;
}

/* Tokens: an expired one and one not valid yet are 401s that say so and
 * hold neither the token nor its hash; a rotation through two reloads,
 * with a client calling all along, fails no call. */
static void
test_token_lifetimes_and_a_rotation(void **state)
{
	char old_hash[65], new_hash[65], tokens[1024], t1[32], t2[32];
	struct http_response r;
	const char *next = "Authorization: Bearer tok-ann-cred-next";

	(void)state;
	harness_token_hex("tok-ann-cred-01", old_hash);
	harness_token_hex("tok-ann-cred-next", new_hash);
	/* The old token has expired; the next is not valid for an hour. */
	snprintf(tokens, sizeof(tokens),
	    "tokens = ( { sha256 = \"%s\"; expires = \"%s\"; }, { sha256 = \"%s\"; not_before = \"%s\"; } );", old_hash,
	    utc_from_now(-60, t1, sizeof(t1)), new_hash, utc_from_now(3600, t2, sizeof(t2)));
	write_clients(tokens);
	reload("reloaded");
	assert_int_equal(daemon_call(&gw, ANN, "GET", "/api/v1/chat", NULL, &r), 401);
	assert_non_null(strstr(r.body, "expired"));
	assert_null(strstr(r.body, "tok-ann"));
	assert_null(strstr(r.body, old_hash));
	assert_null(strstr(r.body, "ann"));
	http_response_free(&r);
	assert_int_equal(daemon_call(&gw, next, "GET", "/api/v1/chat", NULL, &r), 401);
	assert_non_null(strstr(r.body, "not valid yet"));
	http_response_free(&r);

	/* The rotation: the old token, then both, then the new one alone. */
	ann_plain(tokens, sizeof(tokens));
	write_clients(tokens);
	reload("reloaded");
	assert_int_equal(daemon_call(&gw, ANN, "GET", "/api/v1/chat", NULL, NULL), 200);
	snprintf(tokens, sizeof(tokens), "tokens = ( { sha256 = \"%s\"; expires = \"%s\"; }, { sha256 = \"%s\"; } );",
	    old_hash, utc_from_now(86400, t1, sizeof(t1)), new_hash);
	write_clients(tokens);
	reload("reloaded");
	assert_int_equal(daemon_call(&gw, ANN, "GET", "/api/v1/chat", NULL, NULL), 200);
	assert_int_equal(daemon_call(&gw, next, "GET", "/api/v1/chat", NULL, NULL), 200);
	assert_true(daemon_log_contains(&gw, "client ann has a token that expires in"));
	assert_true(
	    daemon_metric_as(&gw, LEAD, "llamachatd_client_token_expiry_timestamp_seconds{client=\"ann\"}") < 0);
	snprintf(tokens, sizeof(tokens), "tokens = ( { sha256 = \"%s\"; expires = \"%s\"; } );", new_hash,
	    utc_from_now(30 * 86400, t1, sizeof(t1)));
	write_clients(tokens);
	reload("reloaded");
	assert_int_equal(daemon_call(&gw, next, "GET", "/api/v1/chat", NULL, NULL), 200);
	assert_int_equal(daemon_call(&gw, ANN, "GET", "/api/v1/chat", NULL, NULL), 401);
	assert_true(daemon_metric_as(&gw, LEAD, "llamachatd_client_token_expiry_timestamp_seconds{client=\"ann\"}") >
	    (double)time(NULL));
	/* A client list that does not parse keeps the one in force. */
	{
		char path[512];
		FILE *f;
		snprintf(path, sizeof(path), "%s/clients.conf", dir);
		f = fopen(path, "w");
		fprintf(f, "clients = ( { name = \"ann\"; tokens = ( { sha256 = \"nope\"; } ); } );\n");
		fclose(f);
	}
	reload("reload refused");
	assert_true(daemon_log_contains(&gw, "clients.conf:1: "));
	assert_int_equal(daemon_call(&gw, next, "GET", "/api/v1/chat", NULL, NULL), 200);
	ann_plain(tokens, sizeof(tokens));
	write_clients(tokens);
	reload("reloaded");
}

/* No key of any project in the daemon's log, its answers or its metrics. */
static void
test_no_key_shows_anywhere(void **state)
{
	struct http_response r;
	const char *keys[] = { HARNESS_KEY, HARNESS_KEY_A, HARNESS_KEY_B, HARNESS_KEY2 };
	char *out = NULL;
	char *argv[] = { (char *)harness_daemon_bin(), "-t", "-c", gw.conf_path, NULL };

	(void)state;
	assert_int_equal(daemon_call(&gw, LEAD, "GET", "/metrics", NULL, &r), 200);
	for (size_t i = 0; i < 4; i++) {
		assert_null(strstr(r.body, keys[i]));
		assert_false(daemon_log_contains(&gw, keys[i]));
	}
	http_response_free(&r);
	assert_int_equal(daemon_call(&gw, LEAD, "GET", "/healthz", NULL, &r), 200);
	for (size_t i = 0; i < 4; i++)
		assert_null(strstr(r.body, keys[i]));
	http_response_free(&r);
	/* -t names the projects that have keys, never the keys. */
	assert_int_equal(run_command(argv, NULL, NULL, &out), 0);
	assert_non_null(strstr(out, "keys for projects: proj-a, proj-b"));
	for (size_t i = 0; i < 4; i++)
		assert_null(strstr(out, keys[i]));
	free(out);
}

/* A breaker per key: project B's key failing opens B's breaker alone;
 * project A's calls go on. */
static void
test_one_projects_failing_key_opens_its_breaker_alone(void **state)
{
	struct http_response r;
	long offset = daemon_log_offset(&gw), requests;

	(void)state;
	assert_int_equal(
	    fake_fault(&fake, "POST", "/api/v1/chat", "{\"mode\":\"status\",\"status\":503,\"count\":5}"), 0);
	for (int i = 0; i < 5; i++)
		assert_int_equal(daemon_call(&gw, BEN, "POST", "/api/v1/chat", "{}", NULL), 503);
	daemon_wait_log(&gw, offset, "circuit breaker open for the key of project proj-b");
	requests = fake_count(&fake, "api_requests");
	assert_int_equal(daemon_call(&gw, BEN, "POST", "/api/v1/chat", "{}", &r), 503);
	assert_non_null(strstr(r.body, "circuit breaker open"));
	http_response_free(&r);
	assert_int_equal(fake_count(&fake, "api_requests"), requests);
	assert_int_equal(daemon_call(&gw, ANN, "POST", "/api/v1/chat", "{}", NULL), 200);
	assert_int_equal(fake_count(&fake, "api_requests"), requests + 1);
	assert_int_equal(daemon_call(&gw, LEAD, "GET", "/healthz", NULL, &r), 200);
	assert_non_null(strstr(r.body, "\"breaker\":\"open\""));
	http_response_free(&r);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_every_call_carries_its_projects_key),
		cmocka_unit_test(test_a_project_without_a_key),
		cmocka_unit_test(test_a_rejected_key_is_counted_and_said),
		cmocka_unit_test(test_a_key_rotated_under_a_held_stream),
		cmocka_unit_test(test_token_lifetimes_and_a_rotation),
		cmocka_unit_test(test_no_key_shows_anywhere),
		cmocka_unit_test(test_one_projects_failing_key_opens_its_breaker_alone),
	};
	return cmocka_run_group_tests_name(
	    "integration: keys per project, tokens with lifetimes", tests, start_all, stop_all);
}
