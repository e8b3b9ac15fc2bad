/* main: command line, start-up order, signals and the event loop of llamachatd. */
/* The top (the .c files of daemon/ itself): start-up, signals, reload, systemd, the /metrics
 * renderer and /healthz. May include every layer; nothing includes it.
 * The layers below, top to bottom: server, chat, gate and upstream, http
 * and store, base (scripts/check-layers.sh checks it; docs/architecture.md
 * has the map). */
#include <curl/curl.h>
#include <event2/event.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include "base/clock.h"
#include "gate/apikey.h"
#include "gate/budget.h"
#include "chat/chat.h"
#include "gate/clients.h"
#include "base/config.h"
#include "gate/idempotency.h"
#include "store/janitor.h"
#include "http/access.h"
#include "base/log.h"
#include "base/counters.h"
#include "health.h"
#include "metrics.h"
#include "notify.h"
#include "chat/relay.h"
#include "chat/retry.h"
#include "http/http_tls.h"
#include "server/server.h"
#include "store/store.h"
#include "upstream/upstream.h"
#include "tracing.h"
#include "shared/shared.h"
#include "sharing.h"

#ifndef LLAMACHATD_VERSION
#define LLAMACHATD_VERSION "unknown"
#endif

#define DRAIN_CHECK_MS 20

/* Everything the running daemon holds, freed in reverse order by daemon_stop(). */
struct daemon {
	struct config *config;
	struct event_base *base;
	struct store *store;
	struct janitor *janitor;
	struct budgets *budgets; /* what each client used today; outlives reloads */
	long max_age_days; /* what the janitor's session sweep reads; reloadable */
	long idempotency_ttl_s; /* what the key sweep and the chat read; reloadable */
	enum apikey_source key_source; /* where the key in force came from */
	struct upstream *upstream;
	struct relay_engine *relays;
	struct request_counters requests;
	struct metrics_sources metrics;
	struct access_log *access;
	struct tracing tracing; /* OpenTelemetry spans; queue NULL: off */
	struct shared *shared; /* state shared through Redis; NULL: none */
	struct sharing *sharing; /* budgets summed through it */
	struct chat *chat;
	struct server *server;
	struct event *sigterm, *sigint, *sighup;
	struct event *drain_check;
	struct notify *notify;
	bool draining;
	struct timeval drain_deadline;
};

static void
usage(FILE *out)
{
	fprintf(out,
	    "usage: llamachatd [-t] [-c FILE]\n"
	    "\n"
	    "A caching proxy for the LlamaCloud chat API: clients call it instead of the\n"
	    "cloud, it forwards their calls with the one real API key and remembers every\n"
	    "chat session in a local LMDB store.\n"
	    "\n"
	    "  -c, --config FILE   the configuration file (default %s)\n"
	    "  -t, --test-config   check the configuration, the API key source and the TLS\n"
	    "                      certificate and key (warning 14 days before expiry), then exit\n"
	    "      --hash-token [--expires DATE] [--not-before DATE]\n"
	    "                      read a client token on standard input and print its line\n"
	    "                      for the clients list (with dates: its tokens entry;\n"
	    "                      DATE is RFC 3339 UTC, e.g. 2027-03-01T00:00:00Z)\n"
	    "      --hash-cert FILE  print the clients-list line of the client certificate\n"
	    "                      in FILE (PEM): its cert_sha256\n"
	    "  -h, --help          show this help and exit\n"
	    "  -V, --version       show the version and exit\n"
	    "\n"
	    "The API key is read from the systemd credential %s, else from\n"
	    "upstream.api_key_file, else from $%s; never from the command line.\n"
	    "Signals: SIGHUP reloads the configuration, the key and the clients (a bad\n"
	    "configuration is refused and the one in force stays); SIGTERM or SIGINT stop\n"
	    "after requests in flight finish (a second one stops at once).\n",
	    CONFIG_DEFAULT_PATH, APIKEY_CREDENTIAL, APIKEY_ENV);
}

static struct config *
load_config_or_report(const char *path)
{
	struct config_errors errors;
	struct config *config = config_load(path, &errors);

	for (size_t i = 0; i < errors.count; i++)
		fprintf(stderr, "llamachatd: %s\n", errors.lines[i]);
	config_errors_free(&errors);
	return config;
}

static long daemon_in_flight(const struct daemon *d);

/* GET /metrics: every module's counters, rendered. */
static void
daemon_render_metrics(struct evbuffer *out, void *arg)
{
	struct daemon *d = arg;

	metrics_render(&d->metrics, out);
}

/* GET /healthz (show_counts: for a caller who may read /metrics). */
static void
daemon_answer_health(struct request *req, bool show_counts, void *arg)
{
	struct daemon *d = arg;

	health_reply(req, d->store, d->upstream, d->shared, d->chat, d->metrics.started, show_counts);
}

/* The STATUS= line systemd shows. */
static void
daemon_status_line(char *line, unsigned long size, void *arg)
{
	struct daemon *d = arg;

	snprintf(line, size, "%ld request(s) in flight, %ld stream(s), %ld session(s) stored", daemon_in_flight(d),
	    relay_engine_active(d->relays), store_count(d->store));
}

/* Client requests not answered yet: chat calls, streams, passed-through calls. */
static long
daemon_in_flight(const struct daemon *d)
{
	return chat_pending(d->chat) + relay_engine_active(d->relays);
}

static void
daemon_exit_loop_when_drained(evutil_socket_t fd, short what, void *arg)
{
	struct daemon *d = arg;
	struct timeval now;

	(void)fd;
	(void)what;
	event_base_gettimeofday_cached(d->base, &now);
	if (daemon_in_flight(d) == 0) {
		event_base_loopexit(d->base, NULL);
	} else if (evutil_timercmp(&now, &d->drain_deadline, >=)) {
		log_warnx("stopping with %ld request(s) still in flight", daemon_in_flight(d));
		event_base_loopexit(d->base, NULL);
	}
}

static void
daemon_on_stop_signal(evutil_socket_t sig, short what, void *arg)
{
	struct daemon *d = arg;
	struct timeval now, drain = clock_timeval_ms(d->config->drain_timeout_ms);
	struct timeval every = clock_timeval_ms(DRAIN_CHECK_MS);

	(void)what;
	if (d->draining) {
		log_info("signal %d again: stopping now", (int)sig);
		event_base_loopexit(d->base, NULL);
		return;
	}
	d->draining = true;
	notify_stopping();
	log_info("signal %d: no longer accepting; stopping once %ld request(s) in flight finish", (int)sig,
	    daemon_in_flight(d));
	server_stop_accepting(d->server);
	event_base_gettimeofday_cached(d->base, &now);
	evutil_timeradd(&now, &drain, &d->drain_deadline);
	d->drain_check = event_new(d->base, -1, EV_PERSIST, daemon_exit_loop_when_drained, d);
	if (d->drain_check == NULL || event_add(d->drain_check, &every) != 0)
		event_base_loopexit(d->base, NULL);
	else
		daemon_exit_loop_when_drained(-1, 0, d);
}

/* Client connections are capped through the open-file limit: set it to
 * what max_connections needs, plus room for upstream calls and the store. */
static void
daemon_raise_file_limit(const struct config *config)
{
	struct rlimit limit;
	rlim_t wanted = (rlim_t)(config->max_connections + config->max_in_flight + 64);

	if (getrlimit(RLIMIT_NOFILE, &limit) != 0)
		return;
	if (limit.rlim_max != RLIM_INFINITY && wanted > limit.rlim_max) {
		/* A relayed stream holds two: its client and its upstream call. */
		unsigned long long room = limit.rlim_max > 64 ? (unsigned long long)limit.rlim_max - 64 : 0;
		log_warnx("limits.max_connections: the open-file limit allows only %llu descriptors, so this "
		          "daemon holds about %llu relayed streams at once, not %ld; raise LimitNOFILE (ulimit -n) "
		          "to %llu for all of them",
		    (unsigned long long)limit.rlim_max, room / 2, config->max_connections, (unsigned long long)wanted);
		wanted = limit.rlim_max;
	}
	limit.rlim_cur = wanted;
	if (setrlimit(RLIMIT_NOFILE, &limit) != 0)
		log_warn("cannot set the open-file limit to %llu", (unsigned long long)wanted);
}

/* Settings a reload cannot change: they are bound into listeners, the
 * store or the engines at start. */
static void
daemon_warn_about_restart_settings(const struct config *old, const struct config *new)
{
	bool listen_changed = old->listen_count != new->listen_count;

	for (size_t i = 0; !listen_changed && i < old->listen_count; i++)
		listen_changed = strcmp(old->listen[i], new->listen[i]) != 0;
	if (listen_changed)
		log_warnx("reload: listen changed; it takes effect at the next restart");
	if (strcmp(old->store_path, new->store_path) != 0 || old->store_map_size_mb != new->store_map_size_mb ||
	    old->store_max_queued_writes != new->store_max_queued_writes ||
	    old->store_janitor_interval_s != new->store_janitor_interval_s)
		log_warnx("reload: store settings changed; they take effect at the next restart");
	if (strcmp(old->upstream_base_url, new->upstream_base_url) != 0 ||
	    old->connect_timeout_ms != new->connect_timeout_ms || old->request_timeout_ms != new->request_timeout_ms ||
	    old->max_response_bytes != new->max_response_bytes || old->max_in_flight != new->max_in_flight ||
	    old->max_idle_connections != new->max_idle_connections ||
	    old->max_upstream_connections != new->max_upstream_connections ||
	    old->stream_idle_timeout_ms != new->stream_idle_timeout_ms)
		log_warnx("reload: upstream settings other than the key changed; they take effect at the next restart");
	if (old->max_body_bytes != new->max_body_bytes || old->max_header_bytes != new->max_header_bytes ||
	    old->client_timeout_ms != new->client_timeout_ms || old->stream_buffer_bytes != new->stream_buffer_bytes ||
	    old->max_event_bytes != new->max_event_bytes || old->max_connections != new->max_connections)
		log_warnx("reload: limits other than drain_timeout_ms changed; they take effect at the next restart");
}

/* Reads every project key of config into keys (and their ids into
 * projects). Returns 0, or -1 with the reason in why (nothing to free). */
static int
daemon_load_project_keys(const struct config *config, const char **projects, char **keys, char *why, size_t why_size)
{
	for (size_t i = 0; i < config->project_key_count; i++) {
		const struct config_project_key *k = &config->project_keys[i];
		char reason[320];
		projects[i] = k->project_id;
		if (apikey_load_project(k->api_key_file, k->credential, &keys[i], reason, sizeof(reason)) != 0) {
			snprintf(why, why_size, "the key of project %s: %s", k->project_id, reason);
			while (i-- > 0)
				apikey_free(keys[i]);
			return -1;
		}
	}
	return 0;
}

/* The reload proper, with the config just read (NULL, with its errors,
 * when it did not load). */
static void
daemon_reload_with(struct daemon *d, struct config *fresh, struct config_errors *errors)
{
	enum apikey_source source;
	char why[512];
	char *key = NULL;
	const char *projects[CONFIG_MAX_PROJECT_KEYS];
	char *keys[CONFIG_MAX_PROJECT_KEYS] = { NULL };

	if (fresh == NULL) {
		for (size_t i = 0; i < errors->count; i++)
			log_errx("reload: %s", errors->lines[i]);
		config_errors_free(errors);
		log_errx("reload refused: the configuration in force stays");
		return;
	}
	if (apikey_load(fresh->upstream_api_key_file, &key, &source, why, sizeof(why)) != 0) {
		log_errx("reload refused: %s; the configuration in force stays", why);
		config_free(fresh);
		return;
	}
	/* A key file or credential that went away is a mistake, not a wish to
	 * run on with a key nobody can see any more, nor without one. */
	if (source == APIKEY_SOURCE_NONE && fresh->project_key_count == 0 &&
	    (d->key_source == APIKEY_SOURCE_FILE || d->key_source == APIKEY_SOURCE_CREDENTIAL)) {
		log_errx("reload refused: the key in force came from %s, and the new configuration has no key "
		         "source (upstream.api_key_file removed, or the file or credential gone); the configuration "
		         "in force stays",
		    d->key_source == APIKEY_SOURCE_FILE ? "upstream.api_key_file" : "the systemd credential");
		config_free(fresh);
		return;
	}
	if (daemon_load_project_keys(fresh, projects, keys, why, sizeof(why)) != 0) {
		log_errx("reload refused: %s; the configuration in force stays", why);
		apikey_free(key);
		config_free(fresh);
		return;
	}
	if (server_reload(d->server, fresh, why, sizeof(why)) != 0) {
		log_errx("reload refused: %s; the configuration in force stays", why);
		apikey_free(key);
		for (size_t i = 0; i < fresh->project_key_count; i++)
			apikey_free(keys[i]);
		config_free(fresh);
		return;
	}
	/* Budgets change at once; what each client used today stays. */
	if (budgets_sync(d->budgets, fresh, d->store, clock_unix_us()) != 0)
		log_errx("reload: out of memory: the budgets in force stay");
	daemon_warn_about_restart_settings(d->config, fresh);
	tracing_warn_about_restart_settings(d->config, fresh);
	if ((d->config->shared_redis == NULL) != (fresh->shared_redis == NULL) ||
	    (fresh->shared_redis != NULL &&
	        (strcmp(d->config->shared_redis, fresh->shared_redis) != 0 ||
	            strcmp(d->config->shared_instance, fresh->shared_instance) != 0 ||
	            d->config->shared_timeout_ms != fresh->shared_timeout_ms ||
	            d->config->shared_max_in_flight != fresh->shared_max_in_flight ||
	            d->config->shared_breaker_failures != fresh->shared_breaker_failures ||
	            d->config->shared_stream_max_entries != fresh->shared_stream_max_entries ||
	            d->config->shared_budgets_refuse != fresh->shared_budgets_refuse)))
		log_warnx("reload: shared settings changed; they take effect at the next restart");
	access_log_set_tracing(d->access, d->tracing.queue, fresh->otel_sample_ratio);
	/* The old keys are wiped; calls in flight keep the header they had. */
	if (source != APIKEY_SOURCE_NONE || d->key_source != APIKEY_SOURCE_ENV) {
		upstream_set_keys(d->upstream, key, projects, keys, fresh->project_key_count);
		d->key_source = source;
	} else {
		upstream_set_project_keys(d->upstream, projects, keys, fresh->project_key_count);
		log_warnx("reload: the default key came from the environment, which cannot change under a running "
		          "process; it stays");
	}
	log_init(fresh->log_level, getenv("JOURNAL_STREAM") != NULL);
	if (fresh->store_max_age_days != d->max_age_days || fresh->idempotency_ttl_s != d->idempotency_ttl_s) {
		d->max_age_days = fresh->store_max_age_days;
		d->idempotency_ttl_s = fresh->idempotency_ttl_s;
		janitor_sweep_now(d->janitor);
	}
	config_free(d->config);
	d->config = fresh;
	log_info("reloaded %s: %zu client(s), %zu route(s)", fresh->path, fresh->client_count, fresh->route_count);
	clients_warn_expiring(fresh, clock_unix_us() / 1000000);
}

/* SIGHUP: the config file, the key and the clients, all or nothing. Calls
 * in flight finish with the key and client they started with. systemd hears
 * RELOADING=1 first and READY=1 when it is over, refused or not. */
static void
daemon_reload(struct daemon *d)
{
	struct config_errors errors;

	notify_reloading();
	daemon_reload_with(d, config_load(d->config->path, &errors), &errors);
	notify_ready(d->notify);
}

static void
daemon_on_sighup(evutil_socket_t sig, short what, void *arg)
{
	(void)sig;
	(void)what;
	daemon_reload(arg);
}

static void
daemon_stop(struct daemon *d)
{
	sigset_t stops;

	/* A stop signal that comes now, while we tear down, would find its
	 * handler gone (freeing the events restores the default, which kills):
	 * keep it pending instead; the exit discards it. */
	sigemptyset(&stops);
	sigaddset(&stops, SIGTERM);
	sigaddset(&stops, SIGINT);
	sigaddset(&stops, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &stops, NULL);
	/* Waiting clients are answered before their connections close; writes
	 * already queued commit when the store closes. Requests waiting on
	 * Redis first, while everything they go on to is still there. */
	shared_free(d->shared);
	sharing_free(d->sharing); /* after: it takes shared's last answers */
	relay_engine_free(d->relays);
	chat_free(d->chat);
	server_free(d->server);
	access_log_free(d->access);
	upstream_free(d->upstream);
	tracing_stop(&d->tracing); /* nothing records spans any more */
	janitor_free(d->janitor);
	budgets_free(d->budgets);
	store_close(d->store);
	if (d->drain_check != NULL)
		event_free(d->drain_check);
	notify_free(d->notify);
	if (d->sigterm != NULL)
		event_free(d->sigterm);
	if (d->sigint != NULL)
		event_free(d->sigint);
	if (d->sighup != NULL)
		event_free(d->sighup);
	if (d->base != NULL)
		event_base_free(d->base);
}

static int
daemon_start(struct daemon *d)
{
	struct upstream_settings settings = {
		.base_url = d->config->upstream_base_url,
		.ca_file = d->config->upstream_ca_file,
		.connect_timeout_ms = d->config->connect_timeout_ms,
		.request_timeout_ms = d->config->request_timeout_ms,
		.max_response_bytes = d->config->max_response_bytes,
		.max_in_flight = d->config->max_in_flight,
		.max_idle_connections = d->config->max_idle_connections,
		.max_connections = d->config->max_upstream_connections,
		.breaker_failures = d->config->breaker_failures,
		.breaker_open_ms = d->config->breaker_open_ms,
	};
	struct chat_settings chat_settings = {
		.budgets = NULL, /* once created, below */
		.idempotency_ttl_s = &d->idempotency_ttl_s,
		.max_body_bytes = d->config->max_body_bytes,
		.max_event_bytes = (size_t)d->config->max_event_bytes,
		.retries = d->config->retries,
		.retry_base_ms = d->config->retry_base_ms,
		.retry_max_wait_ms = d->config->retry_max_wait_ms,
		.request_timeout_ms = d->config->request_timeout_ms,
	};
	enum apikey_source source;
	char why[512];
	char *key = NULL;
	const char *projects[CONFIG_MAX_PROJECT_KEYS];
	char *keys[CONFIG_MAX_PROJECT_KEYS] = { NULL };

	if (apikey_load(d->config->upstream_api_key_file, &key, &source, why, sizeof(why)) != 0) {
		log_errx("%s", why);
		return -1;
	}
	if (daemon_load_project_keys(d->config, projects, keys, why, sizeof(why)) != 0) {
		apikey_free(key);
		log_errx("%s", why);
		return -1;
	}
	daemon_raise_file_limit(d->config);
	if ((d->base = event_base_new()) == NULL || event_base_priority_init(d->base, 2) != 0) {
		apikey_free(key);
		for (size_t i = 0; i < d->config->project_key_count; i++)
			apikey_free(keys[i]);
		log_errx("cannot create the event loop");
		return -1;
	}
	if ((d->upstream = upstream_create(d->base, &settings, why, sizeof(why))) == NULL) {
		apikey_free(key);
		for (size_t i = 0; i < d->config->project_key_count; i++)
			apikey_free(keys[i]);
		log_errx("%s", why);
		return -1;
	}
	if (key == NULL && d->config->project_key_count == 0)
		log_warnx("no LlamaCloud API key: set $%s or upstream.api_key_file; "
		          "lookups are served from the store, calls that need upstream get 503",
		    APIKEY_ENV);
	upstream_set_keys(d->upstream, key, projects, keys, d->config->project_key_count);
	d->key_source = source;
	if ((d->store = store_open(d->base, d->config->store_path, (size_t)d->config->store_map_size_mb,
	         (size_t)d->config->store_max_queued_writes, why, sizeof(why))) == NULL) {
		log_errx("%s", why);
		return -1;
	}
	if ((d->budgets = budgets_create()) == NULL ||
	    budgets_sync(d->budgets, d->config, d->store, clock_unix_us()) != 0) {
		log_errx("out of memory");
		return -1;
	}
	chat_settings.budgets = d->budgets;
	chat_settings.base = d->base;
	d->max_age_days = d->config->store_max_age_days;
	d->idempotency_ttl_s = d->config->idempotency_ttl_s;
	if ((d->janitor = janitor_create(d->base, d->store, d->config->store_janitor_interval_s * 1000)) == NULL ||
	    janitor_add_sweep(d->janitor, JANITOR_SESSIONS, STORE_SESSIONS, "A", 1, janitor_session_active,
	        janitor_session_expired, &d->max_age_days) != 0 ||
	    janitor_add_sweep(d->janitor, IDEMPOTENCY_SWEEP, STORE_KEYS, IDEMPOTENCY_INDEX_PREFIX, 1, NULL,
	        idempotency_sweep_expired, &d->idempotency_ttl_s) != 0) {
		log_errx("out of memory");
		return -1;
	}
	if ((d->relays = relay_engine_create(d->base, d->upstream, (size_t)d->config->stream_buffer_bytes,
	         d->config->stream_idle_timeout_ms)) == NULL ||
	    (d->chat = chat_create(d->upstream, d->store, d->relays, &chat_settings)) == NULL) {
		log_errx("out of memory");
		return -1;
	}
	{
		struct retry_policy retry = { d->config->retries, d->config->retry_base_ms,
			d->config->retry_max_wait_ms, d->config->request_timeout_ms };
		relay_engine_set_retries(d->relays, &retry);
	}
	if ((d->access = access_log_create(d->config->access_log, &d->requests, why, sizeof(why))) == NULL ||
	    tracing_start(&d->tracing, d->config, why, sizeof(why)) != 0) {
		log_errx("%s", why);
		return -1;
	}
	access_log_set_tracing(d->access, d->tracing.queue, d->config->otel_sample_ratio);
	upstream_set_spans(d->upstream, d->tracing.queue);
	if (d->config->shared_redis != NULL) {
		struct shared_settings shared_settings = {
			.redis = d->config->shared_redis,
			.instance = d->config->shared_instance,
			.timeout_ms = d->config->shared_timeout_ms,
			.max_in_flight = d->config->shared_max_in_flight,
			.breaker_failures = d->config->shared_breaker_failures,
			.stream_max_entries = d->config->shared_stream_max_entries,
		};
		if ((d->shared = shared_create(d->base, &shared_settings, why, sizeof(why))) == NULL) {
			log_errx("%s", why);
			return -1;
		}
		chat_set_shared(d->chat, d->shared, d->config->shared_max_in_flight);
		chat_follow_start(d->chat);
		if ((d->sharing = sharing_create(
		         d->base, d->shared, d->budgets, d->chat, d->config->shared_budgets_refuse)) == NULL) {
			log_errx("out of memory");
			return -1;
		}
	}
	struct server_parts parts = {
		.chat = d->chat,
		.relays = d->relays,
		.access = d->access,
		.render_metrics = daemon_render_metrics,
		.answer_health = daemon_answer_health,
		.render_arg = d,
		.budgets = d->budgets,
		.instances = d->sharing != NULL ? sharing_instances(d->sharing) : NULL,
		.shared = d->shared,
	};
	double started = clock_monotonic_s();
	if ((d->server = server_create(d->base, d->config, &parts, why, sizeof(why))) == NULL) {
		log_errx("%s", why);
		return -1;
	}
	d->metrics = (struct metrics_sources){
		.requests = &d->requests,
		.chat = d->chat,
		.relays = d->relays,
		.store = d->store,
		.janitor = d->janitor,
		.budgets = d->budgets,
		.upstream = d->upstream,
		.server = d->server,
		.config = &d->config,
		.spans = d->tracing.queue,
		.shared = d->shared,
		.instances = d->sharing != NULL ? sharing_instances(d->sharing) : NULL,
		.started = started,
	};
	d->sigterm = evsignal_new(d->base, SIGTERM, daemon_on_stop_signal, d);
	d->sigint = evsignal_new(d->base, SIGINT, daemon_on_stop_signal, d);
	d->sighup = evsignal_new(d->base, SIGHUP, daemon_on_sighup, d);
	if (d->sigterm == NULL || d->sigint == NULL || d->sighup == NULL || evsignal_add(d->sigterm, NULL) != 0 ||
	    evsignal_add(d->sigint, NULL) != 0 || evsignal_add(d->sighup, NULL) != 0) {
		log_errx("cannot install signal handlers");
		return -1;
	}
	if ((d->notify = notify_create(d->base, daemon_status_line, d)) == NULL) {
		log_errx("out of memory");
		return -1;
	}
	/* Listeners are up and the store is open: ready, in the log and for systemd. */
	notify_ready(d->notify);
	clients_warn_expiring(d->config, clock_unix_us() / 1000000);
	log_info("llamachatd %s ready: upstream %s, store %s (%ld sessions)", LLAMACHATD_VERSION,
	    d->config->upstream_base_url, d->config->store_path, store_count(d->store));
	return 0;
}

/* --hash-token: a token on stdin becomes the line for the clients list. */
static int
hash_token(const char *expires, const char *not_before)
{
	if (isatty(STDIN_FILENO))
		fprintf(stderr, "Type the client's token, then Enter:\n");
	return clients_print_token_line(stdin, stdout, "llamachatd", expires, not_before);
}

/* --hash-cert FILE: a client certificate becomes the line for the clients list. */
static int
hash_cert(const char *file)
{
	char hex[65], why[512];

	if (http_tls_cert_sha256_hex(file, hex, why, sizeof(why)) != 0) {
		fprintf(stderr, "llamachatd: %s\n", why);
		return 1;
	}
	printf("{ name = \"CLIENT-NAME\"; cert_sha256 = \"%s\"; }\n", hex);
	return 0;
}

/* -t: the config parses and checks, and the key source can be read. */
static int
test_config(const struct config *config)
{
	enum apikey_source source;
	char why[512];
	char *key = NULL;
	long long not_after;
	const char *projects[CONFIG_MAX_PROJECT_KEYS];
	char *keys[CONFIG_MAX_PROJECT_KEYS] = { NULL };

	if (apikey_load(config->upstream_api_key_file, &key, &source, why, sizeof(why)) != 0) {
		fprintf(stderr, "llamachatd: %s\n", why);
		return 1;
	}
	if (key == NULL && config->project_key_count == 0)
		fprintf(stderr, "llamachatd: warning: no API key: set $%s or upstream.api_key_file\n", APIKEY_ENV);
	apikey_free(key);
	if (daemon_load_project_keys(config, projects, keys, why, sizeof(why)) != 0) {
		fprintf(stderr, "llamachatd: %s\n", why);
		return 1;
	}
	/* Which projects have keys; never the keys. */
	for (size_t i = 0; i < config->project_key_count; i++) {
		printf("%s%s", i == 0 ? "llamachatd: keys for projects: " : ", ", projects[i]);
		apikey_free(keys[i]);
	}
	if (config->project_key_count > 0)
		printf("\n");
	if (server_check_tls(config, &not_after, why, sizeof(why)) != 0) {
		fprintf(stderr, "llamachatd: %s\n", why);
		return 1;
	}
	if (not_after > 0 && not_after - (long long)time(NULL) < 14 * 86400)
		fprintf(stderr, "llamachatd: warning: the TLS certificate %s expires in %lld day(s)\n",
		    config->tls_cert_file, (not_after - (long long)time(NULL)) / 86400);
	printf("llamachatd: %s: configuration OK\n", config->path);
	return 0;
}

int
main(int argc, char **argv)
{
	static const struct option options[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "test-config", no_argument, NULL, 't' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ "hash-token", no_argument, NULL, 'H' },
		{ "hash-cert", required_argument, NULL, 'C' },
		{ "expires", required_argument, NULL, 'E' },
		{ "not-before", required_argument, NULL, 'N' },
		{ NULL, 0, NULL, 0 },
	};
	const char *config_path = CONFIG_DEFAULT_PATH;
	const char *expires = NULL, *not_before = NULL;
	bool only_test = false, token = false;
	struct daemon d;
	int opt, rc = 1;

	while ((opt = getopt_long(argc, argv, "c:thV", options, NULL)) != -1) {
		switch (opt) {
		case 'c':
			config_path = optarg;
			break;
		case 't':
			only_test = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			printf("llamachatd %s\n", LLAMACHATD_VERSION);
			return 0;
		case 'H':
			token = true;
			break;
		case 'E':
			expires = optarg;
			break;
		case 'N':
			not_before = optarg;
			break;
		case 'C':
			return hash_cert(optarg);
		default:
			usage(stderr);
			return 2;
		}
	}
	if (token)
		return hash_token(expires, not_before);
	if (expires != NULL || not_before != NULL) {
		fprintf(stderr, "llamachatd: --expires and --not-before go with --hash-token\n");
		return 2;
	}
	if (optind < argc) {
		fprintf(stderr, "llamachatd: unexpected argument \"%s\"\n", argv[optind]);
		usage(stderr);
		return 2;
	}

	memset(&d, 0, sizeof(d));
	if ((d.config = load_config_or_report(config_path)) == NULL)
		return 1;
	if (only_test) {
		rc = test_config(d.config);
		config_free(d.config);
		return rc;
	}
	log_init(d.config->log_level, getenv("JOURNAL_STREAM") != NULL);
	signal(SIGPIPE, SIG_IGN);
	/* The key lives in this process's memory (and in libcurl's copies of
	 * headers): no core dump and no ptrace by the same user may read it. */
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0)
		log_warn("cannot mark the process as not dumpable");
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		log_errx("cannot initialise libcurl");
		config_free(d.config);
		return 1;
	}
	if (daemon_start(&d) == 0) {
		event_base_dispatch(d.base);
		rc = 0;
	}
	daemon_stop(&d);
	curl_global_cleanup();
	if (rc == 0)
		log_info("llamachatd stopped");
	config_free(d.config);
	libevent_global_shutdown();
	return rc;
}
