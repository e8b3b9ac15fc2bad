/* Fuzz target: the event-stream parser, fed the input split at a point the
 * input itself chooses, and each event's usage read as the stream relay
 * reads a stop event. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "store/session.h"
#include "chat/sse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
on_event(const char *event, const char *text, size_t len, void *arg)
{
	unsigned long long add[SESSION_LEDGER_FIELD_COUNT];

	(void)event;
	(void)arg;
	(void)session_stop_usage(text, len, add);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sse_parser *parser = sse_parser_new(4096);
	size_t split = size > 0 ? data[0] % (size + 1) : 0;

	if (parser == NULL)
		abort();
	if (sse_parser_feed(parser, (const char *)data, split, on_event, NULL) == 0)
		(void)sse_parser_feed(parser, (const char *)data + split, size - split, on_event, NULL);
	sse_parser_free(parser);
	return 0;
}
