/* access: one record per client request, from its arrival to its end: the
 * request id, who asked, how it ended, how long it took. It writes the
 * access log line and feeds the request metrics, and it is where a request's
 * owner hears that the client went away. */
#ifndef LLAMACHATD_ACCESS_H
#define LLAMACHATD_ACCESS_H

#include <stdbool.h>
#include <stdio.h>

struct evhttp_request;
struct metrics;

#define ACCESS_REQUEST_ID_MAX 64

/* A request in progress. Handlers may fill in what they learn. */
struct access_entry {
	struct access_log *log;
	struct evhttp_request *req;
	double started; /* monotonic seconds */
	char request_id[ACCESS_REQUEST_ID_MAX + 1];
	char client[65]; /* "-" until known */
	const char *route; /* a static label for metrics */
	double upstream_seconds; /* < 0: upstream not asked */
	unsigned long long streamed_bytes; /* bytes of a chunked answer */
	void (*on_gone)(void *arg); /* the client went away mid-request */
	void *gone_arg;
};

struct access_log;

/* Creates the log; path is "stderr", "off" or a file to append to. Returns
 * NULL with a reason in why; free with access_log_free(). */
struct access_log *access_log_create(const char *path, struct metrics *metrics, char *why, size_t why_size)
    __attribute__((warn_unused_result));
void access_log_free(struct access_log *log);

/* Starts the record of req: takes or makes its request id (returned to the
 * client and passed upstream), and watches for its end. Returns NULL when out
 * of memory (the request then goes unrecorded). The entry lives until the
 * answer is written or the connection closes. */
struct access_entry *access_begin(struct access_log *log, struct evhttp_request *req);

/* Tells fn (NULL: nobody) if the client goes away before its answer. */
void access_set_on_gone(struct access_entry *entry, void (*fn)(void *arg), void *arg);

/* True when text is a request id worth keeping: 1 to 64 of [A-Za-z0-9._-]. */
bool access_request_id_is_clean(const char *text);

#endif
