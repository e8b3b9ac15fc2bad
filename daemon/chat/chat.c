/* chat: the chat API handlers whose upstream answer is read whole: create,
 * summary lookup, history and delete, and background summary refreshes.
 *
 * Each such request is one struct chat_call, owned by this module from its
 * handler until its answer is sent. A call waits on upstream first, then on
 * the store's commit of what upstream answered (chat_store_answer.c); the
 * client is answered only after that commit. */
#include "chat/chat.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "base/clock.h"
#include "gate/budget.h"
#include "chat/chat_private.h"
#include "shared/shared.h"
#include "chat/retry.h"
#include "base/config.h"
#include "gate/gate.h"
#include "base/log.h"
#include "http/reply.h"
#include "chat/upstream_reply.h"
#include "http/request.h"
#include "store/session.h"
#include "store/store.h"
#include "upstream/upstream.h"
#include "http/uri.h"

_Static_assert(SESSION_LEDGER_FIELD_COUNT == STORE_LEDGER_FIELDS, "ledger fields of session and store differ");
_Static_assert(RETRY_REASONS == sizeof(((struct chat_counters *)0)->retries) / sizeof(unsigned long long),
    "retry reasons and their counters differ");

struct chat *
chat_create(
    struct upstream *upstream, struct store *store, struct relay_engine *relays, const struct chat_settings *settings)
{
	struct chat *chat = calloc(1, sizeof(*chat));

	if (chat == NULL)
		return NULL;
	chat->upstream = upstream;
	chat->store = store;
	chat->relays = relays;
	chat->settings = *settings;
	LIST_INIT(&chat->calls);
	LIST_INIT(&chat->held_keys);
	return chat;
}

void
chat_set_shared(struct chat *chat, struct shared *shared, long max_in_flight)
{
	chat->shared = shared;
	chat->shared_max_in_flight = max_in_flight;
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

/* A background call acts for nobody and may touch everything. */
static const struct caller chat_daemon_itself = { .see_all = true };

static struct chat_call *
chat_call_new(struct chat *chat, struct request *req, const struct caller *caller, enum chat_kind kind)
{
	struct chat_call *call = calloc(1, sizeof(*call));

	if (call == NULL || (call->body = evbuffer_new()) == NULL) {
		free(call);
		return NULL;
	}
	call->chat = chat;
	call->req = req;
	call->kind = kind;
	call->caller = *caller;
	/* The grant points into the request: its owner is copied instead. */
	if (caller->granted != NULL)
		snprintf(call->granted_owner, sizeof(call->granted_owner), "%s", caller->granted->owner);
	call->caller.granted = NULL;
	if (req != NULL)
		request_trace_copy(req, &call->trace);
	http_headers_init(
	    &call->headers, call->header_slots, sizeof(call->header_slots) / sizeof(call->header_slots[0]));
	LIST_INSERT_HEAD(&chat->calls, call, link);
	if (req != NULL)
		chat->pending++;
	return call;
}

/* Hands the client's request over for answering: it is not the call's once
 * answered, so the call forgets it first. NULL when there is no client (any
 * more). */
static struct request *
chat_call_take_request(struct chat_call *call)
{
	struct request *req = call->req;

	if (req != NULL) {
		request_set_on_gone(req, NULL, NULL);
		call->req = NULL;
		call->chat->pending--;
	}
	return req;
}

/* Releases everything the call holds; its request must be taken already. */
static void
chat_call_free(struct chat_call *call)
{
	upstream_cancel(call->upstream);
	if (call->retry_ev != NULL)
		event_free(call->retry_ev);
	free(call->path);
	free(call->sent_body);
	store_write_forget(call->write);
	/* A claim still this instance's goes back; an answer stays. */
	if (call->claim_shared && call->key != NULL)
		chat_key_release_shared(call->chat, call->key);
	chat_key_release(call->key);
	evbuffer_free(call->body);
	LIST_REMOVE(call, link);
	free(call);
}

void
chat_call_fail(struct chat_call *call, int status, enum reply_retry retry, const char *detail)
{
	struct request *req = chat_call_take_request(call);

	if (req != NULL)
		reply_error(req, status, retry, detail);
	chat_call_free(call);
}

void
chat_call_reply_upstream(struct chat_call *call)
{
	struct request *req = chat_call_take_request(call);

	if (req != NULL) {
		for (size_t i = 0; i < call->headers.count; i++)
			request_add_header(req, call->headers.items[i].name, call->headers.items[i].value);
		if (call->kind == CHAT_SUMMARY) {
			request_add_header(req, "X-Cache", "MISS");
			req->access.cache = "MISS";
		}
		request_reply_buffer(req, (int)call->status, call->body);
	}
	chat_call_free(call);
}

/* The client hung up while its call waited for upstream or the store. */
static void
chat_on_client_gone(void *arg)
{
	struct chat_call *call = arg;

	/* The call goes on: upstream may have acted already (a create made a
	 * session), and what it answers is still stored. Only the answer has
	 * nobody to go to. */
	log_debug("chat: the client went away before its answer; finishing the call without it");
	call->req = NULL;
	call->chat->pending--;
}

static void chat_send(struct chat_call *call);

static void
chat_on_retry_due(evutil_socket_t fd, short what, void *arg)
{
	struct chat_call *call = arg;

	(void)fd;
	(void)what;
	chat_send(call);
}

/* Schedules the call again when its failure allows it (retry.h): it takes
 * no rate or budget token, the call was paid for once. Returns true when
 * it will go again. */
static bool
chat_maybe_retry(struct chat_call *call, const struct upstream_response *response)
{
	const struct chat_settings *s = &call->chat->settings;
	struct retry_policy policy = { s->retries, s->retry_base_ms, s->retry_max_wait_ms, s->request_timeout_ms };
	const char *retry_after =
	    response->error == UPSTREAM_OK ? http_headers_find(response->headers, "retry-after") : NULL;
	long elapsed = (long)((clock_monotonic_s() - call->first_started) * 1000), wait_ms;
	enum retry_reason reason;
	struct timeval tv;

	if (s->base == NULL ||
	    !retry_decide(&policy, call->kind != CHAT_CREATE, call->key != NULL, response, retry_after, call->attempts,
	        elapsed, (double)random() / ((double)RAND_MAX + 1), &wait_ms, &reason))
		return false;
	if (call->retry_ev == NULL && (call->retry_ev = evtimer_new(s->base, chat_on_retry_due, call)) == NULL)
		return false;
	call->attempts++;
	call->chat->counters.retries[reason]++;
	if (call->req != NULL)
		call->req->access.retries = (int)call->attempts;
	log_debug("chat: retrying a call in %ld ms (%s)", wait_ms, retry_reason_names[reason]);
	tv = clock_timeval_ms(wait_ms);
	evtimer_add(call->retry_ev, &tv);
	return true;
}

static void
chat_on_upstream_done(const struct upstream_response *response, void *arg)
{
	struct chat_call *call = arg;
	bool ok;

	call->upstream = NULL;
	if (call->req != NULL && call->caller.access != NULL)
		call->caller.access->upstream_seconds = response->total_seconds;
	if (chat_maybe_retry(call, response))
		return;
	if (response->error != UPSTREAM_OK) {
		struct request *req = chat_call_take_request(call);
		call->chat->counters.upstream_failures++;
		if (req != NULL)
			reply_upstream_failure(req, response, call->kind == CHAT_CREATE);
		else
			log_warnx("chat: background refresh of %s failed: %s", call->session_id, response->error_text);
		chat_call_free(call);
		return;
	}
	call->status = response->status;
	evbuffer_add_buffer(call->body, response->body);
	if (http_headers_copy(&call->headers, call->header_store, sizeof(call->header_store), response->headers) != 0)
		log_warnx("chat: upstream's answer headers are too long to pass on whole");

	ok = call->status >= 200 && call->status <= 299;
	/* A deleted session is gone upstream: forget it here too. */
	if (call->kind == CHAT_DELETE && call->status == 404)
		ok = true;
	if (!ok && chat_store_final_refusal(call))
		return;
	if (!ok) {
		chat_call_reply_upstream(call);
		return;
	}
	chat_store_answer(call);
}

/* Keeps what the call sends, for its first try and its retries. Returns
 * false (the client answered, call freed) when out of memory. */
static bool
chat_forward_prepare(struct chat_call *call, const char *method, const char *path, const void *body, size_t body_len)
{
	call->method = method;
	call->first_started = clock_monotonic_s();
	if ((call->path = strdup(path)) == NULL || (body_len > 0 && (call->sent_body = malloc(body_len)) == NULL)) {
		chat_call_fail(call, 503, REPLY_RETRY_MAY_HELP, "llamachatd is out of memory");
		return false;
	}
	if (body_len > 0)
		memcpy(call->sent_body, body, body_len);
	call->sent_len = body_len;
	return true;
}

/* Starts the upstream call; answers the client itself when it cannot. What
 * it sends is kept for a retry. */
static void
chat_forward(struct chat_call *call, const char *method, const char *path, const void *body, size_t body_len)
{
	if (chat_forward_prepare(call, method, path, body, body_len))
		chat_send(call);
}

/* What the shared Idempotency-Key record said of a create's key. */
static void
chat_on_claimed(enum shared_claim result, int status, const char *body, size_t len, void *arg)
{
	struct chat_call *call = arg;
	struct request *req;

	if (call->req == NULL) {
		/* Its client left before it went anywhere: nothing to do. */
		call->claim_shared = result == SHARED_CLAIMED;
		chat_call_free(call);
		return;
	}
	switch (result) {
	case SHARED_CLAIMED:
		call->claim_shared = true;
		/* fall through */
	case SHARED_CLAIM_UNAVAILABLE: /* claimed here alone, as without Redis */
		chat_send(call);
		return;
	case SHARED_CLAIM_BUSY:
		req = chat_call_take_request(call);
		request_add_header(req, "Retry-After", "1");
		reply_error(req, 409, REPLY_RETRY_MAY_HELP,
		    "a request with this Idempotency-Key is still in flight; retry shortly");
		break;
	case SHARED_CLAIM_MISMATCH:
		req = chat_call_take_request(call);
		reply_error(req, 422, REPLY_RETRY_WONT_HELP,
		    "this Idempotency-Key was used for a different request; use a new key");
		break;
	case SHARED_CLAIM_ANSWERED:
		req = chat_call_take_request(call);
		request_add_header(req, "Content-Type", "application/json");
		request_add_header(req, "Idempotent-Replayed", "true");
		req->access.cache = "REPLAY";
		request_reply(req, status, body, len);
		break;
	}
	chat_call_free(call);
}

/* Sends the call's request upstream (again, for a retry). */
static void
chat_send(struct chat_call *call)
{
	struct upstream_request request = {
		.method = call->method,
		.path_and_query = call->path,
		.client_headers = call->req != NULL ? &call->req->headers : NULL,
		.body = call->sent_body,
		.body_len = call->sent_len,
		.is_retry = call->attempts > 0,
		.trace = &call->trace,
		.attempt = (int)call->attempts + 1,
		/* A create without a key must not reach upstream twice. */
		.send_once = call->kind == CHAT_CREATE && call->key == NULL,
		.idempotency_key = call->key != NULL ? call->key->upstream_key : NULL,
		.project_id = call->project,
	};

	if (call->req != NULL && reply_unless_ready(call->req, call->chat->upstream, call->project)) {
		/* Answered: no key for its project, or the breaker is open. */
		chat_call_take_request(call);
		chat_call_free(call);
		return;
	}
	if (call->req == NULL) {
		long retry_after;
		double since;
		if (!upstream_has_key_for(call->chat->upstream, call->project) ||
		    !upstream_breaker_admits(call->chat->upstream, call->project, &retry_after, &since)) {
			log_debug("chat: a background refresh of %s is not made now (no key, or upstream failing)",
			    call->session_id);
			chat_call_free(call);
			return;
		}
	}
	call->upstream = upstream_forward(call->chat->upstream, &request, chat_on_upstream_done, call);
	if (call->upstream == NULL) {
		chat_call_fail(call, 503, REPLY_RETRY_MAY_HELP,
		    "llamachatd is at its limit of upstream calls in flight; try again shortly");
		return;
	}
	call->state = CHAT_FORWARDING;
	if (call->req != NULL)
		request_set_on_gone(call->req, chat_on_client_gone, call);
}

void
chat_handle_create(struct chat *chat, struct request *req, const struct caller *caller, const char *query)
{
	size_t body_len;
	const char *body, *why = NULL;
	struct chat_scope scope;
	struct chat_call *call;
	struct chat_key_hold key;
	enum chat_key_result keyed;
	bool has_query = query != NULL && query[0] != '\0';
	char *path;

	if (!chat_take_json_body(chat, req, session_check_create_body, &body, &body_len) ||
	    !gate_body_keeps_pins(req, caller, body, body_len))
		return;
	if (chat_read_scope(query, &scope, &why) != 0) {
		reply_error(req, 400, REPLY_RETRY_WONT_HELP, why);
		return;
	}
	/* A replay goes nowhere: it takes nothing of the rate or the budget. */
	if ((keyed = chat_key_check(chat, req, caller, query, body, body_len, IDEMPOTENCY_CREATE, &key)) ==
	        CHAT_KEY_ANSWERED ||
	    !gate_may_go_upstream(req, caller))
		return;
	path = malloc(strlen(CHAT_PATH) + (has_query ? 1 + strlen(query) : 0) + 1);
	if (path == NULL || (call = chat_call_new(chat, req, caller, CHAT_CREATE)) == NULL) {
		free(path);
		reply_error(req, 503, REPLY_RETRY_MAY_HELP, "llamachatd is out of memory");
		return;
	}
	sprintf(path, "%s%s%s", CHAT_PATH, has_query ? "?" : "", has_query ? query : "");
	call->scope = scope;
	/* A create goes with the key of the project it names (after the pin). */
	snprintf(call->project, sizeof(call->project), "%s", scope.project_id);
	if (keyed == CHAT_KEY_NEW && (call->key = chat_key_hold(chat, &key)) == NULL) {
		free(path);
		chat_call_fail(call, 503, REPLY_RETRY_MAY_HELP, "llamachatd is out of memory");
		return;
	}
	if (call->key != NULL && chat->shared != NULL) {
		/* The key is every instance's: claimed (or answered) in Redis
		 * first, in one round trip. */
		bool ready = chat_forward_prepare(call, "POST", path, body, body_len);
		free(path);
		if (!ready)
			return;
		request_set_on_gone(req, chat_on_client_gone, call);
		if (chat_key_claim_shared(chat, call->key, chat_on_claimed, call) == NULL)
			chat_send(call);
		return;
	}
	chat_forward(call, "POST", path, body, body_len);
	free(path);
}

/* Starts a call about one session, for handlers that read the answer whole. */
static void
chat_start_session_call(struct chat *chat, struct request *req, const struct caller *caller, enum chat_kind kind,
    const char *id, const char *query)
{
	static const char *const methods[] = {
		[CHAT_SUMMARY] = "GET", [CHAT_HISTORY] = "GET", [CHAT_DELETE] = "DELETE", [CHAT_REFRESH] = "GET"
	};
	const char *suffix = kind == CHAT_SUMMARY || kind == CHAT_REFRESH ? "/summary" : "";
	struct chat_call *call;
	const char *why;
	char *path;

	if (req != NULL && !gate_may_go_upstream(req, caller))
		return;
	if ((call = chat_call_new(chat, req, caller, kind)) == NULL) {
		if (req != NULL)
			reply_error(req, 503, REPLY_RETRY_MAY_HELP, "llamachatd is out of memory");
		return;
	}
	snprintf(call->session_id, sizeof(call->session_id), "%s", id);
	/* A call about a session goes with the key of the session's project. */
	chat_session_project(chat, caller, id, call->project);
	if (chat_read_scope(query, &call->scope, &why) != 0) {
		chat_call_fail(call, 400, REPLY_RETRY_WONT_HELP, why);
		return;
	}
	if ((path = chat_upstream_path(id, suffix, query)) == NULL) {
		chat_call_fail(call, 503, REPLY_RETRY_MAY_HELP, "llamachatd is out of memory");
		return;
	}
	chat_forward(call, methods[kind], path, NULL, 0);
	free(path);
}

void
chat_refresh_summary(struct chat *chat, const char *id)
{
	chat_start_session_call(chat, NULL, &chat_daemon_itself, CHAT_REFRESH, id, NULL);
}

enum chat_naming
chat_handle_summary(struct chat *chat, struct request *req, const struct caller *caller, const char *raw_id,
    size_t raw_len, const char *query)
{
	struct session_record rec;
	char id[SESSION_ID_MAX + 1];
	const void *stored;
	size_t stored_len;
	enum store_result found;

	if (!chat_take_session_id(req, raw_id, raw_len, id))
		return CHAT_NAMING_ANSWERED;
	/* The hit path: the stored JSON goes out straight from the map, with
	 * no copy and no allocation; the read closes right after. */
	found = store_peek(chat->store, id, strlen(id), &stored, &stored_len);
	if (found == STORE_OK && session_record_decode(stored, stored_len, &rec) == 0) {
		bool unowned = rec.owner_len == 0;
		if (chat_caller_may_touch_id(caller, &rec, id)) {
			request_add_header(req, "Content-Type", "application/json");
			request_add_header(req, "X-Cache", "HIT");
			req->access.cache = "HIT";
			request_reply(req, 200, rec.json, rec.json_len);
			store_peek_done(chat->store);
			chat->counters.cache_hits++;
			return CHAT_NAMING_MAY;
		}
		store_peek_done(chat->store);
		if (chat_must_ask_owner(chat, caller, true, unowned))
			return CHAT_NAMING_ASK_OWNER;
		chat_reply_not_found(req);
		return CHAT_NAMING_ANSWERED;
	}
	store_peek_done(chat->store);
	if (found == STORE_OK)
		log_warnx("chat: the stored record of session %s is damaged; it will be read through", id);
	if (!caller->see_all && !chat_caller_granted(caller, id)) {
		/* Not held here: in shared mode its owner record decides. */
		if (found != STORE_OK && chat_must_ask_owner(chat, caller, false, false))
			return CHAT_NAMING_ASK_OWNER;
		chat_reply_not_found(req);
		return CHAT_NAMING_ANSWERED;
	}
	chat->counters.cache_misses++;
	chat_start_session_call(chat, req, caller, CHAT_SUMMARY, id, query);
	return CHAT_NAMING_MAY;
}

/* History and delete: forwarded for a session the caller may touch. */
static void
chat_handle_session_call(struct chat *chat, struct request *req, const struct caller *caller, enum chat_kind kind,
    const char *raw_id, size_t raw_len, const char *query)
{
	char id[SESSION_ID_MAX + 1];

	if (!chat_take_session_id(req, raw_id, raw_len, id))
		return;
	if (chat_visibility_of(chat, caller, id) == CHAT_SESSION_HIDDEN)
		chat_reply_not_found(req);
	else
		chat_start_session_call(chat, req, caller, kind, id, query);
}

void
chat_handle_history(struct chat *chat, struct request *req, const struct caller *caller, const char *raw_id,
    size_t raw_len, const char *query)
{
	chat_handle_session_call(chat, req, caller, CHAT_HISTORY, raw_id, raw_len, query);
}

void
chat_handle_delete(struct chat *chat, struct request *req, const struct caller *caller, const char *raw_id,
    size_t raw_len, const char *query)
{
	chat_handle_session_call(chat, req, caller, CHAT_DELETE, raw_id, raw_len, query);
}

void
chat_free(struct chat *chat)
{
	if (chat == NULL)
		return;
	while (!LIST_EMPTY(&chat->calls))
		chat_call_fail(LIST_FIRST(&chat->calls), 503, REPLY_RETRY_MAY_HELP, "llamachatd is shutting down");
	chat_key_release_kept(chat);
	chat_republish_free(chat);
	chat_outbox_free(chat);
	chat_follow_free(chat);
	free(chat);
}
