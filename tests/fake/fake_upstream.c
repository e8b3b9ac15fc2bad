/* fake_upstream: a stand-in for the LlamaCloud chat API on loopback, for tests.
 *
 * Speaks the chat resource of api/llamacloud-chat.md (create, list is not
 * needed, summary, history, delete, message streams) plus one other path
 * (GET /api/v1/projects) and a sub-resource of a session (GET and DELETE
 * /api/v1/chat/{id}/files) for pass-through tests. It routes the way a
 * FastAPI server does: on the wholly percent-decoded path, a trailing slash
 * taken as the same route; and a create whose Idempotency-Key it has seen
 * answers with the session that key made. It checks the bearer key,
 * records what it received, and takes faults and controls:
 *   GET  /_fake/stats    counts (requests, connections accepted, streams...),
 *                        the last session created, the last API request
 *   POST /_fake/fault    {"method": "POST", "path": P, "mode": M,
 *                        "status":N, "body":"...", "ms":N, "bytes":N,
 *                        "count":N}: the next count API requests with that
 *                        method and path go wrong as M says (P is a path
 *                        without query; a "{id}" segment in it matches any
 *                        one segment). Up to 8 faults wait at once; a new
 *                        one for the same method and path replaces the old.
 *                          status   answer status with body (+ Retry-After,
 *                                   Set-Cookie, and Location on 3xx)
 *                          delay    answer after ms milliseconds
 *                          invalid  answer 200 with JSON that is no Session
 *                          padded   a create whose Session has a field of
 *                                   bytes bytes
 *                          hold     a stream sends its first event, then
 *                                   waits for POST /_fake/release
 *                                   (stats: streams_held counts them)
 *                          flood    a stream sends bytes bytes of deltas as
 *                                   fast as it is read, then stops
 *                          cut      a stream sends one event, then drops the
 *                                   connection
 *                          reset    the request is read, then the connection
 *                                   is dropped without an answer
 *   POST /_fake/release  lets every held stream go on: {"released": n > 0,
 *                        "count": n}
 *   POST /_fake/now      from now on, sessions carry the real time (else a
 *                        fixed clock in April 2026 that ticks 1 ms a change)
 *   POST /_fake/turn?id= runs a turn on a session without a stream (the
 *                        title, usage and history change upstream only)
 * Usage: fake_upstream --port-file FILE --key KEY [--key KEY2 ...] */
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <sys/queue.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define MAX_SESSIONS 8192
#define MAX_FAULTS 8
#define MAX_HELD 10000
#define FLOOD_CHUNK 65536
#define EPOCH_US 1776859200000000ULL /* 2026-04-22T12:00:00 */

struct fault {
	char method[8];
	char path[256];
	char mode[16];
	int status;
	char *body;
	char retry_after[16];
	long ms;
	long bytes;
	int count;
};

/* A message stream in progress. */
struct stream {
	struct evhttp_request *req; /* NULL once its connection is gone */
	char id[128];
	char prompt[256];
	long flood_left;
	bool finished;
};

static struct {
	struct event_base *base;
	const char *keys[8]; /* the keys it accepts */
	int key_count;
	json_t *sessions; /* id -> Session object */
	json_t *histories; /* id -> array of events */
	long next_id;
	uint64_t clock_us; /* each change moves it on, so sessions order by it */
	bool real_time; /* after POST /_fake/now: times are the real clock's */
	long connections, api_requests, creates, summaries, histories_read, deletes;
	long streams, streams_completed, streams_aborted, streams_held, stream_bytes, subresources;
	json_t *idempotency; /* Idempotency-Key -> session id: creates dedupe on it */
	json_t *session_keys; /* session id -> the Authorization it was created with */
	long key_mismatches; /* calls about a session carrying another key than its create */
	char last_session_id[64];
	json_t *last;
	struct fault faults[MAX_FAULTS]; /* a slot is free when its count is 0 */
	struct stream *held[MAX_HELD];
} fake;

static void
send_json(struct evhttp_request *req, int status, json_t *doc)
{
	struct evbuffer *body = evbuffer_new();
	char *text = json_dumps(doc, JSON_COMPACT | JSON_PRESERVE_ORDER);

	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "application/json");
	evbuffer_add(body, text, strlen(text));
	evhttp_send_reply(req, status, NULL, body);
	evbuffer_free(body);
	free(text);
	json_decref(doc);
}

static void
send_detail(struct evhttp_request *req, int status, const char *detail)
{
	send_json(req, status, json_pack("{s:s}", "detail", detail));
}

static const char *
method_name(enum evhttp_cmd_type cmd)
{
	switch (cmd) {
	case EVHTTP_REQ_GET:
		return "GET";
	case EVHTTP_REQ_POST:
		return "POST";
	case EVHTTP_REQ_DELETE:
		return "DELETE";
	case EVHTTP_REQ_PUT:
		return "PUT";
	case EVHTTP_REQ_PATCH:
		return "PATCH";
	default:
		return "OTHER";
	}
}

static void
record_request(struct evhttp_request *req)
{
	json_t *headers = json_object();
	struct evkeyval *h;
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	size_t len = evbuffer_get_length(in);

	TAILQ_FOREACH(h, evhttp_request_get_input_headers(req), next) {
		char lower[128];
		size_t i;
		for (i = 0; h->key[i] != '\0' && i < sizeof(lower) - 1; i++)
			lower[i] = (char)(h->key[i] >= 'A' && h->key[i] <= 'Z' ? h->key[i] + 32 : h->key[i]);
		lower[i] = '\0';
		json_object_set_new(headers, lower, json_string(h->value));
	}
	json_decref(fake.last);
	fake.last = json_pack("{s:s,s:s,s:o,s:s%}", "method", method_name(evhttp_request_get_command(req)), "uri",
	    evhttp_request_get_uri(req), "headers", headers, "body",
	    len > 0 ? (const char *)evbuffer_pullup(in, -1) : "", len);
}

/* The next moment of the fake's clock, as upstream writes times. */
static json_t *
next_time(void)
{
	uint64_t us = EPOCH_US + (fake.clock_us += 1000);
	if (fake.real_time) {
		struct timespec now;
		clock_gettime(CLOCK_REALTIME, &now);
		us = (uint64_t)now.tv_sec * 1000000u + (uint64_t)now.tv_nsec / 1000u;
	}
	time_t t = (time_t)(us / 1000000u);
	struct tm tm;
	char text[40];
	size_t used;

	gmtime_r(&t, &tm);
	used = strftime(text, sizeof(text), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(text + used, sizeof(text) - used, ".%06u", (unsigned)(us % 1000000u));
	return json_string(text);
}

static json_t *
new_session(json_t *index_ids)
{
	char id[64];

	snprintf(id, sizeof(id), "ses-%06ld", ++fake.next_id);
	return json_pack("{s:o,s:s,s:n,s:O,s:n,s:s,s:{s:[i,i,i],s:s}}", "last_updated_at", next_time(), "session_id",
	    id, "generated_title", "index_ids", index_ids != NULL ? index_ids : json_null(), "job_metadata",
	    "shared_access", "query", "x_future_field", "kept", 1, 2, 3, "note", "unknown fields must survive");
}

static void
handle_create(struct evhttp_request *req, long padding)
{
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	json_t *body = NULL, *session;
	json_error_t error;
	const char *id, *key = evhttp_find_header(evhttp_request_get_input_headers(req), "Idempotency-Key");
	json_t *seen = key != NULL ? json_object_get(fake.idempotency, key) : NULL;

	/* An upstream that honours Idempotency-Key answers a key it has seen
	 * with the session that key made. */
	if (seen != NULL && json_object_get(fake.sessions, json_string_value(seen)) != NULL) {
		send_json(req, 200, json_incref(json_object_get(fake.sessions, json_string_value(seen))));
		return;
	}
	if (evbuffer_get_length(in) > 0) {
		body = json_loadb((const char *)evbuffer_pullup(in, -1), evbuffer_get_length(in), 0, &error);
		if (!json_is_object(body)) {
			json_decref(body);
			send_detail(req, 422, "body must be an object");
			return;
		}
	}
	session = new_session(body != NULL ? json_object_get(body, "index_ids") : NULL);
	json_decref(body);
	if (padding > 0) {
		char *pad = malloc((size_t)padding + 1);
		memset(pad, 'p', (size_t)padding);
		pad[padding] = '\0';
		json_object_set_new(session, "padding", json_string(pad));
		free(pad);
	}
	id = json_string_value(json_object_get(session, "session_id"));
	if (json_object_size(fake.sessions) < MAX_SESSIONS) {
		json_object_set(fake.sessions, id, session);
		json_object_set_new(fake.histories, id, json_array());
	}
	fake.creates++;
	json_object_set_new(fake.session_keys, id,
	    json_string(evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization")));
	if (key != NULL)
		json_object_set_new(fake.idempotency, key, json_string(id));
	snprintf(fake.last_session_id, sizeof(fake.last_session_id), "%s", id);
	send_json(req, 200, session);
}

/* What a finished turn does to a session upstream. */
static json_t *
run_turn(const char *id, const char *prompt)
{
	json_t *session = json_object_get(fake.sessions, id);
	/* The usage of this run alone, as the stop event reports it. */
	json_t *usage = json_pack("{s:i,s:I,s:i,s:i}", "duration_ms", 1234, "total_input_tokens",
	    (json_int_t)(100 + strlen(prompt)), "total_output_tokens", 7, "turns", 1);
	json_t *new_meta = json_pack("{s:n,s:n,s:b}", "error", "export_config_ids", "is_error", 0);

	json_object_update(new_meta, usage);
	if (json_is_null(json_object_get(session, "generated_title")))
		json_object_set_new(session, "generated_title", json_string(prompt));
	json_object_set_new(session, "job_metadata", new_meta);
	json_object_set_new(session, "last_updated_at", next_time());
	json_array_append_new(
	    json_object_get(fake.histories, id), json_pack("{s:s,s:s}", "type", "user_input", "content", prompt));
	return json_pack("{s:s,s:n,s:b,s:o}", "type", "stop", "error", "is_error", 0, "usage", usage);
}

static void
send_chunk(struct stream *s, const char *text)
{
	struct evbuffer *buf = evbuffer_new();

	evbuffer_add(buf, text, strlen(text));
	fake.stream_bytes += (long)strlen(text);
	evhttp_send_reply_chunk(s->req, buf);
	evbuffer_free(buf);
}

static void
stream_free(struct stream *s)
{
	for (int i = 0; i < MAX_HELD; i++)
		if (fake.held[i] == s)
			fake.held[i] = NULL;
	free(s);
}

/* Keeps s back until the next release; false when too many are held. */
static bool
stream_hold(struct stream *s)
{
	for (int i = 0; i < MAX_HELD; i++) {
		if (fake.held[i] == NULL) {
			fake.held[i] = s;
			fake.streams_held++;
			return true;
		}
	}
	return false;
}

/* The connection of a stream went away before the stream ended. */
static void
stream_on_close(struct evhttp_connection *evcon, void *arg)
{
	struct stream *s = arg;

	(void)evcon;
	if (!s->finished)
		fake.streams_aborted++;
	if (s->req != NULL && evhttp_request_get_connection(s->req) == NULL)
		evhttp_send_reply_end(s->req); /* frees the detached request */
	stream_free(s);
}

/* Sends the rest of a normal turn and ends the stream. */
static void
stream_finish(struct stream *s)
{
	json_t *stop = run_turn(s->id, s->prompt);
	char *text = json_dumps(stop, JSON_COMPACT);
	char line[1024];

	send_chunk(s, "event: delta\r\ndata: {\"type\":\"text_delta\",\"content\":\"lo\"}\r\n\r\n");
	send_chunk(s, ": keep-alive\n\nevent: message\ndata: {\"type\":\"text\",\"content\":\"Hello\"}\n\n");
	snprintf(line, sizeof(line), "event: message\ndata: %s\n\n", text);
	send_chunk(s, line);
	free(text);
	json_decref(stop);
	s->finished = true;
	fake.streams_completed++;
	evhttp_connection_set_closecb(evhttp_request_get_connection(s->req), NULL, NULL);
	evhttp_send_reply_end(s->req);
	stream_free(s);
}

static void
stream_flood_more(struct evhttp_connection *evcon, void *arg)
{
	struct stream *s = arg;
	struct evbuffer *buf;
	static char piece[FLOOD_CHUNK];
	size_t n;

	(void)evcon;
	if (s->flood_left <= 0) {
		stream_finish(s);
		return;
	}
	if (piece[0] == '\0') {
		/* One delta event, padded to the chunk size. */
		const char *head = "event: delta\ndata: {\"type\":\"text_delta\",\"content\":\"";
		const char *tail = "\"}\n\n";
		memset(piece, 'x', sizeof(piece));
		memcpy(piece, head, strlen(head));
		memcpy(piece + sizeof(piece) - strlen(tail), tail, strlen(tail));
	}
	n = sizeof(piece);
	buf = evbuffer_new();
	evbuffer_add(buf, piece, n);
	s->flood_left -= (long)n;
	fake.stream_bytes += (long)n;
	/* The next piece goes once this one is written: bounded memory here too. */
	evhttp_send_reply_chunk_with_cb(s->req, buf, stream_flood_more, s);
	evbuffer_free(buf);
}

static void
stream_cut(evutil_socket_t fd, short what, void *arg)
{
	struct stream *s = arg;
	struct evhttp_connection *evcon = s->req != NULL ? evhttp_request_get_connection(s->req) : NULL;

	(void)fd;
	(void)what;
	if (evcon != NULL) {
		evhttp_connection_set_closecb(evcon, NULL, NULL);
		evhttp_connection_free(evcon);
	}
	stream_free(s);
}

static void
handle_stream(struct evhttp_request *req, const char *id, const char *mode, long bytes)
{
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	json_t *body = json_loadb((const char *)evbuffer_pullup(in, -1), evbuffer_get_length(in), 0, NULL);
	const char *prompt = json_string_value(json_object_get(body, "prompt"));
	struct stream *s;

	if (json_object_get(fake.sessions, id) == NULL) {
		json_decref(body);
		send_detail(req, 404, "Session not found");
		return;
	}
	if (prompt == NULL) {
		json_decref(body);
		send_json(req, 422, json_pack("{s:[{s:s}]}", "detail", "msg", "prompt is required"));
		return;
	}
	s = calloc(1, sizeof(*s));
	s->req = req;
	snprintf(s->id, sizeof(s->id), "%s", id);
	snprintf(s->prompt, sizeof(s->prompt), "%s", prompt);
	json_decref(body);
	fake.streams++;
	evhttp_connection_set_closecb(evhttp_request_get_connection(req), stream_on_close, s);
	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "text/event-stream");
	evhttp_send_reply_start(req, 200, NULL);
	send_chunk(s, "event: delta\ndata: {\"type\":\"text_delta\",\"content\":\"Hel\"}\n\n");
	if (strcmp(mode, "hold") == 0 && stream_hold(s)) {
		/* held until POST /_fake/release */
	} else if (strcmp(mode, "flood") == 0) {
		s->flood_left = bytes;
		stream_flood_more(NULL, s);
	} else if (strcmp(mode, "cut") == 0) {
		/* Drop the connection mid-stream, as a crashed upstream would,
		 * once the first event is surely on the wire. */
		struct timeval soon = { 0, 100000 };
		event_base_once(fake.base, -1, EV_TIMEOUT, stream_cut, s, &soon);
	} else {
		stream_finish(s);
	}
}

/* Splits "/api/v1/chat/{id}{rest}" (decoded already) into the id and the rest. */
static bool
chat_path(const char *path, char *id, size_t id_size, const char **rest)
{
	const char *start = path + strlen("/api/v1/chat/");
	size_t len;

	if (strncmp(path, "/api/v1/chat/", strlen("/api/v1/chat/")) != 0)
		return false;
	len = strcspn(start, "/");
	if (len == 0 || len >= id_size)
		return false;
	memcpy(id, start, len);
	id[len] = '\0';
	*rest = start + len;
	return true;
}

/* The path as a FastAPI upstream routes on it: wholly percent-decoded, and
 * a trailing slash taken as the same route. A new string the caller frees. */
static char *
routed_path(struct evhttp_request *req)
{
	char *path = evhttp_uridecode(evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req)), 0, NULL);
	size_t len = strlen(path);

	if (len > 1 && path[len - 1] == '/')
		path[len - 1] = '\0';
	return path;
}

static void
serve_api_path(struct evhttp_request *req, const char *path, const char *mode, long bytes)
{
	const char *auth = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");
	enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
	char expected[512], id[128];
	const char *rest;
	json_t *session;
	bool known = false;

	for (int i = 0; i < fake.key_count && auth != NULL; i++) {
		snprintf(expected, sizeof(expected), "Bearer %s", fake.keys[i]);
		known = known || strcmp(auth, expected) == 0;
	}
	if (!known) {
		send_detail(req, 401, "Invalid API key");
		return;
	}
	if (strcmp(path, "/api/v1/chat") == 0 && cmd == EVHTTP_REQ_POST) {
		handle_create(req, strcmp(mode, "padded") == 0 ? bytes : 0);
		return;
	}
	if (strcmp(path, "/api/v1/projects") == 0 && cmd == EVHTTP_REQ_GET) {
		send_json(req, 200, json_pack("{s:[{s:s}]}", "projects", "id", "prj-1"));
		return;
	}
	if (!chat_path(path, id, sizeof(id), &rest)) {
		send_detail(req, 404, "Not Found");
		return;
	}
	session = json_object_get(fake.sessions, id);
	/* Every call about a session goes with the key of its project, the
	 * one it was created with. */
	if (json_object_get(fake.session_keys, id) != NULL &&
	    strcmp(json_string_value(json_object_get(fake.session_keys, id)), auth) != 0)
		fake.key_mismatches++;
	/* A sub-resource the daemon has no handler for. */
	if (strcmp(rest, "/files") == 0 && session != NULL) {
		fake.subresources++;
		if (cmd == EVHTTP_REQ_DELETE)
			evhttp_send_reply(req, 204, NULL, NULL);
		else
			send_json(req, 200, json_pack("{s:s,s:[]}", "session_id", id, "files"));
		return;
	}
	if (strcmp(rest, "/messages/stream") == 0 && cmd == EVHTTP_REQ_POST) {
		handle_stream(req, id, mode, bytes);
		return;
	}
	if (strcmp(rest, "/summary") == 0 && cmd == EVHTTP_REQ_GET) {
		fake.summaries++;
	} else if (rest[0] == '\0' && cmd == EVHTTP_REQ_GET) {
		fake.histories_read++;
	} else if (rest[0] == '\0' && cmd == EVHTTP_REQ_DELETE) {
		fake.deletes++;
	} else {
		send_detail(req, 404, "Not Found");
		return;
	}
	if (session == NULL) {
		send_detail(req, 404, "Session not found");
		return;
	}
	if (cmd == EVHTTP_REQ_DELETE) {
		json_object_del(fake.sessions, id);
		json_object_del(fake.histories, id);
		evhttp_send_reply(req, 204, NULL, NULL);
	} else if (rest[0] == '\0') {
		json_t *full = json_deep_copy(session);
		json_object_set(full, "events", json_object_get(fake.histories, id));
		send_json(req, 200, full);
	} else {
		send_json(req, 200, json_incref(session));
	}
}

static void
serve_api(struct evhttp_request *req, const char *mode, long bytes)
{
	char *path = routed_path(req);

	serve_api_path(req, path, mode, bytes);
	free(path);
}

static void
reply_after_delay(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	serve_api(arg, "", 0);
}

/* True when path (no query) matches pattern, where a "{id}" segment of the
 * pattern stands for any one non-empty segment. */
static bool
path_matches(const char *pattern, const char *path)
{
	while (*pattern != '\0' && *path != '\0') {
		if (strncmp(pattern, "{id}", 4) == 0) {
			size_t seg = strcspn(path, "/");
			if (seg == 0)
				return false;
			pattern += 4;
			path += seg;
		} else if (*pattern++ != *path++) {
			return false;
		}
	}
	return *pattern == '\0' && *path == '\0';
}

/* The pending fault for this request's method and path, or NULL. */
static struct fault *
find_fault(struct evhttp_request *req)
{
	const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
	const char *method = method_name(evhttp_request_get_command(req));

	for (int i = 0; i < MAX_FAULTS; i++) {
		struct fault *f = &fake.faults[i];
		if (f->count > 0 && strcmp(f->method, method) == 0 && path_matches(f->path, path))
			return f;
	}
	return NULL;
}

/* Applies the pending fault for this request, if any; returns true when it
 * answered. */
static bool
apply_fault(struct evhttp_request *req)
{
	struct fault *f = find_fault(req);
	struct evkeyvalq *out = evhttp_request_get_output_headers(req);

	if (f == NULL)
		return false;
	f->count--;
	if (strcmp(f->mode, "status") == 0) {
		struct evbuffer *body = evbuffer_new();
		const char *text = f->body != NULL ? f->body : "{}";
		evhttp_add_header(out, "Content-Type", "application/json");
		evhttp_add_header(out, "Retry-After", f->retry_after[0] != '\0' ? f->retry_after : "7");
		evhttp_add_header(out, "Set-Cookie", "upstream=secret");
		if (f->status >= 300 && f->status < 400) /* a follower would come back here */
			evhttp_add_header(out, "Location", "/api/v1/chat/ses-redirected/summary");
		evbuffer_add(body, text, strlen(text));
		evhttp_send_reply(req, f->status, NULL, body);
		evbuffer_free(body);
		return true;
	}
	if (strcmp(f->mode, "reset") == 0) {
		/* The request was read; the connection dies without an answer. */
		evhttp_connection_free(evhttp_request_get_connection(req));
		return true;
	}
	if (strcmp(f->mode, "invalid") == 0) {
		send_json(req, 200, json_pack("{s:s}", "hello", "not a session"));
		return true;
	}
	if (strcmp(f->mode, "delay") == 0) {
		struct timeval tv = { f->ms / 1000, (f->ms % 1000) * 1000 };
		event_base_once(fake.base, -1, EV_TIMEOUT, reply_after_delay, req, &tv);
		return true;
	}
	serve_api(req, f->mode, f->bytes);
	return true;
}

static void
handle_fault(struct evhttp_request *req)
{
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	json_t *doc = json_loadb((const char *)evbuffer_pullup(in, -1), evbuffer_get_length(in), 0, NULL);
	const char *mode = json_string_value(json_object_get(doc, "mode"));
	const char *method = json_string_value(json_object_get(doc, "method"));
	const char *path = json_string_value(json_object_get(doc, "path"));
	const char *body = json_string_value(json_object_get(doc, "body"));
	struct fault *slot = NULL;

	if (mode == NULL || method == NULL || path == NULL || strlen(method) >= sizeof(slot->method) ||
	    strlen(path) >= sizeof(slot->path)) {
		json_decref(doc);
		send_detail(req, 400, "a fault needs a mode, a method and a path");
		return;
	}
	/* The same method and path: replace. Else the first free slot. */
	for (int i = 0; i < MAX_FAULTS && slot == NULL; i++)
		if (fake.faults[i].count > 0 && strcmp(fake.faults[i].method, method) == 0 &&
		    strcmp(fake.faults[i].path, path) == 0)
			slot = &fake.faults[i];
	for (int i = 0; i < MAX_FAULTS && slot == NULL; i++)
		if (fake.faults[i].count <= 0)
			slot = &fake.faults[i];
	if (slot == NULL) {
		json_decref(doc);
		send_detail(req, 409, "too many faults are waiting");
		return;
	}
	free(slot->body);
	memset(slot, 0, sizeof(*slot));
	snprintf(slot->method, sizeof(slot->method), "%s", method);
	snprintf(slot->path, sizeof(slot->path), "%s", path);
	snprintf(slot->mode, sizeof(slot->mode), "%s", mode);
	slot->status = (int)json_integer_value(json_object_get(doc, "status"));
	slot->ms = (long)json_integer_value(json_object_get(doc, "ms"));
	slot->bytes = (long)json_integer_value(json_object_get(doc, "bytes"));
	slot->count =
	    json_object_get(doc, "count") != NULL ? (int)json_integer_value(json_object_get(doc, "count")) : 1;
	slot->body = body != NULL ? strdup(body) : NULL;
	if (json_string_value(json_object_get(doc, "retry_after")) != NULL)
		snprintf(slot->retry_after, sizeof(slot->retry_after), "%s",
		    json_string_value(json_object_get(doc, "retry_after")));
	json_decref(doc);
	send_json(req, 200, json_pack("{s:b}", "ok", 1));
}

static void
handle_turn(struct evhttp_request *req)
{
	struct evkeyvalq params;
	const char *id;

	evhttp_parse_query_str(evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req)), &params);
	id = evhttp_find_header(&params, "id");
	if (id == NULL || json_object_get(fake.sessions, id) == NULL) {
		send_detail(req, 404, "Session not found");
	} else {
		json_decref(run_turn(id, "a turn run elsewhere"));
		send_json(req, 200, json_pack("{s:b}", "ok", 1));
	}
	evhttp_clear_headers(&params);
}

static json_t *
stats(void)
{
	return json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:s,s:O}", "connections",
	    (json_int_t)fake.connections, "api_requests", (json_int_t)fake.api_requests, "creates",
	    (json_int_t)fake.creates, "summaries", (json_int_t)fake.summaries, "histories",
	    (json_int_t)fake.histories_read, "deletes", (json_int_t)fake.deletes, "streams", (json_int_t)fake.streams,
	    "streams_completed", (json_int_t)fake.streams_completed, "streams_aborted",
	    (json_int_t)fake.streams_aborted, "streams_held", (json_int_t)fake.streams_held, "stream_bytes",
	    (json_int_t)fake.stream_bytes, "subresources", (json_int_t)fake.subresources, "key_mismatches",
	    (json_int_t)fake.key_mismatches, "last_session_id", fake.last_session_id, "last",
	    fake.last != NULL ? fake.last : json_null());
}

static void
route(struct evhttp_request *req, void *arg)
{
	const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));

	(void)arg;
	if (strcmp(path, "/_fake/stats") == 0) {
		send_json(req, 200, stats());
	} else if (strcmp(path, "/_fake/fault") == 0) {
		handle_fault(req);
	} else if (strcmp(path, "/_fake/now") == 0) {
		fake.real_time = true;
		send_json(req, 200, json_pack("{s:b}", "ok", 1));
	} else if (strcmp(path, "/_fake/turn") == 0) {
		handle_turn(req);
	} else if (strcmp(path, "/_fake/release") == 0) {
		int released = 0;
		for (int i = 0; i < MAX_HELD; i++) {
			struct stream *held = fake.held[i];
			if (held != NULL) {
				fake.held[i] = NULL;
				stream_finish(held);
				released++;
			}
		}
		send_json(req, 200, json_pack("{s:b,s:i}", "released", released > 0, "count", released));
	} else {
		fake.api_requests++;
		record_request(req);
		if (!apply_fault(req))
			serve_api(req, "", 0);
	}
}

/* evhttp asks for one bufferevent per accepted connection: count them. */
static struct bufferevent *
count_connection(struct event_base *base, void *arg)
{
	(void)arg;
	fake.connections++;
	return bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
}

static void
on_stop(evutil_socket_t sig, short what, void *arg)
{
	(void)sig;
	(void)what;
	(void)arg;
	event_base_loopexit(fake.base, NULL);
}

int
main(int argc, char **argv)
{
	const char *port_file = NULL;
	struct evhttp *http;
	struct evhttp_bound_socket *bound;
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	struct event *stop;
	char tmp[4096];
	FILE *f;

	for (int i = 1; i + 1 < argc; i += 2) {
		if (strcmp(argv[i], "--port-file") == 0)
			port_file = argv[i + 1];
		else if (strcmp(argv[i], "--key") == 0 && fake.key_count < 8)
			fake.keys[fake.key_count++] = argv[i + 1];
	}
	if (port_file == NULL || fake.key_count == 0) {
		fprintf(stderr, "usage: fake_upstream --port-file FILE --key KEY\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	fake.base = event_base_new();
	fake.sessions = json_object();
	fake.histories = json_object();
	fake.idempotency = json_object();
	fake.session_keys = json_object();
	http = evhttp_new(fake.base);
	evhttp_set_allowed_methods(
	    http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_DELETE | EVHTTP_REQ_PUT | EVHTTP_REQ_PATCH);
	evhttp_set_gencb(http, route, NULL);
	evhttp_set_bevcb(http, count_connection, NULL);
	/* Our own listening socket: evhttp's would have a backlog of 128, and
	 * a crowd of streams opening at once would wait on SYN retries. */
	{
		struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = 0 };
		evutil_socket_t fd = socket(AF_INET, SOCK_STREAM, 0);
		sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		if (fd < 0 || bind(fd, (struct sockaddr *)&sin, sizeof(sin)) != 0 || listen(fd, 4096) != 0 ||
		    evutil_make_socket_nonblocking(fd) != 0)
			bound = NULL;
		else
			bound = evhttp_accept_socket_with_handle(http, fd);
	}
	if (bound == NULL) {
		perror("fake_upstream: bind");
		return 1;
	}
	getsockname(evhttp_bound_socket_get_fd(bound), (struct sockaddr *)&ss, &len);
	/* Written then renamed, so a reader never sees half a number. */
	snprintf(tmp, sizeof(tmp), "%s.tmp", port_file);
	f = fopen(tmp, "w");
	fprintf(f, "%d\n", ntohs(((struct sockaddr_in *)&ss)->sin_port));
	fclose(f);
	rename(tmp, port_file);
	stop = evsignal_new(fake.base, SIGTERM, on_stop, NULL);
	evsignal_add(stop, NULL);
	event_base_dispatch(fake.base);
	event_free(stop);
	evhttp_free(http);
	json_decref(fake.sessions);
	json_decref(fake.histories);
	json_decref(fake.idempotency);
	json_decref(fake.session_keys);
	json_decref(fake.last);
	for (int i = 0; i < MAX_FAULTS; i++)
		free(fake.faults[i].body);
	event_base_free(fake.base);
	return 0;
}
