/* chat: the chat API handlers: create a session, look one up from the store.
 *
 * Each client request is one struct chat_call, owned by the chat module from
 * the handler until its reply is sent (or its client goes away). */
#include "chat.h"

#include <event2/buffer.h>
#include <event2/http.h>
#include <sys/queue.h>
#include <event2/keyvalq_struct.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "log.h"
#include "reply.h"
#include "session.h"
#include "store.h"
#include "upstream.h"

#define CHAT_PATH "/api/v1/chat"
#define NO_KEY_DETAIL \
	"llamachatd has no LlamaCloud API key: set LLAMA_CLOUD_API_KEY in the daemon's " \
	"environment or upstream.api_key_file in its config, then restart it"

enum chat_kind { CHAT_CREATE, CHAT_SUMMARY };

/* Where a request is: waiting for upstream's answer, or for the store to
 * commit what upstream answered. */
enum chat_state { CHAT_FORWARDING, CHAT_STORING };

struct chat_call {
	struct chat *chat;
	LIST_ENTRY(chat_call) link;
	struct evhttp_request *req; /* NULL once the client is gone */
	enum chat_kind kind;
	enum chat_state state;
	char session_id[SESSION_ID_MAX + 1]; /* once known */
	struct upstream_call *upstream;
	struct store_write *write;
	char organization_id[SESSION_SCOPE_MAX + 1];
	char project_id[SESSION_SCOPE_MAX + 1];
	/* Upstream's answer, kept until the store has committed it. */
	long status;
	struct evbuffer *body;
	struct evkeyvalq headers;
};

struct chat {
	struct upstream *upstream;
	struct store *store;
	long max_body_bytes;
	LIST_HEAD(, chat_call) calls;
	long pending;
	struct chat_counters counters;
};

struct chat *
chat_create(struct upstream *upstream, struct store *store, long max_body_bytes)
{
	struct chat *chat = calloc(1, sizeof(*chat));

	if (chat == NULL)
		return NULL;
	chat->upstream = upstream;
	chat->store = store;
	chat->max_body_bytes = max_body_bytes;
	LIST_INIT(&chat->calls);
	return chat;
}

long
chat_pending(const struct chat *chat)
{
	return chat->pending;
}

const struct chat_counters *
chat_get_counters(const struct chat *chat)
{
	return &chat->counters;
}

static void chat_on_client_close(struct evhttp_connection *evcon, void *arg);

static struct chat_call *
chat_call_new(struct chat *chat, struct evhttp_request *req, enum chat_kind kind)
{
	struct chat_call *call = calloc(1, sizeof(*call));

	if (call == NULL || (call->body = evbuffer_new()) == NULL) {
		free(call);
		return NULL;
	}
	call->chat = chat;
	call->req = req;
	call->kind = kind;
	TAILQ_INIT(&call->headers);
	LIST_INSERT_HEAD(&chat->calls, call, link);
	chat->pending++;
	return call;
}

/* Hands the client's request over for answering: evhttp may free it as soon
 * as the answer is sent, so the call forgets it first. NULL when the client
 * is gone. */
static struct evhttp_request *
chat_call_take_request(struct chat_call *call)
{
	struct evhttp_request *req = call->req;

	if (req != NULL) {
		struct evhttp_connection *evcon = evhttp_request_get_connection(req);
		if (evcon != NULL)
			evhttp_connection_set_closecb(evcon, NULL, NULL);
		call->req = NULL;
	}
	return req;
}

/* Releases everything the call holds; its request must be answered (taken)
 * already. */
static void
chat_call_free(struct chat_call *call)
{
	struct chat *chat = call->chat;

	upstream_cancel(call->upstream);
	store_write_forget(call->write);
	evbuffer_free(call->body);
	evhttp_clear_headers(&call->headers);
	LIST_REMOVE(call, link);
	chat->pending--;
	free(call);
}

static void
chat_call_fail(struct chat_call *call, int status, enum reply_retry retry, const char *detail)
{
	struct evhttp_request *req = chat_call_take_request(call);

	if (req != NULL)
		reply_error(req, status, retry, detail);
	chat_call_free(call);
}

/* Sends upstream's answer, as kept in the call, to the client. */
static void
chat_call_reply_upstream(struct chat_call *call, const char *x_cache)
{
	struct evhttp_request *req = chat_call_take_request(call);
	struct evkeyvalq *out;
	struct evkeyval *h;

	if (req != NULL) {
		out = evhttp_request_get_output_headers(req);
		TAILQ_FOREACH(h, &call->headers, next)
			evhttp_add_header(out, h->key, h->value);
		if (x_cache != NULL)
			evhttp_add_header(out, "X-Cache", x_cache);
		evhttp_send_reply(req, (int)call->status, NULL, call->body);
	}
	chat_call_free(call);
}

/* The client hung up while its call waited: stop waiting for it. A queued
 * store write still commits, so what upstream created is not lost. */
static void
chat_on_client_close(struct evhttp_connection *evcon, void *arg)
{
	struct chat_call *call = arg;
	struct evhttp_request *req = call->req;

	(void)evcon;
	log_debug("chat: the client went away before its answer");
	call->req = NULL;
	/* evhttp has detached a request it was not done with; answering it is
	 * how it gets freed. */
	if (req != NULL && evhttp_request_get_connection(req) == NULL)
		evhttp_send_reply(req, 499, "Client Closed Request", NULL);
	chat_call_free(call);
}

/* Takes organization_id and project_id from the query (empty means absent,
 * as the SDKs send them). Returns 0, or -1 with a reason in *why. */
static int
chat_read_scope(struct chat_call *call, const char *query, const char **why)
{
	struct evkeyvalq params;
	const char *value;
	int rc = 0;

	if (query == NULL || query[0] == '\0')
		return 0;
	TAILQ_INIT(&params);
	if (evhttp_parse_query_str(query, &params) != 0) {
		*why = "the query string is malformed";
		return -1;
	}
	if ((value = evhttp_find_header(&params, "organization_id")) != NULL) {
		if (!session_scope_is_safe(value, strlen(value))) {
			*why = "organization_id is not a valid id";
			rc = -1;
		} else {
			snprintf(call->organization_id, sizeof(call->organization_id), "%s", value);
		}
	}
	if ((value = evhttp_find_header(&params, "project_id")) != NULL) {
		if (!session_scope_is_safe(value, strlen(value))) {
			*why = "project_id is not a valid id";
			rc = -1;
		} else {
			snprintf(call->project_id, sizeof(call->project_id), "%s", value);
		}
	}
	evhttp_clear_headers(&params);
	return rc;
}

static uint64_t
chat_now_us(void)
{
	struct timespec now;

	clock_gettime(CLOCK_REALTIME, &now);
	return (uint64_t)now.tv_sec * 1000000u + (uint64_t)now.tv_nsec / 1000u;
}

static void
chat_on_stored(enum store_result result, void *arg)
{
	struct chat_call *call = arg;

	call->write = NULL;
	if (result == STORE_OK)
		log_debug("chat: stored session %s", call->session_id);
	if (result != STORE_OK) {
		/* The session exists upstream: an error here would make the SDK
		 * retry and create a duplicate. A later lookup reads it through. */
		call->chat->counters.store_failures++;
		log_warnx("chat: could not store a session (%s); answering the client anyway",
		    result == STORE_ERR_FULL ? "store full" : "store error");
	}
	chat_call_reply_upstream(call, call->kind == CHAT_SUMMARY ? "MISS" : NULL);
}

/* Queues the Session upstream answered with for the store; the reply goes
 * out once it is committed. Returns -1 if it could not even be queued. */
static int
chat_store_session(struct chat_call *call, const char *id)
{
	struct session_record rec = { 0 };
	unsigned char *encoded;
	size_t size;

	rec.stored_at_us = chat_now_us();
	rec.organization_id = call->organization_id;
	rec.organization_id_len = strlen(call->organization_id);
	rec.project_id = call->project_id;
	rec.project_id_len = strlen(call->project_id);
	rec.json = (const char *)evbuffer_pullup(call->body, -1);
	rec.json_len = evbuffer_get_length(call->body);
	size = session_record_encoded_size(&rec);
	if ((encoded = malloc(size)) == NULL)
		return -1;
	session_record_encode(&rec, encoded);
	call->write = store_put_deferred(call->chat->store, id, strlen(id), encoded, size, chat_on_stored, call);
	free(encoded);
	if (call->write == NULL)
		return -1;
	call->state = CHAT_STORING;
	return 0;
}

/* Maps a failed transfer to 502/504. A create that may have reached upstream
 * is marked not to be retried: the SDK sends no idempotency key, so a retry
 * could make a second session. */
static void
chat_fail_upstream(struct chat_call *call, const struct upstream_response *response)
{
	bool maybe_acted = call->kind == CHAT_CREATE && response->request_sent;
	enum reply_retry retry = maybe_acted ? REPLY_RETRY_WONT_HELP : REPLY_RETRY_MAY_HELP;
	int status = response->error == UPSTREAM_ERR_TIMEOUT ? 504 : 502;
	char detail[512];

	call->chat->counters.upstream_failures++;
	log_warnx("chat: upstream call failed: %s", response->error_text);
	switch (response->error) {
	case UPSTREAM_ERR_CONNECT:
		snprintf(detail, sizeof(detail), "LlamaCloud upstream is unreachable: %s", response->error_text);
		break;
	case UPSTREAM_ERR_TIMEOUT:
		snprintf(detail, sizeof(detail), "LlamaCloud upstream did not answer in time");
		break;
	case UPSTREAM_ERR_TLS:
		retry = REPLY_RETRY_WONT_HELP;
		snprintf(detail, sizeof(detail), "LlamaCloud upstream's TLS certificate could not be verified");
		break;
	default:
		snprintf(detail, sizeof(detail), "LlamaCloud upstream failed: %s", response->error_text);
		break;
	}
	chat_call_fail(call, status, retry, detail);
}

static void
chat_on_upstream_done(const struct upstream_response *response, void *arg)
{
	struct chat_call *call = arg;
	char id[SESSION_ID_MAX + 1];
	const char *why;
	struct evkeyval *h;

	call->upstream = NULL;
	if (response->error != UPSTREAM_OK) {
		chat_fail_upstream(call, response);
		return;
	}
	call->status = response->status;
	evbuffer_add_buffer(call->body, response->body);
	TAILQ_FOREACH(h, response->headers, next)
		evhttp_add_header(&call->headers, h->key, h->value);

	if (call->status < 200 || call->status > 299) {
		chat_call_reply_upstream(call, call->kind == CHAT_SUMMARY ? "MISS" : NULL);
		return;
	}
	if (session_parse_summary(
	        (const char *)evbuffer_pullup(call->body, -1), evbuffer_get_length(call->body), id, &why) != 0) {
		call->chat->counters.upstream_failures++;
		log_warnx("chat: %s", why);
		/* For a create the session may exist upstream: no retry. */
		chat_call_fail(
		    call, 502, call->kind == CHAT_CREATE ? REPLY_RETRY_WONT_HELP : REPLY_RETRY_MAY_HELP, why);
		return;
	}
	if (call->kind == CHAT_CREATE)
		call->chat->counters.creates++;
	memcpy(call->session_id, id, sizeof(call->session_id));
	if (chat_store_session(call, id) != 0)
		chat_on_stored(STORE_ERR, call);
}

/* Starts the upstream call; answers the client itself when it cannot. */
static void
chat_forward(struct chat_call *call, const char *path_and_query, const void *body, size_t body_len)
{
	struct upstream_request request = {
		.method = call->kind == CHAT_CREATE ? "POST" : "GET",
		.path_and_query = path_and_query,
		.client_headers = evhttp_request_get_input_headers(call->req),
		.body = body,
		.body_len = body_len,
	};

	if (!upstream_has_key(call->chat->upstream)) {
		chat_call_fail(call, 503, REPLY_RETRY_WONT_HELP, NO_KEY_DETAIL);
		return;
	}
	call->upstream = upstream_forward(call->chat->upstream, &request, chat_on_upstream_done, call);
	if (call->upstream == NULL) {
		chat_call_fail(call, 503, REPLY_RETRY_MAY_HELP,
		    "llamachatd is at its limit of upstream calls in flight; try again shortly");
		return;
	}
	call->state = CHAT_FORWARDING;
	evhttp_connection_set_closecb(evhttp_request_get_connection(call->req), chat_on_client_close, call);
}

/* True when the Content-Type names JSON (parameters such as charset allowed). */
static bool
chat_is_json_content_type(const char *value)
{
	size_t len;

	if (value == NULL)
		return false;
	len = strcspn(value, "; \t");
	return len == strlen("application/json") && strncasecmp(value, "application/json", len) == 0;
}

void
chat_handle_create(struct chat *chat, struct evhttp_request *req, const char *query)
{
	struct evbuffer *input = evhttp_request_get_input_buffer(req);
	size_t body_len = evbuffer_get_length(input);
	const char *content_type = evhttp_find_header(evhttp_request_get_input_headers(req), "Content-Type");
	const char *body, *why = NULL;
	struct chat_call *call;
	char path[sizeof(CHAT_PATH) + 1 + 8192];

	if (body_len > (size_t)chat->max_body_bytes) {
		reply_errorf(req, 413, REPLY_RETRY_WONT_HELP,
		    "the request body is larger than limits.max_body_bytes (%ld bytes)", chat->max_body_bytes);
		return;
	}
	if (body_len > 0 && !chat_is_json_content_type(content_type)) {
		reply_error(
		    req, 415, REPLY_RETRY_WONT_HELP, "the request body must be sent as Content-Type: application/json");
		return;
	}
	body = (const char *)evbuffer_pullup(input, -1);
	switch (session_check_create_body(body, body_len, &why)) {
	case SESSION_BODY_OK:
		break;
	case SESSION_BODY_MALFORMED:
		reply_error(req, 400, REPLY_RETRY_WONT_HELP, why);
		return;
	case SESSION_BODY_INVALID:
		reply_error(req, 422, REPLY_RETRY_WONT_HELP, why);
		return;
	}
	if ((call = chat_call_new(chat, req, CHAT_CREATE)) == NULL) {
		reply_error(req, 503, REPLY_RETRY_MAY_HELP, "llamachatd is out of memory");
		return;
	}
	if (chat_read_scope(call, query, &why) != 0) {
		chat_call_fail(call, 400, REPLY_RETRY_WONT_HELP, why);
		return;
	}
	if (query != NULL && query[0] != '\0') {
		if ((size_t)snprintf(path, sizeof(path), "%s?%s", CHAT_PATH, query) >= sizeof(path)) {
			chat_call_fail(call, 414, REPLY_RETRY_WONT_HELP, "the query string is too long");
			return;
		}
	} else {
		snprintf(path, sizeof(path), "%s", CHAT_PATH);
	}
	chat_forward(call, path, body, body_len);
}

/* Answers from a stored record; returns false when it cannot be used. */
static bool
chat_reply_from_store(struct chat *chat, struct evhttp_request *req, const char *id, size_t id_len)
{
	struct evbuffer *stored = evbuffer_new();
	struct session_record rec;
	bool answered = false;

	if (stored == NULL)
		return false;
	if (store_get(chat->store, id, id_len, stored) != STORE_OK)
		goto out;
	if (session_record_decode(evbuffer_pullup(stored, -1), evbuffer_get_length(stored), &rec) != 0) {
		log_warnx("chat: the stored record of a session is damaged; reading it through");
		goto out;
	}
	/* Drop the record's head so the buffer holds just the Session JSON. */
	evbuffer_drain(stored, evbuffer_get_length(stored) - rec.json_len);
	struct evkeyvalq *out = evhttp_request_get_output_headers(req);
	evhttp_add_header(out, "Content-Type", "application/json");
	evhttp_add_header(out, "X-Cache", "HIT");
	evhttp_send_reply(req, 200, NULL, stored);
	chat->counters.cache_hits++;
	answered = true;
out:
	evbuffer_free(stored);
	return answered;
}

void
chat_handle_summary(struct chat *chat, struct evhttp_request *req, const char *id, size_t id_len, const char *query)
{
	char session_id[SESSION_ID_MAX + 1];
	char path[sizeof(CHAT_PATH) + 3 * SESSION_ID_MAX + 16 + 8192];
	struct chat_call *call;
	const char *why;
	char *encoded;
	int n;

	if (!session_id_is_safe(id, id_len)) {
		reply_error(req, 400, REPLY_RETRY_WONT_HELP,
		    "the session id must be 1 to 128 bytes without '/', '%', '?', '#' or control characters");
		return;
	}
	memcpy(session_id, id, id_len);
	session_id[id_len] = '\0';
	if (chat_reply_from_store(chat, req, session_id, id_len))
		return;

	chat->counters.cache_misses++;
	if ((call = chat_call_new(chat, req, CHAT_SUMMARY)) == NULL) {
		reply_error(req, 503, REPLY_RETRY_MAY_HELP, "llamachatd is out of memory");
		return;
	}
	if (chat_read_scope(call, query, &why) != 0) {
		chat_call_fail(call, 400, REPLY_RETRY_WONT_HELP, why);
		return;
	}
	if ((encoded = evhttp_uriencode(session_id, (ev_ssize_t)id_len, 0)) == NULL) {
		chat_call_fail(call, 503, REPLY_RETRY_MAY_HELP, "llamachatd is out of memory");
		return;
	}
	n = snprintf(path, sizeof(path), "%s/%s/summary%s%s", CHAT_PATH, encoded,
	    query != NULL && query[0] != '\0' ? "?" : "", query != NULL ? query : "");
	free(encoded);
	if ((size_t)n >= sizeof(path)) {
		chat_call_fail(call, 414, REPLY_RETRY_WONT_HELP, "the query string is too long");
		return;
	}
	chat_forward(call, path, NULL, 0);
}

void
chat_free(struct chat *chat)
{
	if (chat == NULL)
		return;
	while (!LIST_EMPTY(&chat->calls))
		chat_call_fail(LIST_FIRST(&chat->calls), 503, REPLY_RETRY_MAY_HELP, "llamachatd is shutting down");
	free(chat);
}
