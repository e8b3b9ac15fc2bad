/* access: the access log and the request ids. The record itself is part of
 * the request (request.h); this module writes its line when the request
 * ends, however it ends, and feeds the request metrics. */
#include "http/access.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>

#include "base/clock.h"
#include "base/log.h"
#include "base/counters.h"
#include "http/request.h"

struct access_log {
	FILE *out; /* NULL: off */
	bool owns_out;
	struct request_counters *counters;
	uint64_t sequence; /* request id generator state */
	bool seeded;
};

struct access_log *
access_log_create(const char *path, struct request_counters *counters, char *why, size_t why_size)
{
	struct access_log *log = calloc(1, sizeof(*log));

	if (log == NULL) {
		snprintf(why, why_size, "access log: out of memory");
		return NULL;
	}
	log->counters = counters;
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

	if (len == 0 || len > REQUEST_ID_MAX)
		return false;
	return strspn(text, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") == len;
}

/* Writes the path for the log: no query (it may hold ids people would
 * rather not see) and nothing that could break a logfmt line. */
static void
access_clean_path(const char *path, char *out, size_t size)
{
	size_t n = 0;

	for (const char *p = path != NULL ? path : "-"; *p != '\0' && n + 1 < size; p++)
		out[n++] =
		    ((unsigned char)*p <= ' ' || *p == '"' || *p == '\\' || (unsigned char)*p >= 0x7f) ? '_' : *p;
	out[n] = '\0';
}

void
access_end(struct access_log *log, const struct request *req)
{
	const struct access_entry *e = &req->access;
	double total = clock_monotonic_s() - e->started;
	char path[256], time_text[32], upstream[32], retries[24] = "";
	struct timespec wall;
	struct tm tm;

	if (log->out != NULL) {
		clock_gettime(CLOCK_REALTIME, &wall);
		gmtime_r(&wall.tv_sec, &tm);
		strftime(time_text, sizeof(time_text), "%Y-%m-%dT%H:%M:%SZ", &tm);
		access_clean_path(req->path, path, sizeof(path));
		if (e->retries > 0)
			snprintf(retries, sizeof(retries), " retries=%d", e->retries);
		if (e->upstream_seconds >= 0)
			snprintf(upstream, sizeof(upstream), "%.6f", e->upstream_seconds);
		else
			snprintf(upstream, sizeof(upstream), "-");
		fprintf(log->out,
		    "time=%s client=%s method=%s path=\"%s\" status=%d bytes=%llu duration=%.6f upstream=%s cache=%s "
		    "trace_id=%s request_id=%s%s%s%s\n",
		    time_text, e->client, req->method_name, path, e->status, e->bytes, total, upstream,
		    e->cache != NULL ? e->cache : "-", e->trace_id[0] != '\0' ? e->trace_id : "-",
		    e->request_id[0] != '\0' ? e->request_id : "-", e->cut != NULL ? " cut=" : "",
		    e->cut != NULL ? e->cut : "", retries);
	}
	counters_observe_request(log->counters, e->route, e->status, total);
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

/* True for a traceparent we take (W3C Trace Context): version 00 (or a
 * later one, which may add fields), 32 and 16 lower-case hex digits not all
 * zero, two of flags. */
static bool
access_traceparent_is_valid(const char *v)
{
	size_t len = v != NULL ? strlen(v) : 0;

	if (len < 55 || v[2] != '-' || v[35] != '-' || v[52] != '-' || strncmp(v, "ff", 2) == 0 ||
	    (strncmp(v, "00", 2) == 0 ? len != 55 : len > 55 && v[55] != '-'))
		return false;
	for (size_t i = 0; i < 55; i++)
		if (i != 2 && i != 35 && i != 52 && strchr("0123456789abcdef", v[i]) == NULL)
			return false;
	return strspn(v + 3, "0") < 32 && strspn(v + 36, "0") < 16;
}

/* A new trace id (32 hex digits) or span id (16). */
static void
access_new_id(struct access_log *log, char *out, size_t digits)
{
	for (size_t i = 0; i < digits; i += 16)
		access_new_request_id(log, out + i);
}

void
access_begin(struct access_log *log, struct request *req)
{
	const char *given = request_header(req, "X-Request-Id");
	const char *parent = request_header(req, "traceparent");
	struct http_headers *in = &req->headers;
	size_t kept = 0;

	if (given != NULL && access_request_id_is_clean(given)) {
		snprintf(req->access.request_id, sizeof(req->access.request_id), "%s", given);
	} else {
		access_new_request_id(log, req->access.request_id);
		/* Upstream gets the id through the forwarded headers: ours
		 * replaces whatever the client sent. */
		for (size_t i = 0; i < in->count; i++)
			if (strcasecmp(in->items[i].name, "X-Request-Id") != 0)
				in->items[kept++] = in->items[i];
		in->count = kept;
		if (!http_headers_add(in, "X-Request-Id", req->access.request_id))
			in->items[in->count - 1] =
			    (struct http_header){ .name = "X-Request-Id", .value = req->access.request_id };
	}
	request_add_header(req, "X-Request-Id", req->access.request_id);
	/* A malformed traceparent is ignored: a new trace, as the spec says. */
	if (access_traceparent_is_valid(parent)) {
		memcpy(req->access.trace_id, parent + 3, 32);
		req->access.trace_id[32] = '\0';
		req->access.sampled = (strtol(parent + 53, NULL, 16) & 1) != 0;
	} else {
		access_new_id(log, req->access.trace_id, 32);
		req->access.sampled = true;
	}
	access_new_id(log, req->access.span_id, 16);
}
