/* upstream_reply: the answers a client gets when its call could not reach
 * upstream or upstream's transfer failed: the chat layer's, since it knows
 * both the request and the upstream call. */
#ifndef LLAMACHATD_UPSTREAM_REPLY_H
#define LLAMACHATD_UPSTREAM_REPLY_H

#include <stdbool.h>

struct request;
struct upstream_response;

/* 503: the daemon has no API key, with how to give it one. */
void reply_no_key(struct request *req);

/* When a call about project (NULL or "": none) may not go upstream now,
 * answers req and returns true: 503 with Retry-After while the circuit
 * breaker is open; 503 without any key; else 403 naming the project that
 * has no key (nothing sent). False when it may go (half-open: it is then
 * the breaker's probe, and must be forwarded at once). */
struct upstream;
bool reply_unless_ready(struct request *req, struct upstream *upstream, const char *project)
    __attribute__((warn_unused_result));

/* Answers a call whose transfer failed before upstream answered: 504 for a
 * timeout, 502 otherwise, with a detail that never holds the key. When
 * upstream may have acted on the request (may_have_acted), the answer says
 * not to retry: the SDKs send no idempotency key, so a retried create or
 * stream would happen twice. */
void reply_upstream_failure(struct request *req, const struct upstream_response *response, bool may_have_acted);

#endif
