/* fake_upstream: a stand-in for the LlamaCloud chat API on loopback, for tests.
 *
 * Speaks the endpoints of api/llamacloud-chat.md that the tests need, checks
 * the bearer key, records what it received, and takes faults to inject:
 *   GET  /_fake/stats   counts (requests, connections accepted, ...), the
 *                       last session created and the last API
 *                       request seen, as JSON
 *   POST /_fake/fault   {"mode":"status"|"delay"|"invalid"|"padded",
 *                        "status":N, "body":"...", "ms":N, "bytes":N,
 *                        "count":N}: the next count API requests fail that
 *                        way ("padded": creates answer with a Session that
 *                        carries an extra field of N bytes)
 *   POST /_fake/reset   forget counts and faults
 * Usage: fake_upstream --port-file FILE --key KEY */
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <sys/queue.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_SESSIONS 4096

struct fault {
	char mode[16];
	int status;
	char *body;
	long ms;
	long bytes;
	int count;
};

static struct {
	struct event_base *base;
	const char *key;
	json_t *sessions; /* id -> Session object */
	long next_id;
	long api_requests, creates, summaries;
	long connections; /* TCP connections accepted, to see reuse */
	char last_session_id[64];
	json_t *last; /* the last API request: method, path, headers, body */
	struct fault fault;
} fake;

static void
send_json(struct evhttp_request *req, int status, json_t *doc)
{
	struct evbuffer *body = evbuffer_new();
	char *text = json_dumps(doc, JSON_COMPACT);

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
	    evhttp_request_get_uri(req), "headers", headers, "body", (const char *)evbuffer_pullup(in, -1), len);
}

static json_t *
new_session(json_t *index_ids)
{
	char id[64];

	snprintf(id, sizeof(id), "ses-%06ld", ++fake.next_id);
	return json_pack("{s:s,s:s,s:n,s:O,s:n,s:s,s:{s:[i,i,i],s:s}}", "last_updated_at", "2026-04-22T12:34:41.342245",
	    "session_id", id, "generated_title", "index_ids", index_ids != NULL ? index_ids : json_null(),
	    "job_metadata", "shared_access", "query", "x_future_field", "kept", 1, 2, 3, "note",
	    "unknown fields must survive");
}

static void
handle_create(struct evhttp_request *req, long padding)
{
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	json_t *body = NULL, *session;
	json_error_t error;

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
	if (json_object_size(fake.sessions) < MAX_SESSIONS)
		json_object_set(fake.sessions, json_string_value(json_object_get(session, "session_id")), session);
	fake.creates++;
	snprintf(fake.last_session_id, sizeof(fake.last_session_id), "%s",
	    json_string_value(json_object_get(session, "session_id")));
	send_json(req, 200, session);
}

static void
handle_summary(struct evhttp_request *req, const char *id)
{
	json_t *session = json_object_get(fake.sessions, id);

	fake.summaries++;
	if (session == NULL) {
		send_detail(req, 404, "Session not found");
		return;
	}
	send_json(req, 200, json_incref(session));
}

static void
serve_api(struct evhttp_request *req)
{
	const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
	const char *auth = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");
	char expected[512];
	size_t plen = strlen(path);

	snprintf(expected, sizeof(expected), "Bearer %s", fake.key);
	if (auth == NULL || strcmp(auth, expected) != 0) {
		send_detail(req, 401, "Invalid API key");
		return;
	}
	if (strcmp(path, "/api/v1/chat") == 0 && evhttp_request_get_command(req) == EVHTTP_REQ_POST) {
		handle_create(req, 0);
		return;
	}
	if (strncmp(path, "/api/v1/chat/", 13) == 0 && plen > 21 && strcmp(path + plen - 8, "/summary") == 0) {
		char id[256];
		size_t id_len = plen - 13 - 8;
		char *decoded;
		if (id_len >= sizeof(id)) {
			send_detail(req, 404, "Session not found");
			return;
		}
		memcpy(id, path + 13, id_len);
		id[id_len] = '\0';
		decoded = evhttp_uridecode(id, 0, NULL);
		handle_summary(req, decoded);
		free(decoded);
		return;
	}
	send_detail(req, 404, "Not Found");
}

static void
reply_after_delay(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	serve_api(arg);
}

/* Applies the pending fault, if any; returns 1 when it answered. */
static int
apply_fault(struct evhttp_request *req)
{
	struct fault *f = &fake.fault;

	if (f->count <= 0)
		return 0;
	f->count--;
	if (strcmp(f->mode, "status") == 0) {
		struct evbuffer *body = evbuffer_new();
		evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "application/json");
		evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After", "7");
		evhttp_add_header(evhttp_request_get_output_headers(req), "Set-Cookie", "upstream=secret");
		if (f->status >= 300 && f->status < 400) /* a follower would come back here */
			evhttp_add_header(
			    evhttp_request_get_output_headers(req), "Location", "/api/v1/chat/ses-redirected/summary");
		evbuffer_add(body, f->body != NULL ? f->body : "{}", strlen(f->body != NULL ? f->body : "{}"));
		evhttp_send_reply(req, f->status, NULL, body);
		evbuffer_free(body);
		return 1;
	}
	if (strcmp(f->mode, "padded") == 0) {
		handle_create(req, f->bytes);
		return 1;
	}
	if (strcmp(f->mode, "invalid") == 0) {
		send_json(req, 200, json_pack("{s:s}", "hello", "not a session"));
		return 1;
	}
	if (strcmp(f->mode, "delay") == 0) {
		struct timeval tv = { f->ms / 1000, (f->ms % 1000) * 1000 };
		event_base_once(fake.base, -1, EV_TIMEOUT, reply_after_delay, req, &tv);
		return 1;
	}
	return 0;
}

static void
handle_fault(struct evhttp_request *req)
{
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	json_error_t error;
	json_t *doc = json_loadb((const char *)evbuffer_pullup(in, -1), evbuffer_get_length(in), 0, &error);
	const char *mode = json_string_value(json_object_get(doc, "mode"));
	const char *body = json_string_value(json_object_get(doc, "body"));

	if (mode == NULL) {
		json_decref(doc);
		send_detail(req, 400, "mode required");
		return;
	}
	free(fake.fault.body);
	memset(&fake.fault, 0, sizeof(fake.fault));
	snprintf(fake.fault.mode, sizeof(fake.fault.mode), "%s", mode);
	fake.fault.status = (int)json_integer_value(json_object_get(doc, "status"));
	fake.fault.ms = (long)json_integer_value(json_object_get(doc, "ms"));
	fake.fault.bytes = (long)json_integer_value(json_object_get(doc, "bytes"));
	fake.fault.count =
	    json_object_get(doc, "count") != NULL ? (int)json_integer_value(json_object_get(doc, "count")) : 1;
	fake.fault.body = body != NULL ? strdup(body) : NULL;
	json_decref(doc);
	send_json(req, 200, json_pack("{s:b}", "ok", 1));
}

static void
route(struct evhttp_request *req, void *arg)
{
	const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));

	(void)arg;
	if (strcmp(path, "/_fake/stats") == 0) {
		send_json(req, 200,
		    json_pack("{s:i,s:i,s:i,s:i,s:s,s:O}", "connections", (json_int_t)fake.connections, "api_requests",
		        (json_int_t)fake.api_requests, "creates", (json_int_t)fake.creates, "summaries",
		        (json_int_t)fake.summaries, "last_session_id", fake.last_session_id, "last",
		        fake.last != NULL ? fake.last : json_null()));
		return;
	}
	if (strcmp(path, "/_fake/fault") == 0) {
		handle_fault(req);
		return;
	}
	if (strcmp(path, "/_fake/reset") == 0) {
		fake.api_requests = fake.creates = fake.summaries = 0;
		fake.fault.count = 0;
		send_json(req, 200, json_pack("{s:b}", "ok", 1));
		return;
	}
	fake.api_requests++;
	record_request(req);
	if (!apply_fault(req))
		serve_api(req);
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
		else if (strcmp(argv[i], "--key") == 0)
			fake.key = argv[i + 1];
	}
	if (port_file == NULL || fake.key == NULL) {
		fprintf(stderr, "usage: fake_upstream --port-file FILE --key KEY\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	fake.base = event_base_new();
	fake.sessions = json_object();
	http = evhttp_new(fake.base);
	evhttp_set_allowed_methods(http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_DELETE);
	evhttp_set_gencb(http, route, NULL);
	evhttp_set_bevcb(http, count_connection, NULL);
	bound = evhttp_bind_socket_with_handle(http, "127.0.0.1", 0);
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
	json_decref(fake.last);
	free(fake.fault.body);
	event_base_free(fake.base);
	return 0;
}
