/* Unit: client tokens with lifetimes: RFC 3339 times and their errors,
 * windows at their edges (one second before, at, after), overlapping
 * tokens in a rotation, and certificates beside tokens. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "base/config.h"
#include "gate/clients.h"

#define T_2027_03_01 1803859200LL /* 2027-03-01T00:00:00Z */

static void
hex_of(const char *token, char out[65])
{
	unsigned char hash[32];

	clients_hash_token(token, strlen(token), hash);
	for (int i = 0; i < 32; i++)
		snprintf(out + 2 * i, 3, "%02x", hash[i]);
}

static struct config *
load(const char *text)
{
	struct config_errors errors = { 0 };
	struct config *c = config_load_text("t.conf", text, &errors);

	for (size_t i = 0; i < errors.count; i++)
		fprintf(stderr, "%s\n", errors.lines[i]);
	config_errors_free(&errors);
	return c;
}

static void
test_rfc3339_times(void **state)
{
	long long t;

	(void)state;
	assert_int_equal(config_parse_utc("2027-03-01T00:00:00Z", &t), 0);
	assert_int_equal(t, T_2027_03_01);
	assert_int_equal(config_parse_utc("2027-03-01T00:00:00.250Z", &t), 0);
	assert_int_equal(t, T_2027_03_01);
	assert_int_equal(config_parse_utc("2027-03-01T00:00:00+00:00", &t), 0);
	assert_int_equal(config_parse_utc("2027-03-01T00:00:00", &t), -1); /* no zone */
	assert_int_equal(config_parse_utc("2027-03-01T00:00:00+01:00", &t), -1); /* not UTC */
	assert_int_equal(config_parse_utc("2027-03-01 00:00:00Z", &t), -1);
	assert_int_equal(config_parse_utc("27-03-01T00:00:00Z", &t), -1);
	assert_int_equal(config_parse_utc("2027-13-01T00:00:00Z", &t), -1);
	assert_int_equal(config_parse_utc("", &t), -1);
}

static void
test_bad_token_entries_are_config_errors(void **state)
{
	struct config_errors errors = { 0 };

	(void)state;
	assert_null(config_load_text("t.conf",
	    "clients = ( { name = \"a\"; tokens = ( { sha256 = \"00\"; expires = \"tomorrow\"; } ); } );\n", &errors));
	assert_true(errors.count >= 2);
	assert_non_null(strstr(errors.lines[0], "t.conf:1: "));
	config_errors_free(&errors);
}

static void
test_token_windows_at_their_edges(void **state)
{
	char old[65], next[65], text[1024];
	const struct config_client *who;
	enum clients_refusal why;
	struct clients *clients;
	struct config *c;

	(void)state;
	hex_of("tok-old", old);
	hex_of("tok-next", next);
	/* A rotation: the old token ends at 2027-03-01, the next begins a day
	 * before, so both work in between. */
	snprintf(text, sizeof(text),
	    "clients = ( { name = \"alice\"; tokens = ( { sha256 = \"%s\"; expires = \"2027-03-01T00:00:00Z\"; },\n"
	    "  { sha256 = \"%s\"; not_before = \"2027-02-28T00:00:00Z\"; } ); } );\n",
	    old, next);
	c = load(text);
	assert_non_null(c);
	clients = clients_create(c, NULL);
	assert_non_null(clients_authenticate(clients, "Bearer tok-old", NULL, T_2027_03_01 - 1, &why));
	assert_null(clients_authenticate(clients, "Bearer tok-old", NULL, T_2027_03_01, &why));
	assert_int_equal(why, CLIENTS_EXPIRED);
	assert_null(clients_authenticate(clients, "Bearer tok-old", NULL, T_2027_03_01 + 1, &why));
	assert_int_equal(why, CLIENTS_EXPIRED);
	assert_null(clients_authenticate(clients, "Bearer tok-next", NULL, T_2027_03_01 - 86400 - 1, &why));
	assert_int_equal(why, CLIENTS_NOT_YET_VALID);
	who = clients_authenticate(clients, "Bearer tok-next", NULL, T_2027_03_01 - 86400, &why);
	assert_non_null(who);
	assert_string_equal(who->name, "alice");
	assert_non_null(clients_authenticate(clients, "Bearer tok-next", NULL, T_2027_03_01 + 86400 * 365, &why));
	assert_null(clients_authenticate(clients, "Bearer tok-other", NULL, T_2027_03_01, &why));
	assert_int_equal(why, CLIENTS_UNKNOWN);
	/* The metric's expiry: one token never expires. */
	assert_int_equal(clients_token_expiry(&c->clients[0]), 0);
	clients_free(clients);
	config_free(c);
}

static void
test_a_token_of_two_clients_is_refused(void **state)
{
	struct config_errors errors = { 0 };
	char a[65], text[512];

	(void)state;
	hex_of("tok-shared", a);
	snprintf(text, sizeof(text),
	    "clients = ( { name = \"a\"; token_sha256 = \"%s\"; },\n"
	    "  { name = \"b\"; tokens = ( { sha256 = \"%s\"; expires = \"2030-01-01T00:00:00Z\"; } ); } );\n",
	    a, a);
	assert_null(config_load_text("t.conf", text, &errors));
	assert_non_null(strstr(errors.lines[0], "same token"));
	config_errors_free(&errors);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rfc3339_times),
		cmocka_unit_test(test_bad_token_entries_are_config_errors),
		cmocka_unit_test(test_token_windows_at_their_edges),
		cmocka_unit_test(test_a_token_of_two_clients_is_refused),
	};
	return cmocka_run_group_tests_name("clients: tokens and their lifetimes", tests, NULL, NULL);
}
