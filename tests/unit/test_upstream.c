/* Unit: which client headers may travel upstream, and listen address parsing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <curl/curl.h>
#include <event2/event.h>
#include <netinet/in.h>
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

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_client_credentials_and_hop_headers_stay_behind),
		cmocka_unit_test(test_listen_addresses),
		cmocka_unit_test(test_a_failed_multi_action_is_counted),
	};
	return cmocka_run_group_tests_name("unit: upstream headers and addresses", tests, NULL, NULL);
}
