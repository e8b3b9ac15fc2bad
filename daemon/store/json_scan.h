/* json_scan: a one-pass check of a JSON object that picks out top-level
 * string members without building a tree, for the hot path of upstream
 * answers (a Session on every create). Jansson stays the authority: the
 * scan says "certainly valid" or "not sure", never "invalid". */
#ifndef LLAMACHATD_JSON_SCAN_H
#define LLAMACHATD_JSON_SCAN_H

#include <stdbool.h>
#include <stddef.h>

/* A top-level member to pick out: name is the caller's; value points into
 * the scanned text (not NUL-terminated), NULL when not found as a string. */
struct json_scan_field {
	const char *name;
	const char *value;
	size_t len;
};

/* True only when text is a JSON object that json_loadb(text, len, 0)
 * accepts, and each field is a member whose value (its last one, as
 * Jansson keeps) is a string without escapes: then value and len give its
 * bytes, the same ones Jansson's json_string_value() would. False when not
 * sure (invalid JSON, escapes in a field, deep nesting, a long number...):
 * ask Jansson, which says why. Allocates nothing. */
bool json_scan_object(const char *text, size_t len, struct json_scan_field *fields, size_t count);

#endif
