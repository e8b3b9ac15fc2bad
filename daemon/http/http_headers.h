/* http_headers: a small, bounded list of HTTP header fields, names and values
 * as NUL-terminated strings. It owns nothing: its slots and the strings live
 * where its owner put them (a request's slots and head buffer, an upstream
 * call's few kept answer headers), so a list costs what its owner needs. */
#ifndef LLAMACHATD_HTTP_HEADERS_H
#define LLAMACHATD_HTTP_HEADERS_H

#include <stdbool.h>
#include <stddef.h>

#define HTTP_HEADERS_MAX 100 /* fields per request head; more is a 431 */

struct http_header {
	const char *name;
	const char *value;
};

struct http_headers {
	size_t count;
	size_t capacity; /* slots in items */
	struct http_header *items;
};

/* Points list at capacity slots of the owner's, empty. */
void http_headers_init(struct http_headers *list, struct http_header *slots, size_t capacity);

/* The value of the first field called name (case-insensitive), or NULL. */
const char *http_headers_find(const struct http_headers *headers, const char *name);

/* How many fields are called name. */
size_t http_headers_count(const struct http_headers *headers, const char *name);

/* Adds a field; false (and nothing added) when its slots are full. The
 * strings must outlive the list. */
bool http_headers_add(struct http_headers *headers, const char *name, const char *value);

/* Copies src into dst with every string copied into store (size bytes);
 * returns 0, or -1 (dst then holds what fitted) when store is too small. */
int http_headers_copy(struct http_headers *dst, char *store, size_t size, const struct http_headers *src);

#endif
