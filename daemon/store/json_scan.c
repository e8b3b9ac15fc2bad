/* json_scan: a one-pass check of a JSON object that picks out top-level
 * string members without building a tree.
 *
 * Why: Jansson builds every member of an answer (allocations, hashing,
 * byte-by-byte lexing) when a create needs two strings of it; that was a
 * quarter of the event loop's instructions per create. The scan accepts
 * only what Jansson accepts (RFC 8259 plus Jansson's own limits: valid
 * UTF-8 with no surrogates, no \u0000, integers that fit in 64 bits, reals
 * that do not overflow) and gives up, rather than rejects, on anything it
 * is not sure of. tests/fuzz/fuzz_json_scan.c holds it to Jansson. */
#include "store/json_scan.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define JSON_SCAN_MAX_DEPTH 64 /* Jansson allows 2048; deeper is "not sure" */
#define JSON_SCAN_MAX_NUMBER 63 /* bytes of a number token checked here */
#define JSON_SCAN_MAX_INT_DIGITS 18 /* always within int64_t */

struct json_scanner {
	const unsigned char *p, *end;
};

static bool json_scan_value(struct json_scanner *s, int depth);

static void
json_skip_space(struct json_scanner *s)
{
	while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
		s->p++;
}

static bool
json_at(const struct json_scanner *s, unsigned char c)
{
	return s->p < s->end && *s->p == c;
}

static bool
json_is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

/* The length of the UTF-8 sequence at p: 2 to 4, or 0 when it is not one
 * Jansson takes (overlong, a surrogate, past U+10FFFF, cut short). */
static size_t
json_utf8_length(const unsigned char *p, const unsigned char *end)
{
	size_t avail = (size_t)(end - p);
	unsigned char c = p[0];

#define CONT(x) (((x)&0xC0) == 0x80)
	if (c >= 0xC2 && c <= 0xDF)
		return avail >= 2 && CONT(p[1]) ? 2 : 0;
	if (c >= 0xE0 && c <= 0xEF) {
		if (avail < 3 || !CONT(p[1]) || !CONT(p[2]))
			return 0;
		if ((c == 0xE0 && p[1] < 0xA0) || (c == 0xED && p[1] > 0x9F))
			return 0;
		return 3;
	}
	if (c >= 0xF0 && c <= 0xF4) {
		if (avail < 4 || !CONT(p[1]) || !CONT(p[2]) || !CONT(p[3]))
			return 0;
		if ((c == 0xF0 && p[1] < 0x90) || (c == 0xF4 && p[1] > 0x8F))
			return 0;
		return 4;
	}
#undef CONT
	return 0;
}

/* Four hex digits at p into *value. */
static bool
json_hex4(const unsigned char *p, const unsigned char *end, unsigned *value)
{
	*value = 0;
	if (end - p < 4)
		return false;
	for (int i = 0; i < 4; i++) {
		unsigned char c = p[i];
		unsigned digit;
		if (json_is_digit(c))
			digit = (unsigned)(c - '0');
		else if (c >= 'a' && c <= 'f')
			digit = (unsigned)(c - 'a' + 10);
		else if (c >= 'A' && c <= 'F')
			digit = (unsigned)(c - 'A' + 10);
		else
			return false;
		*value = *value << 4 | digit;
	}
	return true;
}

/* One escape after its backslash (s->p at the letter); advances past it. */
static bool
json_scan_escape(struct json_scanner *s)
{
	unsigned high, low;

	if (s->p >= s->end)
		return false;
	if (strchr("\"\\/bfnrt", *s->p) != NULL && *s->p != '\0') {
		s->p++;
		return true;
	}
	if (*s->p != 'u' || !json_hex4(s->p + 1, s->end, &high))
		return false;
	s->p += 5;
	if (high == 0 || (high >= 0xDC00 && high <= 0xDFFF))
		return false; /* Jansson refuses \u0000 and a lone low surrogate */
	if (high < 0xD800 || high > 0xDBFF)
		return true;
	/* A high surrogate needs its low half right after it. */
	if (s->end - s->p < 6 || s->p[0] != '\\' || s->p[1] != 'u' || !json_hex4(s->p + 2, s->end, &low) ||
	    low < 0xDC00 || low > 0xDFFF)
		return false;
	s->p += 6;
	return true;
}

/* A string, s->p at its opening quote: its raw bytes in *start and *len,
 * *plain when it has no escapes (then they are its value). */
static bool
json_scan_string(struct json_scanner *s, const unsigned char **start, size_t *len, bool *plain)
{
	*plain = true;
	*start = ++s->p;
	while (s->p < s->end) {
		unsigned char c = *s->p;
		if (c == '"') {
			*len = (size_t)(s->p - *start);
			s->p++;
			return true;
		}
		if (c < 0x20)
			return false;
		if (c == '\\') {
			*plain = false;
			s->p++;
			if (!json_scan_escape(s))
				return false;
		} else if (c < 0x80) {
			s->p++;
		} else {
			size_t n = json_utf8_length(s->p, s->end);
			if (n == 0)
				return false;
			s->p += n;
		}
	}
	return false;
}

static bool
json_skip_string(struct json_scanner *s)
{
	const unsigned char *start;
	size_t len;
	bool plain;

	return json_scan_string(s, &start, &len, &plain);
}

static bool
json_skip_digits(struct json_scanner *s)
{
	if (s->p >= s->end || !json_is_digit(*s->p))
		return false;
	while (s->p < s->end && json_is_digit(*s->p))
		s->p++;
	return true;
}

/* A number: the grammar, then Jansson's limits (an integer must fit in
 * 64 bits, a real must not overflow). */
static bool
json_scan_number(struct json_scanner *s)
{
	const unsigned char *start = s->p;
	bool is_real = false;
	size_t len, digits;

	if (json_at(s, '-'))
		s->p++;
	if (json_at(s, '0'))
		s->p++;
	else if (!json_skip_digits(s))
		return false;
	if (json_at(s, '.')) {
		is_real = true;
		s->p++;
		if (!json_skip_digits(s))
			return false;
	}
	if (json_at(s, 'e') || json_at(s, 'E')) {
		is_real = true;
		s->p++;
		if (json_at(s, '+') || json_at(s, '-'))
			s->p++;
		if (!json_skip_digits(s))
			return false;
	}
	len = (size_t)(s->p - start);
	if (len > JSON_SCAN_MAX_NUMBER)
		return false;
	if (!is_real) {
		digits = start[0] == '-' ? len - 1 : len;
		return digits <= JSON_SCAN_MAX_INT_DIGITS;
	}
	char copy[JSON_SCAN_MAX_NUMBER + 1];
	memcpy(copy, start, len);
	copy[len] = '\0';
	return !isinf(strtod(copy, NULL));
}

static bool
json_scan_literal(struct json_scanner *s, const char *word, size_t len)
{
	if ((size_t)(s->end - s->p) < len || memcmp(s->p, word, len) != 0)
		return false;
	s->p += len;
	return true;
}

/* The field named by a key's raw bytes, or NULL. */
static struct json_scan_field *
json_find_field(struct json_scan_field *fields, size_t count, const unsigned char *key, size_t len)
{
	for (size_t i = 0; i < count; i++)
		if (strlen(fields[i].name) == len && memcmp(fields[i].name, key, len) == 0)
			return &fields[i];
	return NULL;
}

/* A container's opening bracket: true when it closes at once (empty). */
static bool
json_scan_open(struct json_scanner *s, unsigned char close)
{
	s->p++;
	json_skip_space(s);
	if (!json_at(s, close))
		return false;
	s->p++;
	return true;
}

/* After a member or element: 1 at the container's end, 0 after a comma
 * (the next one follows), -1 for anything else. */
static int
json_scan_next(struct json_scanner *s, unsigned char close)
{
	json_skip_space(s);
	if (json_at(s, close)) {
		s->p++;
		return 1;
	}
	if (!json_at(s, ','))
		return -1;
	s->p++;
	json_skip_space(s);
	return 0;
}

/* An object, s->p at '{'. At depth 1 (the root) it fills fields. */
static bool
json_scan_members(struct json_scanner *s, int depth, struct json_scan_field *fields, size_t count)
{
	int next;

	if (json_scan_open(s, '}'))
		return true;
	for (;;) {
		const unsigned char *key, *value;
		size_t key_len, value_len;
		bool key_plain, value_plain;
		struct json_scan_field *field;

		if (!json_at(s, '"') || !json_scan_string(s, &key, &key_len, &key_plain))
			return false;
		if (depth == 1 && !key_plain && count > 0)
			return false; /* an escaped key might spell a field's name */
		json_skip_space(s);
		if (!json_at(s, ':'))
			return false;
		s->p++;
		json_skip_space(s);
		field = depth == 1 ? json_find_field(fields, count, key, key_len) : NULL;
		if (field != NULL) {
			/* Jansson keeps a member's last value: so does this. */
			field->value = NULL;
			if (json_at(s, '"')) {
				if (!json_scan_string(s, &value, &value_len, &value_plain))
					return false;
				if (value_plain) {
					field->value = (const char *)value;
					field->len = value_len;
				}
			} else if (!json_scan_value(s, depth)) {
				return false;
			}
		} else if (!json_scan_value(s, depth)) {
			return false;
		}
		if ((next = json_scan_next(s, '}')) != 0)
			return next > 0;
	}
}

static bool
json_scan_elements(struct json_scanner *s, int depth)
{
	int next;

	if (json_scan_open(s, ']'))
		return true;
	for (;;) {
		if (!json_scan_value(s, depth))
			return false;
		if ((next = json_scan_next(s, ']')) != 0)
			return next > 0;
	}
}

/* One value inside a container at depth. */
static bool
json_scan_value(struct json_scanner *s, int depth)
{
	if (s->p >= s->end)
		return false;
	switch (*s->p) {
	case '{':
		return depth < JSON_SCAN_MAX_DEPTH && json_scan_members(s, depth + 1, NULL, 0);
	case '[':
		return depth < JSON_SCAN_MAX_DEPTH && json_scan_elements(s, depth + 1);
	case '"':
		return json_skip_string(s);
	case 't':
		return json_scan_literal(s, "true", 4);
	case 'f':
		return json_scan_literal(s, "false", 5);
	case 'n':
		return json_scan_literal(s, "null", 4);
	default:
		return json_scan_number(s);
	}
}

bool
json_scan_object(const char *text, size_t len, struct json_scan_field *fields, size_t count)
{
	struct json_scanner s = { (const unsigned char *)text, (const unsigned char *)text + len };

	for (size_t i = 0; i < count; i++)
		fields[i].value = NULL;
	if (text == NULL)
		return false;
	json_skip_space(&s);
	if (!json_at(&s, '{') || !json_scan_members(&s, 1, fields, count))
		return false;
	json_skip_space(&s);
	if (s.p != s.end)
		return false;
	for (size_t i = 0; i < count; i++)
		if (fields[i].value == NULL)
			return false;
	return true;
}
