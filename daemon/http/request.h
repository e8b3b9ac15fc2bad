/* request: one client request's whole life, from its parsed head to the
 * last byte of its answer. A connection (http.c) owns the request and reuses
 * it for the next one; a handler is handed a struct request * and answers
 * through the functions here, never touching the wire.
 *
 * Ownership: the request belongs to its connection. A handler may keep the
 * pointer until it has sent the whole answer (request_reply*() or
 * request_end()), or until the on_gone hook it set tells it the client went
 * away; after either, the pointer is not its to use. */
#ifndef LLAMACHATD_REQUEST_H
#define LLAMACHATD_REQUEST_H

#include <stdbool.h>
#include <stddef.h>

#include "http/http_headers.h"

struct evbuffer;
struct http_conn;

/* What a request needs of the connection that carries it, filled in by the
 * wire layer (http.c): request.c knows nothing else of connections, so
 * the two never include each other. */
struct request_wire {
	/* Appends bytes (or the whole of buf) to the connection's output. */
	void (*write)(struct http_conn *c, const void *data, size_t len);
	void (*write_buffer)(struct http_conn *c, struct evbuffer *buf);
	/* A head and a body, in one writev() when nothing waits before them. */
	void (*send)(struct http_conn *c, const void *head, size_t head_len, const void *body, size_t body_len);
	/* The answer streams from now on: let go of what reading held. */
	void (*shrink)(struct http_conn *c);
	/* Sends what is written, as far as the socket takes it now. */
	void (*push)(struct http_conn *c);
	/* The answer is complete: log it, go on with the next request. */
	void (*answered)(struct http_conn *c);
	/* Bytes written but not yet taken by the socket. */
	size_t (*unsent)(const struct http_conn *c);
	/* "Date: ...\r\n" for now. */
	const char *(*date_line)(struct http_conn *c);
};

#define REQUEST_ID_MAX 64
#define REQUEST_CLIENT_MAX 64
#define REQUEST_SESSION_MAX 128 /* as SESSION_ID_MAX */
#define REQUEST_OUT_HEADERS_MAX 1024 /* the answer's own header lines */

enum request_method {
	REQUEST_GET,
	REQUEST_HEAD,
	REQUEST_POST,
	REQUEST_PUT,
	REQUEST_PATCH,
	REQUEST_DELETE,
	REQUEST_OPTIONS,
	REQUEST_OTHER, /* known to HTTP, never served: 501 */
};

enum request_state {
	REQUEST_READING, /* its head and body are arriving */
	REQUEST_HANDLING, /* a handler has it and owes an answer */
	REQUEST_STREAMING, /* the answer has started, in chunks */
	REQUEST_DONE, /* answered, or its client went away */
};

/* What the access log and the metrics learn about a request. Handlers fill
 * in what they know (route, client, upstream time, cache). */
struct access_entry {
	double started; /* monotonic seconds at its first byte */
	char request_id[REQUEST_ID_MAX + 1];
	char client[REQUEST_CLIENT_MAX + 1]; /* "-" until known */
	const char *route; /* a static label for metrics */
	double upstream_seconds; /* < 0: upstream not asked */
	const char *cache; /* "HIT", "MISS" or NULL */
	int status; /* of the answer; 499 when the client left first */
	const char *cut; /* a static cause when the answer was cut short; NULL: whole */
	int retries; /* upstream calls made again for it */
	/* W3C trace context: the trace the request belongs to (the client's,
	 * from a valid traceparent, else a new one), the span the daemon opens
	 * for it, and whether it is sampled; lower-case hex. */
	char trace_id[33];
	char span_id[17];
	char parent_id[17]; /* the client's span ("": none) */
	bool sampled;
	unsigned long long bytes; /* of the answer's body */
	/* For its span: whether it is a call of the chat resource, the
	 * session it is about ("": none known), and the tokens of the turn it
	 * ran, from the stream's stop event (-1: none). */
	bool chat;
	char session_id[REQUEST_SESSION_MAX + 1];
	long long input_tokens, output_tokens;
};

struct request {
	struct http_conn *conn;
	const struct request_wire *wire; /* how to reach conn */
	enum request_state state;
	enum request_method method;
	const char *method_name; /* "GET", ... as sent */
	int http_minor; /* HTTP/1.x */
	const char *path; /* origin-form, undecoded, no query */
	const char *query; /* after '?', or NULL */
	struct http_headers headers; /* as sent; X-Request-Id is always ours */
	struct evbuffer *body; /* the whole body, de-chunked */
	struct access_entry access;
	bool local_peer; /* it came over a unix socket */
	/* Where its client's rate limit was taken, once the gate asked (a
	 * request routed again keeps it): not yet, in the bucket every
	 * instance shares (Redis), or here (Redis could not answer). */
	enum request_rate { REQUEST_RATE_UNASKED, REQUEST_RATE_TAKEN, REQUEST_RATE_LOCAL } rate;
	/* Over TLS: the SHA-256 of the client certificate the connection
	 * verified (NULL: none), and whether one was sent but failed. */
	const unsigned char *peer_cert_sha256;
	bool peer_cert_unverified;
	/* private to request.c and http.c */
	/* HTTP_HEADERS_MAX slots for headers, taken with the connection's first
	 * request and kept for the next ones; a stream gives them back. */
	struct http_header *header_slots;
	void (*on_gone)(void *arg);
	void *gone_arg;
	void (*on_drained)(void *arg);
	void *drained_arg;
	char out_headers[REQUEST_OUT_HEADERS_MAX];
	size_t out_headers_len;
	bool out_overflow;
	bool close_after;
	bool no_body; /* a started answer that carries none (HEAD, 1xx, 204, 304) */
};

/* The first header field called name, or NULL. */
const char *request_header(const struct request *req, const char *name);

/* Adds a header line to the answer. name and value must be free of CR, LF
 * and NUL (a value that is not is dropped and logged); Content-Length,
 * Transfer-Encoding, Connection and Date are the server's own. */
void request_add_header(struct request *req, const char *name, const char *value);

/* Sends the whole answer: status, the added headers, and len bytes of body
 * (ignored for HEAD). Ends the handler's hold on req. */
void request_reply(struct request *req, int status, const void *body, size_t len);

/* Like request_reply() with the body taken out of buf (buf is left empty). */
void request_reply_buffer(struct request *req, int status, struct evbuffer *buf);

/* Starts an answer sent in pieces (chunked on HTTP/1.1; on HTTP/1.0 it ends
 * with the connection). From here on only path of the request's head is
 * kept: its headers, query and body are gone. */
void request_start(struct request *req, int status);
/* Sends one piece of a started answer. */
void request_send(struct request *req, const void *data, size_t len);
/* Ends a started answer. Ends the handler's hold on req. */
void request_end(struct request *req);

/* Ends a started answer as cut short: what was written goes out, then the
 * connection closes without the answer's proper end (no last chunk), so
 * every HTTP client reports it incomplete. cause (static) goes into the
 * access line. Ends the handler's hold on req. */
void request_abort(struct request *req, const char *cause);

/* Bytes of the answer written but not yet taken by the client's socket. */
size_t request_unsent(const struct request *req);

/* Calls fn once the unsent bytes have all gone out (NULL: nobody). */
void request_set_on_drained(struct request *req, void (*fn)(void *arg), void *arg);

/* Calls fn if the client goes away before the answer is done (NULL:
 * nobody). After fn runs the request is gone. */
void request_set_on_gone(struct request *req, void (*fn)(void *arg), void *arg);

/* What upstream calls made for a request need of its trace, copied out
 * of the request so that a retry after the client left still has it: the
 * trace, the daemon's span (their parent), whether it is sampled, and for
 * the spans' attributes whether it is a chat call, its session ("": none)
 * and its client ("-": none). */
struct request_trace {
	char trace_id[33];
	char span_id[17];
	bool sampled;
	bool chat;
	char session_id[REQUEST_SESSION_MAX + 1];
	char client[REQUEST_CLIENT_MAX + 1];
};
void request_trace_copy(const struct request *req, struct request_trace *out);

/* A method's name, for logs and upstream. */
const char *request_method_name(enum request_method method);

#endif
