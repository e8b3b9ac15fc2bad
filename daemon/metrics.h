/* metrics: the renderer of /metrics, at the top: it reads every module's
 * counters and writes them in Prometheus text format. No module includes
 * this header but main, which hands the renderer to the server. */
#ifndef LLAMACHATD_METRICS_H
#define LLAMACHATD_METRICS_H

#include <stddef.h>

struct budgets;
struct chat;
struct evbuffer;
struct janitor;
struct relay_engine;
struct request_counters;
struct server;
struct shared;
struct span_queue;
struct store;
struct upstream;

/* What a scrape reads: every module's counters. */
struct metrics_sources {
	const struct request_counters *requests;
	struct chat *chat;
	struct relay_engine *relays;
	struct store *store;
	const struct janitor *janitor;
	const struct budgets *budgets; /* may be NULL */
	struct upstream *upstream;
	const struct server *server; /* connections open and accepted */
	struct config *const *config; /* the config in force (a reload swaps it) */
	struct span_queue *spans; /* NULL: otel is off */
	const struct shared *shared; /* NULL: no shared state */
	const long *instances; /* live instances sharing it; NULL with shared */
	double started; /* monotonic seconds at start */
};

/* Appends every metric, Prometheus text format 0.0.4, to out. */
void metrics_render(const struct metrics_sources *sources, struct evbuffer *out);

#endif
