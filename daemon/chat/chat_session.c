/* chat_session: what the chat handlers share about one session: reading
 * its scope and id from a request, who may touch it (read in place, never
 * copied), storing its summary with its owner and usage, and taking a
 * request's JSON body. */
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
#include "shared/shared.h"
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

bool
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
		result = chat_caller_may_touch_id(caller, &rec, id) ? CHAT_SESSION_OWN : CHAT_SESSION_HIDDEN;
	else
		result =
		    caller->see_all || chat_caller_granted(caller, id) ? CHAT_SESSION_UNKNOWN : CHAT_SESSION_HIDDEN;
	store_peek_done(chat->store);
	return result;
}

bool
chat_caller_granted(const struct caller *caller, const char *id)
{
	return caller->granted != NULL && strcmp(caller->granted->session, id) == 0;
}

enum chat_naming
chat_may_name_session(
    struct chat *chat, struct request *req, const struct caller *caller, const char *raw_id, size_t raw_len)
{
	char id[SESSION_ID_MAX + 1];
	struct session_record rec;
	const void *stored;
	size_t stored_len;
	bool held, may = false, unowned = false;

	if (!chat_take_session_id(req, raw_id, raw_len, id))
		return CHAT_NAMING_ANSWERED;
	/* Read in place, never copied: the answer costs the same for a large
	 * record of someone else's as for none at all. */
	held = store_peek(chat->store, id, strlen(id), &stored, &stored_len) == STORE_OK &&
	    session_record_decode(stored, stored_len, &rec) == 0;
	if (held) {
		may = chat_caller_may_touch_id(caller, &rec, id);
		unowned = rec.owner_len == 0;
	}
	store_peek_done(chat->store);
	if (held ? may : caller->see_all || chat_caller_granted(caller, id))
		return CHAT_NAMING_MAY;
	/* Held as another's, it is a 404. Not held, or held with no owner (a
	 * see-all client read it through): in shared mode its owner record
	 * decides (another instance may have made it). */
	if (chat_must_ask_owner(chat, caller, held, unowned))
		return CHAT_NAMING_ASK_OWNER;
	chat_reply_not_found(req);
	return CHAT_NAMING_ANSWERED;
}

bool
chat_must_ask_owner(const struct chat *chat, const struct caller *caller, bool held, bool unowned)
{
	return (!held || unowned) && chat->shared != NULL && caller->name[0] != '\0';
}

bool
chat_caller_may_touch_id(const struct caller *caller, const struct session_record *rec, const char *id)
{
	return chat_caller_may_touch(caller, rec) || (rec->owner_len == 0 && chat_caller_granted(caller, id));
}

/* A question to the owner records, for chat_ask_owner(). */
struct chat_owner_question {
	char caller[CALLER_NAME_MAX + 1];
	char pinned_project[SESSION_SCOPE_MAX + 1]; /* "": no pin */
	void (*then)(enum chat_owner_verdict verdict, const char *owner, void *arg);
	void *arg;
};

static void
chat_on_owner(enum shared_result result, const struct shared_owner *owner, void *arg)
{
	struct chat_owner_question *q = arg;
	enum chat_owner_verdict verdict = CHAT_OWNER_NOT_CALLER;

	if (result == SHARED_UNAVAILABLE)
		verdict = CHAT_OWNER_UNAVAILABLE;
	/* The rule chat_caller_may_touch() applies to a stored record: the
	 * owner, or a client pinned to the session's project. */
	else if (result == SHARED_FOUND &&
	    (strcmp(owner->owner, q->caller) == 0 ||
	        (q->pinned_project[0] != '\0' && strcmp(owner->project_id, q->pinned_project) == 0)))
		verdict = CHAT_OWNER_GRANTS;
	q->then(verdict, verdict == CHAT_OWNER_GRANTS ? owner->owner : NULL, q->arg);
	free(q);
}

struct shared_op *
chat_ask_owner(struct chat *chat, const struct caller *caller, const char *raw_id, size_t raw_len,
    void (*then)(enum chat_owner_verdict verdict, const char *owner, void *arg), void *arg)
{
	struct chat_owner_question *q = calloc(1, sizeof(*q));
	char id[SESSION_ID_MAX + 1];
	struct shared_op *op;

	if (q == NULL || raw_len > SESSION_ID_MAX) {
		free(q);
		return NULL;
	}
	memcpy(id, raw_id, raw_len);
	id[raw_len] = '\0';
	snprintf(q->caller, sizeof(q->caller), "%s", caller->name);
	if (caller->client != NULL && caller->client->project_id != NULL)
		snprintf(q->pinned_project, sizeof(q->pinned_project), "%s", caller->client->project_id);
	q->then = then;
	q->arg = arg;
	if ((op = shared_get_owner(chat->shared, id, chat_on_owner, q)) == NULL)
		free(q);
	return op;
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
	struct chat_outbox_entry outbox;
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
	/* The others learn of it through the outbox, in the same commit. */
	if (chat->shared != NULL && !summary->from_stream) {
		chat_outbox_change(chat, id, &outbox);
		outbox.change.also = summary->also;
		change.also = &outbox.change;
	}
	write = store_queue(chat->store, &change, cb, arg);
out:
	free(encoded);
	if (old_buf != NULL)
		evbuffer_free(old_buf);
	return write;
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
chat_session_project(struct chat *chat, const struct caller *caller, const char *id, char *out)
{
	struct session_record rec;
	const void *stored;
	size_t stored_len;

	out[0] = '\0';
	if (store_peek(chat->store, id, strlen(id), &stored, &stored_len) == STORE_OK &&
	    session_record_decode(stored, stored_len, &rec) == 0)
		chat_copy_field(out, SESSION_SCOPE_MAX + 1, rec.project_id, rec.project_id_len);
	else if (caller->client != NULL && caller->client->project_id != NULL)
		snprintf(out, SESSION_SCOPE_MAX + 1, "%s", caller->client->project_id);
	store_peek_done(chat->store);
}

void
chat_project_for(
    struct chat *chat, const struct caller *caller, const char *raw_id, size_t raw_len, const char *query, char *out)
{
	char id[SESSION_ID_MAX + 1];

	out[0] = '\0';
	if (raw_id != NULL && session_id_is_safe(raw_id, raw_len)) {
		memcpy(id, raw_id, raw_len);
		id[raw_len] = '\0';
		chat_session_project(chat, caller, id, out);
	} else if (raw_id == NULL && uri_query_get(query, "project_id", out, CHAT_PROJECT_MAX + 1) <= 0) {
		out[0] = '\0';
	}
}
