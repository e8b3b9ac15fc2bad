/* fake_collector: a stand-in for an OpenTelemetry collector on loopback,
 * for tests. It takes OTLP/HTTP JSON on POST /v1/traces, checks that each
 * body is the shape OTLP asks for, and records what it received:
 *   GET  /_fake/spans  {"posts": n, "spans": [...], "resource": {...}}:
 *                      every span received, in order, with its attributes
 *                      flattened into "attrs" ({"key": value}); resource
 *                      is the last batch's resource attributes, flattened
 *   GET  /_fake/raw    every body received, one after another
 *   POST /_fake/fail?count=N  answers the next N posts 503
 * A post that is not OTLP JSON is answered 400 and counted in "bad".
 * With --discard (for benchmarks, where a real collector would run on
 * another machine) a post is counted and answered without being read.
 * Usage: fake_collector --port-file FILE [--discard] */
#include <event2/buffer.h>
#include <event2/listener.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>
#include <stdbool.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

static struct {
	struct event_base *base;
	json_t *spans;
	json_t *resource;
	struct evbuffer *raw;
	long posts, bad, fail;
	bool discard;
} collector;

/* {"key": k, "value": {"stringValue"|"intValue"|...: v}} ... into {k: v}. */
static json_t *
flatten(const json_t *attributes)
{
	json_t *flat = json_object();
	size_t i;
	const json_t *a;

	json_array_foreach(attributes, i, a) {
		const json_t *value = json_object_get(a, "value");
		const char *kind;
		json_t *v;
		if (!json_is_string(json_object_get(a, "key")) || !json_is_object(value) ||
		    json_object_size(value) != 1)
			return json_decref(flat), NULL;
		json_object_foreach((json_t *)value, kind, v) {
			/* OTLP's JSON: 64-bit integers travel as strings. */
			if (strcmp(kind, "intValue") == 0 && json_is_string(v))
				json_object_set_new(flat, json_string_value(json_object_get(a, "key")),
				    json_integer(atoll(json_string_value(v))));
			else
				json_object_set(flat, json_string_value(json_object_get(a, "key")), v);
		}
	}
	return flat;
}

static void
reply(struct evhttp_request *req, int status, json_t *doc)
{
	struct evbuffer *out = evbuffer_new();
	char *text = json_dumps(doc, JSON_COMPACT);

	evbuffer_add(out, text, strlen(text));
	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "application/json");
	evhttp_send_reply(req, status, status == 200 ? "OK" : "No", out);
	evbuffer_free(out);
	free(text);
	json_decref(doc);
}

/* A span as OTLP's JSON has it: hex ids, a name, a kind, times as strings. */
static bool
span_is_otlp(const json_t *s)
{
	const char *trace = json_string_value(json_object_get(s, "traceId"));
	const char *span = json_string_value(json_object_get(s, "spanId"));
	const json_t *parent = json_object_get(s, "parentSpanId");

	return trace != NULL && strlen(trace) == 32 && strspn(trace, "0123456789abcdef") == 32 && span != NULL &&
	    strlen(span) == 16 && strspn(span, "0123456789abcdef") == 16 &&
	    (parent == NULL || (json_is_string(parent) && strlen(json_string_value(parent)) == 16)) &&
	    json_is_string(json_object_get(s, "name")) && json_is_integer(json_object_get(s, "kind")) &&
	    json_is_string(json_object_get(s, "startTimeUnixNano")) &&
	    json_is_string(json_object_get(s, "endTimeUnixNano")) && json_is_array(json_object_get(s, "attributes"));
}

static void
take_traces(struct evhttp_request *req)
{
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	size_t len = evbuffer_get_length(in);
	json_t *doc = json_loadb((const char *)evbuffer_pullup(in, -1), len, 0, NULL);
	json_t *received = json_array();
	const json_t *rs, *ss, *span;
	size_t i, j, k;
	bool good = json_is_array(json_object_get(doc, "resourceSpans"));

	evbuffer_add(collector.raw, evbuffer_pullup(in, -1), len);
	json_array_foreach(json_object_get(doc, "resourceSpans"), i, rs) {
		json_t *resource = flatten(json_object_get(json_object_get(rs, "resource"), "attributes"));
		good = good && resource != NULL && json_is_array(json_object_get(rs, "scopeSpans"));
		if (resource != NULL) {
			json_decref(collector.resource);
			collector.resource = resource;
		}
		json_array_foreach(json_object_get(rs, "scopeSpans"), j, ss) {
			json_array_foreach(json_object_get(ss, "spans"), k, span) {
				json_t *copy, *attrs;
				if (!span_is_otlp(span) ||
				    (attrs = flatten(json_object_get(span, "attributes"))) == NULL) {
					good = false;
					continue;
				}
				copy = json_deep_copy(span);
				json_object_set_new(copy, "attrs", attrs);
				json_array_append_new(received, copy);
			}
		}
	}
	json_decref(doc);
	if (!good) {
		collector.bad++;
		json_decref(received);
		reply(req, 400, json_pack("{s:s}", "error", "not OTLP/HTTP JSON"));
		return;
	}
	collector.posts++;
	json_array_extend(collector.spans, received);
	json_decref(received);
	reply(req, 200, json_object());
}

static void
route(struct evhttp_request *req, void *arg)
{
	const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
	enum evhttp_cmd_type cmd = evhttp_request_get_command(req);

	(void)arg;
	if (strcmp(path, "/v1/traces") == 0 && cmd == EVHTTP_REQ_POST) {
		if (collector.fail > 0) {
			collector.fail--;
			reply(req, 503, json_pack("{s:s}", "error", "failing on purpose"));
		} else if (collector.discard) {
			collector.posts++;
			reply(req, 200, json_object());
		} else {
			take_traces(req);
		}
	} else if (strcmp(path, "/_fake/spans") == 0) {
		reply(req, 200,
		    json_pack("{s:i,s:i,s:O,s:O}", "posts", (int)collector.posts, "bad", (int)collector.bad, "spans",
		        collector.spans, "resource", collector.resource != NULL ? collector.resource : json_null()));
	} else if (strcmp(path, "/_fake/raw") == 0) {
		struct evbuffer *out = evbuffer_new();
		evbuffer_add(out, evbuffer_pullup(collector.raw, -1), evbuffer_get_length(collector.raw));
		evhttp_send_reply(req, 200, "OK", out);
		evbuffer_free(out);
	} else if (strcmp(path, "/_fake/fail") == 0 && cmd == EVHTTP_REQ_POST) {
		struct evkeyvalq params;
		const char *count;
		evhttp_parse_query_str(evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req)), &params);
		count = evhttp_find_header(&params, "count");
		collector.fail = count != NULL ? atol(count) : 1;
		evhttp_clear_headers(&params);
		reply(req, 200, json_pack("{s:i}", "failing", (int)collector.fail));
	} else {
		reply(req, 404, json_pack("{s:s}", "error", "no such path"));
	}
}

/* --discard: each connection's requests are read to their Content-Length
 * and answered 200 at once, with nothing parsed or kept but the count:
 * plain read()s of 256 KiB, so the stand-in costs the machine little. */
struct discard_conn {
	struct event *ev;
	char head[8192];
	size_t head_len;
	size_t body_left;
	bool in_body;
};

static void
discard_close(struct discard_conn *c)
{
	close(event_get_fd(c->ev));
	event_free(c->ev);
	free(c);
}

static void
discard_read(evutil_socket_t fd, short what, void *arg)
{
	static char buf[256 * 1024];
	static const char ok[] = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}";
	struct discard_conn *c = arg;
	ssize_t got = read(fd, buf, sizeof(buf));

	(void)what;
	if (got <= 0) {
		discard_close(c);
		return;
	}
	for (size_t at = 0; at < (size_t)got;) {
		if (c->in_body) {
			size_t n = (size_t)got - at < c->body_left ? (size_t)got - at : c->body_left;
			at += n;
			c->body_left -= n;
		} else {
			char *end;
			size_t n = (size_t)got - at < sizeof(c->head) - 1 - c->head_len
			    ? (size_t)got - at
			    : sizeof(c->head) - 1 - c->head_len;
			memcpy(c->head + c->head_len, buf + at, n);
			c->head_len += n;
			c->head[c->head_len] = '\0';
			if ((end = strstr(c->head, "\r\n\r\n")) == NULL) {
				if (c->head_len == sizeof(c->head) - 1) {
					discard_close(c);
					return;
				}
				at += n;
				continue;
			}
			/* What of this read belongs to the body. */
			at += n - (c->head_len - (size_t)(end + 4 - c->head));
			c->body_left = 0;
			for (char *p = c->head; p < end; p++)
				if (strncasecmp(p, "\ncontent-length:", 16) == 0)
					c->body_left = strtoul(p + 16, NULL, 10);
			c->in_body = true;
			c->head_len = 0;
		}
		if (c->in_body && c->body_left == 0) {
			collector.posts++;
			c->in_body = false;
			if (write(fd, ok, sizeof(ok) - 1) != (ssize_t)sizeof(ok) - 1) {
				discard_close(c);
				return;
			}
		}
	}
}

static void
discard_accept(struct evconnlistener *listener, evutil_socket_t fd, struct sockaddr *addr, int len, void *arg)
{
	struct discard_conn *c = calloc(1, sizeof(*c));

	(void)listener;
	(void)addr;
	(void)len;
	(void)arg;
	c->ev = event_new(collector.base, fd, EV_READ | EV_PERSIST, discard_read, c);
	event_add(c->ev, NULL);
}

static void
on_stop(evutil_socket_t sig, short what, void *arg)
{
	(void)sig;
	(void)what;
	(void)arg;
	event_base_loopexit(collector.base, NULL);
}

int
main(int argc, char **argv)
{
	const char *port_file = argc >= 3 && strcmp(argv[1], "--port-file") == 0 ? argv[2] : NULL;
	struct evhttp *http;
	struct evhttp_bound_socket *bound;
	struct evconnlistener *listener = NULL;
	evutil_socket_t fd = -1;
	struct event *stop;
	char tmp[4096];
	FILE *f;

	collector.discard = argc == 4 && strcmp(argv[3], "--discard") == 0;
	if (port_file == NULL || argc > 4 || (argc == 4 && !collector.discard)) {
		fprintf(stderr, "usage: fake_collector --port-file FILE [--discard]\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	collector.base = event_base_new();
	collector.spans = json_array();
	collector.raw = evbuffer_new();
	http = evhttp_new(collector.base);
	evhttp_set_allowed_methods(http, EVHTTP_REQ_GET | EVHTTP_REQ_POST);
	evhttp_set_gencb(http, route, NULL);
	if (collector.discard) {
		struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = 0 };
		sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		listener = evconnlistener_new_bind(collector.base, discard_accept, NULL,
		    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, 128, (struct sockaddr *)&sin, sizeof(sin));
		fd = listener != NULL ? evconnlistener_get_fd(listener) : -1;
	} else if ((bound = evhttp_bind_socket_with_handle(http, "127.0.0.1", 0)) != NULL) {
		fd = evhttp_bound_socket_get_fd(bound);
	}
	if (fd < 0) {
		perror("fake_collector: bind");
		return 1;
	}
	{
		struct sockaddr_storage ss;
		socklen_t len = sizeof(ss);
		getsockname(fd, (struct sockaddr *)&ss, &len);
		/* Written then renamed, so a reader never sees half a number. */
		snprintf(tmp, sizeof(tmp), "%s.tmp", port_file);
		f = fopen(tmp, "w");
		fprintf(f, "%d\n", ntohs(((struct sockaddr_in *)&ss)->sin_port));
		fclose(f);
		rename(tmp, port_file);
	}
	stop = evsignal_new(collector.base, SIGTERM, on_stop, NULL);
	evsignal_add(stop, NULL);
	event_base_dispatch(collector.base);
	event_free(stop);
	evhttp_free(http);
	if (listener != NULL)
		evconnlistener_free(listener);
	json_decref(collector.spans);
	json_decref(collector.resource);
	evbuffer_free(collector.raw);
	event_base_free(collector.base);
	return 0;
}
