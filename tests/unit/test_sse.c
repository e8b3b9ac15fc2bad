/* Unit: the event-stream parser: any split point, CRLF, comments, multi-line
 * data, and the size limit. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "chat/sse.h"

/* What the callback saw, as "name=data|" records. */
struct seen {
	char text[4096];
	int count;
};

static void
record(const char *event, const char *data, size_t data_len, void *arg)
{
	struct seen *s = arg;
	size_t used = strlen(s->text);

	snprintf(s->text + used, sizeof(s->text) - used, "%s=%.*s|", event, (int)data_len, data);
	s->count++;
}

static const char sample[] = ": keep-alive\n"
                             "event: delta\n"
                             "data: {\"type\":\"text_delta\",\"content\":\"Hel\"}\n"
                             "\n"
                             "event: delta\r\n"
                             "data: {\"type\":\"text_delta\",\"content\":\"lo\"}\r\n"
                             "\r\n"
                             "event: message\r"
                             "data: first line\r"
                             "data: second line\r"
                             "\r"
                             "data:no space\n"
                             "id: 7\n"
                             "retry: 100\n"
                             "\n"
                             "event: message\n"
                             "data: {\"type\":\"stop\",\"usage\":{\"turns\":1}}\n"
                             "\n";

static const char expected[] = "delta={\"type\":\"text_delta\",\"content\":\"Hel\"}|"
                               "delta={\"type\":\"text_delta\",\"content\":\"lo\"}|"
                               "message=first line\nsecond line|"
                               "message=no space|"
                               "message={\"type\":\"stop\",\"usage\":{\"turns\":1}}|";

static void
test_whole_stream(void **state)
{
	struct sse_parser *p = sse_parser_new(1024);
	struct seen s = { "", 0 };

	(void)state;
	assert_int_equal(sse_parser_feed(p, sample, strlen(sample), record, &s), 0);
	assert_string_equal(s.text, expected);
	assert_int_equal(s.count, 5);
	sse_parser_free(p);
}

static void
test_every_split_point_gives_the_same_events(void **state)
{
	size_t len = strlen(sample);

	(void)state;
	for (size_t cut = 0; cut <= len; cut++) {
		struct sse_parser *p = sse_parser_new(1024);
		struct seen s = { "", 0 };
		assert_int_equal(sse_parser_feed(p, sample, cut, record, &s), 0);
		assert_int_equal(sse_parser_feed(p, sample + cut, len - cut, record, &s), 0);
		assert_string_equal(s.text, expected);
		sse_parser_free(p);
	}
}

static void
test_byte_by_byte(void **state)
{
	struct sse_parser *p = sse_parser_new(1024);
	struct seen s = { "", 0 };

	(void)state;
	for (size_t i = 0; i < strlen(sample); i++)
		assert_int_equal(sse_parser_feed(p, sample + i, 1, record, &s), 0);
	assert_string_equal(s.text, expected);
	sse_parser_free(p);
}

static void
test_incomplete_event_is_not_dispatched(void **state)
{
	struct sse_parser *p = sse_parser_new(1024);
	struct seen s = { "", 0 };

	(void)state;
	assert_int_equal(sse_parser_feed(p, "event: x\ndata: 1\n", 17, record, &s), 0);
	assert_int_equal(s.count, 0);
	assert_int_equal(sse_parser_feed(p, "\n", 1, record, &s), 0);
	assert_string_equal(s.text, "x=1|");
	sse_parser_free(p);
}

static void
test_oversize_line_is_rejected(void **state)
{
	struct sse_parser *p = sse_parser_new(16);
	struct seen s = { "", 0 };
	const char *longline = "data: 0123456789abcdefghij\n\n";

	(void)state;
	assert_int_equal(sse_parser_feed(p, "data: ok\n\n", 10, record, &s), 0);
	assert_int_equal(sse_parser_feed(p, longline, strlen(longline), record, &s), -1);
	/* Failed for good: later input is ignored. */
	assert_int_equal(sse_parser_feed(p, "data: ok\n\n", 10, record, &s), -1);
	assert_string_equal(s.text, "message=ok|");
	sse_parser_free(p);
}

static void
test_oversize_event_is_rejected(void **state)
{
	struct sse_parser *p = sse_parser_new(16);
	struct seen s = { "", 0 };
	const char *many = "data: 12345678\ndata: 12345678\n\n";

	(void)state;
	assert_int_equal(sse_parser_feed(p, many, strlen(many), record, &s), -1);
	assert_int_equal(s.count, 0);
	sse_parser_free(p);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_whole_stream),
		cmocka_unit_test(test_every_split_point_gives_the_same_events),
		cmocka_unit_test(test_byte_by_byte),
		cmocka_unit_test(test_incomplete_event_is_not_dispatched),
		cmocka_unit_test(test_oversize_line_is_rejected),
		cmocka_unit_test(test_oversize_event_is_rejected),
	};
	return cmocka_run_group_tests_name("unit: sse", tests, NULL, NULL);
}
