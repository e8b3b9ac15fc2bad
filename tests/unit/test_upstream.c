/* Unit: which client headers may travel upstream, and listen address parsing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <curl/curl.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "base/address.h"
#include "upstream/upstream.h"

static void
test_client_credentials_and_hop_headers_stay_behind(void **state)
{
	(void)state;
	assert_false(upstream_header_is_forwarded("Authorization"));
	assert_false(upstream_header_is_forwarded("authorization"));
	assert_false(upstream_header_is_forwarded("Cookie"));
	assert_false(upstream_header_is_forwarded("Connection"));
	assert_false(upstream_header_is_forwarded("Keep-Alive"));
	assert_false(upstream_header_is_forwarded("Transfer-Encoding"));
	assert_false(upstream_header_is_forwarded("Proxy-Authorization"));
	assert_false(upstream_header_is_forwarded("Upgrade"));
	assert_false(upstream_header_is_forwarded("Host"));
	assert_false(upstream_header_is_forwarded("Content-Length"));
	assert_true(upstream_header_is_forwarded("Content-Type"));
	assert_true(upstream_header_is_forwarded("X-Stainless-Lang"));
	assert_true(upstream_header_is_forwarded("User-Agent"));
}

/* A failing curl_multi_socket_action is counted and stamped, not ignored. */
static void
test_a_failed_multi_action_is_counted(void **state)
{
	struct event_base *base = event_base_new();
	struct upstream_settings settings = {
		.base_url = "http://127.0.0.1:9",
		.connect_timeout_ms = 1000,
		.request_timeout_ms = 1000,
		.max_response_bytes = 1024,
		.max_in_flight = 4,
	};
	char why[256];
	struct upstream *upstream = upstream_create(base, &settings, why, sizeof(why));
	const struct upstream_stats *stats;

	(void)state;
	assert_non_null(upstream);
	stats = upstream_get_stats(upstream);
	upstream_check_multi(upstream, CURLM_OK, "socket");
	assert_int_equal(stats->multi_errors, 0);
	assert_true(stats->last_failure_wall == 0);
	upstream_check_multi(upstream, CURLM_BAD_SOCKET, "socket");
	upstream_check_multi(upstream, CURLM_INTERNAL_ERROR, "timeout");
	assert_int_equal(stats->multi_errors, 2);
	assert_true(stats->last_failure_wall > 0);
	upstream_free(upstream);
	event_base_free(base);
}

static void
test_listen_addresses(void **state)
{
	struct address a;
	const char *why;

	(void)state;
	assert_int_equal(address_parse("127.0.0.1:8787", &a, &why), 0);
	assert_int_equal(a.sockaddr.ss_family, AF_INET);
	assert_int_equal(ntohs(((struct sockaddr_in *)&a.sockaddr)->sin_port), 8787);
	assert_int_equal(address_parse("[::1]:0", &a, &why), 0);
	assert_int_equal(a.sockaddr.ss_family, AF_INET6);
	assert_int_equal(address_parse("localhost:1", &a, &why), 0);
	assert_int_equal(address_parse("unix:/run/llamachatd/s.sock", &a, &why), 0);
	assert_true(a.is_unix);
	assert_int_equal(address_parse("127.0.0.1", &a, &why), -1);
	assert_int_equal(address_parse("127.0.0.1:", &a, &why), -1);
	assert_int_equal(address_parse("127.0.0.1:65536", &a, &why), -1);
	assert_int_equal(address_parse("[::1:80", &a, &why), -1);
	assert_int_equal(address_parse("unix:", &a, &why), -1);
}

/* Which key a call goes with: its project's, else the default, else none;
 * a reload keeps what upstream made of a project's key. */
static void
test_a_call_takes_its_projects_key_else_the_default(void **state)
{
	struct event_base *base = event_base_new();
	struct upstream_settings settings = {
		.base_url = "http://127.0.0.1:9",
		.connect_timeout_ms = 1000,
		.request_timeout_ms = 1000,
		.max_response_bytes = 1024,
		.max_in_flight = 4,
	};
	char why[256];
	struct upstream *upstream = upstream_create(base, &settings, why, sizeof(why));
	const char *projects[] = { "proj-a", "proj-b" };
	char *keys[] = { strdup("llx-a"), NULL };
	struct upstream_key_info info;

	(void)state;
	assert_non_null(upstream);
	assert_false(upstream_has_key(upstream));
	/* proj-a has a key, proj-b an entry without one, and no default. */
	upstream_set_keys(upstream, NULL, projects, keys, 2);
	assert_null(keys[0]); /* taken over */
	assert_true(upstream_has_key(upstream));
	assert_true(upstream_has_key_for(upstream, "proj-a"));
	assert_false(upstream_has_key_for(upstream, "proj-b"));
	assert_false(upstream_has_key_for(upstream, "proj-c"));
	assert_false(upstream_has_key_for(upstream, NULL));
	assert_false(upstream_has_key_for(upstream, ""));
	assert_int_equal(upstream_key_count(upstream), 3);
	upstream_key_info(upstream, 0, &info);
	assert_string_equal(info.project, "default");
	upstream_key_info(upstream, 1, &info);
	assert_string_equal(info.project, "proj-a");
	/* With a default key, every project has one to go with. */
	keys[0] = strdup("llx-a2");
	upstream_set_keys(upstream, strdup("llx-default"), projects, keys, 1);
	assert_true(upstream_has_key_for(upstream, "proj-b"));
	assert_true(upstream_has_key_for(upstream, NULL));
	assert_int_equal(upstream_key_count(upstream), 2);
	upstream_free(upstream);
	event_base_free(base);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_client_credentials_and_hop_headers_stay_behind),
		cmocka_unit_test(test_listen_addresses),
		cmocka_unit_test(test_a_failed_multi_action_is_counted),
		cmocka_unit_test(test_a_call_takes_its_projects_key_else_the_default),
	};
	return cmocka_run_group_tests_name("unit: upstream headers and addresses", tests, NULL, NULL);
}
