/* reply: the daemon's own HTTP answers, JSON errors with a "detail" in FastAPI style. */
#ifndef LLAMACHATD_REPLY_H
#define LLAMACHATD_REPLY_H

#include <stdbool.h>

struct request;
struct upstream_response;

enum reply_retry {
	REPLY_RETRY_MAY_HELP, /* no x-should-retry header: the SDK decides */
	REPLY_RETRY_WONT_HELP, /* x-should-retry: false */
};

/* Sends status with body {"detail": detail} as application/json. */
void reply_error(struct request *req, int status, enum reply_retry retry, const char *detail);

/* Like reply_error() with a printf-style detail. */
void reply_errorf(struct request *req, int status, enum reply_retry retry, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* 503: the daemon has no API key, with how to give it one. */
void reply_no_key(struct request *req);

/* Answers a call whose transfer failed before upstream answered: 504 for a
 * timeout, 502 otherwise, with a detail that never holds the key. When
 * upstream may have acted on the request (may_have_acted), the answer says
 * not to retry: the SDKs send no idempotency key, so a retried create or
 * stream would happen twice. */
void reply_upstream_failure(struct request *req, const struct upstream_response *response, bool may_have_acted);

#endif
