/* idempotency: the Idempotency-Key rules (draft-ietf-httpapi-idempotency-key-
 * header, and what Stripe does): which keys are valid, the fingerprint of a
 * request, and the record the store keeps of a key's answer.
 *
 * A record lives in the store's STORE_KEYS table under the client's name,
 * a NUL, then the key (a session id never holds a NUL, so the two key
 * spaces cannot meet), with one index entry, 'K' then its creation time,
 * for the janitor to find it when it expires. */
#ifndef LLAMACHATD_IDEMPOTENCY_H
#define LLAMACHATD_IDEMPOTENCY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define IDEMPOTENCY_HEADER "Idempotency-Key"
#define IDEMPOTENCY_KEY_MAX 255
#define IDEMPOTENCY_RECORD_KEY_MAX (64 + 1 + IDEMPOTENCY_KEY_MAX)
#define IDEMPOTENCY_INDEX_KEY_MAX (1 + 8 + IDEMPOTENCY_RECORD_KEY_MAX)
#define IDEMPOTENCY_FINGERPRINT_BYTES 32
/* The janitor's sweep of expired keys. */
#define IDEMPOTENCY_SWEEP "idempotency_keys"
#define IDEMPOTENCY_INDEX_PREFIX "K"

/* True for a usable key: 1 to 255 bytes, each printable ASCII (space to
 * '~'). */
bool idempotency_key_is_valid(const char *key);

/* SHA-256 of the request: method, path, query and body, each one's length
 * before it, so that no two requests share a fingerprint by moving bytes
 * from one part to the next. query and body may be NULL (as empty).
 * Returns 0, or -1 when out of memory. */
int idempotency_fingerprint(const char *method, const char *path, const char *query, const void *body, size_t body_len,
    unsigned char out[IDEMPOTENCY_FINGERPRINT_BYTES]) __attribute__((warn_unused_result));

/* Writes the record key of client's key into out
 * (IDEMPOTENCY_RECORD_KEY_MAX bytes); returns its length. */
size_t idempotency_record_key(const char *client, const char *key, unsigned char *out);

/* The key sent upstream for a client's key, as 64 hex digits into out: a
 * SHA-256 of the record key (client, NUL, key) under a label of its own.
 * Never the client's key itself: two clients that send the same key send
 * upstream two keys, so an upstream that dedupes on it can never answer one
 * client with the session it made for another. */
#define IDEMPOTENCY_UPSTREAM_KEY_LEN 64
void idempotency_upstream_key(
    const unsigned char *record_key, size_t record_key_len, char out[IDEMPOTENCY_UPSTREAM_KEY_LEN + 1]);

/* Writes the index key of a record created at created_us into out
 * (IDEMPOTENCY_INDEX_KEY_MAX bytes); returns its length. */
size_t idempotency_index_key(uint64_t created_us, const void *record_key, size_t record_key_len, unsigned char *out);

/* What a record says. Encoded records own nothing: a decoded record's body
 * points into the buffer it was decoded from. */
enum idempotency_kind {
	IDEMPOTENCY_CREATE = 1, /* a create's answer, to replay */
	IDEMPOTENCY_TURN = 2, /* a key used by a stream: never replayed */
};

struct idempotency_record {
	enum idempotency_kind kind;
	unsigned char fingerprint[IDEMPOTENCY_FINGERPRINT_BYTES];
	uint64_t created_us;
	int status; /* of the answer; 0 for a turn */
	const char *body; /* the answer's body, byte for byte */
	size_t body_len;
};

size_t idempotency_record_encoded_size(const struct idempotency_record *rec);
void idempotency_record_encode(const struct idempotency_record *rec, unsigned char *out);
/* Returns 0, or -1 when buf is not a well-formed record. */
int idempotency_record_decode(const unsigned char *buf, size_t len, struct idempotency_record *rec)
    __attribute__((warn_unused_result));

/* True when a record created at created_us has expired at now_us. */
bool idempotency_expired(uint64_t created_us, uint64_t now_us, long ttl_s);

/* Whether upstream's answer to a create may be kept for replay: a 2xx, or
 * a 4xx that says it is final (any but 408, 409, 425 and 429, unless
 * upstream said x-should-retry: true). x_should_retry may be NULL. */
bool idempotency_answer_is_final(long status, const char *x_should_retry);

/* The janitor's view (arg points at ttl_s, a long): a record's index key
 * holds its creation time. */
bool idempotency_sweep_expired(
    const void *key, size_t key_len, const void *index_key, size_t index_key_len, uint64_t now_us, void *arg);

#endif
