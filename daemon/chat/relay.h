/* relay: streams an upstream answer to a client as it arrives, with
 * back-pressure and hang-up detection. */
#ifndef LLAMACHATD_RELAY_H
#define LLAMACHATD_RELAY_H

#include <stdbool.h>
#include <stddef.h>

struct event_base;
struct request;
struct relay;
struct relay_engine;
struct upstream;
struct upstream_request;

/* Hooks for a caller that wants to watch a relayed answer (all optional). */
struct relay_observer {
	/* Upstream's status is known and the client's answer has started. */
	void (*on_start)(struct relay *relay, long status, void *arg);
	/* Bytes on their way to the client, in order. */
	void (*on_data)(struct relay *relay, const char *data, size_t len, void *arg);
	/* Upstream is done: cut is -1 when its answer arrived whole, else the
	 * enum relay_cut of how it broke off. The client's answer stays open
	 * until the observer calls relay_finish() or relay_cut(), now or later.
	 * Without this hook the relay ends at once, cut when upstream's was. */
	void (*on_upstream_done)(struct relay *relay, int cut, void *arg);
	/* Last call: the relay is gone (finished, or the client went away). */
	void (*on_close)(void *arg);
	/* When the client goes away, upstream's answer is still read to its end
	 * (bounded by the stream's idle timeout) and handed to on_start,
	 * on_data and on_upstream_done, only sent nowhere: what upstream did
	 * is accounted for whether or not anyone stays to read it. */
	bool drain_when_client_gone;
};

/* Creates the engine. Each relay holds at most buffer_bytes of output the
 * client has not read before it pauses its upstream transfer; a stream that
 * stays silent for idle_timeout_ms is cut. The caller keeps owning upstream.
 * Returns NULL when out of memory; free with relay_engine_free(). */
struct relay_engine *relay_engine_create(struct event_base *base, struct upstream *upstream, size_t buffer_bytes,
    long idle_timeout_ms) __attribute__((warn_unused_result));

/* Ends every relay: their clients' answers are closed, upstream transfers
 * cancelled. */
void relay_engine_free(struct relay_engine *engine);

/* Relays in flight. */
long relay_engine_active(const struct relay_engine *engine);

/* Bytes relayed to clients since start. */
unsigned long long relay_engine_bytes(const struct relay_engine *engine);

/* Forwards req upstream as ureq (whose stream member is ignored) and relays
 * the answer, whatever its status. Failures before upstream answers get the
 * daemon's JSON errors (see reply_upstream_failure; may_have_acted as
 * there). The client is always answered; observer (may be NULL) and arg
 * follow the relay to its end. The relay holds req's on_gone and on_drained
 * hooks while it runs, and records its upstream time. */
void relay_start(struct relay_engine *engine, struct request *req, const struct upstream_request *ureq,
    bool may_have_acted, const struct relay_observer *observer, void *arg);

/* Ends the client's answer and frees the relay (see on_upstream_done). */
void relay_finish(struct relay *relay);

/* The tokens the relayed turn used (from its stop event): into the spans
 * of the client's request and of the upstream call. */
void relay_note_usage(struct relay *relay, long long input_tokens, long long output_tokens);

/* Why an answer was cut short, for the metric and the access line. */
enum relay_cut {
	RELAY_CUT_RESET, /* upstream's connection broke off */
	RELAY_CUT_TIMEOUT, /* upstream went quiet past its timeout */
	RELAY_CUT_SHUTDOWN, /* the daemon stopped past its drain time */
	RELAY_CUT_CAUSES,
};

/* Ends the client's answer as cut short (request_abort(): no proper end),
 * after an SSE comment naming the cause when the answer is an event stream,
 * and frees the relay. */
void relay_cut(struct relay *relay, enum relay_cut cause);

/* Passed-through GETs and DELETEs are made again before their answer
 * starts, as policy says (retry.h); none until this is called. */
struct retry_policy;
void relay_engine_set_retries(struct relay_engine *engine, const struct retry_policy *policy);
/* Retries made since start, by reason (an enum retry_reason). */
unsigned long long relay_engine_retries(const struct relay_engine *engine, int reason);

/* Answers cut short since start, by cause. */
unsigned long long relay_engine_cuts(const struct relay_engine *engine, enum relay_cut cause);

/* The cause of an upstream failure that ended an answer. */
enum relay_cut relay_cut_of(int upstream_error);

#endif
