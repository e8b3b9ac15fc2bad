/* idempotency: the Idempotency-Key rules, fingerprints and stored records. */
#include "gate/idempotency.h"

#include <openssl/evp.h>
#include <string.h>
#include <strings.h>

bool
idempotency_key_is_valid(const char *key)
{
	size_t len = 0;

	if (key == NULL)
		return false;
	for (const char *p = key; *p != '\0'; p++, len++)
		if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e || len == IDEMPOTENCY_KEY_MAX)
			return false;
	return len >= 1;
}

static void
idempotency_hash_part(EVP_MD_CTX *ctx, const void *data, size_t len)
{
	unsigned char size[8];

	for (int i = 0; i < 8; i++)
		size[i] = (unsigned char)((uint64_t)len >> (8 * (7 - i)));
	EVP_DigestUpdate(ctx, size, sizeof(size));
	if (len > 0)
		EVP_DigestUpdate(ctx, data, len);
}

int
idempotency_fingerprint(const char *method, const char *path, const char *query, const void *body, size_t body_len,
    unsigned char out[IDEMPOTENCY_FINGERPRINT_BYTES])
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	unsigned out_len = 0;
	int ok;

	if (ctx == NULL || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) {
		EVP_MD_CTX_free(ctx);
		return -1;
	}
	idempotency_hash_part(ctx, method, strlen(method));
	idempotency_hash_part(ctx, path, strlen(path));
	idempotency_hash_part(ctx, query != NULL ? query : "", query != NULL ? strlen(query) : 0);
	idempotency_hash_part(ctx, body, body != NULL ? body_len : 0);
	ok = EVP_DigestFinal_ex(ctx, out, &out_len) == 1 && out_len == IDEMPOTENCY_FINGERPRINT_BYTES;
	EVP_MD_CTX_free(ctx);
	return ok ? 0 : -1;
}

size_t
idempotency_record_key(const char *client, const char *key, unsigned char *out)
{
	size_t client_len = strnlen(client, 64), key_len = strnlen(key, IDEMPOTENCY_KEY_MAX);

	memcpy(out, client, client_len);
	out[client_len] = '\0';
	memcpy(out + client_len + 1, key, key_len);
	return client_len + 1 + key_len;
}

void
idempotency_upstream_key(
    const unsigned char *record_key, size_t record_key_len, char out[IDEMPOTENCY_UPSTREAM_KEY_LEN + 1])
{
	static const char label[] = "llamachatd idempotency key v1";
	static const char hex[] = "0123456789abcdef";
	unsigned char digest[32] = { 0 };
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();

	/* Out of memory: all zeros still never names another client's key
	 * by chance, and upstream at worst dedupes such calls together. */
	if (ctx != NULL && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1) {
		EVP_DigestUpdate(ctx, label, sizeof(label));
		EVP_DigestUpdate(ctx, record_key, record_key_len);
		EVP_DigestFinal_ex(ctx, digest, NULL);
	}
	EVP_MD_CTX_free(ctx);
	for (int i = 0; i < 32; i++) {
		out[2 * i] = hex[digest[i] >> 4];
		out[2 * i + 1] = hex[digest[i] & 15];
	}
	out[IDEMPOTENCY_UPSTREAM_KEY_LEN] = '\0';
}

static void
idempotency_put_u64(unsigned char *out, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		out[i] = (unsigned char)(v >> (8 * (7 - i)));
}

static uint64_t
idempotency_get_u64(const unsigned char *in)
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v = v << 8 | in[i];
	return v;
}

size_t
idempotency_index_key(uint64_t created_us, const void *record_key, size_t record_key_len, unsigned char *out)
{
	/* Oldest first, so that what expires first comes first. */
	out[0] = IDEMPOTENCY_INDEX_PREFIX[0];
	idempotency_put_u64(out + 1, created_us);
	memcpy(out + 9, record_key, record_key_len);
	return 9 + record_key_len;
}

/* The encoding: a version byte, the kind, the status (2 bytes), the
 * creation time (8), the fingerprint (32), then the body to the end. */
#define IDEMPOTENCY_RECORD_VERSION 1
#define IDEMPOTENCY_HEAD_BYTES (1 + 1 + 2 + 8 + IDEMPOTENCY_FINGERPRINT_BYTES)

size_t
idempotency_record_encoded_size(const struct idempotency_record *rec)
{
	return IDEMPOTENCY_HEAD_BYTES + rec->body_len;
}

void
idempotency_record_encode(const struct idempotency_record *rec, unsigned char *out)
{
	out[0] = IDEMPOTENCY_RECORD_VERSION;
	out[1] = (unsigned char)rec->kind;
	out[2] = (unsigned char)(rec->status >> 8);
	out[3] = (unsigned char)rec->status;
	idempotency_put_u64(out + 4, rec->created_us);
	memcpy(out + 12, rec->fingerprint, IDEMPOTENCY_FINGERPRINT_BYTES);
	if (rec->body_len > 0)
		memcpy(out + IDEMPOTENCY_HEAD_BYTES, rec->body, rec->body_len);
}

int
idempotency_record_decode(const unsigned char *buf, size_t len, struct idempotency_record *rec)
{
	if (len < IDEMPOTENCY_HEAD_BYTES || buf[0] != IDEMPOTENCY_RECORD_VERSION ||
	    (buf[1] != IDEMPOTENCY_CREATE && buf[1] != IDEMPOTENCY_TURN))
		return -1;
	rec->kind = (enum idempotency_kind)buf[1];
	rec->status = buf[2] << 8 | buf[3];
	rec->created_us = idempotency_get_u64(buf + 4);
	memcpy(rec->fingerprint, buf + 12, IDEMPOTENCY_FINGERPRINT_BYTES);
	rec->body = (const char *)buf + IDEMPOTENCY_HEAD_BYTES;
	rec->body_len = len - IDEMPOTENCY_HEAD_BYTES;
	if (rec->kind == IDEMPOTENCY_CREATE && (rec->status < 200 || rec->status > 499))
		return -1;
	return 0;
}

bool
idempotency_expired(uint64_t created_us, uint64_t now_us, long ttl_s)
{
	return now_us > created_us && now_us - created_us >= (uint64_t)ttl_s * 1000000u;
}

bool
idempotency_answer_is_final(long status, const char *x_should_retry)
{
	if (status >= 200 && status < 300)
		return true;
	if (status < 400 || status >= 500 || status == 408 || status == 409 || status == 425 || status == 429)
		return false;
	return x_should_retry == NULL || strcasecmp(x_should_retry, "true") != 0;
}

bool
idempotency_sweep_expired(
    const void *key, size_t key_len, const void *index_key, size_t index_key_len, uint64_t now_us, void *arg)
{
	const long *ttl_s = arg;
	const unsigned char *ik = index_key;

	(void)key;
	(void)key_len;
	if (index_key_len < 9 || ik[0] != IDEMPOTENCY_INDEX_PREFIX[0])
		return false;
	return idempotency_expired(idempotency_get_u64(ik + 1), now_us, *ttl_s);
}
