/* Integration: TLS on the daemon's own listeners. The test makes a CA, a
 * server certificate and client certificates with `openssl`, then talks to
 * the daemon with libcurl and with OpenSSL directly: calls and a stream,
 * pipelining, old versions refused, a trickled handshake cut at its
 * deadline, plain HTTP on the TLS port, resumption, client certificates as
 * identities, and a certificate reloaded under held streams. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <curl/curl.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

static struct fake_upstream fake;
static struct daemon_process gw;
static char *dir;
static int tls_port;

#define ALICE_TOKEN "tok-alice-tls-77aa"
#define BOTH_TOKEN "tok-both-tls-1c9d"
#define ALICE "Authorization: Bearer " ALICE_TOKEN
#define LEAD "Authorization: Bearer tok-lead-tls-5b20"
#define HANDSHAKE_MS 1000

/* Runs a shell line in the test's directory; fails the test when it fails. */
static void sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void
sh(const char *fmt, ...)
{
	char line[4096], *out = NULL;
	char *argv[] = { "/bin/sh", "-c", line, NULL };
	va_list ap;
	int n = snprintf(line, sizeof(line), "cd '%s' && ", dir);

	va_start(ap, fmt);
	vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
	va_end(ap);
	if (run_command(argv, NULL, NULL, &out) != 0)
		fail_msg("%s\n%s", line, out != NULL ? out : "");
	free(out);
}

/* A key and a certificate signed by the test CA: name.key, name.pem. */
static void
make_cert(const char *name, const char *cn, int serial, int days)
{
	sh("openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout %s.key -out %s.csr "
	   "-subj /CN=%s 2>/dev/null && printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\n' > %s.ext && "
	   "openssl x509 -req -in %s.csr -CA ca.pem -CAkey ca.key -set_serial %d -days %d -extfile %s.ext "
	   "-out %s.pem 2>/dev/null && chmod 600 %s.key",
	    name, name, cn, name, name, serial, days, name, name, name);
}

/* The cert_sha256 of name.pem, as llamachatd --hash-cert prints it. */
static void
cert_hash(const char *name, char out[65])
{
	char path[512], *output = NULL;
	char *argv[] = { (char *)harness_daemon_bin(), "--hash-cert", path, NULL };
	const char *at;

	snprintf(path, sizeof(path), "%s/%s.pem", dir, name);
	assert_int_equal(run_command(argv, NULL, NULL, &output), 0);
	at = strstr(output, "cert_sha256 = \"");
	assert_non_null(at);
	snprintf(out, 65, "%s", at + strlen("cert_sha256 = \""));
	free(output);
}

/* The suite's config with cert and key; the handshake deadline (header_ms)
 * is short only for the test that trickles one. */
static void
write_config_deadline(const char *cert, const char *key, long header_ms)
{
	char limits[64];

	char alice[65], both[65], lead[65], bob_cert[65], both_cert[65];
	FILE *f;

	harness_token_hex(ALICE_TOKEN, alice);
	harness_token_hex(BOTH_TOKEN, both);
	harness_token_hex("tok-lead-tls-5b20", lead);
	cert_hash("bob", bob_cert);
	cert_hash("both", both_cert);
	snprintf(limits, sizeof(limits), "header_timeout_ms = %ld;", header_ms);
	daemon_write_config(&gw, dir, fake.port, NULL, limits, NULL);
	f = fopen(gw.conf_path, "a");
	fprintf(f,
	    "tls = { listen = [ \"127.0.0.1:0\" ]; cert_file = \"%s/%s.pem\"; key_file = \"%s/%s.key\";\n"
	    "  client_ca_file = \"%s/ca.pem\"; };\n"
	    "clients = (\n"
	    "  { name = \"alice\"; token_sha256 = \"%s\"; },\n"
	    "  { name = \"bob\"; cert_sha256 = \"%s\"; },\n"
	    "  { name = \"both\"; token_sha256 = \"%s\"; cert_sha256 = \"%s\"; },\n"
	    "  { name = \"lead\"; token_sha256 = \"%s\"; see_all = true; metrics = true; }\n);\n",
	    dir, cert, dir, key, dir, alice, bob_cert, both, both_cert, lead);
	fclose(f);
}

static void
write_config(const char *cert, const char *key)
{
	write_config_deadline(cert, key, 30000);
}

/* Writes the config and reloads the daemon with it. */
static void
reload_with_deadline(long header_ms)
{
	long offset = daemon_log_offset(&gw);

	write_config_deadline("server", "server", header_ms);
	kill(gw.pid, SIGHUP);
	daemon_wait_log(&gw, offset, "reloaded");
}

static int
start_all(void **state)
{
	char *log;
	const char *at;

	(void)state;
	dir = harness_make_dir("tls");
	if (dir == NULL || fake_start(&fake, dir) != 0)
		return -1;
	sh("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key -out ca.pem "
	   "-days 30 -subj /CN=llamachatd-test-ca 2>/dev/null");
	make_cert("server", "localhost", 4097, 30);
	make_cert("bob", "bob", 5001, 30);
	make_cert("both", "both", 5002, 30);
	/* A certificate of another CA: never verified here. */
	sh("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout rogue.key "
	   "-out rogue.pem -days 30 -subj /CN=bob 2>/dev/null");
	write_config("server", "server");
	if (daemon_start(&gw, HARNESS_KEY) != 0)
		return -1;
	log = NULL;
	{
		FILE *f = fopen(gw.log_path, "r");
		static char text[65536];
		size_t n = f != NULL ? fread(text, 1, sizeof(text) - 1, f) : 0;
		if (f != NULL)
			fclose(f);
		text[n] = '\0';
		log = text;
	}
	for (at = strstr(log, "listening on 127.0.0.1:"); at != NULL; at = strstr(at + 1, "listening on 127.0.0.1:"))
		if (strncmp(at + strlen("listening on 127.0.0.1:") +
		            strspn(at + strlen("listening on 127.0.0.1:"), "0123456789"),
		        " (TLS)", 6) == 0)
			tls_port = atoi(at + strlen("listening on 127.0.0.1:"));
	return tls_port > 0 ? 0 : -1;
}

static int
stop_all(void **state)
{
	(void)state;
	harness_suite_stop(&dir, &fake, &gw);
	return 0;
}

/* One HTTPS call with curl. cert: a client certificate name (NULL: none).
 * Returns the status; the body into body (may be NULL). */
static long
https_call(
    const char *who, const char *cert, const char *method, const char *path, const char *body, struct harness_body *out)
{
	char url[256], ca[512], cert_file[512], key_file[512];
	struct curl_slist *headers = NULL;
	struct harness_body sink = { .len = 0 };
	CURL *curl = curl_easy_init();
	long status = 0;

	snprintf(url, sizeof(url), "https://localhost:%d%s", tls_port, path);
	snprintf(ca, sizeof(ca), "%s/ca.pem", dir);
	curl_easy_setopt(curl, CURLOPT_URL, url);
	curl_easy_setopt(curl, CURLOPT_CAINFO, ca);
	curl_easy_setopt(curl, CURLOPT_PROXY, "");
	curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, 10000L);
	curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, harness_body_sink);
	curl_easy_setopt(curl, CURLOPT_WRITEDATA, out != NULL ? out : &sink);
	if (cert != NULL) {
		snprintf(cert_file, sizeof(cert_file), "%s/%s.pem", dir, cert);
		snprintf(key_file, sizeof(key_file), "%s/%s.key", dir, cert);
		curl_easy_setopt(curl, CURLOPT_SSLCERT, cert_file);
		curl_easy_setopt(curl, CURLOPT_SSLKEY, key_file);
	}
	if (who != NULL)
		headers = curl_slist_append(headers, who);
	if (body != NULL) {
		headers = curl_slist_append(headers, "Content-Type: application/json");
		curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
	}
	curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
	if (curl_easy_perform(curl) == CURLE_OK)
		curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
	curl_slist_free_all(headers);
	curl_easy_cleanup(curl);
	if (out != NULL)
		out->data[out->len < sizeof(out->data) ? out->len : sizeof(out->data) - 1] = '\0';
	return status;
}

/* A TLS client context trusting the test CA (max_version 0: any). */
static SSL_CTX *
client_ctx(int max_version)
{
	char ca[512];
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

	snprintf(ca, sizeof(ca), "%s/ca.pem", dir);
	assert_int_equal(SSL_CTX_load_verify_locations(ctx, ca, NULL), 1);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	if (max_version != 0) {
		SSL_CTX_set_security_level(ctx, 0);
		SSL_CTX_set_min_proto_version(ctx, TLS1_VERSION);
		SSL_CTX_set_max_proto_version(ctx, max_version);
		SSL_CTX_set_cipher_list(ctx, "DEFAULT:@SECLEVEL=0");
	}
	return ctx;
}

/* Connects and handshakes (blocking); NULL when the handshake fails. */
static SSL *
tls_open(SSL_CTX *ctx, SSL_SESSION *session, int *fd)
{
	SSL *ssl = SSL_new(ctx);
	struct timeval limit = { 10, 0 };

	*fd = harness_connect(tls_port);
	assert_true(*fd >= 0);
	setsockopt(*fd, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof(limit));
	SSL_set_fd(ssl, *fd);
	SSL_set_tlsext_host_name(ssl, "localhost");
	if (session != NULL)
		SSL_set_session(ssl, session);
	if (SSL_connect(ssl) != 1) {
		ERR_clear_error();
		SSL_free(ssl);
		close(*fd);
		return NULL;
	}
	return ssl;
}

/* Reads from ssl until the peer closes; the text into buf. */
static size_t
tls_read_all(SSL *ssl, char *buf, size_t size)
{
	size_t have = 0;
	int n;

	while (have < size - 1 && (n = SSL_read(ssl, buf + have, (int)(size - 1 - have))) > 0)
		have += (size_t)n;
	buf[have] = '\0';
	ERR_clear_error();
	return have;
}

static double
metric(const char *series)
{
	return daemon_metric_as(&gw, LEAD, series);
}

static void
test_calls_and_a_stream_over_tls(void **state)
{
	struct harness_body body = { .len = 0 };
	char path[256], id[64];
	json_t *doc;

	(void)state;
	assert_int_equal(https_call(ALICE, NULL, "POST", "/api/v1/chat", "{}", &body), 200);
	doc = json_loads(body.data, 0, NULL);
	snprintf(id, sizeof(id), "%s", json_string_value(json_object_get(doc, "session_id")));
	json_decref(doc);
	snprintf(path, sizeof(path), "/api/v1/chat/%s/summary", id);
	body.len = 0;
	assert_int_equal(https_call(ALICE, NULL, "GET", path, NULL, &body), 200);
	assert_non_null(strstr(body.data, id));
	body.len = 0;
	assert_int_equal(https_call(ALICE, NULL, "GET", "/api/v1/chat", NULL, &body), 200);
	assert_non_null(strstr(body.data, id));
	snprintf(path, sizeof(path), "/api/v1/chat/%s/messages/stream", id);
	body.len = 0;
	assert_int_equal(
	    https_call(ALICE, NULL, "POST", path, "{\"prompt\":\"over tls\",\"index_ids\":[]}", &body), 200);
	assert_non_null(strstr(body.data, "\"type\":\"stop\""));
	/* The plain listener still serves, beside it. */
	assert_int_equal(daemon_call(&gw, ALICE, "GET", "/api/v1/chat", NULL, NULL), 200);
	assert_true(metric("llamachatd_tls_handshakes_total{result=\"ok\"}") >= 4);
	assert_true(metric("llamachatd_tls_certificate_expiry_timestamp_seconds") > (double)time(NULL));
}

/* Two requests in one TLS record: both answered, in order. */
static void
test_pipelining_and_keep_alive_over_tls(void **state)
{
	static const char two[] =
	    "GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n"
	    "GET /api/v1/chat HTTP/1.1\r\nHost: localhost\r\n" ALICE "\r\nConnection: close\r\n\r\n";
	SSL_CTX *ctx = client_ctx(0);
	char answer[8192];
	const char *second;
	int fd;
	SSL *ssl = tls_open(ctx, NULL, &fd);

	(void)state;
	assert_non_null(ssl);
	assert_int_equal(SSL_write(ssl, two, sizeof(two) - 1), (int)sizeof(two) - 1);
	tls_read_all(ssl, answer, sizeof(answer));
	assert_true(strncmp(answer, "HTTP/1.1 200 ", 13) == 0);
	second = strstr(answer + 1, "HTTP/1.1 200 ");
	assert_non_null(second);
	assert_non_null(strstr(second, "\"items\""));
	SSL_free(ssl);
	close(fd);
	SSL_CTX_free(ctx);
}

static void
test_old_versions_and_plain_http_are_refused(void **state)
{
	SSL_CTX *ctx = client_ctx(TLS1_1_VERSION);
	struct http_response r;
	static const char plain[] = "GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
	int fd;

	(void)state;
	assert_null(tls_open(ctx, NULL, &fd));
	SSL_CTX_free(ctx);
	/* Plain HTTP on the TLS port: a clear plain answer, then the close. */
	{
		int port = gw.port;
		gw.port = tls_port;
		assert_int_equal(harness_raw_exchange(gw.port, plain, sizeof(plain) - 1, &r), 0);
		gw.port = port;
	}
	assert_int_equal(r.status, 400);
	assert_non_null(strstr(r.body, "https://"));
	http_response_free(&r);
}

static bool
timeout_counted(void *arg)
{
	return metric("llamachatd_tls_handshakes_total{result=\"timeout\"}") >= *(double *)arg;
}

/* A handshake sent a byte at a time is cut at limits.header_timeout_ms,
 * however steadily the bytes come. */
static void
test_a_trickled_handshake_is_cut_at_its_deadline(void **state)
{
	double before = metric("llamachatd_tls_handshakes_total{result=\"timeout\"}");
	struct timespec pause = { 0, 100 * 1000 * 1000 };
	/* The start of a ClientHello record. */
	static const unsigned char hello[] = { 0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03 };
	bool closed = false;
	double wait_target;
	int fd;

	(void)state;
	reload_with_deadline(HANDSHAKE_MS);
	fd = harness_connect(tls_port);
	assert_true(fd >= 0);
	/* 3 s of trickle, three times the deadline. */
	for (int i = 0; i < 30 && !closed; i++) {
		if (send(fd, &hello[i % sizeof(hello)], 1, MSG_NOSIGNAL) != 1)
			closed = true;
		nanosleep(&pause, NULL); /* the trickle's own pace, not a wait for the daemon */
	}
	close(fd);
	wait_target = before + 1;
	harness_wait(timeout_counted, &wait_target, HARNESS_WAIT_MS, "the trickled handshake counted as timed out");
	reload_with_deadline(30000);
}

static void
test_a_session_resumes(void **state)
{
	static const char req[] = "GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
	double before = metric("llamachatd_tls_handshakes_total{result=\"resumed\"}");
	SSL_CTX *ctx = client_ctx(0);
	SSL_SESSION *session;
	char answer[4096];
	int fd;
	SSL *ssl;

	(void)state;
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT);
	ssl = tls_open(ctx, NULL, &fd);
	assert_non_null(ssl);
	SSL_write(ssl, req, sizeof(req) - 1);
	tls_read_all(ssl, answer, sizeof(answer)); /* TLS 1.3 tickets come after the handshake */
	session = SSL_get1_session(ssl);
	assert_non_null(session);
	SSL_shutdown(ssl); /* a session not shut down is not resumable */
	SSL_free(ssl);
	close(fd);
	ssl = tls_open(ctx, session, &fd);
	assert_non_null(ssl);
	assert_int_equal(SSL_session_reused(ssl), 1);
	SSL_free(ssl);
	close(fd);
	SSL_SESSION_free(session);
	SSL_CTX_free(ctx);
	assert_true(metric("llamachatd_tls_handshakes_total{result=\"resumed\"}") >= before + 1);
}

static void
test_client_certificates_are_identities(void **state)
{
	struct harness_body body = { .len = 0 };
	long requests = fake_count(&fake, "api_requests");

	(void)state;
	/* bob has a certificate and no token: it alone names him. */
	assert_int_equal(https_call(NULL, "bob", "GET", "/api/v1/chat", NULL, NULL), 200);
	assert_int_equal(https_call(NULL, "bob", "POST", "/api/v1/chat", "{}", NULL), 200);
	/* A certificate of another CA, even with bob's name: 401, said why. */
	assert_int_equal(https_call(NULL, "rogue", "GET", "/api/v1/chat", NULL, &body), 401);
	assert_non_null(strstr(body.data, "certificate could not be verified"));
	/* "both" needs its token and its certificate. */
	assert_int_equal(
	    https_call("Authorization: Bearer " BOTH_TOKEN, "both", "GET", "/api/v1/chat", NULL, NULL), 200);
	assert_int_equal(https_call(NULL, "both", "GET", "/api/v1/chat", NULL, NULL), 401);
	assert_int_equal(https_call("Authorization: Bearer " BOTH_TOKEN, NULL, "GET", "/api/v1/chat", NULL, NULL), 401);
	/* A token of one client on the certificate of another names nobody. */
	assert_int_equal(https_call(ALICE, "bob", "GET", "/api/v1/chat", NULL, NULL), 401);
	assert_int_equal(fake_count(&fake, "api_requests"), requests + 1);
}

/* The serial of the certificate a new handshake gets. */
static long
served_serial(void)
{
	SSL_CTX *ctx = client_ctx(0);
	int fd;
	SSL *ssl = tls_open(ctx, NULL, &fd);
	long serial = -1;

	if (ssl != NULL) {
		X509 *cert = SSL_get1_peer_certificate(ssl);
		serial = ASN1_INTEGER_get(X509_get0_serialNumber(cert));
		X509_free(cert);
		SSL_free(ssl);
		close(fd);
	}
	SSL_CTX_free(ctx);
	return serial;
}

struct stream_crowd {
	CURLM *multi;
	int running;
	long fake_target;
};

static bool
crowd_held(void *arg)
{
	struct stream_crowd *c = arg;

	/* Drive the crowd a while between two looks at the fake. */
	for (int i = 0; i < 20; i++) {
		curl_multi_perform(c->multi, &c->running);
		curl_multi_poll(c->multi, NULL, 0, 10, NULL);
	}
	return fake_count(&fake, "streams_held") >= c->fake_target;
}

/* Streams held over TLS while the certificate is swapped and reloaded:
 * new handshakes get the new one, every held stream runs to its end; a
 * broken new key is refused and the certificate in force stays. */
static void
test_reload_swaps_the_certificate_under_held_streams(void **state)
{
	enum { STREAMS = 200 };
	static struct harness_body bodies[STREAMS];
	CURL *easy[STREAMS];
	struct stream_crowd crowd = { .multi = curl_multi_init() };
	struct curl_slist *headers = NULL;
	char url[256], ca[512], id[64];
	struct harness_body created = { .len = 0 };
	long offset;
	json_t *doc;

	(void)state;
	assert_int_equal(served_serial(), 4097);
	assert_int_equal(https_call(ALICE, NULL, "POST", "/api/v1/chat", "{}", &created), 200);
	doc = json_loads(created.data, 0, NULL);
	snprintf(id, sizeof(id), "%s", json_string_value(json_object_get(doc, "session_id")));
	json_decref(doc);
	snprintf(url, sizeof(url), "https://localhost:%d/api/v1/chat/%s/messages/stream", tls_port, id);
	snprintf(ca, sizeof(ca), "%s/ca.pem", dir);
	headers = curl_slist_append(headers, ALICE);
	headers = curl_slist_append(headers, "Content-Type: application/json");
	crowd.fake_target = fake_count(&fake, "streams_held") + STREAMS;
	assert_int_equal(
	    fake_fault(&fake, "POST", "/api/v1/chat/{id}/messages/stream", "{\"mode\":\"hold\",\"count\":200}"), 0);
	curl_multi_setopt(crowd.multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, 0L);
	for (int i = 0; i < STREAMS; i++) {
		easy[i] = curl_easy_init();
		curl_easy_setopt(easy[i], CURLOPT_URL, url);
		curl_easy_setopt(easy[i], CURLOPT_CAINFO, ca);
		curl_easy_setopt(easy[i], CURLOPT_PROXY, "");
		curl_easy_setopt(easy[i], CURLOPT_HTTPHEADER, headers);
		curl_easy_setopt(easy[i], CURLOPT_POSTFIELDS, "{\"prompt\":\"held\",\"index_ids\":[]}");
		curl_easy_setopt(easy[i], CURLOPT_WRITEFUNCTION, harness_body_sink);
		curl_easy_setopt(easy[i], CURLOPT_WRITEDATA, &bodies[i]);
		curl_easy_setopt(easy[i], CURLOPT_TIMEOUT_MS, 60000L);
		curl_multi_add_handle(crowd.multi, easy[i]);
	}
	harness_wait(crowd_held, &crowd, 120000, "200 streams held over TLS");

	/* A new certificate (new serial) in place of the old; reload. */
	make_cert("server2", "localhost", 8193, 30);
	write_config("server2", "server2");
	offset = daemon_log_offset(&gw);
	kill(gw.pid, SIGHUP);
	daemon_wait_log(&gw, offset, "reloaded");
	assert_int_equal(served_serial(), 8193);

	/* A key that does not match: refused, the new certificate stays. */
	write_config("server2", "bob");
	offset = daemon_log_offset(&gw);
	kill(gw.pid, SIGHUP);
	daemon_wait_log(&gw, offset, "reload refused");
	assert_true(daemon_log_contains(&gw, "does not match the certificate"));
	assert_int_equal(served_serial(), 8193);
	write_config("server2", "server2");

	/* Every held stream, begun under the old certificate, ends whole. */
	assert_int_equal(fake_release(&fake), STREAMS);
	while (crowd.running > 0) {
		curl_multi_perform(crowd.multi, &crowd.running);
		curl_multi_poll(crowd.multi, NULL, 0, 100, NULL);
	}
	for (int i = 0; i < STREAMS; i++) {
		long status = 0;
		curl_easy_getinfo(easy[i], CURLINFO_RESPONSE_CODE, &status);
		assert_int_equal(status, 200);
		if (strstr(bodies[i].data, "\"type\":\"stop\"") == NULL)
			fail_msg("stream %d ended without its stop event: %.*s", i, (int)bodies[i].len, bodies[i].data);
		curl_multi_remove_handle(crowd.multi, easy[i]);
		curl_easy_cleanup(easy[i]);
	}
	curl_multi_cleanup(crowd.multi);
	curl_slist_free_all(headers);
}

/* -t checks the pair and warns before the certificate expires. */
static void
test_check_config_loads_the_pair(void **state)
{
	char *out = NULL;
	char *argv[] = { (char *)harness_daemon_bin(), "-t", "-c", gw.conf_path, NULL };

	(void)state;
	make_cert("soon", "localhost", 9001, 7);
	write_config("soon", "soon");
	assert_int_equal(run_command(argv, NULL, NULL, &out), 0);
	assert_non_null(strstr(out, "expires in"));
	free(out);
	write_config("soon", "server");
	assert_int_equal(run_command(argv, NULL, NULL, &out), 1);
	assert_non_null(strstr(out, "does not match"));
	free(out);
	sh("chmod 640 server.key");
	write_config("server", "server");
	assert_int_equal(run_command(argv, NULL, NULL, &out), 1);
	assert_non_null(strstr(out, "read by group or others"));
	free(out);
	sh("chmod 600 server.key");
	write_config("server2", "server2");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_calls_and_a_stream_over_tls),
		cmocka_unit_test(test_pipelining_and_keep_alive_over_tls),
		cmocka_unit_test(test_old_versions_and_plain_http_are_refused),
		cmocka_unit_test(test_a_trickled_handshake_is_cut_at_its_deadline),
		cmocka_unit_test(test_a_session_resumes),
		cmocka_unit_test(test_client_certificates_are_identities),
		cmocka_unit_test(test_reload_swaps_the_certificate_under_held_streams),
		cmocka_unit_test(test_check_config_loads_the_pair),
	};
	int failed;

	curl_global_init(CURL_GLOBAL_DEFAULT);
	failed = cmocka_run_group_tests_name("integration: TLS listeners", tests, start_all, stop_all);
	curl_global_cleanup();
	return failed;
}
