/* route: what a path in its normal form (uri_normalize_path) names, and
 * whether it may be acted on at all. The one place that decides which
 * session a path is about: what it says here is what upstream, which
 * percent-decodes the whole path the way FastAPI does, will act on. */
#ifndef LLAMACHATD_ROUTE_H
#define LLAMACHATD_ROUTE_H

#include <stdbool.h>
#include <stddef.h>

#define ROUTE_CHAT_PREFIX "/api/v1/chat"

enum route_kind {
	ROUTE_BAD, /* refused with 400; why says what is wrong */
	ROUTE_NOT_FOUND, /* outside /api/ and not ours: 404, never forwarded */
	ROUTE_HEALTHZ,
	ROUTE_METRICS,
	ROUTE_CHAT, /* /api/v1/chat: create, list */
	ROUTE_SESSION, /* /api/v1/chat/{id}: history, delete */
	ROUTE_SUMMARY, /* /api/v1/chat/{id}/summary */
	ROUTE_STREAM, /* /api/v1/chat/{id}/messages/stream */
	ROUTE_UNDER_SESSION, /* anything else below /api/v1/chat/{id}/ */
	ROUTE_API, /* any other /api/ path: the route policy decides */
};

struct route_match {
	enum route_kind kind;
	const char *id; /* the session a path names (points into it), else NULL */
	size_t id_len;
	const char *why; /* for ROUTE_BAD: a static reason */
};

/* Classifies path (normal form, no query). Under /api/ it refuses an empty
 * segment, a trailing slash, a ';', a "." or ".." segment, a backslash, a
 * control byte, and an escape of '/', '\', ';' or a control byte; under
 * the chat resource (any path whose decoded form starts with /api/v1/chat)
 * it refuses every escape left. Allocates nothing. */
void route_classify(const char *path, struct route_match *out);

/* True when a session-naming kind. */
bool route_names_session(enum route_kind kind);

/* Copies path fully percent-decoded into out (size bytes): the form the
 * route policy is checked on. Returns 0, or -1 when it does not fit. Only
 * for paths route_classify() accepted (no escape decodes to NUL or '/'). */
int route_decode(const char *path, char *out, size_t size) __attribute__((warn_unused_result));

#endif
