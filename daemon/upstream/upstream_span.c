/* upstream_span: each upstream call's client span (OpenTelemetry's HTTP
 * client conventions, and GenAI's for the chat resource), and the
 * traceparent that makes it upstream's parent. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "upstream/upstream_private.h"

void
upstream_set_spans(struct upstream *upstream, struct span_queue *spans)
{
	upstream->spans = spans;
}

int
upstream_span_begin(struct upstream_call *call, const struct upstream_request *req)
{
	const struct request_trace *t = req->trace;
	struct upstream_call_span *span;
	char span_id[TRACE_SPAN_ID_HEX + 1];

	call->traceparent[0] = '\0';
	if (t == NULL || t->trace_id[0] == '\0')
		return 0;
	trace_new_id(span_id, TRACE_SPAN_ID_HEX);
	snprintf(call->traceparent, sizeof(call->traceparent), "00-%.32s-%.16s-%s", t->trace_id, span_id,
	    t->sampled ? "01" : "00");
	if (!t->sampled || call->upstream->spans == NULL)
		return 0;
	if ((span = calloc(1, sizeof(*span))) == NULL)
		return -1;
	snprintf(span->trace_id, sizeof(span->trace_id), "%s", t->trace_id);
	memcpy(span->span_id, span_id, sizeof(span->span_id));
	memcpy(span->parent_id, t->span_id, sizeof(span->parent_id));
	span->start_unix_ns = clock_unix_ns_of_monotonic(call->started_at);
	snprintf(span->method, sizeof(span->method), "%s", req->method);
	/* The path without its query: a page token is nobody's business. */
	snprintf(span->path, sizeof(span->path), "%.*s", (int)strcspn(req->path_and_query, "?"), req->path_and_query);
	span->attempt = req->attempt > 0 ? req->attempt : 1;
	span->chat = t->chat;
	memcpy(span->conversation_id, t->session_id, sizeof(span->conversation_id));
	snprintf(span->enduser, sizeof(span->enduser), "%s", strcmp(t->client, "-") != 0 ? t->client : "");
	span->input_tokens = span->output_tokens = -1;
	call->span = span;
	return 0;
}

void
upstream_note_usage(struct upstream_call *call, long long input_tokens, long long output_tokens)
{
	if (call != NULL && call->span != NULL) {
		call->span->input_tokens = input_tokens;
		call->span->output_tokens = output_tokens;
	}
}

void
upstream_span_end(struct upstream_call *call, long status, const char *error)
{
	struct upstream_call_span *c = call->span;
	struct upstream *upstream = call->upstream;
	struct span span;

	if (c == NULL)
		return;
	call->span = NULL;
	if (upstream->spans != NULL) {
		span.attr_count = 0;
		span.text_used = 0;
		memcpy(span.trace_id, c->trace_id, sizeof(span.trace_id));
		memcpy(span.span_id, c->span_id, sizeof(span.span_id));
		memcpy(span.parent_id, c->parent_id, sizeof(span.parent_id));
		span.kind = SPAN_KIND_CLIENT;
		span.start_unix_ns = c->start_unix_ns;
		span.end_unix_ns = clock_unix_ns_of_monotonic(clock_monotonic_s());
		span.error = error != NULL || status >= 500;
		snprintf(span.name, sizeof(span.name), "%s", c->method);
		span_add_string(&span, "http.request.method", c->method);
		span_add_string(&span, "server.address", upstream->host);
		span_add_int(&span, "server.port", upstream->port);
		span_add_string(&span, "url.path", c->path);
		if (error == NULL)
			span_add_int(&span, "http.response.status_code", status);
		if (c->attempt > 1)
			span_add_int(&span, "http.request.resend_count", c->attempt - 1);
		span_add_int(&span, "llamachatd.attempt", c->attempt);
		if (error != NULL) {
			span_add_string(&span, "error.type", error);
		} else if (status >= 500) {
			char text[12];
			snprintf(text, sizeof(text), "%ld", status % 1000);
			span_add_string(&span, "error.type", text);
		}
		if (c->enduser[0] != '\0')
			span_add_string(&span, "enduser.id", c->enduser);
		if (c->chat) {
			span_add_string(&span, "gen_ai.operation.name", "chat");
			if (c->conversation_id[0] != '\0')
				span_add_string(&span, "gen_ai.conversation.id", c->conversation_id);
			if (c->input_tokens >= 0)
				span_add_int(&span, "gen_ai.usage.input_tokens", c->input_tokens);
			if (c->output_tokens >= 0)
				span_add_int(&span, "gen_ai.usage.output_tokens", c->output_tokens);
		}
		span_queue_push(upstream->spans, &span);
	}
	free(c);
}
