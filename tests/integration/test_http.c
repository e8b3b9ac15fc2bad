/* Integration: the daemon's own HTTP/1.1 server on the wire. A corpus of
 * malformed and smuggling requests, each refused with the exact status, a
 * JSON detail and an access line, and none of them reaching upstream; then
 * keep-alive, pipelining, HTTP/1.0, and deadlines that a trickle cannot
 * stretch. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <curl/curl.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

#define HEADER_TIMEOUT_MS 1000
#define BODY_TIMEOUT_MS 1000
#define KEEPALIVE_TIMEOUT_MS 1500

static struct fake_upstream fake;
static struct daemon_process daemon_proc;
static char *dir;

static int
start_all(void **state)
{
	char limits[512];
	struct rlimit files;

	(void)state;
	/* A thousand trickling clients need more descriptors than the usual
	 * soft limit of 1024. */
	if (getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < 4096) {
		files.rlim_cur = files.rlim_max < 4096 ? files.rlim_max : 4096;
		setrlimit(RLIMIT_NOFILE, &files);
	}
	dir = harness_make_dir("http");
	if (dir == NULL || fake_start(&fake, dir) != 0)
		return -1;
	snprintf(limits, sizeof(limits),
	    "header_timeout_ms = %d; body_timeout_ms = %d; keepalive_timeout_ms = %d;\n"
	    "max_header_bytes = 4096; max_target_bytes = 1024; max_body_bytes = 65536;",
	    HEADER_TIMEOUT_MS, BODY_TIMEOUT_MS, KEEPALIVE_TIMEOUT_MS);
	daemon_write_config(&daemon_proc, dir, fake.port, NULL, limits, NULL);
	return daemon_start(&daemon_proc, HARNESS_KEY);
}

static int
stop_all(void **state)
{
	(void)state;
	harness_suite_stop(&dir, &fake, &daemon_proc);
	return 0;
}

static long
now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* Reads from fd into buf until the peer closes or wait_ms pass; returns the
 * bytes read (NUL-terminated), and whether the peer closed in *closed. */
static size_t
read_until_close(int fd, char *buf, size_t size, long wait_ms, bool *closed)
{
	long deadline = now_ms() + wait_ms;
	size_t have = 0;

	*closed = false;
	while (have + 1 < size) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		long left = deadline - now_ms();
		ssize_t n;
		if (left <= 0 || poll(&p, 1, (int)left) <= 0)
			break;
		n = recv(fd, buf + have, size - 1 - have, 0);
		if (n <= 0) {
			*closed = n == 0 || errno == ECONNRESET;
			break;
		}
		have += (size_t)n;
	}
	buf[have] = '\0';
	return have;
}

/* Sends one raw request on a new connection and reads until the daemon
 * closes it (or wait_ms pass); the answer goes into answer. Returns whether
 * the daemon closed the connection. */
static bool
exchange_once(const char *req, size_t len, char *answer, size_t size, long wait_ms)
{
	bool closed;
	int fd = harness_connect(daemon_proc.port);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, req, len), (ssize_t)len);
	read_until_close(fd, answer, size, wait_ms, &closed);
	close(fd);
	return closed;
}

/* The value of header name in a raw answer, copied into out; NULL if none. */
static const char *
raw_header(const char *answer, const char *name, char *out, size_t size)
{
	size_t len = strlen(name);

	for (const char *line = strstr(answer, "\r\n"); line != NULL; line = strstr(line + 2, "\r\n")) {
		const char *start = line + 2;
		if (strncmp(start, "\r\n", 2) == 0)
			break;
		if (strncasecmp(start, name, len) == 0 && start[len] == ':') {
			const char *v = start + len + 1;
			size_t vlen;
			while (*v == ' ')
				v++;
			vlen = strcspn(v, "\r");
			snprintf(out, size, "%.*s", (int)vlen, v);
			return out;
		}
	}
	return NULL;
}

struct bad_request {
	const char *name;
	const char *bytes;
	size_t len; /* 0: strlen(bytes) */
	int status;
};

#define BAD(n, b, s) \
	{ \
		n, b, sizeof(b) - 1, s \
	}

static const struct bad_request corpus[] = {
	BAD("no Host", "GET /api/v1/chat HTTP/1.1\r\n\r\n", 400),
	BAD("two Host", "GET /api/v1/chat HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
	BAD("Content-Length +2", "POST /api/v1/chat HTTP/1.1\r\nHost: localhost\r\nContent-Length: +2\r\n\r\n{}", 400),
	BAD("two Content-Length",
	    "POST /api/v1/chat HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}", 400),
	BAD("same Content-Length twice",
	    "POST /api/v1/chat HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n{}", 400),
	BAD("NUL in Content-Length",
	    "POST /api/v1/chat HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\0"
	    "000\r\n\r\n{}",
	    400),
	BAD("Transfer-Encoding xchunked",
	    "POST /api/v1/chat HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: xchunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
	    501),
	BAD("NUL in Authorization",
	    "GET /api/v1/chat HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer a\0b\r\n\r\n", 400),
	BAD("CL.TE",
	    "POST /api/v1/chat HTTP/1.1\r\nHost: localhost\r\nContent-Length: 4\r\nTransfer-Encoding: "
	    "chunked\r\n\r\n0\r\n\r\n",
	    400),
	BAD("TE.CL",
	    "POST /api/v1/chat HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\nContent-Length: "
	    "4\r\n\r\n0\r\n\r\n",
	    400),
	BAD("TE.TE",
	    "POST /api/v1/chat HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: "
	    "identity\r\n\r\n0\r\n\r\n",
	    501),
	BAD("gzip, chunked",
	    "POST /api/v1/chat HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501),
	BAD("whitespace before the colon", "GET /api/v1/chat HTTP/1.1\r\nHost: localhost\r\nFoo : bar\r\n\r\n", 400),
	BAD("bare LF", "GET /api/v1/chat HTTP/1.1\nHost: localhost\n\n", 400),
	BAD("obs-fold", "GET /api/v1/chat HTTP/1.1\r\nHost: localhost\r\nFoo: a\r\n b\r\n\r\n", 400),
	BAD("oversized chunk size",
	    "POST /api/v1/chat HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nTransfer-Encoding: "
	    "chunked\r\n\r\n"
	    "FFFFFFFFFFFFFFFFFF\r\n",
	    400),
	BAD("chunk over max_body_bytes",
	    "POST /api/v1/chat HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nTransfer-Encoding: "
	    "chunked\r\n\r\n"
	    "FFFFFF\r\n",
	    413),
	BAD("invalid chunk extension",
	    "POST /api/v1/chat HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: "
	    "chunked\r\n\r\n2;a=\"\x01\"\r\n{}\r\n0\r\n\r\n",
	    400),
	BAD("HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505),
	BAD("HTTP/1.2", "GET /api/v1/chat HTTP/1.2\r\nHost: localhost\r\n\r\n", 505),
	BAD("CONNECT", "CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n", 405),
	BAD("authority-form", "GET x:80 HTTP/1.1\r\nHost: localhost\r\n\r\n", 400),
	BAD("asterisk-form", "OPTIONS * HTTP/1.1\r\nHost: localhost\r\n\r\n", 400),
	BAD("unknown method", "FOO /api/v1/chat HTTP/1.1\r\nHost: localhost\r\n\r\n", 501),
	BAD("a method never served", "PROPFIND /api/v1/chat HTTP/1.1\r\nHost: localhost\r\n\r\n", 501),
	BAD("fragment", "GET /api/v1/chat#top HTTP/1.1\r\nHost: localhost\r\n\r\n", 400),
	BAD("Content-Length over max_body_bytes",
	    "POST /api/v1/chat HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: "
	    "2000000\r\n\r\n",
	    413),
	BAD("an expectation other than 100-continue",
	    "POST /api/v1/chat HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\nExpect: magic\r\n\r\n{}", 417),
	BAD("TLS on the plain port", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 hello\r\n\r\n", 501),
};

/* Sends one malformed request and checks the refusal: the status, a JSON
 * detail, the connection closed after it, and its access line. */
static void
expect_refusal(const char *name, const char *bytes, size_t len, int status)
{
	static char answer[16384];
	char want[32], id[80], needle[160];
	const char *body;
	bool closed = exchange_once(bytes, len, answer, sizeof(answer), 5000);
	json_t *doc;

	snprintf(want, sizeof(want), "HTTP/1.1 %d ", status);
	if (strncmp(answer, want, strlen(want)) != 0)
		fail_msg("%s: expected %d, got: %.80s", name, status, answer);
	if (!closed)
		fail_msg("%s: the connection stayed open after the refusal", name);
	body = strstr(answer, "\r\n\r\n");
	assert_non_null(body);
	doc = json_loads(body + 4, 0, NULL);
	if (!json_is_string(json_object_get(doc, "detail")))
		fail_msg("%s: the body is no JSON detail: %s", name, body + 4);
	json_decref(doc);
	assert_non_null(raw_header(answer, "Content-Type", id, sizeof(id)));
	assert_string_equal(id, "application/json");
	if (status != 408)
		assert_non_null(raw_header(answer, "x-should-retry", id, sizeof(id)));
	assert_non_null(raw_header(answer, "X-Request-Id", id, sizeof(id)));
	/* One access line, with this status, found by the request id. */
	snprintf(needle, sizeof(needle), "status=%d bytes=", status);
	{
		char line[1024], by_id[120];
		snprintf(by_id, sizeof(by_id), "request_id=%s\n", id);
		harness_wait_file(daemon_proc.log_path, 0, by_id);
		assert_non_null(harness_file_line_since(daemon_proc.log_path, 0, by_id, line, sizeof(line)));
		if (strstr(line, needle) == NULL)
			fail_msg("%s: the access line does not say %d: %s", name, status, line);
	}
}

static void
test_malformed_requests_are_refused_and_never_reach_upstream(void **state)
{
	long before = fake_count(&fake, "api_requests");
	char big_head[6000], long_target[1500];
	int n;

	(void)state;
	for (size_t i = 0; i < sizeof(corpus) / sizeof(corpus[0]); i++)
		expect_refusal(corpus[i].name, corpus[i].bytes, corpus[i].len, corpus[i].status);

	/* A head over max_header_bytes (4096): 431, never a 400. */
	n = snprintf(
	    big_head, sizeof(big_head), "GET /api/v1/chat HTTP/1.1\r\nHost: localhost\r\nX-Big: %05000d\r\n\r\n", 0);
	expect_refusal("head over the limit", big_head, (size_t)n, 431);
	/* A target over max_target_bytes (1024): 414. */
	n = snprintf(
	    long_target, sizeof(long_target), "GET /api/v1/chat?q=%01100d HTTP/1.1\r\nHost: localhost\r\n\r\n", 0);
	expect_refusal("target over the limit", long_target, (size_t)n, 414);

	assert_int_equal(fake_count(&fake, "api_requests"), before);
}

/* Upgrade and HTTP2-Settings are hop-by-hop: never passed upstream, and the
 * connection never switches protocols (h2c smuggling). */
static void
test_h2c_upgrade_is_not_forwarded(void **state)
{
	const char *req = "POST /api/v1/chat HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
	                  "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n"
	                  "Content-Length: 2\r\n\r\n{}";
	char answer[8192];
	json_t *stats, *headers;

	(void)state;
	exchange_once(req, strlen(req), answer, sizeof(answer), 5000);
	assert_true(strncmp(answer, "HTTP/1.1 200 ", 13) == 0);
	assert_null(strstr(answer, "101 Switching"));
	stats = fake_stats(&fake);
	headers = json_object_get(json_object_get(stats, "last"), "headers");
	assert_null(json_object_get(headers, "upgrade"));
	assert_null(json_object_get(headers, "http2-settings"));
	json_decref(stats);
}

/* An Upgrade request is answered and the connection closes after it: what
 * follows it on the wire is never read as a request. */
static void
test_an_upgrade_request_is_answered_then_closed(void **state)
{
	const char *two =
	    "GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
	    "GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n";
	struct http_response r;

	(void)state;
	assert_int_equal(harness_raw_exchange(daemon_proc.port, two, strlen(two), &r), 0);
	assert_int_equal(r.status, 200);
	assert_non_null(strstr(r.headers, "Connection: close"));
	assert_null(strstr(r.body, "HTTP/1.1"));
	http_response_free(&r);
}

/* Single-user mode serves this machine only: a Host that is not a loopback
 * name (a page whose name rebinds to 127.0.0.1) or an Origin not allowed is
 * a 403, before anything else; upstream hears nothing of it. */
static void
test_a_rebinding_host_or_a_foreign_origin_is_refused(void **state)
{
	static const char *const refused[] = {
		"Host: evil.example",
		"Host: evil.example:8787",
		"Host: 127.0.0.1.evil.example",
		"Host: localhost.evil.example",
		"Host: 10.0.0.1",
		"Host: localhost\r\nOrigin: http://evil.example",
		"Host: 127.0.0.1\r\nOrigin: null",
	};
	static const char *const served[] = { "Host: localhost", "Host: LOCALHOST:8787", "Host: 127.0.0.1:8787",
		"Host: 127.9.9.9", "Host: [::1]:8787" };
	static const char *const paths[] = { "/api/v1/chat", "/healthz", "/metrics" };
	long before = fake_count(&fake, "api_requests");
	char request[512];
	struct http_response r;

	(void)state;
	for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
		for (size_t p = 0; p < sizeof(paths) / sizeof(paths[0]); p++) {
			int len = snprintf(request, sizeof(request),
			    "GET %s HTTP/1.1\r\n%s\r\nConnection: close\r\n\r\n", paths[p], refused[i]);
			assert_int_equal(harness_raw_exchange(daemon_proc.port, request, (size_t)len, &r), 0);
			if (r.status != 403)
				fail_msg("%s with %s: %ld", paths[p], refused[i], r.status);
			assert_non_null(strstr(r.body, "\"detail\""));
			http_response_free(&r);
		}
	}
	for (size_t i = 0; i < sizeof(served) / sizeof(served[0]); i++) {
		int len = snprintf(request, sizeof(request),
		    "GET /api/v1/chat HTTP/1.1\r\n%s\r\nConnection: close\r\n\r\n", served[i]);
		assert_int_equal(harness_raw_exchange(daemon_proc.port, request, (size_t)len, &r), 0);
		if (r.status != 200)
			fail_msg("%s: %ld %s", served[i], r.status, r.body);
		http_response_free(&r);
	}
	assert_int_equal(fake_count(&fake, "api_requests"), before);
}

/* Two requests in one write: both answered, in order, on the same socket,
 * which then stays open for a third. */
static void
test_pipelined_requests_are_answered_in_order_and_kept_alive(void **state)
{
	const char *two =
	    "GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\nGET /nowhere HTTP/1.1\r\nHost: localhost\r\n\r\n";
	const char *third = "GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n";
	char answer[16384];
	const char *first, *second;
	bool closed;
	int fd = harness_connect(daemon_proc.port);

	(void)state;
	assert_true(fd >= 0);
	assert_int_equal(write(fd, two, strlen(two)), (ssize_t)strlen(two));
	/* Both answers, then nothing more: the connection stays open. */
	read_until_close(fd, answer, sizeof(answer), 500, &closed);
	assert_false(closed);
	first = strstr(answer, "HTTP/1.1 200 ");
	second = strstr(answer, "HTTP/1.1 404 ");
	assert_non_null(first);
	assert_non_null(second);
	assert_true(first < second);
	assert_non_null(strstr(first, "\"status\":\"ok\""));
	assert_int_equal(write(fd, third, strlen(third)), (ssize_t)strlen(third));
	read_until_close(fd, answer, sizeof(answer), 500, &closed);
	assert_false(closed);
	assert_true(strncmp(answer, "HTTP/1.1 200 ", 13) == 0);
	close(fd);
}

static void
test_http_1_0_is_answered_and_closed(void **state)
{
	char answer[8192], value[64];

	(void)state;
	assert_true(exchange_once("GET /healthz HTTP/1.0\r\n\r\n", 25, answer, sizeof(answer), 5000));
	assert_true(strncmp(answer, "HTTP/1.0 200 ", 13) == 0);
	assert_non_null(raw_header(answer, "Content-Length", value, sizeof(value)));
}

static void
test_connection_close_is_honoured(void **state)
{
	const char *req = "GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
	char answer[8192], value[64];

	(void)state;
	assert_true(exchange_once(req, strlen(req), answer, sizeof(answer), 5000));
	assert_true(strncmp(answer, "HTTP/1.1 200 ", 13) == 0);
	assert_string_equal(raw_header(answer, "Connection", value, sizeof(value)), "close");
}

/* count clients (1,000 slowloris heads, 200 slow bodies) that send a byte at
 * a time. The deadline counts from the first byte and is never restarted,
 * so every one is cut off within the deadline plus a second, while a normal
 * client is served meanwhile. */
#define TRICKLERS_MAX 1000
static void
trickle(int count, const char *prefix, int status, long deadline_ms)
{
	static int fds[TRICKLERS_MAX];
	static size_t sent[TRICKLERS_MAX];
	static bool done[TRICKLERS_MAX];
	size_t prefix_len = strlen(prefix);
	long start = now_ms();
	int finished = 0;
	struct http_response r;
	char url[256];

	memset(sent, 0, sizeof(sent));
	memset(done, 0, sizeof(done));
	for (int i = 0; i < count; i++) {
		fds[i] = harness_connect(daemon_proc.port);
		assert_true(fds[i] >= 0);
	}
	start = now_ms(); /* the deadline runs from each client's first byte */
	while (finished < count) {
		if (now_ms() - start >= deadline_ms + 1000) /* all cut off in time */
			fail_msg("%d of %d trickling clients still open after %ld ms", count - finished, count,
			    now_ms() - start);
		for (int i = 0; i < count; i++) {
			char buf[4096];
			ssize_t n;
			if (done[i])
				continue;
			n = recv(fds[i], buf, sizeof(buf) - 1, MSG_DONTWAIT);
			if (n > 0) {
				char want[32];
				buf[n] = '\0';
				snprintf(want, sizeof(want), "HTTP/1.1 %d ", status);
				assert_true(strncmp(buf, want, strlen(want)) == 0);
				done[i] = true;
				finished++;
				continue;
			}
			if (n == 0 || (n < 0 && errno != EAGAIN)) {
				done[i] = true;
				finished++;
				continue;
			}
			/* One more byte of the head, or of an endless body. */
			if (send(fds[i], sent[i] < prefix_len ? prefix + sent[i] : "x", 1, MSG_NOSIGNAL) == 1)
				sent[i]++;
		}
		usleep(100000); /* the trickle's pace, not a wait for the daemon */
	}
	/* A normal client is served at once afterwards, and was meanwhile. */
	assert_int_equal(
	    http_call("GET", daemon_url(&daemon_proc, "/healthz", url, sizeof(url)), NULL, NULL, 0, &r), 0);
	assert_int_equal(r.status, 200);
	http_response_free(&r);
	for (int i = 0; i < count; i++)
		close(fds[i]);
}

static void
test_a_head_sent_a_byte_at_a_time_gets_408_in_time(void **state)
{
	(void)state;
	trickle(1000, "GET /api/v1/chat HTTP/1.1\r\nHost: localhost\r\nX-Slow: ", 408, HEADER_TIMEOUT_MS);
}

static void
test_a_body_sent_a_byte_at_a_time_gets_408_in_time(void **state)
{
	(void)state;
	trickle(200,
	    "POST /api/v1/chat HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: "
	    "60000\r\n\r\n",
	    408, HEADER_TIMEOUT_MS + BODY_TIMEOUT_MS);
}

static void
test_an_idle_keep_alive_connection_is_closed(void **state)
{
	const char *req = "GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n";
	char answer[8192];
	bool closed;
	long start;
	int fd = harness_connect(daemon_proc.port);

	(void)state;
	assert_true(fd >= 0);
	assert_int_equal(write(fd, req, strlen(req)), (ssize_t)strlen(req));
	start = now_ms();
	read_until_close(fd, answer, sizeof(answer), KEEPALIVE_TIMEOUT_MS + 3000, &closed);
	close(fd);
	assert_true(strncmp(answer, "HTTP/1.1 200 ", 13) == 0);
	assert_true(closed);
	assert_true(now_ms() - start >= KEEPALIVE_TIMEOUT_MS - 100);
}

static void
test_open_connections_are_counted_exactly(void **state)
{
	struct http_response r;
	char url[256];
	int fds[5];
	double base;
	const char *at;

	(void)state;
	/* This scrape's own connection is counted; five idle ones more. */
	assert_int_equal(
	    http_call("GET", daemon_url(&daemon_proc, "/metrics", url, sizeof(url)), NULL, NULL, 0, &r), 0);
	at = strstr(r.body, "\nllamachatd_connections_open ");
	assert_non_null(at);
	base = atof(at + strlen("\nllamachatd_connections_open "));
	http_response_free(&r);
	for (int i = 0; i < 5; i++)
		fds[i] = harness_connect(daemon_proc.port);
	/* The scrape that follows is served after the five are accepted (one
	 * listener, in order), so the count is exact with no wait. */
	assert_int_equal(
	    http_call("GET", daemon_url(&daemon_proc, "/metrics", url, sizeof(url)), NULL, NULL, 0, &r), 0);
	at = strstr(r.body, "\nllamachatd_connections_open ");
	assert_non_null(at);
	assert_true(atof(at + strlen("\nllamachatd_connections_open ")) == base + 5);
	http_response_free(&r);
	for (int i = 0; i < 5; i++)
		close(fds[i]);
}

static void
test_daemon_stops_cleanly(void **state)
{
	(void)state;
	assert_int_equal(daemon_stop(&daemon_proc), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_malformed_requests_are_refused_and_never_reach_upstream),
		cmocka_unit_test(test_h2c_upgrade_is_not_forwarded),
		cmocka_unit_test(test_an_upgrade_request_is_answered_then_closed),
		cmocka_unit_test(test_a_rebinding_host_or_a_foreign_origin_is_refused),
		cmocka_unit_test(test_pipelined_requests_are_answered_in_order_and_kept_alive),
		cmocka_unit_test(test_http_1_0_is_answered_and_closed),
		cmocka_unit_test(test_connection_close_is_honoured),
		cmocka_unit_test(test_a_head_sent_a_byte_at_a_time_gets_408_in_time),
		cmocka_unit_test(test_a_body_sent_a_byte_at_a_time_gets_408_in_time),
		cmocka_unit_test(test_an_idle_keep_alive_connection_is_closed),
		cmocka_unit_test(test_open_connections_are_counted_exactly),
		cmocka_unit_test(test_daemon_stops_cleanly),
	};
	int failed;

	curl_global_init(CURL_GLOBAL_DEFAULT);
	failed = cmocka_run_group_tests_name("integration: the HTTP/1.1 server", tests, start_all, stop_all);
	curl_global_cleanup();
	return failed;
}
