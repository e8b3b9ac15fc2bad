/* Unit: which client headers may travel upstream, and listen address parsing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <netinet/in.h>
#include <string.h>

#include "address.h"
#include "upstream.h"

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
	};
	return cmocka_run_group_tests_name("unit: upstream headers and addresses", tests, NULL, NULL);
}
