/* route: what a path in its normal form names, and whether it may be acted
 * on at all.
 *
 * Upstream (FastAPI) percent-decodes the whole path before it routes, and
 * may treat a trailing slash as the same route. So a rule that held only
 * for the spelling a handler compares would be walked around with
 * "%73ummary" or "summary/". Here the spellings that could mean something
 * else upstream are refused outright, and what is left names exactly one
 * thing, the same here and there. */
#include "server/route.h"

#include <string.h>

#include "http/uri.h"

#define ROUTE_SUMMARY_SUFFIX "/summary"
#define ROUTE_STREAM_SUFFIX "/messages/stream"

bool
route_names_session(enum route_kind kind)
{
	return kind == ROUTE_SESSION || kind == ROUTE_SUMMARY || kind == ROUTE_STREAM || kind == ROUTE_UNDER_SESSION;
}

static bool
route_is_control(int c)
{
	return c < 0x20 || c == 0x7f;
}

/* The first refusal that the bytes of an /api/ path earn, or NULL. */
static const char *
route_check_bytes(const char *path, bool *has_escape)
{
	*has_escape = false;
	for (const char *p = path; *p != '\0'; p++) {
		int c = (unsigned char)*p;
		if (route_is_control(c))
			return "the path holds a control byte";
		if (c == '\\')
			return "the path holds a backslash";
		if (c == ';')
			return "the path holds a ';' parameter";
		if (c != '%')
			continue;
		*has_escape = true;
		c = uri_escape_value(p);
		if (c < 0 || c == '/' || c == '\\' || c == ';' || route_is_control(c))
			return "the path holds an encoded slash, backslash, ';' or control byte";
	}
	return NULL;
}

/* The first refusal that the segments of an /api/ path earn, or NULL. */
static const char *
route_check_segments(const char *path)
{
	for (const char *slash = path; slash != NULL;) {
		const char *start = slash + 1;
		size_t len = strcspn(start, "/");
		if (len == 0)
			return start[0] == '\0' ? "the path ends with '/'" : "the path holds an empty segment ('//')";
		if ((len == 1 && start[0] == '.') || (len == 2 && start[0] == '.' && start[1] == '.'))
			return "the path holds a '.' or '..' segment";
		slash = start[len] == '/' ? start + len : NULL;
	}
	return NULL;
}

/* True when path, fully decoded, starts with prefix. */
static bool
route_decoded_starts_with(const char *path, const char *prefix)
{
	const char *p = path;

	for (; *prefix != '\0'; prefix++) {
		int c = (unsigned char)*p;
		if (c == '\0')
			return false;
		if (c == '%' && (c = uri_escape_value(p)) >= 0)
			p += 3;
		else
			p++;
		if (c != (unsigned char)*prefix)
			return false;
	}
	return true;
}

void
route_classify(const char *path, struct route_match *out)
{
	size_t prefix_len = strlen(ROUTE_CHAT_PREFIX);
	const char *id, *after;
	bool has_escape;

	*out = (struct route_match){ .kind = ROUTE_BAD };
	if (path[0] != '/') {
		out->why = "the path must start with '/'";
		return;
	}
	if (strcmp(path, "/healthz") == 0 || strcmp(path, "/metrics") == 0) {
		out->kind = path[1] == 'h' ? ROUTE_HEALTHZ : ROUTE_METRICS;
		return;
	}
	if (strncmp(path, "/api/", 5) != 0) {
		out->kind = ROUTE_NOT_FOUND;
		return;
	}
	if ((out->why = route_check_bytes(path, &has_escape)) != NULL ||
	    (out->why = route_check_segments(path)) != NULL)
		return;
	if (has_escape && route_decoded_starts_with(path, ROUTE_CHAT_PREFIX)) {
		out->why = "a path of the chat resource takes no percent-escape (but of letters, digits and -._~)";
		return;
	}
	if (strncmp(path, ROUTE_CHAT_PREFIX, prefix_len) != 0 ||
	    (path[prefix_len] != '\0' && path[prefix_len] != '/')) {
		out->kind = ROUTE_API;
		return;
	}
	if (path[prefix_len] == '\0') {
		out->kind = ROUTE_CHAT;
		return;
	}
	id = path + prefix_len + 1;
	out->id = id;
	out->id_len = strcspn(id, "/");
	after = id + out->id_len;
	if (*after == '\0')
		out->kind = ROUTE_SESSION;
	else if (strcmp(after, ROUTE_SUMMARY_SUFFIX) == 0)
		out->kind = ROUTE_SUMMARY;
	else if (strcmp(after, ROUTE_STREAM_SUFFIX) == 0)
		out->kind = ROUTE_STREAM;
	else
		out->kind = ROUTE_UNDER_SESSION;
}

int
route_decode(const char *path, char *out, size_t size)
{
	size_t n = 0;

	for (const char *p = path; *p != '\0'; n++) {
		int c = (unsigned char)*p;
		if (n + 1 >= size)
			return -1;
		if (c == '%' && (c = uri_escape_value(p)) >= 0)
			p += 3;
		else
			p++;
		out[n] = (char)c;
	}
	out[n] = '\0';
	return 0;
}
