/* health: GET /healthz, the daemon's own liveness and readiness answer. */
#include "health.h"

#include <event2/buffer.h>
#include <event2/http.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "store.h"
#include "upstream.h"

/* An ISO-8601 UTC time, or JSON null for "never". */
static json_t *
health_time(double wall)
{
	char text[32];
	time_t t = (time_t)wall;
	struct tm tm;

	if (wall <= 0)
		return json_null();
	gmtime_r(&t, &tm);
	strftime(text, sizeof(text), "%Y-%m-%dT%H:%M:%SZ", &tm);
	return json_string(text);
}

void
health_reply(struct evhttp_request *req, struct store *store, const struct upstream *upstream, double started)
{
	const struct upstream_stats *up = upstream_get_stats(upstream);
	enum store_result probe = store_probe(store);
	struct evbuffer *body = evbuffer_new();
	struct timespec now;
	json_t *doc;
	char *text;

	clock_gettime(CLOCK_MONOTONIC, &now);
	doc = json_pack("{s:s,s:{s:b,s:s*,s:I},s:{s:o,s:o},s:f}", "status", probe == STORE_OK ? "ok" : "unavailable",
	    "store", "writable", probe == STORE_OK, "problem",
	    probe == STORE_OK             ? NULL
	        : probe == STORE_ERR_FULL ? "full"
	                                  : "write failed",
	    "sessions", (json_int_t)store_count(store), "upstream", "last_answer", health_time(up->last_answer_wall),
	    "last_failure", health_time(up->last_failure_wall), "uptime_seconds",
	    (double)now.tv_sec + (double)now.tv_nsec / 1e9 - started);
	text = doc != NULL ? json_dumps(doc, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "application/json");
	evhttp_add_header(evhttp_request_get_output_headers(req), "Cache-Control", "no-store");
	if (body != NULL && text != NULL)
		evbuffer_add(body, text, strlen(text));
	evhttp_send_reply(req, probe == STORE_OK ? 200 : 503, NULL, body);
	if (body != NULL)
		evbuffer_free(body);
	free(text);
	json_decref(doc);
}
