/* server_listen: the listeners (bound here, or passed by systemd), plain
 * and TLS, and the TLS certificate they serve. */
#include "server/server.h"

#include <errno.h>
#include <event2/util.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include "base/address.h"
#include "base/config.h"
#include "base/log.h"
#include "http/http.h"
#include "http/http_tls.h"
#include "server/server_private.h"

/* The config's addresses, listen then tls.listen, as one list. */
static size_t
server_address_count(const struct config *config)
{
	return config->listen_count + config->tls_listen_count;
}

static const char *
server_address(const struct config *config, size_t i)
{
	return i < config->listen_count ? config->listen[i] : config->tls_listen[i - config->listen_count];
}

/* Gives a unix socket the configured mode and group: who may connect. */
static int
server_set_socket_access(const struct config *config, const char *path, char *why, size_t why_size)
{
	if (config->unix_socket_group != NULL) {
		struct group *gr = getgrnam(config->unix_socket_group);
		if (gr == NULL) {
			snprintf(why, why_size, "unix_socket.group: no group named \"%s\"", config->unix_socket_group);
			return -1;
		}
		if (chown(path, (uid_t)-1, gr->gr_gid) != 0) {
			snprintf(why, why_size, "%s: cannot give it group %s: %s", path, config->unix_socket_group,
			    strerror(errno));
			return -1;
		}
	}
	if (chmod(path, (mode_t)config->unix_socket_mode) != 0) {
		snprintf(why, why_size, "%s: cannot set its mode: %s", path, strerror(errno));
		return -1;
	}
	return 0;
}

/* Serves HTTP on a listening socket fd, which the server then owns (it is
 * closed on failure too). origin says where it came from, for the log. */
static int
server_serve_socket(struct server *server, int fd, bool tls, const char *origin, char *why, size_t why_size)
{
	struct sockaddr_storage bound;
	socklen_t bound_len = sizeof(bound);
	char shown[128];

	getsockname(fd, (struct sockaddr *)&bound, &bound_len);
	address_format((struct sockaddr *)&bound, bound_len, shown, sizeof(shown));
	if (http_server_listen(server->http, fd, tls) != 0) {
		snprintf(why, why_size, "cannot listen on %s: out of memory", shown);
		return -1;
	}
	log_info("listening on %s%s%s", shown, tls ? " (TLS)" : "", origin);
	return 0;
}

/* Binds a listen address of the config and serves it. */
static int
server_open_listener(
    struct server *server, const char *text, bool tls, struct server_listener *l, char *why, size_t why_size)
{
	struct address addr;
	const char *reason;
	int fd = -1, one = 1;

	if (address_parse(text, &addr, &reason) != 0) {
		snprintf(why, why_size, "listen \"%s\": %s", text, reason);
		return -1;
	}
	fd = socket(addr.sockaddr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		goto fail;
	if (addr.is_unix) {
		const char *path = ((struct sockaddr_un *)&addr.sockaddr)->sun_path;
		struct stat st;
		/* A socket file left by a previous run is stale; anything else is not ours. */
		if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode))
			unlink(path);
		if ((l->unix_path = strdup(path)) == NULL)
			goto fail;
	} else if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0) {
		goto fail;
	}
	if (bind(fd, (struct sockaddr *)&addr.sockaddr, addr.sockaddr_len) != 0 || listen(fd, LISTEN_BACKLOG) != 0)
		goto fail;
	if (addr.is_unix && server_set_socket_access(server->config, l->unix_path, why, why_size) != 0) {
		close(fd);
		return -1;
	}
	return server_serve_socket(server, fd, tls, "", why, why_size);
fail:
	snprintf(why, why_size, "listen \"%s\": %s", text, strerror(errno));
	if (fd >= 0)
		close(fd);
	return -1;
}

/* Serves the sockets systemd passed (socket activation). A config listen
 * address that one of them matches is not bound again (taken[i] is set;
 * tls.listen addresses follow listen ones in it), and one that matches a
 * tls.listen address speaks TLS. */
static int
server_adopt_passed_sockets(struct server *server, bool *taken, char *why, size_t why_size)
{
	int passed = sd_listen_fds(1);

	if (passed < 0) {
		snprintf(why, why_size, "cannot take the sockets systemd passed: %s", strerror(-passed));
		return -1;
	}
	for (int fd = SD_LISTEN_FDS_START; fd < SD_LISTEN_FDS_START + passed; fd++) {
		struct sockaddr_storage ss;
		socklen_t len = sizeof(ss);
		bool matched = false, tls = false;
		if (server->listener_count == SERVER_MAX_LISTENERS) {
			log_warnx("systemd passed more sockets than llamachatd serves (%d); closing the rest",
			    SERVER_MAX_LISTENERS);
			close(fd);
			continue;
		}
		if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0 ||
		    sd_is_socket(fd, AF_UNSPEC, SOCK_STREAM, 1) <= 0) {
			log_warnx("systemd passed descriptor %d, which is no listening stream socket; ignoring it", fd);
			continue;
		}
		for (size_t i = 0; i < server_address_count(server->config); i++) {
			struct address addr;
			const char *reason;
			if (!taken[i] && address_parse(server_address(server->config, i), &addr, &reason) == 0 &&
			    address_matches(&addr, (struct sockaddr *)&ss, len)) {
				taken[i] = true;
				matched = true;
				tls = i >= server->config->listen_count;
				break;
			}
		}
		if (!matched)
			log_warnx(
			    "a socket systemd passed matches no listen address of the config; serving it all the same");
		if (server->config->client_count == 0) {
			struct address passed_addr = { .sockaddr_len = len, .is_unix = ss.ss_family == AF_UNIX };
			memcpy(&passed_addr.sockaddr, &ss, sizeof(ss));
			if (!address_is_local(&passed_addr)) {
				char shown[128];
				address_format((struct sockaddr *)&ss, len, shown, sizeof(shown));
				snprintf(why, why_size,
				    "systemd passed %s, which is not loopback: without clients (single-user mode) "
				    "llamachatd "
				    "serves loopback and unix sockets only; configure clients to serve a network",
				    shown);
				close(fd);
				return -1;
			}
		}
		evutil_make_socket_nonblocking(fd);
		evutil_make_socket_closeonexec(fd);
		server->listener_count++;
		if (server_serve_socket(server, fd, tls, " (from systemd)", why, why_size) != 0)
			return -1;
	}
	return 0;
}

int
server_listen_all(struct server *server, char *why, size_t why_size)
{
	const struct config *config = server->config;
	bool taken[2 * CONFIG_MAX_LISTEN] = { false };

	if (server_adopt_passed_sockets(server, taken, why, why_size) != 0)
		return -1;
	for (size_t i = 0; i < server_address_count(config); i++) {
		if (taken[i])
			continue;
		if (server->listener_count == SERVER_MAX_LISTENERS) {
			snprintf(
			    why, why_size, "more listen addresses than llamachatd serves (%d)", SERVER_MAX_LISTENERS);
			return -1;
		}
		if (server_open_listener(server, server_address(config, i), i >= config->listen_count,
		        &server->listeners[server->listener_count++], why, why_size) != 0)
			return -1;
	}
	return 0;
}

int
server_tls_load(const struct config *config, struct http_tls **out, char *why, size_t why_size)
{
	const char *credentials = getenv("CREDENTIALS_DIRECTORY");
	char credential[4096];
	struct http_tls_settings settings = {
		.cert_file = config->tls_cert_file,
		.key_file = config->tls_key_file,
		.client_ca_file = config->tls_client_ca_file,
		.min_version = config->tls_min_version,
	};

	*out = NULL;
	if (config->tls_listen_count == 0)
		return 0;
	/* No key_file: the systemd credential tls_key. */
	if (settings.key_file == NULL) {
		if (credentials == NULL) {
			snprintf(why, why_size,
			    "tls.key_file is not set and there is no systemd credential tls_key (LoadCredential=)");
			return -1;
		}
		snprintf(credential, sizeof(credential), "%s/tls_key", credentials);
		settings.key_file = credential;
	}
	if ((*out = http_tls_create(&settings, why, why_size)) == NULL)
		return -1;
	return 0;
}

void
server_set_tls(struct server *server, struct http_tls *tls)
{
	server->tls_not_after = tls != NULL ? http_tls_not_after(tls) : 0;
	if (tls != NULL)
		log_info("TLS: certificate %s (serial %s), valid until %lld", server->config->tls_cert_file,
		    http_tls_serial(tls), http_tls_not_after(tls));
	http_server_set_tls(server->http, tls);
}

int
server_check_tls(const struct config *config, long long *not_after, char *why, size_t why_size)
{
	struct http_tls *tls;

	*not_after = 0;
	if (server_tls_load(config, &tls, why, why_size) != 0)
		return -1;
	if (tls != NULL)
		*not_after = http_tls_not_after(tls);
	http_tls_free(tls);
	return 0;
}
