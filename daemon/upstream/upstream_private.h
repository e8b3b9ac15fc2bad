/* upstream_private: what the two files of the upstream layer share
 * (upstream.c: curl's multi engine on the loop; upstream_call.c: one call,
 * its request and the answer's headers and body). Nothing outside
 * daemon/upstream/ includes it. */
#ifndef LLAMACHATD_UPSTREAM_PRIVATE_H
#define LLAMACHATD_UPSTREAM_PRIVATE_H

#include <curl/curl.h>
#include <event2/event.h>
#include <stdbool.h>
#include <sys/queue.h>

#include "base/trace.h"
#include "upstream/upstream.h"

struct upstream_breaker {
	enum upstream_breaker_state state;
	long failures; /* consecutive failed calls */
	double since_wall; /* of the state */
	double open_until; /* monotonic seconds; open: when a probe may go */
	long wait_ms; /* the open period now */
	bool probe_reserved; /* admitted, and the next forward is the probe */
	double probe_started; /* monotonic, when the probe was admitted; 0: none */
};

/* One LlamaCloud API key: the default one (project "") or a project's,
 * with what upstream made of it. */
#define UPSTREAM_PROJECT_MAX 128
struct upstream_key {
	char project[UPSTREAM_PROJECT_MAX + 1]; /* "": the default key */
	char *key; /* NULL: this slot has no key (the default may have none) */
	unsigned long long rejections; /* upstream's 401 and 403 */
	double last_success_wall, last_rejection_wall;
	bool rejected_since_success; /* its first rejection after a success was logged */
	struct upstream_breaker breaker; /* one per key: a project's key can fail alone */
};

struct upstream {
	struct event_base *base;
	CURLM *multi;
	struct event *timer;
	struct upstream_settings settings; /* strings owned below */
	char *base_url;
	bool is_tls; /* https: HTTP/2 may multiplex calls */
	char *ca_file;
	/* keys[0] is the default key; then the projects' (upstream_keys.c). */
	struct upstream_key keys[1 + UPSTREAM_MAX_PROJECT_KEYS];
	size_t key_count;
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
	struct span_queue *spans; /* NULL: no spans recorded */
	char host[256]; /* of base_url, for the spans' server.address */
	long port;
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
	const char *key; /* the key chosen for it, until configured */
	bool probe; /* the breaker's probe */
	bool is_retry;
	bool once; /* never sent twice (upstream_request.send_once) */
	int sends; /* times curl was about to send it */
	bool resend_refused; /* curl's own re-send was stopped */
	char key_project[UPSTREAM_PROJECT_MAX + 1]; /* whose key it carries ("": the default) */
	struct upstream_call_span *span; /* NULL: not traced, or not sampled */
	char traceparent[TRACEPARENT_LEN + 1]; /* "": none goes */
};

/* What a traced call's client span needs when it ends (upstream_span.c). */
struct upstream_call_span {
	char trace_id[TRACE_ID_HEX + 1], span_id[TRACE_SPAN_ID_HEX + 1], parent_id[TRACE_SPAN_ID_HEX + 1];
	long long start_unix_ns;
	char method[16];
	char path[256]; /* no query */
	int attempt;
	bool chat;
	char conversation_id[REQUEST_SESSION_MAX + 1];
	char enduser[REQUEST_CLIENT_MAX + 1];
	long long input_tokens, output_tokens; /* -1: none */
};

/* upstream_span.c: gives call its place in trace (its span id and the
 * traceparent it sends); the span is recorded only when sampled. Returns
 * 0, or -1 when out of memory. */
int upstream_span_begin(struct upstream_call *call, const struct upstream_request *req);
/* upstream_span.c: the call ended: its span goes to the queue (error:
 * how it failed, NULL when an answer came with status). Frees the span. */
void upstream_span_end(struct upstream_call *call, long status, const char *error);

/* upstream_keys.c: the key for a call about project (NULL or "": none):
 * the project's own, else the default one; NULL when neither exists.
 * *owner gets the project whose key it is ("" for the default). */
const char *upstream_pick_key(const struct upstream *upstream, const char *project, const char **owner);
/* upstream_breaker.c: a finished call's outcome, for the breaker of the key
 * it carried (owner's: "" for the default). */
void upstream_breaker_outcome(struct upstream *upstream, const char *owner, bool probe, bool failed);
/* upstream_breaker.c: true (and the reservation taken) when the call about
 * to start with owner's key is its breaker's probe. */
bool upstream_breaker_take_probe(struct upstream *upstream, const char *owner);
/* upstream_keys.c: the slot of owner's key ("" for the default), or NULL. */
struct upstream_key *upstream_find_key(const struct upstream *upstream, const char *owner);
/* upstream_keys.c: the slot whose key a call of project (NULL or "": none)
 * goes with: the project's own, else the default; NULL when neither has a
 * key. */
struct upstream_key *upstream_key_slot_for(const struct upstream *upstream, const char *project);

/* upstream_keys.c: what upstream answered a call made with owner's key. */
void upstream_key_outcome(struct upstream *upstream, const char *owner, long status);

/* upstream_call.c: sets a call's handle up for req; returns 0 or -1. */
int upstream_configure(struct upstream_call *call, const struct upstream_request *req);
/* upstream_call.c: hands a streamed call's status and headers over once. */
void upstream_deliver_headers(struct upstream_call *call);
/* upstream.c: curl's hooks that tell when a waiting call got a socket or
 * a connection (it then leaves the waiting list). */
int upstream_sockopt_cb(void *clientp, curl_socket_t fd, curlsocktype purpose);
int upstream_prereq_cb(void *clientp, char *primary_ip, char *local_ip, int primary_port, int local_port);

#endif
