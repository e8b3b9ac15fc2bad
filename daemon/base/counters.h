/* counters: the plain numbers modules bump as they work (histograms, the
 * per-route request counts). A leaf: it knows no other module. The
 * renderer (metrics) sits on top and reads them; nothing below it includes
 * metrics.h. */
#ifndef LLAMACHATD_COUNTERS_H
#define LLAMACHATD_COUNTERS_H

#include <stddef.h>

#define HISTOGRAM_BUCKETS 16
#define COUNTERS_MAX_REQUEST_SERIES 256

/* The upper bounds, in seconds, of the histogram buckets. */
extern const double histogram_bounds[HISTOGRAM_BUCKETS];

struct histogram {
	unsigned long long counts[HISTOGRAM_BUCKETS + 1]; /* the last one is +Inf */
	unsigned long long count;
	double sum;
};

void histogram_observe(struct histogram *h, double seconds);

struct request_series {
	const char *route; /* a static label */
	int status;
	unsigned long long count;
};

/* Finished client requests, by route and status, and their durations. */
struct request_counters {
	struct request_series series[COUNTERS_MAX_REQUEST_SERIES];
	size_t series_count;
	unsigned long long series_dropped;
	struct histogram seconds;
};

/* Counts one finished client request. route is a static label. */
void counters_observe_request(struct request_counters *c, const char *route, int status, double seconds);

#endif
