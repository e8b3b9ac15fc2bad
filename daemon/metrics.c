/* metrics: the renderer of /metrics, in Prometheus text format. */
#include "metrics.h"
#include "base/trace.h"
#include "shared/shared.h"
#include "gate/clients.h"
#include "base/config.h"

#include <event2/buffer.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/clock.h"
#include "gate/budget.h"
#include "chat/chat.h"
#include "base/counters.h"
#include "gate/idempotency.h"
#include "store/janitor.h"
#include "chat/relay.h"
#include "chat/retry.h"
#include "server/server.h"
#include "store/session.h"
#include "store/store.h"
#include "upstream/upstream.h"

static void
metrics_header(struct evbuffer *out, const char *name, const char *type, const char *help)
{
	evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* One histogram's series, with labels ("a=\"b\"") before le, or none. */
static void
metrics_histogram_series(struct evbuffer *out, const char *name, const char *labels, const struct histogram *h)
{
	unsigned long long cumulative = 0;
	const char *comma = labels != NULL ? "," : "";

	labels = labels != NULL ? labels : "";
	for (size_t i = 0; i < HISTOGRAM_BUCKETS; i++) {
		cumulative += h->counts[i];
		evbuffer_add_printf(
		    out, "%s_bucket{%s%sle=\"%g\"} %llu\n", name, labels, comma, histogram_bounds[i], cumulative);
	}
	evbuffer_add_printf(out, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, labels, comma, h->count);
	if (labels[0] != '\0')
		evbuffer_add_printf(
		    out, "%s_sum{%s} %.6f\n%s_count{%s} %llu\n", name, labels, h->sum, name, labels, h->count);
	else
		evbuffer_add_printf(out, "%s_sum %.6f\n%s_count %llu\n", name, h->sum, name, h->count);
}

static void
metrics_histogram(struct evbuffer *out, const char *name, const char *help, const struct histogram *h)
{
	metrics_header(out, name, "histogram", help);
	metrics_histogram_series(out, name, NULL, h);
}

static void
metrics_simple(struct evbuffer *out, const char *name, const char *type, const char *help, double value)
{
	metrics_header(out, name, type, help);
	evbuffer_add_printf(out, "%s %.17g\n", name, value);
}

/* A label value as the text format wants it: \\, \" and \n escaped. */
static void
metrics_label(struct evbuffer *out, const char *text, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		if (text[i] == '\\' || text[i] == '"')
			evbuffer_add_printf(out, "\\%c", text[i]);
		else if (text[i] == '\n')
			evbuffer_add(out, "\\n", 2);
		else
			evbuffer_add(out, &text[i], 1);
	}
}

/* Ledger entries are per day; a scrape sums the days of each client and
 * scope, which lie next to each other in key order. */
struct ledger_render {
	struct evbuffer *out;
	int field;
	unsigned char prefix[SESSION_LEDGER_KEY_MAX]; /* the entry being summed */
	size_t prefix_len;
	unsigned long long sum;
};

static const char *const ledger_metric[SESSION_LEDGER_FIELD_COUNT] = {
	"llamachatd_client_sessions_created_total",
	"llamachatd_client_turns_total",
	"llamachatd_client_input_tokens_total",
	"llamachatd_client_output_tokens_total",
	"llamachatd_client_run_seconds_total",
	"llamachatd_client_errors_total",
};

static void
metrics_ledger_flush(struct ledger_render *r)
{
	const char *client, *org, *project;
	size_t client_len, org_len, project_len;
	unsigned day;
	unsigned char key[SESSION_LEDGER_KEY_MAX];

	if (r->prefix_len == 0)
		return;
	memcpy(key, r->prefix, r->prefix_len);
	memset(key + r->prefix_len, 0, 4);
	if (session_ledger_key_parse(
	        key, r->prefix_len + 4, &client, &client_len, &org, &org_len, &project, &project_len, &day) != 0)
		return;
	evbuffer_add_printf(r->out, "%s{client=\"", ledger_metric[r->field]);
	metrics_label(r->out, client, client_len);
	evbuffer_add_printf(r->out, "\",organization_id=\"");
	metrics_label(r->out, org, org_len);
	evbuffer_add_printf(r->out, "\",project_id=\"");
	metrics_label(r->out, project, project_len);
	if (r->field == SESSION_LEDGER_DURATION_MS)
		evbuffer_add_printf(r->out, "\"} %.3f\n", (double)r->sum / 1000.0);
	else
		evbuffer_add_printf(r->out, "\"} %llu\n", r->sum);
	r->prefix_len = 0;
	r->sum = 0;
}

static int
metrics_ledger_line(const void *key, size_t key_len, const unsigned long long *counters, void *arg)
{
	struct ledger_render *r = arg;

	if (key_len < 4 || key_len > sizeof(r->prefix))
		return 0;
	if (r->prefix_len != key_len - 4 || memcmp(r->prefix, key, key_len - 4) != 0) {
		metrics_ledger_flush(r);
		memcpy(r->prefix, key, key_len - 4);
		r->prefix_len = key_len - 4;
	}
	r->sum += counters[r->field];
	return 0;
}

#define LEDGER_SCRAPE_LIMIT 10000

/* The state shared through Redis: up or not, calls by kind, errors. */
static void
metrics_shared(struct evbuffer *out, const struct shared *shared)
{
	const struct shared_stats *st = shared_get_stats(shared);

	metrics_simple(out, "llamachatd_shared_up", "gauge",
	    "1 while Redis, the state shared with other instances, answers.", shared_is_up(shared, NULL) ? 1 : 0);
	metrics_header(
	    out, "llamachatd_shared_op_duration_seconds", "histogram", "Redis calls that were answered, by operation.");
	for (int k = 0; k < SHARED_OP_KINDS; k++) {
		char labels[64];
		snprintf(labels, sizeof(labels), "op=\"%s\"", shared_op_name((enum shared_op_kind)k));
		metrics_histogram_series(out, "llamachatd_shared_op_duration_seconds", labels, &st->duration[k]);
	}
	metrics_header(out, "llamachatd_shared_errors_total", "counter",
	    "Redis calls that failed: timeout, connection, reply (an error answer), busy (max_in_flight reached).");
	for (int k = 0; k < SHARED_ERROR_KINDS; k++)
		evbuffer_add_printf(out, "llamachatd_shared_errors_total{kind=\"%s\"} %llu\n",
		    shared_error_name((enum shared_error_kind)k), st->errors[k]);
}

void
metrics_render(const struct metrics_sources *s, struct evbuffer *out)
{
	const struct request_counters *m = s->requests;
	const struct chat_counters *chat = chat_get_counters(s->chat);
	const struct upstream_stats *up = upstream_get_stats(s->upstream);
	unsigned long long entries = 0, used = 0, map = 0;
	struct server_tls_stats tls;

	metrics_header(out, "llamachatd_requests_total", "counter", "Client requests by route and status.");
	for (size_t i = 0; i < m->series_count; i++)
		evbuffer_add_printf(out, "llamachatd_requests_total{route=\"%s\",status=\"%d\"} %llu\n",
		    m->series[i].route, m->series[i].status, m->series[i].count);
	metrics_histogram(out, "llamachatd_request_duration_seconds",
	    "Time from a request's arrival to its answer's end.", &m->seconds);
	metrics_histogram(out, "llamachatd_upstream_duration_seconds", "Time of upstream calls.", &up->latency);
	metrics_header(out, "llamachatd_upstream_errors_total", "counter", "Upstream calls that failed, by kind.");
	for (int k = 1; k < UPSTREAM_ERROR_KINDS; k++)
		evbuffer_add_printf(out, "llamachatd_upstream_errors_total{kind=\"%s\"} %llu\n",
		    upstream_error_name((enum upstream_error)k), up->errors[k]);
	evbuffer_add_printf(out, "llamachatd_upstream_errors_total{kind=\"multi\"} %llu\n", up->multi_errors);
	{
		double since;
		metrics_simple(out, "llamachatd_upstream_breaker_state", "gauge",
		    "The upstream circuit breaker: 0 closed, 1 open, 2 half-open.",
		    (double)upstream_breaker_state(s->upstream, &since));
	}
	metrics_header(out, "llamachatd_upstream_retries_total", "counter", "Upstream calls made again, by reason.");
	for (int r = 0; r < RETRY_REASONS; r++)
		evbuffer_add_printf(out, "llamachatd_upstream_retries_total{reason=\"%s\"} %llu\n",
		    retry_reason_names[r], chat->retries[r] + relay_engine_retries(s->relays, r));
	metrics_header(out, "llamachatd_upstream_key_rejections_total", "counter",
	    "Upstream's 401 and 403 answers, by the project whose key the call carried.");
	for (size_t i = 0; i < upstream_key_count(s->upstream); i++) {
		struct upstream_key_info key;
		upstream_key_info(s->upstream, i, &key);
		evbuffer_add_printf(out, "llamachatd_upstream_key_rejections_total{project=\"%s\"} %llu\n", key.project,
		    key.rejections);
	}
	metrics_simple(out, "llamachatd_cache_hits_total", "counter", "Session lookups answered from the store.",
	    (double)chat->cache_hits);
	metrics_simple(out, "llamachatd_cache_misses_total", "counter", "Session lookups read through from upstream.",
	    (double)chat->cache_misses);
	metrics_simple(out, "llamachatd_store_failures_total", "counter", "Writes the store could not take.",
	    (double)chat->store_failures);
	metrics_simple(out, "llamachatd_takeovers_refused_total", "counter",
	    "Creates upstream answered with a session another client owns (refused with 502).",
	    (double)chat->takeovers_refused);
	metrics_simple(out, "llamachatd_unmetered_turns_total", "counter",
	    "Turns whose usage could not be charged: upstream ended them without a stop event.",
	    (double)chat->unmetered_turns);
	metrics_simple(out, "llamachatd_otel_spans_exported_total", "counter",
	    "Spans the OpenTelemetry collector took.", s->spans != NULL ? (double)span_queue_exported(s->spans) : 0);
	metrics_simple(out, "llamachatd_otel_spans_dropped_total", "counter",
	    "Spans never delivered: the queue (otel.max_queued_spans) was full, or the collector failed a batch "
	    "twice.",
	    s->spans != NULL ? (double)span_queue_dropped(s->spans) : 0);
	metrics_simple(out, "llamachatd_otel_spans_queued", "gauge", "Spans waiting for the exporter.",
	    s->spans != NULL ? (double)span_queue_length(s->spans) : 0);
	if (s->shared != NULL) {
		metrics_shared(out, s->shared);
		metrics_simple(out, "llamachatd_shared_instances", "gauge",
		    "Instances live by Redis, last known; each takes its part of every client's rate limit.",
		    s->instances != NULL ? (double)*s->instances : 1);
		double lag;
		chat_follow_state(s->chat, &lag);
		metrics_simple(out, "llamachatd_shared_outbox_pending", "gauge",
		    "Publications to the other instances that Redis has not acknowledged yet (kept in the store).",
		    (double)chat_outbox_pending(s->chat));
		metrics_simple(out, "llamachatd_shared_stream_lag_seconds", "gauge",
		    "How far this store may be behind the sessions the other instances published.", lag);
		metrics_simple(out, "llamachatd_shared_stream_trimmed_total", "counter",
		    "Times entries of the sessions stream this instance had not read were found trimmed away.",
		    (double)shared_get_stats(s->shared)->stream_trimmed);
	}
	metrics_simple(out, "llamachatd_store_commits_total", "counter",
	    "Transactions the store's writer thread committed, each a batch of writes.",
	    (double)store_commits(s->store));
	metrics_histogram(out, "llamachatd_store_commit_duration_seconds",
	    "Time of each store commit: one batch of writes and its fsync.", store_commit_durations(s->store));
	metrics_simple(out, "llamachatd_store_queue_refusals_total", "counter",
	    "Writes refused because store.max_queued_writes were already waiting.",
	    (double)store_queue_refusals(s->store));
	metrics_header(out, "llamachatd_janitor_removed_total", "counter", "Entries the janitor removed, by kind.");
	evbuffer_add_printf(out, "llamachatd_janitor_removed_total{kind=\"sessions\"} %llu\n",
	    janitor_removed(s->janitor, JANITOR_SESSIONS));
	evbuffer_add_printf(out, "llamachatd_janitor_removed_total{kind=\"%s\"} %llu\n", IDEMPOTENCY_SWEEP,
	    janitor_removed(s->janitor, IDEMPOTENCY_SWEEP));
	metrics_simple(out, "llamachatd_janitor_passes_total", "counter", "Full passes of the janitor over the store.",
	    (double)janitor_passes(s->janitor));
	metrics_simple(out, "llamachatd_connections_accepted_total", "counter", "Client connections accepted.",
	    (double)server_connections_accepted(s->server));
	metrics_simple(out, "llamachatd_connections_open", "gauge", "Client connections open now.",
	    (double)server_open_connections(s->server));
	metrics_header(out, "llamachatd_client_token_expiry_timestamp_seconds", "gauge",
	    "The latest expiry among a client's tokens (absent when one never expires).");
	for (size_t i = 0; i < (*s->config)->client_count; i++) {
		const struct config_client *c = &(*s->config)->clients[i];
		long long expiry = clients_token_expiry(c);
		if (expiry > 0)
			evbuffer_add_printf(out,
			    "llamachatd_client_token_expiry_timestamp_seconds{client=\"%s\"} %lld\n", c->name, expiry);
	}
	server_tls_stats(s->server, &tls);
	if (tls.not_after > 0)
		metrics_simple(out, "llamachatd_tls_certificate_expiry_timestamp_seconds", "gauge",
		    "When the certificate of the TLS listeners expires (notAfter).", (double)tls.not_after);
	metrics_header(
	    out, "llamachatd_tls_handshakes_total", "counter", "TLS handshakes on the listeners, by result.");
	evbuffer_add_printf(out,
	    "llamachatd_tls_handshakes_total{result=\"ok\"} %llu\n"
	    "llamachatd_tls_handshakes_total{result=\"resumed\"} %llu\n"
	    "llamachatd_tls_handshakes_total{result=\"failed\"} %llu\n"
	    "llamachatd_tls_handshakes_total{result=\"timeout\"} %llu\n",
	    tls.ok, tls.resumed, tls.failed, tls.timeout);
	metrics_simple(out, "llamachatd_requests_in_flight", "gauge", "Client requests not answered yet.",
	    (double)(chat_pending(s->chat) + relay_engine_active(s->relays)));
	metrics_simple(out, "llamachatd_streams_active", "gauge", "Answers being relayed as they arrive.",
	    (double)relay_engine_active(s->relays));
	metrics_simple(out, "llamachatd_relayed_bytes_total", "counter", "Bytes of streamed answers sent to clients.",
	    (double)relay_engine_bytes(s->relays));
	metrics_header(out, "llamachatd_streams_cut_total", "counter",
	    "Streamed answers cut short (closed without their proper end), by cause.");
	evbuffer_add_printf(out,
	    "llamachatd_streams_cut_total{cause=\"reset\"} %llu\n"
	    "llamachatd_streams_cut_total{cause=\"timeout\"} %llu\n"
	    "llamachatd_streams_cut_total{cause=\"shutdown\"} %llu\n",
	    relay_engine_cuts(s->relays, RELAY_CUT_RESET), relay_engine_cuts(s->relays, RELAY_CUT_TIMEOUT),
	    relay_engine_cuts(s->relays, RELAY_CUT_SHUTDOWN));
	metrics_histogram(out, "llamachatd_stream_first_event_seconds",
	    "Time from a stream's request to its first event relayed.", &chat->first_event);
	if (store_stats(s->store, &entries, &used, &map) == STORE_OK) {
		metrics_simple(out, "llamachatd_store_sessions", "gauge", "Sessions in the store.", (double)entries);
		metrics_simple(
		    out, "llamachatd_store_used_bytes", "gauge", "Bytes of the store's map in use.", (double)used);
		metrics_simple(out, "llamachatd_store_map_bytes", "gauge", "The store's map size.", (double)map);
		metrics_simple(out, "llamachatd_store_full_ratio", "gauge",
		    "How full the store's map is (the log warns past 0.8).", map > 0 ? (double)used / (double)map : 0);
	}
	for (int f = 0; f < SESSION_LEDGER_FIELD_COUNT; f++) {
		struct ledger_render r = { .out = out, .field = f };
		metrics_header(out, ledger_metric[f], "counter", "Usage by client and project, from the ledger.");
		if (store_ledger_scan(s->store, LEDGER_SCRAPE_LIMIT, metrics_ledger_line, &r) != STORE_OK)
			break;
		metrics_ledger_flush(&r);
	}
	if (s->budgets != NULL)
		budgets_render(s->budgets, clock_unix_us(), out);
	metrics_simple(out, "llamachatd_uptime_seconds", "gauge", "Seconds since the daemon started.",
	    clock_monotonic_s() - s->started);
}
