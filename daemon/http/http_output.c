/* http_output: writing answers to a connection: queued output, one
 * writev() on the hot path, the send deadline, lingering after a refusal,
 * and the wire a request reaches its connection through. */
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
http_conn_write(struct http_conn *c, const void *data, size_t len)
{
	if (len > 0 && evbuffer_add(c->out, data, len) != 0)
		log_warnx("http: out of memory for an answer");
}

static void
http_conn_write_buffer(struct http_conn *c, struct evbuffer *buf)
{
	if (evbuffer_add_buffer(c->out, buf) != 0)
		log_warnx("http: out of memory for an answer");
}

static size_t
http_conn_unsent(const struct http_conn *c)
{
	return evbuffer_get_length(c->out);
}

/* The output is all out: shut the write side and read what the client still
 * sends for a moment, so that the answer is not lost to a reset. */
static void
http_conn_linger(struct http_conn *c)
{
	http_tls_conn_shutdown(c);
	shutdown(c->fd, SHUT_WR);
	c->lingering = true;
	c->lingered = 0;
	if (c->reading_paused) {
		event_add(c->read_ev, NULL);
		c->reading_paused = false;
	}
	http_arm(c, HTTP_TIMER_LINGER, HTTP_LINGER_MS);
}

void
http_conn_flush(struct http_conn *c)
{
	if (c->broken)
		return;
	while (evbuffer_get_length(c->out) > 0) {
		int n;
		if (c->ssl != NULL) {
			/* One TLS record of up to 16 KB at a time. */
			size_t len = evbuffer_get_length(c->out) < 16384 ? evbuffer_get_length(c->out) : 16384;
			n = (int)http_io_write(c, evbuffer_pullup(c->out, (ssize_t)len), len);
			if (n > 0)
				evbuffer_drain(c->out, (size_t)n);
		} else {
			n = evbuffer_write(c->out, c->fd);
		}
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
		if (!c->lingering && c->in_end < HTTP_IN_BYTES)
			http_conn_read_on(c);
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
	if (event_pending(c->write_ev, EV_WRITE, NULL) && !c->tls_read_wants_write)
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

static void
http_conn_send(struct http_conn *c, const void *head, size_t head_len, const void *body, size_t body_len)
{
	struct iovec iov[2] = { { (void *)head, head_len }, { (void *)body, body_len } };
	ssize_t n = 0;

	/* The hot path: nothing queued, so the socket gets both at once and
	 * nothing is copied. Anything left over is queued in order. */
	if (evbuffer_get_length(c->out) == 0 && !c->broken && c->ssl == NULL) {
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

static void
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

static void
http_conn_push(struct http_conn *c)
{
	http_conn_flush(c);
}

void
http_on_writable(evutil_socket_t fd, short what, void *arg)
{
	struct http_conn *c = arg;

	(void)fd;
	(void)what;
	if (c->tls_read_wants_write) {
		/* TLS read (or handshake) that waited to write: read again. */
		c->tls_read_wants_write = false;
		event_active(c->read_ev, EV_READ, 0);
	}
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
	if (!c->output_full)
		http_conn_read_on(c);
	http_conn_flush(c);
}

static const char *
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

const struct request_wire http_wire = {
	.write = http_conn_write,
	.write_buffer = http_conn_write_buffer,
	.send = http_conn_send,
	.shrink = http_conn_shrink,
	.push = http_conn_push,
	.answered = http_conn_answered,
	.unsent = http_conn_unsent,
	.date_line = http_conn_date_line,
};
