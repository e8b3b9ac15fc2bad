/* chat: the chat API handlers: create a session, look one up from the store. */
#ifndef LLAMACHATD_CHAT_H
#define LLAMACHATD_CHAT_H

#include <stddef.h>

struct chat;
struct evhttp_request;
struct store;
struct upstream;

/* Counters a later /metrics reads; plain numbers, only touched on the loop. */
struct chat_counters {
	unsigned long creates;
	unsigned long cache_hits;
	unsigned long cache_misses;
	unsigned long store_failures;
	unsigned long upstream_failures;
};

/* Creates the handlers over upstream and store, which the caller keeps
 * owning and must outlive the result. Free with chat_free(). */
struct chat *chat_create(struct upstream *upstream, struct store *store, long max_body_bytes)
    __attribute__((warn_unused_result));

/* Answers every request still waiting with a 503 and frees the handlers.
 * Writes already queued in the store still commit. */
void chat_free(struct chat *chat);

/* POST /api/v1/chat. query is the raw query string or NULL. */
void chat_handle_create(struct chat *chat, struct evhttp_request *req, const char *query);

/* GET /api/v1/chat/{id}/summary, with id as it stands in the path. */
void chat_handle_summary(
    struct chat *chat, struct evhttp_request *req, const char *id, size_t id_len, const char *query);

/* Number of client requests waiting on upstream or the store. */
long chat_pending(const struct chat *chat);

const struct chat_counters *chat_get_counters(const struct chat *chat);

#endif
