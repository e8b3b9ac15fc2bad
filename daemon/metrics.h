/* metrics: counters and histograms, rendered in Prometheus text format. */
#ifndef LLAMACHATD_METRICS_H
#define LLAMACHATD_METRICS_H

#include <stddef.h>

struct chat;
struct evbuffer;
struct relay_engine;
struct server;
struct store;
struct upstream;

#define HISTOGRAM_BUCKETS 14

/* Seconds, in the buckets of histogram_bounds. */
struct histogram {
	unsigned long long counts[HISTOGRAM_BUCKETS + 1]; /* the last one is +Inf */
	unsigned long long count;
	double sum;
};

void histogram_observe(struct histogram *h, double seconds);

struct metrics;

/* What a scrape reads besides the metrics' own counters. */
struct metrics_sources {
	struct chat *chat;
	struct relay_engine *relays;
	struct store *store;
	struct upstream *upstream;
	const unsigned long long *connections_accepted;
	const struct server *server; /* for the connections open now */
	double started; /* monotonic seconds at start */
};

/* Returns NULL when out of memory; free with metrics_free(). */
struct metrics *metrics_create(void) __attribute__((warn_unused_result));
void metrics_free(struct metrics *metrics);
void metrics_set_sources(struct metrics *metrics, const struct metrics_sources *sources);

/* Counts one finished client request. route is a static label. */
void metrics_observe_request(struct metrics *metrics, const char *route, int status, double seconds);

/* Appends every metric, Prometheus text format 0.0.4, to out. */
void metrics_render(struct metrics *metrics, struct evbuffer *out);

#endif
