/* Unit: which Host and Origin a request may carry, in single-user and team
 * mode, with and without server_names and allowed_origins; and the normal
 * form of a path with what it names. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "base/config.h"
#include "gate/hostcheck.h"
#include "server/route.h"
#include "http/uri.h"

#define TEAM \
	"clients = ( { name = \"a\"; token_sha256 = \"" \
	"0000000000000000000000000000000000000000000000000000000000000000\"; } );\n"

static struct config *
load(const char *text)
{
	struct config_errors errors = { 0 };
	struct config *c = config_load_text("test.conf", text, &errors);

	for (size_t i = 0; i < errors.count; i++)
		fprintf(stderr, "%s\n", errors.lines[i]);
	config_errors_free(&errors);
	assert_non_null(c);
	return c;
}

static void
test_single_user_serves_loopback_names_only(void **state)
{
	struct config *c = load("");

	(void)state;
	assert_null(hostcheck_refusal(c, "localhost:8787", NULL, false));
	assert_null(hostcheck_refusal(c, "127.0.0.1", NULL, false));
	assert_null(hostcheck_refusal(c, "[::1]:8787", NULL, false));
	assert_null(hostcheck_refusal(c, NULL, NULL, false)); /* HTTP/1.0 */
	assert_null(hostcheck_refusal(c, "evil.example", NULL, true)); /* a unix socket */
	assert_non_null(hostcheck_refusal(c, "evil.example", NULL, false));
	assert_non_null(hostcheck_refusal(c, "localhost.evil.example", NULL, false));
	assert_non_null(hostcheck_refusal(c, "[::1", NULL, false));
	assert_non_null(hostcheck_refusal(c, "[::2]:80", NULL, false));
	assert_non_null(hostcheck_refusal(c, ":8787", NULL, false));
	assert_non_null(hostcheck_refusal(c, "localhost", "http://localhost:8787", false));
	assert_non_null(hostcheck_refusal(c, "localhost", "null", true)); /* no Origin without allowed_origins */
	config_free(c);
}

static void
test_server_names_and_allowed_origins(void **state)
{
	struct config *c = load("server_names = [ \"gw.lan\" ];\nallowed_origins = [ \"http://app.lan\" ];\n");
	struct config *team = load(TEAM);
	struct config *named_team = load(TEAM "server_names = [ \"gw.lan\" ];\n");

	(void)state;
	assert_null(hostcheck_refusal(c, "GW.lan:8787", NULL, false));
	assert_null(hostcheck_refusal(c, "localhost", "http://app.lan", false));
	assert_non_null(hostcheck_refusal(c, "localhost", "http://app.lan.evil", false));
	/* Team mode: every call needs a token; Host only once server_names is set. */
	assert_null(hostcheck_refusal(team, "anything.example", "http://anywhere", false));
	assert_null(hostcheck_refusal(named_team, "gw.lan", NULL, false));
	assert_null(hostcheck_refusal(named_team, "127.0.0.1:8443", NULL, false));
	assert_non_null(hostcheck_refusal(named_team, "other.lan", NULL, false));
	config_free(c);
	config_free(team);
	config_free(named_team);
}

static void
test_bad_name_lists_are_config_errors(void **state)
{
	struct config_errors errors = { 0 };

	(void)state;
	assert_null(config_load_text("t.conf", "server_names = [ \"a b\" ];\n", &errors));
	assert_non_null(strstr(errors.lines[0], "server_names"));
	config_errors_free(&errors);
	assert_null(config_load_text("t.conf", "allowed_origins = \"x\";\n", &errors));
	assert_non_null(strstr(errors.lines[0], "allowed_origins"));
	config_errors_free(&errors);
}

/* What a raw path becomes and names, as the router sees it. */
static void
expect_route(const char *raw, enum route_kind kind, const char *id)
{
	char path[256];
	struct route_match m;

	snprintf(path, sizeof(path), "%s", raw);
	assert_int_equal(uri_normalize_path(path), 0);
	route_classify(path, &m);
	if (m.kind != kind)
		fail_msg("%s: kind %d, expected %d (%s)", raw, m.kind, kind, m.why != NULL ? m.why : "-");
	if (id == NULL) {
		assert_null(m.id);
	} else {
		assert_int_equal(m.id_len, strlen(id));
		assert_memory_equal(m.id, id, m.id_len);
	}
}

static void
test_paths_in_their_normal_form(void **state)
{
	char path[64] = "/a%7e%41%2f%2F%zz";

	(void)state;
	assert_int_equal(uri_normalize_path(path), -1);
	snprintf(path, sizeof(path), "/a%%7e%%41%%2f%%c3%%A9");
	assert_int_equal(uri_normalize_path(path), 0);
	assert_string_equal(path, "/a~A%2F%C3%A9");
	expect_route("/api/v1/chat", ROUTE_CHAT, NULL);
	expect_route("/api/v1/chat/ses-1", ROUTE_SESSION, "ses-1");
	expect_route("/api/v1/chat/%73es-1/%73ummary", ROUTE_SUMMARY, "ses-1");
	expect_route("/api/v1/chat/ses-1/messages/stream", ROUTE_STREAM, "ses-1");
	expect_route("/api/v1/chat/ses-1/files/x", ROUTE_UNDER_SESSION, "ses-1");
	expect_route("/api/v1/chatty", ROUTE_API, NULL);
	expect_route("/api/v1/projects/%C3%A9", ROUTE_API, NULL);
	expect_route("/healthz", ROUTE_HEALTHZ, NULL);
	expect_route("/elsewhere/..", ROUTE_NOT_FOUND, NULL);
	expect_route("/api/v1/chat/", ROUTE_BAD, NULL);
	expect_route("/api/v1/chat//x", ROUTE_BAD, NULL);
	expect_route("/api/v1/chat/x;y", ROUTE_BAD, NULL);
	expect_route("/api/v1/chat/x/%2e%2E", ROUTE_BAD, NULL);
	expect_route("/api/v1/chat/x%20y", ROUTE_BAD, NULL);
	expect_route("/api/v1/chat%2Fx", ROUTE_BAD, NULL);
	expect_route("/api/v1/projects%2Fx", ROUTE_BAD, NULL);
	expect_route("/api/v1/projects/%00", ROUTE_BAD, NULL);
	expect_route("/api/v1/projects/a\\b", ROUTE_BAD, NULL);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_single_user_serves_loopback_names_only),
		cmocka_unit_test(test_server_names_and_allowed_origins),
		cmocka_unit_test(test_bad_name_lists_are_config_errors),
		cmocka_unit_test(test_paths_in_their_normal_form),
	};
	return cmocka_run_group_tests_name("hostcheck and route", tests, NULL, NULL);
}
