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
clients_authenticate(const struct clients *clients, const char *authorization, const unsigned char *cert_sha256)
{
	const struct config_client *found = NULL;
	unsigned char hash[32];
	const char *token = NULL;
	size_t matches = 0;

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
	/* Every client is compared, in constant time, whatever matched. A
	 * client is whoever holds all it was given: its token, its
	 * certificate, or both. */
	for (size_t i = 0; i < clients->config->client_count; i++) {
		const struct config_client *c = &clients->config->clients[i];
		bool token_ok = token != NULL && CRYPTO_memcmp(hash, c->token_sha256, sizeof(hash)) == 0;
		bool cert_ok = cert_sha256 != NULL && CRYPTO_memcmp(cert_sha256, c->cert_sha256, 32) == 0;
		if ((c->has_token ? token_ok : true) && (c->has_cert ? cert_ok : true) && (token_ok || cert_ok)) {
			found = c;
			matches++;
		}
	}
	explicit_bzero(hash, sizeof(hash));
	/* A token of one client on the certificate of another names nobody. */
	return matches == 1 ? found : NULL;
}

long
clients_take(struct clients *clients, const struct config_client *client, long long now_ms)
{
	size_t i = (size_t)(client - clients->config->clients);
	struct bucket *b;

	if (client->rate_per_s <= 0 || i >= clients->config->client_count)
		return 0;
	b = &clients->buckets[i];
	if (b->last_ms != 0 && now_ms > b->last_ms)
		b->tokens += (double)(now_ms - b->last_ms) * client->rate_per_s / 1000.0;
	if (b->tokens > client->burst)
		b->tokens = client->burst;
	b->last_ms = now_ms;
	if (b->tokens >= 1) {
		b->tokens -= 1;
		return 0;
	}
	return (long)ceil((1 - b->tokens) / client->rate_per_s);
}

int
clients_print_token_line(FILE *in, FILE *out, const char *prog)
{
	char line[4096];
	unsigned char hash[32];
	size_t len;

	if (fgets(line, sizeof(line), in) == NULL || (len = strcspn(line, "\r\n")) == 0) {
		fprintf(stderr, "%s: hash-token: no token on standard input\n", prog);
		return 1;
	}
	clients_hash_token(line, len, hash);
	explicit_bzero(line, sizeof(line));
	fprintf(out, "{ name = \"CLIENT-NAME\"; token_sha256 = \"");
	for (size_t i = 0; i < sizeof(hash); i++)
		fprintf(out, "%02x", hash[i]);
	fprintf(out, "\"; }\n");
	return 0;
}
