/* http_tls: TLS for the HTTP server's listeners: the SSL_CTX of one
 * certificate and key, and each connection's non-blocking handshake,
 * reads and writes on the event loop.
 *
 * Client certificates never fail a handshake: the verify callback accepts
 * whatever arrives, and the result is read after the handshake, so that an
 * unknown or unverified certificate is a clear 401 on the request rather
 * than a handshake alert a client reports as a network error. */
#include "http/http_tls.h"

#include <errno.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/log.h"
#include "http/http_private.h"

#define HTTP_TLS_SESSION_CONTEXT "llamachatd"

struct http_tls {
	SSL_CTX *ctx;
	long long not_after;
	char serial[80];
};

/* The last OpenSSL error as text, into why (prefixed with what). */
static void
http_tls_why(char *why, size_t why_size, const char *what)
{
	unsigned long e = ERR_get_error();
	char text[256] = "unknown error";

	if (e != 0)
		ERR_error_string_n(e, text, sizeof(text));
	snprintf(why, why_size, "%s: %s", what, text);
	ERR_clear_error();
}

/* Clients get a certificate chain's verdict after the handshake. */
static int
http_tls_accept_any(int preverified, X509_STORE_CTX *store)
{
	(void)preverified;
	(void)store;
	return 1;
}

/* ALPN: http/1.1 only; a client that offers nothing else goes on without. */
static int
http_tls_alpn(SSL *ssl, const unsigned char **out, unsigned char *out_len, const unsigned char *in, unsigned int in_len,
    void *arg)
{
	static const unsigned char h1[] = "\x08http/1.1";

	(void)ssl;
	(void)arg;
	if (SSL_select_next_proto((unsigned char **)out, out_len, h1, sizeof(h1) - 1, in, in_len) !=
	    OPENSSL_NPN_NEGOTIATED)
		return SSL_TLSEXT_ERR_NOACK;
	return SSL_TLSEXT_ERR_OK;
}

/* A key file others can read is refused, as the API key's is. */
static int
http_tls_check_key_file(const char *path, char *why, size_t why_size)
{
	struct stat st;

	if (stat(path, &st) != 0) {
		snprintf(why, why_size, "tls.key_file %s: %s", path, strerror(errno));
		return -1;
	}
	if ((st.st_mode & 077) != 0) {
		snprintf(why, why_size, "tls.key_file %s can be read by group or others (mode %03o); chmod 600 it",
		    path, (unsigned)(st.st_mode & 0777));
		return -1;
	}
	return 0;
}

static void
http_tls_describe(struct http_tls *tls)
{
	X509 *cert = SSL_CTX_get0_certificate(tls->ctx);
	const ASN1_TIME *end = cert != NULL ? X509_get0_notAfter(cert) : NULL;
	struct tm tm;
	BIGNUM *bn;
	char *hex;

	if (end != NULL && ASN1_TIME_to_tm(end, &tm) == 1)
		tls->not_after = (long long)timegm(&tm);
	bn = cert != NULL ? ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), NULL) : NULL;
	hex = bn != NULL ? BN_bn2hex(bn) : NULL;
	snprintf(tls->serial, sizeof(tls->serial), "%s", hex != NULL ? hex : "?");
	OPENSSL_free(hex);
	BN_free(bn);
}

struct http_tls *
http_tls_create(const struct http_tls_settings *s, char *why, size_t why_size)
{
	struct http_tls *tls = calloc(1, sizeof(*tls));
	SSL_CTX *ctx = NULL;

	if (tls == NULL) {
		snprintf(why, why_size, "tls: out of memory");
		return NULL;
	}
	if (http_tls_check_key_file(s->key_file, why, why_size) != 0)
		goto fail;
	ERR_clear_error();
	if ((ctx = SSL_CTX_new(TLS_server_method())) == NULL) {
		http_tls_why(why, why_size, "tls");
		goto fail;
	}
	SSL_CTX_set_min_proto_version(ctx, s->min_version == 13 ? TLS1_3_VERSION : TLS1_2_VERSION);
	/* Idle connections give their record buffers back (as nginx does). */
	SSL_CTX_set_mode(
	    ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS);
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
	if (SSL_CTX_use_certificate_chain_file(ctx, s->cert_file) != 1) {
		http_tls_why(why, why_size, s->cert_file);
		goto fail;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, s->key_file, SSL_FILETYPE_PEM) != 1) {
		if (ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH) {
			snprintf(why, why_size, "tls.key_file %s does not match the certificate of tls.cert_file %s",
			    s->key_file, s->cert_file);
			ERR_clear_error();
		} else {
			http_tls_why(why, why_size, s->key_file);
		}
		goto fail;
	}
	if (SSL_CTX_check_private_key(ctx) != 1) {
		snprintf(why, why_size, "tls.key_file %s does not match the certificate of tls.cert_file %s",
		    s->key_file, s->cert_file);
		ERR_clear_error();
		goto fail;
	}
	if (s->client_ca_file != NULL) {
		STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(s->client_ca_file);
		if (names == NULL || SSL_CTX_load_verify_locations(ctx, s->client_ca_file, NULL) != 1) {
			sk_X509_NAME_pop_free(names, X509_NAME_free);
			http_tls_why(why, why_size, s->client_ca_file);
			goto fail;
		}
		SSL_CTX_set_client_CA_list(ctx, names);
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, http_tls_accept_any);
	}
	/* Resumption: a session cache for TLS 1.2, tickets for 1.3 (keys
	 * OpenSSL makes per SSL_CTX, so a reload starts new ones). */
	SSL_CTX_set_session_id_context(
	    ctx, (const unsigned char *)HTTP_TLS_SESSION_CONTEXT, sizeof(HTTP_TLS_SESSION_CONTEXT) - 1);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
	SSL_CTX_sess_set_cache_size(ctx, 20480);
	SSL_CTX_set_alpn_select_cb(ctx, http_tls_alpn, NULL);
	tls->ctx = ctx;
	http_tls_describe(tls);
	return tls;
fail:
	SSL_CTX_free(ctx);
	free(tls);
	return NULL;
}

void
http_tls_free(struct http_tls *tls)
{
	if (tls == NULL)
		return;
	SSL_CTX_free(tls->ctx); /* connections that use it hold their own reference */
	free(tls);
}

long long
http_tls_not_after(const struct http_tls *tls)
{
	return tls->not_after;
}

const char *
http_tls_serial(const struct http_tls *tls)
{
	return tls->serial;
}

static void
http_tls_hex(const unsigned char *bytes, size_t len, char *out)
{
	static const char hex[] = "0123456789abcdef";

	for (size_t i = 0; i < len; i++) {
		out[2 * i] = hex[bytes[i] >> 4];
		out[2 * i + 1] = hex[bytes[i] & 15];
	}
	out[2 * len] = '\0';
}

int
http_tls_cert_sha256_hex(const char *file, char out[65], char *why, size_t why_size)
{
	FILE *f = fopen(file, "r");
	X509 *cert = f != NULL ? PEM_read_X509(f, NULL, NULL, NULL) : NULL;
	unsigned char digest[32];
	unsigned int len = sizeof(digest);
	int rc = -1;

	if (f == NULL)
		snprintf(why, why_size, "%s: %s", file, strerror(errno));
	else if (cert == NULL)
		http_tls_why(why, why_size, file);
	else if (X509_digest(cert, EVP_sha256(), digest, &len) != 1)
		http_tls_why(why, why_size, file);
	else {
		http_tls_hex(digest, 32, out);
		rc = 0;
	}
	X509_free(cert);
	if (f != NULL)
		fclose(f);
	return rc;
}

int
http_tls_conn_start(struct http_conn *c, struct http_tls *tls)
{
	if ((c->ssl = SSL_new(tls->ctx)) == NULL || SSL_set_fd(c->ssl, c->fd) != 1) {
		ERR_clear_error();
		return -1;
	}
	SSL_set_accept_state(c->ssl);
	return 0;
}

void
http_tls_conn_shutdown(struct http_conn *c)
{
	if (c->ssl != NULL && c->tls_ready) {
		SSL_shutdown(c->ssl); /* close_notify; no wait for the peer's */
		ERR_clear_error();
	}
}

void
http_tls_conn_free(struct http_conn *c)
{
	SSL_free(c->ssl);
	c->ssl = NULL;
}

/* The handshake is done: count it and read the client's certificate. */
static void
http_tls_handshake_done(struct http_conn *c)
{
	X509 *peer = SSL_get0_peer_certificate(c->ssl);
	unsigned int len = sizeof(c->peer_sha256);

	c->tls_ready = true;
	c->server->tls_results[SSL_session_reused(c->ssl) ? HTTP_TLS_RESUMED : HTTP_TLS_OK]++;
	if (peer != NULL) {
		if (SSL_get_verify_result(c->ssl) == X509_V_OK &&
		    X509_digest(peer, EVP_sha256(), c->peer_sha256, &len) == 1)
			c->peer_verified = true;
		else
			c->peer_unverified = true;
	}
	/* The request being read now is the connection's first. */
	c->req.peer_cert_sha256 = c->peer_verified ? c->peer_sha256 : NULL;
	c->req.peer_cert_unverified = c->peer_unverified;
	/* The handshake's deadline is over; the keep-alive time starts. */
	if (c->timer_kind == HTTP_TIMER_HANDSHAKE)
		http_arm(c, HTTP_TIMER_IDLE, c->server->settings.keepalive_timeout_ms);
}

/* Maps an SSL call's failure to errno; -1. */
static ssize_t
http_tls_failed(struct http_conn *c, int rc)
{
	int err = SSL_get_error(c->ssl, rc);

	switch (err) {
	case SSL_ERROR_WANT_READ:
		errno = EAGAIN;
		return -1;
	case SSL_ERROR_WANT_WRITE:
		c->tls_read_wants_write = true;
		errno = EAGAIN;
		return -1;
	case SSL_ERROR_ZERO_RETURN:
		return 0;
	default:
		break;
	}
	if (!c->tls_ready) {
		c->server->tls_results[HTTP_TLS_FAILED]++;
		/* Plain HTTP on a TLS port: say so in plain HTTP, then close. */
		if (err == SSL_ERROR_SSL && ERR_GET_REASON(ERR_peek_error()) == SSL_R_HTTP_REQUEST) {
			static const char body[] = "{\"detail\":\"this port speaks HTTPS; use https:// to reach it\"}";
			char answer[256];
			int len = snprintf(answer, sizeof(answer),
			    "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nConnection: close\r\n"
			    "Content-Length: %zu\r\n\r\n%s",
			    sizeof(body) - 1, body);
			if (write(c->fd, answer, (size_t)len) < 0)
				log_debug("http: could not tell a plain-HTTP client to use https");
		}
		log_debug("http: a TLS handshake failed");
	}
	ERR_clear_error();
	errno = EPROTO;
	return -1;
}

ssize_t
http_io_read(struct http_conn *c, void *buf, size_t len)
{
	int rc;

	if (c->ssl == NULL)
		return read(c->fd, buf, len);
	c->tls_read_wants_write = false;
	if (!c->tls_ready) {
		if ((rc = SSL_do_handshake(c->ssl)) != 1)
			return http_tls_failed(c, rc);
		http_tls_handshake_done(c);
	}
	if ((rc = SSL_read(c->ssl, buf, (int)(len > 65536 ? 65536 : len))) > 0)
		return rc;
	return http_tls_failed(c, rc);
}

ssize_t
http_io_write(struct http_conn *c, const void *buf, size_t len)
{
	int rc;

	if (c->ssl == NULL)
		return write(c->fd, buf, len);
	if (!c->tls_ready) {
		errno = EAGAIN; /* nothing goes out before the handshake */
		return -1;
	}
	if ((rc = SSL_write(c->ssl, buf, (int)(len > 65536 ? 65536 : len))) > 0)
		return rc;
	switch (SSL_get_error(c->ssl, rc)) {
	case SSL_ERROR_WANT_READ: /* the next readable event lets it go on */
	case SSL_ERROR_WANT_WRITE:
		errno = EAGAIN;
		return -1;
	default:
		return http_tls_failed(c, rc);
	}
}

bool
http_io_pending(const struct http_conn *c)
{
	return c->ssl != NULL && SSL_pending(c->ssl) > 0;
}

void
http_server_set_tls(struct http_server *s, struct http_tls *tls)
{
	http_tls_free(s->tls);
	s->tls = tls;
}

void
http_server_tls_counts(const struct http_server *s, struct http_tls_counts *out)
{
	out->ok = s->tls_results[HTTP_TLS_OK];
	out->resumed = s->tls_results[HTTP_TLS_RESUMED];
	out->failed = s->tls_results[HTTP_TLS_FAILED];
	out->timeout = s->tls_results[HTTP_TLS_TIMEOUT];
}
