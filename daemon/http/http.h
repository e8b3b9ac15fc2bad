/* http: llamachatd's own strict HTTP/1.1 server on libevent's loop. It
 * accepts connections on listening sockets it is given, parses requests with
 * llhttp (strict mode, plus our own rules on Host, framing and the target),
 * enforces deadlines a trickle cannot stretch, answers pipelined requests in
 * order, and hands each whole request to one handler as a struct request.
 * Nothing else in the daemon knows the wire format. */
/* Layer http (daemon/http/): the wire. Owns connections, llhttp and our
 * strict rules, deadlines, writing answers, the request object handlers
 * see (request.h), JSON errors (reply.h), the access log, header lists and
 * the URI rules. May include base/ only. */
#ifndef LLAMACHATD_HTTP_H
#define LLAMACHATD_HTTP_H

#include <stdbool.h>
#include <stddef.h>

struct event_base;
struct http_server;
struct request;

struct http_settings {
	size_t max_header_bytes; /* the head: request line and fields; past it 431 */
	size_t max_target_bytes; /* the request-target; past it 414 */
	size_t max_body_bytes; /* past it 413 */
	long header_timeout_ms; /* from a request's first byte to its head's end; 408 */
	long body_timeout_ms; /* from the head's end to the body's end; 408 */
	long keepalive_timeout_ms; /* an idle connection between requests closes */
	long send_timeout_ms; /* an answer the client takes nothing of for so long: closed */
	long max_connections; /* past it the listeners pause; newcomers wait in the backlog */
	/* A connection's answers not yet taken by the client: past it no more
	 * pipelined requests are parsed (nor read) until it drains. */
	size_t max_pending_output_bytes;
};

struct http_hooks {
	/* A request's head is known (or refused): set its id and record. */
	void (*begin)(struct request *req, void *arg);
	/* A whole request arrived; the handler owes it an answer. */
	void (*handle)(struct request *req, void *arg);
	/* The request ended: answered, or its client left (status 499). */
	void (*done)(const struct request *req, void *arg);
	void *arg;
};

/* Creates a server on base; settings and hooks are copied. Returns NULL when
 * out of memory; free with http_server_free(). */
struct http_server *http_server_create(struct event_base *base, const struct http_settings *settings,
    const struct http_hooks *hooks) __attribute__((warn_unused_result));

/* Serves the listening socket fd (TLS when tls: see
 * http_server_set_tls()), which the server then owns (closed on failure
 * too). Returns 0 or -1. */
int http_server_listen(struct http_server *server, int fd, bool tls) __attribute__((warn_unused_result));

/* The TLS context for new handshakes on TLS listeners, which the server
 * then owns (it frees the one it had; connections that began under it keep
 * it to their end). NULL: none (TLS listeners then refuse connections). */
struct http_tls;
void http_server_set_tls(struct http_server *server, struct http_tls *tls);

/* TLS handshakes so far: full, resumed, failed and timed out. */
struct http_tls_counts {
	unsigned long long ok, resumed, failed, timeout;
};
void http_server_tls_counts(const struct http_server *server, struct http_tls_counts *out);

/* Serves one socket already connected (is_unix: a local peer), as if it had
 * been accepted; the server then owns fd. Returns 0 or -1 (fd closed). For
 * tests and fuzzers that feed a socketpair. */
int http_server_adopt(struct http_server *server, int fd, bool is_unix) __attribute__((warn_unused_result));

/* New limits and timeouts for requests that start from now on. */
void http_server_set_settings(struct http_server *server, const struct http_settings *settings);

/* Closes the listeners; open connections are served to the end of the
 * request in progress and then closed. */
void http_server_stop_accepting(struct http_server *server);

/* Client connections open now, and accepted since start. */
long http_server_open_connections(const struct http_server *server);
unsigned long long http_server_accepted(const struct http_server *server);

/* Closes every connection (their requests' on_gone hooks run) and the
 * listeners, and frees the server. */
void http_server_free(struct http_server *server);

#endif
