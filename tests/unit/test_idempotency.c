/* Unit tests of the Idempotency-Key rules: which keys are valid, the
 * request fingerprint, the stored record, expiry and which answers are
 * kept. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "gate/idempotency.h"

static void
test_key_rules(void **state)
{
	char key[300];

	(void)state;
	assert_true(idempotency_key_is_valid("a"));
	assert_true(idempotency_key_is_valid("8e03978e-40d5-43e8-bc93-6894a57f9324"));
	assert_true(idempotency_key_is_valid("with space and ~!"));
	assert_false(idempotency_key_is_valid(NULL));
	assert_false(idempotency_key_is_valid(""));
	assert_false(idempotency_key_is_valid("tab\there"));
	assert_false(idempotency_key_is_valid("caf\xc3\xa9"));
	assert_false(idempotency_key_is_valid("del\x7f"));
	memset(key, 'k', 255);
	key[255] = '\0';
	assert_true(idempotency_key_is_valid(key));
	key[255] = 'k';
	key[256] = '\0';
	assert_false(idempotency_key_is_valid(key));
}

static void
test_fingerprints_tell_requests_apart(void **state)
{
	unsigned char a[32], b[32];

	(void)state;
	assert_int_equal(idempotency_fingerprint("POST", "/api/v1/chat", "project_id=p", "{}", 2, a), 0);
	assert_int_equal(idempotency_fingerprint("POST", "/api/v1/chat", "project_id=p", "{}", 2, b), 0);
	assert_memory_equal(a, b, 32);
	assert_int_equal(idempotency_fingerprint("POST", "/api/v1/chat", "project_id=p", "{ }", 3, b), 0);
	assert_memory_not_equal(a, b, 32);
	assert_int_equal(idempotency_fingerprint("POST", "/api/v1/chat", "project_id=q", "{}", 2, b), 0);
	assert_memory_not_equal(a, b, 32);
	assert_int_equal(idempotency_fingerprint("PUT", "/api/v1/chat", "project_id=p", "{}", 2, b), 0);
	assert_memory_not_equal(a, b, 32);
	/* Bytes moved from the query to the body are another request. */
	assert_int_equal(idempotency_fingerprint("POST", "/api/v1/chat", "ab", "c", 1, a), 0);
	assert_int_equal(idempotency_fingerprint("POST", "/api/v1/chat", "a", "bc", 2, b), 0);
	assert_memory_not_equal(a, b, 32);
	/* No query is the empty one. */
	assert_int_equal(idempotency_fingerprint("POST", "/api/v1/chat", NULL, NULL, 0, a), 0);
	assert_int_equal(idempotency_fingerprint("POST", "/api/v1/chat", "", "", 0, b), 0);
	assert_memory_equal(a, b, 32);
}

static void
test_records_round_trip_and_keys_are_per_client(void **state)
{
	struct idempotency_record rec = { .kind = IDEMPOTENCY_CREATE,
		.created_us = 1776861281342245ull,
		.status = 201,
		.body = "{\"session_id\":\"ses-1\"}",
		.body_len = 22 };
	struct idempotency_record back;
	unsigned char buf[256], k1[IDEMPOTENCY_RECORD_KEY_MAX], k2[IDEMPOTENCY_RECORD_KEY_MAX];
	unsigned char ik[IDEMPOTENCY_INDEX_KEY_MAX];
	size_t len, k1_len, k2_len, ik_len;
	long ttl = 60;

	(void)state;
	memset(rec.fingerprint, 0xab, sizeof(rec.fingerprint));
	len = idempotency_record_encoded_size(&rec);
	idempotency_record_encode(&rec, buf);
	assert_int_equal(idempotency_record_decode(buf, len, &back), 0);
	assert_int_equal(back.kind, IDEMPOTENCY_CREATE);
	assert_int_equal(back.status, 201);
	assert_true(back.created_us == rec.created_us);
	assert_memory_equal(back.fingerprint, rec.fingerprint, 32);
	assert_int_equal(back.body_len, 22);
	assert_memory_equal(back.body, rec.body, 22);
	assert_int_equal(idempotency_record_decode(buf, 10, &back), -1);
	buf[0] = 9;
	assert_int_equal(idempotency_record_decode(buf, len, &back), -1);

	/* "al" + "\0x" and "al\0" + "x" cannot be built: names hold no NUL. */
	k1_len = idempotency_record_key("al", "key", k1);
	k2_len = idempotency_record_key("alk", "ey", k2);
	assert_true(k1_len == k2_len && memcmp(k1, k2, k1_len) != 0);
	ik_len = idempotency_index_key(rec.created_us, k1, k1_len, ik);
	assert_int_equal(ik[0], 'K');
	assert_false(idempotency_sweep_expired(k1, k1_len, ik, ik_len, rec.created_us + 59999999u, &ttl));
	assert_true(idempotency_sweep_expired(k1, k1_len, ik, ik_len, rec.created_us + 60000000u, &ttl));
	assert_false(idempotency_sweep_expired(k1, k1_len, "A", 1, rec.created_us + 600000000u, &ttl));
}

static void
test_which_answers_are_kept(void **state)
{
	(void)state;
	assert_true(idempotency_answer_is_final(200, NULL));
	assert_true(idempotency_answer_is_final(201, NULL));
	assert_true(idempotency_answer_is_final(400, NULL));
	assert_true(idempotency_answer_is_final(422, "false"));
	assert_false(idempotency_answer_is_final(422, "true"));
	assert_false(idempotency_answer_is_final(408, NULL));
	assert_false(idempotency_answer_is_final(409, NULL));
	assert_false(idempotency_answer_is_final(429, NULL));
	assert_false(idempotency_answer_is_final(500, NULL));
	assert_false(idempotency_answer_is_final(503, "false"));
	assert_false(idempotency_answer_is_final(302, NULL));
	assert_false(idempotency_expired(1000000, 1999999, 1));
	assert_true(idempotency_expired(1000000, 2000000, 1));
	assert_false(idempotency_expired(5000000, 1000000, 1)); /* a clock that went back */
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_key_rules),
		cmocka_unit_test(test_fingerprints_tell_requests_apart),
		cmocka_unit_test(test_records_round_trip_and_keys_are_per_client),
		cmocka_unit_test(test_which_answers_are_kept),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
