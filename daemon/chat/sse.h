/* sse: an incremental parser for text/event-stream (Server-Sent Events). */
#ifndef LLAMACHATD_SSE_H
#define LLAMACHATD_SSE_H

#include <stddef.h>

struct sse_parser;

/* One complete event: its "event:" name ("message" when none was given) and
 * its data lines joined with '\n'. Both are valid only during the callback. */
typedef void (*sse_event_cb)(const char *event, const char *data, size_t data_len, void *arg);

/* Creates a parser that refuses lines, and events, longer than max_bytes.
 * Returns NULL when out of memory; free with sse_parser_free(). */
struct sse_parser *sse_parser_new(size_t max_bytes) __attribute__((warn_unused_result));
void sse_parser_free(struct sse_parser *parser);

/* Feeds the next bytes of the stream, split anywhere; calls cb for every
 * event the bytes complete. Returns 0, or -1 once a line or event passed the
 * limit (the parser then stays failed and ignores further input). */
int sse_parser_feed(struct sse_parser *parser, const char *data, size_t len, sse_event_cb cb, void *arg)
    __attribute__((warn_unused_result));

#endif
