/* tracing: the OpenTelemetry span export the config's otel group asks
 * for: the span queue the access log and the upstream engine record into,
 * and the exporter that drains it (upstream/span_export.h). Part of the
 * top: it wires modules of several layers together. */
#ifndef LLAMACHATD_TRACING_H
#define LLAMACHATD_TRACING_H

#include <stddef.h>

struct config;
struct span_exporter;
struct span_queue;

struct tracing {
	struct span_queue *queue; /* NULL: otel is off */
	struct span_exporter *exporter;
};

/* Starts the export when config has an otel endpoint (else leaves t off).
 * Returns 0, or -1 with a reason in why. */
int tracing_start(struct tracing *t, const struct config *config, char *why, size_t why_size)
    __attribute__((warn_unused_result));

/* Sends what is queued (bounded by otel.timeout_ms) and stops. Call once
 * nothing records spans any more. */
void tracing_stop(struct tracing *t);

/* Logs which otel settings a reload cannot change (all but sample_ratio). */
void tracing_warn_about_restart_settings(const struct config *old, const struct config *new);

#endif
