/* access: the access log and the request ids. One line per request, in
 * logfmt, once its answer is done or its client has left; and each request's
 * id, the client's own when it is clean, else a fresh one, which the answer
 * carries and upstream is sent. */
#ifndef LLAMACHATD_ACCESS_H
#define LLAMACHATD_ACCESS_H

#include <stdbool.h>
#include <stddef.h>

struct request_counters;
struct request;

struct access_log;

/* Creates the log; path is "stderr", "off" or a file to append to. Returns
 * NULL with a reason in why; free with access_log_free(). */
struct access_log *access_log_create(const char *path, struct request_counters *counters, char *why, size_t why_size)
    __attribute__((warn_unused_result));
void access_log_free(struct access_log *log);

/* Records a server span per sampled request into spans (NULL: none), and
 * samples new traces at sample_ratio (0 to 1). */
struct span_queue;
void access_log_set_tracing(struct access_log *log, struct span_queue *spans, double sample_ratio);

/* A request's head is here: takes or makes its request id, puts it in the
 * request's headers (for upstream) and in its answer. */
void access_begin(struct access_log *log, struct request *req);

/* The request ended: writes its line and counts it in the metrics. */
void access_end(struct access_log *log, const struct request *req);

/* True when text is a request id worth keeping: 1 to 64 of [A-Za-z0-9._-]. */
bool access_request_id_is_clean(const char *text);

#endif
