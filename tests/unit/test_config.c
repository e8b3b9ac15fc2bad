/* Unit: the config loader: a valid file, defaults, and each kind of error. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/config.h"

static char path[256];

static int
make_path(void **state)
{
	int fd;

	(void)state;
	snprintf(
	    path, sizeof(path), "%s/llamachatd-config-XXXXXX", getenv("TMPDIR") != NULL ? getenv("TMPDIR") : "/tmp");
	fd = mkstemp(path);
	if (fd < 0)
		return -1;
	close(fd);
	return 0;
}

static int
remove_path(void **state)
{
	(void)state;
	unlink(path);
	return 0;
}

/* Loads text as a config file; on failure, errors holds the messages. */
static struct config *
load(const char *text, struct config_errors *errors)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	return config_load(path, errors);
}

/* Expects text to fail with exactly one error that contains each needle. */
static void
expect_one_error(const char *text, const char *needle1, const char *needle2)
{
	struct config_errors errors;
	struct config *c = load(text, &errors);

	assert_null(c);
	assert_int_equal(errors.count, 1);
	assert_non_null(strstr(errors.lines[0], path));
	assert_non_null(strstr(errors.lines[0], needle1));
	if (needle2 != NULL)
		assert_non_null(strstr(errors.lines[0], needle2));
	config_errors_free(&errors);
}

static void
test_valid_file(void **state)
{
	struct config_errors errors;
	struct config *c = load("listen = [ \"127.0.0.1:9000\", \"[::1]:9001\", \"unix:/run/x.sock\" ];\n"
	                        "upstream = { base_url = \"https://example.test/prefix/\"; api_key_file = \"/k\";\n"
	                        "  connect_timeout_ms = 1000; request_timeout_ms = 2000; max_in_flight = 7; };\n"
	                        "store = { path = \"/tmp/s\"; map_size_mb = 64; };\n"
	                        "limits = { max_body_bytes = 4096; max_header_bytes = 8192; client_timeout_ms = 500;\n"
	                        "  drain_timeout_ms = 0; };\n"
	                        "log = { level = \"debug\"; };\n",
	    &errors);

	(void)state;
	assert_non_null(c);
	assert_int_equal(errors.count, 0);
	assert_int_equal(c->listen_count, 3);
	assert_string_equal(c->listen[2], "unix:/run/x.sock");
	assert_string_equal(c->upstream_base_url, "https://example.test/prefix");
	assert_string_equal(c->upstream_api_key_file, "/k");
	assert_int_equal(c->connect_timeout_ms, 1000);
	assert_int_equal(c->request_timeout_ms, 2000);
	assert_int_equal(c->max_in_flight, 7);
	assert_string_equal(c->store_path, "/tmp/s");
	assert_int_equal(c->store_map_size_mb, 64);
	assert_int_equal(c->max_body_bytes, 4096);
	assert_int_equal(c->max_header_bytes, 8192);
	assert_int_equal(c->client_timeout_ms, 500);
	assert_int_equal(c->drain_timeout_ms, 0);
	assert_int_equal(c->log_level, LOG_LEVEL_DEBUG);
	config_free(c);
}

static void
test_empty_file_gives_defaults(void **state)
{
	struct config_errors errors;
	struct config *c = load("# nothing\n", &errors);

	(void)state;
	assert_non_null(c);
	assert_int_equal(c->listen_count, 1);
	assert_string_equal(c->listen[0], "127.0.0.1:8787");
	assert_string_equal(c->upstream_base_url, "https://api.cloud.llamaindex.ai");
	assert_null(c->upstream_api_key_file);
	assert_int_equal(c->connect_timeout_ms, 5000);
	assert_int_equal(c->request_timeout_ms, 60000);
	assert_string_equal(c->store_path, "/var/lib/llamachatd");
	assert_int_equal(c->store_map_size_mb, 16384);
	assert_int_equal(c->store_max_queued_writes, 65536);
	assert_int_equal(c->header_timeout_ms, c->client_timeout_ms);
	assert_int_equal(c->keepalive_timeout_ms, 60000);
	assert_int_equal(c->max_in_flight, c->max_connections); /* a stream for every connection */
	assert_int_equal(c->max_upstream_connections, 64); /* https: HTTP/2 */
	assert_int_equal(c->max_idle_connections, 256);
	assert_int_equal(c->idempotency_ttl_s, 86400);
	assert_int_equal(c->store_max_age_days, 0);
	assert_int_equal(c->max_body_bytes, 1048576);
	assert_int_equal(c->log_level, LOG_LEVEL_INFO);
	config_free(c);
}

/* No bound on upstream connections over plain http, where each call needs
 * one; a bound given is kept. */
static void
test_upstream_connections_default_by_scheme(void **state)
{
	struct config_errors errors;
	struct config *c = load("upstream = { base_url = \"http://127.0.0.1:9\"; };\n", &errors);

	(void)state;
	assert_non_null(c);
	assert_int_equal(c->max_upstream_connections, 0);
	config_free(c);
	c = load("upstream = { max_connections = 8; };\n", &errors);
	assert_non_null(c);
	assert_int_equal(c->max_upstream_connections, 8);
	config_free(c);
}

static void
test_syntax_error_names_file_and_line(void **state)
{
	(void)state;
	expect_one_error("listen = [ \"127.0.0.1:1\" ];\nstore = { path = ; };\n", ":2:", "syntax error");
}

static void
test_unknown_settings(void **state)
{
	(void)state;
	expect_one_error("listne = [ \"127.0.0.1:1\" ];\n", ":1: listne: unknown setting", NULL);
	expect_one_error("store = {\n  paht = \"/x\";\n};\n", ":2: store.paht: unknown setting", NULL);
	expect_one_error("store = 5;\n", ":1: store: must be a group", NULL);
}

static void
test_wrong_types(void **state)
{
	(void)state;
	expect_one_error("upstream = { connect_timeout_ms = \"5000\"; };\n", "upstream.connect_timeout_ms", "integer");
	expect_one_error("store = { path = 7; };\n", "store.path", "must be a string");
	expect_one_error("listen = \"127.0.0.1:1\";\n", ":1: listen", "list of addresses");
	expect_one_error("log = { level = \"loud\"; };\n", "log.level", "\"debug\"");
}

static void
test_values_out_of_range(void **state)
{
	(void)state;
	expect_one_error("limits = { max_body_bytes = 0; };\n", "limits.max_body_bytes", "must be from");
	expect_one_error("store = { map_size_mb = 99999999; };\n", "store.map_size_mb", "must be from");
	expect_one_error("store = { path = \"\"; };\n", "store.path", "empty");
}

/* The otel group: defaults, a ratio as a float or an integer, and clear
 * errors for what would never export. */
static void
test_otel_settings(void **state)
{
	struct config_errors errors;
	struct config *c;

	(void)state;
	c = load("", &errors);
	assert_non_null(c);
	assert_null(c->otel_endpoint);
	assert_string_equal(c->otel_service_name, "llamachatd");
	assert_true(c->otel_sample_ratio == 1.0);
	assert_int_equal(c->otel_max_queued_spans, 8192);
	config_free(c);
	c = load("otel = { endpoint = \"http://10.0.0.7:4318/v1/traces\"; service_name = \"gw-a\"; "
	         "sample_ratio = 0.25; max_queued_spans = 100; };\n",
	    &errors);
	assert_non_null(c);
	assert_string_equal(c->otel_endpoint, "http://10.0.0.7:4318/v1/traces");
	assert_string_equal(c->otel_service_name, "gw-a");
	assert_true(c->otel_sample_ratio == 0.25);
	assert_int_equal(c->otel_max_queued_spans, 100);
	config_free(c);
	c = load("otel = { endpoint = \"https://collector.example/v1/traces\"; sample_ratio = 0; };\n", &errors);
	assert_non_null(c);
	assert_true(c->otel_sample_ratio == 0.0);
	config_free(c);
	expect_one_error("otel = { sample_ratio = 0.5; };\n", "otel", "needs an endpoint");
	expect_one_error(
	    "otel = { endpoint = \"http://h:4318/v1/traces\"; sample_ratio = 1.5; };\n", "otel.sample_ratio", "0 to 1");
	expect_one_error("otel = { endpoint = \"http://h:4318/v1/traces\"; sample_ratio = \"all\"; };\n",
	    "otel.sample_ratio", "0 to 1");
	expect_one_error("otel = { endpoint = \"ftp://h/v1/traces\"; };\n", "otel.endpoint", "http://");
	expect_one_error("otel = { endpoint = \"http://\"; };\n", "otel.endpoint", "host");
	expect_one_error("otel = { endpoint = \"http://u:p@h:4318/v1/traces\"; };\n", "otel.endpoint", "credentials");
	expect_one_error("otel = { endpoint = \"http://h:4318/v1 traces\"; };\n", "otel.endpoint", "URL");
	expect_one_error("otel = { endpoint = \"http://h:4318/\"; max_queued_spans = 0; };\n", "otel.max_queued_spans",
	    "must be from");
	expect_one_error("otel = { endpoint = \"http://h:4318/\"; headers = \"x\"; };\n", "otel.headers", "unknown");
}

/* The shared group: needs redis, an instance name and clients. */
static void
test_shared_settings(void **state)
{
	static const char clients[] = "clients = ( { name = \"a\"; token_sha256 = "
	                              "\"0000000000000000000000000000000000000000000000000000000000000000\"; } );\n";
	struct config_errors errors;
	struct config *c;
	char text[1024];

	(void)state;
	c = load("", &errors);
	assert_non_null(c);
	assert_null(c->shared_redis);
	assert_int_equal(c->shared_timeout_ms, 50);
	config_free(c);
	snprintf(text, sizeof(text), "%sshared = { redis = \"unix:/run/redis/redis.sock\"; instance = \"gw-a\"; };\n",
	    clients);
	c = load(text, &errors);
	assert_non_null(c);
	assert_string_equal(c->shared_redis, "unix:/run/redis/redis.sock");
	assert_string_equal(c->shared_instance, "gw-a");
	assert_false(c->shared_budgets_refuse);
	assert_int_equal(c->shared_stream_max_entries, 100000);
	config_free(c);
	snprintf(text, sizeof(text),
	    "%sshared = { redis = \"10.0.0.5:6379\"; instance = \"a\"; budgets_when_unavailable = \"refuse\"; "
	    "stream_max_entries = 5000; };\n",
	    clients);
	c = load(text, &errors);
	assert_non_null(c);
	assert_true(c->shared_budgets_refuse);
	assert_int_equal(c->shared_stream_max_entries, 5000);
	config_free(c);
	snprintf(text, sizeof(text),
	    "%sshared = { redis = \"10.0.0.5:6379\"; instance = \"a\"; budgets_when_unavailable = \"maybe\"; };\n",
	    clients);
	expect_one_error(text, "shared.budgets_when_unavailable", "\"refuse\"");
	snprintf(text, sizeof(text), "%sshared = { instance = \"gw-a\"; };\n", clients);
	expect_one_error(text, "shared", "needs redis");
	snprintf(text, sizeof(text), "%sshared = { redis = \"10.0.0.5:6379\"; };\n", clients);
	expect_one_error(text, "shared", "needs instance");
	snprintf(text, sizeof(text), "%sshared = { redis = \"10.0.0.5:6379\"; instance = \"gw a\"; };\n", clients);
	expect_one_error(text, "shared.instance", "A-Z");
	snprintf(text, sizeof(text), "%sshared = { redis = \"10.0.0.5:6379\"; instance = \"a\"; timeout_ms = 0; };\n",
	    clients);
	expect_one_error(text, "shared.timeout_ms", "must be from");
	snprintf(text, sizeof(text),
	    "%sshared = { redis = \"10.0.0.5:6379\"; instance = \"a\"; stream_max_entries = 10; };\n", clients);
	expect_one_error(text, "shared.stream_max_entries", "must be from");
	expect_one_error("shared = { redis = \"10.0.0.5:6379\"; instance = \"a\"; };\n", "shared.redis", "clients");
}

static void
test_bad_addresses_and_urls(void **state)
{
	(void)state;
	expect_one_error("listen = [ \"127.0.0.1\" ];\n", "listen", "host:port");
	expect_one_error("listen = [ \"127.0.0.1:99999\" ];\n", "listen", "port");
	expect_one_error("listen = [ \"example.com:80\" ];\n", "listen", "IPv4 or IPv6");
	expect_one_error("listen = [ \"unix:relative.sock\" ];\n", "listen", "absolute");
	expect_one_error("listen = [ ];\n", "listen", "1 to");
	expect_one_error("upstream = { base_url = \"ftp://x\"; };\n", "upstream.base_url", "https://");
	/* The key must never cross a network in clear text. */
	expect_one_error("upstream = { base_url = \"http://example.com\"; };\n", "upstream.base_url", "loopback");
	expect_one_error(
	    "upstream = { base_url = \"http://localhost.evil.test\"; };\n", "upstream.base_url", "loopback");
	expect_one_error(
	    "upstream = { base_url = \"http://127.0.0.1.evil.test/\"; };\n", "upstream.base_url", "loopback");
	expect_one_error("upstream = { base_url = \"http://10.0.0.1:80\"; };\n", "upstream.base_url", "loopback");
	expect_one_error(
	    "upstream = { base_url = \"https://user:pw@example.com\"; };\n", "upstream.base_url", "credentials");
}

static void
test_loopback_http_upstream_is_allowed(void **state)
{
	struct config_errors errors;
	struct config *c = load("upstream = { base_url = \"http://127.0.0.1:8080\"; };\n", &errors);

	(void)state;
	assert_non_null(c);
	config_free(c);
	c = load("upstream = { base_url = \"http://localhost:8080\"; };\n", &errors);
	assert_non_null(c);
	config_free(c);
	c = load("upstream = { base_url = \"http://[::1]:8080/v\"; };\n", &errors);
	assert_non_null(c);
	config_free(c);
}

static void
test_every_error_is_reported_at_once(void **state)
{
	struct config_errors errors;
	struct config *c =
	    load("bogus = 1;\nupstream = { connect_timeout_ms = -5; };\nlog = { level = 3; };\n", &errors);

	(void)state;
	assert_null(c);
	assert_int_equal(errors.count, 3);
	assert_non_null(strstr(errors.lines[0], ":1: bogus"));
	assert_non_null(strstr(errors.lines[1], ":2: upstream.connect_timeout_ms"));
	assert_non_null(strstr(errors.lines[2], ":3: log.level"));
	config_errors_free(&errors);
}

static void
test_routes(void **state)
{
	struct config_errors errors;
	struct config *c;

	(void)state;
	/* The default allows the chat resource only. */
	c = load("", &errors);
	assert_non_null(c);
	assert_true(config_route_allows(c, "/api/v1/chat", CONFIG_METHOD_POST));
	assert_true(config_route_allows(c, "/api/v1/chat/ses-1/messages/stream", CONFIG_METHOD_POST));
	assert_true(config_route_allows(c, "/api/v1/chat/ses-1", CONFIG_METHOD_DELETE));
	assert_false(config_route_allows(c, "/api/v1/chat", CONFIG_METHOD_PUT));
	assert_false(config_route_allows(c, "/api/v1/chatty", CONFIG_METHOD_GET));
	assert_false(config_route_allows(c, "/api/v1/projects", CONFIG_METHOD_GET));
	assert_false(config_route_allows(c, "/api/v1/chat", 0));
	config_free(c);

	c = load("routes = ( { prefix = \"/api/v1/chat\"; methods = [ \"GET\" ]; },\n"
	         "           { prefix = \"/api/v1/projects/\"; methods = [ \"GET\", \"PATCH\" ]; } );\n",
	    &errors);
	assert_non_null(c);
	assert_int_equal(c->route_count, 2);
	assert_string_equal(c->routes[1].prefix, "/api/v1/projects");
	assert_false(config_route_allows(c, "/api/v1/chat", CONFIG_METHOD_POST)); /* the list replaces the default */
	assert_true(config_route_allows(c, "/api/v1/projects/p-1", CONFIG_METHOD_PATCH));
	config_free(c);
}

static void
test_bad_routes(void **state)
{
	(void)state;
	expect_one_error("routes = ( { prefix = \"/v1/chat\"; methods = [ \"GET\" ]; } );\n", "prefix", "under /api/");
	expect_one_error("routes = ( { prefix = \"/api/../admin\"; methods = [ \"GET\" ]; } );\n", "prefix", "'..'");
	expect_one_error("routes = ( { prefix = \"/api/x\"; methods = [ \"FETCH\" ]; } );\n", "methods", "FETCH");
	expect_one_error("routes = ( { prefix = \"/api/x\"; methods = [ ]; } );\n", "methods", "list of methods");
	expect_one_error("routes = ( { prefix = \"/api/x\"; } );\n", "routes", "both prefix and methods");
	expect_one_error(
	    "routes = ( { prefix = \"/api/x\"; methods = [\"GET\"]; colour = 1; } );\n", "colour", "unknown");
	expect_one_error("routes = { prefix = \"/api/x\"; };\n", "routes", "list of routes");
}

static void
test_missing_file(void **state)
{
	struct config_errors errors;
	struct config *c = config_load("/nonexistent/llamachatd.conf", &errors);

	(void)state;
	assert_null(c);
	assert_int_equal(errors.count, 1);
	assert_non_null(strstr(errors.lines[0], "/nonexistent/llamachatd.conf: cannot read"));
	config_errors_free(&errors);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_valid_file, make_path, remove_path),
		cmocka_unit_test_setup_teardown(test_empty_file_gives_defaults, make_path, remove_path),
		cmocka_unit_test_setup_teardown(test_upstream_connections_default_by_scheme, make_path, remove_path),
		cmocka_unit_test_setup_teardown(test_syntax_error_names_file_and_line, make_path, remove_path),
		cmocka_unit_test_setup_teardown(test_unknown_settings, make_path, remove_path),
		cmocka_unit_test_setup_teardown(test_wrong_types, make_path, remove_path),
		cmocka_unit_test_setup_teardown(test_values_out_of_range, make_path, remove_path),
		cmocka_unit_test_setup_teardown(test_bad_addresses_and_urls, make_path, remove_path),
		cmocka_unit_test_setup_teardown(test_loopback_http_upstream_is_allowed, make_path, remove_path),
		cmocka_unit_test_setup_teardown(test_every_error_is_reported_at_once, make_path, remove_path),
		cmocka_unit_test_setup_teardown(test_routes, make_path, remove_path),
		cmocka_unit_test_setup_teardown(test_bad_routes, make_path, remove_path),
		cmocka_unit_test_setup_teardown(test_otel_settings, make_path, remove_path),
		cmocka_unit_test_setup_teardown(test_shared_settings, make_path, remove_path),
		cmocka_unit_test(test_missing_file),
	};
	return cmocka_run_group_tests_name("unit: config", tests, NULL, NULL);
}
