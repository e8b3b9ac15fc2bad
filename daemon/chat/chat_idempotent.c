/* chat_idempotent: Idempotency-Key on creates and streams.
 *
 * A key in flight is held in memory (the chat's list of held keys) until
 * its call ends; a key whose create upstream answered for good is in the
 * store, written in the same commit as the session, and replayed from there
 * byte for byte. A stream's key is recorded when the stream starts, so that
 * it is never used again: a turn cannot be replayed. */
#include <event2/buffer.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat/chat_private.h"
#include "base/clock.h"
#include "http/http_headers.h"
#include "base/log.h"
#include "http/reply.h"
#include "http/request.h"
#include "store/store.h"

static struct chat_key_hold *
chat_key_find_held(struct chat *chat, const unsigned char *key, size_t len)
{
	struct chat_key_hold *h;

	LIST_FOREACH(h, &chat->held_keys, link)
	{
		if (h->key_len != len || memcmp(h->key, key, len) != 0)
			continue;
		if (h->kept_until_us != 0 && h->kept_until_us <= clock_unix_us()) {
			/* Kept after a failed commit, and its TTL has run out. */
			chat->kept_keys--;
			chat_key_release(h);
			return NULL;
		}
		return h;
	}
	return NULL;
}

void
chat_key_keep(struct chat *chat, struct chat_key_hold *hold)
{
	struct chat_key_hold *h, *next;
	uint64_t now = clock_unix_us();

	/* Make room first from those whose time is up. */
	for (h = LIST_FIRST(&chat->held_keys); h != NULL && chat->kept_keys >= CHAT_MAX_KEPT_KEYS; h = next) {
		next = LIST_NEXT(h, link);
		if (h->kept_until_us != 0 && h->kept_until_us <= now) {
			chat->kept_keys--;
			chat_key_release(h);
		}
	}
	if (chat->kept_keys >= CHAT_MAX_KEPT_KEYS) {
		log_warnx("chat: %d Idempotency-Keys are held after failed commits already; releasing this one, "
		          "so a retry with it goes upstream again",
		    CHAT_MAX_KEPT_KEYS);
		chat_key_release(hold);
		return;
	}
	hold->kept_until_us = now + (uint64_t)*chat->settings.idempotency_ttl_s * 1000000u;
	chat->kept_keys++;
	log_warnx("chat: an Idempotency-Key's record could not be stored; the key stays held in memory for "
	          "idempotency.ttl_s, and a retry with it gets 409");
}

void
chat_key_release_kept(struct chat *chat)
{
	struct chat_key_hold *h, *next;

	for (h = LIST_FIRST(&chat->held_keys); h != NULL; h = next) {
		next = LIST_NEXT(h, link);
		if (h->kept_until_us != 0) {
			chat->kept_keys--;
			chat_key_release(h);
		}
	}
}

/* Answers a key that is busy or used: 409. */
static void
chat_key_reply_conflict(struct request *req, const char *retry_after, const char *detail)
{
	if (retry_after != NULL)
		request_add_header(req, "Retry-After", retry_after);
	reply_error(req, 409, retry_after != NULL ? REPLY_RETRY_MAY_HELP : REPLY_RETRY_WONT_HELP, detail);
}

/* A stored record of hold's key, not expired, into rec (pointing into buf).
 * Returns 1 when there is one, 0 when not, -1 when the store failed. */
static int
chat_key_load(struct chat *chat, const struct chat_key_hold *hold, struct evbuffer *buf, struct idempotency_record *rec)
{
	enum store_result found = store_get_in(chat->store, STORE_KEYS, hold->key, hold->key_len, buf);
	const unsigned char *data;

	if (found == STORE_NOT_FOUND)
		return 0;
	if (found != STORE_OK)
		return -1;
	data = evbuffer_pullup(buf, -1);
	if (idempotency_record_decode(data, evbuffer_get_length(buf), rec) != 0) {
		log_warnx("chat: a stored Idempotency-Key record is damaged; it is taken as absent");
		return 0;
	}
	/* An expired record the janitor has not removed yet is gone already. */
	return idempotency_expired(rec->created_us, clock_unix_us(), *chat->settings.idempotency_ttl_s) ? 0 : 1;
}

enum chat_key_result
chat_key_check(struct chat *chat, struct request *req, const struct caller *caller, const char *query, const char *body,
    size_t body_len, enum idempotency_kind kind, struct chat_key_hold *hold)
{
	const char *key = request_header(req, IDEMPOTENCY_HEADER);
	struct idempotency_record rec;
	struct evbuffer *buf;
	int found;

	memset(hold, 0, sizeof(*hold));
	if (key == NULL)
		return CHAT_KEY_NONE;
	if (!idempotency_key_is_valid(key)) {
		reply_error(
		    req, 400, REPLY_RETRY_WONT_HELP, "Idempotency-Key must be 1 to 255 printable ASCII characters");
		return CHAT_KEY_ANSWERED;
	}
	if (http_headers_count(&req->headers, IDEMPOTENCY_HEADER) > 1) {
		reply_error(req, 400, REPLY_RETRY_WONT_HELP, "send one Idempotency-Key, not several");
		return CHAT_KEY_ANSWERED;
	}
	hold->key_len = idempotency_record_key(caller->name, key, hold->key);
	idempotency_upstream_key(hold->key, hold->key_len, hold->upstream_key);
	if (idempotency_fingerprint(
	        request_method_name(req->method), req->path, query, body, body_len, hold->fingerprint) != 0) {
		reply_error(req, 503, REPLY_RETRY_MAY_HELP, "llamachatd is out of memory");
		return CHAT_KEY_ANSWERED;
	}
	if (chat_key_find_held(chat, hold->key, hold->key_len) != NULL) {
		/* In flight, or kept after its record failed to commit: either
		 * way upstream may have acted on it already. */
		chat_key_reply_conflict(req, "1",
		    kind == IDEMPOTENCY_TURN ? "a turn with this Idempotency-Key is running; a turn cannot be replayed"
		                             : "a request with this Idempotency-Key is still in flight; retry shortly");
		return CHAT_KEY_ANSWERED;
	}
	if ((buf = evbuffer_new()) == NULL) {
		reply_error(req, 503, REPLY_RETRY_MAY_HELP, "llamachatd is out of memory");
		return CHAT_KEY_ANSWERED;
	}
	if ((found = chat_key_load(chat, hold, buf, &rec)) < 0) {
		evbuffer_free(buf);
		reply_error(req, 503, REPLY_RETRY_MAY_HELP, "llamachatd cannot read its store; try again shortly");
		return CHAT_KEY_ANSWERED;
	}
	if (found == 0) {
		evbuffer_free(buf);
		return CHAT_KEY_NEW;
	}
	if (kind == IDEMPOTENCY_TURN)
		chat_key_reply_conflict(req, NULL, "this Idempotency-Key was used already; a turn cannot be replayed");
	else if (rec.kind != IDEMPOTENCY_CREATE ||
	    memcmp(rec.fingerprint, hold->fingerprint, IDEMPOTENCY_FINGERPRINT_BYTES) != 0)
		reply_error(req, 422, REPLY_RETRY_WONT_HELP,
		    "this Idempotency-Key was used for a different request; use a new key");
	else {
		request_add_header(req, "Content-Type", "application/json");
		request_add_header(req, "Idempotent-Replayed", "true");
		req->access.cache = "REPLAY";
		request_reply(req, rec.status, rec.body, rec.body_len);
	}
	evbuffer_free(buf);
	return CHAT_KEY_ANSWERED;
}

struct chat_key_hold *
chat_key_hold(struct chat *chat, const struct chat_key_hold *found)
{
	struct chat_key_hold *hold = malloc(sizeof(*hold));

	if (hold == NULL)
		return NULL;
	*hold = *found;
	LIST_INSERT_HEAD(&chat->held_keys, hold, link);
	hold->held = true;
	return hold;
}

void
chat_key_release(struct chat_key_hold *hold)
{
	if (hold == NULL)
		return;
	if (hold->held)
		LIST_REMOVE(hold, link);
	free(hold);
}

int
chat_key_write_init(struct chat_key_write *w, const struct chat_key_hold *hold, enum idempotency_kind kind, int status,
    const void *body, size_t body_len)
{
	struct idempotency_record rec = {
		.kind = kind,
		.created_us = clock_unix_us(),
		.status = status,
		.body = body,
		.body_len = body_len,
	};

	memcpy(rec.fingerprint, hold->fingerprint, IDEMPOTENCY_FINGERPRINT_BYTES);
	memset(w, 0, sizeof(*w));
	if ((w->encoded = malloc(idempotency_record_encoded_size(&rec))) == NULL)
		return -1;
	idempotency_record_encode(&rec, w->encoded);
	w->change.table = STORE_KEYS;
	w->change.key.data = hold->key;
	w->change.key.len = hold->key_len;
	w->change.value.data = w->encoded;
	w->change.value.len = idempotency_record_encoded_size(&rec);
	w->change.index_keys[0].data = w->index_key;
	w->change.index_keys[0].len = idempotency_index_key(rec.created_us, hold->key, hold->key_len, w->index_key);
	w->change.index_count = 1;
	return 0;
}

void
chat_key_write_done(struct chat_key_write *w)
{
	free(w->encoded);
	w->encoded = NULL;
}

/* The client a hold's key belongs to (its record key is client, NUL,
 * key) and the fingerprint in hex. */
static const char *
chat_key_shared_names(const struct chat_key_hold *hold, char fingerprint[2 * IDEMPOTENCY_FINGERPRINT_BYTES + 1])
{
	chat_fingerprint_hex(hold->fingerprint, fingerprint);
	return (const char *)hold->key;
}

void
chat_fingerprint_hex(const unsigned char *fingerprint, char out[2 * IDEMPOTENCY_FINGERPRINT_BYTES + 1])
{
	static const char hex[] = "0123456789abcdef";

	for (size_t i = 0; i < IDEMPOTENCY_FINGERPRINT_BYTES; i++) {
		out[2 * i] = hex[fingerprint[i] >> 4];
		out[2 * i + 1] = hex[fingerprint[i] & 0xf];
	}
	out[2 * IDEMPOTENCY_FINGERPRINT_BYTES] = '\0';
}

struct shared_op *
chat_key_claim_shared(struct chat *chat, const struct chat_key_hold *hold,
    void (*then)(enum shared_claim result, int status, const char *body, size_t len, void *arg), void *arg)
{
	char fingerprint[2 * IDEMPOTENCY_FINGERPRINT_BYTES + 1];
	const char *client = chat_key_shared_names(hold, fingerprint);
	/* Held as long as the call may run: every attempt, and a margin. */
	long lease_ms = chat->settings.request_timeout_ms * (chat->settings.retries + 1) + 10000;

	return shared_claim_key(chat->shared, client, hold->upstream_key, fingerprint, lease_ms, then, arg);
}

bool
chat_key_answer_shared(struct chat *chat, const struct chat_key_hold *hold, int status, const char *body, size_t len,
    void (*then)(enum shared_result result, const struct shared_owner *owner, void *arg), void *arg)
{
	char fingerprint[2 * IDEMPOTENCY_FINGERPRINT_BYTES + 1];
	const char *client = chat_key_shared_names(hold, fingerprint);

	return shared_answer_key(chat->shared, client, hold->upstream_key, fingerprint, status, body, len,
	           *chat->settings.idempotency_ttl_s * 1000, then, arg) != NULL;
}

void
chat_key_release_shared(struct chat *chat, const struct chat_key_hold *hold)
{
	char fingerprint[2 * IDEMPOTENCY_FINGERPRINT_BYTES + 1];

	shared_release_key(chat->shared, chat_key_shared_names(hold, fingerprint), hold->upstream_key);
}
