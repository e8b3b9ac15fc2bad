/* clients: who a request comes from (bearer tokens, checked by their SHA-256
 * in constant time) and how fast each client may go (token buckets). */
#ifndef LLAMACHATD_CLIENTS_H
#define LLAMACHATD_CLIENTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

struct clients;
struct config;
struct config_client;

/* Builds the client table of config, which must outlive it. Rate buckets of
 * clients that previous (may be NULL) also had carry over, so a reload does
 * not refill them. Returns NULL when out of memory; free with clients_free(). */
struct clients *clients_create(const struct config *config, const struct clients *previous)
    __attribute__((warn_unused_result));
void clients_free(struct clients *clients);

/* True when clients are configured (team mode); false in single-user mode. */
bool clients_enabled(const struct clients *clients);

/* The client a request comes from at time now_s (unix seconds), or NULL
 * with the reason in *refusal: the one whose token, valid now, an
 * Authorization header value carries ("Bearer TOKEN"; may be NULL) and
 * whose certificate the connection's verified client certificate is
 * (cert_sha256, the SHA-256 of its DER; NULL: none). A client with both
 * needs both; one with either needs that one. NULL too when more than one
 * client would match. The result points into the config. */
/* Why nobody was found: the token is unknown, or known but outside its
 * validity window. */
enum clients_refusal { CLIENTS_UNKNOWN, CLIENTS_EXPIRED, CLIENTS_NOT_YET_VALID };
const struct config_client *clients_authenticate(const struct clients *clients, const char *authorization,
    const unsigned char *cert_sha256, long long now_s, enum clients_refusal *refusal);

/* Takes one request from the client's bucket at time now_ms (monotonic),
 * the bucket holding 1/share of the client's rate and burst (share daemons
 * serve it together; 0 or 1: this one alone). Returns 0 when it may go on,
 * else the whole seconds to wait. */
long clients_take(struct clients *clients, const struct config_client *client, long long now_ms, long share);

/* SHA-256 of a token, as token_sha256 holds it. */
void clients_hash_token(const char *token, size_t len, unsigned char out[32]);

/* --hash-token of both command-line tools: reads a token (one line) from in
 * and writes its line for the clients list to out, so the token itself never
 * goes into a config. With expires or not_before (RFC 3339 UTC; may be
 * NULL) it prints the entry of a tokens = ( ... ) list instead. Returns the
 * exit status: 0, 1 when there is no token, 2 for a bad date (said on
 * stderr, with prog). */
int clients_print_token_line(FILE *in, FILE *out, const char *prog, const char *expires, const char *not_before);

/* Logs the clients that have a token expiring within 7 days of now_s. */
void clients_warn_expiring(const struct config *config, long long now_s);

/* The latest expiry among client's tokens (unix seconds), 0 when one of
 * them never expires (or it has none). */
long long clients_token_expiry(const struct config_client *client);

#endif
