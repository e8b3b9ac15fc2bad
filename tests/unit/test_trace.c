/* Unit: trace ids, spans as plain data, the span queue's bound, and the
 * OTLP/HTTP JSON the exporter sends. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/trace.h"
#include "upstream/span_export.h"

/* The value at a dotted path of members and array indexes, or NULL. */
static json_t *
dig(json_t *v, const char *path)
{
	char part[64];

	while (v != NULL && *path != '\0') {
		size_t len = strcspn(path, ".");
		snprintf(part, sizeof(part), "%.*s", (int)len, path);
		v = json_is_array(v) ? json_array_get(v, strtoul(part, NULL, 10)) : json_object_get(v, part);
		path += len + (path[len] == '.');
	}
	return v;
}

static void
test_ids_are_hex_and_differ(void **state)
{
	char a[33], b[33];

	(void)state;
	trace_new_id(a, 32);
	trace_new_id(b, 32);
	assert_int_equal(strlen(a), 32);
	assert_int_equal(strspn(a, "0123456789abcdef"), 32);
	assert_string_not_equal(a, b);
	trace_new_id(a, 16);
	assert_int_equal(strlen(a), 16);
	assert_true(trace_sample(1.0));
	assert_false(trace_sample(0.0));
}

/* Attributes that do not fit are left out whole, never cut short. */
static void
test_attributes_that_do_not_fit_are_left_out(void **state)
{
	struct span s = { 0 };
	char big[SPAN_TEXT_MAX];

	(void)state;
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	span_add_string(&s, "a", "short");
	span_add_string(&s, "b", big); /* one byte too many now */
	assert_int_equal(s.attr_count, 1);
	for (int i = 0; i < SPAN_ATTRS_MAX + 5; i++)
		span_add_int(&s, "n", i);
	assert_int_equal(s.attr_count, SPAN_ATTRS_MAX);
	assert_int_equal(s.attrs[0].len, 5);
	assert_memory_equal(span_attr_text(&s, &s.attrs[0]), "short", 5);
}

struct collected {
	char names[8][64];
	size_t n;
};

static void
collect(const struct span *s, void *arg)
{
	struct collected *c = arg;

	snprintf(c->names[c->n++], sizeof(c->names[0]), "%s", s->name);
}

/* A full queue drops, and counts what it dropped; takes come out in order. */
static void
test_a_full_queue_drops_and_counts(void **state)
{
	struct span_queue *q = span_queue_create(4);
	struct span s = { 0 };
	struct collected got = { 0 };

	(void)state;
	assert_non_null(q);
	for (int i = 0; i < 6; i++) {
		snprintf(s.name, sizeof(s.name), "span-%d", i);
		assert_true(span_queue_push(q, &s) == (i < 4));
	}
	assert_int_equal(span_queue_dropped(q), 2);
	assert_int_equal(span_queue_length(q), 4);
	/* Fewer than wanted: the drain gives what there is after its wait. */
	assert_int_equal(span_queue_drain(q, 3, 8, 10, collect, &got), 3);
	assert_int_equal(span_queue_drain(q, 3, 8, 10, collect, &got), 1);
	assert_int_equal(got.n, 4);
	assert_string_equal(got.names[0], "span-0");
	assert_string_equal(got.names[3], "span-3");
	assert_int_equal(span_queue_length(q), 0);
	/* Room again, and the ring wraps. */
	assert_true(span_queue_push(q, &s));
	assert_int_equal(span_queue_drain(q, 8, 1, 10, collect, &got), 1);
	assert_string_equal(got.names[4], "span-5");
	/* A closed queue never waits. */
	span_queue_close(q);
	assert_int_equal(span_queue_drain(q, 8, 8, 60000, collect, &got), 0);
	span_queue_free(q);
}

/* The body is OTLP/HTTP JSON: hex ids, integers as strings, the resource's
 * service name; a value that is not UTF-8 is left out, not sent broken. */
static void
test_the_export_body_is_otlp_json(void **state)
{
	struct span spans[2] = { 0 };
	struct span_export_settings settings = { .service_name = "gw-a", .service_instance = "host-1" };
	json_t *doc, *span, *attrs;
	char *text;

	(void)state;
	snprintf(spans[0].trace_id, sizeof(spans[0].trace_id), "%s", "4bf92f3577b34da6a3ce929d0e0e4736");
	snprintf(spans[0].span_id, sizeof(spans[0].span_id), "%s", "00f067aa0ba902b7");
	snprintf(spans[0].name, sizeof(spans[0].name), "%s", "GET /api/v1/chat");
	spans[0].kind = SPAN_KIND_SERVER;
	spans[0].start_unix_ns = 1700000000000000000LL;
	spans[0].end_unix_ns = 1700000000000000123LL;
	spans[0].error = true;
	span_add_string(&spans[0], "http.request.method", "GET");
	span_add_int(&spans[0], "http.response.status_code", 503);
	span_add_string(&spans[0], "bad", "\xff\xfe");
	span_add_string(&spans[0], "quoted", "a\"b\\c\x01d\xc3\xa9");
	spans[1] = spans[0];
	snprintf(spans[1].parent_id, sizeof(spans[1].parent_id), "%s", "00f067aa0ba902b7");
	text = span_export_encode(&settings, spans, 2);
	assert_non_null(text);
	doc = json_loads(text, 0, NULL);
	assert_non_null(doc);
	assert_string_equal(
	    json_string_value(dig(doc, "resourceSpans.0.resource.attributes.0.value.stringValue")), "gw-a");
	span = dig(doc, "resourceSpans.0.scopeSpans.0.spans.0");
	assert_string_equal(json_string_value(json_object_get(span, "traceId")), "4bf92f3577b34da6a3ce929d0e0e4736");
	assert_string_equal(json_string_value(json_object_get(span, "startTimeUnixNano")), "1700000000000000000");
	assert_int_equal(json_integer_value(json_object_get(span, "kind")), 2);
	assert_int_equal(json_integer_value(json_object_get(json_object_get(span, "status"), "code")), 2);
	assert_null(json_object_get(span, "parentSpanId"));
	attrs = json_object_get(span, "attributes");
	assert_int_equal(json_array_size(attrs), 3); /* "bad" left out */
	assert_string_equal(json_string_value(dig(attrs, "2.value.stringValue")), "a\"b\\c\x01d\xc3\xa9");
	assert_string_equal(
	    json_string_value(json_object_get(json_object_get(json_array_get(attrs, 1), "value"), "intValue")), "503");
	assert_null(strstr(text, "bad"));
	assert_string_equal(
	    json_string_value(dig(json_array_get(dig(doc, "resourceSpans.0.scopeSpans.0.spans"), 1), "parentSpanId")),
	    "00f067aa0ba902b7");
	free(text);
	json_decref(doc);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ids_are_hex_and_differ),
		cmocka_unit_test(test_attributes_that_do_not_fit_are_left_out),
		cmocka_unit_test(test_a_full_queue_drops_and_counts),
		cmocka_unit_test(test_the_export_body_is_otlp_json),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
