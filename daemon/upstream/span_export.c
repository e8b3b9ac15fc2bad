/* span_export: the OTLP/HTTP JSON exporter, on its own thread. */
#include "upstream/span_export.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/log.h"
#include "base/trace.h"

/* The most one span's JSON can take: its name and text escaped at six bytes
 * a byte at worst, and each attribute's key, number and framing. */
#define SPAN_JSON_MAX (512 + 6 * (sizeof(((struct span *)0)->name) + SPAN_TEXT_MAX) + SPAN_ATTRS_MAX * 160)

/* The JSON body being written. Room is made once per span (span_json_room),
 * then the writers below append without checking: encoding is most of
 * what the exporter's thread does, and it runs beside the loop. */
struct span_json {
	char *data;
	size_t len, cap;
	bool failed; /* out of memory: nothing more is written */
	size_t spans; /* in the body */
};

struct span_exporter {
	struct span_queue *queue;
	struct span_export_settings settings; /* strings owned below */
	char *endpoint, *service_name, *service_instance;
	pthread_t thread;
	struct span_json body; /* the batch being sent, its buffer kept for the next */
};

/* Makes room for need more bytes; false once out of memory. */
static bool
span_json_room(struct span_json *j, size_t need)
{
	size_t cap = j->cap > 0 ? j->cap : 64 * 1024;
	char *grown;

	if (j->failed)
		return false;
	if (j->len + need + 1 <= j->cap)
		return true;
	while (cap < j->len + need + 1)
		cap *= 2;
	if ((grown = realloc(j->data, cap)) == NULL) {
		j->failed = true;
		return false;
	}
	j->data = grown;
	j->cap = cap;
	return true;
}

static void
span_json_raw(struct span_json *j, const char *text, size_t len)
{
	memcpy(j->data + j->len, text, len);
	j->len += len;
}

#define SPAN_JSON_LITERAL(j, text) span_json_raw((j), (text), sizeof(text) - 1)

static void
span_json_int(struct span_json *j, long long value)
{
	char digits[24], *p = digits + sizeof(digits);
	unsigned long long v = value < 0 ? 0ULL - (unsigned long long)value : (unsigned long long)value;

	do
		*--p = (char)('0' + v % 10);
	while ((v /= 10) > 0);
	if (value < 0)
		*--p = '-';
	span_json_raw(j, p, (size_t)(digits + sizeof(digits) - p));
}

/* True when text is well-formed UTF-8 (no overlong forms, surrogates or
 * code points past U+10FFFF): JSON can carry it as it is. */
static bool
span_json_is_utf8(const unsigned char *p, size_t len)
{
	for (size_t i = 0; i < len;) {
		unsigned char c = p[i];
		size_t n = c < 0x80 ? 1 : (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3 : (c & 0xf8) == 0xf0 ? 4 : 0;
		unsigned long cp = n == 1 ? c : n == 2 ? c & 0x1f : n == 3 ? c & 0x0f : c & 0x07;
		if (n == 0 || i + n > len)
			return false;
		for (size_t k = 1; k < n; k++) {
			if ((p[i + k] & 0xc0) != 0x80)
				return false;
			cp = (cp << 6) | (p[i + k] & 0x3f);
		}
		if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) || cp > 0x10ffff ||
		    (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		i += n;
	}
	return true;
}

/* A JSON string of len bytes of text (well-formed UTF-8), quoted. */
static void
span_json_string(struct span_json *j, const char *text, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	char *out = j->data + j->len;

	*out++ = '"';
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)text[i];
		if (c >= 0x20 && c != '"' && c != '\\') {
			*out++ = (char)c;
		} else if (c == '"' || c == '\\') {
			*out++ = '\\';
			*out++ = (char)c;
		} else {
			memcpy(out, "\\u00", 4);
			out[4] = hex[c >> 4];
			out[5] = hex[c & 0xf];
			out += 6;
		}
	}
	*out++ = '"';
	j->len = (size_t)(out - j->data);
}

/* {"key":...,"value":{"stringValue":...}}, or an intValue (a string, as
 * OTLP's JSON carries 64-bit integers). key is the daemon's own (nothing to
 * escape). A value that is not UTF-8 is left out; returns whether one was
 * written. */
static bool
span_json_attr(struct span_json *j, bool comma, const char *key, const char *text, size_t len, const long long *number)
{
	if (number == NULL && !span_json_is_utf8((const unsigned char *)text, len))
		return false;
	if (comma)
		SPAN_JSON_LITERAL(j, ",");
	SPAN_JSON_LITERAL(j, "{\"key\":\"");
	span_json_raw(j, key, strlen(key));
	if (number != NULL) {
		SPAN_JSON_LITERAL(j, "\",\"value\":{\"intValue\":\"");
		span_json_int(j, *number);
		SPAN_JSON_LITERAL(j, "\"}}");
	} else {
		SPAN_JSON_LITERAL(j, "\",\"value\":{\"stringValue\":");
		span_json_string(j, text, len);
		SPAN_JSON_LITERAL(j, "}}");
	}
	return true;
}

static void
span_json_span(struct span_json *j, const struct span *s)
{
	bool any = false;
	size_t name_len = strlen(s->name);

	if (!span_json_room(j, SPAN_JSON_MAX))
		return;
	/* The ids are hex digits the daemon made or checked: no escaping. */
	SPAN_JSON_LITERAL(j, "{\"traceId\":\"");
	span_json_raw(j, s->trace_id, TRACE_ID_HEX);
	SPAN_JSON_LITERAL(j, "\",\"spanId\":\"");
	span_json_raw(j, s->span_id, TRACE_SPAN_ID_HEX);
	if (s->parent_id[0] != '\0') {
		SPAN_JSON_LITERAL(j, "\",\"parentSpanId\":\"");
		span_json_raw(j, s->parent_id, TRACE_SPAN_ID_HEX);
	}
	SPAN_JSON_LITERAL(j, "\",\"kind\":");
	span_json_int(j, (long long)s->kind);
	SPAN_JSON_LITERAL(j, ",\"name\":");
	if (span_json_is_utf8((const unsigned char *)s->name, name_len))
		span_json_string(j, s->name, name_len);
	else
		SPAN_JSON_LITERAL(j, "\"-\"");
	SPAN_JSON_LITERAL(j, ",\"startTimeUnixNano\":\"");
	span_json_int(j, s->start_unix_ns);
	SPAN_JSON_LITERAL(j, "\",\"endTimeUnixNano\":\"");
	span_json_int(j, s->end_unix_ns);
	SPAN_JSON_LITERAL(j, "\",\"attributes\":[");
	for (size_t i = 0; i < s->attr_count; i++) {
		const struct span_attr *a = &s->attrs[i];
		any |= span_json_attr(j, any, a->key, span_attr_text(s, a), a->len, a->is_int ? &a->number : NULL);
	}
	/* A status is sent only for an error: unset is OTLP's default. */
	if (s->error)
		SPAN_JSON_LITERAL(j, "],\"status\":{\"code\":2}}");
	else
		SPAN_JSON_LITERAL(j, "]}");
}

/* Starts a body: the resource and the scope. False once out of memory. */
static bool
span_json_begin(struct span_json *j, const struct span_export_settings *settings)
{
	const char *instance = settings->service_instance;
	bool any;

	j->len = 0;
	j->failed = false;
	/* The resource's strings are the operator's: bounded here. */
	if (strlen(settings->service_name) > 256 || (instance != NULL && strlen(instance) > 256) ||
	    !span_json_room(j, SPAN_JSON_MAX))
		return false;
	SPAN_JSON_LITERAL(j, "{\"resourceSpans\":[{\"resource\":{\"attributes\":[");
	any = span_json_attr(j, false, "service.name", settings->service_name, strlen(settings->service_name), NULL);
	any |= span_json_attr(j, any, "service.version", LLAMACHATD_VERSION, strlen(LLAMACHATD_VERSION), NULL);
	if (instance != NULL)
		span_json_attr(j, any, "service.instance.id", instance, strlen(instance), NULL);
	SPAN_JSON_LITERAL(j, "]},\"scopeSpans\":[{\"scope\":{\"name\":\"llamachatd\",\"version\":");
	span_json_string(j, LLAMACHATD_VERSION, strlen(LLAMACHATD_VERSION));
	SPAN_JSON_LITERAL(j, "},\"spans\":[");
	j->spans = 0;
	return true;
}

/* Adds a span to a begun body. */
static void
span_json_add(const struct span *s, void *arg)
{
	struct span_json *j = arg;

	if (j->spans++ > 0 && span_json_room(j, 1))
		SPAN_JSON_LITERAL(j, ",");
	span_json_span(j, s);
}

/* Ends the body: NUL-terminated in j->data (j->len bytes); false once out
 * of memory. */
static bool
span_json_end(struct span_json *j)
{
	if (j->failed || !span_json_room(j, 16))
		return false;
	SPAN_JSON_LITERAL(j, "]}]}]}");
	j->data[j->len] = '\0';
	return true;
}

char *
span_export_encode(const struct span_export_settings *settings, const struct span *spans, size_t n)
{
	struct span_json j = { 0 };

	if (span_json_begin(&j, settings)) {
		for (size_t i = 0; i < n; i++)
			span_json_add(&spans[i], &j);
		if (span_json_end(&j))
			return j.data;
	}
	free(j.data);
	return NULL;
}

static size_t
span_export_discard(char *data, size_t size, size_t count, void *userp)
{
	(void)data;
	(void)userp;
	return size * count;
}

/* One POST of body; true when the collector took it (2xx). */
static bool
span_export_post(
    struct span_exporter *e, CURL *easy, struct curl_slist *headers, const char *body, char *why, size_t why_size)
{
	long status = 0;
	CURLcode code;

	curl_easy_reset(easy);
	curl_easy_setopt(easy, CURLOPT_URL, e->settings.endpoint);
	curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(easy, CURLOPT_HTTPHEADER, headers);
	curl_easy_setopt(easy, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(body));
	curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, e->settings.timeout_ms);
	curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, e->settings.timeout_ms);
	curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, span_export_discard);
	curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
	code = curl_easy_perform(easy);
	if (code != CURLE_OK) {
		snprintf(why, why_size, "%s", curl_easy_strerror(code));
		return false;
	}
	curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
	if (status < 200 || status > 299) {
		snprintf(why, why_size, "the collector answered %ld", status);
		return false;
	}
	return true;
}

/* Sends the body of n spans, and once more if that fails. Returns true
 * when delivered; else they are counted as dropped. */
static bool
span_export_batch(struct span_exporter *e, CURL *easy, struct curl_slist *headers, size_t n)
{
	static bool failing; /* the thread's own: one log line per change */
	char why[CURL_ERROR_SIZE + 64] = "";
	bool sent = false;

	for (int attempt = 0; attempt < 2 && !sent; attempt++) {
		if (attempt > 0) {
			/* A short pause: a collector restarting gets a moment. */
			struct timespec pause = { .tv_sec = 0, .tv_nsec = 200 * 1000000L };
			nanosleep(&pause, NULL);
		}
		sent = span_export_post(e, easy, headers, e->body.data, why, sizeof(why));
	}
	if (sent) {
		span_queue_count_exported(e->queue, n);
		if (failing)
			log_info("otel: the collector at %s takes spans again", e->settings.endpoint);
	} else {
		span_queue_count_dropped(e->queue, n);
		if (!failing)
			log_warnx("otel: cannot export spans to %s (%s); they are dropped and counted in "
			          "llamachatd_otel_spans_dropped_total until it takes them again",
			    e->settings.endpoint, why);
	}
	failing = !sent;
	return sent;
}

/* For spans that are dropped unread. */
static void
span_export_skip(const struct span *s, void *arg)
{
	(void)s;
	(void)arg;
}

static void *
span_export_run(void *arg)
{
	struct span_exporter *e = arg;
	CURL *easy = curl_easy_init();
	/* No "Expect: 100-continue": curl would wait up to a second for a
	 * collector's go-ahead before each large batch. */
	struct curl_slist *headers = curl_slist_append(NULL, "Content-Type: application/json"), *expect;
	size_t max = e->settings.batch_max;

	if (headers != NULL && (expect = curl_slist_append(headers, "Expect:")) != NULL)
		headers = expect;

	for (;;) {
		bool closed = span_queue_closed(e->queue);
		/* Encoded straight from the queue, as they are taken. */
		bool begun = span_json_begin(&e->body, &e->settings);
		size_t n = span_queue_drain(
		    e->queue, max, max, e->settings.interval_ms, begun ? span_json_add : span_export_skip, &e->body);
		if (n == 0) {
			if (closed)
				break;
			continue;
		}
		if (!begun || !span_json_end(&e->body) || easy == NULL || headers == NULL) {
			log_warnx("otel: out of memory: %zu spans dropped", n);
			span_queue_count_dropped(e->queue, n);
			continue;
		}
		if (!span_export_batch(e, easy, headers, n) && closed) {
			/* Stopping, and the collector does not answer: what is
			 * left is dropped rather than keep the stop waiting. */
			while ((n = span_queue_drain(e->queue, max, 0, 0, span_export_skip, NULL)) > 0)
				span_queue_count_dropped(e->queue, n);
			break;
		}
	}
	curl_slist_free_all(headers);
	curl_easy_cleanup(easy);
	return NULL;
}

struct span_exporter *
span_exporter_start(struct span_queue *q, const struct span_export_settings *settings, char *why, size_t why_size)
{
	struct span_exporter *e = calloc(1, sizeof(*e));
	int rc;

	if (e == NULL || (e->endpoint = strdup(settings->endpoint)) == NULL ||
	    (e->service_name = strdup(settings->service_name)) == NULL ||
	    (settings->service_instance != NULL &&
	        (e->service_instance = strdup(settings->service_instance)) == NULL)) {
		snprintf(why, why_size, "otel: out of memory");
		goto fail;
	}
	e->queue = q;
	e->settings = *settings;
	e->settings.endpoint = e->endpoint;
	e->settings.service_name = e->service_name;
	e->settings.service_instance = e->service_instance;
	if ((rc = pthread_create(&e->thread, NULL, span_export_run, e)) != 0) {
		snprintf(why, why_size, "otel: cannot start the exporter's thread: %s", strerror(rc));
		goto fail;
	}
	return e;
fail:
	if (e != NULL) {
		free(e->endpoint);
		free(e->service_name);
		free(e->service_instance);
		free(e->body.data);
		free(e);
	}
	return NULL;
}

void
span_exporter_stop(struct span_exporter *e)
{
	if (e == NULL)
		return;
	span_queue_close(e->queue);
	pthread_join(e->thread, NULL);
	free(e->endpoint);
	free(e->service_name);
	free(e->service_instance);
	free(e->body.data);
	free(e);
}
