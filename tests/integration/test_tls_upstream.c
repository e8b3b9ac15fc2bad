/* Integration: an upstream over TLS and HTTP/2, as LlamaCloud is: nginx
 * with a certificate made for the test (its CA given as upstream.ca_file)
 * in front of the fake upstream. Calls and streams work through it; an
 * upstream whose certificate cannot be verified is a 502 and nothing is
 * sent; and a crowd of streams shares one upstream connection (HTTP/2
 * multiplexing) instead of opening one each. Skipped, saying so, where
 * nginx or openssl is missing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"

static struct fake_upstream fake;
static struct daemon_process gw;
static char *dir;
static pid_t nginx_pid = -1;
static int tls_port;

#define CROWD 150 /* more streams than curl puts on one connection by itself (100) */

static bool
nginx_listens(void *arg)
{
	int fd = harness_connect(tls_port);

	(void)arg;
	if (fd < 0)
		return false;
	close(fd);
	return true;
}

static int
start_nginx(void)
{
	char conf[512], log[512], cmd[1024];
	char *argv[] = { "nginx", "-c", conf, "-p", dir, NULL };
	FILE *f;

	snprintf(cmd, sizeof(cmd),
	    "openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=127.0.0.1 "
	    "-addext subjectAltName=IP:127.0.0.1 -keyout %s/key.pem -out %s/cert.pem >/dev/null 2>&1",
	    dir, dir);
	if (system(cmd) != 0)
		return -1;
	tls_port = harness_unused_port();
	snprintf(conf, sizeof(conf), "%s/nginx.conf", dir);
	snprintf(log, sizeof(log), "%s/nginx.log", dir);
	f = fopen(conf, "w");
	fprintf(f,
	    "daemon off; master_process off; worker_processes 1;\n"
	    "error_log %s/nginx.err; pid %s/nginx.pid;\n"
	    "events { worker_connections 1024; }\n"
	    "http {\n  access_log off;\n"
	    "  client_body_temp_path %s; proxy_temp_path %s; fastcgi_temp_path %s; uwsgi_temp_path %s; "
	    "scgi_temp_path %s;\n"
	    "  upstream fake { server 127.0.0.1:%d; keepalive 16; }\n"
	    "  server {\n    listen 127.0.0.1:%d ssl http2;\n"
	    "    ssl_certificate %s/cert.pem; ssl_certificate_key %s/key.pem;\n"
	    "    http2_max_concurrent_streams 1000;\n"
	    "    location / { proxy_pass http://fake; proxy_http_version 1.1; proxy_set_header Connection \"\";\n"
	    "      proxy_buffering off; proxy_read_timeout 60s; }\n  }\n}\n",
	    dir, dir, dir, dir, dir, dir, dir, fake.port, tls_port, dir, dir);
	fclose(f);
	nginx_pid = harness_spawn(argv, log);
	harness_wait(nginx_listens, NULL, 10000, "nginx listening with TLS");
	return 0;
}

/* A daemon in directory in whose upstream is nginx over TLS, verified with
 * the test's certificate when with_ca, else with the system's trust store. */
static void
write_tls_config(struct daemon_process *d, const char *in, bool with_ca)
{
	FILE *f;

	daemon_write_config(d, in, fake.port, NULL, NULL, NULL); /* for its paths */
	f = fopen(d->conf_path, "w");
	fprintf(f,
	    "listen = [ \"127.0.0.1:0\" ];\n"
	    "upstream = { base_url = \"https://127.0.0.1:%d\"; connect_timeout_ms = 2000; %s%s%s };\n"
	    "store = { path = \"%s/store\"; };\n"
	    "log = { level = \"debug\"; };\n",
	    tls_port, with_ca ? "ca_file = \"" : "", with_ca ? dir : "", with_ca ? "/cert.pem\";" : "", in);
	fclose(f);
}

static int
start_all(void **state)
{
	(void)state;
	dir = harness_make_dir("tls");
	if (dir == NULL || fake_start(&fake, dir) != 0 || start_nginx() != 0)
		return -1;
	write_tls_config(&gw, dir, true);
	return daemon_start(&gw, HARNESS_KEY);
}

static int
stop_all(void **state)
{
	(void)state;
	harness_stop_process(nginx_pid);
	harness_suite_stop(&dir, &fake, &gw);
	return 0;
}

static char session[128];

static void
test_calls_and_streams_go_over_tls(void **state)
{
	struct http_response r;
	char path[256], value[16];
	json_t *doc;

	(void)state;
	assert_int_equal(daemon_call(&gw, NULL, "POST", "/api/v1/chat", "{}", &r), 200);
	doc = json_loads(r.body, 0, NULL);
	snprintf(session, sizeof(session), "%s", json_string_value(json_object_get(doc, "session_id")));
	json_decref(doc);
	http_response_free(&r);
	snprintf(path, sizeof(path), "/api/v1/chat/%s", session);
	assert_int_equal(daemon_call(&gw, NULL, "GET", path, NULL, &r), 200);
	http_response_free(&r);
	snprintf(path, sizeof(path), "/api/v1/chat/%s/messages/stream", session);
	assert_int_equal(daemon_call(&gw, NULL, "POST", path, "{\"prompt\":\"hi\",\"index_ids\":[]}", &r), 200);
	assert_non_null(strstr(r.body, "\"type\":\"stop\""));
	assert_non_null(http_header(&r, "Content-Type", value, sizeof(value)));
	http_response_free(&r);
}

static void
test_an_unverifiable_upstream_is_a_502_and_gets_nothing(void **state)
{
	struct daemon_process other;
	struct http_response r;
	char sub[512];
	long requests = fake_count(&fake, "api_requests");

	(void)state;
	snprintf(sub, sizeof(sub), "%s/other", dir);
	assert_int_equal(mkdir(sub, 0700), 0);
	/* No ca_file: the system's trust store, which does not know the test's. */
	write_tls_config(&other, sub, false);
	assert_int_equal(daemon_start(&other, HARNESS_KEY), 0);
	assert_int_equal(daemon_call(&other, NULL, "POST", "/api/v1/chat", "{}", &r), 502);
	assert_non_null(strstr(r.body, "detail"));
	http_response_free(&r);
	assert_int_equal(fake_count(&fake, "api_requests"), requests);
	assert_false(daemon_log_contains(&other, HARNESS_KEY));
	assert_int_equal(daemon_stop(&other), 0);
}

static void
test_a_crowd_of_streams_shares_one_upstream_connection(void **state)
{
	const char *body = "{\"prompt\":\"hi\",\"index_ids\":[]}";
	char fault[128];
	long held = fake_count(&fake, "streams_held");
	int fds[CROWD], before, upstream_sockets;

	(void)state;
	/* Sockets before: listener, the idle upstream connection, libevent's. */
	before = harness_open_sockets(gw.pid);
	snprintf(fault, sizeof(fault), "{\"mode\":\"hold\",\"count\":%d}", CROWD);
	assert_int_equal(fake_fault(&fake, "POST", "/api/v1/chat/{id}/messages/stream", fault), 0);
	for (int i = 0; i < CROWD; i++)
		assert_true((fds[i] = harness_send_raw_stream(gw.port, session, body)) >= 0);
	fake_wait_count(&fake, "streams_held", held + CROWD);
	/* Each stream holds its client's socket; upstream, they share. */
	upstream_sockets = harness_open_sockets(gw.pid) - before - CROWD;
	assert_true(upstream_sockets <= 2);
	assert_int_equal(fake_release(&fake), CROWD);
	for (int i = 0; i < CROWD; i++)
		close(fds[i]);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_calls_and_streams_go_over_tls),
		cmocka_unit_test(test_an_unverifiable_upstream_is_a_502_and_gets_nothing),
		cmocka_unit_test(test_a_crowd_of_streams_shares_one_upstream_connection),
	};

	if (system("command -v nginx >/dev/null 2>&1 && command -v openssl >/dev/null 2>&1") != 0) {
		printf(
		    "it_tls_upstream: skipped: needs nginx and openssl (apt-get install nginx-light openssl; make test "
		    "installs them as root)\n");
		return 0;
	}
	return cmocka_run_group_tests_name("integration: upstream over TLS and HTTP/2", tests, start_all, stop_all);
}
