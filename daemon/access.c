/* access: one record per client request, from its arrival to its end: the
 * request id, who asked, how it ended, how long it took. It writes the
 * access log line and feeds the request metrics, and it is where a request's
 * owner hears that the client went away.
 *
 * evhttp tells two endings apart: the answer was written (its completion
 * callback), or the connection closed first (its close callback, which this
 * module alone sets). Either way the record is logged once and freed. */
#include "access.h"

#include <errno.h>
#include <stdint.h>
#include <event2/event.h>
#include <event2/http.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "log.h"
#include "metrics.h"

struct access_log {
	FILE *out; /* NULL: off */
	bool owns_out;
	struct metrics *metrics;
	uint64_t sequence; /* request id generator state */
	bool seeded;
};

static double
access_now(void)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)now.tv_sec + (double)now.tv_nsec / 1e9;
}

struct access_log *
access_log_create(const char *path, struct metrics *metrics, char *why, size_t why_size)
{
	struct access_log *log = calloc(1, sizeof(*log));

	if (log == NULL) {
		snprintf(why, why_size, "access log: out of memory");
		return NULL;
	}
	log->metrics = metrics;
	if (strcmp(path, "stderr") == 0) {
		log->out = stderr;
	} else if (strcmp(path, "off") != 0) {
		log->out = fopen(path, "ae");
		if (log->out == NULL) {
			snprintf(why, why_size, "log.access_log: cannot open %s: %s", path, strerror(errno));
			free(log);
			return NULL;
		}
		setvbuf(log->out, NULL, _IOLBF, 0);
		log->owns_out = true;
	}
	return log;
}

void
access_log_free(struct access_log *log)
{
	if (log == NULL)
		return;
	if (log->owns_out)
		fclose(log->out);
	free(log);
}

bool
access_request_id_is_clean(const char *text)
{
	size_t len = strlen(text);

	if (len == 0 || len > ACCESS_REQUEST_ID_MAX)
		return false;
	return strspn(text, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") == len;
}

static const char *
access_method(enum evhttp_cmd_type m)
{
	switch (m) {
	case EVHTTP_REQ_GET:
		return "GET";
	case EVHTTP_REQ_POST:
		return "POST";
	case EVHTTP_REQ_DELETE:
		return "DELETE";
	case EVHTTP_REQ_PUT:
		return "PUT";
	case EVHTTP_REQ_PATCH:
		return "PATCH";
	case EVHTTP_REQ_HEAD:
		return "HEAD";
	default:
		return "OTHER";
	}
}

/* Writes the path for the log: no query (it may hold ids people would
 * rather not see) and nothing that could break a logfmt line. */
static void
access_clean_path(const struct evhttp_request *req, char *out, size_t size)
{
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const char *path = uri != NULL ? evhttp_uri_get_path(uri) : NULL;
	size_t n = 0;

	for (const char *p = path != NULL ? path : "-"; *p != '\0' && n + 1 < size; p++)
		out[n++] =
		    ((unsigned char)*p <= ' ' || *p == '"' || *p == '\\' || (unsigned char)*p >= 0x7f) ? '_' : *p;
	out[n] = '\0';
}

/* Logs and counts the request's end; the record stays. */
static void
access_record(struct access_entry *e, int status, unsigned long long bytes)
{
	double total = access_now() - e->started;
	const char *cache = evhttp_find_header(evhttp_request_get_output_headers(e->req), "X-Cache");
	char path[256], time_text[32], upstream[32];
	struct timespec wall;
	struct tm tm;

	if (e->log->out != NULL) {
		clock_gettime(CLOCK_REALTIME, &wall);
		gmtime_r(&wall.tv_sec, &tm);
		strftime(time_text, sizeof(time_text), "%Y-%m-%dT%H:%M:%SZ", &tm);
		access_clean_path(e->req, path, sizeof(path));
		if (e->upstream_seconds >= 0)
			snprintf(upstream, sizeof(upstream), "%.6f", e->upstream_seconds);
		else
			snprintf(upstream, sizeof(upstream), "-");
		fprintf(e->log->out,
		    "time=%s client=%s method=%s path=\"%s\" status=%d bytes=%llu duration=%.6f upstream=%s cache=%s "
		    "request_id=%s\n",
		    time_text, e->client, access_method(evhttp_request_get_command(e->req)), path, status, bytes, total,
		    upstream, cache != NULL && (strcmp(cache, "HIT") == 0 || strcmp(cache, "MISS") == 0) ? cache : "-",
		    e->request_id);
	}
	metrics_observe_request(e->log->metrics, e->route, status, total);
}

static void
access_on_complete(struct evhttp_request *req, void *arg)
{
	struct access_entry *e = arg;
	struct evhttp_connection *evcon = evhttp_request_get_connection(req);
	const char *length = evhttp_find_header(evhttp_request_get_output_headers(req), "Content-Length");
	unsigned long long bytes = length != NULL ? strtoull(length, NULL, 10) : e->streamed_bytes;

	if (evcon != NULL)
		evhttp_connection_set_closecb(evcon, NULL, NULL);
	access_record(e, evhttp_request_get_response_code(req), bytes);
	free(e);
}

/* The connection closed before the answer was written. */
static void
access_on_close(struct evhttp_connection *evcon, void *arg)
{
	struct access_entry *e = arg;
	void (*gone)(void *) = e->on_gone;

	(void)evcon;
	/* 499: the client closed the request, as nginx counts it. Recorded
	 * first: the owner may free the request when it hears of this. */
	access_record(e, 499, e->streamed_bytes);
	e->on_gone = NULL;
	if (gone != NULL)
		gone(e->gone_arg);
	free(e);
}

/* A fresh request id: 16 hex digits of a counter run through splitmix64,
 * seeded once from the kernel. Unique within a run and hard to guess, with
 * no system call per request. */
static void
access_new_request_id(struct access_log *log, char *out)
{
	static const char hex[] = "0123456789abcdef";
	uint64_t z;

	if (!log->seeded) {
		if (getrandom(&log->sequence, sizeof(log->sequence), GRND_NONBLOCK) != (ssize_t)sizeof(log->sequence))
			log->sequence = (uint64_t)time(NULL) * 0x9e3779b97f4a7c15ULL;
		log->seeded = true;
	}
	z = (log->sequence += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	z ^= z >> 31;
	for (int i = 15; i >= 0; i--, z >>= 4)
		out[i] = hex[z & 0xf];
	out[16] = '\0';
}

struct access_entry *
access_begin(struct access_log *log, struct evhttp_request *req)
{
	struct access_entry *e = calloc(1, sizeof(*e));
	struct evkeyvalq *in = evhttp_request_get_input_headers(req);
	const char *given = evhttp_find_header(in, "X-Request-Id");

	if (e == NULL)
		return NULL;
	e->log = log;
	e->req = req;
	e->started = access_now();
	e->route = "other";
	e->upstream_seconds = -1;
	snprintf(e->client, sizeof(e->client), "-");
	if (given != NULL && access_request_id_is_clean(given)) {
		snprintf(e->request_id, sizeof(e->request_id), "%s", given);
	} else {
		access_new_request_id(log, e->request_id);
		/* Upstream gets the id through the forwarded headers. */
		while (evhttp_remove_header(in, "X-Request-Id") == 0)
			;
		evhttp_add_header(in, "X-Request-Id", e->request_id);
	}
	evhttp_add_header(evhttp_request_get_output_headers(req), "X-Request-Id", e->request_id);
	evhttp_request_set_on_complete_cb(req, access_on_complete, e);
	evhttp_connection_set_closecb(evhttp_request_get_connection(req), access_on_close, e);
	return e;
}

void
access_set_on_gone(struct access_entry *entry, void (*fn)(void *arg), void *arg)
{
	if (entry == NULL)
		return;
	entry->on_gone = fn;
	entry->gone_arg = arg;
}
