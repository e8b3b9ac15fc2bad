/* server: the listeners, and routing of each request to its handler. */
/* Layer server (daemon/server/): listeners, the normal form of a path
 * (route.h) and the routing of each request to its handler. May include
 * every layer below it; never the top (main hands it the /metrics and
 * /healthz renderers). */
#ifndef LLAMACHATD_SERVER_H
#define LLAMACHATD_SERVER_H

#include <stdbool.h>
#include <stddef.h>

struct access_log;
struct chat;
struct evbuffer;
struct relay_engine;
struct request;
struct config;
struct event_base;
struct server;

/* What the server hands requests to; the caller keeps owning all of it. */
struct server_parts {
	struct chat *chat;
	struct relay_engine *relays;
	struct access_log *access;
	/* Writes /metrics into out, and answers /healthz (with the counts
	 * when show_counts): both sit above the server. */
	void (*render_metrics)(struct evbuffer *out, void *arg);
	void (*answer_health)(struct request *req, bool show_counts, void *arg);
	void *render_arg;
	const struct budgets *budgets; /* may be NULL */
	/* The daemons that share each client's rate limit (shared mode),
	 * kept current by the top; NULL: this one alone. */
	const long *instances;
	/* Shared mode: the Redis client, whose bucket every instance takes
	 * each client's rate from; NULL: each instance its own. */
	struct shared *shared;
};

/* Binds every listen address of config (or serves the sockets systemd
 * passed) and routes requests to parts. config and parts must outlive the
 * server. Returns NULL with a reason in why on failure; free with
 * server_free(). */
struct server *server_create(struct event_base *base, const struct config *config, const struct server_parts *parts,
    char *why, size_t why_size) __attribute__((warn_unused_result));

/* Client connections accepted since start, and open now (an exact count). */
unsigned long long server_connections_accepted(const struct server *server);
long server_open_connections(const struct server *server);

/* Serves on with config (clients, route policy, limits, the TLS
 * certificate and key) in place of the one it had, which the caller may
 * free once this returned 0. Listen addresses stay as they are; open
 * connections keep the certificate they began with. Returns -1 with the
 * reason in why (the old config still in use) when the new certificate or
 * key does not load, or out of memory. */
int server_reload(struct server *server, const struct config *config, char *why, size_t why_size)
    __attribute__((warn_unused_result));

/* -t: loads the TLS certificate and key config names (and the client CA)
 * and checks that they match. Returns 0 with the certificate's notAfter in
 * *not_after (0 without TLS), or -1 with the reason in why. */
int server_check_tls(const struct config *config, long long *not_after, char *why, size_t why_size)
    __attribute__((warn_unused_result));

/* TLS handshakes so far (full, resumed, failed, timed out), and the
 * notAfter of the certificate in force (unix seconds; 0: no TLS). */
struct server_tls_stats {
	unsigned long long ok, resumed, failed, timeout;
	long long not_after;
};
void server_tls_stats(const struct server *server, struct server_tls_stats *out);

/* Closes the listeners; connections already open are served to the end. */
void server_stop_accepting(struct server *server);

/* Closes listeners and every connection. */
void server_free(struct server *server);

#endif
