/* Unit: the one-pass JSON object scan. It is certain only of documents
 * Jansson accepts, picks out the same bytes Jansson would, and gives up on
 * everything else (each case below is also checked against Jansson). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "store/json_scan.h"

static bool
jansson_takes(const char *text)
{
	json_error_t error;
	json_t *root = json_loadb(text, strlen(text), 0, &error);
	bool ok = json_is_object(root);

	json_decref(root);
	return ok;
}

/* Scans text for session_id and last_updated_at. */
static bool
scan(const char *text, struct json_scan_field fields[2])
{
	fields[0] = (struct json_scan_field){ .name = "session_id" };
	fields[1] = (struct json_scan_field){ .name = "last_updated_at" };
	return json_scan_object(text, strlen(text), fields, 2);
}

static void
expect_field(const struct json_scan_field *field, const char *want)
{
	assert_non_null(field->value);
	assert_int_equal(field->len, strlen(want));
	assert_memory_equal(field->value, want, field->len);
}

static void
test_a_session_is_certain_with_its_two_strings(void **state)
{
	struct json_scan_field f[2];
	const char *session = " {\"session_id\": \"ses-1\", \"title\": null, \"index_ids\": [\"idx-a\", \"idx-b\"],\n"
	                      "\t\"usage\": {\"input_tokens\": 12, \"cost\": -1.5e-3, \"ok\": true, \"no\": false},\r\n"
	                      "\"title_text\": \"caf\xc3\xa9 \xf0\x9f\x98\x80 \\\"q\\\" \\u00e9 \\ud83d\\ude00\",\n"
	                      "\"last_updated_at\": \"2026-12-01T10:00:00.5Z\"} ";

	(void)state;
	assert_true(jansson_takes(session));
	assert_true(scan(session, f));
	expect_field(&f[0], "ses-1");
	expect_field(&f[1], "2026-12-01T10:00:00.5Z");
}

/* Jansson keeps a member's last value; so does the scan. */
static void
test_the_last_of_a_repeated_member_counts(void **state)
{
	struct json_scan_field f[2];

	(void)state;
	assert_true(scan("{\"session_id\":\"old\",\"last_updated_at\":\"t\",\"session_id\":\"new\"}", f));
	expect_field(&f[0], "new");
	/* The last one is not a string: not certain (Jansson says why). */
	assert_false(scan("{\"session_id\":\"old\",\"last_updated_at\":\"t\",\"session_id\":7}", f));
}

/* Valid JSON the scan leaves to Jansson: it cannot hand out the value
 * bytes as they are, or checking it is not worth it here. */
static void
test_valid_but_unsure_goes_to_jansson(void **state)
{
	static const char *const cases[] = {
		"{\"session_id\":\"ses\\u002d1\",\"last_updated_at\":\"t\"}", /* an escape in a field */
		"{\"session\\u005fid\":\"ses-1\",\"last_updated_at\":\"t\"}", /* an escaped key */
		"{\"session_id\":\"ses-1\"}", /* a field missing */
		"{\"session_id\":null,\"last_updated_at\":\"t\"}", /* not a string */
		"{\"session_id\":\"s\",\"last_updated_at\":\"t\",\"n\":1234567890123456789}", /* 19 digits */
		"{\"session_id\":\"s\",\"last_updated_at\":\"t\",\"n\":0."
		"0000000000000000000000000000000000000000000000000000"
		"0000000000000000000001}", /* a number over 63 bytes */
	};
	struct json_scan_field f[2];
	char deep[256];
	size_t at;

	(void)state;
	/* 70 arrays deep: Jansson goes to 2048, the scan to 64. */
	at = (size_t)snprintf(deep, sizeof(deep), "{\"session_id\":\"s\",\"last_updated_at\":\"t\",\"d\":");
	memset(deep + at, '[', 70);
	memset(deep + at + 70, ']', 70);
	snprintf(deep + at + 140, sizeof(deep) - at - 140, "}");
	assert_true(jansson_takes(deep));
	assert_false(scan(deep, f));
	/* 60 deep it is still sure. */
	memmove(deep + at + 60, deep + at + 70, 60);
	memmove(deep + at + 120, deep + at + 140, 2);
	assert_true(jansson_takes(deep));
	assert_true(scan(deep, f));
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		if (!jansson_takes(cases[i]))
			fail_msg("case %zu: Jansson refuses it: %s", i, cases[i]);
		if (scan(cases[i], f))
			fail_msg("case %zu: the scan is certain of it: %s", i, cases[i]);
	}
}

/* What Jansson refuses, the scan is never certain of. */
static void
test_what_jansson_refuses_is_never_certain(void **state)
{
	static const char *const cases[] = {
		"", "[]", "\"s\"", "{\"session_id\":\"s\",\"last_updated_at\":\"t\",}", /* trailing comma */
		"{\"session_id\":\"s\",\"last_updated_at\":\"t\"} x", /* trailing bytes */
		"{\"session_id\":\"s\",\"last_updated_at\":\"t\"", "{\"session_id\":\"s\" \"last_updated_at\":\"t\"}",
		"{\"session_id\":\"s\",\"last_updated_at\":\"t\",\"n\":01}",
		"{\"session_id\":\"s\",\"last_updated_at\":\"t\",\"n\":-}",
		"{\"session_id\":\"s\",\"last_updated_at\":\"t\",\"n\":1.}",
		"{\"session_id\":\"s\",\"last_updated_at\":\"t\",\"n\":.5}",
		"{\"session_id\":\"s\",\"last_updated_at\":\"t\",\"n\":1e}",
		"{\"session_id\":\"s\",\"last_updated_at\":\"t\",\"n\":+1}",
		"{\"session_id\":\"s\",\"last_updated_at\":\"t\",\"n\":1e400}", /* overflows */
		"{\"session_id\":\"s\",\"last_updated_at\":\"t\",\"n\":99999999999999999999}", /* past 64 bits */
		"{\"session_id\":\"s\",\"last_updated_at\":\"t\",\"b\":tru}",
		"{\"session_id\":\"s\",\"last_updated_at\":\"t\",\"b\":True}",
		"{\"session_id\":\"s\",\"last_updated_at\":\"t\",\"x\":\"\\u0000\"}", /* NUL */
		"{\"session_id\":\"s\",\"last_updated_at\":\"t\",\"x\":\"\\ud800\"}", /* lone high surrogate */
		"{\"session_id\":\"s\",\"last_updated_at\":\"t\",\"x\":\"\\udc00\"}", /* lone low surrogate */
		"{\"session_id\":\"s\",\"last_updated_at\":\"t\",\"x\":\"\\ud800\\u0041\"}",
		"{\"session_id\":\"s\",\"last_updated_at\":\"t\",\"x\":\"\\x41\"}",
		"{\"session_id\":\"s\",\"last_updated_at\":\"t\",\"x\":\"\\u12\"}",
		"{\"session_id\":\"s\",\"last_updated_at\":\"t\",\"x\":\"tab\there\"}", /* a raw control byte */
		"{\"session_id\":\"s\",\"last_updated_at\":\"t\",\"x\":\"\xc0\xaf\"}", /* overlong */
		"{\"session_id\":\"s\",\"last_updated_at\":\"t\",\"x\":\"\xed\xa0\x80\"}", /* a UTF-8 surrogate */
		"{\"session_id\":\"s\",\"last_updated_at\":\"t\",\"x\":\"\xf4\x90\x80\x80\"}", /* past U+10FFFF */
		"{\"session_id\":\"s\",\"last_updated_at\":\"t\",\"x\":\"\xe2\x82\"}", /* cut short */
		"{\"session_id\":\"s\",\"last_updated_at\":\"t\",\"x\":\"\xff\"}",
		"{\"session_id\":\"s\",\"last_updated_at\":\"t\",\"a\":[1,]}",
		"{\"session_id\":\"s\",\"last_updated_at\":\"t\",\"a\":[1 2]}",
		"{\"session_id\":\"s\",\"last_updated_at\":\"t\",1:2}",
		"\xef\xbb\xbf{\"session_id\":\"s\",\"last_updated_at\":\"t\"}", /* a byte-order mark */
	};
	struct json_scan_field f[2];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		if (jansson_takes(cases[i]))
			fail_msg("case %zu: Jansson takes it: %s", i, cases[i]);
		if (scan(cases[i], f))
			fail_msg("case %zu: the scan is certain of it: %s", i, cases[i]);
	}
}

/* A NUL byte inside the text (json_loadb is given a length). */
static void
test_a_nul_byte_is_never_certain(void **state)
{
	const char text[] = "{\"session_id\":\"s\0\",\"last_updated_at\":\"t\"}";
	struct json_scan_field f[2] = { { .name = "session_id" }, { .name = "last_updated_at" } };

	(void)state;
	assert_false(json_scan_object(text, sizeof(text) - 1, f, 2));
	assert_false(json_scan_object(NULL, 0, f, 2));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_a_session_is_certain_with_its_two_strings),
		cmocka_unit_test(test_the_last_of_a_repeated_member_counts),
		cmocka_unit_test(test_valid_but_unsure_goes_to_jansson),
		cmocka_unit_test(test_what_jansson_refuses_is_never_certain),
		cmocka_unit_test(test_a_nul_byte_is_never_certain),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
