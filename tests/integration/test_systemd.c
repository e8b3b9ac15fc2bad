/* Integration: llamachatd under systemd's tools: the units, install, socket
 * activation, the notify protocol, the watchdog, journal log prefixes and a
 * graceful stop with a stream in flight. systemd itself need not run. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <curl/curl.h>
#include <libgen.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "harness.h"

static char *dir;

static int
make_dir(void **state)
{
	(void)state;
	dir = harness_make_dir("systemd");
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

/* Runs a shell command line; returns its exit status, output in *out. */
static int
sh(const char *line, char **out)
{
	char *argv[] = { "/bin/sh", "-c", (char *)line, NULL };
	return run_command(argv, NULL, NULL, out);
}

static const char *
top(void)
{
	const char *t = getenv("LLAMACHATD_TOP");
	assert_non_null(t);
	return t;
}

static void
test_units_verify_and_are_hardened(void **state)
{
	char line[2048], bin_dir[1024], *out;
	double exposure = 99;
	const char *at;

	(void)state;
	/* Install with ExecStart pointing at the binary under test, so that
	 * verify finds it. */
	snprintf(bin_dir, sizeof(bin_dir), "%s", harness_daemon_bin());
	snprintf(
	    line, sizeof(line), "make -s -C %s install DESTDIR=%s/verify SBINDIR=%s", top(), dir, dirname(bin_dir));
	assert_int_equal(sh(line, &out), 0);
	free(out);
	snprintf(line, sizeof(line),
	    "systemd-analyze verify --man=no %s/verify/usr/local/lib/systemd/system/llamachatd.service "
	    "%s/verify/usr/local/lib/systemd/system/llamachatd.socket",
	    dir, dir);
	assert_int_equal(sh(line, &out), 0);
	if (out[0] != '\0')
		fprintf(stderr, "verify said: %s\n", out);
	assert_string_equal(out, "");
	free(out);
	snprintf(line, sizeof(line),
	    "systemd-analyze security --offline=true %s/verify/usr/local/lib/systemd/system/llamachatd.service", dir);
	sh(line, &out);
	at = strstr(out, "Overall exposure level for llamachatd.service: ");
	assert_non_null(at);
	exposure = atof(at + strlen("Overall exposure level for llamachatd.service: "));
	free(out);
	assert_true(exposure <= 2.0);
}

static bool
file_exists(const char *root, const char *path, mode_t *mode)
{
	char full[1024];
	struct stat st;

	snprintf(full, sizeof(full), "%s%s", root, path);
	if (stat(full, &st) != 0)
		return false;
	if (mode != NULL)
		*mode = st.st_mode;
	return true;
}

static void
test_install_puts_everything_where_the_unit_expects(void **state)
{
	char root[600], line[2048], conf[700], *out;
	mode_t mode;
	FILE *f;

	(void)state;
	snprintf(root, sizeof(root), "%s/root", dir);
	snprintf(line, sizeof(line), "make -s -C %s install DESTDIR=%s PREFIX=/usr", top(), root);
	assert_int_equal(sh(line, &out), 0);
	free(out);
	/* What the unit names is there. */
	snprintf(line, sizeof(line),
	    "grep -c '^ExecStart=/usr/sbin/llamachatd -c /etc/llamachatd/llamachatd.conf$' "
	    "%s/usr/lib/systemd/system/llamachatd.service",
	    root);
	assert_int_equal(sh(line, &out), 0);
	free(out);
	assert_true(file_exists(root, "/usr/sbin/llamachatd", &mode) && (mode & 0111) != 0);
	assert_true(file_exists(root, "/usr/lib/systemd/system/llamachatd.socket", NULL));
	assert_true(file_exists(root, "/etc/llamachatd", NULL)); /* LoadCredential= reads api_key here */
	assert_true(file_exists(root, "/etc/llamachatd/llamachatd.conf", NULL));
	assert_true(file_exists(root, "/usr/share/man/man8/llamachatd.8", NULL));
	assert_true(file_exists(root, "/usr/share/man/man5/llamachatd.conf.5", NULL));
	assert_true(file_exists(root, "/usr/share/man/man1/llamachatctl.1", NULL));
	assert_true(file_exists(root, "/usr/bin/llamachatctl", &mode) && (mode & 0111) != 0);
	assert_true(file_exists(root, "/usr/share/doc/llamachatd/llamachatd.conf.sample", NULL));

	/* The installed config is valid and matches the socket unit. */
	snprintf(conf, sizeof(conf), "%s/etc/llamachatd/llamachatd.conf", root);
	{
		char *argv[] = { (char *)harness_daemon_bin(), "-t", "-c", conf, NULL };
		assert_int_equal(run_command(argv, "LLAMA_CLOUD_API_KEY", "k", &out), 0);
		free(out);
	}
	snprintf(line, sizeof(line),
	    "grep -q 'unix:/run/llamachatd/llamachatd.sock' %s && grep -q "
	    "'^ListenStream=/run/llamachatd/llamachatd.sock$' %s/usr/lib/systemd/system/llamachatd.socket",
	    conf, root);
	assert_int_equal(sh(line, &out), 0);
	free(out);

	/* A config of the admin's own is never overwritten. */
	f = fopen(conf, "a");
	fputs("# edited by the admin\n", f);
	fclose(f);
	snprintf(line, sizeof(line), "make -s -C %s install DESTDIR=%s PREFIX=/usr && grep -q 'edited by the admin' %s",
	    top(), root, conf);
	assert_int_equal(sh(line, &out), 0);
	free(out);

	/* Both man pages render. */
	snprintf(line, sizeof(line), "MANWIDTH=80 man -l %s/usr/share/man/man8/llamachatd.8 | grep -q SIGHUP", root);
	assert_int_equal(sh(line, &out), 0);
	free(out);
	snprintf(line, sizeof(line),
	    "MANWIDTH=80 man -l %s/usr/share/man/man5/llamachatd.conf.5 | grep -q token_sha256", root);
	assert_int_equal(sh(line, &out), 0);
	free(out);

	snprintf(line, sizeof(line), "MANWIDTH=80 man -l %s/usr/share/man/man1/llamachatctl.1 | grep -q purge", root);
	assert_int_equal(sh(line, &out), 0);
	free(out);

	/* Uninstall takes back what install put, and leaves the config. */
	snprintf(line, sizeof(line), "make -s -C %s uninstall DESTDIR=%s PREFIX=/usr", top(), root);
	assert_int_equal(sh(line, &out), 0);
	free(out);
	assert_false(file_exists(root, "/usr/sbin/llamachatd", NULL));
	assert_false(file_exists(root, "/usr/bin/llamachatctl", NULL));
	assert_false(file_exists(root, "/usr/lib/systemd/system/llamachatd.service", NULL));
	assert_false(file_exists(root, "/usr/share/man/man8/llamachatd.8", NULL));
	assert_true(file_exists(root, "/etc/llamachatd/llamachatd.conf", NULL));
}

/* True once a connection to port *arg succeeds (it is closed again). */
static bool
connects(void *arg)
{
	int fd = harness_connect(*(int *)arg);

	if (fd < 0)
		return false;
	close(fd);
	return true;
}

static void
test_socket_activation_serves_the_passed_socket(void **state)
{
	struct daemon_process d;
	char sub[512], listen[64], url[256];
	char *wrapper[] = { "systemd-socket-activate", "-l", listen, NULL };
	struct http_response r;
	int port = harness_unused_port();
	FILE *f;

	(void)state;
	snprintf(sub, sizeof(sub), "%s/activate", dir);
	assert_int_equal(mkdir(sub, 0700), 0);
	snprintf(listen, sizeof(listen), "127.0.0.1:%d", port);
	daemon_write_config(&d, sub, harness_unused_port(), NULL, NULL, NULL);
	f = fopen(d.conf_path, "a");
	fclose(f);
	{
		/* The config names the same address systemd passes. */
		char text[1024];
		snprintf(text, sizeof(text), "listen = [ \"%s\" ];\nstore = { path = \"%s/store\"; };\n", listen, sub);
		f = fopen(d.conf_path, "w");
		fputs(text, f);
		fclose(f);
	}
	/* systemd-socket-activate starts the daemon on the first connection. */
	assert_int_equal(daemon_spawn_with(&d, NULL, NULL, wrapper), 0);
	harness_wait(connects, &port, HARNESS_WAIT_MS, "systemd-socket-activate to listen");
	assert_int_equal(daemon_wait_ready(&d), 0);
	assert_true(daemon_log_contains(&d, "(from systemd)"));
	assert_int_equal(d.port, port);
	assert_int_equal(http_call("GET", daemon_url(&d, "/api/v1/chat", url, sizeof(url)), NULL, NULL, 0, &r), 0);
	assert_int_equal(r.status, 200);
	http_response_free(&r);
	assert_int_equal(daemon_stop(&d), 0);
}

/* Appends the notify messages waiting on fd to log, each followed by '|'. */
static void
drain_notifications(int fd, char *log, size_t size)
{
	char msg[512];
	ssize_t n;

	while ((n = recv(fd, msg, sizeof(msg) - 1, MSG_DONTWAIT)) > 0) {
		msg[n] = '\0';
		strncat(log, msg, size - strlen(log) - 2);
		strcat(log, "|");
	}
}

/* Collects notify messages for a window of wait_ms (to count a rate). */
static void
read_notifications(int fd, long wait_ms, char *log, size_t size)
{
	for (long waited = 0; waited < wait_ms; waited += 10) {
		drain_notifications(fd, log, size);
		usleep(10000);
	}
	drain_notifications(fd, log, size);
}

struct notify_wait {
	int fd;
	char *notes;
	size_t size;
	const char *needle;
};

static bool
notified(void *arg)
{
	struct notify_wait *w = arg;

	drain_notifications(w->fd, w->notes, w->size);
	return strstr(w->notes, w->needle) != NULL;
}

/* Reads notify messages into notes until one holds needle. */
static void
wait_notification(int fd, char *notes, size_t size, const char *needle)
{
	struct notify_wait w = { fd, notes, size, needle };
	char what[64];

	snprintf(what, sizeof(what), "the notification %s", needle);
	harness_wait(notified, &w, HARNESS_WAIT_MS, what);
}

static int
count_of(const char *text, const char *needle)
{
	int count = 0;

	for (const char *at = strstr(text, needle); at != NULL; at = strstr(at + 1, needle))
		count++;
	return count;
}

static void
test_notify_protocol_and_watchdog(void **state)
{
	struct daemon_process d;
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	static char notes[65536];
	char sub[512], notify_env[600], url[256];
	char *env[] = { notify_env, "WATCHDOG_USEC=200000", "JOURNAL_STREAM=8:1234", NULL };
	struct http_response r;
	int fd;

	(void)state;
	snprintf(sub, sizeof(sub), "%s/notify", dir);
	assert_int_equal(mkdir(sub, 0700), 0);
	snprintf(addr.sun_path, sizeof(addr.sun_path), "%.90s/n.sock", sub);
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&addr, sizeof(addr)), 0);
	snprintf(notify_env, sizeof(notify_env), "NOTIFY_SOCKET=%s", addr.sun_path);
	daemon_write_config(&d, sub, harness_unused_port(), NULL, NULL, NULL);
	assert_int_equal(daemon_start_with(&d, NULL, env, NULL), 0);

	/* READY=1, and by then the daemon answers. */
	notes[0] = '\0';
	wait_notification(fd, notes, sizeof(notes), "READY=1");
	assert_int_equal(http_call("GET", daemon_url(&d, "/nowhere", url, sizeof(url)), NULL, NULL, 0, &r), 0);
	assert_int_equal(r.status, 404);
	http_response_free(&r);

	/* Watchdog pings every 100 ms (half of WATCHDOG_USEC). */
	notes[0] = '\0';
	read_notifications(fd, 1000, notes, sizeof(notes));
	assert_true(count_of(notes, "WATCHDOG=1") >= 5);
	assert_true(count_of(notes, "WATCHDOG=1") <= 15);

	/* A reload: RELOADING=1 with MONOTONIC_USEC, then READY=1. */
	notes[0] = '\0';
	kill(d.pid, SIGHUP);
	wait_notification(fd, notes, sizeof(notes), "READY=1");
	assert_non_null(strstr(notes, "RELOADING=1\nMONOTONIC_USEC="));
	assert_non_null(strstr(notes, "READY=1"));
	assert_true(strstr(notes, "RELOADING=1") < strstr(notes, "READY=1"));

	/* A stop: STOPPING=1. */
	notes[0] = '\0';
	kill(d.pid, SIGTERM);
	wait_notification(fd, notes, sizeof(notes), "STOPPING=1");
	assert_int_equal(daemon_stop(&d), 0);
	close(fd);

	/* Under journald, lines carry sd-daemon priority prefixes. */
	assert_true(daemon_log_contains(&d, "<6>listening on 127.0.0.1:"));
	assert_true(daemon_log_contains(&d, "<6>llamachatd 0."));
}

static void
test_stop_lets_a_stream_in_flight_finish(void **state)
{
	struct fake_upstream fake;
	struct daemon_process d;
	char sub[512], url[256], path[256], id[2][64];
	static struct harness_body got;
	struct http_response r;
	CURL *curl;
	CURLM *multi;
	struct curl_slist *list = curl_slist_append(NULL, "Content-Type: application/json");
	int running = 1, status;
	long code = 0, log_at;

	(void)state;
	snprintf(sub, sizeof(sub), "%s/stop", dir);
	assert_int_equal(mkdir(sub, 0700), 0);
	assert_int_equal(fake_start(&fake, sub), 0);
	daemon_write_config(&d, sub, fake.port, NULL, NULL, NULL);
	assert_int_equal(daemon_start(&d, HARNESS_KEY), 0);
	for (int i = 0; i < 2; i++) {
		json_t *doc;
		assert_int_equal(
		    http_call("POST", daemon_url(&d, "/api/v1/chat", url, sizeof(url)), NULL, "", 0, &r), 0);
		doc = json_loads(r.body, 0, NULL);
		snprintf(id[i], sizeof(id[i]), "%s", json_string_value(json_object_get(doc, "session_id")));
		json_decref(doc);
		http_response_free(&r);
	}

	assert_int_equal(fake_fault(&fake, "POST", "/api/v1/chat/{id}/messages/stream", "{\"mode\":\"hold\"}"), 0);
	snprintf(path, sizeof(path), "/api/v1/chat/%s/messages/stream", id[0]);
	curl = curl_easy_init();
	multi = curl_multi_init();
	curl_easy_setopt(curl, CURLOPT_URL, daemon_url(&d, path, url, sizeof(url)));
	curl_easy_setopt(curl, CURLOPT_POSTFIELDS, "{\"prompt\":\"during a stop\",\"index_ids\":[]}");
	curl_easy_setopt(curl, CURLOPT_HTTPHEADER, list);
	curl_easy_setopt(curl, CURLOPT_PROXY, "");
	curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, harness_body_sink);
	curl_easy_setopt(curl, CURLOPT_WRITEDATA, &got);
	curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, 15000L);
	curl_multi_add_handle(multi, curl);
	while (running > 0 && strstr(got.data, "\n\n") == NULL) {
		curl_multi_perform(multi, &running);
		curl_multi_poll(multi, NULL, 0, 10, NULL);
	}
	/* The first event is through: stop the daemon now, then let upstream finish. */
	log_at = daemon_log_offset(&d);
	kill(d.pid, SIGTERM);
	daemon_wait_log(&d, log_at, "no longer accepting");
	assert_int_equal(fake_release(&fake), 1);
	while (running > 0) {
		curl_multi_perform(multi, &running);
		curl_multi_poll(multi, NULL, 0, 100, NULL);
	}
	curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &code);
	assert_int_equal(code, 200);
	assert_non_null(strstr(got.data, "\"type\":\"stop\""));
	status = daemon_stop(&d);
	assert_int_equal(status, 0);
	curl_multi_remove_handle(multi, curl);
	curl_easy_cleanup(curl);
	curl_multi_cleanup(multi);
	curl_slist_free_all(list);

	/* What was created before the stop is there after the restart. */
	assert_int_equal(daemon_start(&d, HARNESS_KEY), 0);
	for (int i = 0; i < 2; i++) {
		char value[16];
		snprintf(path, sizeof(path), "/api/v1/chat/%s/summary", id[i]);
		assert_int_equal(http_call("GET", daemon_url(&d, path, url, sizeof(url)), NULL, NULL, 0, &r), 0);
		assert_int_equal(r.status, 200);
		assert_string_equal(http_header(&r, "X-Cache", value, sizeof(value)), "HIT");
		http_response_free(&r);
	}
	assert_int_equal(daemon_stop(&d), 0);
	fake_stop(&fake);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_units_verify_and_are_hardened),
		cmocka_unit_test(test_install_puts_everything_where_the_unit_expects),
		cmocka_unit_test(test_socket_activation_serves_the_passed_socket),
		cmocka_unit_test(test_notify_protocol_and_watchdog),
		cmocka_unit_test(test_stop_lets_a_stream_in_flight_finish),
	};
	int failed;

	curl_global_init(CURL_GLOBAL_DEFAULT);
	failed = cmocka_run_group_tests_name("integration: systemd", tests, make_dir, remove_dir);
	curl_global_cleanup();
	return failed;
}
