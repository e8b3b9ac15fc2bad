/* sharing: what the top wires between the gate's budgets and the state
 * shared through Redis (shared/shared.h): each client's running totals of
 * the day are written to Redis when they change and every second (which
 * also republishes them after Redis lost its data), and the other
 * instances' totals come back with each write, for the budgets to count.
 * A call never waits on it: a check counts the last known sums plus this
 * instance's own use since. Every second it also says this instance is
 * live and learns how many are, for the rate limits; and when Redis comes
 * back after being away, or did not know this instance (it lost its data),
 * it has the chat republish every owner record it holds. */
#ifndef LLAMACHATD_SHARING_H
#define LLAMACHATD_SHARING_H

#include <stdbool.h>

struct budgets;
struct chat;
struct event_base;
struct shared;
struct sharing;

/* Starts it; NULL when out of memory. With refuse_when_unavailable, every
 * client with a budget is refused (429) while Redis cannot answer. shared and budgets must outlive
 * it; free it after shared_free() (whose last answers it still takes). */
struct sharing *sharing_create(struct event_base *base, struct shared *shared, struct budgets *budgets,
    struct chat *chat, bool refuse_when_unavailable) __attribute__((warn_unused_result));
void sharing_free(struct sharing *sharing);

/* The instances live, last known (1 until Redis said; the last count while
 * it cannot say): each takes that part of every client's rate limit. The
 * pointer lives as long as sharing. */
const long *sharing_instances(const struct sharing *sharing);

#endif
