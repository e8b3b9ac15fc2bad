/* upstream: forwards HTTP calls to LlamaCloud with libcurl's multi-socket API on the event loop. */
/* Layer upstream (daemon/upstream/): libcurl on the event loop, the only
 * place that knows curl. May include http/ (header lists) and base/;
 * never gate/, chat/ or above. */
#ifndef LLAMACHATD_UPSTREAM_H
#define LLAMACHATD_UPSTREAM_H

#include <stdbool.h>
#include <stddef.h>

#include "http/http_headers.h"
#include "http/request.h"
#include "base/counters.h"

struct event_base;
struct evbuffer;
struct upstream;
struct upstream_call;

struct upstream_settings {
	const char *base_url; /* "https://host[:port][/prefix]", no trailing slash */
	const char *ca_file; /* NULL: the system trust store */
	long connect_timeout_ms;
	long request_timeout_ms;
	long max_response_bytes;
	long max_in_flight;
	long max_idle_connections; /* kept open for reuse between calls */
	long max_connections; /* to upstream at once; 0: no bound */
	/* The circuit breaker: it opens after breaker_failures consecutive
	 * failed calls (0: never) for breaker_open_ms, doubled after a failed
	 * probe up to a minute. */
	long breaker_failures;
	long breaker_open_ms;
};

enum upstream_error {
	UPSTREAM_OK = 0, /* an HTTP answer arrived; see status */
	UPSTREAM_ERR_CONNECT, /* could not reach upstream: nothing was sent */
	UPSTREAM_ERR_TIMEOUT, /* connect or request timeout */
	UPSTREAM_ERR_TOO_LARGE, /* the answer passed max_response_bytes */
	UPSTREAM_ERR_TLS, /* the TLS peer could not be verified */
	UPSTREAM_ERR_OTHER, /* any other transfer failure */
	UPSTREAM_ERR_NO_CONNECTION, /* waited connect_timeout_ms for a free connection or stream: nothing was sent */
	UPSTREAM_ERROR_KINDS /* how many there are */
};

/* A short name of error ("ok", "connect", "timeout", ...), for metrics
 * labels and spans. */
const char *upstream_error_name(enum upstream_error error);

/* What a finished call hands to its callback; everything in it belongs to the
 * call and is freed right after the callback returns. */
struct upstream_response {
	enum upstream_error error;
	const char *error_text; /* for logs; never holds the key */
	bool request_sent; /* false: upstream cannot have acted on it */
	long status; /* HTTP status when error == UPSTREAM_OK */
	struct evbuffer *body;
	/* Content-Type, Retry-After, Retry-After-Ms, X-Should-Retry as upstream
	 * sent them; nothing else of upstream's headers is kept. */
	const struct http_headers *headers;
	double total_seconds;
};

typedef void (*upstream_done_cb)(const struct upstream_response *response, void *arg);

/* What to send. The client's headers are filtered here: its credentials,
 * cookies and hop-by-hop headers never reach upstream, and the real key is
 * added. All of it is copied; the caller may free it once forward returns. */
struct upstream_request {
	const char *method; /* "GET", "POST", "DELETE", ... */
	const char *path_and_query; /* starts with '/' */
	const struct http_headers *client_headers; /* may be NULL */
	const void *body;
	size_t body_len;
	const struct upstream_stream *stream; /* NULL: collect the whole answer */
	/* The Idempotency-Key to send (the client's own never goes); NULL: none. */
	const char *idempotency_key;
	/* Whose key the call goes with: a project id, or NULL/"" for the
	 * default key (see upstream_set_keys). */
	const char *project_id;
	bool is_retry; /* a retry: its failure is not counted again by the breaker */
	/* Never send it twice, not even by libcurl's own re-send on a fresh
	 * connection after a reused one died: a create without an
	 * Idempotency-Key, a stream's turn, any call that may act upstream with
	 * nothing to dedupe it by. Such a call fails instead (may have acted). */
	bool send_once;
	/* The trace the call belongs to (NULL: none, and no traceparent
	 * goes), and which attempt of it this is (1: the first). The call gets
	 * a span of its own (a client span, recorded when it ends if sampled),
	 * which the traceparent upstream gets names as the parent. */
	const struct request_trace *trace;
	int attempt;
};

enum upstream_flow {
	UPSTREAM_FLOW_TAKEN, /* the bytes were used */
	UPSTREAM_FLOW_PAUSE, /* not now: pause, and offer them again after upstream_resume() */
};

/* A streamed call hands its answer over as it arrives instead of collecting
 * it: on_headers once the status and headers are known, then on_data for
 * each piece, then the done callback (whose response has an empty body). A
 * streamed call has no total time limit; it fails when upstream sends
 * nothing for idle_timeout_ms. */
struct upstream_stream {
	void (*on_headers)(long status, const struct http_headers *headers, void *arg);
	enum upstream_flow (*on_data)(const char *data, size_t len, void *arg);
	long idle_timeout_ms;
};

/* Creates the engine on base. Returns NULL with a reason in why on failure;
 * free it with upstream_free(). */
struct upstream *upstream_create(struct event_base *base, const struct upstream_settings *settings, char *why,
    size_t why_size) __attribute__((warn_unused_result));

/* Cancels every call in flight (their callbacks do not run) and frees it. */
void upstream_free(struct upstream *upstream);

/* The keys calls are made with: default_key (may be NULL) for calls that
 * name no project or one without a key of its own, and keys[i] for
 * projects[i] (count of them, at most UPSTREAM_MAX_PROJECT_KEYS). Takes
 * ownership of the keys (from apikey_load(); keys is left all NULL); the
 * previous ones are wiped. Counters of a project's key carry over. Calls
 * already in flight keep the header they were sent with. */
#define UPSTREAM_MAX_PROJECT_KEYS 64
void upstream_set_keys(
    struct upstream *upstream, char *default_key, const char *const *projects, char **keys, size_t count);
/* The same, keeping the default key in force (one from the environment,
 * which cannot change under a running process). */
void upstream_set_project_keys(struct upstream *upstream, const char *const *projects, char **keys, size_t count);

/* Whether a call about project (NULL or "": none) may go upstream now,
 * by the breaker of the key it would carry: false while it is open (with
 * the seconds until it lets a probe through in *retry_after_s, and since
 * when it is open in *since_wall, Unix seconds); when it is half-open, true
 * for one call (the probe, which the next upstream_forward() makes) and
 * false for the others until the probe's answer. */
bool upstream_breaker_admits(struct upstream *upstream, const char *project, long *retry_after_s, double *since_wall);

/* The worst state among the keys' breakers and since when (Unix seconds;
 * 0: since start). */
enum upstream_breaker_state upstream_breaker_state(const struct upstream *upstream, double *since_wall);

/* True when any key is set. */
bool upstream_has_key(const struct upstream *upstream);
/* True when a call about project (NULL or "": none) has a key to go with:
 * the project's own or the default. */
bool upstream_has_key_for(const struct upstream *upstream, const char *project);

/* The circuit breaker's state. */
enum upstream_breaker_state {
	UPSTREAM_BREAKER_CLOSED = 0,
	UPSTREAM_BREAKER_OPEN = 1,
	UPSTREAM_BREAKER_HALF_OPEN = 2,
};

/* What upstream made of each key, for /metrics and /healthz: the project
 * ("default" for the default key), upstream's 401 and 403 answers, and the
 * Unix seconds of the last success and rejection (0: never). No key
 * material. index < upstream_key_count(). */
struct upstream_key_info {
	const char *project;
	unsigned long long rejections;
	double last_success_wall, last_rejection_wall;
	enum upstream_breaker_state breaker;
};
size_t upstream_key_count(const struct upstream *upstream);
void upstream_key_info(const struct upstream *upstream, size_t index, struct upstream_key_info *out);

/* Starts a call. done runs exactly once, later, from the event loop, unless
 * the call is cancelled first. Returns NULL without calling done when no key
 * is set, max_in_flight calls are already running, or memory ran out. */
struct upstream_call *upstream_forward(struct upstream *upstream, const struct upstream_request *req,
    upstream_done_cb done, void *arg) __attribute__((warn_unused_result));

/* Aborts a call whose callback has not run yet; done will not be called.
 * Never call it from inside the call's own callbacks. NULL is fine. */
void upstream_cancel(struct upstream_call *call);

/* Lets a streamed call that on_data paused flow again; on_data may run
 * before this returns. */
void upstream_resume(struct upstream_call *call);

/* The tokens a streamed call's turn used, from its stop event, for its
 * span. */
void upstream_note_usage(struct upstream_call *call, long long input_tokens, long long output_tokens);

/* Records a client span per sampled call into spans (NULL: none). */
struct span_queue;
void upstream_set_spans(struct upstream *upstream, struct span_queue *spans);

/* Number of calls in flight. */
long upstream_in_flight(const struct upstream *upstream);

/* What the engine has seen, for /metrics and /healthz. */
struct upstream_stats {
	unsigned long long errors[UPSTREAM_ERROR_KINDS]; /* by enum upstream_error (UPSTREAM_OK counts answers) */
	struct histogram latency; /* seconds per call */
	double last_answer_wall; /* Unix seconds of the last HTTP answer; 0: none yet */
	double last_failure_wall; /* Unix seconds of the last failed transfer; 0: none yet */
	unsigned long long multi_errors; /* curl_multi_socket_action calls that failed */
};

const struct upstream_stats *upstream_get_stats(const struct upstream *upstream);

/* Checks what curl_multi_socket_action returned (a CURLMcode) from the
 * engine's handler named where: anything but CURLM_OK is logged and counted
 * in multi_errors. Used by the engine's event handlers; exported for tests. */
void upstream_check_multi(struct upstream *upstream, int code, const char *where);

/* True for a client header that may be forwarded upstream as it is. */
bool upstream_header_is_forwarded(const char *name);

#endif
