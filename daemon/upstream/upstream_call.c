/* upstream_call: one upstream call: the request curl sends (the client's
 * forwardable headers, the key, the body) and the answer's headers and
 * body as they arrive. */
#include "upstream/upstream.h"

#include <curl/curl.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <sys/queue.h>

#include "base/clock.h"
#include "base/log.h"
#include "upstream/upstream_private.h"

/* Headers that describe one hop, or carry the client's own credentials, or
 * that curl sets itself for the upstream hop. With their lengths: every
 * client header of every call is looked up here. */
#define DROPPED(name) \
	{ \
		name, sizeof(name) - 1 \
	}
static const struct {
	const char *name;
	size_t len;
} upstream_dropped_headers[] = {
	DROPPED("authorization"), DROPPED("cookie"), DROPPED("connection"), DROPPED("keep-alive"),
	DROPPED("proxy-authorization"), DROPPED("proxy-authenticate"), DROPPED("proxy-connection"), DROPPED("te"),
	DROPPED("trailer"), DROPPED("transfer-encoding"), DROPPED("upgrade"), DROPPED("http2-settings"),
	DROPPED("host"), DROPPED("content-length"), DROPPED("expect"), DROPPED("accept-encoding"),
	DROPPED("idempotency-key"), /* ours is derived: upstream_request.idempotency_key */
	DROPPED("traceparent"), /* ours names the call's span: upstream_request.trace */
};
#undef DROPPED

bool
upstream_header_is_forwarded(const char *name)
{
	size_t len = strlen(name);

	for (size_t i = 0; i < sizeof(upstream_dropped_headers) / sizeof(upstream_dropped_headers[0]); i++)
		if (upstream_dropped_headers[i].len == len && strcasecmp(name, upstream_dropped_headers[i].name) == 0)
			return false;
	return true;
}

/* Upstream answer headers the client gets back; Set-Cookie and the rest stay
 * behind. */
static const char *const upstream_kept_response_headers[] = {
	"content-type",
	"retry-after",
	"retry-after-ms",
	"x-should-retry",
};

_Static_assert(
    sizeof(upstream_kept_response_headers) / sizeof(upstream_kept_response_headers[0]) == UPSTREAM_KEPT_HEADERS,
    "the kept answer headers and their slots differ");

/* The slot of a kept answer header, or -1 for one that stays behind. */
static int
upstream_kept_slot(const char *name, size_t len)
{
	for (int i = 0; i < UPSTREAM_KEPT_HEADERS; i++) {
		const char *kept = upstream_kept_response_headers[i];
		if (strlen(kept) == len && strncasecmp(name, kept, len) == 0)
			return i;
	}
	return -1;
}

/* Points the call's header list at the kept headers it has. */
static void
upstream_list_kept(struct upstream_call *call)
{
	call->response_headers.count = 0;
	for (int i = 0; i < UPSTREAM_KEPT_HEADERS; i++)
		if (call->kept_present[i])
			http_headers_add(&call->response_headers, upstream_kept_response_headers[i],
			    call->kept_store + call->kept_at[i]);
}

/* Tells a streamed call's owner the status and headers, once. */
void
upstream_deliver_headers(struct upstream_call *call)
{
	long status = 0;

	if (call->stream == NULL || call->headers_delivered)
		return;
	curl_easy_getinfo(call->easy, CURLINFO_RESPONSE_CODE, &status);
	call->headers_delivered = true;
	call->stream->on_headers(status, &call->response_headers, call->arg);
}

static size_t
upstream_write_cb(char *data, size_t size, size_t count, void *userp)
{
	struct upstream_call *call = userp;
	size_t len = size * count;

	if (call->stream != NULL) {
		upstream_deliver_headers(call);
		if (call->stream->on_data(data, len, call->arg) == UPSTREAM_FLOW_PAUSE) {
			call->paused = true;
			return CURL_WRITEFUNC_PAUSE;
		}
		return len;
	}
	if (evbuffer_get_length(call->response_body) + len > (size_t)call->upstream->settings.max_response_bytes) {
		call->too_large = true;
		return 0; /* aborts the transfer */
	}
	if (evbuffer_add(call->response_body, data, len) != 0)
		return 0;
	return len;
}

static size_t
upstream_header_cb(char *data, size_t size, size_t count, void *userp)
{
	struct upstream_call *call = userp;
	size_t len = size * count;
	const char *colon;
	size_t name_len, value_len;
	int slot;

	/* A new status line (after a 1xx) starts a new header block. */
	if (len >= 5 && strncmp(data, "HTTP/", 5) == 0) {
		memset(call->kept_present, 0, sizeof(call->kept_present));
		call->kept_used = 0;
		upstream_list_kept(call);
		return len;
	}
	/* The blank line that ends the final header block: a stream's owner
	 * learns the status now, before any of the body. */
	if ((len == 2 && data[0] == '\r') || (len == 1 && data[0] == '\n')) {
		long status = 0;
		curl_easy_getinfo(call->easy, CURLINFO_RESPONSE_CODE, &status);
		if (status >= 200)
			upstream_deliver_headers(call);
		return len;
	}
	colon = memchr(data, ':', len);
	if (colon == NULL)
		return len;
	name_len = (size_t)(colon - data);
	if ((slot = upstream_kept_slot(data, name_len)) < 0)
		return len;
	const char *v = colon + 1;
	const char *end = data + len;
	while (v < end && (*v == ' ' || *v == '\t'))
		v++;
	while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' '))
		end--;
	value_len = (size_t)(end - v);
	if (value_len + 1 > sizeof(call->kept_store) - call->kept_used) {
		log_warnx("upstream: its %.*s header is too long to pass on", (int)name_len, data);
		return len;
	}
	memcpy(call->kept_store + call->kept_used, v, value_len);
	call->kept_store[call->kept_used + value_len] = '\0';
	call->kept_at[slot] = call->kept_used;
	call->kept_used += value_len + 1;
	call->kept_present[slot] = true;
	upstream_list_kept(call);
	return len;
}

/* Appends "name: value" to the call's header list ("name;" for an empty
 * value, curl's way of sending one), formatted on the stack when it fits.
 * The line is wiped after curl copied it: it may be the key's. */
static int
upstream_append_header(struct upstream_call *call, const char *name, const char *value)
{
	char small[512], *line = small;
	size_t name_len = strlen(name), value_len = strlen(value), size = name_len + value_len + 3;
	struct curl_slist *grown;

	if (size > sizeof(small) && (line = malloc(size)) == NULL)
		return -1;
	/* "Name: value", or "Name;" for an empty value (curl's way to send one). */
	memcpy(line, name, name_len);
	if (value_len == 0) {
		memcpy(line + name_len, ";", 2);
	} else {
		memcpy(line + name_len, ": ", 2);
		memcpy(line + name_len + 2, value, value_len + 1);
	}
	grown = curl_slist_append(call->request_headers, line);
	explicit_bzero(line, size);
	if (line != small)
		free(line);
	if (grown == NULL)
		return -1;
	call->request_headers = grown;
	return 0;
}

/* Builds the header list: the client's forwardable headers, then the key. */
static int
upstream_build_headers(
    struct upstream_call *call, const struct http_headers *client_headers, const char *idempotency_key, bool has_body)
{
	char bearer[512], *authorization = bearer;
	size_t size = strlen("Bearer ") + strlen(call->key) + 1;
	bool has_content_type = false;
	int rc;

	if (client_headers != NULL) {
		for (size_t i = 0; i < client_headers->count; i++) {
			const struct http_header *h = &client_headers->items[i];
			if (!upstream_header_is_forwarded(h->name))
				continue;
			if (strcasecmp(h->name, "content-type") == 0)
				has_content_type = true;
			if (upstream_append_header(call, h->name, h->value) != 0)
				return -1;
		}
	}
	if (idempotency_key != NULL && upstream_append_header(call, "Idempotency-Key", idempotency_key) != 0)
		return -1;
	if (call->traceparent[0] != '\0' && upstream_append_header(call, "traceparent", call->traceparent) != 0)
		return -1;
	/* Keep curl from inventing headers the client did not send ("Name:"
	 * with nothing after it removes one of curl's own). */
	if (!has_content_type && has_body) {
		struct curl_slist *grown = curl_slist_append(call->request_headers, "Content-Type:");
		if (grown == NULL)
			return -1;
		call->request_headers = grown;
	}
	{
		struct curl_slist *grown = curl_slist_append(call->request_headers, "Expect:");
		if (grown == NULL)
			return -1;
		call->request_headers = grown;
	}
	if (size > sizeof(bearer) && (authorization = malloc(size)) == NULL)
		return -1;
	snprintf(authorization, size, "Bearer %s", call->key);
	rc = upstream_append_header(call, "Authorization", authorization);
	explicit_bzero(authorization, size);
	if (authorization != bearer)
		free(authorization);
	return rc;
}

int
upstream_configure(struct upstream_call *call, const struct upstream_request *req)
{
	struct upstream *upstream = call->upstream;
	const struct upstream_settings *s = &upstream->settings;
	CURL *e = call->easy;
	size_t base_len = strlen(upstream->base_url), target_len = strlen(req->path_and_query);
	size_t url_size = base_len + target_len + 1;
	char small[1024], *url = url_size <= sizeof(small) ? small : malloc(url_size);
	bool is_post = strcmp(req->method, "POST") == 0;
	/* PUT and PATCH carry their body as a POST does, under their own name. */
	bool has_body = is_post || strcmp(req->method, "PUT") == 0 || strcmp(req->method, "PATCH") == 0;
	CURLcode rc = CURLE_OK;

	if (url == NULL)
		return -1;
	memcpy(url, upstream->base_url, base_len);
	memcpy(url + base_len, req->path_and_query, target_len + 1);
	rc |= curl_easy_setopt(e, CURLOPT_URL, url);
	if (url != small)
		free(url); /* curl keeps its own copy */
	rc |= curl_easy_setopt(e, CURLOPT_PRIVATE, call);
	rc |= curl_easy_setopt(e, CURLOPT_ERRORBUFFER, call->error_buffer);
	rc |= curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	rc |= curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
	/* Over TLS upstream speaks HTTP/2: a call waits for a connection being
	 * set up to say whether it multiplexes rather than open its own, so
	 * that a crowd of streams shares a few connections (and handshakes)
	 * instead of one each. */
	if (upstream->is_tls)
		rc |= curl_easy_setopt(e, CURLOPT_PIPEWAIT, 1L);
	rc |= curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
	rc |= curl_easy_setopt(e, CURLOPT_PROXY, ""); /* the key goes to upstream only */
	rc |= curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
	rc |= curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
	if (s->ca_file != NULL)
		rc |= curl_easy_setopt(e, CURLOPT_CAINFO, s->ca_file);
	rc |= curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, s->connect_timeout_ms);
	if (req->stream == NULL) {
		rc |= curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, s->request_timeout_ms);
	} else {
		/* A stream may run for minutes: give up only when it goes quiet. */
		long idle_s = (req->stream->idle_timeout_ms + 999) / 1000;
		rc |= curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1L);
		rc |= curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, idle_s > 0 ? idle_s : 1L);
		/* Events are small and a stream lives long: a small receive buffer
		 * (curl's default is 16 KB) keeps thousands of them cheap. 1 KB, the
		 * least curl takes, saves 3 KB more a stream, but a flood of bytes
		 * then costs four times the reads and writes. */
		rc |= curl_easy_setopt(e, CURLOPT_BUFFERSIZE, UPSTREAM_STREAM_BUFFER_BYTES);
	}
	/* gzip only: curl's "" lists four codings, and it formats that header
	 * twice, byte by byte, for every call. */
	rc |= curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "gzip");
	rc |= curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, upstream_write_cb);
	rc |= curl_easy_setopt(e, CURLOPT_WRITEDATA, call);
	rc |= curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, upstream_header_cb);
	rc |= curl_easy_setopt(e, CURLOPT_HEADERDATA, call);
	rc |= curl_easy_setopt(e, CURLOPT_SOCKOPTFUNCTION, upstream_sockopt_cb);
	rc |= curl_easy_setopt(e, CURLOPT_SOCKOPTDATA, call);
	rc |= curl_easy_setopt(e, CURLOPT_PREREQFUNCTION, upstream_prereq_cb);
	rc |= curl_easy_setopt(e, CURLOPT_PREREQDATA, call);
	if (has_body) {
		if (req->body_len > 0) {
			if ((call->body_copy = malloc(req->body_len)) == NULL)
				return -1;
			memcpy(call->body_copy, req->body, req->body_len);
		}
		rc |= curl_easy_setopt(e, CURLOPT_POST, 1L);
		rc |= curl_easy_setopt(e, CURLOPT_POSTFIELDS, call->body_copy != NULL ? call->body_copy : "");
		rc |= curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
		if (!is_post)
			rc |= curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, req->method);
	} else if (strcmp(req->method, "GET") == 0) {
		rc |= curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
	} else {
		rc |= curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, req->method);
	}
	if (upstream_build_headers(call, req->client_headers, req->idempotency_key, has_body) != 0)
		return -1;
	rc |= curl_easy_setopt(e, CURLOPT_HTTPHEADER, call->request_headers);
	return rc == CURLE_OK ? 0 : -1;
}
