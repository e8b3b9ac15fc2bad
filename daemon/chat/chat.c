/* chat: the chat API handlers whose upstream answer is read whole: create,
 * summary lookup, history and delete, and background summary refreshes.
 *
 * Each such request is one struct chat_call, owned by this module from its
 * handler until its answer is sent. A call waits on upstream first, then on
 * the store's commit of what upstream answered; the client is answered only
 * after that commit. */
#include "chat/chat.h"

#include <event2/buffer.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "base/clock.h"
#include "gate/budget.h"
#include "chat/chat_private.h"
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
	struct http_headers headers; /* the few of upstream's that pass on */
	struct http_header header_slots[8];
	char header_store[1024];
};

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
	store_write_forget(call->write);
	chat_key_release(call->key);
	evbuffer_free(call->body);
	LIST_REMOVE(call, link);
	free(call);
}

static void
chat_call_fail(struct chat_call *call, int status, enum reply_retry retry, const char *detail)
{
	struct request *req = chat_call_take_request(call);

	if (req != NULL)
		reply_error(req, status, retry, detail);
	chat_call_free(call);
}

/* Sends upstream's answer, as kept in the call, to the client. */
static void
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

int
chat_read_scope(const char *query, struct chat_scope *scope, const char **why)
{
	static const struct {
		const char *name;
		size_t offset;
	} params[] = {
		{ "organization_id", offsetof(struct chat_scope, organization_id) },
		{ "project_id", offsetof(struct chat_scope, project_id) },
	};
	char value[SESSION_SCOPE_MAX + 1];

	memset(scope, 0, sizeof(*scope));
	if (query == NULL || query[0] == '\0')
		return 0;
	for (size_t i = 0; i < sizeof(params) / sizeof(params[0]); i++) {
		int found = uri_query_get(query, params[i].name, value, sizeof(value));
		if (found == 0)
			continue;
		if (found < 0 && !uri_query_is_valid(query)) {
			*why = "the query string is malformed";
			return -1;
		}
		if (found < 0 || !session_scope_is_safe(value, strlen(value))) {
			*why = i == 0 ? "organization_id is not a valid id" : "project_id is not a valid id";
			return -1;
		}
		snprintf((char *)scope + params[i].offset, SESSION_SCOPE_MAX + 1, "%s", value);
	}
	return 0;
}

bool
chat_take_session_id(struct request *req, const char *raw, size_t raw_len, char id[SESSION_ID_MAX + 1])
{
	if (!session_id_is_safe(raw, raw_len)) {
		reply_error(req, 400, REPLY_RETRY_WONT_HELP,
		    "the session id must be 1 to 128 bytes without '/', '%', '?', '#' or control characters");
		return false;
	}
	memcpy(id, raw, raw_len);
	id[raw_len] = '\0';
	return true;
}

char *
chat_upstream_path(const char *id, const char *suffix, const char *query)
{
	char encoded[3 * SESSION_ID_MAX + 1];
	bool has_query = query != NULL && query[0] != '\0';
	size_t size;
	char *path;

	if (uri_encode(id, encoded, sizeof(encoded)) < 0)
		return NULL;
	size = strlen(CHAT_PATH) + 1 + strlen(encoded) + strlen(suffix) + (has_query ? 1 + strlen(query) : 0) + 1;
	if ((path = malloc(size)) != NULL)
		snprintf(path, size, "%s/%s%s%s%s", CHAT_PATH, encoded, suffix, has_query ? "?" : "",
		    has_query ? query : "");
	return path;
}

bool
chat_load_record(struct chat *chat, const char *id, struct evbuffer *buf, struct session_record *rec)
{
	evbuffer_drain(buf, evbuffer_get_length(buf));
	if (store_get(chat->store, id, strlen(id), buf) != STORE_OK)
		return false;
	if (session_record_decode(evbuffer_pullup(buf, -1), evbuffer_get_length(buf), rec) != 0) {
		log_warnx("chat: the stored record of session %s is damaged; it will be read through", id);
		return false;
	}
	return true;
}

/* True when a and its length equal the C string b. */
static bool
chat_field_is(const char *a, size_t a_len, const char *b)
{
	return b != NULL && a_len == strlen(b) && (a_len == 0 || memcmp(a, b, a_len) == 0);
}

bool
chat_caller_may_touch(const struct caller *caller, const struct session_record *rec)
{
	const struct config_client *client = caller->client;

	if (caller->see_all || (rec->owner_len > 0 && chat_field_is(rec->owner, rec->owner_len, caller->name)))
		return true;
	/* A client pinned to a project may touch every session stored in it. */
	return client != NULL && client->project_id != NULL &&
	    chat_field_is(rec->project_id, rec->project_id_len, client->project_id);
}

/* True when id is stored with an owner other than caller (read in place). */
static bool
chat_owned_by_another(struct chat *chat, const struct caller *caller, const char *id)
{
	struct session_record rec;
	const void *stored;
	size_t stored_len;
	bool another = false;

	if (store_peek(chat->store, id, strlen(id), &stored, &stored_len) == STORE_OK &&
	    session_record_decode(stored, stored_len, &rec) == 0)
		another = !chat_field_is(rec.owner, rec.owner_len, caller->name);
	store_peek_done(chat->store);
	return another;
}

enum chat_visibility
chat_visibility_of(struct chat *chat, const struct caller *caller, const char *id)
{
	struct session_record rec;
	const void *stored;
	size_t stored_len;
	enum chat_visibility result;

	/* Read in place, never copied: the answer costs the same for a large
	 * record of someone else's as for none at all. */
	if (store_peek(chat->store, id, strlen(id), &stored, &stored_len) == STORE_OK &&
	    session_record_decode(stored, stored_len, &rec) == 0)
		result = chat_caller_may_touch(caller, &rec) ? CHAT_SESSION_OWN : CHAT_SESSION_HIDDEN;
	else
		result = caller->see_all ? CHAT_SESSION_UNKNOWN : CHAT_SESSION_HIDDEN;
	store_peek_done(chat->store);
	return result;
}

bool
chat_may_name_session(
    struct chat *chat, struct request *req, const struct caller *caller, const char *raw_id, size_t raw_len)
{
	char id[SESSION_ID_MAX + 1];

	if (!chat_take_session_id(req, raw_id, raw_len, id))
		return false;
	if (chat_visibility_of(chat, caller, id) == CHAT_SESSION_HIDDEN) {
		chat_reply_not_found(req);
		return false;
	}
	return true;
}

void
chat_reply_not_found(struct request *req)
{
	reply_error(req, 404, REPLY_RETRY_WONT_HELP, "Session not found");
}

/* Copies a record's optional text field into out (size bytes). */
static void
chat_copy_field(char *out, size_t size, const char *text, size_t len)
{
	snprintf(out, size, "%.*s", (int)len, text != NULL ? text : "");
}

void
chat_count_usage(struct chat *chat, const char *client, const char *organization_id, const char *project_id,
    const unsigned long long *add, struct chat_usage *usage)
{
	uint64_t now = clock_unix_us();
	unsigned day = session_day_of(now);

	usage->ledger.key.data = usage->ledger_key;
	usage->ledger.key.len = session_ledger_key(client, organization_id, project_id, day, usage->ledger_key);
	usage->daily.key.data = usage->daily_key;
	usage->daily.key.len = session_daily_key(client, day, usage->daily_key);
	for (int f = 0; f < SESSION_LEDGER_FIELD_COUNT; f++)
		usage->ledger.add[f] = usage->daily.add[f] = add[f];
	/* Counted when queued, not once committed: a write that fails then
	 * leaves the budget a little more used than the store says. */
	budgets_add(chat->settings.budgets, client, now,
	    add[SESSION_LEDGER_INPUT_TOKENS] + add[SESSION_LEDGER_OUTPUT_TOKENS], add[SESSION_LEDGER_SESSIONS]);
}

struct store_write *
chat_store_summary(struct chat *chat, const struct chat_summary *summary, store_write_cb cb, void *arg)
{
	const char *json = summary->json, *known_id = summary->known_id, *new_owner = summary->new_owner;
	const struct chat_scope *fallback = summary->fallback;
	size_t len = summary->len;
	struct session_record rec = { 0 }, old;
	struct evbuffer *old_buf = NULL;
	char id[SESSION_ID_MAX + 1], owner[SESSION_OWNER_MAX + 1];
	struct chat_scope scope;
	unsigned char all_key[SESSION_INDEX_KEY_MAX], owner_key[SESSION_INDEX_KEY_MAX];
	uint64_t updated_us;
	unsigned char *encoded = NULL;
	struct store_write *write = NULL;
	struct store_change change = { 0 };
	const char *why;

	/* A create made a new session: there is no older record to read. */
	if (new_owner == NULL && (old_buf = evbuffer_new()) == NULL)
		return NULL;
	if (known_id != NULL) {
		snprintf(id, sizeof(id), "%s", known_id);
		updated_us = summary->known_updated_us;
	} else if (session_parse_summary(json, len, id, &updated_us, &why) != 0) {
		log_warnx("chat: %s", why);
		goto out;
	}
	/* A session keeps the scope and owner it was first stored with. */
	if (old_buf != NULL && chat_load_record(chat, id, old_buf, &old)) {
		chat_copy_field(
		    scope.organization_id, sizeof(scope.organization_id), old.organization_id, old.organization_id_len);
		chat_copy_field(scope.project_id, sizeof(scope.project_id), old.project_id, old.project_id_len);
		chat_copy_field(owner, sizeof(owner), old.owner, old.owner_len);
	} else {
		scope = *fallback;
		snprintf(owner, sizeof(owner), "%s", new_owner != NULL ? new_owner : "");
	}
	rec.stored_at_us = clock_unix_us();
	rec.owner = owner;
	rec.owner_len = strlen(owner);
	rec.organization_id = scope.organization_id;
	rec.organization_id_len = strlen(scope.organization_id);
	rec.project_id = scope.project_id;
	rec.project_id_len = strlen(scope.project_id);
	rec.json = json;
	rec.json_len = len;
	change.value.len = session_record_encoded_size(&rec);
	if ((encoded = malloc(change.value.len)) == NULL)
		goto out;
	session_record_encode(&rec, encoded);
	change.key.data = id;
	change.key.len = strlen(id);
	change.value.data = encoded;
	/* Every session is in the list of all; an owned one in its owner's too. */
	change.index_keys[0].data = all_key;
	change.index_keys[0].len =
	    session_index_key(NULL, scope.organization_id, scope.project_id, updated_us, id, strlen(id), all_key);
	change.index_count = 1;
	if (owner[0] != '\0') {
		change.index_keys[1].data = owner_key;
		change.index_keys[1].len = session_index_key(
		    owner, scope.organization_id, scope.project_id, updated_us, id, strlen(id), owner_key);
		change.index_count = 2;
	}
	if (summary->usage != NULL) {
		change.ledger = &summary->usage->ledger;
		change.daily = &summary->usage->daily;
	}
	change.also = summary->also;
	write = store_queue(chat->store, &change, cb, arg);
out:
	free(encoded);
	if (old_buf != NULL)
		evbuffer_free(old_buf);
	return write;
}

static void
chat_on_stored(enum store_result result, void *arg)
{
	struct chat_call *call = arg;

	call->write = NULL;
	if (result == STORE_OK) {
		log_debug("chat: stored session %s", call->session_id[0] ? call->session_id : "-");
	} else {
		/* The session exists upstream: an error here would make the SDK
		 * retry and create a duplicate. A later lookup reads it through. */
		call->chat->counters.store_failures++;
		/* Nor may a retry with its key go upstream again. */
		if (call->key != NULL) {
			chat_key_keep(call->chat, call->key);
			call->key = NULL;
		}
		log_warnx("chat: could not store session %s (%s); answering the client anyway", call->session_id,
		    result == STORE_ERR_FULL ? "store full" : "store error");
	}
	chat_call_reply_upstream(call);
}

/* After a 2xx: what the store must learn from upstream's answer. Hands the
 * call on: to the store, or (an unusable answer, a write that cannot be
 * queued) to its answer, which frees it. The caller must not touch call
 * after this returns. */
static void
chat_store_answer(struct chat_call *call)
{
	const char *body = (const char *)evbuffer_pullup(call->body, -1);
	size_t len = evbuffer_get_length(call->body);
	char *from_history = NULL;
	const char *why;
	uint64_t updated_us;

	call->state = CHAT_STORING;
	if (call->kind == CHAT_DELETE) {
		struct store_change change = { .key = { call->session_id, strlen(call->session_id) }, .remove = 1 };
		call->write = store_queue(call->chat->store, &change, chat_on_stored, call);
	} else {
		if (call->kind == CHAT_HISTORY) {
			/* The history carries the summary too: keep it fresh. */
			if ((from_history = session_summary_of_history(body, len)) != NULL) {
				body = from_history;
				len = strlen(from_history);
			}
		}
		if (session_parse_summary(body, len, call->session_id, &updated_us, &why) != 0) {
			call->chat->counters.upstream_failures++;
			log_warnx("chat: %s", why);
			free(from_history);
			if (call->kind == CHAT_HISTORY) {
				chat_call_reply_upstream(call); /* not ours to judge; pass it on */
				return;
			}
			/* For a create the session may exist upstream: no retry. */
			chat_call_fail(
			    call, 502, call->kind == CHAT_CREATE ? REPLY_RETRY_WONT_HELP : REPLY_RETRY_MAY_HELP, why);
			return;
		}
		struct chat_summary summary = {
			.json = body,
			.len = len,
			.known_id = call->session_id,
			.known_updated_us = updated_us,
			.fallback = &call->scope,
		};
		struct chat_usage usage;
		struct chat_key_write key_write = { 0 };
		/* The key's record commits with the session: a retry after the
		 * answer was lost finds both, or neither. */
		if (call->kind == CHAT_CREATE && call->key != NULL) {
			if (chat_key_write_init(&key_write, call->key, IDEMPOTENCY_CREATE, (int)call->status,
			        evbuffer_pullup(call->body, -1), evbuffer_get_length(call->body)) == 0)
				summary.also = &key_write.change;
			else
				log_warnx("chat: out of memory: the Idempotency-Key of session %s is not remembered",
				    call->session_id);
		}
		if (call->kind == CHAT_CREATE && chat_owned_by_another(call->chat, &call->caller, call->session_id)) {
			/* Upstream answered with a session made for someone else
			 * (it deduped on a key, say): its owner keeps it. */
			call->chat->counters.takeovers_refused++;
			log_warnx("chat: upstream answered a create of client %s with session %s, which another client "
			          "owns; refused, and the session keeps its owner",
			    call->caller.name[0] != '\0' ? call->caller.name : "-", call->session_id);
			free(from_history);
			chat_call_fail(call, 502, REPLY_RETRY_WONT_HELP,
			    "upstream answered this create with a session another client owns; llamachatd refused it");
			return;
		}
		if (call->kind == CHAT_CREATE) {
			unsigned long long add[SESSION_LEDGER_FIELD_COUNT] = { [SESSION_LEDGER_SESSIONS] = 1 };
			call->chat->counters.creates++; /* it exists upstream, stored or not */
			/* The creator owns it, and the ledger counts it, in one commit. */
			chat_count_usage(call->chat, call->caller.name, call->scope.organization_id,
			    call->scope.project_id, add, &usage);
			summary.new_owner = call->caller.name;
			summary.usage = &usage;
		}
		call->write = chat_store_summary(call->chat, &summary, chat_on_stored, call);
		chat_key_write_done(&key_write);
		free(from_history);
	}
	if (call->write == NULL)
		chat_on_stored(STORE_ERR, call); /* answers and frees call */
}

/* A create with a key that upstream refused for good (a final 4xx): the
 * refusal is kept for the key, and answered once it commits. Returns false
 * when there is nothing to keep (the caller answers). */
static bool
chat_store_final_refusal(struct chat_call *call)
{
	struct chat_key_write w;

	if (call->kind != CHAT_CREATE || call->key == NULL ||
	    !idempotency_answer_is_final(call->status, http_headers_find(&call->headers, "x-should-retry")) ||
	    chat_key_write_init(&w, call->key, IDEMPOTENCY_CREATE, (int)call->status, evbuffer_pullup(call->body, -1),
	        evbuffer_get_length(call->body)) != 0)
		return false;
	call->write = store_queue(call->chat->store, &w.change, chat_on_stored, call);
	chat_key_write_done(&w);
	if (call->write == NULL)
		return false;
	call->state = CHAT_STORING;
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

/* Starts the upstream call; answers the client itself when it cannot. */
static void
chat_forward(struct chat_call *call, const char *method, const char *path, const void *body, size_t body_len)
{
	struct upstream_request request = {
		.method = method,
		.path_and_query = path,
		.client_headers = call->req != NULL ? &call->req->headers : NULL,
		.body = body,
		.body_len = body_len,
		.idempotency_key = call->key != NULL ? call->key->upstream_key : NULL,
	};
	struct request *req;

	if (!upstream_has_key(call->chat->upstream)) {
		if ((req = chat_call_take_request(call)) != NULL)
			reply_no_key(req);
		chat_call_free(call);
		return;
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

bool
chat_take_json_body(struct chat *chat, struct request *req, chat_body_check check, const char **body, size_t *len)
{
	struct evbuffer *input = req->body;
	const char *content_type = request_header(req, "Content-Type");
	const char *why = NULL;

	*len = evbuffer_get_length(input);
	if (*len > (size_t)chat->settings.max_body_bytes) {
		reply_errorf(req, 413, REPLY_RETRY_WONT_HELP,
		    "the request body is larger than limits.max_body_bytes (%ld bytes)", chat->settings.max_body_bytes);
		return false;
	}
	if (*len > 0 && !chat_is_json_content_type(content_type)) {
		reply_error(
		    req, 415, REPLY_RETRY_WONT_HELP, "the request body must be sent as Content-Type: application/json");
		return false;
	}
	*body = (const char *)evbuffer_pullup(input, -1);
	switch (check(*body, *len, &why)) {
	case SESSION_BODY_OK:
		return true;
	case SESSION_BODY_MALFORMED:
		reply_error(req, 400, REPLY_RETRY_WONT_HELP, why);
		return false;
	case SESSION_BODY_INVALID:
	default:
		reply_error(req, 422, REPLY_RETRY_WONT_HELP, why);
		return false;
	}
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
	if (keyed == CHAT_KEY_NEW && (call->key = chat_key_hold(chat, &key)) == NULL) {
		free(path);
		chat_call_fail(call, 503, REPLY_RETRY_MAY_HELP, "llamachatd is out of memory");
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

void
chat_handle_summary(struct chat *chat, struct request *req, const struct caller *caller, const char *raw_id,
    size_t raw_len, const char *query)
{
	struct session_record rec;
	char id[SESSION_ID_MAX + 1];
	const void *stored;
	size_t stored_len;
	enum store_result found;

	if (!chat_take_session_id(req, raw_id, raw_len, id))
		return;
	/* The hit path: the stored JSON goes out straight from the map, with
	 * no copy and no allocation; the read closes right after. */
	found = store_peek(chat->store, id, strlen(id), &stored, &stored_len);
	if (found == STORE_OK && session_record_decode(stored, stored_len, &rec) == 0) {
		if (chat_caller_may_touch(caller, &rec)) {
			request_add_header(req, "Content-Type", "application/json");
			request_add_header(req, "X-Cache", "HIT");
			req->access.cache = "HIT";
			request_reply(req, 200, rec.json, rec.json_len);
			store_peek_done(chat->store);
			chat->counters.cache_hits++;
			return;
		}
		store_peek_done(chat->store);
		chat_reply_not_found(req);
		return;
	}
	store_peek_done(chat->store);
	if (found == STORE_OK)
		log_warnx("chat: the stored record of session %s is damaged; it will be read through", id);
	if (!caller->see_all) {
		chat_reply_not_found(req);
		return;
	}
	chat->counters.cache_misses++;
	chat_start_session_call(chat, req, caller, CHAT_SUMMARY, id, query);
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
	free(chat);
}
