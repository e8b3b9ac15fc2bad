/* http: llamachatd's own strict HTTP/1.1 server on libevent's loop.
 *
 * A connection is one socket with one persistent read event, a write event
 * added only while the socket will not take an answer whole, and one timer
 * that holds whichever deadline applies now: the keep-alive idle time, the
 * head deadline (from the request's first byte, never restarted), the body
 * deadline, the send deadline, or the linger after a refusal. Requests are
 * parsed by llhttp in strict mode; the parser pauses at each request's end,
 * so a pipelined request waits in the input buffer until the one before is
 * answered: answers go out in order. The connection and its request object
 * are reused from one request to the next; a summary hit allocates nothing.
 *
 * Our own rules on top of llhttp's: exactly one Host on HTTP/1.1, no
 * transfer coding but a lone "chunked", no bare LF or obs-fold in the head,
 * an origin-form target (absolute-form accepted as RFC 9112 asks), CONNECT
 * refused, HTTP/2 and other versions refused. Every refusal is a JSON answer
 * with an access line, and the connection closes after it. */
#include "http/http.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <llhttp.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "base/clock.h"
#include "http/http_private.h"
#include "base/log.h"
#include "http/reply.h"
#include "http/request.h"
#include "http/uri.h"

#define HTTP_MAX_LISTENERS 32
#define HTTP_IN_BYTES 4096 /* a connection's input buffer, reused */
#define HTTP_HEAD_FIRST_BYTES 1024 /* a head buffer starts here, grows to max_header_bytes */
#define HTTP_LINGER_MS 2000
#define HTTP_LINGER_BYTES (1L << 20)
#define HTTP_ACCEPT_PAUSE_MS 100

enum http_timer {
	HTTP_TIMER_NONE,
	HTTP_TIMER_IDLE,
	HTTP_TIMER_HEAD,
	HTTP_TIMER_BODY,
	HTTP_TIMER_SEND,
	HTTP_TIMER_LINGER,
};

/* What the head scanner has seen of the bytes before llhttp does. */
struct http_scan {
	bool active; /* inside a head */
	bool at_line_start;
	bool first_line; /* still the request line */
	char prev;
	int blank; /* 1 after a CRLF that began a line; the head ends at the next CRLF */
};

struct http_conn {
	struct http_server *server;
	LIST_ENTRY(http_conn) link;
	evutil_socket_t fd;
	struct event *read_ev, *write_ev, *timer, *resume_ev;
	enum http_timer timer_kind;
	llhttp_t parser;
	char *in; /* HTTP_IN_BYTES; bytes in_start..in_end not parsed yet */
	size_t in_start, in_end;
	struct evbuffer *out;
	struct http_scan scan;
	/* The parsed head's strings, head_cap bytes; NULL until a request comes
	 * and while one streams. It grows while the head is read, so strings
	 * are kept as offsets (path_off, and in the header slots) until the
	 * head is whole and they become pointers (pointed). */
	char *head;
	size_t head_cap, head_used, span_start;
	size_t path_off, pending_name_off; /* SIZE_MAX: none */
	bool pointed;
	char path_copy[256]; /* a streaming request's path, once its head is freed */
	bool begun; /* the begin hook ran for this request */
	bool closing; /* close once the output is out */
	bool lingering; /* write side shut; reading to discard */
	bool reading_paused;
	bool output_full; /* over max_pending_output_bytes: parsing waits */
	bool in_use; /* a request is between its first byte and its end */
	bool broken; /* a write failed: close from the loop */
	long lingered;
	int error_status;
	const char *error_detail;
	struct request req;
};

struct http_listener {
	struct evconnlistener *listener;
};

struct http_server {
	struct event_base *base;
	struct http_settings settings;
	struct http_hooks hooks;
	llhttp_settings_t parser_settings;
	struct http_listener listeners[HTTP_MAX_LISTENERS];
	size_t listener_count;
	bool accepting; /* not stopped */
	bool paused_at_cap;
	struct event *accept_resume; /* after an accept failure */
	LIST_HEAD(, http_conn) conns;
	long open;
	unsigned long long accepted;
	time_t date_second;
	char date_line[64];
};

static void http_conn_close(struct http_conn *c);
static void http_conn_parse(struct http_conn *c);
static void http_conn_flush(struct http_conn *c);
static void http_point_head(struct http_conn *c);

static void
http_arm(struct http_conn *c, enum http_timer kind, long ms)
{
	struct timeval tv = clock_timeval_ms(ms);

	c->timer_kind = kind;
	if (kind == HTTP_TIMER_NONE)
		evtimer_del(c->timer);
	else
		evtimer_add(c->timer, &tv);
}

const char *
http_conn_date_line(struct http_conn *c)
{
	struct http_server *s = c->server;
	time_t now = time(NULL);

	if (now != s->date_second) {
		struct tm tm;
		gmtime_r(&now, &tm);
		strftime(s->date_line, sizeof(s->date_line), "Date: %a, %d %b %Y %H:%M:%S GMT\r\n", &tm);
		s->date_second = now;
	}
	return s->date_line;
}

/* Makes the request object ready for the next request on c. */
static void
http_request_reset(struct http_conn *c)
{
	struct request *req = &c->req;
	struct evbuffer *body = req->body;
	bool local = req->local_peer;

	evbuffer_drain(body, evbuffer_get_length(body));
	memset(req, 0, offsetof(struct request, header_slots));
	/* Out of memory, no slots: the request's first header is a 431. */
	if (req->header_slots == NULL)
		req->header_slots = malloc(HTTP_HEADERS_MAX * sizeof(*req->header_slots));
	http_headers_init(&req->headers, req->header_slots, req->header_slots != NULL ? HTTP_HEADERS_MAX : 0);
	req->out_headers_len = 0;
	req->out_overflow = false;
	req->close_after = false;
	req->no_body = false;
	req->conn = c;
	req->body = body;
	req->local_peer = local;
	req->state = REQUEST_READING;
	req->method_name = "-";
	req->path = "-";
	req->access.upstream_seconds = -1;
	req->access.route = "other";
	snprintf(req->access.client, sizeof(req->access.client), "-");
	c->head_used = 0;
	c->path_off = SIZE_MAX;
	c->pending_name_off = SIZE_MAX;
	c->pointed = false;
	c->begun = false;
	c->in_use = false;
	c->error_status = 0;
	c->error_detail = NULL;
	c->scan = (struct http_scan){ .at_line_start = true, .first_line = true };
}

/* --- writing ------------------------------------------------------------ */

void
http_conn_write(struct http_conn *c, const void *data, size_t len)
{
	if (len > 0 && evbuffer_add(c->out, data, len) != 0)
		log_warnx("http: out of memory for an answer");
}

void
http_conn_write_buffer(struct http_conn *c, struct evbuffer *buf)
{
	if (evbuffer_add_buffer(c->out, buf) != 0)
		log_warnx("http: out of memory for an answer");
}

size_t
http_conn_unsent(const struct http_conn *c)
{
	return evbuffer_get_length(c->out);
}

/* The output is all out: shut the write side and read what the client still
 * sends for a moment, so that the answer is not lost to a reset. */
static void
http_conn_linger(struct http_conn *c)
{
	shutdown(c->fd, SHUT_WR);
	c->lingering = true;
	c->lingered = 0;
	if (c->reading_paused) {
		event_add(c->read_ev, NULL);
		c->reading_paused = false;
	}
	http_arm(c, HTTP_TIMER_LINGER, HTTP_LINGER_MS);
}

static void
http_conn_flush(struct http_conn *c)
{
	if (c->broken)
		return;
	while (evbuffer_get_length(c->out) > 0) {
		int n = evbuffer_write(c->out, c->fd);
		if (n < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
				break;
			/* The client went away. Closing runs the owner's on_gone
			 * hook, which must not run inside the owner's own write. */
			c->broken = true;
			event_active(c->resume_ev, 0, 0);
			return;
		}
		if (n == 0)
			break;
	}
	if (c->output_full && evbuffer_get_length(c->out) <= c->server->settings.max_pending_output_bytes) {
		/* Drained below the bound: read and parse on, once this turn is over. */
		c->output_full = false;
		if (c->reading_paused && !c->lingering && c->in_end < HTTP_IN_BYTES) {
			event_add(c->read_ev, NULL);
			c->reading_paused = false;
		}
		if (c->timer_kind == HTTP_TIMER_SEND)
			http_arm(c, HTTP_TIMER_NONE, 0);
		event_active(c->resume_ev, 0, 0);
	}
	if (evbuffer_get_length(c->out) > 0) {
		if (!event_pending(c->write_ev, EV_WRITE, NULL))
			event_add(c->write_ev, NULL);
		/* No progress for send_timeout_ms: an answer in progress, or
		 * answers piled up past the bound, and the client takes nothing. */
		if (c->req.state != REQUEST_READING || c->output_full)
			http_arm(c, HTTP_TIMER_SEND, c->server->settings.send_timeout_ms);
		return;
	}
	if (event_pending(c->write_ev, EV_WRITE, NULL))
		event_del(c->write_ev);
	if (c->timer_kind == HTTP_TIMER_SEND)
		http_arm(c, HTTP_TIMER_NONE, 0);
	if (c->closing && !c->lingering) {
		http_conn_linger(c);
		return;
	}
	if (c->req.on_drained != NULL && c->req.state == REQUEST_STREAMING) {
		void (*fn)(void *) = c->req.on_drained;
		fn(c->req.drained_arg); /* may write and flush again */
	}
}

void
http_conn_send(struct http_conn *c, const void *head, size_t head_len, const void *body, size_t body_len)
{
	struct iovec iov[2] = { { (void *)head, head_len }, { (void *)body, body_len } };
	ssize_t n = 0;

	/* The hot path: nothing queued, so the socket gets both at once and
	 * nothing is copied. Anything left over is queued in order. */
	if (evbuffer_get_length(c->out) == 0 && !c->broken) {
		n = writev(c->fd, iov, body_len > 0 ? 2 : 1);
		if (n < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
				c->broken = true;
				event_active(c->resume_ev, 0, 0);
				return;
			}
			n = 0;
		}
	}
	if ((size_t)n < head_len) {
		http_conn_write(c, (const char *)head + n, head_len - (size_t)n);
		n = 0;
	} else {
		n -= (ssize_t)head_len;
	}
	if ((size_t)n < body_len)
		http_conn_write(c, (const char *)body + n, body_len - (size_t)n);
}

void
http_conn_shrink(struct http_conn *c)
{
	struct request *req = &c->req;

	/* A stream may last minutes, and thousands may run: it keeps only its
	 * path (for the access line) and lets the head, the body and an empty
	 * input buffer go. They come back with the connection's next request. */
	snprintf(c->path_copy, sizeof(c->path_copy), "%s", req->path != NULL ? req->path : "-");
	req->path = c->path_copy;
	req->query = NULL;
	free(req->header_slots);
	req->header_slots = NULL;
	http_headers_init(&req->headers, NULL, 0);
	c->pending_name_off = SIZE_MAX;
	free(c->head);
	c->head = NULL;
	c->head_cap = 0;
	c->head_used = 0;
	evbuffer_drain(req->body, evbuffer_get_length(req->body));
	if (c->in != NULL && c->in_start == c->in_end) {
		free(c->in);
		c->in = NULL;
		c->in_start = c->in_end = 0;
	}
}

void
http_conn_push(struct http_conn *c)
{
	http_conn_flush(c);
}

static void
http_on_writable(evutil_socket_t fd, short what, void *arg)
{
	struct http_conn *c = arg;

	(void)fd;
	(void)what;
	http_conn_flush(c);
}

void
http_conn_answered(struct http_conn *c)
{
	struct http_server *s = c->server;
	bool keep;

	c->req.state = REQUEST_DONE;
	if (s->hooks.done != NULL)
		s->hooks.done(&c->req, s->hooks.arg);
	keep = !c->req.close_after && s->accepting;
	if (!keep)
		c->closing = true;
	http_request_reset(c);
	if (!keep) {
		c->in_start = c->in_end = 0;
		http_conn_flush(c);
		return;
	}
	/* The next request, if one is already here, once this turn is over:
	 * the handler that answered is still on the stack. */
	if (c->in_end > c->in_start)
		event_active(c->resume_ev, 0, 0);
	else
		http_arm(c, HTTP_TIMER_IDLE, s->settings.keepalive_timeout_ms);
	if (c->reading_paused && !c->output_full) {
		event_add(c->read_ev, NULL);
		c->reading_paused = false;
	}
	http_conn_flush(c);
}

/* --- refusing ----------------------------------------------------------- */

static enum reply_retry
http_retry_for(int status)
{
	return status == 408 || status == 503 ? REPLY_RETRY_MAY_HELP : REPLY_RETRY_WONT_HELP;
}

static void
http_conn_begin(struct http_conn *c)
{
	struct http_server *s = c->server;

	if (c->begun)
		return;
	c->begun = true;
	c->in_use = true;
	http_point_head(c);
	if (c->req.access.started == 0)
		c->req.access.started = clock_monotonic_s();
	if (s->hooks.begin != NULL)
		s->hooks.begin(&c->req, s->hooks.arg);
}

/* Answers the request in progress with our own error and closes after it. */
static void
http_conn_refuse(struct http_conn *c, int status, const char *detail)
{
	struct request *req = &c->req;

	if (req->state != REQUEST_READING)
		return;
	http_conn_begin(c);
	llhttp_pause(&c->parser); /* nothing more is parsed on this connection */
	req->state = REQUEST_HANDLING;
	req->close_after = true;
	if (req->http_minor == 0 && c->parser.http_major == 1)
		req->http_minor = c->parser.http_minor;
	else
		req->http_minor = 1;
	reply_error(req, status, http_retry_for(status), detail);
}

static int
http_fail(struct http_conn *c, int status, const char *detail)
{
	if (c->error_status == 0) {
		c->error_status = status;
		c->error_detail = detail;
	}
	return -1;
}

/* --- parsing ------------------------------------------------------------ */

static struct http_conn *
http_conn_of(llhttp_t *p)
{
	return p->data;
}

/* Turns the head's offsets into the request's pointers: once the head is
 * whole, or when it is refused before. The buffer no longer grows after. */
static void
http_point_head(struct http_conn *c)
{
	struct http_headers *h = &c->req.headers;

	if (c->pointed)
		return;
	c->pointed = true;
	if (c->path_off != SIZE_MAX)
		c->req.path = c->head + c->path_off;
	for (size_t i = 0; i < h->count; i++) {
		h->items[i].name = c->head + (uintptr_t)h->items[i].name;
		h->items[i].value = c->head + (uintptr_t)h->items[i].value;
	}
}

/* Makes room for need bytes of head; -1 (with a 431 or 503) when it cannot. */
static int
http_head_room(struct http_conn *c, size_t need)
{
	size_t max = c->server->settings.max_header_bytes, cap;
	char *grown;

	if (need <= c->head_cap)
		return 0;
	if (need > max || c->pointed) /* trailers: the pointers must stay */
		return http_fail(c, 431, "the request head is larger than limits.max_header_bytes");
	cap = c->head_cap > 0 ? c->head_cap : HTTP_HEAD_FIRST_BYTES;
	while (cap < need)
		cap *= 2;
	if (cap > max)
		cap = max;
	if ((grown = realloc(c->head, cap)) == NULL)
		return http_fail(c, 503, "llamachatd is out of memory");
	c->head = grown;
	c->head_cap = cap;
	return 0;
}

/* Appends a span of the head into the head buffer. */
static int
http_append(struct http_conn *c, const char *at, size_t len)
{
	if (http_head_room(c, c->head_used + len + 1) != 0)
		return -1;
	memcpy(c->head + c->head_used, at, len);
	c->head_used += len;
	return 0;
}

static int
http_on_message_begin(llhttp_t *p)
{
	struct http_conn *c = http_conn_of(p);

	c->in_use = true;
	c->req.access.started = clock_monotonic_s();
	c->span_start = c->head_used;
	http_arm(c, HTTP_TIMER_HEAD, c->server->settings.header_timeout_ms);
	return 0;
}

static int
http_on_url(llhttp_t *p, const char *at, size_t len)
{
	struct http_conn *c = http_conn_of(p);

	if (c->head_used == c->span_start) /* the method is known once the target starts */
		c->req.method_name = llhttp_method_name((llhttp_method_t)p->method);
	if (c->head_used - c->span_start + len > c->server->settings.max_target_bytes)
		return http_fail(c, 414, "the request-target is longer than limits.max_target_bytes");
	return http_append(c, at, len);
}

static int
http_end_span(struct http_conn *c)
{
	if (http_head_room(c, c->head_used + 1) != 0)
		return -1;
	c->head[c->head_used++] = '\0';
	return 0;
}

static int
http_on_url_complete(llhttp_t *p)
{
	struct http_conn *c = http_conn_of(p);

	if (http_end_span(c) != 0)
		return -1;
	c->path_off = c->span_start;
	c->span_start = c->head_used;
	return 0;
}

static int
http_on_header_field(llhttp_t *p, const char *at, size_t len)
{
	return http_append(http_conn_of(p), at, len);
}

/* RFC 9110's tchar: what a field name is made of. */
static bool
http_is_token(const char *text)
{
	if (*text == '\0')
		return false;
	for (const unsigned char *p = (const unsigned char *)text; *p != '\0'; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
		        strchr("!#$%&'*+-.^_`|~", *p) != NULL))
			return false;
	return true;
}

static int
http_on_header_field_complete(llhttp_t *p)
{
	struct http_conn *c = http_conn_of(p);

	if (http_end_span(c) != 0)
		return -1;
	if (!http_is_token(c->head + c->span_start))
		return http_fail(c, 400, "a header name is not a token (whitespace before the colon?)");
	if (c->req.headers.count == c->req.headers.capacity)
		return http_fail(c, 431, "the request has more header fields than llamachatd takes");
	c->pending_name_off = c->span_start;
	c->span_start = c->head_used;
	return 0;
}

static int
http_on_header_value(llhttp_t *p, const char *at, size_t len)
{
	return http_append(http_conn_of(p), at, len);
}

static int
http_on_header_value_complete(llhttp_t *p)
{
	struct http_conn *c = http_conn_of(p);
	const char *value;
	size_t len;

	if (http_end_span(c) != 0)
		return -1;
	value = c->head + c->span_start;
	len = c->head_used - c->span_start - 1;
	c->span_start = c->head_used;
	/* llhttp keeps trailing blanks of a value; a field value has none. */
	while (len > 0 && (value[len - 1] == ' ' || value[len - 1] == '\t'))
		((char *)value)[--len] = '\0';
	if (memchr(value, '\0', len) != NULL || strpbrk(value, "\r\n") != NULL)
		return http_fail(c, 400, "a header value holds NUL, CR or LF");
	if (c->pointed)
		return 0; /* a trailer field: checked, and not kept */
	/* Offsets for now (the buffer may still move); http_point_head() makes
	 * them pointers. */
	if (c->pending_name_off == SIZE_MAX ||
	    !http_headers_add(&c->req.headers, (const char *)(uintptr_t)c->pending_name_off,
	        (const char *)(uintptr_t)(value - c->head)))
		return http_fail(c, 431, "the request has more header fields than llamachatd takes");
	c->pending_name_off = SIZE_MAX;
	return 0;
}

static enum request_method
http_method_of(uint8_t method)
{
	switch (method) {
	case HTTP_GET:
		return REQUEST_GET;
	case HTTP_HEAD:
		return REQUEST_HEAD;
	case HTTP_POST:
		return REQUEST_POST;
	case HTTP_PUT:
		return REQUEST_PUT;
	case HTTP_PATCH:
		return REQUEST_PATCH;
	case HTTP_DELETE:
		return REQUEST_DELETE;
	case HTTP_OPTIONS:
		return REQUEST_OPTIONS;
	default:
		return REQUEST_OTHER;
	}
}

/* Splits the target into path and query; absolute-form keeps its path. */
static int
http_take_target(struct http_conn *c)
{
	char *target = (char *)c->req.path, *query;

	if (target == NULL || target[0] == '\0' || strcmp(target, "-") == 0)
		return http_fail(c, 400, "the request has no target");
	if (strncasecmp(target, "http://", 7) == 0 || strncasecmp(target, "https://", 8) == 0) {
		char *authority = strstr(target, "://") + 3;
		char *path = authority + strcspn(authority, "/?");
		if (path == authority)
			return http_fail(c, 400, "the absolute-form target has no host");
		if (*path != '/')
			return http_fail(c, 400, "the absolute-form target has no path");
		target = path;
	} else if (target[0] != '/') {
		return http_fail(c, 400, "the request-target must be a path (origin-form)");
	}
	if (strchr(target, '#') != NULL)
		return http_fail(c, 400, "the request-target holds a fragment");
	if ((query = strchr(target, '?')) != NULL) {
		*query = '\0';
		c->req.query = query + 1;
	}
	/* One normal form from here on: what is routed and checked is what
	 * goes upstream. */
	if (uri_normalize_path(target) != 0)
		return http_fail(c, 400, "the path holds a malformed percent-escape");
	c->req.path = target;
	return 0;
}

/* RFC 9112: a server that does not know a transfer coding answers 501; the
 * only one llamachatd takes is a lone "chunked". */
static bool
http_coding_is_chunked(const char *value)
{
	return value != NULL && strcasecmp(value, "chunked") == 0;
}

static int
http_on_headers_complete(llhttp_t *p)
{
	struct http_conn *c = http_conn_of(p);
	struct request *req = &c->req;
	const struct http_settings *set = &c->server->settings;
	size_t hosts;
	const char *expect;

	http_point_head(c);
	hosts = http_headers_count(&req->headers, "Host");
	if (p->http_major != 1 || p->http_minor > 1)
		return http_fail(c, 505, "llamachatd speaks HTTP/1.1 and HTTP/1.0 only");
	req->http_minor = p->http_minor;
	req->method = http_method_of(p->method);
	req->method_name = llhttp_method_name((llhttp_method_t)p->method);
	if (p->method == HTTP_CONNECT)
		return http_fail(c, 405, "llamachatd is no tunnel: CONNECT is not allowed");
	if (req->method == REQUEST_OTHER)
		return http_fail(c, 501, "llamachatd does not implement this method");
	if (http_take_target(c) != 0)
		return -1;
	if (p->http_minor == 1 ? hosts != 1 : hosts > 1)
		return http_fail(c, 400, "an HTTP/1.1 request needs exactly one Host header");
	if ((p->flags & F_TRANSFER_ENCODING) != 0) {
		if ((p->flags & F_CONTENT_LENGTH) != 0)
			return http_fail(c, 400, "a request may not have both Content-Length and Transfer-Encoding");
		if (http_headers_count(&req->headers, "Transfer-Encoding") != 1 ||
		    !http_coding_is_chunked(request_header(req, "Transfer-Encoding")))
			return http_fail(c, 501, "the only transfer coding llamachatd takes is a lone chunked");
	}
	if ((p->flags & F_CONTENT_LENGTH) != 0 && p->content_length > set->max_body_bytes)
		return http_fail(c, 413, "the request body is larger than limits.max_body_bytes");
	if (!llhttp_should_keep_alive(p) || req->http_minor == 0)
		req->close_after = true;
	http_conn_begin(c);
	if ((p->flags & (F_CHUNKED | F_CONTENT_LENGTH)) != 0 &&
	    !((p->flags & F_CONTENT_LENGTH) && p->content_length == 0)) {
		if ((expect = request_header(req, "Expect")) != NULL) {
			if (strcasecmp(expect, "100-continue") != 0)
				return http_fail(c, 417, "the only expectation llamachatd meets is 100-continue");
			http_conn_write(c, "HTTP/1.1 100 Continue\r\n\r\n", 25);
			http_conn_flush(c);
		}
		http_arm(c, HTTP_TIMER_BODY, set->body_timeout_ms);
	} else {
		http_arm(c, HTTP_TIMER_NONE, 0);
	}
	return 0;
}

static int
http_on_body(llhttp_t *p, const char *at, size_t len)
{
	struct http_conn *c = http_conn_of(p);

	if (evbuffer_get_length(c->req.body) + len > c->server->settings.max_body_bytes)
		return http_fail(c, 413, "the request body is larger than limits.max_body_bytes");
	if (evbuffer_add(c->req.body, at, len) != 0)
		return http_fail(c, 503, "llamachatd is out of memory");
	return 0;
}

/* A chunk announces its size first: refuse one too large before its bytes. */
static int
http_on_chunk_header(llhttp_t *p)
{
	struct http_conn *c = http_conn_of(p);

	if (evbuffer_get_length(c->req.body) + p->content_length > c->server->settings.max_body_bytes)
		return http_fail(c, 413, "the request body is larger than limits.max_body_bytes");
	return 0;
}

static int
http_on_message_complete(llhttp_t *p)
{
	struct http_conn *c = http_conn_of(p);

	http_arm(c, HTTP_TIMER_NONE, 0);
	return HPE_PAUSED;
}

/* Looks at the head's raw bytes before llhttp does, for what llhttp 8 lets
 * pass: a bare LF as a line end, and obs-fold (a line that starts with a
 * blank). Returns how many bytes of data were scanned as head, or -1. */
static int
http_scan_head(struct http_conn *c, const char *data, size_t len)
{
	struct http_scan *s = &c->scan;

	for (size_t i = 0; i < len; i++) {
		char ch = data[i];
		if (!s->active) {
			if (ch == '\r' || ch == '\n')
				continue; /* llhttp skips blank lines between requests */
			s->active = true;
			s->at_line_start = true;
			s->first_line = true;
			s->prev = 0;
		}
		if (ch == '\n' && s->prev != '\r')
			return http_fail(c, 400, "the request head has a bare LF as a line end");
		if (s->at_line_start && !s->first_line && (ch == ' ' || ch == '\t'))
			return http_fail(c, 400, "the request head has an obs-fold (a line starting with a blank)");
		if (ch == '\n') {
			if (s->blank == 1 && !s->first_line) {
				/* CRLF CRLF: the head ends here. */
				*s = (struct http_scan){ 0 };
				c->scan.active = false;
				c->scan.blank = 2; /* done until the next request */
				return (int)(i + 1);
			}
			s->first_line = false;
			s->at_line_start = true;
			s->blank = 1;
		} else if (ch != '\r') {
			s->at_line_start = false;
			s->blank = 0;
		}
		s->prev = ch;
	}
	return (int)len;
}

static int
http_status_of_error(llhttp_errno_t err)
{
	switch (err) {
	case HPE_INVALID_METHOD:
		return 501;
	case HPE_INVALID_VERSION:
	case HPE_PAUSED_H2_UPGRADE:
		return 505;
	case HPE_INVALID_TRANSFER_ENCODING:
		return 501;
	default:
		return 400;
	}
}

static void
http_conn_dispatch(struct http_conn *c)
{
	struct http_server *s = c->server;

	c->req.state = REQUEST_HANDLING;
	if (!s->accepting)
		c->req.close_after = true;
	s->hooks.handle(&c->req, s->hooks.arg);
}

static void
http_in_drain(struct http_conn *c, size_t n)
{
	c->in_start += n;
	if (c->in_start >= c->in_end)
		c->in_start = c->in_end = 0;
}

/* True (with reading paused) while the answers the client has not taken
 * are over the bound: a client that pipelines and never reads gets no more
 * answers made until it does, so its connection's memory stays bounded. */
static bool
http_conn_output_full(struct http_conn *c)
{
	if (evbuffer_get_length(c->out) <= c->server->settings.max_pending_output_bytes)
		return false;
	if (!c->output_full) {
		c->output_full = true;
		if (!c->reading_paused) {
			event_del(c->read_ev);
			c->reading_paused = true;
		}
		http_arm(c, HTTP_TIMER_SEND, c->server->settings.send_timeout_ms);
	}
	return true;
}

static void
http_conn_parse(struct http_conn *c)
{
	if (c->req.state == REQUEST_READING && http_conn_output_full(c))
		return;
	while (c->req.state == REQUEST_READING && !c->closing && c->in_end > c->in_start) {
		const char *data = c->in + c->in_start, *stop;
		size_t len = c->in_end - c->in_start;
		llhttp_errno_t err;

		if (c->scan.blank != 2 && http_scan_head(c, data, len) < 0) {
			http_conn_refuse(c, c->error_status, c->error_detail);
			return;
		}
		err = llhttp_execute(&c->parser, data, len);
		if (err == HPE_PAUSED || err == HPE_PAUSED_UPGRADE) {
			stop = llhttp_get_error_pos(&c->parser);
			http_in_drain(c, stop != NULL ? (size_t)(stop - data) : len);
			/* Never switch protocols: answer, then close (what follows an
			 * Upgrade request on the wire is not HTTP/1.1 any more). */
			if (err == HPE_PAUSED_UPGRADE || c->parser.upgrade)
				c->req.close_after = true;
			if (err != HPE_PAUSED_UPGRADE)
				llhttp_resume(&c->parser);
			c->scan = (struct http_scan){ .at_line_start = true, .first_line = true };
			http_conn_dispatch(c);
			return;
		}
		if (err != HPE_OK) {
			int status = c->error_status != 0 ? c->error_status : http_status_of_error(err);
			const char *detail = c->error_detail;
			char reason[160];
			if (detail == NULL) {
				snprintf(reason, sizeof(reason), "malformed HTTP request: %s",
				    llhttp_get_error_reason(&c->parser));
				detail = reason;
			}
			if (err == HPE_PAUSED_H2_UPGRADE)
				detail = "llamachatd speaks HTTP/1.1, not HTTP/2";
			http_conn_refuse(c, status, detail);
			return;
		}
		http_in_drain(c, len); /* llhttp took it all: the head's strings are copied */
	}
}

static void
http_on_resume(evutil_socket_t fd, short what, void *arg)
{
	struct http_conn *c = arg;

	(void)fd;
	(void)what;
	if (c->broken)
		http_conn_close(c);
	else
		http_conn_parse(c);
}

static void
http_on_readable(evutil_socket_t fd, short what, void *arg)
{
	struct http_conn *c = arg;
	ssize_t n;

	(void)what;
	if (c->lingering) {
		char discard[4096];
		ssize_t got = read(fd, discard, sizeof(discard));
		if (got > 0 && (c->lingered += got) < HTTP_LINGER_BYTES)
			return;
		if (got < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		http_conn_close(c);
		return;
	}
	/* Reads go into the connection's own buffer: no allocation per read. */
	if (c->in == NULL && (c->in = malloc(HTTP_IN_BYTES)) == NULL) {
		log_warnx("http: out of memory for a connection's input; closing it");
		http_conn_close(c);
		return;
	}
	if (c->in_end == HTTP_IN_BYTES && c->in_start > 0) {
		memmove(c->in, c->in + c->in_start, c->in_end - c->in_start);
		c->in_end -= c->in_start;
		c->in_start = 0;
	}
	if (c->in_end == HTTP_IN_BYTES) {
		/* Full of pipelined requests while one is answered: read on
		 * once it is. */
		event_del(c->read_ev);
		c->reading_paused = true;
		return;
	}
	n = read(fd, c->in + c->in_end, HTTP_IN_BYTES - c->in_end);
	if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
		http_conn_close(c);
		return;
	}
	if (n < 0)
		return;
	c->in_end += (size_t)n;
	if (c->req.state == REQUEST_READING)
		http_conn_parse(c);
}

static void
http_on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct http_conn *c = arg;
	enum http_timer kind = c->timer_kind;

	(void)fd;
	(void)what;
	c->timer_kind = HTTP_TIMER_NONE;
	switch (kind) {
	case HTTP_TIMER_HEAD:
		http_conn_refuse(c, 408, "the request head did not arrive within limits.header_timeout_ms");
		break;
	case HTTP_TIMER_BODY:
		http_conn_refuse(c, 408, "the request body did not arrive within limits.body_timeout_ms");
		break;
	case HTTP_TIMER_IDLE:
	case HTTP_TIMER_SEND:
	case HTTP_TIMER_LINGER:
		http_conn_close(c);
		break;
	case HTTP_TIMER_NONE:
		break;
	}
}

/* --- connections -------------------------------------------------------- */

static void
http_server_update_accepting(struct http_server *s)
{
	bool want = s->accepting && s->open < s->settings.max_connections;

	if (want == !s->paused_at_cap)
		return;
	for (size_t i = 0; i < s->listener_count; i++) {
		if (want)
			evconnlistener_enable(s->listeners[i].listener);
		else
			evconnlistener_disable(s->listeners[i].listener);
	}
	if (!want && s->accepting)
		log_warnx(
		    "http: %ld connections open, at limits.max_connections; new ones wait in the backlog", s->open);
	s->paused_at_cap = !want;
}

static void
http_conn_close(struct http_conn *c)
{
	struct http_server *s = c->server;
	struct request *req = &c->req;

	if (req->state == REQUEST_HANDLING || req->state == REQUEST_STREAMING) {
		void (*gone)(void *) = req->on_gone;
		/* 499: the client closed the request, as nginx counts it. Recorded
		 * first: the owner may free its own state when it hears. */
		req->access.status = 499;
		req->state = REQUEST_DONE;
		if (s->hooks.done != NULL)
			s->hooks.done(req, s->hooks.arg);
		req->on_gone = NULL;
		if (gone != NULL)
			gone(req->gone_arg);
	}
	LIST_REMOVE(c, link);
	s->open--;
	event_free(c->read_ev);
	event_free(c->write_ev);
	event_free(c->timer);
	event_free(c->resume_ev);
	free(c->in);
	evbuffer_free(c->out);
	evbuffer_free(req->body);
	close(c->fd);
	free(c->head);
	free(req->header_slots);
	free(c);
	if (s->accepting)
		http_server_update_accepting(s);
}

/* Takes a connected socket into the server; false (fd closed) when out of
 * memory. */
static bool
http_conn_open(struct http_server *s, evutil_socket_t fd, int family)
{
	struct http_conn *c = calloc(1, sizeof(*c));
	int one = 1;

	if (c == NULL || (c->in = malloc(HTTP_IN_BYTES)) == NULL || (c->out = evbuffer_new()) == NULL ||
	    (c->req.body = evbuffer_new()) == NULL ||
	    (c->read_ev = event_new(s->base, fd, EV_READ | EV_PERSIST, http_on_readable, c)) == NULL ||
	    (c->write_ev = event_new(s->base, fd, EV_WRITE | EV_PERSIST, http_on_writable, c)) == NULL ||
	    (c->timer = evtimer_new(s->base, http_on_timer, c)) == NULL ||
	    (c->resume_ev = event_new(s->base, -1, 0, http_on_resume, c)) == NULL) {
		log_warnx("http: out of memory for a new connection; closing it");
		if (c != NULL) {
			if (c->read_ev)
				event_free(c->read_ev);
			if (c->write_ev)
				event_free(c->write_ev);
			if (c->timer)
				event_free(c->timer);
			free(c->in);
			if (c->out)
				evbuffer_free(c->out);
			if (c->req.body)
				evbuffer_free(c->req.body);
			free(c->head);
			free(c);
		}
		close(fd);
		return false;
	}
	c->server = s;
	c->fd = fd;
	if (family == AF_INET || family == AF_INET6)
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c->req.local_peer = family == AF_UNIX;
	llhttp_init(&c->parser, HTTP_REQUEST, &s->parser_settings);
	c->parser.data = c;
	http_request_reset(c);
	LIST_INSERT_HEAD(&s->conns, c, link);
	s->open++;
	s->accepted++;
	event_add(c->read_ev, NULL);
	http_arm(c, HTTP_TIMER_IDLE, s->settings.keepalive_timeout_ms);
	http_server_update_accepting(s);
	return true;
}

static void
http_on_accept(struct evconnlistener *listener, evutil_socket_t fd, struct sockaddr *addr, int len, void *arg)
{
	(void)listener;
	(void)len;
	http_conn_open(arg, fd, addr->sa_family);
}

int
http_server_adopt(struct http_server *s, int fd, bool is_unix)
{
	if (evutil_make_socket_nonblocking(fd) != 0) {
		close(fd);
		return -1;
	}
	return http_conn_open(s, fd, is_unix ? AF_UNIX : AF_INET) ? 0 : -1;
}

/* accept() failed, most likely out of file descriptors: pause the
 * listeners briefly, instead of spinning on a socket that stays readable. */
static void
http_on_accept_error(struct evconnlistener *listener, void *arg)
{
	struct http_server *s = arg;
	struct timeval pause = { 0, HTTP_ACCEPT_PAUSE_MS * 1000 };

	(void)listener;
	log_warn("http: accept failed; pausing the listeners for %d ms", HTTP_ACCEPT_PAUSE_MS);
	for (size_t i = 0; i < s->listener_count; i++)
		evconnlistener_disable(s->listeners[i].listener);
	evtimer_add(s->accept_resume, &pause);
}

static void
http_on_accept_resume(evutil_socket_t fd, short what, void *arg)
{
	struct http_server *s = arg;

	(void)fd;
	(void)what;
	if (s->accepting && !s->paused_at_cap)
		for (size_t i = 0; i < s->listener_count; i++)
			evconnlistener_enable(s->listeners[i].listener);
}

struct http_server *
http_server_create(struct event_base *base, const struct http_settings *settings, const struct http_hooks *hooks)
{
	struct http_server *s = calloc(1, sizeof(*s));

	if (s == NULL)
		return NULL;
	s->base = base;
	s->settings = *settings;
	s->hooks = *hooks;
	s->accepting = true;
	LIST_INIT(&s->conns);
	if ((s->accept_resume = evtimer_new(base, http_on_accept_resume, s)) == NULL) {
		free(s);
		return NULL;
	}
	llhttp_settings_init(&s->parser_settings);
	s->parser_settings.on_message_begin = http_on_message_begin;
	s->parser_settings.on_url = http_on_url;
	s->parser_settings.on_url_complete = http_on_url_complete;
	s->parser_settings.on_header_field = http_on_header_field;
	s->parser_settings.on_header_field_complete = http_on_header_field_complete;
	s->parser_settings.on_header_value = http_on_header_value;
	s->parser_settings.on_header_value_complete = http_on_header_value_complete;
	s->parser_settings.on_headers_complete = http_on_headers_complete;
	s->parser_settings.on_body = http_on_body;
	s->parser_settings.on_chunk_header = http_on_chunk_header;
	s->parser_settings.on_message_complete = http_on_message_complete;
	return s;
}

int
http_server_listen(struct http_server *s, int fd)
{
	struct http_listener *l;

	if (s->listener_count == HTTP_MAX_LISTENERS) {
		close(fd);
		return -1;
	}
	l = &s->listeners[s->listener_count];
	/* 0: the socket listens already, with our backlog (or systemd's);
	 * libevent's -1 would call listen() again with a backlog of 128. */
	l->listener =
	    evconnlistener_new(s->base, http_on_accept, s, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 0, fd);
	if (l->listener == NULL) {
		close(fd);
		return -1;
	}
	evconnlistener_set_error_cb(l->listener, http_on_accept_error);
	if (s->paused_at_cap || !s->accepting)
		evconnlistener_disable(l->listener);
	s->listener_count++;
	return 0;
}

void
http_server_set_settings(struct http_server *s, const struct http_settings *settings)
{
	s->settings = *settings;
	http_server_update_accepting(s);
}

void
http_server_stop_accepting(struct http_server *s)
{
	struct http_conn *c, *next;

	s->accepting = false;
	evtimer_del(s->accept_resume);
	for (size_t i = 0; i < s->listener_count; i++)
		evconnlistener_disable(s->listeners[i].listener);
	/* Idle connections go now; busy ones after their answer. */
	for (c = LIST_FIRST(&s->conns); c != NULL; c = next) {
		next = LIST_NEXT(c, link);
		if (!c->in_use && c->req.state == REQUEST_READING && evbuffer_get_length(c->out) == 0)
			http_conn_close(c);
		else
			c->req.close_after = true;
	}
}

long
http_server_open_connections(const struct http_server *s)
{
	return s->open;
}

unsigned long long
http_server_accepted(const struct http_server *s)
{
	return s->accepted;
}

void
http_server_free(struct http_server *s)
{
	if (s == NULL)
		return;
	s->accepting = false;
	while (!LIST_EMPTY(&s->conns))
		http_conn_close(LIST_FIRST(&s->conns));
	for (size_t i = 0; i < s->listener_count; i++)
		evconnlistener_free(s->listeners[i].listener);
	event_free(s->accept_resume);
	free(s);
}
