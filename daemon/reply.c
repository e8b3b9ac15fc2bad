/* reply: the daemon's own HTTP answers, JSON errors with a "detail" in FastAPI style. */
#include "reply.h"

#include <event2/buffer.h>
#include <event2/http.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void
reply_error(struct evhttp_request *req, int status, enum reply_retry retry, const char *detail)
{
	struct evkeyvalq *headers = evhttp_request_get_output_headers(req);
	struct evbuffer *body = evbuffer_new();
	json_t *doc = json_pack("{s:s}", "detail", detail);
	char *text = doc != NULL ? json_dumps(doc, JSON_COMPACT) : NULL;

	evhttp_remove_header(headers, "Content-Type");
	evhttp_add_header(headers, "Content-Type", "application/json");
	if (retry == REPLY_RETRY_WONT_HELP)
		evhttp_add_header(headers, "x-should-retry", "false");
	if (body != NULL) {
		if (text != NULL)
			evbuffer_add(body, text, strlen(text));
		else
			evbuffer_add_printf(body, "{\"detail\":\"error %d\"}", status);
	}
	evhttp_send_reply(req, status, NULL, body);
	if (body != NULL)
		evbuffer_free(body);
	free(text);
	json_decref(doc);
}

void
reply_errorf(struct evhttp_request *req, int status, enum reply_retry retry, const char *fmt, ...)
{
	char detail[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(detail, sizeof(detail), fmt, ap);
	va_end(ap);
	reply_error(req, status, retry, detail);
}
