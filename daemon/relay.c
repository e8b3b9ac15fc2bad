/* relay: streams an upstream answer to a client as it arrives, with
 * back-pressure and hang-up detection.
 *
 * Back-pressure: bytes go to the client's connection buffer as they come;
 * once that holds buffer_bytes, the upstream transfer is paused (curl keeps
 * the piece it offered) and resumed when evhttp reports the buffer drained.
 * So a slow client slows its own transfer, and memory per relay is bounded.
 *
 * Hang-up: once the answer has started, evhttp watches the connection and
 * its close callback tells us. Before that, libevent 2.1 does not read from
 * a connection whose answer is pending, so a read watch of our own on the
 * socket notices a client that leaves while upstream is still silent. Either
 * way the upstream transfer is cancelled at once. */
#include "relay.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <sys/queue.h>
#include <event2/keyvalq_struct.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "access.h"
#include "log.h"
#include "reply.h"
#include "upstream.h"

struct relay_engine {
	struct event_base *base;
	struct upstream *upstream;
	size_t buffer_bytes;
	struct upstream_stream stream;
	LIST_HEAD(, relay) relays;
	long active;
	unsigned long long bytes;
};

struct relay {
	struct relay_engine *engine;
	LIST_ENTRY(relay) link;
	struct evhttp_request *req;
	struct upstream_call *call; /* NULL once upstream is done */
	struct event *hangup_watch;
	struct evbuffer *chunk;
	bool started; /* the client's answer has begun */
	bool may_have_acted;
	struct access_entry *access; /* the request's record; NULL once answered */
	const struct relay_observer *observer;
	void *arg;
};

static void relay_on_headers(long status, const struct evkeyvalq *headers, void *arg);
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

static struct evhttp_connection *
relay_connection(const struct relay *relay)
{
	return relay->req != NULL ? evhttp_request_get_connection(relay->req) : NULL;
}

/* Frees the relay's own parts; its request must be handed back already. */
static void
relay_free(struct relay *relay)
{
	upstream_cancel(relay->call);
	if (relay->hangup_watch != NULL)
		event_free(relay->hangup_watch);
	if (relay->chunk != NULL)
		evbuffer_free(relay->chunk);
	LIST_REMOVE(relay, link);
	relay->engine->active--;
	if (relay->observer != NULL && relay->observer->on_close != NULL)
		relay->observer->on_close(relay->arg);
	free(relay);
}

/* Stops evhttp from calling back into a relay that is about to go. */
static void
relay_detach(struct relay *relay)
{
	access_set_on_gone(relay->access, NULL, NULL);
	relay->access = NULL;
}

void
relay_finish(struct relay *relay)
{
	struct evhttp_request *req = relay->req;

	relay_detach(relay);
	relay->req = NULL;
	if (req != NULL)
		evhttp_send_reply_end(req);
	relay_free(relay);
}

/* The connection failed under us (evhttp noticed it while writing). */
static void
relay_on_client_gone(void *arg)
{
	struct relay *relay = arg;
	struct evhttp_request *req = relay->req;

	relay->access = NULL; /* it is going away with the connection */
	log_debug("relay: the client went away mid-answer; cancelling its upstream transfer");
	relay->req = NULL;
	/* A request evhttp has let go of is ours to free; ending it does that. */
	if (req != NULL && evhttp_request_get_connection(req) == NULL)
		evhttp_send_reply_end(req);
	relay_free(relay);
}

/* Readable client socket while we answer: either the client hung up, or it
 * sent more (a pipelined request), which we leave to evhttp. */
static void
relay_on_client_readable(evutil_socket_t fd, short what, void *arg)
{
	struct relay *relay = arg;
	struct evhttp_connection *evcon;
	char byte;
	ssize_t got;

	(void)what;
	got = recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
	if (got > 0)
		return; /* data, not a hang-up: stop watching */
	if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
		event_add(relay->hangup_watch, NULL);
		return;
	}
	log_debug("relay: the client went away before upstream answered; cancelling its upstream transfer");
	evcon = relay_connection(relay);
	relay_detach(relay);
	relay->req = NULL;
	upstream_cancel(relay->call);
	relay->call = NULL;
	event_free(relay->hangup_watch); /* before its socket closes */
	relay->hangup_watch = NULL;
	/* Freeing the connection frees the request with it. */
	if (evcon != NULL)
		evhttp_connection_free(evcon);
	relay_free(relay);
}

static void
relay_on_drained(struct evhttp_connection *evcon, void *arg)
{
	struct relay *relay = arg;

	(void)evcon;
	upstream_resume(relay->call);
}

static void
relay_on_headers(long status, const struct evkeyvalq *headers, void *arg)
{
	struct relay *relay = arg;
	struct evkeyvalq *out = evhttp_request_get_output_headers(relay->req);
	struct evkeyval *h;

	TAILQ_FOREACH(h, headers, next)
		evhttp_add_header(out, h->key, h->value);
	evhttp_send_reply_start(relay->req, (int)status, NULL);
	relay->started = true;
	if (relay->observer != NULL && relay->observer->on_start != NULL)
		relay->observer->on_start(relay, status, relay->arg);
}

static enum upstream_flow
relay_on_data(const char *data, size_t len, void *arg)
{
	struct relay *relay = arg;
	struct evhttp_connection *evcon = relay_connection(relay);
	struct evbuffer *pending;

	if (evcon == NULL)
		return UPSTREAM_FLOW_TAKEN; /* nobody to give it to; the close callback follows */
	pending = bufferevent_get_output(evhttp_connection_get_bufferevent(evcon));
	if (evbuffer_get_length(pending) >= relay->engine->buffer_bytes)
		return UPSTREAM_FLOW_PAUSE;
	if (relay->observer != NULL && relay->observer->on_data != NULL)
		relay->observer->on_data(relay, data, len, relay->arg);
	if (relay->access != NULL)
		relay->access->streamed_bytes += len;
	relay->engine->bytes += len;
	evbuffer_add(relay->chunk, data, len);
	evhttp_send_reply_chunk_with_cb(relay->req, relay->chunk, relay_on_drained, relay);
	return UPSTREAM_FLOW_TAKEN;
}

static void
relay_on_upstream_done(const struct upstream_response *response, void *arg)
{
	struct relay *relay = arg;
	bool complete = response->error == UPSTREAM_OK;

	relay->call = NULL;
	if (relay->access != NULL)
		relay->access->upstream_seconds = response->total_seconds;
	if (!relay->started) {
		struct evhttp_request *req = relay->req;
		relay_detach(relay);
		relay->req = NULL;
		if (req != NULL)
			reply_upstream_failure(req, response, relay->may_have_acted);
		relay_free(relay);
		return;
	}
	if (!complete)
		log_warnx("relay: upstream cut the answer short: %s", response->error_text);
	if (relay->observer != NULL && relay->observer->on_upstream_done != NULL)
		relay->observer->on_upstream_done(relay, complete, relay->arg);
	else
		relay_finish(relay);
}

void
relay_start(struct relay_engine *engine, struct evhttp_request *req, struct access_entry *access,
    const struct upstream_request *ureq, bool may_have_acted, const struct relay_observer *observer, void *arg)
{
	struct evhttp_connection *evcon = evhttp_request_get_connection(req);
	struct upstream_request streamed = *ureq;
	struct relay *relay;
	evutil_socket_t fd;

	if (!upstream_has_key(engine->upstream)) {
		reply_no_key(req);
		goto no_relay;
	}
	if ((relay = calloc(1, sizeof(*relay))) == NULL || (relay->chunk = evbuffer_new()) == NULL) {
		free(relay);
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
	relay->call = upstream_forward(engine->upstream, &streamed, relay_on_upstream_done, relay);
	if (relay->call == NULL) {
		relay->req = NULL;
		reply_error(req, 503, REPLY_RETRY_MAY_HELP,
		    "llamachatd is at its limit of upstream calls in flight; try again shortly");
		relay_free(relay);
		return;
	}
	relay->access = access;
	access_set_on_gone(access, relay_on_client_gone, relay);
	fd = bufferevent_getfd(evhttp_connection_get_bufferevent(evcon));
	relay->hangup_watch = event_new(engine->base, fd, EV_READ, relay_on_client_readable, relay);
	if (relay->hangup_watch != NULL)
		event_add(relay->hangup_watch, NULL);
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
		struct evhttp_request *req = relay->req;
		upstream_cancel(relay->call);
		relay->call = NULL;
		if (req != NULL && !relay->started) {
			relay_detach(relay);
			relay->req = NULL;
			reply_error(req, 503, REPLY_RETRY_MAY_HELP, "llamachatd is shutting down");
			relay_free(relay);
		} else {
			relay_finish(relay);
		}
	}
	free(engine);
}
