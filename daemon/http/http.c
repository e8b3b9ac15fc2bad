/* http: llamachatd's own strict HTTP/1.1 server on libevent's loop: the
 * server, its listeners and connections, and their deadlines (reading a
 * request is http_parse.c, writing answers http_output.c).
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
#include "base/log.h"
#include "http/http_private.h"
#include "http/reply.h"
#include "http/request.h"
#include "http/uri.h"

void
http_arm(struct http_conn *c, enum http_timer kind, long ms)
{
	struct timeval tv = clock_timeval_ms(ms);

	c->timer_kind = kind;
	if (kind == HTTP_TIMER_NONE)
		evtimer_del(c->timer);
	else
		evtimer_add(c->timer, &tv);
}

void
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
	req->wire = &http_wire;
	req->peer_cert_sha256 = c->peer_verified ? c->peer_sha256 : NULL;
	req->peer_cert_unverified = c->peer_unverified;
	req->body = body;
	req->local_peer = local;
	req->state = REQUEST_READING;
	req->method_name = "-";
	req->path = "-";
	req->access.upstream_seconds = -1;
	req->access.input_tokens = req->access.output_tokens = -1;
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
	n = http_io_read(c, c->in + c->in_end, HTTP_IN_BYTES - c->in_end);
	if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
		http_conn_close(c);
		return;
	}
	if (n < 0) {
		/* TLS that must write before it reads on (a handshake's answer). */
		if (c->tls_read_wants_write && !event_pending(c->write_ev, EV_WRITE, NULL))
			event_add(c->write_ev, NULL);
		return;
	}
	c->in_end += (size_t)n;
	if (http_io_pending(c))
		event_active(c->read_ev, EV_READ, 0);
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
	case HTTP_TIMER_HANDSHAKE:
		/* A handshake is cut like a trickled head: no answer is
		 * possible before it is done. */
		c->server->tls_results[HTTP_TLS_TIMEOUT]++;
		log_debug("http: a TLS handshake took longer than limits.header_timeout_ms; closing");
		http_conn_close(c);
		break;
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

/* Frees what a connection holds, and the connection; safe on one that was
 * only half built. The caller closes its fd and has taken it off the
 * server's list. */
static void
http_conn_free(struct http_conn *c)
{
	http_tls_conn_free(c);
	if (c->read_ev != NULL)
		event_free(c->read_ev);
	if (c->write_ev != NULL)
		event_free(c->write_ev);
	if (c->timer != NULL)
		event_free(c->timer);
	if (c->resume_ev != NULL)
		event_free(c->resume_ev);
	free(c->in);
	if (c->out != NULL)
		evbuffer_free(c->out);
	if (c->req.body != NULL)
		evbuffer_free(c->req.body);
	free(c->head);
	free(c->req.header_slots);
	free(c);
}

void
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
	close(c->fd);
	http_conn_free(c);
	if (s->accepting)
		http_server_update_accepting(s);
}

/* Takes a connected socket into the server; false (fd closed) when out of
 * memory. */
static bool
http_conn_open(struct http_server *s, evutil_socket_t fd, int family, bool tls)
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
		if (c != NULL)
			http_conn_free(c);
		close(fd);
		return false;
	}
	c->server = s;
	c->fd = fd;
	/* Clients' I/O comes first on the loop: a lookup waits behind no
	 * upstream work (curl's events keep the default, lower, priority). */
	event_priority_set(c->read_ev, 0);
	event_priority_set(c->write_ev, 0);
	event_priority_set(c->resume_ev, 0);
	if (tls && (s->tls == NULL || http_tls_conn_start(c, s->tls) != 0)) {
		log_warnx("http: cannot start TLS on a new connection; closing it");
		http_conn_free(c);
		close(fd);
		return false;
	}
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
	/* Over TLS the head's deadline starts with the handshake. */
	if (c->ssl != NULL)
		http_arm(c, HTTP_TIMER_HANDSHAKE, s->settings.header_timeout_ms);
	else
		http_arm(c, HTTP_TIMER_IDLE, s->settings.keepalive_timeout_ms);
	http_server_update_accepting(s);
	return true;
}

static void
http_on_accept(struct evconnlistener *listener, evutil_socket_t fd, struct sockaddr *addr, int len, void *arg)
{
	struct http_listener *l = arg;

	(void)listener;
	(void)len;
	http_conn_open(l->server, fd, addr->sa_family, l->tls);
}

void
http_conn_read_on(struct http_conn *c)
{
	if (c->reading_paused) {
		event_add(c->read_ev, NULL);
		c->reading_paused = false;
	}
	if (http_io_pending(c))
		event_active(c->read_ev, EV_READ, 0);
}

int
http_server_adopt(struct http_server *s, int fd, bool is_unix)
{
	if (evutil_make_socket_nonblocking(fd) != 0) {
		close(fd);
		return -1;
	}
	return http_conn_open(s, fd, is_unix ? AF_UNIX : AF_INET, false) ? 0 : -1;
}

/* accept() failed, most likely out of file descriptors: pause the
 * listeners briefly, instead of spinning on a socket that stays readable. */
static void
http_on_accept_error(struct evconnlistener *listener, void *arg)
{
	struct http_server *s = ((struct http_listener *)arg)->server;
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
	http_parse_settings(&s->parser_settings);
	return s;
}

int
http_server_listen(struct http_server *s, int fd, bool tls)
{
	struct http_listener *l;

	if (s->listener_count == HTTP_MAX_LISTENERS) {
		close(fd);
		return -1;
	}
	l = &s->listeners[s->listener_count];
	l->server = s;
	l->tls = tls;
	/* 0: the socket listens already, with our backlog (or systemd's);
	 * libevent's -1 would call listen() again with a backlog of 128. */
	l->listener =
	    evconnlistener_new(s->base, http_on_accept, l, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 0, fd);
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
	http_server_set_tls(s, NULL);
	free(s);
}
