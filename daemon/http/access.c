/* access: the access log and the request ids. The record itself is part of
 * the request (request.h); this module writes its line when the request
 * ends, however it ends, and feeds the request metrics. */
#include "http/access.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "base/clock.h"
#include "base/log.h"
#include "base/counters.h"
#include "base/trace.h"
#include "http/request.h"

struct access_log {
	FILE *out; /* NULL: off */
	bool owns_out;
	struct request_counters *counters;
	struct span_queue *spans; /* NULL: no spans recorded */
	double sample_ratio; /* of new traces */
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
	log->sample_ratio = 1.0;
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

/* The route template of a route label (HTTP's http.route), or NULL for
 * a path the daemon only passes on. */
static const char *
access_route_template(const char *route)
{
	static const struct {
		const char *label, *path;
	} templates[] = {
		{ "create", "/api/v1/chat" },
		{ "list", "/api/v1/chat" },
		{ "history", "/api/v1/chat/{session_id}" },
		{ "delete", "/api/v1/chat/{session_id}" },
		{ "summary", "/api/v1/chat/{session_id}/summary" },
		{ "stream", "/api/v1/chat/{session_id}/messages/stream" },
		{ "healthz", "/healthz" },
		{ "metrics", "/metrics" },
	};

	for (size_t i = 0; route != NULL && i < sizeof(templates) / sizeof(templates[0]); i++)
		if (strcmp(route, templates[i].label) == 0)
			return templates[i].path;
	return NULL;
}

/* The request's server span, into the queue: HTTP's attributes and, for
 * the chat resource, GenAI's. Never a header, a body, a query or a key. */
static void
access_record_span(struct access_log *log, const struct request *req, double now)
{
	const struct access_entry *e = &req->access;
	const char *template = access_route_template(e->route);
	struct span span;
	char path[256];

	span.attr_count = 0;
	span.text_used = 0;
	memcpy(span.trace_id, e->trace_id, sizeof(span.trace_id));
	memcpy(span.span_id, e->span_id, sizeof(span.span_id));
	span.parent_id[0] = '\0';
	if (e->parent_id[0] != '\0')
		memcpy(span.parent_id, e->parent_id, sizeof(span.parent_id));
	span.kind = SPAN_KIND_SERVER;
	span.end_unix_ns = clock_unix_ns_of_monotonic(now);
	span.start_unix_ns = clock_unix_ns_of_monotonic(e->started);
	span.error = e->status >= 500;
	snprintf(span.name, sizeof(span.name), "%s%s%s", req->method_name, template != NULL ? " " : "",
	    template != NULL ? template : "");
	access_clean_path(req->path, path, sizeof(path));
	span_add_string(&span, "http.request.method", req->method_name);
	span_add_string(&span, "url.path", path);
	if (template != NULL)
		span_add_string(&span, "http.route", template);
	span_add_int(&span, "http.response.status_code", e->status);
	if (strcmp(e->client, "-") != 0)
		span_add_string(&span, "enduser.id", e->client);
	if (e->chat) {
		span_add_string(&span, "gen_ai.operation.name", "chat");
		if (e->session_id[0] != '\0')
			span_add_string(&span, "gen_ai.conversation.id", e->session_id);
		if (e->input_tokens >= 0)
			span_add_int(&span, "gen_ai.usage.input_tokens", e->input_tokens);
		if (e->output_tokens >= 0)
			span_add_int(&span, "gen_ai.usage.output_tokens", e->output_tokens);
	}
	if (e->status >= 500) {
		char status[12];
		snprintf(status, sizeof(status), "%d", e->status);
		span_add_string(&span, "error.type", status);
	}
	if (e->cache != NULL)
		span_add_string(&span, "llamachatd.cache", e->cache);
	if (e->cut != NULL)
		span_add_string(&span, "llamachatd.cut", e->cut);
	if (e->retries > 0)
		span_add_int(&span, "llamachatd.retries", e->retries);
	span_add_string(&span, "llamachatd.request_id", e->request_id);
	span_queue_push(log->spans, &span);
}

void
access_end(struct access_log *log, const struct request *req)
{
	const struct access_entry *e = &req->access;
	double now = clock_monotonic_s(), total = now - e->started;
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
	if (log->spans != NULL && e->sampled && e->trace_id[0] != '\0')
		access_record_span(log, req, now);
}

void
access_log_set_tracing(struct access_log *log, struct span_queue *spans, double sample_ratio)
{
	log->spans = spans;
	log->sample_ratio = sample_ratio;
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
		trace_new_id(req->access.request_id, 16);
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
		memcpy(req->access.parent_id, parent + 36, 16);
		req->access.parent_id[16] = '\0';
		req->access.sampled = (strtol(parent + 53, NULL, 16) & 1) != 0;
	} else {
		trace_new_id(req->access.trace_id, TRACE_ID_HEX);
		req->access.sampled = trace_sample(log->sample_ratio);
	}
	trace_new_id(req->access.span_id, TRACE_SPAN_ID_HEX);
}
