/* Unit: create-body checks, session ids, the Session parser and the stored record. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "store/session.h"

static enum session_body_check
check(const char *body)
{
	const char *why = NULL;
	enum session_body_check result = session_check_create_body(body, strlen(body), &why);

	if (result != SESSION_BODY_OK)
		assert_non_null(why);
	return result;
}

static void
test_accepted_create_bodies(void **state)
{
	(void)state;
	assert_int_equal(check(""), SESSION_BODY_OK);
	assert_int_equal(check("  \n"), SESSION_BODY_OK);
	assert_int_equal(check("{}"), SESSION_BODY_OK);
	assert_int_equal(check("{\"index_ids\": null}"), SESSION_BODY_OK);
	assert_int_equal(check("{\"index_ids\": [\"a\"]}"), SESSION_BODY_OK);
	assert_int_equal(
	    check("{\"index_ids\": [\"1\",\"2\",\"3\",\"4\",\"5\",\"6\",\"7\",\"8\",\"9\",\"10\"]}"), SESSION_BODY_OK);
	assert_int_equal(check("{\"shared_access\": \"query\", \"future\": {\"x\": 1}}"), SESSION_BODY_OK);
}

static void
test_malformed_create_bodies(void **state)
{
	(void)state;
	assert_int_equal(check("{"), SESSION_BODY_MALFORMED);
	assert_int_equal(check("nope"), SESSION_BODY_MALFORMED);
	assert_int_equal(check("{\"a\":1}{"), SESSION_BODY_MALFORMED);
	assert_int_equal(check("{\"index_ids\":null,\"index_ids\":[\"a\"]}"), SESSION_BODY_MALFORMED);
}

static void
test_invalid_create_bodies(void **state)
{
	(void)state;
	assert_int_equal(check("[]"), SESSION_BODY_INVALID);
	assert_int_equal(check("\"text\""), SESSION_BODY_INVALID);
	assert_int_equal(check("{\"index_ids\": []}"), SESSION_BODY_INVALID);
	assert_int_equal(check("{\"index_ids\": \"idx\"}"), SESSION_BODY_INVALID);
	assert_int_equal(check("{\"index_ids\": [\"\"]}"), SESSION_BODY_INVALID);
	assert_int_equal(check("{\"index_ids\": [1]}"), SESSION_BODY_INVALID);
	assert_int_equal(
	    check("{\"index_ids\": [\"1\",\"2\",\"3\",\"4\",\"5\",\"6\",\"7\",\"8\",\"9\",\"10\",\"11\"]}"),
	    SESSION_BODY_INVALID);
}

static void
test_session_ids(void **state)
{
	char long_id[SESSION_ID_MAX + 2];

	(void)state;
	assert_true(session_id_is_safe("ses-abc123", 10));
	assert_false(session_id_is_safe("", 0));
	assert_false(session_id_is_safe("a/b", 3));
	assert_false(session_id_is_safe("a%2f", 4));
	assert_false(session_id_is_safe("a?b", 3));
	assert_false(session_id_is_safe("a#b", 3));
	assert_false(session_id_is_safe("a\nb", 3));
	assert_false(session_id_is_safe("a\x7f", 2));
	memset(long_id, 'x', sizeof(long_id));
	assert_true(session_id_is_safe(long_id, SESSION_ID_MAX));
	assert_false(session_id_is_safe(long_id, SESSION_ID_MAX + 1));
}

static void
test_parse_summary(void **state)
{
	char id[SESSION_ID_MAX + 1];
	uint64_t updated = 0;
	const char *why;
	const char *good = "{\"session_id\":\"ses-1\",\"last_updated_at\":\"2026-04-22T12:34:41.342245\"}";

	(void)state;
	assert_int_equal(session_parse_summary(good, strlen(good), id, &updated, &why), 0);
	assert_string_equal(id, "ses-1");
	assert_int_equal(updated, 1776861281342245ULL);
	assert_int_equal(session_parse_summary("{\"session_id\":\"ses-1\"}", 21, id, &updated, &why), -1);
	assert_int_equal(
	    session_parse_summary("{\"session_id\":7,\"last_updated_at\":\"x\"}", 38, id, &updated, &why), -1);
	assert_int_equal(
	    session_parse_summary("{\"session_id\":\"a/b\",\"last_updated_at\":\"x\"}", 42, id, &updated, &why), -1);
	assert_int_equal(session_parse_summary("not json", 8, id, &updated, &why), -1);
	assert_int_equal(session_parse_summary("[]", 2, id, &updated, &why), -1);
}

static void
test_record_round_trip(void **state)
{
	const char *json = "{\"session_id\":\"ses-1\",\"last_updated_at\":\"t\",\"unknown\":[1,2]}";
	struct session_record in = {
		.stored_at_us = 1790000000123456ULL,
		.owner = "alice",
		.owner_len = 5,
		.organization_id = "org-1",
		.organization_id_len = 5,
		.project_id = NULL,
		.project_id_len = 0,
		.json = json,
		.json_len = strlen(json),
	};
	struct session_record out;
	unsigned char buf[256];
	size_t size = session_record_encoded_size(&in);

	(void)state;
	assert_true(size < sizeof(buf));
	session_record_encode(&in, buf);
	assert_int_equal(session_record_decode(buf, size, &out), 0);
	assert_int_equal(out.stored_at_us, in.stored_at_us);
	assert_int_equal(out.owner_len, 5);
	assert_memory_equal(out.owner, "alice", 5);
	assert_int_equal(out.organization_id_len, 5);
	assert_memory_equal(out.organization_id, "org-1", 5);
	assert_int_equal(out.project_id_len, 0);
	assert_int_equal(out.json_len, in.json_len);
	assert_memory_equal(out.json, json, in.json_len);

	/* Every truncation, a trailing byte, and a wrong magic are refused. */
	for (size_t cut = 0; cut < size; cut++)
		assert_int_equal(session_record_decode(buf, cut, &out), -1);
	buf[size] = 'x';
	assert_int_equal(session_record_decode(buf, size + 1, &out), -1);
	buf[0] = 'X';
	assert_int_equal(session_record_decode(buf, size, &out), -1);
}

static void
test_times(void **state)
{
	char text[SESSION_TIME_TEXT];

	(void)state;
	assert_int_equal(session_time_parse("2026-04-22T12:34:41.342245"), 1776861281342245ULL);
	assert_int_equal(session_time_parse("2026-04-22T12:34:41.342245Z"), 1776861281342245ULL);
	assert_int_equal(session_time_parse("2026-04-22T14:34:41.342245+02:00"), 1776861281342245ULL);
	assert_int_equal(session_time_parse("2026-04-22T12:34:41"), 1776861281000000ULL);
	assert_int_equal(session_time_parse("2026-04-22T12:34:41.5"), 1776861281500000ULL);
	assert_int_equal(session_time_parse("yesterday"), 0);
	assert_int_equal(session_time_parse("2026-13-22T12:34:41"), 0);
	assert_int_equal(session_time_parse("2026-04-22T12:34:41.x"), 0);
	assert_int_equal(session_time_parse("2026-04-22T10:34:41.342245-02:00"), 1776861281342245ULL);
	/* Every field has its exact digits. */
	assert_int_equal(session_time_parse("2026-4-22T12:34:41"), 0);
	assert_int_equal(session_time_parse("2026-04-22T12:34:4"), 0);
	assert_int_equal(session_time_parse("2026-04-22 12:34:41"), 0);
	assert_int_equal(session_time_parse("2026-04-22T12:34:41+0200"), 0);
	assert_int_equal(session_time_parse("2026-04-22T12:34:41+02:0"), 0);
	assert_int_equal(session_time_parse(""), 0);
	session_time_format(1776861281342245ULL, text);
	assert_string_equal(text, "2026-04-22T12:34:41.342245");
}

static void
test_index_keys_order_newest_first_within_a_list(void **state)
{
	unsigned char a[SESSION_INDEX_KEY_MAX], b[SESSION_INDEX_KEY_MAX], list[SESSION_LIST_KEY_MAX];
	unsigned char mine[SESSION_LIST_KEY_MAX], yours[SESSION_LIST_KEY_MAX];
	size_t a_len = session_index_key(NULL, "org", "p1", 2000, "ses-a", 5, a);
	size_t b_len = session_index_key(NULL, "org", "p1", 1000, "ses-b", 5, b);
	size_t list_len = session_list_key(NULL, "org", "p1", list);
	size_t mine_len, yours_len;

	(void)state;
	assert_true(memcmp(a, b, a_len < b_len ? a_len : b_len) < 0); /* newer sorts first */
	assert_memory_equal(a, list, list_len);
	assert_memory_equal(b, list, list_len);
	/* "" and NULL are the same absent scope; another project differs. */
	assert_int_equal(session_list_key(NULL, NULL, NULL, a), session_list_key(NULL, "", "", b));
	assert_memory_equal(a, b, 3);
	assert_true(session_list_key(NULL, "org", "p2", a) == list_len && memcmp(a, list, list_len) != 0);
	/* Owners' lists are apart from each other and from the list of all,
	 * and no owner's list is a prefix of another's. */
	mine_len = session_list_key("al", "org", "p1", mine);
	yours_len = session_list_key("alice", "org", "p1", yours);
	assert_true(memcmp(mine, list, list_len < mine_len ? list_len : mine_len) != 0);
	assert_true(memcmp(mine, yours, mine_len < yours_len ? mine_len : yours_len) != 0);
	session_index_key("al", "org", "p1", 5, "x", 1, a);
	assert_memory_equal(a, mine, mine_len);
}

/* The janitor reads a session's time back from its index key, in any list. */
static void
test_index_keys_give_back_their_time(void **state)
{
	unsigned char k[SESSION_INDEX_KEY_MAX];
	uint64_t t = 1776861281342245ull;
	char long_id[SESSION_ID_MAX + 20];
	size_t len;

	(void)state;
	len = session_index_key(NULL, "org", "p1", t, "ses-a", 5, k);
	assert_true(session_index_key_updated_us(k, len, 5) == t);
	len = session_index_key("alice", NULL, NULL, 7, "x", 1, k);
	assert_true(session_index_key_updated_us(k, len, 1) == 7);
	/* An id longer than the key keeps is cut the same way. */
	memset(long_id, 'i', sizeof(long_id));
	len = session_index_key(NULL, NULL, NULL, t, long_id, sizeof(long_id), k);
	assert_true(session_index_key_updated_us(k, len, sizeof(long_id)) == t);
	/* Too short to be one. */
	assert_true(session_index_key_updated_us(k, 10, 5) == 0);
}

static void
test_ledger_keys_and_usage(void **state)
{
	unsigned char k1[SESSION_LEDGER_KEY_MAX], k2[SESSION_LEDGER_KEY_MAX];
	const char *client, *org, *project;
	size_t client_len, org_len, project_len, len;
	unsigned day;
	unsigned long long add[SESSION_LEDGER_FIELD_COUNT];
	const char *stop = "{\"type\":\"stop\",\"is_error\":true,\"usage\":{\"duration_ms\":12.5,"
	                   "\"total_input_tokens\":30,\"total_output_tokens\":40,\"turns\":2}}";

	(void)state;
	assert_true(session_ledger_key("alice", "", "p1", 7, k1) == session_ledger_key("alice", NULL, "p1", 7, k2));
	len = session_ledger_key("alice", "", "p1", 20000, k1);
	assert_int_equal(
	    session_ledger_key_parse(k1, len, &client, &client_len, &org, &org_len, &project, &project_len, &day), 0);
	assert_int_equal(client_len, 5);
	assert_memory_equal(client, "alice", 5);
	assert_int_equal(org_len, 0);
	assert_memory_equal(project, "p1", 2);
	assert_int_equal(day, 20000);
	assert_int_equal(
	    session_ledger_key_parse(k1, len - 1, &client, &client_len, &org, &org_len, &project, &project_len, &day),
	    -1);
	assert_int_equal(session_day_of(86400ULL * 1000000ULL * 3 + 5), 3);
	assert_int_equal(session_stop_usage(stop, strlen(stop), add), 0);
	assert_int_equal(add[SESSION_LEDGER_SESSIONS], 0);
	assert_int_equal(add[SESSION_LEDGER_TURNS], 2);
	assert_int_equal(add[SESSION_LEDGER_INPUT_TOKENS], 30);
	assert_int_equal(add[SESSION_LEDGER_OUTPUT_TOKENS], 40);
	assert_int_equal(add[SESSION_LEDGER_DURATION_MS], 12);
	assert_int_equal(add[SESSION_LEDGER_ERRORS], 1);
	assert_int_equal(session_stop_usage("[]", 2, add), -1);
}

/* Found by fuzzing: a usage number too large for a counter was cast as it
 * was (undefined behaviour). It is capped now, reals and integers alike. */
static void
test_huge_usage_numbers_are_capped(void **state)
{
	const char *stop = "{\"type\":\"stop\",\"usage\":{\"total_input_tokens\":1.2e35,"
	                   "\"total_output_tokens\":9223372036854775807,\"duration_ms\":-5,\"turns\":1e300}}";
	unsigned long long add[SESSION_LEDGER_FIELD_COUNT];

	(void)state;
	assert_int_equal(session_stop_usage(stop, strlen(stop), add), 0);
	assert_true(add[SESSION_LEDGER_INPUT_TOKENS] == 1000000000000ULL);
	assert_true(add[SESSION_LEDGER_OUTPUT_TOKENS] == 1000000000000ULL);
	assert_true(add[SESSION_LEDGER_DURATION_MS] == 0);
	assert_true(add[SESSION_LEDGER_TURNS] == 1000000000000ULL);
}

static void
test_stream_bodies(void **state)
{
	const char *why;

	(void)state;
	assert_int_equal(session_check_stream_body("{\"prompt\":\"hi\",\"index_ids\":[]}", 30, &why), SESSION_BODY_OK);
	assert_int_equal(
	    session_check_stream_body("{\"prompt\":\"hi\",\"index_ids\":[\"a\"],\"x\":1}", 39, &why), SESSION_BODY_OK);
	assert_int_equal(
	    session_check_stream_body("{\"prompt\":\"\",\"index_ids\":[]}", 28, &why), SESSION_BODY_INVALID);
	assert_int_equal(session_check_stream_body("{\"index_ids\":[]}", 16, &why), SESSION_BODY_INVALID);
	assert_int_equal(session_check_stream_body("{\"prompt\":\"hi\"}", 15, &why), SESSION_BODY_INVALID);
	assert_int_equal(
	    session_check_stream_body("{\"prompt\":\"hi\",\"index_ids\":[2]}", 31, &why), SESSION_BODY_INVALID);
	assert_int_equal(session_check_stream_body("", 0, &why), SESSION_BODY_MALFORMED);
	assert_int_equal(session_check_stream_body("[]", 2, &why), SESSION_BODY_INVALID);
}

static void
test_stop_and_history_keep_unknown_fields(void **state)
{
	const char *session = "{\"last_updated_at\":\"2026-04-22T12:34:41.342245\",\"session_id\":\"ses-1\","
	                      "\"job_metadata\":{\"export_config_ids\":[\"e\"],\"turns\":0},\"future\":[1]}";
	const char *stop =
	    "{\"type\":\"stop\",\"error\":null,\"is_error\":false,"
	    "\"usage\":{\"duration_ms\":5,\"total_input_tokens\":3,\"total_output_tokens\":4,\"turns\":1}}";
	const char *history = "{\"session_id\":\"ses-1\",\"last_updated_at\":\"t\",\"events\":[{}],\"future\":2}";
	char *out;

	(void)state;
	out = session_apply_stop(session, strlen(session), stop, strlen(stop), 1776861281000001ULL);
	assert_non_null(out);
	assert_non_null(strstr(out, "\"last_updated_at\":\"2026-04-22T12:34:41.000001\""));
	assert_non_null(strstr(out, "\"export_config_ids\":[\"e\"]"));
	assert_non_null(strstr(out, "\"total_input_tokens\":3"));
	assert_non_null(strstr(out, "\"turns\":1"));
	assert_non_null(strstr(out, "\"is_error\":false"));
	assert_non_null(strstr(out, "\"future\":[1]"));
	free(out);
	assert_null(session_apply_stop("nope", 4, stop, strlen(stop), 1));

	out = session_summary_of_history(history, strlen(history));
	assert_string_equal(out, "{\"session_id\":\"ses-1\",\"last_updated_at\":\"t\",\"future\":2}");
	free(out);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_accepted_create_bodies),
		cmocka_unit_test(test_malformed_create_bodies),
		cmocka_unit_test(test_invalid_create_bodies),
		cmocka_unit_test(test_session_ids),
		cmocka_unit_test(test_parse_summary),
		cmocka_unit_test(test_record_round_trip),
		cmocka_unit_test(test_times),
		cmocka_unit_test(test_index_keys_order_newest_first_within_a_list),
		cmocka_unit_test(test_ledger_keys_and_usage),
		cmocka_unit_test(test_huge_usage_numbers_are_capped),
		cmocka_unit_test(test_stream_bodies),
		cmocka_unit_test(test_index_keys_give_back_their_time),
		cmocka_unit_test(test_stop_and_history_keep_unknown_fields),
	};
	return cmocka_run_group_tests_name("unit: session", tests, NULL, NULL);
}
