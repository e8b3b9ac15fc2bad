/* Unit: create-body checks, session ids, the Session parser and the stored record. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "session.h"

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
	};
	return cmocka_run_group_tests_name("unit: session", tests, NULL, NULL);
}
