/* sse: an incremental parser for text/event-stream (Server-Sent Events).
 *
 * Lines end in LF, CRLF or CR; a CRLF split across two feeds still counts as
 * one line end. Lines starting with ':' are comments; a blank line ends an
 * event. Only the "event" and "data" fields matter to the daemon. */
#include "chat/sse.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define SSE_FIRST_BYTES 256 /* buffers start here and grow, up to max_bytes */

struct sse_parser {
	size_t max_bytes;
	size_t line_cap, data_cap; /* bytes allocated, not counting the NUL */
	bool failed;
	bool after_cr; /* the last byte seen was a CR: a following LF is part of it */
	char *line; /* the line being read, max_bytes long at most */
	size_t line_len;
	char event[64];
	char *data; /* data lines of the event being read, joined with '\n' */
	size_t data_len;
	bool has_data;
};

struct sse_parser *
sse_parser_new(size_t max_bytes)
{
	struct sse_parser *p = calloc(1, sizeof(*p));

	if (p == NULL)
		return NULL;
	p->max_bytes = max_bytes;
	/* Small at first: a stream's events are short, and thousands of
	 * streams may be open; a long event grows them, never past max_bytes. */
	p->line_cap = p->data_cap = max_bytes < SSE_FIRST_BYTES ? max_bytes : SSE_FIRST_BYTES;
	p->line = malloc(p->line_cap + 1);
	p->data = malloc(p->data_cap + 1);
	if (p->line == NULL || p->data == NULL) {
		sse_parser_free(p);
		return NULL;
	}
	return p;
}

void
sse_parser_free(struct sse_parser *p)
{
	if (p == NULL)
		return;
	free(p->line);
	free(p->data);
	free(p);
}

/* Makes room for need bytes (plus a NUL) in *buf of *cap; false when out of
 * memory. The caller has checked need against max_bytes. */
static bool
sse_reserve(char **buf, size_t *cap, size_t need, size_t max)
{
	size_t grown = *cap;
	char *bigger;

	if (need <= *cap)
		return true;
	while (grown < need)
		grown = grown * 2 < max ? grown * 2 : max;
	if ((bigger = realloc(*buf, grown + 1)) == NULL)
		return false;
	*buf = bigger;
	*cap = grown;
	return true;
}

static void
sse_dispatch(struct sse_parser *p, sse_event_cb cb, void *arg)
{
	if (p->has_data) {
		p->data[p->data_len] = '\0';
		cb(p->event[0] != '\0' ? p->event : "message", p->data, p->data_len, arg);
	}
	p->event[0] = '\0';
	p->data_len = 0;
	p->has_data = false;
}

/* Handles one complete line (without its line end). Returns -1 when the
 * event's data would pass the limit. */
static int
sse_take_line(struct sse_parser *p, sse_event_cb cb, void *arg)
{
	const char *line = p->line, *value;
	size_t len = p->line_len, name_len, value_len;

	if (len == 0) {
		sse_dispatch(p, cb, arg);
		return 0;
	}
	if (line[0] == ':')
		return 0;
	value = memchr(line, ':', len);
	name_len = value != NULL ? (size_t)(value - line) : len;
	if (value != NULL) {
		value++;
		if (value < line + len && *value == ' ')
			value++;
		value_len = len - (size_t)(value - line);
	} else {
		value = line + len;
		value_len = 0;
	}
	if (name_len == 4 && memcmp(line, "data", 4) == 0) {
		size_t needed = p->data_len + (p->has_data ? 1 : 0) + value_len;
		if (needed > p->max_bytes || !sse_reserve(&p->data, &p->data_cap, needed, p->max_bytes))
			return -1;
		if (p->has_data)
			p->data[p->data_len++] = '\n';
		memcpy(p->data + p->data_len, value, value_len);
		p->data_len += value_len;
		p->has_data = true;
	} else if (name_len == 5 && memcmp(line, "event", 5) == 0) {
		size_t copy = value_len < sizeof(p->event) - 1 ? value_len : sizeof(p->event) - 1;
		memcpy(p->event, value, copy);
		p->event[copy] = '\0';
	}
	/* "id", "retry" and unknown fields do not matter here. */
	return 0;
}

int
sse_parser_feed(struct sse_parser *p, const char *data, size_t len, sse_event_cb cb, void *arg)
{
	for (size_t i = 0; i < len && !p->failed; i++) {
		char ch = data[i];
		if (ch == '\n' && p->after_cr) {
			p->after_cr = false;
			continue;
		}
		p->after_cr = ch == '\r';
		if (ch == '\n' || ch == '\r') {
			if (sse_take_line(p, cb, arg) != 0)
				p->failed = true;
			p->line_len = 0;
			continue;
		}
		if (p->line_len >= p->max_bytes ||
		    !sse_reserve(&p->line, &p->line_cap, p->line_len + 1, p->max_bytes)) {
			p->failed = true;
			break;
		}
		p->line[p->line_len++] = ch;
	}
	return p->failed ? -1 : 0;
}
