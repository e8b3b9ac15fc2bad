/* Unit tests of what the janitor counts as expired. The sweep itself runs
 * against a real store in tests/integration/test_store_upkeep.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "store/janitor.h"
#include "store/session.h"

#define DAY_US (86400ull * 1000000u)

static bool
expired_at(long max_age_days, uint64_t updated_us, uint64_t now_us)
{
	unsigned char k[SESSION_INDEX_KEY_MAX];
	size_t len = session_index_key("bob", "org", NULL, updated_us, "ses-1", 5, k);

	return janitor_session_expired("ses-1", 5, k, len, now_us, &max_age_days);
}

static void
test_sessions_expire_past_max_age_days(void **state)
{
	uint64_t now = 1776861281342245ull;
	long off = 0, thirty = 30;

	(void)state;
	assert_false(janitor_session_active(&off));
	assert_true(janitor_session_active(&thirty));
	assert_true(expired_at(30, now - 31 * DAY_US, now));
	assert_true(expired_at(30, now - 30 * DAY_US - 1, now));
	assert_false(expired_at(30, now - 30 * DAY_US, now));
	assert_false(expired_at(30, now - DAY_US, now));
	assert_false(expired_at(30, now + DAY_US, now)); /* a clock behind upstream's */
	assert_false(expired_at(0, now - 1000 * DAY_US, now)); /* off */
	/* A session whose time upstream's answer did not give is kept. */
	assert_false(expired_at(1, 0, now));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sessions_expire_past_max_age_days),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
