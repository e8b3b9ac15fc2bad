/* http_private: what request.c needs of the connection that owns a request.
 * Only http.c and request.c include it. */
#ifndef LLAMACHATD_HTTP_PRIVATE_H
#define LLAMACHATD_HTTP_PRIVATE_H

#include <stddef.h>

struct evbuffer;
struct http_conn;

/* Appends bytes (or the whole of buf) to the connection's output and writes
 * what the socket takes now. */
void http_conn_write(struct http_conn *c, const void *data, size_t len);
void http_conn_write_buffer(struct http_conn *c, struct evbuffer *buf);

/* Sends a head and a body: with one writev() when nothing waits before
 * them, and whatever the socket does not take is kept and sent later. */
void http_conn_send(struct http_conn *c, const void *head, size_t head_len, const void *body, size_t body_len);

/* The request's answer has started streaming: frees what the connection
 * holds for reading a request (its head's strings and headers go; the path
 * is kept), so that a long stream costs little. */
void http_conn_shrink(struct http_conn *c);

/* Sends what is written now, as far as the socket takes it. A socket that
 * fails is closed later, from the loop, never from inside this call. */
void http_conn_push(struct http_conn *c);

/* The request's answer is complete: log it, then go on with the next. */
void http_conn_answered(struct http_conn *c);

/* Bytes written but not yet taken by the socket. */
size_t http_conn_unsent(const struct http_conn *c);

/* "Date: ...\r\n" for now, formatted at most once a second. */
const char *http_conn_date_line(struct http_conn *c);

#endif
