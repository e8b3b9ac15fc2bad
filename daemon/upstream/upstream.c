/* upstream: forwards HTTP calls to LlamaCloud with libcurl's multi-socket API on the event loop.
 *
 * Driven like curl's hiperfifo example: the timer callback only re-arms one
 * libevent timer, the socket callback keeps one persistent event per socket
 * (attached with curl_multi_assign), and the event handlers call
 * curl_multi_socket_action and then collect finished transfers. */
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

struct upstream {
	struct event_base *base;
	CURLM *multi;
	struct event *timer;
	struct upstream_settings settings; /* strings owned below */
	char *base_url;
	bool is_tls; /* https: HTTP/2 may multiplex calls */
	char *ca_file;
	char *key;
	long in_flight;
	/* Easy handles of finished calls, reset, for the next ones: a fresh
	 * handle costs several allocations and a clean one nothing. */
	CURL *idle_handles[64];
	size_t idle_count;
	struct upstream_stats stats;
	LIST_HEAD(, upstream_call) calls; /* every call in flight, for upstream_free */
	/* Calls that have neither a connection nor a socket of their own yet,
	 * oldest first. curl keeps a call that finds all max_connections busy
	 * (or waits for an HTTP/2 connection to say it multiplexes) in its
	 * pending list, where none of its timeouts run: wait_timer gives
	 * each such call connect_timeout_ms. */
	TAILQ_HEAD(, upstream_call) waiting;
	struct event *wait_timer;
};

#define UPSTREAM_KEPT_HEADERS 4 /* upstream_kept_response_headers */
#define UPSTREAM_STREAM_BUFFER_BYTES 4096L

struct upstream_call {
	struct upstream *upstream;
	LIST_ENTRY(upstream_call) link;
	TAILQ_ENTRY(upstream_call) wait_link; /* in upstream->waiting while is_waiting */
	double started_at; /* monotonic seconds */
	bool is_waiting;
	CURL *easy;
	struct curl_slist *request_headers; /* holds the key: wiped before free */
	void *body_copy;
	upstream_done_cb done;
	void *arg;
	struct evbuffer *response_body;
	/* The kept answer headers (upstream_kept_response_headers, in order). */
	char kept_store[384]; /* their values, NUL-terminated, one after another */
	size_t kept_used;
	size_t kept_at[UPSTREAM_KEPT_HEADERS];
	bool kept_present[UPSTREAM_KEPT_HEADERS];
	struct http_headers response_headers; /* points into the above */
	struct http_header response_slots[UPSTREAM_KEPT_HEADERS];
	const struct upstream_stream *stream; /* NULL: collect the answer */
	bool headers_delivered;
	bool paused;
	bool too_large;
	char error_buffer[CURL_ERROR_SIZE];
};

static void upstream_deliver_headers(struct upstream_call *call);

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

/* An easy handle for a new call: an idle one, or a new one (NULL when out
 * of memory). */
static CURL *
upstream_take_handle(struct upstream *upstream)
{
	if (upstream->idle_count > 0)
		return upstream->idle_handles[--upstream->idle_count];
	return curl_easy_init();
}

/* Keeps a finished call's handle for the next call, with every option
 * reset (the key's header list among them), or frees it when enough wait. */
static void
upstream_give_back_handle(struct upstream *upstream, CURL *easy)
{
	size_t room = sizeof(upstream->idle_handles) / sizeof(upstream->idle_handles[0]);

	if (upstream->idle_count == room) {
		curl_easy_cleanup(easy);
		return;
	}
	curl_easy_reset(easy);
	upstream->idle_handles[upstream->idle_count++] = easy;
}

/* The call has a connection, or a socket of its own being connected, where
 * curl's own timeouts run: it no longer waits. */
static void
upstream_stop_waiting(struct upstream_call *call)
{
	if (!call->is_waiting)
		return;
	TAILQ_REMOVE(&call->upstream->waiting, call, wait_link);
	call->is_waiting = false;
}

/* Arms wait_timer for the oldest waiting call's deadline. Calls join in the
 * order they start, so the head's deadline is the soonest. */
static void
upstream_arm_wait_timer(struct upstream *upstream)
{
	struct upstream_call *oldest = TAILQ_FIRST(&upstream->waiting);
	struct timeval tv;

	if (oldest == NULL)
		return;
	/* Rounded up: the timer must not go before the oldest is due. */
	tv = clock_timeval_ms((long long)ceil(
	    (oldest->started_at - clock_monotonic_s()) * 1000.0 + (double)upstream->settings.connect_timeout_ms));
	evtimer_add(upstream->wait_timer, &tv);
}

static void
upstream_call_free(struct upstream_call *call)
{
	struct upstream *upstream = call->upstream;

	upstream_stop_waiting(call);
	if (call->easy != NULL) {
		curl_multi_remove_handle(upstream->multi, call->easy);
		upstream_give_back_handle(upstream, call->easy);
	}
	for (struct curl_slist *h = call->request_headers; h != NULL; h = h->next)
		explicit_bzero(h->data, strlen(h->data));
	curl_slist_free_all(call->request_headers);
	free(call->body_copy);
	if (call->response_body != NULL)
		evbuffer_free(call->response_body);
	LIST_REMOVE(call, link);
	upstream->in_flight--;
	free(call);
}

static enum upstream_error
upstream_classify(CURLcode code, bool too_large)
{
	if (too_large)
		return UPSTREAM_ERR_TOO_LARGE;
	switch (code) {
	case CURLE_OK:
		return UPSTREAM_OK;
	case CURLE_COULDNT_CONNECT:
	case CURLE_COULDNT_RESOLVE_HOST:
		return UPSTREAM_ERR_CONNECT;
	case CURLE_OPERATION_TIMEDOUT:
		return UPSTREAM_ERR_TIMEOUT;
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_SSL_CERTPROBLEM:
	case CURLE_SSL_CACERT_BADFILE:
		return UPSTREAM_ERR_TLS;
	default:
		return UPSTREAM_ERR_OTHER;
	}
}

/* Unix seconds now, for the last-answer and last-failure stamps. */

static void
upstream_count(struct upstream *upstream, enum upstream_error error, double seconds)
{
	double wall = clock_unix_s();

	upstream->stats.errors[error]++;
	histogram_observe(&upstream->stats.latency, seconds);
	if (error == UPSTREAM_OK)
		upstream->stats.last_answer_wall = wall;
	else
		upstream->stats.last_failure_wall = wall;
}

const struct upstream_stats *
upstream_get_stats(const struct upstream *upstream)
{
	return &upstream->stats;
}

/* Hands response, with the call's body and kept headers, to the call's
 * callback, then frees the call. */
static void
upstream_finish(struct upstream_call *call, struct upstream_response *response)
{
	response->body = call->response_body;
	response->headers = &call->response_headers;
	/* Remove before the callback, which may start new calls. */
	curl_multi_remove_handle(call->upstream->multi, call->easy);
	call->done(response, call->arg);
	upstream_call_free(call);
}

/* Hands every finished transfer to its callback, then frees it. */
static void
upstream_collect_finished(struct upstream *upstream)
{
	CURLMsg *msg;
	int left;

	while ((msg = curl_multi_info_read(upstream->multi, &left)) != NULL) {
		struct upstream_call *call;
		struct upstream_response response;
		curl_off_t pretransfer = 0;

		if (msg->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&call);
		memset(&response, 0, sizeof(response));
		response.error = upstream_classify(msg->data.result, call->too_large);
		response.error_text = call->too_large ? "the answer is larger than upstream.max_response_bytes"
		    : call->error_buffer[0] != '\0'   ? call->error_buffer
		                                      : curl_easy_strerror(msg->data.result);
		curl_easy_getinfo(call->easy, CURLINFO_RESPONSE_CODE, &response.status);
		curl_easy_getinfo(call->easy, CURLINFO_PRETRANSFER_TIME_T, &pretransfer);
		curl_easy_getinfo(call->easy, CURLINFO_TOTAL_TIME, &response.total_seconds);
		response.request_sent = pretransfer > 0 || response.status > 0;
		upstream_count(upstream, response.error, response.total_seconds);
		if (response.error == UPSTREAM_OK)
			upstream_deliver_headers(call);
		upstream_finish(call, &response);
	}
}

void
upstream_check_multi(struct upstream *upstream, int code, const char *where)
{
	if (code == CURLM_OK)
		return;
	/* The transfers themselves still end through curl_multi_info_read;
	 * this failure is the engine's own, so it is counted apart. */
	upstream->stats.multi_errors++;
	upstream->stats.last_failure_wall = clock_unix_s();
	log_warnx("upstream: curl_multi_socket_action (%s) failed: %s", where, curl_multi_strerror((CURLMcode)code));
}

static void
upstream_on_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct upstream *upstream = arg;
	int running;

	(void)fd;
	(void)what;
	upstream_check_multi(
	    upstream, curl_multi_socket_action(upstream->multi, CURL_SOCKET_TIMEOUT, 0, &running), "timeout");
	upstream_collect_finished(upstream);
}

/* wait_timer: every call that waited connect_timeout_ms inside curl for a
 * connection fails, with nothing sent; then the timer goes for the next.
 * Each callback may start or cancel calls, so the head is read anew. */
static void
upstream_on_wait_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct upstream *upstream = arg;
	double timeout_s = (double)upstream->settings.connect_timeout_ms / 1000.0;
	struct upstream_call *call;
	char text[256];

	(void)fd;
	(void)what;
	snprintf(text, sizeof(text),
	    "no upstream connection was free within upstream.connect_timeout_ms (%ld ms): all "
	    "upstream.max_connections are busy, or upstream's name did not resolve; nothing was sent",
	    upstream->settings.connect_timeout_ms);
	while (
	    (call = TAILQ_FIRST(&upstream->waiting)) != NULL && call->started_at + timeout_s <= clock_monotonic_s()) {
		struct upstream_response response = { .error = UPSTREAM_ERR_NO_CONNECTION, .error_text = text };
		response.total_seconds = clock_monotonic_s() - call->started_at;
		upstream_count(upstream, response.error, response.total_seconds);
		upstream_finish(call, &response);
	}
	upstream_arm_wait_timer(upstream);
}

/* CURLOPT_SOCKOPTFUNCTION: the call opened a socket of its own; curl's
 * connect timeout runs from here. */
static int
upstream_sockopt_cb(void *clientp, curl_socket_t fd, curlsocktype purpose)
{
	(void)fd;
	(void)purpose;
	upstream_stop_waiting(clientp);
	return CURL_SOCKOPT_OK;
}

/* CURLOPT_PREREQFUNCTION: the call has its connection (new or reused) and
 * its request goes next. */
static int
upstream_prereq_cb(void *clientp, char *primary_ip, char *local_ip, int primary_port, int local_port)
{
	(void)primary_ip;
	(void)local_ip;
	(void)primary_port;
	(void)local_port;
	upstream_stop_waiting(clientp);
	return CURL_PREREQFUNC_OK;
}

static void
upstream_on_socket_event(evutil_socket_t fd, short what, void *arg)
{
	struct upstream *upstream = arg;
	int action = ((what & EV_READ) ? CURL_CSELECT_IN : 0) | ((what & EV_WRITE) ? CURL_CSELECT_OUT : 0);
	int running;

	upstream_check_multi(upstream, curl_multi_socket_action(upstream->multi, fd, action, &running), "socket");
	/* No timer clean-up here on running == 0: a callback below may start a
	 * new call, whose timer curl has just armed. curl says itself (a
	 * timeout of -1) when the timer should go. */
	upstream_collect_finished(upstream);
}

/* CURLMOPT_SOCKETFUNCTION: keep one persistent event per socket curl uses. */
static int
upstream_socket_cb(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
	struct upstream *upstream = userp;
	struct event *ev = socketp;
	short kind;

	(void)easy;
	if (what == CURL_POLL_REMOVE) {
		if (ev != NULL) {
			event_free(ev);
			curl_multi_assign(upstream->multi, fd, NULL);
		}
		return 0;
	}
	kind = (short)(((what & CURL_POLL_IN) ? EV_READ : 0) | ((what & CURL_POLL_OUT) ? EV_WRITE : 0) | EV_PERSIST);
	if (ev == NULL) {
		ev = event_new(upstream->base, fd, kind, upstream_on_socket_event, upstream);
		if (ev == NULL)
			return -1;
		curl_multi_assign(upstream->multi, fd, ev);
	} else {
		event_del(ev);
		event_assign(ev, upstream->base, fd, kind, upstream_on_socket_event, upstream);
	}
	event_add(ev, NULL);
	return 0;
}

/* CURLMOPT_TIMERFUNCTION: only re-arms the timer; curl is never called from here. */
static int
upstream_timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
	struct upstream *upstream = userp;
	struct timeval tv = clock_timeval_ms(timeout_ms);

	(void)multi;
	if (timeout_ms < 0)
		evtimer_del(upstream->timer);
	else
		evtimer_add(upstream->timer, &tv);
	return 0;
}

/* Tells a streamed call's owner the status and headers, once. */
static void
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

struct upstream *
upstream_create(struct event_base *base, const struct upstream_settings *settings, char *why, size_t why_size)
{
	struct upstream *upstream = calloc(1, sizeof(*upstream));

	if (upstream == NULL)
		goto oom;
	upstream->base = base;
	LIST_INIT(&upstream->calls);
	TAILQ_INIT(&upstream->waiting);
	upstream->settings = *settings;
	upstream->base_url = strdup(settings->base_url);
	upstream->is_tls = strncasecmp(settings->base_url, "https://", 8) == 0;
	upstream->ca_file = settings->ca_file != NULL ? strdup(settings->ca_file) : NULL;
	if (upstream->base_url == NULL || (settings->ca_file != NULL && upstream->ca_file == NULL))
		goto oom;
	upstream->settings.base_url = upstream->base_url;
	upstream->settings.ca_file = upstream->ca_file;
	upstream->multi = curl_multi_init();
	upstream->timer = evtimer_new(base, upstream_on_timeout, upstream);
	upstream->wait_timer = evtimer_new(base, upstream_on_wait_timeout, upstream);
	if (upstream->multi == NULL || upstream->timer == NULL || upstream->wait_timer == NULL)
		goto oom;
	curl_multi_setopt(upstream->multi, CURLMOPT_SOCKETFUNCTION, upstream_socket_cb);
	curl_multi_setopt(upstream->multi, CURLMOPT_SOCKETDATA, upstream);
	curl_multi_setopt(upstream->multi, CURLMOPT_TIMERFUNCTION, upstream_timer_cb);
	curl_multi_setopt(upstream->multi, CURLMOPT_TIMERDATA, upstream);
	curl_multi_setopt(upstream->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
	/* curl's own bound is four connections per transfer in its multi, and a
	 * create leaves it while its session commits: with that bound a busy
	 * gateway closed one upstream connection in five and opened another. */
	curl_multi_setopt(upstream->multi, CURLMOPT_MAXCONNECTS, settings->max_idle_connections);
	/* HTTP/2: as many streams on one connection as upstream allows (curl
	 * stops at 100 of its own, and then gives every further call a new
	 * connection and TLS handshake of its own). */
	curl_multi_setopt(upstream->multi, CURLMOPT_MAX_CONCURRENT_STREAMS, 10000L);
	/* Without a bound, once a connection's streams are all taken curl gives
	 * each further call a connection of its own; with one, calls wait for
	 * a stream on the connections there are. */
	if (settings->max_connections > 0)
		curl_multi_setopt(upstream->multi, CURLMOPT_MAX_HOST_CONNECTIONS, settings->max_connections);
	return upstream;
oom:
	snprintf(why, why_size, "upstream: out of memory");
	upstream_free(upstream);
	return NULL;
}

void
upstream_free(struct upstream *upstream)
{
	if (upstream == NULL)
		return;
	while (!LIST_EMPTY(&upstream->calls))
		upstream_call_free(LIST_FIRST(&upstream->calls));
	while (upstream->idle_count > 0)
		curl_easy_cleanup(upstream->idle_handles[--upstream->idle_count]);
	if (upstream->multi != NULL)
		curl_multi_cleanup(upstream->multi);
	if (upstream->timer != NULL)
		event_free(upstream->timer);
	if (upstream->wait_timer != NULL)
		event_free(upstream->wait_timer);
	free(upstream->base_url);
	free(upstream->ca_file);
	upstream_set_key(upstream, NULL);
	free(upstream);
}

void
upstream_set_key(struct upstream *upstream, char *key)
{
	if (upstream->key != NULL) {
		explicit_bzero(upstream->key, strlen(upstream->key));
		free(upstream->key);
	}
	upstream->key = key;
}

bool
upstream_has_key(const struct upstream *upstream)
{
	return upstream->key != NULL;
}

long
upstream_in_flight(const struct upstream *upstream)
{
	return upstream->in_flight;
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
	size_t size = strlen("Bearer ") + strlen(call->upstream->key) + 1;
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
	snprintf(authorization, size, "Bearer %s", call->upstream->key);
	rc = upstream_append_header(call, "Authorization", authorization);
	explicit_bzero(authorization, size);
	if (authorization != bearer)
		free(authorization);
	return rc;
}

static int
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

struct upstream_call *
upstream_forward(struct upstream *upstream, const struct upstream_request *req, upstream_done_cb done, void *arg)
{
	struct upstream_call *call;

	if (upstream->key == NULL || upstream->in_flight >= upstream->settings.max_in_flight)
		return NULL;
	if ((call = calloc(1, sizeof(*call))) == NULL)
		return NULL;
	call->upstream = upstream;
	call->done = done;
	call->arg = arg;
	call->stream = req->stream;
	http_headers_init(&call->response_headers, call->response_slots, UPSTREAM_KEPT_HEADERS);
	LIST_INSERT_HEAD(&upstream->calls, call, link);
	upstream->in_flight++;
	/* Waiting until curl gives it a connection or a socket, in a later
	 * turn of the loop (adding a handle only arms curl's timer). */
	call->started_at = clock_monotonic_s();
	call->is_waiting = true;
	TAILQ_INSERT_TAIL(&upstream->waiting, call, wait_link);

	call->easy = upstream_take_handle(upstream);
	call->response_body = evbuffer_new();
	if (call->easy == NULL || call->response_body == NULL || upstream_configure(call, req) != 0 ||
	    curl_multi_add_handle(upstream->multi, call->easy) != CURLM_OK) {
		log_warnx("upstream: cannot start a %s call", req->method);
		upstream_call_free(call);
		return NULL;
	}
	if (TAILQ_FIRST(&upstream->waiting) == call)
		upstream_arm_wait_timer(upstream);
	return call;
}

void
upstream_cancel(struct upstream_call *call)
{
	if (call != NULL)
		upstream_call_free(call);
}

void
upstream_resume(struct upstream_call *call)
{
	if (call == NULL || !call->paused)
		return;
	call->paused = false;
	/* curl may hand over the bytes it held back right here. */
	curl_easy_pause(call->easy, CURLPAUSE_CONT);
}
