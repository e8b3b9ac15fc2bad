/* http_headers: a small, bounded list of HTTP header fields. */
#include "http/http_headers.h"

#include <string.h>
#include <strings.h>

void
http_headers_init(struct http_headers *list, struct http_header *slots, size_t capacity)
{
	list->count = 0;
	list->capacity = capacity;
	list->items = slots;
}

const char *
http_headers_find(const struct http_headers *headers, const char *name)
{
	for (size_t i = 0; headers != NULL && i < headers->count; i++)
		if (strcasecmp(headers->items[i].name, name) == 0)
			return headers->items[i].value;
	return NULL;
}

size_t
http_headers_count(const struct http_headers *headers, const char *name)
{
	size_t n = 0;

	for (size_t i = 0; headers != NULL && i < headers->count; i++)
		if (strcasecmp(headers->items[i].name, name) == 0)
			n++;
	return n;
}

bool
http_headers_add(struct http_headers *headers, const char *name, const char *value)
{
	if (headers->count == headers->capacity)
		return false;
	headers->items[headers->count].name = name;
	headers->items[headers->count].value = value;
	headers->count++;
	return true;
}

int
http_headers_copy(struct http_headers *dst, char *store, size_t size, const struct http_headers *src)
{
	size_t used = 0;

	dst->count = 0;
	for (size_t i = 0; src != NULL && i < src->count; i++) {
		size_t name_len = strlen(src->items[i].name) + 1, value_len = strlen(src->items[i].value) + 1;
		if (used + name_len + value_len > size || dst->count == dst->capacity)
			return -1;
		memcpy(store + used, src->items[i].name, name_len);
		memcpy(store + used + name_len, src->items[i].value, value_len);
		http_headers_add(dst, store + used, store + used + name_len);
		used += name_len + value_len;
	}
	return 0;
}
