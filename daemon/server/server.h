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

/* Serves on with config (clients, route policy, limits) in place of the one
 * it had, which the caller may free once this returned 0. Listen addresses
 * stay as they are. Returns -1 (old config still in use) when out of memory. */
int server_reload(struct server *server, const struct config *config) __attribute__((warn_unused_result));

/* Closes the listeners; connections already open are served to the end. */
void server_stop_accepting(struct server *server);

/* Closes listeners and every connection. */
void server_free(struct server *server);

#endif
