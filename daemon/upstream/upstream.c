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
#include "upstream/upstream_private.h"

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
	free(call->span);
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
	bool failed;

	response->body = call->response_body;
	response->headers = &call->response_headers;
	if (response->error == UPSTREAM_OK)
		upstream_key_outcome(call->upstream, call->key_project, response->status);
	/* Upstream failing: it could not be reached, broke off, or said 5xx.
	 * A call of ours that waited for a connection is no sign of it. */
	failed = response->error != UPSTREAM_OK || response->status >= 500;
	/* A call's retries count once: a retry's failure is not news. */
	if (response->error != UPSTREAM_ERR_NO_CONNECTION && response->error != UPSTREAM_ERR_TOO_LARGE &&
	    !(call->is_retry && failed))
		upstream_breaker_outcome(call->upstream, call->key_project, call->probe, failed);
	upstream_span_end(
	    call, response->status, response->error == UPSTREAM_OK ? NULL : upstream_error_name(response->error));
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
		if (call->resend_refused) {
			/* curl wanted to send it again on a fresh connection, after the
			 * one it went out on died: upstream may have acted on it. */
			response.error = UPSTREAM_ERR_OTHER;
			response.request_sent = true;
			response.error_text = "the upstream connection died after the request went out; it may have "
			                      "been acted on (a session may exist), so it is not sent again";
		}
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
int
upstream_sockopt_cb(void *clientp, curl_socket_t fd, curlsocktype purpose)
{
	(void)fd;
	(void)purpose;
	upstream_stop_waiting(clientp);
	return CURL_SOCKOPT_OK;
}

/* CURLOPT_PREREQFUNCTION: the call has its connection (new or reused) and
 * its request goes next. */
int
upstream_prereq_cb(void *clientp, char *primary_ip, char *local_ip, int primary_port, int local_port)
{
	struct upstream_call *call = clientp;

	(void)primary_ip;
	(void)local_ip;
	(void)primary_port;
	(void)local_port;
	upstream_stop_waiting(call);
	/* curl calls this before each send of the request; a second one is its
	 * own silent retry after a reused connection died. For a call that may
	 * act upstream and has nothing to dedupe it by, that could act twice
	 * (a second session, a second turn): refused, at no cost to the
	 * calls whose first send goes through. */
	if (call->once && ++call->sends > 1) {
		call->resend_refused = true;
		return CURL_PREREQFUNC_ABORT;
	}
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

/* The host and port of base_url, for the spans' server.address. */
static void
upstream_note_address(struct upstream *upstream)
{
	CURLU *url = curl_url();
	char *host = NULL, *port = NULL;

	if (url != NULL && curl_url_set(url, CURLUPART_URL, upstream->base_url, 0) == CURLUE_OK &&
	    curl_url_get(url, CURLUPART_HOST, &host, 0) == CURLUE_OK &&
	    curl_url_get(url, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) == CURLUE_OK) {
		snprintf(upstream->host, sizeof(upstream->host), "%s", host);
		upstream->port = strtol(port, NULL, 10);
	}
	curl_free(host);
	curl_free(port);
	curl_url_cleanup(url);
}

const char *
upstream_error_name(enum upstream_error error)
{
	static const char *const names[UPSTREAM_ERROR_KINDS] = { "ok", "connect", "timeout", "too_large", "tls",
		"other", "no_connection" };

	return (unsigned)error < UPSTREAM_ERROR_KINDS ? names[error] : "other";
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
	upstream_note_address(upstream);
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
	upstream_set_keys(upstream, NULL, NULL, NULL, 0);
	free(upstream);
}

long
upstream_in_flight(const struct upstream *upstream)
{
	return upstream->in_flight;
}

struct upstream_call *
upstream_forward(struct upstream *upstream, const struct upstream_request *req, upstream_done_cb done, void *arg)
{
	struct upstream_call *call;

	const char *key, *owner;

	if ((key = upstream_pick_key(upstream, req->project_id, &owner)) == NULL ||
	    upstream->in_flight >= upstream->settings.max_in_flight)
		return NULL;
	if ((call = calloc(1, sizeof(*call))) == NULL)
		return NULL;
	call->key = key; /* only until configured: a reload may free it later */
	call->probe = upstream_breaker_take_probe(upstream, owner);
	call->is_retry = req->is_retry;
	call->once = req->send_once;
	snprintf(call->key_project, sizeof(call->key_project), "%s", owner);
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
	if (call->easy == NULL || call->response_body == NULL || upstream_span_begin(call, req) != 0 ||
	    upstream_configure(call, req) != 0 || curl_multi_add_handle(upstream->multi, call->easy) != CURLM_OK) {
		log_warnx("upstream: cannot start a %s call", req->method);
		upstream_call_free(call);
		return NULL;
	}
	call->key = NULL; /* the header holds it now */
	if (TAILQ_FIRST(&upstream->waiting) == call)
		upstream_arm_wait_timer(upstream);
	return call;
}

void
upstream_cancel(struct upstream_call *call)
{
	if (call != NULL) {
		upstream_span_end(call, 0, "cancelled");
		upstream_call_free(call);
	}
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
