/* http_parse: reading one request at a time with llhttp in strict mode,
 * plus our own rules (Host, framing, the target, bare LF, obs-fold), and
 * refusing with a JSON answer what breaks them. */
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
#include "base/log.h"
#include "http/http_private.h"
#include "http/reply.h"
#include "http/request.h"
#include "http/uri.h"

static void http_point_head(struct http_conn *c);

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
void
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

void
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

void
http_parse_settings(llhttp_settings_t *settings)
{
	llhttp_settings_init(settings);
	settings->on_message_begin = http_on_message_begin;
	settings->on_url = http_on_url;
	settings->on_url_complete = http_on_url_complete;
	settings->on_header_field = http_on_header_field;
	settings->on_header_field_complete = http_on_header_field_complete;
	settings->on_header_value = http_on_header_value;
	settings->on_header_value_complete = http_on_header_value_complete;
	settings->on_headers_complete = http_on_headers_complete;
	settings->on_body = http_on_body;
	settings->on_chunk_header = http_on_chunk_header;
	settings->on_message_complete = http_on_message_complete;
}
