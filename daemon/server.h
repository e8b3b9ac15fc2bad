/* server: the evhttp listeners, their limits, and routing to the chat handlers. */
#ifndef LLAMACHATD_SERVER_H
#define LLAMACHATD_SERVER_H

#include <stddef.h>

struct chat;
struct relay_engine;
struct config;
struct event_base;
struct server;

/* Binds every listen address of config and routes requests to chat and,
 * for paths the route policy passes through, to relays. The caller keeps
 * owning config, chat and relays, which must outlive the server. Returns
 * NULL with a reason in why on failure; free with server_free(). */
struct server *server_create(struct event_base *base, const struct config *config, struct chat *chat,
    struct relay_engine *relays, char *why, size_t why_size) __attribute__((warn_unused_result));

/* Serves on with config (clients, route policy, limits) in place of the one
 * it had, which the caller may free once this returned 0. Listen addresses
 * stay as they are. Returns -1 (old config still in use) when out of memory. */
int server_reload(struct server *server, const struct config *config) __attribute__((warn_unused_result));

/* Closes the listeners; connections already open are served to the end. */
void server_stop_accepting(struct server *server);

/* Closes listeners and every connection. */
void server_free(struct server *server);

#endif
