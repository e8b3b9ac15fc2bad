/* span_export: the OTLP/HTTP JSON exporter, on its own thread. */
#include "upstream/span_export.h"

#include <curl/curl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/log.h"
#include "base/trace.h"

struct span_exporter {
	struct span_queue *queue;
	struct span_export_settings settings; /* strings owned below */
	char *endpoint, *service_name, *service_instance;
	pthread_t thread;
	struct span *batch; /* batch_max spans, the thread's own */
};

/* {"key": key, "value": {"stringValue": ...}}; NULL when text is not UTF-8. */
static json_t *
span_export_string_attr(const char *key, const char *text, size_t len)
{
	json_t *value = json_stringn(text, len);

	return value != NULL ? json_pack("{s:s,s:{s:o}}", "key", key, "value", "stringValue", value) : NULL;
}

static json_t *
span_export_attrs(const struct span *s)
{
	json_t *attrs = json_array();

	for (size_t i = 0; attrs != NULL && i < s->attr_count; i++) {
		const struct span_attr *a = &s->attrs[i];
		json_t *attr;
		if (a->is_int) {
			/* OTLP's JSON carries 64-bit integers as strings. */
			char number[24];
			snprintf(number, sizeof(number), "%lld", a->number);
			attr = json_pack("{s:s,s:{s:s}}", "key", a->key, "value", "intValue", number);
		} else {
			attr = span_export_string_attr(a->key, span_attr_text(s, a), a->len);
		}
		if (attr != NULL)
			json_array_append_new(attrs, attr);
	}
	return attrs;
}

static json_t *
span_export_span(const struct span *s)
{
	char start[24], end[24];
	json_t *span;

	snprintf(start, sizeof(start), "%lld", s->start_unix_ns);
	snprintf(end, sizeof(end), "%lld", s->end_unix_ns);
	span = json_pack("{s:s,s:s,s:s,s:i,s:s,s:s,s:o,s:{s:i}}", "traceId", s->trace_id, "spanId", s->span_id, "name",
	    s->name, "kind", (int)s->kind, "startTimeUnixNano", start, "endTimeUnixNano", end, "attributes",
	    span_export_attrs(s), "status", "code", s->error ? 2 : 0);
	if (span != NULL && s->parent_id[0] != '\0')
		json_object_set_new(span, "parentSpanId", json_string(s->parent_id));
	return span;
}

char *
span_export_encode(const struct span_export_settings *settings, const struct span *spans, size_t n)
{
	json_t *list = json_array(), *resource = json_array(), *doc;
	char *text;

	if (list == NULL || resource == NULL) {
		json_decref(list);
		json_decref(resource);
		return NULL;
	}
	for (size_t i = 0; i < n; i++) {
		json_t *span = span_export_span(&spans[i]);
		if (span != NULL)
			json_array_append_new(list, span);
	}
	json_array_append_new(
	    resource, span_export_string_attr("service.name", settings->service_name, strlen(settings->service_name)));
	json_array_append_new(
	    resource, span_export_string_attr("service.version", LLAMACHATD_VERSION, strlen(LLAMACHATD_VERSION)));
	if (settings->service_instance != NULL)
		json_array_append_new(resource,
		    span_export_string_attr(
		        "service.instance.id", settings->service_instance, strlen(settings->service_instance)));
	doc = json_pack("{s:[{s:{s:o},s:[{s:{s:s,s:s},s:o}]}]}", "resourceSpans", "resource", "attributes", resource,
	    "scopeSpans", "scope", "name", "llamachatd", "version", LLAMACHATD_VERSION, "spans", list);
	if (doc == NULL)
		return NULL;
	text = json_dumps(doc, JSON_COMPACT);
	json_decref(doc);
	return text;
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

/* Sends n spans, and once more if that fails. Returns true when delivered;
 * else they are counted as dropped. */
static bool
span_export_batch(struct span_exporter *e, CURL *easy, struct curl_slist *headers, size_t n)
{
	static bool failing; /* the thread's own: one log line per change */
	char *body = span_export_encode(&e->settings, e->batch, n);
	char why[CURL_ERROR_SIZE + 64] = "out of memory";
	bool sent = false;

	for (int attempt = 0; body != NULL && attempt < 2 && !sent; attempt++) {
		if (attempt > 0) {
			/* A short pause: a collector restarting gets a moment. */
			struct timespec pause = { .tv_sec = 0, .tv_nsec = 200 * 1000000L };
			nanosleep(&pause, NULL);
		}
		sent = span_export_post(e, easy, headers, body, why, sizeof(why));
	}
	free(body);
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

static void *
span_export_run(void *arg)
{
	struct span_exporter *e = arg;
	CURL *easy = curl_easy_init();
	struct curl_slist *headers = curl_slist_append(NULL, "Content-Type: application/json");

	for (;;) {
		bool closed = span_queue_closed(e->queue);
		size_t n = span_queue_take(
		    e->queue, e->batch, e->settings.batch_max, e->settings.batch_max, e->settings.interval_ms);
		if (n == 0) {
			if (closed)
				break;
			continue;
		}
		if (easy == NULL || headers == NULL) {
			span_queue_count_dropped(e->queue, n);
			continue;
		}
		if (!span_export_batch(e, easy, headers, n) && closed) {
			/* Stopping, and the collector does not answer: what is
			 * left is dropped rather than keep the stop waiting. */
			while ((n = span_queue_take(e->queue, e->batch, e->settings.batch_max, 0, 0)) > 0)
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
	        (e->service_instance = strdup(settings->service_instance)) == NULL) ||
	    (e->batch = calloc(settings->batch_max, sizeof(*e->batch))) == NULL) {
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
		free(e->batch);
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
	free(e->batch);
	free(e);
}
