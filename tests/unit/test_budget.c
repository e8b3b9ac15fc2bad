/* Unit tests of the budget arithmetic: the UTC day and its turn, what a
 * budget refuses, and a reload mid-day that keeps what was used. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <event2/buffer.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gate/budget.h"
#include "base/config.h"
#include "store/session.h"
#include "store/store.h"

#define DAY_US (86400ull * 1000000u)
/* 2026-12-01T23:59:58.5Z */
#define LATE (20788ull * DAY_US + 86398ull * 1000000u + 500000u)

#define ZEROS "0000000000000000000000000000000000000000000000000000000000000000"
#define ONES "1111111111111111111111111111111111111111111111111111111111111111"

/* Whether a refusal said a retry may help (budgets_check's last word). */
static bool may_retry;

static void
test_the_day_turns_at_midnight_utc(void **state)
{
	(void)state;
	assert_int_equal(budget_day(LATE), 20788);
	assert_int_equal(budget_day(LATE + 1500000u), 20789);
	assert_int_equal(budget_seconds_to_next_day(LATE), 2); /* 1.5 s, rounded up */
	assert_int_equal(budget_seconds_to_next_day(20789ull * DAY_US), 86400);
	assert_int_equal(budget_seconds_to_next_day(20789ull * DAY_US + DAY_US - 1), 1);
}

static void
test_usage_of_an_earlier_day_counts_as_nothing(void **state)
{
	struct budget_limits limits = { .max_tokens_per_day = 100, .max_sessions_per_day = 2 };
	struct budget_usage usage = { 0 };
	char why[256];

	(void)state;
	budget_usage_add(&usage, 20788, 60, 1);
	assert_false(budget_exceeded(&limits, &usage, 20788, why, sizeof(why)));
	budget_usage_add(&usage, 20788, 40, 0);
	assert_true(budget_exceeded(&limits, &usage, 20788, why, sizeof(why)));
	assert_non_null(strstr(why, "max_tokens_per_day"));
	assert_non_null(strstr(why, "100 of 100 tokens"));
	/* The next day nothing is used yet. */
	assert_false(budget_exceeded(&limits, &usage, 20789, why, sizeof(why)));
	budget_usage_add(&usage, 20789, 0, 2);
	assert_int_equal(usage.day, 20789);
	assert_int_equal(usage.tokens, 0);
	assert_true(budget_exceeded(&limits, &usage, 20789, why, sizeof(why)));
	assert_non_null(strstr(why, "max_sessions_per_day"));
	assert_non_null(strstr(why, "2 of 2 sessions"));
	/* No budget: never exceeded. */
	limits = (struct budget_limits){ 0 };
	budget_usage_add(&usage, 20789, 1000000, 1000);
	assert_false(budget_exceeded(&limits, &usage, 20789, why, sizeof(why)));
}

static struct config *
load(const char *clients)
{
	struct config_errors errors;
	char text[8192];
	struct config *c;

	snprintf(text, sizeof(text), "clients = (%s);\n", clients);
	c = config_load_text("test.conf", text, &errors);
	for (size_t i = 0; i < errors.count; i++)
		fprintf(stderr, "%s\n", errors.lines[i]);
	config_errors_free(&errors);
	assert_non_null(c);
	return c;
}

#define HASH_A "\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\""
#define HASH_B "\"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb\""

/* Many clients, configured in no order: each finds its own budget (the
 * table is searched by name, not walked). */
static void
test_each_of_many_clients_finds_its_own_budget(void **state)
{
	char clients[8192] = "", why[256];
	size_t used = 0;
	struct budgets *b = budgets_create();
	struct config *config;

	(void)state;
	for (int i = 39; i >= 0; i--)
		used += (size_t)snprintf(clients + used, sizeof(clients) - used,
		    "%s{ name = \"c%02d\"; token_sha256 = \"%064x\"; max_sessions_per_day = %d; }", i < 39 ? "," : "",
		    (i * 7) % 40, i, i + 1);
	config = load(clients);
	assert_non_null(b);
	assert_int_equal(budgets_sync(b, config, NULL, LATE), 0);
	for (int i = 0; i < 40; i++) {
		char name[16];
		int limit = 0;
		snprintf(name, sizeof(name), "c%02d", i);
		for (int k = 0; k < 40; k++)
			if ((k * 7) % 40 == i)
				limit = k + 1;
		budgets_add(b, name, LATE, 0, (unsigned long long)limit - 1);
		assert_int_equal(budgets_check(b, name, LATE, why, sizeof(why), &may_retry), 0);
		budgets_add(b, name, LATE, 0, 1);
		assert_int_equal(budgets_check(b, name, LATE, why, sizeof(why), &may_retry), 2);
	}
	assert_int_equal(budgets_check(b, "c40", LATE, why, sizeof(why), &may_retry), 0); /* not a client: no budget */
	budgets_free(b);
	config_free(config);
}

static void
test_a_reload_mid_day_keeps_the_use_and_takes_the_new_budget(void **state)
{
	struct config *before = load("{ name = \"al\"; token_sha256 = " HASH_A "; max_sessions_per_day = 1; },"
	                             "{ name = \"bo\"; token_sha256 = " HASH_B "; }");
	struct config *after = load("{ name = \"al\"; token_sha256 = " HASH_A "; max_sessions_per_day = 3; }");
	struct budgets *b = budgets_create();
	char why[256];

	(void)state;
	assert_non_null(b);
	assert_int_equal(budgets_sync(b, before, NULL, LATE), 0);
	assert_int_equal(budgets_check(b, "al", LATE, why, sizeof(why), &may_retry), 0);
	budgets_add(b, "al", LATE, 10, 1);
	budgets_add(b, "nobody", LATE, 10, 1); /* unknown: ignored */
	assert_int_equal(budgets_check(b, "al", LATE, why, sizeof(why), &may_retry), 2);
	assert_int_equal(budgets_check(b, "bo", LATE, why, sizeof(why), &may_retry), 0);
	/* Raised at a reload: one used, three allowed. */
	assert_int_equal(budgets_sync(b, after, NULL, LATE), 0);
	assert_int_equal(budgets_check(b, "al", LATE, why, sizeof(why), &may_retry), 0);
	budgets_add(b, "al", LATE, 0, 2);
	assert_int_equal(budgets_check(b, "al", LATE, why, sizeof(why), &may_retry), 2);
	assert_non_null(strstr(why, "3 of 3 sessions"));
	/* After midnight the day starts over. */
	assert_int_equal(budgets_check(b, "al", LATE + 2000000u, why, sizeof(why), &may_retry), 0);
	budgets_free(b);
	config_free(before);
	config_free(after);
}

static void
test_a_new_client_reads_today_from_the_store_and_metrics_show_it(void **state)
{
	char dir[] = "/tmp/llamachatd-budget-XXXXXX", why[256], cmd[64];
	struct config *config = load("{ name = \"al\"; token_sha256 = " HASH_A "; max_tokens_per_day = 500; }");
	unsigned char key[SESSION_DAILY_KEY_MAX], old_key[SESSION_DAILY_KEY_MAX];
	struct store_ledger_delta today = {
		.add = { [SESSION_LEDGER_INPUT_TOKENS] = 300, [SESSION_LEDGER_OUTPUT_TOKENS] = 200 }
	};
	struct store_ledger_delta yesterday = { .add = { [SESSION_LEDGER_INPUT_TOKENS] = 999 } };
	struct store_change change = { .key = { "ses-x", 5 }, .value = { "{}", 2 }, .daily = &today };
	struct store_change old = { .key = { "ses-y", 5 }, .value = { "{}", 2 }, .daily = &yesterday };
	struct evbuffer *out = evbuffer_new();
	struct budgets *b = budgets_create();
	struct store *store;

	(void)state;
	assert_non_null(mkdtemp(dir));
	store = store_open(NULL, dir, 8, 0, why, sizeof(why));
	assert_non_null(store);
	today.key.data = key;
	today.key.len = session_daily_key("al", budget_day(LATE), key);
	yesterday.key.data = old_key;
	yesterday.key.len = session_daily_key("al", budget_day(LATE) - 1, old_key);
	assert_int_equal(store_apply(store, &change), STORE_OK);
	assert_int_equal(store_apply(store, &old), STORE_OK);
	assert_int_equal(budgets_sync(b, config, store, LATE), 0);
	assert_int_equal(budgets_check(b, "al", LATE, why, sizeof(why), &may_retry), 2);
	assert_non_null(strstr(why, "500 of 500 tokens"));
	budgets_render(b, LATE, out);
	evbuffer_add(out, "", 1);
	assert_non_null(strstr(
	    (const char *)evbuffer_pullup(out, -1), "llamachatd_budget_limit{client=\"al\",budget=\"tokens\"} 500\n"));
	assert_non_null(strstr(
	    (const char *)evbuffer_pullup(out, -1), "llamachatd_budget_used{client=\"al\",budget=\"tokens\"} 500\n"));
	evbuffer_free(out);
	budgets_free(b);
	store_close(store);
	config_free(config);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	assert_int_equal(system(cmd), 0);
}

/* Shared mode: the other instances' use counts with this one's, and while
 * it cannot be read a budgeted client may be refused, with a retry. */
static void
test_the_other_instances_use_counts_and_unshared_refuses(void **state)
{
	struct budgets *b = budgets_create();
	struct config *config = load("{ name = \"al\"; token_sha256 = \"" ZEROS "\"; max_sessions_per_day = 3; },"
	                             "{ name = \"bo\"; token_sha256 = \"" ONES "\"; }");
	char why[256];

	(void)state;
	assert_int_equal(budgets_sync(b, config, NULL, LATE), 0);
	budgets_add(b, "al", LATE, 0, 1);
	budgets_set_others(b, "al", budget_day(LATE), 0, 1);
	assert_int_equal(budgets_check(b, "al", LATE, why, sizeof(why), &may_retry), 0);
	budgets_set_others(b, "al", budget_day(LATE), 0, 2);
	assert_int_equal(budgets_check(b, "al", LATE, why, sizeof(why), &may_retry), 2);
	assert_false(may_retry);
	/* Others' use of another day counts as nothing. */
	budgets_set_others(b, "al", budget_day(LATE) - 1, 0, 2);
	assert_int_equal(budgets_check(b, "al", LATE, why, sizeof(why), &may_retry), 0);
	budgets_set_unshared(b, true);
	assert_true(budgets_check(b, "al", LATE, why, sizeof(why), &may_retry) > 0);
	assert_true(may_retry);
	assert_non_null(strstr(why, "refuse"));
	assert_int_equal(budgets_check(b, "bo", LATE, why, sizeof(why), &may_retry), 0); /* no budget */
	budgets_set_unshared(b, false);
	assert_int_equal(budgets_check(b, "al", LATE, why, sizeof(why), &may_retry), 0);
	budgets_free(b);
	config_free(config);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_the_day_turns_at_midnight_utc),
		cmocka_unit_test(test_usage_of_an_earlier_day_counts_as_nothing),
		cmocka_unit_test(test_each_of_many_clients_finds_its_own_budget),
		cmocka_unit_test(test_the_other_instances_use_counts_and_unshared_refuses),
		cmocka_unit_test(test_a_reload_mid_day_keeps_the_use_and_takes_the_new_budget),
		cmocka_unit_test(test_a_new_client_reads_today_from_the_store_and_metrics_show_it),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
