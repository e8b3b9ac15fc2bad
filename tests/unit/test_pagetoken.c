/* Unit: page tokens round-trip, and forged ones are refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "chat/pagetoken.h"

static void
test_round_trip_for_every_length(void **state)
{
	unsigned char key[PAGETOKEN_MAX_KEY], back[PAGETOKEN_MAX_KEY];
	char text[PAGETOKEN_MAX_TEXT];

	(void)state;
	for (size_t i = 0; i < sizeof(key); i++)
		key[i] = (unsigned char)(i * 37 + 11);
	for (size_t len = 1; len <= 70; len++) {
		assert_int_equal(pagetoken_encode(key, len, text), 0);
		assert_true(strncmp(text, "p1.", 3) == 0);
		/* URL-safe without escaping. */
		assert_int_equal(strspn(text + 3, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"),
		    strlen(text + 3));
		assert_int_equal(pagetoken_decode(text, back), (long)len);
		assert_memory_equal(back, key, len);
	}
	assert_int_equal(pagetoken_encode(key, PAGETOKEN_MAX_KEY, text), 0);
	assert_int_equal(pagetoken_decode(text, back), PAGETOKEN_MAX_KEY);
	assert_int_equal(pagetoken_encode(key, 0, text), -1);
	assert_int_equal(pagetoken_encode(key, PAGETOKEN_MAX_KEY + 1, text), -1);
}

static void
test_forged_tokens_are_refused(void **state)
{
	unsigned char back[PAGETOKEN_MAX_KEY];
	char longtext[PAGETOKEN_MAX_TEXT + 16];

	(void)state;
	assert_int_equal(pagetoken_decode("", back), -1);
	assert_int_equal(pagetoken_decode("p1.", back), -1);
	assert_int_equal(pagetoken_decode("p2.AAAA", back), -1);
	assert_int_equal(pagetoken_decode("AAAA", back), -1);
	assert_int_equal(pagetoken_decode("p1.AA=A", back), -1);
	assert_int_equal(pagetoken_decode("p1.A+/A", back), -1);
	assert_int_equal(pagetoken_decode("p1.A", back), -1); /* not a whole byte */
	assert_int_equal(pagetoken_decode("p1.AB", back), -1); /* non-zero spare bits */
	assert_int_equal(pagetoken_decode("p1.AQ", back), 1);
	memcpy(longtext, "p1.", 3);
	memset(longtext + 3, 'A', sizeof(longtext) - 4);
	longtext[sizeof(longtext) - 1] = '\0';
	assert_int_equal(pagetoken_decode(longtext, back), -1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip_for_every_length),
		cmocka_unit_test(test_forged_tokens_are_refused),
	};
	return cmocka_run_group_tests_name("unit: page tokens", tests, NULL, NULL);
}
