/* Integration: token and session budgets per client and UTC day. A client
 * at its budget gets 429 for every call that would go upstream, and upstream
 * sees nothing; lookups from the store still answer; a started stream runs
 * to its end; a reload changes budgets at once and keeps what was used; a
 * restart reads what was used back from the store. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

static struct fake_upstream fake;
static struct daemon_process gw;
static char *dir;

#define CAPPED "Authorization: Bearer tok-capped-91c2"
#define THRIFTY "Authorization: Bearer tok-thrifty-5d0e"
#define FREE "Authorization: Bearer tok-free-77ab"

static const char *const tokens[] = { "tok-capped-91c2", "tok-thrifty-5d0e", "tok-free-77ab" };

/* The fake's turn for prompt "hi" uses 102 input and 7 output tokens. */
#define TOKENS_PER_TURN 109

static void
write_config(int capped_sessions)
{
	char h[3][65];
	FILE *f;

	for (int i = 0; i < 3; i++)
		harness_token_hex(tokens[i], h[i]);
	daemon_write_config(&gw, dir, fake.port, NULL, NULL, NULL);
	f = fopen(gw.conf_path, "a");
	fprintf(f,
	    "clients = (\n"
	    "  { name = \"capped\"; token_sha256 = \"%s\"; max_sessions_per_day = %d; },\n"
	    "  { name = \"thrifty\"; token_sha256 = \"%s\"; max_tokens_per_day = 150; },\n"
	    "  { name = \"free\"; token_sha256 = \"%s\"; metrics = true; }\n);\n",
	    h[0], capped_sessions, h[1], h[2]);
	fclose(f);
}

static int
start_all(void **state)
{
	(void)state;
	dir = harness_make_dir("budgets");
	if (dir == NULL || fake_start(&fake, dir) != 0)
		return -1;
	write_config(2);
	return daemon_start(&gw, HARNESS_KEY);
}

static int
stop_all(void **state)
{
	(void)state;
	harness_suite_stop(&dir, &fake, &gw);
	return 0;
}

static long
call(const char *who, const char *method, const char *path, const char *body, struct http_response *r)
{
	return daemon_call(&gw, who, method, path, body, r);
}

static void
create(const char *who, char *id, size_t size)
{
	struct http_response r;
	json_t *doc;

	assert_int_equal(call(who, "POST", "/api/v1/chat", "{}", &r), 200);
	doc = json_loads(r.body, 0, NULL);
	snprintf(id, size, "%s", json_string_value(json_object_get(doc, "session_id")));
	json_decref(doc);
	http_response_free(&r);
}

/* Asserts r is a budget's 429: the budget named, what was used, a
 * Retry-After no later than the next midnight UTC, and no retry. */
static void
assert_budget_refusal(struct http_response *r, const char *budget, const char *used)
{
	char value[32];
	long wait;

	assert_int_equal(r->status, 429);
	assert_non_null(strstr(r->body, budget));
	assert_non_null(strstr(r->body, used));
	assert_non_null(http_header(r, "Retry-After", value, sizeof(value)));
	wait = atol(value);
	assert_true(wait >= 1 && wait <= 86400);
	assert_non_null(http_header(r, "x-should-retry", value, sizeof(value)));
	assert_string_equal(value, "false");
}

static char capped_id[128];

static void
test_a_client_at_its_session_budget_is_refused_and_upstream_sees_nothing(void **state)
{
	struct http_response r;
	char id2[128], path[256];
	long before;

	(void)state;
	create(CAPPED, capped_id, sizeof(capped_id));
	create(CAPPED, id2, sizeof(id2));
	before = fake_count(&fake, "api_requests");
	assert_int_equal(call(CAPPED, "POST", "/api/v1/chat", "{}", &r), 429);
	assert_budget_refusal(&r, "max_sessions_per_day", "2 of 2 sessions");
	http_response_free(&r);
	/* Any call that would go upstream: the history too. */
	snprintf(path, sizeof(path), "/api/v1/chat/%s", capped_id);
	assert_int_equal(call(CAPPED, "GET", path, NULL, &r), 429);
	assert_budget_refusal(&r, "max_sessions_per_day", "2 of 2 sessions");
	http_response_free(&r);
	assert_int_equal(fake_count(&fake, "api_requests"), before);
	/* What the store holds is still served. */
	snprintf(path, sizeof(path), "/api/v1/chat/%s/summary", capped_id);
	assert_int_equal(call(CAPPED, "GET", path, NULL, NULL), 200);
	assert_int_equal(call(CAPPED, "GET", "/api/v1/chat", NULL, NULL), 200);
	assert_int_equal(fake_count(&fake, "api_requests"), before);
	/* Others are not held back by it. */
	create(FREE, id2, sizeof(id2));
	/* /metrics shows the limit and the use. */
	assert_true(daemon_metric_as(&gw, FREE, "llamachatd_budget_limit{client=\"capped\",budget=\"sessions\"}") == 2);
	assert_true(daemon_metric_as(&gw, FREE, "llamachatd_budget_used{client=\"capped\",budget=\"sessions\"}") == 2);
	assert_true(daemon_metric_as(&gw, FREE, "llamachatd_budget_limit{client=\"free\",budget=\"sessions\"}") < 0);
}

static void
test_a_raised_budget_takes_effect_at_the_reload_and_the_day_is_kept(void **state)
{
	struct http_response r;
	char id[128];
	long offset = daemon_log_offset(&gw);

	(void)state;
	write_config(3);
	kill(gw.pid, SIGHUP);
	daemon_wait_log(&gw, offset, "reloaded");
	/* One more, not three more: the two of today still count. */
	create(CAPPED, id, sizeof(id));
	assert_int_equal(call(CAPPED, "POST", "/api/v1/chat", "{}", &r), 429);
	assert_budget_refusal(&r, "max_sessions_per_day", "3 of 3 sessions");
	http_response_free(&r);
}

/* Streams the fake's turn for "hi"; returns the status. */
static long
stream(const char *who, const char *id, struct http_response *r)
{
	char path[256];

	snprintf(path, sizeof(path), "/api/v1/chat/%s/messages/stream", id);
	return call(who, "POST", path, "{\"prompt\":\"hi\",\"index_ids\":[]}", r);
}

static void
test_a_stream_started_under_the_token_budget_runs_to_its_end(void **state)
{
	struct http_response r;
	char id[128], used[64];

	(void)state;
	create(THRIFTY, id, sizeof(id));
	assert_int_equal(stream(THRIFTY, id, NULL), 200);
	/* 109 of 150: under the budget, so this turn starts and runs to its
	 * stop, which takes the client over (by at most one turn). */
	assert_int_equal(stream(THRIFTY, id, &r), 200);
	assert_non_null(strstr(r.body, "\"type\":\"stop\""));
	http_response_free(&r);
	assert_int_equal(stream(THRIFTY, id, &r), 429);
	snprintf(used, sizeof(used), "%d of 150 tokens", 2 * TOKENS_PER_TURN);
	assert_budget_refusal(&r, "max_tokens_per_day", used);
	http_response_free(&r);
	assert_true(daemon_metric_as(&gw, FREE, "llamachatd_budget_used{client=\"thrifty\",budget=\"tokens\"}") ==
	    2 * TOKENS_PER_TURN);
}

static void
test_what_was_used_today_survives_a_restart(void **state)
{
	struct http_response r;
	char used[64];

	(void)state;
	assert_int_equal(daemon_stop(&gw), 0);
	assert_int_equal(daemon_start(&gw, HARNESS_KEY), 0);
	assert_int_equal(call(CAPPED, "POST", "/api/v1/chat", "{}", &r), 429);
	assert_budget_refusal(&r, "max_sessions_per_day", "3 of 3 sessions");
	http_response_free(&r);
	assert_int_equal(call(THRIFTY, "POST", "/api/v1/chat", "{}", &r), 429);
	snprintf(used, sizeof(used), "%d of 150 tokens", 2 * TOKENS_PER_TURN);
	assert_budget_refusal(&r, "max_tokens_per_day", used);
	http_response_free(&r);
}

/* Asserts the budgets table of out has client's row with the columns
 * (tokens, left, sessions, left) given, space-separated, in cells. */
static void
expect_row(const char *out, const char *client, const char *cells)
{
	char needle[80], row[256], squeezed[256];
	const char *at;
	size_t n = 0;

	snprintf(needle, sizeof(needle), "\n%s ", client);
	at = strstr(strstr(out, "what its budgets leave"), needle);
	assert_non_null(at);
	snprintf(row, sizeof(row), "%.*s", (int)strcspn(at + 1, "\n"), at + 1);
	for (const char *p = row + strlen(client); *p != '\0'; p++)
		if (*p != ' ' || (n > 0 && squeezed[n - 1] != ' '))
			squeezed[n++] = *p;
	squeezed[n] = '\0';
	assert_string_equal(squeezed + (squeezed[0] == ' '), cells);
}

/* llamachatctl usage, given the config, says what each budget leaves. */
static void
test_llamachatctl_shows_what_is_left_today(void **state)
{
	char ctl[512], *out = NULL;
	char *argv[] = { ctl, "-c", gw.conf_path, "usage", NULL };

	(void)state;
	snprintf(ctl, sizeof(ctl), "%s/llamachatctl", getenv("LLAMACHATD_BUILD"));
	assert_int_equal(run_command(argv, NULL, NULL, &out), 0);
	assert_non_null(strstr(out, "what its budgets leave"));
	/* capped: 3 sessions of 3; thrifty: 218 tokens of 150; free: none. */
	expect_row(out, "capped", "0 - 3 0");
	expect_row(out, "thrifty", "218 0 1 -");
	expect_row(out, "free", "0 - 1 -");
	free(out);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_a_client_at_its_session_budget_is_refused_and_upstream_sees_nothing),
		cmocka_unit_test(test_a_raised_budget_takes_effect_at_the_reload_and_the_day_is_kept),
		cmocka_unit_test(test_a_stream_started_under_the_token_budget_runs_to_its_end),
		cmocka_unit_test(test_what_was_used_today_survives_a_restart),
		cmocka_unit_test(test_llamachatctl_shows_what_is_left_today),
	};
	return cmocka_run_group_tests_name("integration: budgets", tests, start_all, stop_all);
}
