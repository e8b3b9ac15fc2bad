/* health: GET /healthz, the daemon's own liveness and readiness answer. */
#include "health.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/clock.h"
#include "http/request.h"
#include "store/store.h"
#include "chat/chat.h"
#include "shared/shared.h"
#include "upstream/upstream.h"

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
health_reply(struct request *req, struct store *store, const struct upstream *upstream, const struct shared *shared,
    struct chat *chat, double started, bool show_counts)
{
	static const char *const states[] = { "closed", "open", "half_open" };
	const struct upstream_stats *up = upstream_get_stats(upstream);
	enum store_result probe = store_probe(store);
	json_t *doc;
	char *text;

	doc = json_pack("{s:s,s:{s:b,s:s*},s:{s:o,s:o},s:f}", "status", probe == STORE_OK ? "ok" : "unavailable",
	    "store", "writable", probe == STORE_OK, "problem",
	    probe == STORE_OK             ? NULL
	        : probe == STORE_ERR_FULL ? "full"
	                                  : "write failed",
	    "upstream", "last_answer", health_time(up->last_answer_wall), "last_failure",
	    health_time(up->last_failure_wall), "uptime_seconds", clock_monotonic_s() - started);
	if (doc != NULL) {
		/* The breaker says how upstream fares; the daemon still serves
		 * its store, so this stays a 200. */
		double since;
		enum upstream_breaker_state state = upstream_breaker_state(upstream, &since);
		json_object_set_new(json_object_get(doc, "upstream"), "breaker", json_string(states[state]));
		json_object_set_new(json_object_get(doc, "upstream"), "breaker_since", health_time(since));
	}
	if (doc != NULL && shared != NULL) {
		/* Redis away is no reason to leave the balancer: every instance
		 * would leave at once. The state says it; the status stays. */
		double since, lag;
		bool redis_up = shared_is_up(shared, &since);
		bool catching_up = chat_follow_state(chat, &lag);
		json_object_set_new(doc, "shared",
		    json_pack("{s:s,s:o,s:I,s:f}", "state",
		        !redis_up         ? "down"
		            : catching_up ? "catching_up"
		                          : "up",
		        "since", health_time(since), "outbox", (json_int_t)chat_outbox_pending(chat),
		        "stream_lag_seconds", lag));
	}
	if (doc != NULL && show_counts) {
		json_t *keys = json_array();
		json_object_set_new(
		    json_object_get(doc, "store"), "sessions", json_integer((json_int_t)store_count(store)));
		/* Each key's project and fate: never the key itself. */
		for (size_t i = 0; i < upstream_key_count(upstream); i++) {
			struct upstream_key_info key;
			upstream_key_info(upstream, i, &key);
			json_array_append_new(keys,
			    json_pack("{s:s,s:o,s:o,s:s}", "project", key.project, "last_success",
			        health_time(key.last_success_wall), "last_rejection",
			        health_time(key.last_rejection_wall), "breaker", states[key.breaker]));
		}
		json_object_set_new(json_object_get(doc, "upstream"), "keys", keys);
	}
	text = doc != NULL ? json_dumps(doc, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
	request_add_header(req, "Content-Type", "application/json");
	request_add_header(req, "Cache-Control", "no-store");
	request_reply(req, probe == STORE_OK ? 200 : 503, text != NULL ? text : "{}", text != NULL ? strlen(text) : 2);
	free(text);
	json_decref(doc);
}
