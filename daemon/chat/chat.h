/* chat: the chat API handlers (create, list, lookup, history, delete, stream). */
/* Layer chat (daemon/chat/): the chat API handlers (create, list, lookup,
 * history, delete, stream, idempotent creates), the relay of streamed
 * answers, the event-stream parser and page tokens. May include gate/,
 * upstream/, http/, store/ and base/; never server/ or the top. */
#ifndef LLAMACHATD_CHAT_H
#define LLAMACHATD_CHAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/counters.h"
#include "gate/caller.h"

struct access_entry;
struct budgets;
struct chat;
struct clients;
struct config_client;
struct request;
struct relay_engine;
struct store;
struct upstream;

/* Counters a later /metrics reads; plain numbers, only touched on the loop. */
struct chat_counters {
	unsigned long creates;
	unsigned long cache_hits;
	unsigned long cache_misses;
	unsigned long store_failures;
	unsigned long upstream_failures;
	unsigned long streams;
	unsigned long takeovers_refused; /* creates answered with another client's session */
	unsigned long unmetered_turns; /* turns whose usage could not be charged */
	struct histogram first_event; /* a stream's request to its first event relayed */
	unsigned long long retries[4]; /* by enum retry_reason */
};

struct chat_settings {
	struct budgets *budgets; /* what clients used today; may be NULL */
	long max_body_bytes; /* client request bodies */
	size_t max_event_bytes; /* one event of a relayed stream, for parsing */
	/* How long an Idempotency-Key's answer is kept: the caller's value,
	 * which a reload may change. */
	const long *idempotency_ttl_s;
	/* Retries of failed upstream calls where repeating is safe (retry.h),
	 * and the loop their waits run on. */
	struct event_base *base;
	long retries, retry_base_ms, retry_max_wait_ms, request_timeout_ms;
};

/* Creates the handlers over upstream, store and relays, which the caller
 * keeps owning and which must outlive the result. Free with chat_free(). */
struct chat *chat_create(struct upstream *upstream, struct store *store, struct relay_engine *relays,
    const struct chat_settings *settings) __attribute__((warn_unused_result));

/* Answers every request still waiting with a 503 and frees the handlers.
 * Writes already queued in the store still commit. Free the relay engine
 * first, so that streams end before their handlers go. */
void chat_free(struct chat *chat);

/* What a check of a path that names a session decided. */
enum chat_naming {
	CHAT_NAMING_MAY, /* the request may go on */
	CHAT_NAMING_ANSWERED, /* the client got its 400 or 404 */
	/* Not held here, and in shared mode: its owner record decides
	 * (chat_ask_owner). Nothing answered yet. */
	CHAT_NAMING_ASK_OWNER,
};

/* The handlers. query is the raw query string or NULL; id is the session id
 * as it stands in the path (checked here). A caller who may not see all
 * sessions gets 404 for any session it did not create, without upstream
 * being asked, just as for one that does not exist. */
void chat_handle_create(struct chat *chat, struct request *req, const struct caller *caller, const char *query);
void chat_handle_list(struct chat *chat, struct request *req, const struct caller *caller, const char *query);
/* The summary: answered, unless the session is not held here and, in
 * shared mode, its owner record must decide (CHAT_NAMING_ASK_OWNER, with
 * nothing answered: the same as chat_may_name_session()); the hit path
 * reads the store once. */
enum chat_naming chat_handle_summary(struct chat *chat, struct request *req, const struct caller *caller,
    const char *id, size_t id_len, const char *query);
void chat_handle_history(struct chat *chat, struct request *req, const struct caller *caller, const char *id,
    size_t id_len, const char *query);
void chat_handle_delete(struct chat *chat, struct request *req, const struct caller *caller, const char *id,
    size_t id_len, const char *query);
void chat_handle_stream(struct chat *chat, struct request *req, const struct caller *caller, const char *id,
    size_t id_len, const char *query);

/* The check every path that names a session passes before anything else
 * (any method, known endpoint or not): raw_id is the id as it stands in the
 * path. Answers 400 for an unusable id and 404 for a session the caller may
 * not see (the same answer as for one that does not exist). */
enum chat_naming chat_may_name_session(struct chat *chat, struct request *req, const struct caller *caller,
    const char *raw_id, size_t raw_len) __attribute__((warn_unused_result));

/* The 404 a caller gets for a session it may not see (the same as for
 * one that does not exist). */
void chat_reply_not_found(struct request *req);

/* What a session's shared owner record says of a caller. */
enum chat_owner_verdict {
	CHAT_OWNER_GRANTS, /* the caller may touch it (caller.granted): its owner, or pinned to its project */
	CHAT_OWNER_NOT_CALLER, /* another's, or no record: 404 */
	CHAT_OWNER_UNAVAILABLE, /* Redis cannot say now: 503, never a false 404 */
};
/* Asks the owner record of raw_id (a session id chat_may_name_session()
 * took) for caller; then(verdict, owner, arg) runs exactly once, later,
 * with the session's owner when it grants. Returns NULL, without calling
 * then, when out of memory. */
struct shared_op *chat_ask_owner(struct chat *chat, const struct caller *caller, const char *raw_id, size_t raw_len,
    void (*then)(enum chat_owner_verdict verdict, const char *owner, void *arg), void *arg);

/* Shares session owners through shared (NULL: not shared), which takes at
 * most max_in_flight calls at once. Free shared before the chat: its last
 * answers still come to the chat's calls. */
struct shared;
void chat_set_shared(struct chat *chat, struct shared *shared, long max_in_flight);

/* Shared mode: applies what the other instances publish to this store,
 * from the read position the store keeps (chat_follow.c). */
void chat_follow_start(struct chat *chat);
/* Whether the store is catching up with the stream (behind it, or not
 * read from lately), and by how many seconds it may be behind. */
bool chat_follow_state(const struct chat *chat, double *lag_seconds);

/* Shared mode: what the store owes the other instances (chat_outbox.c):
 * publications not yet acknowledged by Redis, and a drain from the oldest
 * (Redis is back). */
long chat_outbox_pending(struct chat *chat);
void chat_outbox_rewind(struct chat *chat);

/* After Redis lost its data: publishes the owner record of every session
 * held with an owner again, then the answers of the unexpired
 * Idempotency-Keys of creates, in short paced steps on base's loop (a pass
 * under way starts over). */
struct event_base;
void chat_republish_owners(struct chat *chat, struct event_base *base);

/* The project whose API key a passed-through call goes with, into out
 * (CHAT_PROJECT_MAX + 1 bytes): for a path under session raw_id (NULL:
 * none), the session's project (see chat_session_project); else the
 * query's project_id (after the pin); "" for the default key. */
#define CHAT_PROJECT_MAX 128
void chat_project_for(
    struct chat *chat, const struct caller *caller, const char *raw_id, size_t raw_len, const char *query, char *out);

/* Client requests waiting on upstream or the store, streams included. */
long chat_pending(const struct chat *chat);

const struct chat_counters *chat_get_counters(const struct chat *chat);

#endif
