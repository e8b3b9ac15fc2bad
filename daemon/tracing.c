/* tracing: starts and stops the OTLP span export. */
#include "tracing.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "base/config.h"
#include "base/log.h"
#include "base/trace.h"
#include "upstream/span_export.h"

#define TRACING_BATCH_MAX 512

int
tracing_start(struct tracing *t, const struct config *config, char *why, size_t why_size)
{
	char host[256];

	t->queue = NULL;
	t->exporter = NULL;
	if (config->otel_endpoint == NULL)
		return 0;
	if (gethostname(host, sizeof(host)) != 0)
		host[0] = '\0';
	host[sizeof(host) - 1] = '\0';
	struct span_export_settings settings = {
		.endpoint = config->otel_endpoint,
		.service_name = config->otel_service_name,
		.service_instance = host[0] != '\0' ? host : NULL,
		.interval_ms = config->otel_export_interval_ms,
		.timeout_ms = config->otel_timeout_ms,
		.batch_max = (size_t)config->otel_max_queued_spans < TRACING_BATCH_MAX
		    ? (size_t)config->otel_max_queued_spans
		    : TRACING_BATCH_MAX,
	};
	if ((t->queue = span_queue_create((size_t)config->otel_max_queued_spans)) == NULL) {
		snprintf(why, why_size, "otel: out of memory for %ld queued spans", config->otel_max_queued_spans);
		return -1;
	}
	if ((t->exporter = span_exporter_start(t->queue, &settings, why, why_size)) == NULL) {
		span_queue_free(t->queue);
		t->queue = NULL;
		return -1;
	}
	log_info(
	    "otel: exporting spans to %s, sampling %g of new traces", config->otel_endpoint, config->otel_sample_ratio);
	return 0;
}

void
tracing_stop(struct tracing *t)
{
	span_exporter_stop(t->exporter);
	span_queue_free(t->queue);
	t->exporter = NULL;
	t->queue = NULL;
}

/* Two optional strings are the same. */
static bool
tracing_same(const char *a, const char *b)
{
	return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

void
tracing_warn_about_restart_settings(const struct config *old, const struct config *new)
{
	if (!tracing_same(old->otel_endpoint, new->otel_endpoint) ||
	    !tracing_same(old->otel_service_name, new->otel_service_name) ||
	    old->otel_max_queued_spans != new->otel_max_queued_spans ||
	    old->otel_export_interval_ms != new->otel_export_interval_ms ||
	    old->otel_timeout_ms != new->otel_timeout_ms)
		log_warnx(
		    "reload: otel settings other than sample_ratio changed; they take effect at the next restart");
}
