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

/* When a call about project (NULL or "": none) has no key to go with,
 * answers req (503 without any key; else 403 naming the project, nothing
 * sent) and returns true; false when it has one. */
struct upstream;
bool reply_unless_key(struct request *req, const struct upstream *upstream, const char *project)
    __attribute__((warn_unused_result));

/* Answers a call whose transfer failed before upstream answered: 504 for a
 * timeout, 502 otherwise, with a detail that never holds the key. When
 * upstream may have acted on the request (may_have_acted), the answer says
 * not to retry: the SDKs send no idempotency key, so a retried create or
 * stream would happen twice. */
void reply_upstream_failure(struct request *req, const struct upstream_response *response, bool may_have_acted);

#endif
