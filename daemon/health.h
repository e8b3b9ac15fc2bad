/* health: GET /healthz, the daemon's own liveness and readiness answer. */
#ifndef LLAMACHATD_HEALTH_H
#define LLAMACHATD_HEALTH_H

#include <stdbool.h>

struct request;
struct shared;
struct store;
struct upstream;

/* Answers 200 with a JSON summary (store writable, upstream's last answer
 * and failure, uptime), or 503 when the store cannot be written. Cheap: the
 * store is probed at most once per second. started is the monotonic time of
 * the start, in seconds. */
/* The store's session count is shown only when show_counts; the state of
 * Redis, the outbox and the stream when shared is not NULL (chat then
 * holds them). */
struct chat;
void health_reply(struct request *req, struct store *store, const struct upstream *upstream,
    const struct shared *shared, struct chat *chat, double started, bool show_counts);

#endif
