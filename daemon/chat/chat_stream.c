/* chat_stream: POST /api/v1/chat/{id}/messages/stream, relayed as it arrives.
 *
 * The relay carries upstream's event stream to the client unchanged; this
 * file only watches it. When the "stop" event passes, its usage goes into
 * the stored session (committed before the client's answer ends), and a
 * turn whose client left is read to its end all the same, so that it is
 * charged. A background refresh fetches the summary upstream wrote after the turn
 * (the generated title, for one). */
#include <event2/buffer.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/clock.h"
#include "chat/chat_private.h"
#include "gate/gate.h"
#include "base/log.h"
#include "chat/relay.h"
#include "http/reply.h"
#include "http/request.h"
#include "chat/sse.h"
#include "upstream/upstream.h"

struct chat_stream {
	struct chat *chat;
	struct relay *relay; /* set once the answer started */
	char session_id[SESSION_ID_MAX + 1];
	struct caller caller;
	struct chat_scope scope;
	struct sse_parser *parser; /* NULL unless a 2xx event stream is being read */
	char *stop; /* the stop event's data, once it passed */
	size_t stop_len;
	struct store_write *write;
	struct chat_key_hold *key; /* its Idempotency-Key; NULL: none */
	bool ran; /* upstream answered 2xx: a turn runs, and is charged */
	int cut; /* -1, or how upstream's stream broke off (enum relay_cut) */
	double started; /* monotonic seconds when the request arrived */
	bool relayed; /* its first event (byte) went out */
	/* Shared mode: its key is claimed in Redis (given back at the end
	 * unless the turn ran), and while the claim is asked, what the relay
	 * will need. */
	bool claim_shared;
	bool turn_ran_shared; /* the key's use is recorded in Redis */
	struct request *waiting; /* the client's request while the claim is asked; NULL: none (gone) */
	char *path;
	char project[CHAT_PROJECT_MAX + 1];
};

static void
stream_on_event(const char *event, const char *data, size_t len, void *arg)
{
	struct chat_stream *stream = arg;
	json_t *doc;

	(void)event;
	/* Only the stop event matters; skip parsing anything that cannot be it. */
	if (memmem(data, len, "\"stop\"", 6) == NULL)
		return;
	doc = json_loadb(data, len, 0, NULL);
	if (json_is_object(doc) && json_is_string(json_object_get(doc, "type")) &&
	    strcmp(json_string_value(json_object_get(doc, "type")), "stop") == 0) {
		unsigned long long add[SESSION_LEDGER_FIELD_COUNT] = { 0 };
		if (session_stop_usage(data, len, add) == 0)
			relay_note_usage(stream->relay, (long long)add[SESSION_LEDGER_INPUT_TOKENS],
			    (long long)add[SESSION_LEDGER_OUTPUT_TOKENS]);
		free(stream->stop);
		stream->stop = malloc(len);
		if (stream->stop != NULL) {
			memcpy(stream->stop, data, len);
			stream->stop_len = len;
		}
	}
	json_decref(doc);
}

static void
stream_on_start(struct relay *relay, long status, void *arg)
{
	struct chat_stream *stream = arg;

	stream->relay = relay;
	if (status < 200 || status > 299)
		return;
	stream->ran = true;
	stream->parser = sse_parser_new(stream->chat->settings.max_event_bytes);
	/* The turn runs: its key is used for good, whatever comes next. */
	if (stream->key != NULL && stream->claim_shared) {
		chat_key_answer_shared(stream->chat, stream->key, (int)status, "", 0, NULL, NULL);
		stream->turn_ran_shared = true;
	}
	if (stream->key != NULL) {
		struct chat_key_write w;
		if (chat_key_write_init(&w, stream->key, IDEMPOTENCY_TURN, 0, NULL, 0) != 0 ||
		    store_queue(stream->chat->store, &w.change, NULL, NULL) == NULL)
			log_warnx(
			    "chat: could not record the Idempotency-Key of a turn of session %s", stream->session_id);
		chat_key_write_done(&w);
	}
}

static void
stream_on_data(struct relay *relay, const char *data, size_t len, void *arg)
{
	struct chat_stream *stream = arg;

	(void)relay;
	if (!stream->relayed) {
		/* The latency a chat user feels: request to first event. */
		stream->relayed = true;
		histogram_observe(&stream->chat->counters.first_event, clock_monotonic_s() - stream->started);
	}
	if (stream->parser == NULL)
		return;
	if (sse_parser_feed(stream->parser, data, len, stream_on_event, stream) != 0) {
		/* The bytes still reach the client; only the usage is lost. */
		log_warnx("chat: an event of session %s's stream is over %zu bytes; its usage will not be recorded",
		    stream->session_id, stream->chat->settings.max_event_bytes);
		sse_parser_free(stream->parser);
		stream->parser = NULL;
	}
}

/* Ends the client's answer: whole, or cut as upstream's was. */
static void
stream_end(struct relay *relay, int cut)
{
	if (cut < 0)
		relay_finish(relay);
	else
		relay_cut(relay, (enum relay_cut)cut);
}

static void
stream_on_usage_stored(enum store_result result, void *arg)
{
	struct chat_stream *stream = arg;

	stream->write = NULL;
	if (result != STORE_OK) {
		stream->chat->counters.store_failures++;
		log_warnx("chat: could not store the usage of session %s's turn", stream->session_id);
	} else if (stream->chat->shared != NULL) {
		chat_outbox_kick(stream->chat);
	}
	stream_end(stream->relay, stream->cut);
}

/* A turn ran upstream and its usage cannot be charged: said, and counted. */
static void
stream_unmetered(struct chat_stream *stream, const char *why)
{
	stream->chat->counters.unmetered_turns++;
	log_warnx("chat: a turn of client %s in session %s is not charged: %s",
	    stream->caller.name[0] != '\0' ? stream->caller.name : "-", stream->session_id, why);
}

/* Puts the stop event's usage into the stored session, and into the
 * caller's ledger in the same commit. Returns true when a write is queued
 * (the answer ends once it commits). */
static bool
stream_record_usage(struct chat_stream *stream)
{
	struct evbuffer *buf = evbuffer_new();
	struct session_record rec;
	unsigned long long add[SESSION_LEDGER_FIELD_COUNT] = { 0 };
	struct chat_usage usage;
	char org[SESSION_SCOPE_MAX + 1], project[SESSION_SCOPE_MAX + 1];
	char *updated = NULL;

	if (session_stop_usage(stream->stop, stream->stop_len, add) != 0) {
		stream_unmetered(stream, "its stop event carries no usable usage");
		if (buf != NULL)
			evbuffer_free(buf);
		return false;
	}
	if (buf != NULL && chat_load_record(stream->chat, stream->session_id, buf, &rec)) {
		snprintf(org, sizeof(org), "%.*s", (int)rec.organization_id_len,
		    rec.organization_id ? rec.organization_id : "");
		snprintf(
		    project, sizeof(project), "%.*s", (int)rec.project_id_len, rec.project_id ? rec.project_id : "");
		updated = session_apply_stop(rec.json, rec.json_len, stream->stop, stream->stop_len, clock_unix_us());
	} else {
		/* A session this store does not hold (a see-all caller's): the
		 * budget still pays; the ledger lives with stored sessions. */
		chat_count_usage(stream->chat, stream->caller.name, stream->scope.organization_id,
		    stream->scope.project_id, add, &usage);
		log_info("chat: session %s is not stored here: its turn is charged to client %s's budget, not to the "
		         "ledger",
		    stream->session_id, stream->caller.name[0] != '\0' ? stream->caller.name : "-");
	}
	if (updated != NULL) {
		struct chat_summary summary = {
			.json = updated,
			.len = strlen(updated),
			.fallback = &stream->scope,
			.usage = &usage,
		};
		/* The turn counts against the budgets when its stop arrives. */
		chat_count_usage(stream->chat, stream->caller.name, org, project, add, &usage);
		stream->write = chat_store_summary(stream->chat, &summary, stream_on_usage_stored, stream);
	}
	free(updated);
	if (buf != NULL)
		evbuffer_free(buf);
	return stream->write != NULL;
}

static void
stream_on_upstream_done(struct relay *relay, int cut, void *arg)
{
	struct chat_stream *stream = arg;
	bool complete = cut < 0;

	if (stream->parser == NULL && stream->stop == NULL && stream->ran)
		stream_unmetered(stream, "its events could not be read (one was over limits.max_event_bytes)");
	else if (stream->stop == NULL && stream->ran)
		stream_unmetered(stream,
		    complete ? "upstream ended the stream without a stop event"
		             : "upstream cut the stream off before its stop event");
	if (stream->stop != NULL) {
		/* The turn ran: upstream's summary changed (title, usage). */
		chat_refresh_summary(stream->chat, stream->session_id);
		stream->cut = cut;
		if (stream_record_usage(stream))
			return;
	}
	stream_end(relay, cut);
}

static void
stream_on_close(void *arg)
{
	struct chat_stream *stream = arg;

	store_write_forget(stream->write); /* it still commits */
	if (stream->claim_shared && !stream->turn_ran_shared && stream->key != NULL)
		chat_key_release_shared(stream->chat, stream->key);
	chat_key_release(stream->key);
	free(stream->path);
	sse_parser_free(stream->parser);
	free(stream->stop);
	stream->chat->pending--;
	free(stream);
}

static const struct relay_observer stream_observer = {
	.on_start = stream_on_start,
	.on_data = stream_on_data,
	.on_upstream_done = stream_on_upstream_done,
	.on_close = stream_on_close,
	/* A client that leaves before the stop event still pays for its turn. */
	.drain_when_client_gone = true,
};

/* Starts the relay of the turn: upstream's stream goes to req's client. */
static void
stream_relay(struct chat_stream *stream, struct request *req)
{
	struct upstream_request request = { 0 };
	size_t body_len = evbuffer_get_length(req->body);

	request.method = "POST";
	request.path_and_query = stream->path;
	request.client_headers = &req->headers;
	request.body = evbuffer_pullup(req->body, -1);
	request.body_len = body_len;
	request.idempotency_key = stream->key != NULL ? stream->key->upstream_key : NULL;
	request.project_id = stream->project;
	request.send_once = true; /* a turn is never run twice */
	/* A stream that reached upstream ran a turn: retrying would run another. */
	relay_start(stream->chat->relays, req, &request, true, &stream_observer, stream);
}

/* The client left while the key's claim was asked: nothing ran. */
static void
stream_on_gone_while_claiming(void *arg)
{
	struct chat_stream *stream = arg;

	stream->waiting = NULL;
}

/* What the shared record said of the turn's key. */
static void
stream_on_claimed(enum shared_claim result, int status, const char *body, size_t len, void *arg)
{
	struct chat_stream *stream = arg;
	struct request *req = stream->waiting;

	(void)status;
	(void)body;
	(void)len;
	stream->waiting = NULL;
	stream->claim_shared = result == SHARED_CLAIMED;
	if (req != NULL)
		request_set_on_gone(req, NULL, NULL);
	if (req != NULL && (result == SHARED_CLAIMED || result == SHARED_CLAIM_UNAVAILABLE)) {
		stream_relay(stream, req);
		return;
	}
	if (req != NULL) {
		/* A turn cannot be replayed: running, used, or another request's. */
		if (result == SHARED_CLAIM_BUSY)
			request_add_header(req, "Retry-After", "1");
		reply_error(req, 409, result == SHARED_CLAIM_BUSY ? REPLY_RETRY_MAY_HELP : REPLY_RETRY_WONT_HELP,
		    result == SHARED_CLAIM_BUSY
		        ? "a turn with this Idempotency-Key is running; a turn cannot be replayed"
		        : "this Idempotency-Key was used already; a turn cannot be replayed");
	}
	stream_on_close(stream);
}

void
chat_handle_stream(struct chat *chat, struct request *req, const struct caller *caller, const char *raw_id,
    size_t raw_len, const char *query)
{
	size_t body_len;
	const char *body, *why = NULL;
	struct chat_stream *stream;
	struct chat_scope scope;
	char id[SESSION_ID_MAX + 1];
	struct chat_key_hold key;
	enum chat_key_result keyed;
	char *path;

	if (!chat_take_session_id(req, raw_id, raw_len, id) ||
	    !chat_take_json_body(chat, req, session_check_stream_body, &body, &body_len))
		return;
	if (chat_read_scope(query, &scope, &why) != 0) {
		reply_error(req, 400, REPLY_RETRY_WONT_HELP, why);
		return;
	}
	if (chat_visibility_of(chat, caller, id) == CHAT_SESSION_HIDDEN) {
		chat_reply_not_found(req);
		return;
	}
	if ((keyed = chat_key_check(chat, req, caller, query, body, body_len, IDEMPOTENCY_TURN, &key)) ==
	        CHAT_KEY_ANSWERED ||
	    !gate_may_go_upstream(req, caller))
		return;
	path = chat_upstream_path(id, "/messages/stream", query);
	stream = calloc(1, sizeof(*stream));
	if (path == NULL || stream == NULL ||
	    (keyed == CHAT_KEY_NEW && (stream->key = chat_key_hold(chat, &key)) == NULL)) {
		free(path);
		free(stream);
		reply_error(req, 503, REPLY_RETRY_MAY_HELP, "llamachatd is out of memory");
		return;
	}
	stream->chat = chat;
	stream->cut = -1;
	stream->started = req->access.started > 0 ? req->access.started : clock_monotonic_s();
	stream->caller = *caller;
	stream->caller.granted = NULL; /* it points into the request */
	stream->scope = scope;
	memcpy(stream->session_id, id, sizeof(id));
	chat->pending++;
	chat->counters.streams++;
	stream->path = path;
	/* A turn goes with the key of the session's project. */
	chat_session_project(chat, caller, id, stream->project);
	if (stream->key != NULL && chat->shared != NULL) {
		/* The key is every instance's: claimed in Redis first. */
		stream->waiting = req;
		request_set_on_gone(req, stream_on_gone_while_claiming, stream);
		if (chat_key_claim_shared(chat, stream->key, stream_on_claimed, stream) != NULL)
			return;
		stream->waiting = NULL;
		request_set_on_gone(req, NULL, NULL);
	}
	stream_relay(stream, req);
}
