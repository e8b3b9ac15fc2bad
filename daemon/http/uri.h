/* uri: the query string and percent-encoding, as the handlers need them. */
#ifndef LLAMACHATD_URI_H
#define LLAMACHATD_URI_H

#include <stdbool.h>
#include <stddef.h>

/* Calls fn for each name=value pair of query (NULL or "" has none), both
 * percent-decoded ('+' is a space) into bounded buffers. Stops when fn
 * returns false. Returns 0, or -1 when a pair is malformed (a bad escape, a
 * NUL, or longer than URI_PARAM_MAX once decoded). */
#define URI_PARAM_MAX 1024
int uri_query_each(const char *query, bool (*fn)(const char *name, const char *value, void *arg), void *arg)
    __attribute__((warn_unused_result));

/* True when every pair of query decodes (see uri_query_each). */
bool uri_query_is_valid(const char *query);

/* Copies the decoded value of the first parameter called name into out (size
 * bytes). Returns 1 when found, 0 when absent, -1 when the query is
 * malformed or the value does not fit. */
int uri_query_get(const char *query, const char *name, char *out, size_t size) __attribute__((warn_unused_result));

/* Puts a path into its normal form in place (it only shrinks): escapes of
 * unreserved characters (RFC 3986 section 6.2.2.2: letters, digits, "-",
 * ".", "_", "~") are decoded, and every other escape gets upper-case hex
 * (section 6.2.2.1). Returns 0, or -1 when an escape is malformed ('%' not
 * followed by two hex digits). */
int uri_normalize_path(char *path) __attribute__((warn_unused_result));

/* Decodes the escape at text ('%' and two hex digits); -1 when malformed. */
int uri_escape_value(const char *text);

/* Percent-encodes text into out (size bytes), keeping only unreserved bytes
 * (RFC 3986) as they are. Returns the length, or -1 when it does not fit. */
int uri_encode(const char *text, char *out, size_t size) __attribute__((warn_unused_result));

#endif
