/* reply: the daemon's own HTTP answers, JSON errors with a "detail" in FastAPI style. */
#include "http/reply.h"

#include "base/log.h"
#include "http/request.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void
reply_error(struct request *req, int status, enum reply_retry retry, const char *detail)
{
	json_t *doc = json_pack("{s:s}", "detail", detail);
	char *text = doc != NULL ? json_dumps(doc, JSON_COMPACT) : NULL;
	char fallback[64];

	request_add_header(req, "Content-Type", "application/json");
	if (retry == REPLY_RETRY_WONT_HELP)
		request_add_header(req, "x-should-retry", "false");
	if (text == NULL) {
		snprintf(fallback, sizeof(fallback), "{\"detail\":\"error %d\"}", status);
		request_reply(req, status, fallback, strlen(fallback));
	} else {
		request_reply(req, status, text, strlen(text));
	}
	free(text);
	json_decref(doc);
}

void
reply_errorf(struct request *req, int status, enum reply_retry retry, const char *fmt, ...)
{
	char detail[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(detail, sizeof(detail), fmt, ap);
	va_end(ap);
	reply_error(req, status, retry, detail);
}
