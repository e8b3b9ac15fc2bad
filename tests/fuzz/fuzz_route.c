/* Fuzz target, differential: the router (uri_normalize_path, then
 * route_classify) against a reference that reads a path the way a FastAPI
 * upstream does (the whole path percent-decoded, a trailing slash taken as
 * the same route). Whatever the router lets through must name the same
 * session there as here, or none in both. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "server/route.h"
#include "http/uri.h"

#define MAX_PATH 1024

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int
hex(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* The session upstream would take path to name, into id; false for none.
 * A straightforward decoder: a malformed escape stays as it is. */
static bool
reference_session(const char *path, char *id)
{
	static const char prefix[] = "/api/v1/chat/";
	char decoded[MAX_PATH + 1];
	size_t n = 0, len;

	for (size_t i = 0; path[i] != '\0'; i++) {
		int hi, lo;
		if (path[i] == '%' && (hi = hex(path[i + 1])) >= 0 && (lo = hex(path[i + 2])) >= 0) {
			decoded[n++] = (char)(hi * 16 + lo);
			i += 2;
		} else {
			decoded[n++] = path[i];
		}
	}
	decoded[n] = '\0';
	if (n > 1 && decoded[n - 1] == '/')
		decoded[--n] = '\0';
	if (strncmp(decoded, prefix, sizeof(prefix) - 1) != 0)
		return false;
	len = strcspn(decoded + sizeof(prefix) - 1, "/");
	if (len == 0)
		return false;
	memcpy(id, decoded + sizeof(prefix) - 1, len);
	id[len] = '\0';
	return true;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char raw[MAX_PATH + 1], normal[MAX_PATH + 1], upstream_id[MAX_PATH + 1], raw_id[MAX_PATH + 1];
	struct route_match m;
	bool named, raw_named;

	/* A path as the HTTP layer hands it over: no NUL, query or fragment. */
	if (size == 0 || size > MAX_PATH || memchr(data, '\0', size) != NULL || memchr(data, '?', size) != NULL ||
	    memchr(data, '#', size) != NULL)
		return 0;
	memcpy(raw, data, size);
	raw[size] = '\0';
	memcpy(normal, raw, size + 1);
	if (uri_normalize_path(normal) != 0)
		return 0; /* refused: nothing goes upstream */
	route_classify(normal, &m);
	if (m.kind == ROUTE_BAD || m.kind == ROUTE_NOT_FOUND || m.kind == ROUTE_HEALTHZ || m.kind == ROUTE_METRICS)
		return 0;
	/* The normal form, which is what goes upstream, means what the client's
	 * spelling meant. */
	named = reference_session(normal, upstream_id);
	raw_named = reference_session(raw, raw_id);
	if (named != raw_named || (named && strcmp(upstream_id, raw_id) != 0))
		abort();
	if (route_names_session(m.kind) != named)
		abort(); /* a session upstream acts on that the router did not see, or the reverse */
	if (named && (m.id_len != strlen(upstream_id) || memcmp(m.id, upstream_id, m.id_len) != 0))
		abort();
	return 0;
}
