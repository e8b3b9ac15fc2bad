/* Integration: the command line: --help, --version, -t, and refusing to start. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"

static char *dir;

static int
make_dir(void **state)
{
	(void)state;
	dir = harness_make_dir("cli");
	return dir != NULL ? 0 : -1;
}

static int
remove_dir(void **state)
{
	(void)state;
	harness_remove_dir(dir);
	free(dir);
	return 0;
}

static void
write_file(const char *name, const char *text, mode_t mode, char *path, size_t size)
{
	FILE *f;

	snprintf(path, size, "%s/%s", dir, name);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	assert_int_equal(chmod(path, mode), 0);
}

static int
run(const char *a1, const char *a2, const char *a3, const char *key, char **out)
{
	char *argv[] = { (char *)harness_daemon_bin(), (char *)a1, (char *)a2, (char *)a3, NULL };
	return run_command(argv, "LLAMA_CLOUD_API_KEY", key, out);
}

static void
test_help_and_version(void **state)
{
	char *out;

	(void)state;
	assert_int_equal(run("--help", NULL, NULL, NULL, &out), 0);
	assert_non_null(strstr(out, "usage: llamachatd"));
	assert_non_null(strstr(out, "--config"));
	assert_non_null(strstr(out, "LLAMA_CLOUD_API_KEY"));
	free(out);
	assert_int_equal(run("--version", NULL, NULL, NULL, &out), 0);
	assert_non_null(strstr(out, "llamachatd 0."));
	free(out);
	assert_int_equal(run("--bogus", NULL, NULL, NULL, &out), 2);
	assert_non_null(strstr(out, "usage:"));
	free(out);
	/* A key as an argument is not a thing: arguments are refused. */
	assert_int_equal(run("-c", "/dev/null", "llx-key-on-argv", NULL, &out), 2);
	free(out);
}

static void
test_check_of_a_good_config(void **state)
{
	char conf[512], *out;

	(void)state;
	write_file(
	    "good.conf", "listen = [ \"127.0.0.1:0\" ];\nstore = { path = \"/tmp/x\"; };\n", 0644, conf, sizeof(conf));
	assert_int_equal(run("-t", "-c", conf, "llx-k", &out), 0);
	assert_non_null(strstr(out, "configuration OK"));
	assert_null(strstr(out, "llx-k"));
	free(out);
}

static void
test_check_of_a_bad_config_names_file_line_and_setting(void **state)
{
	char conf[512], *out;

	(void)state;
	write_file("bad.conf",
	    "listen = [ \"127.0.0.1:0\" ];\nupstream = {\n  request_timeout_ms = \"soon\";\n  colour = 1;\n};\n", 0644,
	    conf, sizeof(conf));
	assert_int_equal(run("-t", "-c", conf, NULL, &out), 1);
	assert_non_null(strstr(out, ":3: upstream.request_timeout_ms: must be an integer"));
	assert_non_null(strstr(out, ":4: upstream.colour: unknown setting"));
	assert_non_null(strstr(out, conf));
	assert_null(strstr(out, "configuration OK"));
	free(out);

	assert_int_equal(run("-t", "-c", "/nonexistent.conf", NULL, &out), 1);
	assert_non_null(strstr(out, "/nonexistent.conf"));
	free(out);
}

static void
test_a_key_file_others_can_read_is_refused(void **state)
{
	char conf[512], key[512], text[1200], *out;

	(void)state;
	write_file("key", "llx-secret-in-file\n", 0644, key, sizeof(key));
	snprintf(text, sizeof(text), "upstream = { api_key_file = \"%s\"; };\nstore = { path = \"%s/store\"; };\n", key,
	    dir);
	write_file("keyfile.conf", text, 0644, conf, sizeof(conf));
	assert_int_equal(run("-t", "-c", conf, NULL, &out), 1);
	assert_non_null(strstr(out, "chmod 600"));
	assert_null(strstr(out, "llx-secret-in-file"));
	free(out);
	/* The daemon itself refuses to start, too. */
	assert_int_equal(run("-c", conf, NULL, NULL, &out), 1);
	assert_non_null(strstr(out, "chmod 600"));
	free(out);

	assert_int_equal(chmod(key, 0600), 0);
	assert_int_equal(run("-t", "-c", conf, NULL, &out), 0);
	free(out);
}

static void
test_an_address_in_use_fails_clearly(void **state)
{
	struct daemon_process first;
	char conf[512], text[512], *out;

	(void)state;
	daemon_write_config(&first, dir, harness_unused_port(), NULL, NULL, NULL);
	assert_int_equal(daemon_start(&first, NULL), 0);
	snprintf(text, sizeof(text), "listen = [ \"127.0.0.1:%d\" ];\nstore = { path = \"%s/store2\"; };\n", first.port,
	    dir);
	write_file("clash.conf", text, 0644, conf, sizeof(conf));
	assert_int_equal(run("-c", conf, NULL, NULL, &out), 1);
	assert_non_null(strstr(out, "Address already in use"));
	free(out);
	assert_int_equal(daemon_stop(&first), 0);
}

static void
test_hash_token_prints_the_config_line(void **state)
{
	char *argv[] = { (char *)harness_daemon_bin(), "--hash-token", NULL };
	char *out;

	(void)state;
	/* sha256("s3cret") */
	assert_int_equal(run_command_input(argv, "s3cret\n", NULL, NULL, &out), 0);
	assert_non_null(
	    strstr(out, "token_sha256 = \"1ec1c26b50d5d3c58d9583181af8076655fe00756bf7285940ba3670f99fcba0\""));
	assert_null(strstr(out, "s3cret"));
	free(out);
	assert_int_equal(run_command_input(argv, "\n", NULL, NULL, &out), 1);
	free(out);
}

static void
test_no_open_gateway_by_accident(void **state)
{
	char conf[512], text[1024], *out;

	(void)state;
	write_file(
	    "open.conf", "listen = [ \"0.0.0.0:0\" ];\nstore = { path = \"/tmp/x\"; };\n", 0644, conf, sizeof(conf));
	assert_int_equal(run("-t", "-c", conf, NULL, &out), 1);
	assert_non_null(strstr(out, ":1: listen: \"0.0.0.0:0\" is not loopback"));
	free(out);
	assert_int_equal(run("-c", conf, NULL, NULL, &out), 1);
	assert_non_null(strstr(out, "not loopback"));
	free(out);
	/* With clients, a network address is fine. */
	snprintf(text, sizeof(text),
	    "listen = [ \"0.0.0.0:0\" ];\nstore = { path = \"/tmp/x\"; };\n"
	    "clients = ( { name = \"a\"; token_sha256 = \"%064d\"; } );\n",
	    0);
	write_file("team.conf", text, 0644, conf, sizeof(conf));
	assert_int_equal(run("-t", "-c", conf, NULL, &out), 0);
	free(out);
}

static void
test_bad_clients_are_named(void **state)
{
	char conf[512], *out;

	(void)state;
	write_file("clients.conf",
	    "clients = (\n"
	    "  { name = \"a b\"; token_sha256 = \"00\"; },\n"
	    "  { name = \"ok\"; token_sha256 = \"0000000000000000000000000000000000000000000000000000000000000000\"; "
	    "rate_per_s = -1; },\n"
	    "  { name = \"ok\"; token_sha256 = \"1111111111111111111111111111111111111111111111111111111111111111\"; "
	    "}\n,"
	    "  { name = \"b1\"; token_sha256 = \"2222222222222222222222222222222222222222222222222222222222222222\"; "
	    "max_tokens_per_day = 0; max_sessions_per_day = \"ten\"; }\n"
	    ");\n"
	    "idempotency = { ttl_s = 0; };\n",
	    0644, conf, sizeof(conf));
	assert_int_equal(run("-t", "-c", conf, NULL, &out), 1);
	assert_non_null(strstr(out, ":5: clients[3].max_tokens_per_day: must be a whole number from 1"));
	assert_non_null(strstr(out, ":5: clients[3].max_sessions_per_day: must be a whole number from 1"));
	assert_non_null(strstr(out, ":7: idempotency.ttl_s: must be from 1"));
	assert_non_null(strstr(out, ":2: clients[0].name: must be 1 to 64"));
	assert_non_null(strstr(out, ":2: clients[0].token_sha256: must be the 64 hex digits"));
	assert_non_null(strstr(out, ":3: clients[1].rate_per_s"));
	free(out);
}

static void
test_unix_socket_gets_its_mode(void **state)
{
	struct daemon_process d;
	char sock[512], extra[600];
	struct stat st;
	FILE *f;

	(void)state;
	daemon_write_config(&d, dir, harness_unused_port(), NULL, NULL, NULL);
	snprintf(sock, sizeof(sock), "%s/llamachatd.sock", dir);
	f = fopen(d.conf_path, "a");
	snprintf(extra, sizeof(extra), "unix_socket = { mode = \"0600\"; };\n");
	fputs(extra, f);
	fclose(f);
	/* Listen on the socket as well as on loopback. */
	{
		char *text = NULL;
		size_t len = 0;
		FILE *in = fopen(d.conf_path, "r");
		fseek(in, 0, SEEK_END);
		len = (size_t)ftell(in);
		fseek(in, 0, SEEK_SET);
		text = calloc(1, len + 1);
		assert_int_equal(fread(text, 1, len, in), len);
		fclose(in);
		f = fopen(d.conf_path, "w");
		fprintf(f, "%s", strstr(text, "\n") + 1); /* drop the listen line */
		fprintf(f, "listen = [ \"127.0.0.1:0\", \"unix:%s\" ];\n", sock);
		fclose(f);
		free(text);
	}
	assert_int_equal(daemon_start(&d, NULL), 0);
	assert_int_equal(stat(sock, &st), 0);
	assert_true(S_ISSOCK(st.st_mode));
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(daemon_stop(&d), 0);
	assert_int_not_equal(stat(sock, &st), 0); /* removed at stop */
}

/* True once the daemon d answers a request (404 for an unknown path). */
static bool
answers_404(void *arg)
{
	struct daemon_process *d = arg;
	struct http_response r;
	char url[256];
	bool ok =
	    http_call("GET", daemon_url(d, "/nowhere", url, sizeof(url)), NULL, NULL, 0, &r) == 0 && r.status == 404;

	http_response_free(&r);
	return ok;
}

/* More clients than max_connections allows wait at the door, nobody
 * crashes, and once they leave the daemon serves again. */
static void
test_connection_cap_holds_and_recovers(void **state)
{
	struct daemon_process d;
	struct http_response r;
	char url[256], sub[512];
	int fds[200];
	int opened = 0;
	long log_at;

	(void)state;
	snprintf(sub, sizeof(sub), "%s/cap", dir);
	assert_int_equal(mkdir(sub, 0700), 0);
	daemon_write_config(&d, sub, harness_unused_port(), "max_in_flight = 1;",
	    "max_connections = 16; client_timeout_ms = 20000;", NULL);
	assert_int_equal(daemon_start(&d, NULL), 0);
	log_at = daemon_log_offset(&d);
	for (int i = 0; i < 200; i++) {
		fds[i] = harness_connect(d.port); /* the kernel's backlog takes what the daemon does not */
		if (fds[i] >= 0)
			opened++;
	}
	/* The daemon takes 16 and pauses its listener; the rest wait. */
	daemon_wait_log(&d, log_at, "16 connections open, at limits.max_connections");
	assert_true(harness_open_sockets(d.pid) <= 16 + 8); /* its listener, store, log and the like */
	for (int i = 0; i < 200; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	/* Served again once the crowd is gone. */
	harness_wait(answers_404, &d, HARNESS_WAIT_MS, "the daemon to serve again after the crowd left");
	assert_int_equal(http_call("GET", daemon_url(&d, "/nowhere", url, sizeof(url)), NULL, NULL, 0, &r), 0);
	assert_int_equal(r.status, 404);
	http_response_free(&r);
	assert_true(opened > 16);
	assert_int_equal(daemon_stop(&d), 0);
}

/* Out of file descriptors: accept() fails, the listeners pause (the log
 * says so), the connections the daemon has are still served, and once
 * clients leave it accepts again. */
static void
test_running_out_of_descriptors_pauses_accepting(void **state)
{
	char *const wrapper[] = { "prlimit", "--nofile=40:40", "--", NULL };
	struct daemon_process d;
	char sub[512];
	int fds[100];
	long log_at;

	(void)state;
	snprintf(sub, sizeof(sub), "%s/emfile", dir);
	assert_int_equal(mkdir(sub, 0700), 0);
	daemon_write_config(&d, sub, harness_unused_port(), NULL, NULL, NULL);
	assert_int_equal(daemon_start_with(&d, NULL, NULL, wrapper), 0);
	log_at = daemon_log_offset(&d);
	for (int i = 0; i < 100; i++)
		fds[i] = harness_connect(d.port); /* the kernel's backlog takes what the daemon cannot */
	daemon_wait_log(&d, log_at, "accept failed; pausing the listeners");
	for (int i = 0; i < 100; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	harness_wait(answers_404, &d, HARNESS_WAIT_MS, "the daemon to accept again once descriptors are free");
	assert_int_equal(daemon_stop(&d), 0);
}

/* The configs shipped in conf/ must stay valid as the code moves. */
static void
test_shipped_configs_are_valid(void **state)
{
	const char *top = getenv("LLAMACHATD_TOP");
	const char *names[] = { "conf/llamachatd.conf", "conf/minimal.conf" };
	char conf[512], *out;

	(void)state;
	assert_non_null(top);
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		snprintf(conf, sizeof(conf), "%s/%s", top, names[i]);
		assert_int_equal(run("-t", "-c", conf, "llx-k", &out), 0);
		assert_non_null(strstr(out, "configuration OK"));
		free(out);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_help_and_version),
		cmocka_unit_test(test_check_of_a_good_config),
		cmocka_unit_test(test_check_of_a_bad_config_names_file_line_and_setting),
		cmocka_unit_test(test_a_key_file_others_can_read_is_refused),
		cmocka_unit_test(test_an_address_in_use_fails_clearly),
		cmocka_unit_test(test_shipped_configs_are_valid),
		cmocka_unit_test(test_hash_token_prints_the_config_line),
		cmocka_unit_test(test_no_open_gateway_by_accident),
		cmocka_unit_test(test_bad_clients_are_named),
		cmocka_unit_test(test_unix_socket_gets_its_mode),
		cmocka_unit_test(test_connection_cap_holds_and_recovers),
		cmocka_unit_test(test_running_out_of_descriptors_pauses_accepting),
	};
	return cmocka_run_group_tests_name("integration: command line", tests, make_dir, remove_dir);
}
