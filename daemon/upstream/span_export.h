/* span_export: sends the spans of a span_queue (base/trace.h) to an
 * OpenTelemetry collector over OTLP/HTTP, JSON encoding, in batches.
 *
 * It runs on a thread of its own with its own libcurl handle: encoding and
 * sending never touch the event loop, so a collector that is down or slow
 * costs requests nothing. A batch that fails is sent once more; if that
 * fails too, its spans are counted as dropped in the queue. */
#ifndef LLAMACHATD_SPAN_EXPORT_H
#define LLAMACHATD_SPAN_EXPORT_H

#include <stddef.h>

struct span;
struct span_queue;
struct span_exporter;

struct span_export_settings {
	const char *endpoint; /* "http(s)://host:port/v1/traces" */
	const char *service_name; /* the resource's service.name */
	const char *service_instance; /* service.instance.id (the host name); NULL: none */
	long interval_ms; /* the longest a span waits for its batch */
	long timeout_ms; /* one POST, connecting included */
	size_t batch_max; /* spans per POST */
};

/* Starts the exporter's thread on q (which must outlive it). Returns NULL
 * with a reason in why when it cannot. The settings are copied. */
struct span_exporter *span_exporter_start(struct span_queue *q, const struct span_export_settings *settings, char *why,
    size_t why_size) __attribute__((warn_unused_result));

/* Closes the queue, sends what it still holds (giving up at the first batch
 * that fails twice: a stop never waits on a dead collector for long), and
 * joins the thread. NULL is fine. */
void span_exporter_stop(struct span_exporter *exporter);

/* The OTLP/HTTP JSON body for n spans (a new string the caller frees), or
 * NULL when out of memory. Exported for tests. */
char *span_export_encode(const struct span_export_settings *settings, const struct span *spans, size_t n);

#endif
