/* clients: who a request comes from (bearer tokens, checked by their SHA-256
 * in constant time) and how fast each client may go (token buckets). */
#include "gate/clients.h"

#include <math.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/config.h"
#include "base/log.h"

struct bucket {
	double tokens;
	long long last_ms; /* 0: never used */
};

struct clients {
	const struct config *config;
	struct bucket *buckets; /* one per config client, same order */
};

void
clients_hash_token(const char *token, size_t len, unsigned char out[32])
{
	unsigned int out_len = 32;

	EVP_Digest(token, len, out, &out_len, EVP_sha256(), NULL);
}

struct clients *
clients_create(const struct config *config, const struct clients *previous)
{
	struct clients *clients = calloc(1, sizeof(*clients));

	if (clients == NULL)
		return NULL;
	clients->config = config;
	if (config->client_count > 0 &&
	    (clients->buckets = calloc(config->client_count, sizeof(struct bucket))) == NULL) {
		free(clients);
		return NULL;
	}
	for (size_t i = 0; i < config->client_count; i++) {
		clients->buckets[i].tokens = config->clients[i].burst;
		for (size_t j = 0; previous != NULL && j < previous->config->client_count; j++) {
			if (strcmp(previous->config->clients[j].name, config->clients[i].name) == 0) {
				clients->buckets[i] = previous->buckets[j];
				if (clients->buckets[i].tokens > config->clients[i].burst)
					clients->buckets[i].tokens = config->clients[i].burst;
			}
		}
	}
	return clients;
}

void
clients_free(struct clients *clients)
{
	if (clients == NULL)
		return;
	free(clients->buckets);
	free(clients);
}

bool
clients_enabled(const struct clients *clients)
{
	return clients->config->client_count > 0;
}

const struct config_client *
clients_authenticate(const struct clients *clients, const char *authorization, const unsigned char *cert_sha256,
    long long now_s, enum clients_refusal *refusal)
{
	const struct config_client *found = NULL;
	unsigned char hash[32];
	const char *token = NULL;
	size_t matches = 0;
	bool expired = false, early = false;

	*refusal = CLIENTS_UNKNOWN;
	if (authorization != NULL && strncasecmp(authorization, "Bearer ", 7) == 0) {
		token = authorization + 7;
		while (*token == ' ')
			token++;
		if (*token == '\0')
			token = NULL;
	}
	if (token == NULL && cert_sha256 == NULL)
		return NULL;
	if (token != NULL)
		clients_hash_token(token, strlen(token), hash);
	/* Every token of every client is compared, in constant time, whatever
	 * matched. A client is whoever holds all it was given: a token of its
	 * own valid now, its certificate, or both. */
	for (size_t i = 0; i < clients->config->client_count; i++) {
		const struct config_client *c = &clients->config->clients[i];
		bool token_ok = false, cert_ok;
		for (size_t t = 0; t < c->token_count; t++) {
			const struct config_token *k = &c->tokens[t];
			bool same = token != NULL && CRYPTO_memcmp(hash, k->sha256, sizeof(hash)) == 0;
			bool too_early = k->not_before != 0 && now_s < k->not_before;
			bool too_late = k->expires != 0 && now_s >= k->expires;
			token_ok |= same && !too_early && !too_late;
			early |= same && too_early;
			expired |= same && too_late;
		}
		cert_ok = cert_sha256 != NULL && CRYPTO_memcmp(cert_sha256, c->cert_sha256, 32) == 0;
		if ((c->has_token ? token_ok : true) && (c->has_cert ? cert_ok : true) && (token_ok || cert_ok)) {
			found = c;
			matches++;
		}
	}
	explicit_bzero(hash, sizeof(hash));
	if (matches == 0)
		*refusal = expired ? CLIENTS_EXPIRED : early ? CLIENTS_NOT_YET_VALID : CLIENTS_UNKNOWN;
	/* A token of one client on the certificate of another names nobody. */
	return matches == 1 ? found : NULL;
}

long
clients_take(struct clients *clients, const struct config_client *client, long long now_ms, long share)
{
	size_t i = (size_t)(client - clients->config->clients);
	struct bucket *b;
	double rate, burst;

	if (client->rate_per_s <= 0 || i >= clients->config->client_count)
		return 0;
	/* Shared by share instances: each takes its part of the rate and
	 * of the burst (at least one call at once). */
	share = share > 1 ? share : 1;
	rate = client->rate_per_s / (double)share;
	burst = client->burst / (double)share < 1 ? 1 : client->burst / (double)share;
	b = &clients->buckets[i];
	if (b->last_ms != 0 && now_ms > b->last_ms)
		b->tokens += (double)(now_ms - b->last_ms) * rate / 1000.0;
	if (b->tokens > burst)
		b->tokens = burst;
	b->last_ms = now_ms;
	if (b->tokens >= 1) {
		b->tokens -= 1;
		return 0;
	}
	return (long)ceil((1 - b->tokens) / rate);
}

int
clients_print_token_line(FILE *in, FILE *out, const char *prog, const char *expires, const char *not_before)
{
	char line[4096];
	unsigned char hash[32];
	long long when;
	size_t len;

	if ((expires != NULL && config_parse_utc(expires, &when) != 0) ||
	    (not_before != NULL && config_parse_utc(not_before, &when) != 0)) {
		fprintf(stderr, "%s: hash-token: dates are RFC 3339 UTC, e.g. 2027-03-01T00:00:00Z\n", prog);
		return 2;
	}
	if (fgets(line, sizeof(line), in) == NULL || (len = strcspn(line, "\r\n")) == 0) {
		fprintf(stderr, "%s: hash-token: no token on standard input\n", prog);
		return 1;
	}
	clients_hash_token(line, len, hash);
	explicit_bzero(line, sizeof(line));
	/* With dates, the entry for a client's tokens = ( ... ) list. */
	fprintf(out,
	    expires == NULL && not_before == NULL ? "{ name = \"CLIENT-NAME\"; token_sha256 = \"" : "{ sha256 = \"");
	for (size_t i = 0; i < sizeof(hash); i++)
		fprintf(out, "%02x", hash[i]);
	fprintf(out, "\";");
	if (not_before != NULL)
		fprintf(out, " not_before = \"%s\";", not_before);
	if (expires != NULL)
		fprintf(out, " expires = \"%s\";", expires);
	fprintf(out, " }\n");
	return 0;
}

void
clients_warn_expiring(const struct config *config, long long now_s)
{
	for (size_t i = 0; i < config->client_count; i++) {
		const struct config_client *c = &config->clients[i];
		for (size_t t = 0; t < c->token_count; t++) {
			long long left = c->tokens[t].expires - now_s;
			if (c->tokens[t].expires != 0 && left > 0 && left < 7 * 86400)
				log_warnx("client %s has a token that expires in %lld hour(s)", c->name, left / 3600);
		}
	}
}

long long
clients_token_expiry(const struct config_client *client)
{
	long long latest = 0;

	for (size_t t = 0; t < client->token_count; t++) {
		if (client->tokens[t].expires == 0)
			return 0; /* one never expires */
		if (client->tokens[t].expires > latest)
			latest = client->tokens[t].expires;
	}
	return latest;
}
