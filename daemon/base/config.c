/* config: loads and checks the libconfig file into a struct config. */
#include "base/config.h"

#include <arpa/inet.h>
#include <libconfig.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/address.h"
#include "base/config_private.h"

enum setting_kind {
	SETTING_INT,
	SETTING_STRING,
	SETTING_LISTEN,
	SETTING_ROUTES,
	SETTING_CLIENTS,
	SETTING_MODE,
	SETTING_LOG_LEVEL,
	SETTING_NAMES, /* a list of strings, into a struct config_names */
	SETTING_TLS_LISTEN,
	SETTING_PROJECT_KEYS,
	SETTING_TLS_VERSION,
	SETTING_RATIO, /* a number from 0 to 1, into a double */
	SETTING_URL, /* an http:// or https:// URL */
	SETTING_BUDGETS_WHEN_UNAVAILABLE,
};

/* One known setting: where it lives, its type, and its bounds. */
struct setting_spec {
	const char *group; /* NULL: top level */
	const char *name;
	enum setting_kind kind;
	size_t offset; /* into struct config */
	long min, max; /* SETTING_INT only */
};

#define AT(field) offsetof(struct config, field)
static const struct setting_spec config_specs[] = {
	{ NULL, "listen", SETTING_LISTEN, 0, 0, 0 },
	{ NULL, "routes", SETTING_ROUTES, 0, 0, 0 },
	{ NULL, "clients", SETTING_CLIENTS, 0, 0, 0 },
	{ NULL, "server_names", SETTING_NAMES, AT(server_names), 0, 0 },
	{ NULL, "allowed_origins", SETTING_NAMES, AT(allowed_origins), 0, 0 },
	{ "unix_socket", "mode", SETTING_MODE, AT(unix_socket_mode), 0, 0777 },
	{ "unix_socket", "group", SETTING_STRING, AT(unix_socket_group), 0, 0 },
	{ "upstream", "base_url", SETTING_STRING, AT(upstream_base_url), 0, 0 },
	{ "upstream", "api_key_file", SETTING_STRING, AT(upstream_api_key_file), 0, 0 },
	{ "upstream", "ca_file", SETTING_STRING, AT(upstream_ca_file), 0, 0 },
	{ "upstream", "project_keys", SETTING_PROJECT_KEYS, 0, 0, 0 },
	{ "upstream", "retries", SETTING_INT, AT(retries), 0, 10 },
	{ "upstream", "retry_base_ms", SETTING_INT, AT(retry_base_ms), 1, 60000 },
	{ "upstream", "retry_max_wait_ms", SETTING_INT, AT(retry_max_wait_ms), 0, 600000 },
	{ "upstream.breaker", "failures", SETTING_INT, AT(breaker_failures), 0, 1000000 },
	{ "upstream.breaker", "open_ms", SETTING_INT, AT(breaker_open_ms), 100, 600000 },
	{ "upstream", "connect_timeout_ms", SETTING_INT, AT(connect_timeout_ms), 1, 600000 },
	{ "upstream", "request_timeout_ms", SETTING_INT, AT(request_timeout_ms), 1, 3600000 },
	{ "upstream", "max_response_bytes", SETTING_INT, AT(max_response_bytes), 1024, 1L << 30 },
	{ "upstream", "max_in_flight", SETTING_INT, AT(max_in_flight), 1, 100000 },
	{ "upstream", "max_idle_connections", SETTING_INT, AT(max_idle_connections), 1, 100000 },
	{ "upstream", "max_connections", SETTING_INT, AT(max_upstream_connections), 0, 100000 },
	{ "upstream", "stream_idle_timeout_ms", SETTING_INT, AT(stream_idle_timeout_ms), 1000, 86400000 },
	{ "store", "path", SETTING_STRING, AT(store_path), 0, 0 },
	{ "store", "map_size_mb", SETTING_INT, AT(store_map_size_mb), 1, 1L << 20 },
	{ "store", "max_queued_writes", SETTING_INT, AT(store_max_queued_writes), 1, 10000000 },
	{ "store", "max_age_days", SETTING_INT, AT(store_max_age_days), 0, 36500 },
	{ "store", "janitor_interval_s", SETTING_INT, AT(store_janitor_interval_s), 1, 86400 },
	{ "limits", "max_body_bytes", SETTING_INT, AT(max_body_bytes), 2, 64L << 20 },
	{ "limits", "max_header_bytes", SETTING_INT, AT(max_header_bytes), 1024, 1L << 20 },
	{ "limits", "client_timeout_ms", SETTING_INT, AT(client_timeout_ms), 100, 3600000 },
	{ "limits", "max_target_bytes", SETTING_INT, AT(max_target_bytes), 256, 1L << 20 },
	{ "limits", "header_timeout_ms", SETTING_INT, AT(header_timeout_ms), 100, 3600000 },
	{ "limits", "body_timeout_ms", SETTING_INT, AT(body_timeout_ms), 100, 3600000 },
	{ "limits", "keepalive_timeout_ms", SETTING_INT, AT(keepalive_timeout_ms), 100, 3600000 },
	{ "limits", "max_connections", SETTING_INT, AT(max_connections), 16, 1000000 },
	{ "limits", "drain_timeout_ms", SETTING_INT, AT(drain_timeout_ms), 0, 3600000 },
	{ "limits", "stream_buffer_bytes", SETTING_INT, AT(stream_buffer_bytes), 4096, 64L << 20 },
	{ "limits", "max_event_bytes", SETTING_INT, AT(max_event_bytes), 1024, 64L << 20 },
	{ "limits", "max_pending_output_bytes", SETTING_INT, AT(max_pending_output_bytes), 4096, 1L << 30 },
	{ "idempotency", "ttl_s", SETTING_INT, AT(idempotency_ttl_s), 1, 30L * 86400 },
	{ "log", "level", SETTING_LOG_LEVEL, 0, 0, 0 },
	{ "log", "access_log", SETTING_STRING, AT(access_log), 0, 0 },
	{ "tls", "listen", SETTING_TLS_LISTEN, 0, 0, 0 },
	{ "tls", "cert_file", SETTING_STRING, AT(tls_cert_file), 0, 0 },
	{ "tls", "key_file", SETTING_STRING, AT(tls_key_file), 0, 0 },
	{ "tls", "client_ca_file", SETTING_STRING, AT(tls_client_ca_file), 0, 0 },
	{ "tls", "min_version", SETTING_TLS_VERSION, AT(tls_min_version), 0, 0 },
	{ "otel", "endpoint", SETTING_URL, AT(otel_endpoint), 0, 0 },
	{ "otel", "service_name", SETTING_STRING, AT(otel_service_name), 0, 0 },
	{ "otel", "sample_ratio", SETTING_RATIO, AT(otel_sample_ratio), 0, 0 },
	{ "otel", "max_queued_spans", SETTING_INT, AT(otel_max_queued_spans), 16, 1000000 },
	{ "otel", "export_interval_ms", SETTING_INT, AT(otel_export_interval_ms), 10, 60000 },
	{ "otel", "timeout_ms", SETTING_INT, AT(otel_timeout_ms), 100, 60000 },
	{ "shared", "redis", SETTING_STRING, AT(shared_redis), 0, 0 },
	{ "shared", "instance", SETTING_STRING, AT(shared_instance), 0, 0 },
	{ "shared", "timeout_ms", SETTING_INT, AT(shared_timeout_ms), 1, 10000 },
	{ "shared", "max_in_flight", SETTING_INT, AT(shared_max_in_flight), 1, 100000 },
	{ "shared", "breaker_failures", SETTING_INT, AT(shared_breaker_failures), 1, 1000 },
	{ "shared", "stream_max_entries", SETTING_INT, AT(shared_stream_max_entries), 1000, 100000000 },
	{ "shared", "budgets_when_unavailable", SETTING_BUDGETS_WHEN_UNAVAILABLE, 0, 0, 0 },
};
#undef AT
#define SPEC_COUNT (sizeof(config_specs) / sizeof(config_specs[0]))

static const char *const config_groups[] = { "upstream", "store", "limits", "idempotency", "log", "unix_socket", "tls",
	"otel", "shared" };
#define GROUP_COUNT (sizeof(config_groups) / sizeof(config_groups[0]))

/* Fills the defaults; returns -1 only when out of memory. */
static int
config_set_defaults(struct config *c)
{
	c->listen[0] = strdup("127.0.0.1:8787");
	c->listen_count = 1;
	c->upstream_base_url = strdup("https://api.cloud.llamaindex.ai");
	c->connect_timeout_ms = 5000;
	c->request_timeout_ms = 60000;
	c->max_response_bytes = 16L << 20;
	c->max_in_flight = -1; /* -1: limits.max_connections */
	c->max_idle_connections = 256;
	c->max_upstream_connections = -1; /* -1: 64 over https (HTTP/2), else no bound */
	c->store_path = strdup("/var/lib/llamachatd");
	c->store_map_size_mb = 16384; /* sparse: ~10 million sessions, costs nothing until used */
	c->store_max_queued_writes = 65536;
	c->store_max_age_days = 0; /* keep sessions for ever */
	c->store_janitor_interval_s = 3600;
	c->max_body_bytes = 1L << 20;
	c->max_header_bytes = 16384;
	c->client_timeout_ms = 30000;
	c->max_target_bytes = 8192;
	c->header_timeout_ms = -1; /* -1: client_timeout_ms */
	c->body_timeout_ms = -1;
	c->keepalive_timeout_ms = 60000;
	c->drain_timeout_ms = 10000;
	c->max_connections = 10000;
	c->unix_socket_mode = 0660;
	c->stream_buffer_bytes = 65536;
	c->max_event_bytes = 1L << 20;
	c->max_pending_output_bytes = 256L << 10;
	c->stream_idle_timeout_ms = 300000;
	c->idempotency_ttl_s = 86400;
	c->tls_min_version = 12;
	c->breaker_failures = 5;
	c->retries = 2;
	c->retry_base_ms = 100;
	c->retry_max_wait_ms = 2000;
	c->breaker_open_ms = 5000;
	c->otel_service_name = strdup("llamachatd");
	c->otel_sample_ratio = 1.0;
	c->otel_max_queued_spans = 8192;
	c->otel_export_interval_ms = 1000;
	c->otel_timeout_ms = 5000;
	c->shared_timeout_ms = 50;
	c->shared_max_in_flight = 1024;
	c->shared_breaker_failures = 3;
	c->shared_stream_max_entries = 100000;
	/* Only the chat resource, unless the file says otherwise. */
	c->routes[0].prefix = strdup("/api/v1/chat");
	c->routes[0].methods = CONFIG_METHOD_GET | CONFIG_METHOD_POST | CONFIG_METHOD_DELETE;
	c->route_count = 1;
	if (c->routes[0].prefix == NULL)
		return -1;
	c->log_level = LOG_LEVEL_INFO;
	c->access_log = strdup("stderr");
	if (c->listen[0] == NULL || c->upstream_base_url == NULL || c->store_path == NULL || c->access_log == NULL)
		return -1;
	return 0;
}

static void config_error_add(struct config_errors *errors, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
config_error_add(struct config_errors *errors, const char *fmt, ...)
{
	char line[512];
	va_list ap;
	char **grown;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	grown = realloc(errors->lines, (errors->count + 1) * sizeof(*grown));
	if (grown == NULL)
		return;
	errors->lines = grown;
	errors->lines[errors->count] = strdup(line);
	if (errors->lines[errors->count] != NULL)
		errors->count++;
}

/* Writes where a setting is, as people name it: "upstream.base_url",
 * "clients[1].name" (list items counted from 0, as libconfig does). */
static void
config_setting_path(const config_setting_t *setting, char *out, size_t size)
{
	const config_setting_t *parent = config_setting_parent(setting);
	size_t used;

	out[0] = '\0';
	if (parent != NULL && !config_setting_is_root(parent)) {
		config_setting_path(parent, out, size);
		used = strlen(out);
		if (config_setting_name(setting) != NULL)
			snprintf(out + used, size - used, ".%s", config_setting_name(setting));
		else
			snprintf(out + used, size - used, "[%d]", config_setting_index(setting));
	} else if (config_setting_name(setting) != NULL) {
		snprintf(out, size, "%s", config_setting_name(setting));
	}
}

void
config_setting_error(
    struct config_errors *errors, const char *path, const config_setting_t *setting, const char *fmt, ...)
{
	char reason[384];
	char name[128] = "";
	const char *file = config_setting_source_file(setting);
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(reason, sizeof(reason), fmt, ap);
	va_end(ap);
	config_setting_path(setting, name, sizeof(name));
	config_error_add(
	    errors, "%s:%u: %s: %s", file != NULL ? file : path, config_setting_source_line(setting), name, reason);
}

static const struct setting_spec *
config_find_spec(const char *group, const char *name)
{
	for (size_t i = 0; i < SPEC_COUNT; i++) {
		const struct setting_spec *s = &config_specs[i];
		bool same_group =
		    (group == NULL) ? s->group == NULL : (s->group != NULL && strcmp(s->group, group) == 0);
		if (same_group && strcmp(s->name, name) == 0)
			return s;
	}
	return NULL;
}

/* A group inside a group ("upstream.breaker"). */
static bool
config_is_nested(const char *name)
{
	return strcmp(name, "upstream.breaker") == 0;
}

static bool
config_is_group(const char *name)
{
	for (size_t i = 0; i < GROUP_COUNT; i++)
		if (strcmp(config_groups[i], name) == 0)
			return true;
	return false;
}

/* True when host (no port) names this machine: "localhost", 127.x.y.z or ::1. */
static bool
config_host_is_loopback(const char *host, size_t len)
{
	char name[64];
	struct in_addr v4;

	if (len == 0 || len >= sizeof(name))
		return false;
	memcpy(name, host, len);
	name[len] = '\0';
	if (strcmp(name, "localhost") == 0 || strcmp(name, "[::1]") == 0)
		return true;
	return inet_pton(AF_INET, name, &v4) == 1 && (ntohl(v4.s_addr) >> 24) == 127;
}

/* Accepts https:// anywhere, plain http:// only to a loopback host, so the key
 * never crosses a network in clear text. */
static const char *
config_check_base_url(const char *url)
{
	const char *host;
	size_t authority_len, host_len;
	bool plain;

	for (const char *p = url; *p != '\0'; p++)
		if ((unsigned char)*p <= ' ' || *p == 0x7f)
			return "must not contain spaces or control characters";
	if (strncmp(url, "https://", 8) == 0)
		host = url + 8, plain = false;
	else if (strncmp(url, "http://", 7) == 0)
		host = url + 7, plain = true;
	else
		return "must start with https:// (or http:// to a loopback address)";
	authority_len = strcspn(host, "/?#");
	if (authority_len == 0)
		return "has no host";
	if (host[authority_len] == '?' || host[authority_len] == '#')
		return "must not carry a query or fragment";
	if (memchr(host, '@', authority_len) != NULL)
		return "must not carry credentials";
	host_len = host[0] == '[' ? strcspn(host, "]") + 1 : strcspn(host, ":/");
	if (plain && !config_host_is_loopback(host, host_len))
		return "plain http:// is only allowed to a loopback address; use https://";
	return NULL;
}

static void
config_read_setting(
    struct config *c, const struct setting_spec *spec, const config_setting_t *s, struct config_errors *errors)
{
	int type = config_setting_type(s);

	switch (spec->kind) {
	case SETTING_LISTEN:
		config_read_listen(c, s, c->listen, &c->listen_count, errors);
		return;
	case SETTING_TLS_LISTEN:
		config_read_listen(c, s, c->tls_listen, &c->tls_listen_count, errors);
		return;
	case SETTING_TLS_VERSION: {
		const char *text = type == CONFIG_TYPE_STRING ? config_setting_get_string(s) : NULL;
		if (text != NULL && strcmp(text, "TLSv1.2") == 0)
			c->tls_min_version = 12;
		else if (text != NULL && strcmp(text, "TLSv1.3") == 0)
			c->tls_min_version = 13;
		else
			config_setting_error(errors, c->path, s, "must be \"TLSv1.2\" or \"TLSv1.3\"");
		return;
	}
	case SETTING_ROUTES:
		config_read_routes(c, s, errors);
		return;
	case SETTING_CLIENTS:
		config_read_clients(c, s, errors);
		return;
	case SETTING_PROJECT_KEYS:
		config_read_project_keys(c, s, errors);
		return;
	case SETTING_NAMES:
		config_read_names(c, s, (struct config_names *)((char *)c + spec->offset), errors);
		return;
	case SETTING_MODE: {
		const char *text = type == CONFIG_TYPE_STRING ? config_setting_get_string(s) : NULL;
		char *end;
		long mode = text != NULL ? strtol(text, &end, 8) : -1;
		if (text == NULL || text[0] == '\0' || *end != '\0' || mode < spec->min || mode > spec->max)
			config_setting_error(errors, c->path, s, "must be an octal mode in quotes, e.g. \"0660\"");
		else
			*(long *)((char *)c + spec->offset) = mode;
		return;
	}
	case SETTING_INT: {
		long long value;
		if (type != CONFIG_TYPE_INT && type != CONFIG_TYPE_INT64) {
			config_setting_error(errors, c->path, s, "must be an integer");
			return;
		}
		value = config_setting_get_int64(s);
		if (value < spec->min || value > spec->max) {
			config_setting_error(
			    errors, c->path, s, "must be from %ld to %ld, not %lld", spec->min, spec->max, value);
			return;
		}
		*(long *)((char *)c + spec->offset) = (long)value;
		return;
	}
	case SETTING_STRING: {
		const char *value;
		char **field = (char **)((char *)c + spec->offset);
		if (type != CONFIG_TYPE_STRING) {
			config_setting_error(errors, c->path, s, "must be a string");
			return;
		}
		value = config_setting_get_string(s);
		if (value[0] == '\0') {
			config_setting_error(errors, c->path, s, "must not be empty");
			return;
		}
		free(*field);
		*field = strdup(value);
		return;
	}
	case SETTING_BUDGETS_WHEN_UNAVAILABLE: {
		const char *text = type == CONFIG_TYPE_STRING ? config_setting_get_string(s) : NULL;
		if (text != NULL && (strcmp(text, "local") == 0 || strcmp(text, "refuse") == 0))
			c->shared_budgets_refuse = strcmp(text, "refuse") == 0;
		else
			config_setting_error(errors, c->path, s, "must be \"local\" or \"refuse\"");
		return;
	}
	case SETTING_RATIO: {
		double value;
		if (type == CONFIG_TYPE_FLOAT)
			value = config_setting_get_float(s);
		else if (type == CONFIG_TYPE_INT || type == CONFIG_TYPE_INT64)
			value = (double)config_setting_get_int64(s);
		else
			value = -1;
		if (!(value >= 0.0 && value <= 1.0))
			config_setting_error(errors, c->path, s, "must be a number from 0 to 1, e.g. 0.25");
		else
			*(double *)((char *)c + spec->offset) = value;
		return;
	}
	case SETTING_URL: {
		const char *text = type == CONFIG_TYPE_STRING ? config_setting_get_string(s) : NULL;
		char **field = (char **)((char *)c + spec->offset);
		size_t scheme = text == NULL            ? 0
		    : strncmp(text, "http://", 7) == 0  ? 7
		    : strncmp(text, "https://", 8) == 0 ? 8
		                                        : 0;
		if (scheme == 0 || text[scheme] == '\0' || text[scheme] == '/' ||
		    text[strcspn(text, " \t\r\n\"<>\\^`{|}")] != '\0' ||
		    memchr(text + scheme, '@', strcspn(text + scheme, "/")) != NULL) {
			config_setting_error(errors, c->path, s,
			    "must be an http:// or https:// URL with a host and no credentials, e.g. "
			    "\"http://127.0.0.1:4318/v1/traces\"");
			return;
		}
		free(*field);
		*field = strdup(text);
		return;
	}
	case SETTING_LOG_LEVEL:
		if (type != CONFIG_TYPE_STRING || log_level_parse(config_setting_get_string(s), &c->log_level) != 0)
			config_setting_error(
			    errors, c->path, s, "must be one of \"error\", \"warning\", \"info\", \"debug\"");
		return;
	}
}

/* Walks every setting in the file: known ones are read and checked, unknown
 * ones are reported, so a typo never silently falls back to a default. */
static void
config_read_all(struct config *c, config_t *cfg, struct config_errors *errors)
{
	config_setting_t *root = config_root_setting(cfg);
	int count = config_setting_length(root);

	for (int i = 0; i < count; i++) {
		config_setting_t *s = config_setting_get_elem(root, (unsigned)i);
		const char *name = config_setting_name(s);
		const struct setting_spec *spec = config_find_spec(NULL, name);
		if (spec != NULL) {
			config_read_setting(c, spec, s, errors);
			continue;
		}
		if (!config_is_group(name)) {
			config_setting_error(errors, c->path, s, "unknown setting");
			continue;
		}
		if (config_setting_type(s) != CONFIG_TYPE_GROUP) {
			config_setting_error(errors, c->path, s, "must be a group { ... }");
			continue;
		}
		int members = config_setting_length(s);
		for (int j = 0; j < members; j++) {
			config_setting_t *m = config_setting_get_elem(s, (unsigned)j);
			char nested[64];
			spec = config_find_spec(name, config_setting_name(m));
			/* One level deeper: upstream.breaker = { ... }. */
			snprintf(nested, sizeof(nested), "%s.%s", name, config_setting_name(m));
			if (spec == NULL && config_setting_type(m) == CONFIG_TYPE_GROUP && config_is_nested(nested)) {
				for (int k = 0; k < config_setting_length(m); k++) {
					config_setting_t *inner = config_setting_get_elem(m, (unsigned)k);
					spec = config_find_spec(nested, config_setting_name(inner));
					if (spec == NULL)
						config_setting_error(errors, c->path, inner, "unknown setting");
					else
						config_read_setting(c, spec, inner, errors);
				}
				continue;
			}
			if (spec == NULL)
				config_setting_error(errors, c->path, m, "unknown setting");
			else
				config_read_setting(c, spec, m, errors);
		}
	}

	/* Without clients nobody authenticates: no open gateway by accident. */
	if (c->client_count == 0) {
		const config_setting_t *listen = config_lookup(cfg, "listen"), *tls = config_lookup(cfg, "tls.listen");
		for (size_t i = 0; i < c->listen_count + c->tls_listen_count; i++) {
			bool is_tls = i >= c->listen_count;
			const char *text = is_tls ? c->tls_listen[i - c->listen_count] : c->listen[i];
			struct address addr;
			const char *why;
			if (address_parse(text, &addr, &why) == 0 && !address_is_local(&addr))
				config_setting_error(errors, c->path, is_tls ? tls : listen,
				    "\"%s\" is not loopback: without clients (single-user mode) llamachatd listens on "
				    "loopback and unix sockets only; configure clients to serve a network",
				    text);
		}
	}
	if (config_lookup(cfg, "shared") != NULL && config_lookup(cfg, "shared.redis") == NULL)
		config_setting_error(errors, c->path, config_lookup(cfg, "shared"),
		    "shared needs redis (\"unix:/path\" or \"address:port\")");
	if (config_lookup(cfg, "shared") != NULL && config_lookup(cfg, "shared.instance") == NULL)
		config_setting_error(errors, c->path, config_lookup(cfg, "shared"),
		    "shared needs instance (this daemon's name, unique among those sharing the Redis)");
	if (c->shared_instance != NULL &&
	    (strlen(c->shared_instance) > 64 ||
	        strspn(c->shared_instance, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") !=
	            strlen(c->shared_instance)))
		config_setting_error(
		    errors, c->path, config_lookup(cfg, "shared.instance"), "must be 1 to 64 of A-Z a-z 0-9 . _ -");
	if (c->shared_redis != NULL && c->client_count == 0)
		config_setting_error(errors, c->path, config_lookup(cfg, "shared.redis"),
		    "shared state is for a team gateway: it needs clients");
	if (config_lookup(cfg, "otel.endpoint") == NULL && config_lookup(cfg, "otel") != NULL)
		config_setting_error(errors, c->path, config_lookup(cfg, "otel"),
		    "otel needs an endpoint (the collector's OTLP/HTTP traces URL)");
	/* A TLS listener needs its certificate; the key may be the credential. */
	if (c->tls_listen_count > 0 && c->tls_cert_file == NULL)
		config_setting_error(errors, c->path, config_lookup(cfg, "tls.listen"),
		    "tls.listen needs tls.cert_file (the certificate chain, PEM)");
	if (c->tls_listen_count == 0 && (c->tls_cert_file != NULL || c->tls_client_ca_file != NULL))
		config_setting_error(errors, c->path, config_lookup(cfg, "tls"), "tls needs a listen list to serve on");

	config_setting_t *url = config_lookup(cfg, "upstream.base_url");
	if (url != NULL && c->upstream_base_url != NULL) {
		const char *why = config_check_base_url(c->upstream_base_url);
		size_t len = strlen(c->upstream_base_url);
		if (why != NULL)
			config_setting_error(errors, c->path, url, "%s", why);
		while (len > 0 && c->upstream_base_url[len - 1] == '/')
			c->upstream_base_url[--len] = '\0';
	}
}

/* Loads from the file at path, or (text not NULL) from text, named path in
 * the errors. */
static struct config *
config_load_from(const char *path, const char *text, struct config_errors *errors)
{
	struct config *c;
	config_t cfg;

	errors->lines = NULL;
	errors->count = 0;
	c = calloc(1, sizeof(*c));
	if (c == NULL || (c->path = strdup(path)) == NULL || config_set_defaults(c) != 0) {
		config_error_add(errors, "%s: out of memory", path);
		config_free(c);
		return NULL;
	}

	config_init(&cfg);
	/* An @include names a file next to the one that includes it, wherever
	 * the daemon runs from. */
	if (text == NULL) {
		char *dir = strdup(path), *slash = dir != NULL ? strrchr(dir, '/') : NULL;
		if (slash != NULL)
			*slash = '\0';
		config_set_include_dir(&cfg, slash != NULL ? (dir[0] != '\0' ? dir : "/") : ".");
		free(dir); /* libconfig keeps its own copy */
	}
	if (!(text != NULL ? config_read_string(&cfg, text) : config_read_file(&cfg, path))) {
		if (config_error_type(&cfg) == CONFIG_ERR_FILE_IO)
			config_error_add(errors, "%s: cannot read the file", path);
		else
			config_error_add(errors, "%s:%d: %s",
			    config_error_file(&cfg) != NULL ? config_error_file(&cfg) : path, config_error_line(&cfg),
			    config_error_text(&cfg));
	} else {
		config_read_all(c, &cfg, errors);
	}
	config_destroy(&cfg);
	/* client_timeout_ms is the umbrella for the deadlines not set alone. */
	if (c->header_timeout_ms < 0)
		c->header_timeout_ms = c->client_timeout_ms;
	if (c->body_timeout_ms < 0)
		c->body_timeout_ms = c->client_timeout_ms;
	if (c->max_upstream_connections < 0)
		c->max_upstream_connections = strncasecmp(c->upstream_base_url, "https://", 8) == 0 ? 64 : 0;
	if (c->max_in_flight < 0)
		c->max_in_flight = c->max_connections; /* a stream for every connection */
	if (c->max_target_bytes > c->max_header_bytes)
		c->max_target_bytes = c->max_header_bytes;

	if (errors->count > 0) {
		config_free(c);
		return NULL;
	}
	return c;
}

struct config *
config_load(const char *path, struct config_errors *errors)
{
	return config_load_from(path, NULL, errors);
}

struct config *
config_load_text(const char *name, const char *text, struct config_errors *errors)
{
	return config_load_from(name, text, errors);
}

void
config_free(struct config *c)
{
	if (c == NULL)
		return;
	for (size_t i = 0; i < c->listen_count; i++)
		free(c->listen[i]);
	for (size_t i = 0; i < c->tls_listen_count; i++)
		free(c->tls_listen[i]);
	free(c->tls_cert_file);
	free(c->tls_key_file);
	free(c->tls_client_ca_file);
	free(c->otel_endpoint);
	free(c->otel_service_name);
	free(c->shared_redis);
	free(c->shared_instance);
	config_free_routes(c);
	config_free_clients(c);
	for (size_t i = 0; i < c->project_key_count; i++) {
		free(c->project_keys[i].project_id);
		free(c->project_keys[i].api_key_file);
		free(c->project_keys[i].credential);
	}
	for (size_t i = 0; i < c->server_names.count; i++)
		free(c->server_names.items[i]);
	for (size_t i = 0; i < c->allowed_origins.count; i++)
		free(c->allowed_origins.items[i]);
	free(c->unix_socket_group);
	free(c->access_log);
	free(c->path);
	free(c->upstream_base_url);
	free(c->upstream_api_key_file);
	free(c->upstream_ca_file);
	free(c->store_path);
	free(c);
}

void
config_errors_free(struct config_errors *errors)
{
	for (size_t i = 0; i < errors->count; i++)
		free(errors->lines[i]);
	free(errors->lines);
	errors->lines = NULL;
	errors->count = 0;
}
