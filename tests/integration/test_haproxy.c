/* Integration: two daemons behind HAProxy, with the example configuration
 * of conf/haproxy.cfg (only its addresses and its health-check pace
 * changed). A client's calls stick to one instance; a session created on one
 * is read through on the other; a stream arrives through the balancer
 * unbuffered; stopping an instance moves its clients to the other, and their
 * lookups keep working. Skipped, saying so, where haproxy is not installed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

static struct fake_upstream fake;
static struct daemon_process one, two;
static char *dir;
static pid_t haproxy_pid = -1;
static int haproxy_port;

#define ALICE "Authorization: Bearer tok-alice-h41"
#define LEAD "Authorization: Bearer tok-lead-h42"

static int
start_daemon(struct daemon_process *d, const char *name)
{
	char sub[512], alice[65], lead[65];
	FILE *f;

	snprintf(sub, sizeof(sub), "%s/%s", dir, name);
	if (mkdir(sub, 0700) != 0)
		return -1;
	harness_token_hex("tok-alice-h41", alice);
	harness_token_hex("tok-lead-h42", lead);
	daemon_write_config(d, sub, fake.port, NULL, NULL, NULL);
	f = fopen(d->conf_path, "a");
	fprintf(f,
	    "clients = (\n"
	    "  { name = \"alice\"; token_sha256 = \"%s\"; },\n"
	    "  { name = \"lead\"; token_sha256 = \"%s\"; see_all = true; }\n);\n",
	    alice, lead);
	fclose(f);
	return daemon_start(d, HARNESS_KEY);
}

static bool
haproxy_answers(void *arg)
{
	struct http_response r;
	char url[128];
	bool ok;

	(void)arg;
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/healthz", haproxy_port);
	if (http_call("GET", url, NULL, NULL, 0, &r) != 0)
		return false;
	ok = r.status == 200;
	http_response_free(&r);
	return ok;
}

static int
start_all(void **state)
{
	(void)state;
	dir = harness_make_dir("haproxy");
	if (dir == NULL || fake_start(&fake, dir) != 0 || start_daemon(&one, "one") != 0 ||
	    start_daemon(&two, "two") != 0)
		return -1;
	{
		int ports[2] = { one.port, two.port };
		haproxy_pid = harness_haproxy_start(dir, ports, 2, &haproxy_port);
	}
	harness_wait(haproxy_answers, NULL, 15000, "HAProxy answering /healthz");
	return 0;
}

static int
stop_all(void **state)
{
	(void)state;
	harness_stop_process(haproxy_pid);
	daemon_kill(&one);
	daemon_kill(&two);
	fake_stop(&fake);
	harness_remove_dir(dir);
	free(dir);
	return 0;
}

/* A call through HAProxy (port 0) or to one instance (its port); the
 * status, the instance that answered (X-Served-By) into served, the body's
 * session_id into id when asked. */
static long
call_via(int port, const char *who, const char *method, const char *path, const char *body, char *served, char *id,
    char *cache)
{
	const char *headers[] = { "Content-Type: application/json", who, NULL };
	struct http_response r;
	char url[512];
	long status;

	snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", port != 0 ? port : haproxy_port, path);
	assert_int_equal(http_call(method, url, headers, body, body != NULL ? strlen(body) : 0, &r), 0);
	status = r.status;
	if (served != NULL && http_header(&r, "X-Served-By", served, 32) == NULL)
		served[0] = '\0';
	if (cache != NULL && http_header(&r, "X-Cache", cache, 16) == NULL)
		cache[0] = '\0';
	if (id != NULL) {
		json_t *doc = json_loads(r.body, 0, NULL);
		snprintf(id, 128, "%s", json_string_value(json_object_get(doc, "session_id")));
		json_decref(doc);
	}
	http_response_free(&r);
	return status;
}

static char lead_served[32], lead_session[128];

static void
test_a_clients_calls_stick_to_one_instance(void **state)
{
	char first[32], served[32], id[128];

	(void)state;
	assert_int_equal(call_via(0, ALICE, "POST", "/api/v1/chat", "{}", first, id, NULL), 200);
	assert_true(strcmp(first, "one") == 0 || strcmp(first, "two") == 0);
	for (int i = 0; i < 8; i++) {
		assert_int_equal(call_via(0, ALICE, "POST", "/api/v1/chat", "{}", served, NULL, NULL), 200);
		assert_string_equal(served, first);
		assert_int_equal(call_via(0, ALICE, "GET", "/api/v1/chat", NULL, served, NULL, NULL), 200);
		assert_string_equal(served, first);
	}
	assert_int_equal(call_via(0, LEAD, "POST", "/api/v1/chat", "{}", lead_served, lead_session, NULL), 200);
	for (int i = 0; i < 8; i++) {
		assert_int_equal(call_via(0, LEAD, "GET", "/api/v1/chat", NULL, served, NULL, NULL), 200);
		assert_string_equal(served, lead_served);
	}
}

static void
test_a_session_made_on_one_instance_is_read_through_on_the_other(void **state)
{
	struct daemon_process *other = strcmp(lead_served, "one") == 0 ? &two : &one;
	char path[256], cache[16];

	(void)state;
	snprintf(path, sizeof(path), "/api/v1/chat/%s/summary", lead_session);
	assert_int_equal(call_via(other->port, LEAD, "GET", path, NULL, NULL, NULL, cache), 200);
	assert_string_equal(cache, "MISS");
	assert_int_equal(call_via(other->port, LEAD, "GET", path, NULL, NULL, NULL, cache), 200);
	assert_string_equal(cache, "HIT");
}

/* What a raw client has read of its answer so far. */
struct stream_read {
	int fd;
	char got[8192];
	size_t len;
	const char *needle;
};

static bool
stream_has(void *arg)
{
	struct stream_read *r = arg;
	ssize_t n = recv(r->fd, r->got + r->len, sizeof(r->got) - 1 - r->len, MSG_DONTWAIT);

	if (n > 0)
		r->len += (size_t)n;
	r->got[r->len] = '\0';
	return strstr(r->got, r->needle) != NULL;
}

/* The fake holds the stream after its first event: that event arriving
 * through HAProxy while the rest is held shows nothing buffers it. */
static void
test_a_stream_passes_the_balancer_unbuffered(void **state)
{
	const char *body = "{\"prompt\":\"hi\",\"index_ids\":[]}";
	char request[1024];
	long held = fake_count(&fake, "streams_held");
	static struct stream_read r;
	int len;

	(void)state;
	assert_int_equal(
	    fake_fault(&fake, "POST", "/api/v1/chat/{id}/messages/stream", "{\"mode\":\"hold\",\"count\":1}"), 0);
	len = snprintf(request, sizeof(request),
	    "POST /api/v1/chat/%s/messages/stream HTTP/1.1\r\nHost: localhost\r\n%s\r\nContent-Type: "
	    "application/json\r\n"
	    "Content-Length: %zu\r\n\r\n%s",
	    lead_session, LEAD, strlen(body), body);
	assert_true((r.fd = harness_connect(haproxy_port)) >= 0);
	assert_int_equal(write(r.fd, request, (size_t)len), len);
	fake_wait_count(&fake, "streams_held", held + 1);
	r.needle = "\ndata: {";
	harness_wait(stream_has, &r, 10000, "the first event through HAProxy while the stream is held");
	assert_non_null(strstr(r.got, "text/event-stream"));
	assert_null(strstr(r.got, "\"type\":\"stop\""));
	assert_int_equal(fake_release(&fake), 1);
	r.needle = "\"type\":\"stop\"";
	harness_wait(stream_has, &r, 10000, "the rest of the stream once released");
	close(r.fd);
}

struct moved_wait {
	const char *from;
	const char *path;
};

static bool
served_elsewhere(void *arg)
{
	struct moved_wait *w = arg;
	char served[32];

	return call_via(0, LEAD, "GET", w->path, NULL, served, NULL, NULL) == 200 && strcmp(served, w->from) != 0;
}

static void
test_stopping_an_instance_moves_its_clients_and_lookups_keep_working(void **state)
{
	struct daemon_process *gone = strcmp(lead_served, "one") == 0 ? &one : &two;
	struct moved_wait w;
	char path[256], served[32], id[128];

	(void)state;
	snprintf(path, sizeof(path), "/api/v1/chat/%s/summary", lead_session);
	assert_int_equal(daemon_stop(gone), 0);
	/* The first calls may still be sent to it: they are redispatched. */
	w.from = lead_served;
	w.path = path;
	harness_wait(served_elsewhere, &w, 15000, "the lead's lookups answered by the other instance");
	for (int i = 0; i < 5; i++) {
		assert_int_equal(call_via(0, LEAD, "GET", path, NULL, served, NULL, NULL), 200);
		assert_string_not_equal(served, lead_served);
	}
	assert_int_equal(call_via(0, LEAD, "POST", "/api/v1/chat", "{}", served, id, NULL), 200);
	assert_string_not_equal(served, lead_served);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_a_clients_calls_stick_to_one_instance),
		cmocka_unit_test(test_a_session_made_on_one_instance_is_read_through_on_the_other),
		cmocka_unit_test(test_a_stream_passes_the_balancer_unbuffered),
		cmocka_unit_test(test_stopping_an_instance_moves_its_clients_and_lookups_keep_working),
	};

	if (system("command -v haproxy >/dev/null 2>&1") != 0) {
		printf("it_haproxy: skipped: haproxy is not installed (apt-get install haproxy; make test installs it "
		       "as root)\n");
		return 0;
	}
	return cmocka_run_group_tests_name("integration: two daemons behind HAProxy", tests, start_all, stop_all);
}
