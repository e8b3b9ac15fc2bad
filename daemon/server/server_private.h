/* server_private: what server.c and server_listen.c share. Nothing
 * outside daemon/server/ includes it. */
#ifndef LLAMACHATD_SERVER_PRIVATE_H
#define LLAMACHATD_SERVER_PRIVATE_H

#include <stddef.h>

#include "base/config.h"
#include "server/server.h"

struct http_tls;

#define LISTEN_BACKLOG 4096 /* the kernel caps it at net.core.somaxconn */
#define SERVER_MAX_LISTENERS (CONFIG_MAX_LISTEN + 16) /* the config's and systemd's */

struct server_listener {
	char *unix_path; /* unlinked on close */
};

struct server {
	struct http_server *http;
	const struct config *config; /* swapped by server_reload() */
	struct clients *clients; /* owned */
	struct server_parts parts;
	unsigned long long connections_accepted;
	struct server_listener listeners[SERVER_MAX_LISTENERS];
	size_t listener_count;
	long long tls_not_after; /* of the certificate in force; 0: none */
};

/* server_listen.c: binds every listen and tls.listen address of the
 * config (or serves the sockets systemd passed). Returns 0, or -1 with the
 * reason in why. */
int server_listen_all(struct server *server, char *why, size_t why_size) __attribute__((warn_unused_result));

/* server_listen.c: loads the TLS certificate and key config names into
 * *out (NULL when it has no TLS listener). Returns 0, or -1 with the reason
 * in why. */
int server_tls_load(const struct config *config, struct http_tls **out, char *why, size_t why_size)
    __attribute__((warn_unused_result));

/* server_listen.c: hands tls to the HTTP server for new handshakes. */
void server_set_tls(struct server *server, struct http_tls *tls);

#endif
