/* http_tls: TLS for the HTTP server's own listeners, with OpenSSL. One
 * struct http_tls is one certificate, key and client CA loaded into an
 * SSL_CTX; a reload makes a new one and hands it to the server, while the
 * connections that began under the old one keep it to their end (OpenSSL
 * counts the SSL_CTX's references). Handshakes and records run on the event
 * loop, non-blocking, inside the connection layer: above it a request over
 * TLS is a request. */
#ifndef LLAMACHATD_HTTP_TLS_H
#define LLAMACHATD_HTTP_TLS_H

#include <stddef.h>

struct http_tls;

struct http_tls_settings {
	const char *cert_file; /* the chain, PEM, leaf first */
	const char *key_file; /* PEM; refused when group or others may read it */
	const char *client_ca_file; /* NULL: no client certificates asked for */
	int min_version; /* 12: TLS 1.2, 13: TLS 1.3 */
};

/* Loads and checks the pair (the key must match the certificate) and the
 * client CA. Returns a new struct the caller frees with http_tls_free(), or
 * NULL with the reason in why. */
struct http_tls *http_tls_create(const struct http_tls_settings *settings, char *why, size_t why_size)
    __attribute__((warn_unused_result));
void http_tls_free(struct http_tls *tls);

/* The certificate's notAfter, in unix seconds. */
long long http_tls_not_after(const struct http_tls *tls);

/* The certificate's serial number in hex, for logs. */
const char *http_tls_serial(const struct http_tls *tls);

/* The SHA-256 of the first certificate in file (PEM), as 64 hex digits
 * into out: the cert_sha256 of a client entry. Returns 0, or -1 with the
 * reason in why. */
int http_tls_cert_sha256_hex(const char *file, char out[65], char *why, size_t why_size)
    __attribute__((warn_unused_result));

#endif
