/* relay: streams an upstream answer to a client as it arrives, with
 * back-pressure and hang-up detection.
 *
 * Back-pressure: bytes go to the client's connection as they come; once
 * buffer_bytes of them wait unsent, the upstream transfer is paused (curl
 * keeps the piece it offered) and resumed when the request reports its
 * output drained. So a slow client slows its own transfer, and memory per
 * relay is bounded.
 *
 * Hang-up: the connection watches its socket the whole time and tells the
 * request's on_gone hook when the client leaves, whether upstream has
 * answered yet or not; the upstream transfer is cancelled at once, unless
 * the observer asked for it to drain (a turn runs upstream to its end
 * anyway, and must be charged). */
#include "chat/relay.h"
#include "gate/idempotency.h"
#include "chat/chat.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>

#include "base/log.h"
#include "chat/retry.h"
#include "base/clock.h"
#include "http/http_headers.h"
#include "http/reply.h"
#include "chat/upstream_reply.h"
#include "http/request.h"
#include "upstream/upstream.h"

struct relay_engine {
	struct event_base *base;
	struct upstream *upstream;
	size_t buffer_bytes;
	struct upstream_stream stream;
	LIST_HEAD(, relay) relays;
	long active;
	unsigned long long bytes;
	unsigned long long cuts[RELAY_CUT_CAUSES];
	struct retry_policy retry; /* retries 0: none */
	unsigned long long retries[RETRY_REASONS];
};

struct relay {
	struct relay_engine *engine;
	LIST_ENTRY(relay) link;
	struct request *req; /* NULL once answered or gone */
	struct upstream_call *call; /* NULL once upstream is done */
	bool started; /* the client's answer has begun */
	bool event_stream; /* upstream's answer is text/event-stream */
	bool may_have_acted;
	const struct relay_observer *observer;
	void *arg;
	/* A passed-through GET or DELETE may be made again before its answer
	 * starts (retry.h): what it sent, and where its retries are. */
	bool retryable;
	struct upstream_request again; /* points at the two below */
	char *again_path;
	void *again_body;
	char again_key[IDEMPOTENCY_UPSTREAM_KEY_LEN + 1];
	struct request_trace trace;
	char again_project[CHAT_PROJECT_MAX + 1];
	long attempts;
	double first_started;
	bool retry_pending; /* this answer is dropped: a retry follows */
	long retry_wait_ms;
	struct event *retry_ev;
};

static void relay_on_headers(long status, const struct http_headers *headers, void *arg);
static void relay_on_upstream_done(const struct upstream_response *response, void *arg);
static void relay_free(struct relay *relay);
static struct request *relay_take_request(struct relay *relay);

/* Whether the relay's call, which just failed as response says, may go
 * again: sets its wait. */
static bool
relay_may_retry(
    struct relay *relay, const struct upstream_response *response, const char *retry_after, enum retry_reason *reason)
{
	long elapsed = (long)((clock_monotonic_s() - relay->first_started) * 1000);

	return retry_decide(&relay->engine->retry, true, false, response, retry_after, relay->attempts, elapsed,
	    (double)random() / ((double)RAND_MAX + 1), &relay->retry_wait_ms, reason);
}

static void
relay_on_retry_due(evutil_socket_t fd, short what, void *arg)
{
	struct relay *relay = arg;
	struct request *req;

	(void)fd;
	(void)what;
	relay->retry_pending = false;
	relay->again.is_retry = true;
	relay->again.attempt = (int)relay->attempts + 1;
	if ((relay->call = upstream_forward(relay->engine->upstream, &relay->again, relay_on_upstream_done, relay)) ==
	    NULL) {
		if ((req = relay_take_request(relay)) != NULL)
			reply_error(req, 503, REPLY_RETRY_MAY_HELP,
			    "llamachatd is at its limit of upstream calls in flight; try again shortly");
		relay_free(relay);
	}
}

/* Makes the call again after its wait; the client still waits for its
 * answer, and pays nothing more for it. */
static void
relay_schedule_retry(struct relay *relay)
{
	struct timeval tv = clock_timeval_ms(relay->retry_wait_ms);
	struct request *req;

	relay->retry_pending = true;
	relay->attempts++;
	if (relay->req != NULL)
		relay->req->access.retries = (int)relay->attempts;
	if (relay->retry_ev == NULL &&
	    (relay->retry_ev = evtimer_new(relay->engine->base, relay_on_retry_due, relay)) == NULL) {
		if ((req = relay_take_request(relay)) != NULL)
			reply_error(req, 503, REPLY_RETRY_MAY_HELP, "llamachatd is out of memory");
		relay_free(relay);
		return;
	}
	evtimer_add(relay->retry_ev, &tv);
}
static enum upstream_flow relay_on_data(const char *data, size_t len, void *arg);

struct relay_engine *
relay_engine_create(struct event_base *base, struct upstream *upstream, size_t buffer_bytes, long idle_timeout_ms)
{
	struct relay_engine *engine = calloc(1, sizeof(*engine));

	if (engine == NULL)
		return NULL;
	engine->base = base;
	engine->upstream = upstream;
	engine->buffer_bytes = buffer_bytes;
	engine->stream.idle_timeout_ms = idle_timeout_ms;
	engine->stream.on_headers = relay_on_headers;
	engine->stream.on_data = relay_on_data;
	LIST_INIT(&engine->relays);
	return engine;
}

long
relay_engine_active(const struct relay_engine *engine)
{
	return engine->active;
}

unsigned long long
relay_engine_bytes(const struct relay_engine *engine)
{
	return engine->bytes;
}

/* Frees the relay's own parts; its request must be handed back already. */
static void
relay_free(struct relay *relay)
{
	upstream_cancel(relay->call);
	if (relay->retry_ev != NULL)
		event_free(relay->retry_ev);
	free(relay->again_path);
	free(relay->again_body);
	LIST_REMOVE(relay, link);
	relay->engine->active--;
	if (relay->observer != NULL && relay->observer->on_close != NULL)
		relay->observer->on_close(relay->arg);
	free(relay);
}

/* Takes the request back from the relay: its hooks no longer call here. */
static struct request *
relay_take_request(struct relay *relay)
{
	struct request *req = relay->req;

	if (req != NULL) {
		request_set_on_gone(req, NULL, NULL);
		request_set_on_drained(req, NULL, NULL);
	}
	relay->req = NULL;
	return req;
}

static const char *const relay_cut_names[RELAY_CUT_CAUSES] = { "reset", "timeout", "shutdown" };

enum relay_cut
relay_cut_of(int upstream_error)
{
	return upstream_error == UPSTREAM_ERR_TIMEOUT ? RELAY_CUT_TIMEOUT : RELAY_CUT_RESET;
}

unsigned long long
relay_engine_cuts(const struct relay_engine *engine, enum relay_cut cause)
{
	return engine->cuts[cause];
}

void
relay_cut(struct relay *relay, enum relay_cut cause)
{
	struct request *req = relay_take_request(relay);

	relay->engine->cuts[cause]++;
	if (req != NULL) {
		log_warnx("relay: the answer to request %s is cut short (%s)", req->access.request_id,
		    relay_cut_names[cause]);
		/* A reader of the event stream learns why before the close. */
		if (relay->event_stream) {
			char comment[96];
			int n = cause == RELAY_CUT_SHUTDOWN
			    ? snprintf(comment, sizeof(comment),
			          ": llamachatd stopped before the stream ended: shutdown\n\n")
			    : snprintf(comment, sizeof(comment), ": upstream ended the stream early: %s\n\n",
			          relay_cut_names[cause]);
			request_send(req, comment, (size_t)n);
		}
		request_abort(req, relay_cut_names[cause]);
	}
	relay_free(relay);
}

void
relay_finish(struct relay *relay)
{
	struct request *req = relay_take_request(relay);

	if (req != NULL)
		request_end(req);
	relay_free(relay);
}

/* The client went away, before upstream answered or during the answer. */
static void
relay_on_client_gone(void *arg)
{
	struct relay *relay = arg;

	log_debug(relay->started ? "relay: the client went away mid-answer; cancelling its upstream transfer"
	                         : "relay: the client went away before upstream answered; cancelling its upstream "
	                           "transfer");
	relay->req = NULL; /* gone with its connection */
	if (relay->call != NULL && relay->observer != NULL && relay->observer->drain_when_client_gone) {
		log_debug("relay: reading upstream's answer to its end for its accounting");
		upstream_resume(relay->call); /* it may wait on back-pressure */
		return;
	}
	relay_free(relay);
}

static void
relay_on_drained(void *arg)
{
	struct relay *relay = arg;

	upstream_resume(relay->call);
}

static void
relay_on_headers(long status, const struct http_headers *headers, void *arg)
{
	struct relay *relay = arg;

	/* A failing answer that may be asked again is not passed on. */
	if (relay->retryable && !relay->started) {
		struct upstream_response seen = { .error = UPSTREAM_OK, .status = status, .request_sent = true };
		enum retry_reason reason;
		if (relay_may_retry(relay, &seen, http_headers_find(headers, "retry-after"), &reason)) {
			relay->retry_pending = true;
			relay->engine->retries[reason]++;
			return;
		}
	}
	if (relay->req != NULL) {
		for (size_t i = 0; i < headers->count; i++)
			request_add_header(relay->req, headers->items[i].name, headers->items[i].value);
		if (http_headers_find(headers, "Content-Type") != NULL &&
		    strncasecmp(http_headers_find(headers, "Content-Type"), "text/event-stream", 17) == 0)
			relay->event_stream = true;
		request_start(relay->req, (int)status);
	}
	relay->started = true;
	if (relay->observer != NULL && relay->observer->on_start != NULL)
		relay->observer->on_start(relay, status, relay->arg);
}

static enum upstream_flow
relay_on_data(const char *data, size_t len, void *arg)
{
	struct relay *relay = arg;

	if (relay->retry_pending)
		return UPSTREAM_FLOW_TAKEN; /* the answer a retry replaces */
	if (relay->req != NULL && request_unsent(relay->req) >= relay->engine->buffer_bytes)
		return UPSTREAM_FLOW_PAUSE;
	if (relay->observer != NULL && relay->observer->on_data != NULL)
		relay->observer->on_data(relay, data, len, relay->arg);
	if (relay->req == NULL)
		return UPSTREAM_FLOW_TAKEN; /* drained for the observer; nobody to send it to */
	relay->engine->bytes += len;
	request_send(relay->req, data, len);
	return UPSTREAM_FLOW_TAKEN;
}

static void
relay_on_upstream_done(const struct upstream_response *response, void *arg)
{
	struct relay *relay = arg;
	bool complete = response->error == UPSTREAM_OK;

	relay->call = NULL;
	if (relay->req != NULL)
		relay->req->access.upstream_seconds = response->total_seconds;
	if (relay->req != NULL && !relay->started && relay->retryable) {
		enum retry_reason reason;
		if (relay->retry_pending || relay_may_retry(relay, response, NULL, &reason)) {
			if (!relay->retry_pending)
				relay->engine->retries[reason]++;
			relay_schedule_retry(relay);
			return;
		}
	}
	if (!relay->started) {
		struct request *req = relay_take_request(relay);
		if (req != NULL)
			reply_upstream_failure(req, response, relay->may_have_acted);
		relay_free(relay);
		return;
	}
	if (!complete)
		log_warnx("relay: upstream cut the answer short: %s", response->error_text);
	if (relay->observer != NULL && relay->observer->on_upstream_done != NULL)
		relay->observer->on_upstream_done(
		    relay, complete ? -1 : (int)relay_cut_of(response->error), relay->arg);
	else if (!complete)
		relay_cut(relay, relay_cut_of(response->error));
	else
		relay_finish(relay);
}

void
relay_note_usage(struct relay *relay, long long input_tokens, long long output_tokens)
{
	if (relay->req != NULL) {
		relay->req->access.input_tokens = input_tokens;
		relay->req->access.output_tokens = output_tokens;
	}
	upstream_note_usage(relay->call, input_tokens, output_tokens);
}

void
relay_start(struct relay_engine *engine, struct request *req, const struct upstream_request *ureq, bool may_have_acted,
    const struct relay_observer *observer, void *arg)
{
	struct upstream_request streamed = *ureq;
	struct relay *relay;

	if (reply_unless_ready(req, engine->upstream, ureq->project_id))
		goto no_relay;
	if ((relay = calloc(1, sizeof(*relay))) == NULL) {
		reply_error(req, 503, REPLY_RETRY_MAY_HELP, "llamachatd is out of memory");
		goto no_relay;
	}
	relay->engine = engine;
	relay->req = req;
	relay->may_have_acted = may_have_acted;
	relay->observer = observer;
	relay->arg = arg;
	LIST_INSERT_HEAD(&engine->relays, relay, link);
	engine->active++;

	streamed.stream = &engine->stream;
	request_trace_copy(req, &relay->trace);
	streamed.trace = &relay->trace;
	streamed.attempt = 1;
	/* A passed-through GET or DELETE may be asked again; nothing else. */
	if (observer == NULL && engine->retry.retries > 0 &&
	    (strcmp(ureq->method, "GET") == 0 || strcmp(ureq->method, "DELETE") == 0)) {
		relay->again = streamed;
		relay->again_path = strdup(ureq->path_and_query);
		relay->again_body = ureq->body_len > 0 ? malloc(ureq->body_len) : NULL;
		if (relay->again_path != NULL && (ureq->body_len == 0 || relay->again_body != NULL)) {
			if (ureq->body_len > 0)
				memcpy(relay->again_body, ureq->body, ureq->body_len);
			relay->again.path_and_query = relay->again_path;
			relay->again.body = relay->again_body;
			/* The caller's strings live no longer than this call. */
			if (ureq->idempotency_key != NULL) {
				snprintf(relay->again_key, sizeof(relay->again_key), "%s", ureq->idempotency_key);
				relay->again.idempotency_key = relay->again_key;
			}
			if (ureq->project_id != NULL) {
				snprintf(relay->again_project, sizeof(relay->again_project), "%s", ureq->project_id);
				relay->again.project_id = relay->again_project;
			}
			relay->retryable = true;
			relay->first_started = clock_monotonic_s();
		}
	}
	relay->call = upstream_forward(engine->upstream, &streamed, relay_on_upstream_done, relay);
	if (relay->call == NULL) {
		relay->req = NULL;
		reply_error(req, 503, REPLY_RETRY_MAY_HELP,
		    "llamachatd is at its limit of upstream calls in flight; try again shortly");
		relay_free(relay);
		return;
	}
	request_set_on_gone(req, relay_on_client_gone, relay);
	request_set_on_drained(req, relay_on_drained, relay);
	return;
no_relay:
	if (observer != NULL && observer->on_close != NULL)
		observer->on_close(arg);
}

void
relay_engine_free(struct relay_engine *engine)
{
	if (engine == NULL)
		return;
	while (!LIST_EMPTY(&engine->relays)) {
		struct relay *relay = LIST_FIRST(&engine->relays);
		upstream_cancel(relay->call);
		relay->call = NULL;
		if (relay->req != NULL && !relay->started) {
			struct request *req = relay_take_request(relay);
			reply_error(req, 503, REPLY_RETRY_MAY_HELP, "llamachatd is shutting down");
			relay_free(relay);
		} else {
			relay_cut(relay, RELAY_CUT_SHUTDOWN); /* past the drain: not a whole answer */
		}
	}
	free(engine);
}

void
relay_engine_set_retries(struct relay_engine *engine, const struct retry_policy *policy)
{
	engine->retry = *policy;
}

unsigned long long
relay_engine_retries(const struct relay_engine *engine, int reason)
{
	return engine->retries[reason];
}
