/* chat_private: what the chat_*.c files share; not for other modules. */
#ifndef LLAMACHATD_CHAT_PRIVATE_H
#define LLAMACHATD_CHAT_PRIVATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>

#include "chat/chat.h"
#include "gate/caller.h"
#include "http/http_headers.h"
#include "http/reply.h"
#include "http/request.h"
#include "gate/idempotency.h"
#include "shared/shared.h"
#include "store/session.h"
#include "store/store.h"

#define CHAT_PATH "/api/v1/chat"

struct chat_call;
struct evbuffer;
struct request;

/* An Idempotency-Key of a call in flight, held so that a second request
 * with it waits (409); embedded in the call or stream that holds it. */
struct chat_key_hold {
	LIST_ENTRY(chat_key_hold) link;
	bool held;
	unsigned char key[IDEMPOTENCY_RECORD_KEY_MAX]; /* client, NUL, key */
	size_t key_len;
	unsigned char fingerprint[IDEMPOTENCY_FINGERPRINT_BYTES];
	char upstream_key[IDEMPOTENCY_UPSTREAM_KEY_LEN + 1]; /* what upstream is sent */
	/* 0 while a call holds it; else kept by the chat alone until then
	 * (unix microseconds), because its record could not be stored. */
	uint64_t kept_until_us;
};

struct chat {
	struct upstream *upstream;
	struct store *store;
	struct relay_engine *relays;
	struct shared *shared; /* NULL: owners are not shared */
	long shared_max_in_flight; /* of shared: republishing leaves room */
	struct chat_republish *republish; /* NULL: none yet (chat_republish.c) */
	struct chat_outbox *outbox; /* NULL: none yet (chat_outbox.c) */
	uint64_t outbox_version; /* the last given, Unix microseconds or more */
	struct chat_follow *follow; /* NULL: not following (chat_follow.c) */
	struct chat_settings settings;
	LIST_HEAD(, chat_call) calls;
	LIST_HEAD(, chat_key_hold) held_keys;
	size_t kept_keys; /* of held_keys, those kept after a failed commit */
	long pending; /* client requests in calls, plus streams */
	struct chat_counters counters;
};

/* A request's optional organization_id and project_id ("" when absent). */
struct chat_scope {
	char organization_id[SESSION_SCOPE_MAX + 1];
	char project_id[SESSION_SCOPE_MAX + 1];
};

/* Reads the scope from a raw query string (empty values mean absent, as the
 * SDKs send them). Returns 0, or -1 with a static reason in *why. */
int chat_read_scope(const char *query, struct chat_scope *scope, const char **why) __attribute__((warn_unused_result));

/* Checks a session id from the path and copies it into id; answers the
 * client with a 400 and returns false when it is unusable. */
bool chat_take_session_id(struct request *req, const char *raw, size_t raw_len, char id[SESSION_ID_MAX + 1]);

/* Reads the stored record of id into buf (cleared first) and decodes it into
 * rec, whose pointers then point into buf. Returns false when there is none
 * or it is damaged. */
bool chat_load_record(struct chat *chat, const char *id, struct evbuffer *buf, struct session_record *rec);

/* What a client's call used, for the store: its ledger entry (client,
 * scope, day) and its daily total (client, day), with the same counters. */
struct chat_usage {
	unsigned char ledger_key[SESSION_LEDGER_KEY_MAX];
	unsigned char daily_key[SESSION_DAILY_KEY_MAX];
	struct store_ledger_delta ledger, daily;
};

/* Fills usage with add (SESSION_LEDGER_FIELD_COUNT counters) for client in
 * scope (organization and project, "" when absent) today, and counts its
 * tokens and sessions against the client's budgets at once. */
void chat_count_usage(struct chat *chat, const char *client, const char *organization_id, const char *project_id,
    const unsigned long long *add, struct chat_usage *usage);

/* A Session summary (upstream's JSON, kept as it is) to store. */
struct chat_summary {
	const char *json;
	size_t len;
	/* Its id and last_updated_at when the caller parsed json already (so
	 * it is parsed once); known_id NULL: parsed here. */
	const char *known_id;
	uint64_t known_updated_us;
	/* For a session just created, new_owner is its creator ("" for none):
	 * it takes fallback's scope and that owner, and no older record is
	 * read. With new_owner NULL a session already stored keeps its scope
	 * and owner, and one not stored takes fallback's scope and no owner. */
	const struct chat_scope *fallback;
	const char *new_owner;
	const struct chat_usage *usage; /* NULL for none */
	const struct store_change *also; /* committed with it; NULL for none */
	/* Applied from another instance's publication: nothing is owed to
	 * the others for it (no outbox entry). */
	bool from_stream;
};

/* Queues summary for the store, its usage and also in the same
 * transaction; cb runs once it is committed. Returns the write (see
 * store_write_forget), or NULL when json is not a Session or nothing could
 * be queued (cb will not run). */
struct store_write *chat_store_summary(struct chat *chat, const struct chat_summary *summary, store_write_cb cb,
    void *arg) __attribute__((warn_unused_result));

/* What a caller may know of a session id. */
enum chat_visibility {
	CHAT_SESSION_OWN, /* stored, and the caller may touch it */
	CHAT_SESSION_HIDDEN, /* someone else's, or unknown to a caller who sees only its own: 404 */
	CHAT_SESSION_UNKNOWN, /* not stored; a see-all caller (or the owner it was granted to) may ask upstream */
};

/* True when caller was granted id by its shared owner record. */
bool chat_caller_granted(const struct caller *caller, const char *id);

/* True when caller may touch rec, the stored record of id: its owner, a
 * see-all client, a client pinned to its project, or, for a record stored
 * without an owner (read through by a see-all client), one its shared
 * owner record granted it to. */
bool chat_caller_may_touch_id(const struct caller *caller, const struct session_record *rec, const char *id);

/* True when a session the caller may not touch here must be asked of its
 * shared owner record: it is not held (held false) or held without an
 * owner (unowned), shared mode is on, and the caller is a named client. */
bool chat_must_ask_owner(const struct chat *chat, const struct caller *caller, bool held, bool unowned);

/* The project whose API key a call about session id goes with, into out:
 * the one the session is stored with; for a session not stored here, the
 * caller's pinned project; else "" (the default key). */
void chat_session_project(struct chat *chat, const struct caller *caller, const char *id, char *out);

/* True when id is stored with an owner other than caller (read in place). */
bool chat_owned_by_another(struct chat *chat, const struct caller *caller, const char *id);

/* True when caller may see and touch a stored session: see_all, its owner,
 * or a client pinned to the project it is stored in. */
bool chat_caller_may_touch(const struct caller *caller, const struct session_record *rec);

/* Looks id up for caller, reading the stored record in place. */
enum chat_visibility chat_visibility_of(struct chat *chat, const struct caller *caller, const char *id);

/* Checks a JSON body's shape; see session_check_create_body(). */
typedef enum session_body_check (*chat_body_check)(const char *body, size_t len, const char **why);

/* Takes a request's JSON body after checking its size (413), content type
 * (415) and shape with check (400 malformed, 422 wrong shape); answers the
 * client and returns false when it will not do. *body points into the
 * request's input buffer. */
bool chat_take_json_body(struct chat *chat, struct request *req, chat_body_check check, const char **body, size_t *len);

/* Fetches id's summary from upstream in the background and stores it; no
 * client waits for it. */
void chat_refresh_summary(struct chat *chat, const char *id);

/* "/api/v1/chat/{id}{suffix}?{query}" with the id escaped, into a new
 * string the caller frees; NULL when out of memory. */
char *chat_upstream_path(const char *id, const char *suffix, const char *query);

/* What an Idempotency-Key asks of a request. */
enum chat_key_result {
	CHAT_KEY_NONE, /* no key: go on */
	CHAT_KEY_NEW, /* a key not seen: go on, and hold it (chat_key_hold) */
	CHAT_KEY_ANSWERED, /* answered: 400 bad key, 409 in flight (or, for a
	                    * turn, used), 422 used for another request, or
	                    * the replay of the stored answer */
};

/* Checks req's Idempotency-Key for caller against the keys in flight and
 * the store, for a request of kind with the (pinned) query and body. For
 * CHAT_KEY_NEW hold has the key and the request's fingerprint, for
 * chat_key_hold(). */
enum chat_key_result chat_key_check(struct chat *chat, struct request *req, const struct caller *caller,
    const char *query, const char *body, size_t body_len, enum idempotency_kind kind, struct chat_key_hold *hold)
    __attribute__((warn_unused_result));

/* Holds the key found (a new copy, which the caller keeps for the call's
 * life and gives back with chat_key_release(), which frees it; NULL is
 * fine there). Returns NULL when out of memory. */
struct chat_key_hold *chat_key_hold(struct chat *chat, const struct chat_key_hold *found)
    __attribute__((warn_unused_result));
void chat_key_release(struct chat_key_hold *hold);

/* The record of a held key could not be committed: the chat keeps holding
 * it (a retry gets 409, never a second call upstream) until the key's TTL
 * runs out, taking it over from the call (at most CHAT_MAX_KEPT_KEYS; past
 * that the key is released, and said so in the log). */
#define CHAT_MAX_KEPT_KEYS 4096
void chat_key_keep(struct chat *chat, struct chat_key_hold *hold);

/* Releases every key the chat keeps (chat_free). */
void chat_key_release_kept(struct chat *chat);

/* A key's record as a store change (in STORE_KEYS, with its index entry);
 * its bytes live in the struct and in encoded, which chat_key_write_done()
 * frees once the change is queued. */
struct chat_key_write {
	struct store_change change;
	unsigned char index_key[IDEMPOTENCY_INDEX_KEY_MAX];
	unsigned char *encoded;
};

/* Fills w with hold's record of an answer (status and body; 0 and none for
 * a turn). Returns 0, or -1 when out of memory. */
int chat_key_write_init(struct chat_key_write *w, const struct chat_key_hold *hold, enum idempotency_kind kind,
    int status, const void *body, size_t body_len) __attribute__((warn_unused_result));
void chat_key_write_done(struct chat_key_write *w);

/* Shared mode: hold's key of a create, for every instance (shared/): a
 * claim before going upstream (then runs exactly once, later), the
 * answer once it is stored, or the claim given back when the call ends
 * with no answer to keep. */
struct shared_op *chat_key_claim_shared(struct chat *chat, const struct chat_key_hold *hold,
    void (*then)(enum shared_claim result, int status, const char *body, size_t len, void *arg), void *arg);
/* The answer: then (may be NULL) runs once Redis took it or could not;
 * false when it cannot be sent at all (then will not run). */
bool chat_key_answer_shared(struct chat *chat, const struct chat_key_hold *hold, int status, const char *body,
    size_t len, void (*then)(enum shared_result result, const struct shared_owner *owner, void *arg), void *arg);
void chat_key_release_shared(struct chat *chat, const struct chat_key_hold *hold);

/* A key's fingerprint as the shared records write it: lower-case hex. */
void chat_fingerprint_hex(const unsigned char *fingerprint, char out[2 * IDEMPOTENCY_FINGERPRINT_BYTES + 1]);

/* chat_republish.c: frees what republishing holds. */
void chat_republish_free(struct chat *chat);

/* chat_outbox.c: a publication owed for a session, as a store change
 * committed with the session's own (chained by its also); its bytes live
 * in the struct. */
struct chat_outbox_entry {
	struct store_change change;
	unsigned char key[1 + SESSION_ID_MAX];
	size_t key_len;
	unsigned char value[8];
	unsigned char index_key[1 + 8 + SESSION_ID_MAX];
};
void chat_outbox_change(struct chat *chat, const char *id, struct chat_outbox_entry *e);
/* Publishes pub at once, for the outbox entry given last (the one
 * chat_outbox_change() just made: its commit may still be on its way),
 * and removes that entry once Redis acknowledged it. then(arg) runs
 * exactly once, later, acknowledged or not (within shared.timeout_ms);
 * false when nothing could be sent (then will not run; the entry waits
 * for the drain). */
bool chat_outbox_publish_now(
    struct chat *chat, const struct shared_publication *pub, void (*then)(void *arg), void *arg);
/* Something was committed to the outbox: drain it soon. */
void chat_outbox_kick(struct chat *chat);
void chat_outbox_free(struct chat *chat);

/* chat_follow.c: stops applying the stream (chat_free). */
void chat_follow_free(struct chat *chat);

/* A chat call (chat.c), which the storing of its answer
 * (chat_store_answer.c) shares. */
enum chat_kind {
	CHAT_CREATE, /* POST /api/v1/chat */
	CHAT_SUMMARY, /* GET .../{id}/summary that missed the store */
	CHAT_HISTORY, /* GET .../{id} */
	CHAT_DELETE, /* DELETE .../{id} */
	CHAT_REFRESH, /* a summary fetched after a stream, with no client */
};

/* Where a call is: waiting for upstream's answer, or for the store to commit
 * what upstream answered. */
enum chat_state { CHAT_FORWARDING, CHAT_STORING };

struct chat_call {
	struct chat *chat;
	LIST_ENTRY(chat_call) link;
	struct request *req; /* NULL for a refresh, or once answered */
	enum chat_kind kind;
	enum chat_state state;
	char session_id[SESSION_ID_MAX + 1]; /* once known */
	struct caller caller;
	struct chat_scope scope;
	struct upstream_call *upstream;
	struct store_write *write;
	/* Upstream's answer, kept until the store has committed what it says. */
	long status;
	struct evbuffer *body;
	struct chat_key_hold *key; /* a create's Idempotency-Key; NULL: none */
	char project[SESSION_SCOPE_MAX + 1]; /* whose API key the call goes with ("": the default) */
	/* What it sent, kept for a retry (retry.h), and the retries made. */
	const char *method;
	char *path;
	void *sent_body;
	size_t sent_len;
	long attempts;
	double first_started; /* monotonic seconds */
	struct event *retry_ev;
	struct request_trace trace; /* trace_id "": none (a background call) */
	char granted_owner[CALLER_NAME_MAX + 1]; /* the session's owner by its shared record; "": none */
	bool claim_shared; /* its Idempotency-Key is claimed in Redis for it */
	/* Shared mode: what Redis must take before the answer goes out (the
	 * owner record, the key's answer), in parallel with the commit. */
	int shared_waits;
	bool published_now; /* its publication went out with the commit */
	bool stored; /* the commit is done: result in stored_result */
	enum store_result stored_result;
	struct http_headers headers; /* the few of upstream's that pass on */
	struct http_header header_slots[8];
	char header_store[1024];
};

/* Answers the client (if it is still there) with an error, and frees call. */
void chat_call_fail(struct chat_call *call, int status, enum reply_retry retry, const char *detail);
/* Sends upstream's answer, as kept in the call, to the client, and frees call. */
void chat_call_reply_upstream(struct chat_call *call);

/* chat_store_answer.c. After a 2xx: what the store must learn from
 * upstream's answer. Hands the call on: to the store, or (an unusable
 * answer, a write that cannot be queued) to its answer, which frees it.
 * The caller must not touch call after this returns. */
void chat_store_answer(struct chat_call *call);
/* A create with a key that upstream refused for good (a final 4xx): the
 * refusal is kept for the key, and answered once it commits. Returns false
 * when there is nothing to keep (the caller answers). */
bool chat_store_final_refusal(struct chat_call *call);

#endif
