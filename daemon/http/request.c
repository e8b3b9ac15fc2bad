/* request: one client request's whole life, and the answers a handler sends
 * through it. The head of each answer is formatted once, into a fixed
 * buffer, and goes out with the body in as few writes as the socket allows. */
#include "http/request.h"

#include <event2/buffer.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "base/log.h"

#define REQUEST_HEAD_MAX (REQUEST_OUT_HEADERS_MAX + 256)

const char *
request_header(const struct request *req, const char *name)
{
	return http_headers_find(&req->headers, name);
}

static bool
request_text_is_clean(const char *text)
{
	return text[strcspn(text, "\r\n")] == '\0';
}

/* Appends len bytes to the head being built at *at (room bytes left). */
static void
request_put(char **at, size_t *room, const char *text, size_t len)
{
	if (len > *room)
		len = *room;
	memcpy(*at, text, len);
	*at += len;
	*room -= len;
}

void
request_add_header(struct request *req, const char *name, const char *value)
{
	size_t name_len = strlen(name), value_len = strlen(value);
	size_t need = name_len + 2 + value_len + 2;
	char *at;
	size_t room;

	if (!request_text_is_clean(name) || !request_text_is_clean(value)) {
		log_warnx("request: dropping the answer header %s: it holds CR or LF", name);
		return;
	}
	if (req->out_headers_len + need >= sizeof(req->out_headers)) {
		if (!req->out_overflow)
			log_warnx(
			    "request: the answer's headers pass %d bytes; dropping %s", REQUEST_OUT_HEADERS_MAX, name);
		req->out_overflow = true;
		return;
	}
	at = req->out_headers + req->out_headers_len;
	room = need;
	request_put(&at, &room, name, name_len);
	request_put(&at, &room, ": ", 2);
	request_put(&at, &room, value, value_len);
	request_put(&at, &room, "\r\n", 2);
	req->out_headers_len += need;
}

static const char *
request_reason(int status)
{
	switch (status) {
	case 100:
		return "Continue";
	case 200:
		return "OK";
	case 201:
		return "Created";
	case 202:
		return "Accepted";
	case 204:
		return "No Content";
	case 301:
		return "Moved Permanently";
	case 302:
		return "Found";
	case 304:
		return "Not Modified";
	case 307:
		return "Temporary Redirect";
	case 308:
		return "Permanent Redirect";
	case 400:
		return "Bad Request";
	case 401:
		return "Unauthorized";
	case 403:
		return "Forbidden";
	case 404:
		return "Not Found";
	case 405:
		return "Method Not Allowed";
	case 408:
		return "Request Timeout";
	case 409:
		return "Conflict";
	case 413:
		return "Content Too Large";
	case 414:
		return "URI Too Long";
	case 415:
		return "Unsupported Media Type";
	case 417:
		return "Expectation Failed";
	case 422:
		return "Unprocessable Content";
	case 429:
		return "Too Many Requests";
	case 431:
		return "Request Header Fields Too Large";
	case 500:
		return "Internal Server Error";
	case 501:
		return "Not Implemented";
	case 502:
		return "Bad Gateway";
	case 503:
		return "Service Unavailable";
	case 504:
		return "Gateway Timeout";
	case 505:
		return "HTTP Version Not Supported";
	default:
		return status < 300 ? "OK" : status < 500 ? "Client Error" : "Server Error";
	}
}

/* True for statuses whose answers never carry a body. */
static bool
request_status_has_no_body(int status)
{
	return status == 204 || status == 304 || (status >= 100 && status < 200);
}

/* Formats the status line and headers into head; framing says how the body
 * is delimited ("Content-Length: N\r\n" or the chunked line). Plain
 * copies: this runs for every answer. */
static size_t
request_format_head(struct request *req, int status, const char *framing, char *head)
{
	const char *reason = request_reason(status), *date = req->wire->date_line(req->conn);
	const char *connection = req->close_after ? "Connection: close\r\n"
	    : req->http_minor == 0                ? "Connection: keep-alive\r\n"
	                                          : "";
	char status_line[] = "HTTP/1.1 000 ";
	char *at = head;
	size_t room = REQUEST_HEAD_MAX;

	if (req->http_minor == 0)
		status_line[7] = '0';
	status = status < 100 || status > 999 ? 500 : status;
	status_line[9] = (char)('0' + status / 100);
	status_line[10] = (char)('0' + status / 10 % 10);
	status_line[11] = (char)('0' + status % 10);
	request_put(&at, &room, status_line, sizeof(status_line) - 1);
	request_put(&at, &room, reason, strlen(reason));
	request_put(&at, &room, "\r\n", 2);
	request_put(&at, &room, date, strlen(date));
	request_put(&at, &room, framing, strlen(framing));
	request_put(&at, &room, connection, strlen(connection));
	request_put(&at, &room, req->out_headers, req->out_headers_len);
	request_put(&at, &room, "\r\n", 2);
	return (size_t)(at - head);
}

/* Formats the head of an answer into head (REQUEST_HEAD_MAX bytes); returns
 * its length. */
static size_t
request_head(struct request *req, int status, size_t length, bool streamed, char *head)
{
	static const char chunked[] = "Transfer-Encoding: chunked\r\n";
	char framing[64] = "", digits[24];
	size_t n = 0;

	req->access.status = status;
	/* 1xx, 204 and 304 have no body, so no framing either: a chunked
	 * terminator after one would be read as the start of the next answer. */
	if (streamed && !request_status_has_no_body(status)) {
		if (req->http_minor == 0)
			req->close_after = true; /* HTTP/1.0: the end of the connection ends it */
		else
			memcpy(framing, chunked, sizeof(chunked));
	} else if (!request_status_has_no_body(status)) {
		/* The digits backwards, then forwards after the name. */
		do
			digits[n++] = (char)('0' + length % 10);
		while ((length /= 10) > 0);
		memcpy(framing, "Content-Length: ", 16);
		for (size_t i = 0; i < n; i++)
			framing[16 + i] = digits[n - 1 - i];
		memcpy(framing + 16 + n, "\r\n", 3);
	}
	return request_format_head(req, status, framing, head);
}

static void
request_send_head(struct request *req, int status, size_t length, bool streamed)
{
	char head[REQUEST_HEAD_MAX];
	size_t len = request_head(req, status, length, streamed, head);

	req->wire->write(req->conn, head, len);
}

void
request_reply(struct request *req, int status, const void *body, size_t len)
{
	char head[REQUEST_HEAD_MAX];
	size_t head_len;

	if (req->state != REQUEST_HANDLING)
		return;
	head_len = request_head(req, status, len, false, head);
	if (req->method == REQUEST_HEAD || request_status_has_no_body(status))
		len = 0;
	req->access.bytes = len;
	req->wire->send(req->conn, head, head_len, body, len);
	req->wire->answered(req->conn);
}

void
request_reply_buffer(struct request *req, int status, struct evbuffer *buf)
{
	size_t len = buf != NULL ? evbuffer_get_length(buf) : 0;

	if (req->state != REQUEST_HANDLING)
		return;
	request_send_head(req, status, len, false);
	if (req->method != REQUEST_HEAD && !request_status_has_no_body(status) && len > 0) {
		req->wire->write_buffer(req->conn, buf);
		req->access.bytes = len;
	} else if (buf != NULL) {
		evbuffer_drain(buf, len);
	}
	req->wire->answered(req->conn);
}

void
request_start(struct request *req, int status)
{
	if (req->state != REQUEST_HANDLING)
		return;
	request_send_head(req, status, 0, true);
	req->state = REQUEST_STREAMING;
	req->no_body = req->method == REQUEST_HEAD || request_status_has_no_body(status);
	req->wire->shrink(req->conn);
	req->wire->push(req->conn);
}

void
request_send(struct request *req, const void *data, size_t len)
{
	char size_line[24];
	int n;

	if (req->state != REQUEST_STREAMING || len == 0 || req->no_body)
		return;
	req->access.bytes += len;
	if (req->http_minor == 0) {
		req->wire->write(req->conn, data, len);
		req->wire->push(req->conn);
		return;
	}
	n = snprintf(size_line, sizeof(size_line), "%zx\r\n", len);
	req->wire->write(req->conn, size_line, (size_t)n);
	req->wire->write(req->conn, data, len);
	req->wire->write(req->conn, "\r\n", 2);
	req->wire->push(req->conn);
}

void
request_end(struct request *req)
{
	if (req->state != REQUEST_STREAMING)
		return;
	if (req->http_minor != 0 && !req->no_body)
		req->wire->write(req->conn, "0\r\n\r\n", 5);
	req->wire->answered(req->conn);
}

void
request_abort(struct request *req, const char *cause)
{
	if (req->state != REQUEST_STREAMING)
		return;
	req->access.cut = cause;
	req->close_after = true;
	req->wire->answered(req->conn);
}

size_t
request_unsent(const struct request *req)
{
	return req->wire->unsent(req->conn);
}

void
request_set_on_drained(struct request *req, void (*fn)(void *arg), void *arg)
{
	req->on_drained = fn;
	req->drained_arg = arg;
}

void
request_set_on_gone(struct request *req, void (*fn)(void *arg), void *arg)
{
	req->on_gone = fn;
	req->gone_arg = arg;
}

void
request_trace_copy(const struct request *req, struct request_trace *out)
{
	const struct access_entry *e = &req->access;

	memcpy(out->trace_id, e->trace_id, sizeof(out->trace_id));
	memcpy(out->span_id, e->span_id, sizeof(out->span_id));
	out->sampled = e->sampled;
	out->chat = e->chat;
	memcpy(out->session_id, e->session_id, sizeof(out->session_id));
	memcpy(out->client, e->client, sizeof(out->client));
}

const char *
request_method_name(enum request_method method)
{
	static const char *const names[] = { "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "OTHER" };

	return names[method];
}
