/* Unit: the shared client's address rules. Redis is reached by address
 * only: hiredis would resolve a name blocking the loop. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <event2/event.h>
#include <string.h>

#include "shared/shared.h"

static struct shared *
try_address(struct event_base *base, const char *redis, char *why, size_t size)
{
	struct shared_settings settings = {
		.redis = redis, .instance = "gw-a", .timeout_ms = 50, .max_in_flight = 8, .breaker_failures = 3
	};

	why[0] = '\0';
	return shared_create(base, &settings, why, size);
}

static void
test_addresses_not_names(void **state)
{
	struct event_base *base = event_base_new();
	static const char *const good[] = { "unix:/run/redis/redis.sock", "127.0.0.1:6379", "[::1]:6379",
		"10.0.0.5:1" };
	static const char *const bad[] = { "localhost:6379", "redis.internal:6379", "unix:relative.sock", "127.0.0.1",
		"127.0.0.1:0", "127.0.0.1:65536", ":6379", "[::1]" };
	char why[256];
	struct shared *s;

	(void)state;
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		s = try_address(base, good[i], why, sizeof(why));
		assert_non_null(s);
		/* Nothing listens: it is down, and says so, but it exists. */
		assert_false(shared_is_up(s, NULL));
		shared_free(s);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_null(try_address(base, bad[i], why, sizeof(why)));
		assert_non_null(strstr(why, "shared.redis"));
	}
	assert_non_null(
	    try_address(base, "localhost:6379", why, sizeof(why)) == NULL ? strstr(why, "not a name") : NULL);
	event_base_free(base);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_addresses_not_names),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
