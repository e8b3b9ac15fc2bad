/* reply: the daemon's own HTTP answers, JSON errors with a "detail" in FastAPI style. */
#ifndef LLAMACHATD_REPLY_H
#define LLAMACHATD_REPLY_H

struct request;

enum reply_retry {
	REPLY_RETRY_MAY_HELP, /* no x-should-retry header: the SDK decides */
	REPLY_RETRY_WONT_HELP, /* x-should-retry: false */
};

/* Sends status with body {"detail": detail} as application/json. */
void reply_error(struct request *req, int status, enum reply_retry retry, const char *detail);

/* Like reply_error() with a printf-style detail. */
void reply_errorf(struct request *req, int status, enum reply_retry retry, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
