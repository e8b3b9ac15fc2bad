/* http_private: what the files of the HTTP layer share (http.c: the server,
 * its connections and their timers; http_parse.c: reading a request with
 * llhttp and our own rules; http_output.c: writing answers). Nothing
 * outside daemon/http/ includes it. */
#ifndef LLAMACHATD_HTTP_PRIVATE_H
#define LLAMACHATD_HTTP_PRIVATE_H

#include <event2/event.h>
#include <llhttp.h>
#include <openssl/ssl.h>
#include <sys/types.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/queue.h>
#include <time.h>

#include "http/http.h"
#include "http/request.h"

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
	HTTP_TIMER_HANDSHAKE, /* a TLS handshake, from the connection's start */
};

/* How TLS handshakes ended, for /metrics. */
enum http_tls_result {
	HTTP_TLS_OK, /* a full handshake */
	HTTP_TLS_RESUMED, /* a resumed session */
	HTTP_TLS_FAILED,
	HTTP_TLS_TIMEOUT, /* not done within limits.header_timeout_ms */
	HTTP_TLS_RESULTS,
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
	/* TLS: NULL on a plain connection. */
	SSL *ssl;
	bool tls_ready; /* the handshake is done */
	bool tls_read_wants_write; /* a read (or the handshake) waits for writability */
	bool peer_verified, peer_unverified; /* a client certificate, and its fate */
	unsigned char peer_sha256[32];
	struct request req;
};

struct http_listener {
	struct evconnlistener *listener;
	struct http_server *server;
	bool tls;
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
	struct http_tls *tls; /* for new TLS connections; NULL: none */
	unsigned long long tls_results[HTTP_TLS_RESULTS];
};

/* The wire a request reaches its connection through (http_output.c). */
extern const struct request_wire http_wire;

/* http.c: arms the connection's one timer (HTTP_TIMER_NONE: disarms). */
void http_arm(struct http_conn *c, enum http_timer kind, long ms);
/* http.c: makes the request object ready for the next request on c. */
void http_request_reset(struct http_conn *c);
/* http.c: reads again (reading was paused), and at once when TLS holds
 * decrypted bytes no socket event will announce. */
void http_conn_read_on(struct http_conn *c);
/* http.c: closes c; a request in progress hears on_gone (status 499). */
void http_conn_close(struct http_conn *c);

/* http_parse.c: parses what c's input holds, up to one whole request,
 * which it hands to the handler; waits while c's output is over the bound. */
void http_conn_parse(struct http_conn *c);
/* http_parse.c: answers the request being read with our own error, and
 * closes after it. */
void http_conn_refuse(struct http_conn *c, int status, const char *detail);
/* http_parse.c: llhttp's callbacks, into settings. */
void http_parse_settings(llhttp_settings_t *settings);

/* http_output.c: writes what the socket takes now; arms the send deadline
 * for the rest. A socket that fails is closed later, from the loop. */
void http_conn_flush(struct http_conn *c);
/* http_output.c: c's socket can take more. */
void http_on_writable(evutil_socket_t fd, short what, void *arg);
/* http_output.c: the answer is complete: log it, go on with the next. */
void http_conn_answered(struct http_conn *c);
/* http_output.c: output the connection holds, for the request's wire. */
void http_conn_write(struct http_conn *c, const void *data, size_t len);

/* http_tls.c: the TLS side of a connection. */
/* Starts TLS on a new connection (server side); -1 when out of memory. */
int http_tls_conn_start(struct http_conn *c, struct http_tls *tls);
/* Sends close_notify, as far as the socket takes it now. */
void http_tls_conn_shutdown(struct http_conn *c);
void http_tls_conn_free(struct http_conn *c);

/* The connection's reads and writes, TLS or plain: bytes moved, 0 for the
 * peer's end (reads), or -1 with errno (EAGAIN: wait; a TLS read or the
 * handshake that needs the socket writable sets tls_read_wants_write).
 * On TLS the handshake runs first, inside them. */
ssize_t http_io_read(struct http_conn *c, void *buf, size_t len);
ssize_t http_io_write(struct http_conn *c, const void *buf, size_t len);
/* True when TLS holds decrypted bytes not read yet (no socket event will
 * say so). */
bool http_io_pending(const struct http_conn *c);

#endif
