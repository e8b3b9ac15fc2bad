/* counters: the plain numbers modules bump as they work. */
#include "base/counters.h"

#include <string.h>

const double histogram_bounds[HISTOGRAM_BUCKETS] = { 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
	0.1, 0.25, 0.5, 1, 2.5, 10, 60 };

void
histogram_observe(struct histogram *h, double seconds)
{
	size_t i = 0;

	while (i < HISTOGRAM_BUCKETS && seconds > histogram_bounds[i])
		i++;
	h->counts[i]++;
	h->count++;
	h->sum += seconds;
}

void
counters_observe_request(struct request_counters *c, const char *route, int status, double seconds)
{
	if (c == NULL)
		return;
	histogram_observe(&c->seconds, seconds);
	for (size_t i = 0; i < c->series_count; i++) {
		if (c->series[i].status == status && strcmp(c->series[i].route, route) == 0) {
			c->series[i].count++;
			return;
		}
	}
	/* Routes are a fixed set and statuses few, so the table stays small;
	 * a bound all the same. */
	if (c->series_count == COUNTERS_MAX_REQUEST_SERIES) {
		c->series_dropped++;
		return;
	}
	c->series[c->series_count++] = (struct request_series){ route, status, 1 };
}
