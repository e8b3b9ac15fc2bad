/* config: loads and checks the libconfig file into a struct config. */
/* Layer base (daemon/base/): what every layer stands on: the config file,
 * logging, clocks, counters and histograms, socket addresses. Includes no
 * other layer of the daemon. */
#ifndef LLAMACHATD_CONFIG_H
#define LLAMACHATD_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#include "base/log.h"

#define CONFIG_DEFAULT_PATH "/etc/llamachatd/llamachatd.conf"
#define CONFIG_MAX_LISTEN 16
#define CONFIG_MAX_ROUTES 32

/* HTTP methods a route may allow, as bits. */
enum config_method {
	CONFIG_METHOD_GET = 1 << 0,
	CONFIG_METHOD_POST = 1 << 1,
	CONFIG_METHOD_PUT = 1 << 2,
	CONFIG_METHOD_PATCH = 1 << 3,
	CONFIG_METHOD_DELETE = 1 << 4,
};

#define CONFIG_MAX_CLIENTS 1024
#define CONFIG_CLIENT_NAME_MAX 64

/* One token of a client: its SHA-256 (the token itself is never stored)
 * and when it is valid, in unix seconds (0: no bound). */
#define CONFIG_MAX_TOKENS 8
struct config_token {
	unsigned char sha256[32];
	long long not_before;
	long long expires;
};

/* One LlamaCloud API key of a project: where it is read from (a file, or a
 * systemd credential by name). */
#define CONFIG_MAX_PROJECT_KEYS 64
struct config_project_key {
	char *project_id;
	char *api_key_file; /* NULL: credential */
	char *credential;
};

/* One client of a team gateway, as configured. */
struct config_client {
	char *name;
	struct config_token tokens[CONFIG_MAX_TOKENS];
	size_t token_count;
	bool has_token; /* token_count > 0 */
	unsigned char cert_sha256[32]; /* of a client certificate's DER */
	bool has_cert; /* cert_sha256 is set */
	char *organization_id; /* NULL: not pinned */
	char *project_id; /* NULL: not pinned */
	bool see_all; /* may see and touch every session */
	double rate_per_s; /* requests per second; 0: no limit */
	double burst; /* requests allowed at once */
	bool metrics; /* may read /metrics */
	long long max_tokens_per_day; /* input plus output, per UTC day; 0: no budget */
	long long max_sessions_per_day; /* 0: no budget */
};

/* A list of names from the file (server_names, allowed_origins). */
#define CONFIG_MAX_NAMES 64
struct config_names {
	char *items[CONFIG_MAX_NAMES];
	size_t count;
};

/* One allowed upstream path prefix ("/api/v1/chat" covers it and what lies
 * below it) and the methods allowed there. */
struct config_route {
	char *prefix; /* no trailing slash */
	unsigned methods;
};

/* Everything the daemon reads from its file, defaults filled in. All strings
 * are owned by the struct and freed by config_free(). */
struct config {
	char *path; /* the file this came from */

	char *listen[CONFIG_MAX_LISTEN]; /* "host:port", "[v6]:port" or "unix:/path" */
	size_t listen_count;

	char *upstream_base_url; /* no trailing slash */
	char *upstream_api_key_file; /* NULL: use $LLAMA_CLOUD_API_KEY */
	struct config_project_key project_keys[CONFIG_MAX_PROJECT_KEYS];
	size_t project_key_count;
	char *upstream_ca_file; /* NULL: the system's trust store */
	long connect_timeout_ms;
	long request_timeout_ms;
	long max_response_bytes;
	long max_in_flight;
	long max_idle_connections; /* upstream connections kept for reuse */
	long max_upstream_connections; /* open to upstream at once; 0: no bound */
	long breaker_failures; /* upstream.breaker.failures: consecutive failures that open it; 0: never */
	long retries; /* upstream.retries: more attempts of a failed call where that is safe */
	long retry_base_ms; /* the backoff's first step */
	long retry_max_wait_ms; /* the longest Retry-After honoured */
	long breaker_open_ms; /* upstream.breaker.open_ms: how long it stays open before a probe */

	char *store_path;
	long store_map_size_mb;
	long store_max_queued_writes; /* writes waiting for the writer thread */
	long store_max_age_days; /* the janitor removes older sessions; 0: never */
	long store_janitor_interval_s; /* between two passes of the janitor */

	long max_body_bytes;
	long max_header_bytes; /* a request's head; past it 431 */
	long max_target_bytes; /* its request-target; past it 414 */
	long client_timeout_ms; /* sending an answer; the default of the two below */
	long header_timeout_ms; /* a head's first to last byte */
	long body_timeout_ms; /* a body's first to last byte */
	long keepalive_timeout_ms; /* an idle connection between requests */
	long drain_timeout_ms; /* how long a stop waits for requests in flight */
	long stream_buffer_bytes; /* output a stream may hold for a slow client */
	long max_event_bytes; /* one event of a relayed stream */
	long max_pending_output_bytes; /* a connection's unsent answers; past it no request is parsed */
	long stream_idle_timeout_ms;

	struct config_route routes[CONFIG_MAX_ROUTES];
	size_t route_count;

	/* TLS listeners: their addresses, the certificate chain and key (NULL
	 * key: the systemd credential tls_key), the CA that client
	 * certificates must chain to (NULL: none asked for), and the least
	 * version (12: TLS 1.2, 13: TLS 1.3). */
	char *tls_listen[CONFIG_MAX_LISTEN];
	size_t tls_listen_count;
	char *tls_cert_file;
	char *tls_key_file;
	char *tls_client_ca_file;
	int tls_min_version;

	struct config_client *clients; /* none: single-user mode */
	size_t client_count;

	/* Host names (no port) the daemon answers to besides loopback ones;
	 * in team mode, when set, the only ones. */
	struct config_names server_names;
	/* Origin values a request may carry in single-user mode (none by default). */
	struct config_names allowed_origins;

	long unix_socket_mode; /* for unix: listeners */
	char *unix_socket_group; /* NULL: the daemon's own */
	long max_connections;

	long idempotency_ttl_s; /* how long an Idempotency-Key is remembered */

	enum log_level log_level;
	char *access_log; /* "stderr", "off" or a file */

	/* OpenTelemetry: where spans go over OTLP/HTTP (NULL: no spans are
	 * recorded), the service name they carry, the share of new traces
	 * sampled (a client's sampled flag is honoured), the queue's bound,
	 * and the exporter's batch interval and deadline per POST. */
	char *otel_endpoint;
	char *otel_service_name;
	double otel_sample_ratio;
	long otel_max_queued_spans;
	long otel_export_interval_ms;
	long otel_timeout_ms;

	/* State shared with other daemons through Redis (NULL redis: none):
	 * its address, this daemon's name among them, each call's deadline,
	 * calls in flight at most, and failures in a row that count it down. */
	char *shared_redis;
	char *shared_instance;
	long shared_timeout_ms;
	long shared_max_in_flight;
	long shared_breaker_failures;
	long shared_stream_max_entries; /* the sessions stream keeps about this many */
	bool shared_budgets_refuse; /* budgets_when_unavailable = "refuse" (else "local") */
};

/* Parses an RFC 3339 UTC time ("2027-03-01T00:00:00Z", fractions of a
 * second allowed, "+00:00" for Z) into unix seconds. Returns 0 or -1. */
int config_parse_utc(const char *text, long long *out) __attribute__((warn_unused_result));

/* Error messages collected while loading, each "file:line: setting: reason". */
struct config_errors {
	char **lines;
	size_t count;
};

/* Loads and checks the file at path. On success returns a new config the
 * caller frees with config_free(). On failure returns NULL and fills errors
 * with every problem found (the caller frees them with
 * config_errors_free()). */
struct config *config_load(const char *path, struct config_errors *errors) __attribute__((warn_unused_result));

/* Like config_load() from text in memory; errors name it name. For tests
 * and the fuzzer; @include is not followed. */
struct config *config_load_text(const char *name, const char *text, struct config_errors *errors)
    __attribute__((warn_unused_result));

void config_free(struct config *config);

/* True when a route of config allows method (a config_method bit) on path. */
bool config_route_allows(const struct config *config, const char *path, unsigned method);
void config_errors_free(struct config_errors *errors);

#endif
