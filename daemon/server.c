/* server: the evhttp listeners, their limits, and routing to the chat handlers. */
#include "server.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/listener.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <dirent.h>
#include <grp.h>
#include <systemd/sd-daemon.h>

#include "address.h"
#include "clients.h"
#include "gate.h"
#include "health.h"
#include "metrics.h"
#include "access.h"
#include <event2/bufferevent.h>
#include "chat.h"
#include "config.h"
#include "log.h"
#include "relay.h"
#include "reply.h"
#include "upstream.h"

#define CHAT_PREFIX "/api/v1/chat"
#define SUMMARY_SUFFIX "/summary"
#define STREAM_SUFFIX "/messages/stream"
#define LISTEN_BACKLOG 1024
#define SERVER_MAX_LISTENERS (CONFIG_MAX_LISTEN + 16) /* the config's and systemd's */
#define ACCEPT_PAUSE_MS 100

struct server_listener {
	struct evconnlistener *listener;
	struct event *resume; /* re-enables accept after running out of fds */
	char *unix_path; /* unlinked on close */
};

struct server {
	struct evhttp *http;
	const struct config *config; /* swapped by server_reload() */
	struct clients *clients; /* owned */
	struct server_parts parts;
	unsigned long long connections_accepted;
	struct server_listener listeners[SERVER_MAX_LISTENERS];
	size_t listener_count;
};

/* The route policy's bit for a method; 0 for methods never sent upstream. */
static unsigned
server_method_bit(enum evhttp_cmd_type method)
{
	switch (method) {
	case EVHTTP_REQ_GET:
		return CONFIG_METHOD_GET;
	case EVHTTP_REQ_POST:
		return CONFIG_METHOD_POST;
	case EVHTTP_REQ_PUT:
		return CONFIG_METHOD_PUT;
	case EVHTTP_REQ_PATCH:
		return CONFIG_METHOD_PATCH;
	case EVHTTP_REQ_DELETE:
		return CONFIG_METHOD_DELETE;
	default:
		return 0;
	}
}

static const char *
server_method_name(enum evhttp_cmd_type method)
{
	switch (method) {
	case EVHTTP_REQ_GET:
		return "GET";
	case EVHTTP_REQ_POST:
		return "POST";
	case EVHTTP_REQ_PUT:
		return "PUT";
	case EVHTTP_REQ_PATCH:
		return "PATCH";
	case EVHTTP_REQ_DELETE:
		return "DELETE";
	case EVHTTP_REQ_HEAD:
		return "HEAD";
	default:
		return "OPTIONS";
	}
}

/* A path is forwarded as it stands, so nothing in it may climb out of the
 * prefix the route policy checked: no "." or ".." segments, no backslash,
 * and no percent-encoded dot, slash, backslash or NUL that upstream might
 * decode into one. */
static bool
server_path_is_clean(const char *path)
{
	static const char *const encoded[] = { "%2e", "%2f", "%5c", "%00" };

	if (path[0] != '/' || strchr(path, '\\') != NULL)
		return false;
	for (size_t i = 0; i < sizeof(encoded) / sizeof(encoded[0]); i++)
		if (strcasestr(path, encoded[i]) != NULL)
			return false;
	for (const char *seg = path; seg != NULL; seg = strchr(seg + 1, '/')) {
		size_t len = strcspn(seg + 1, "/");
		if ((len == 1 && seg[1] == '.') || (len == 2 && seg[1] == '.' && seg[2] == '.'))
			return false;
	}
	return true;
}

static void
server_reply_method_not_allowed(struct evhttp_request *req, const char *allow)
{
	evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", allow);
	reply_errorf(req, 405, REPLY_RETRY_WONT_HELP, "this path takes %s", allow);
}

/* Names the route of a request for the metrics. */
static void
server_label(const struct chat_caller *caller, const char *route)
{
	if (caller->access != NULL)
		caller->access->route = route;
}

static bool
server_ends_with(const char *text, size_t len, const char *suffix)
{
	size_t suffix_len = strlen(suffix);
	return len >= suffix_len && memcmp(text + len - suffix_len, suffix, suffix_len) == 0;
}

/* Hands the chat resource's own endpoints to their handlers; returns false
 * for any other path, which is then passed through. */
static bool
server_route_chat(struct server *server, struct evhttp_request *req, const struct chat_caller *caller,
    enum evhttp_cmd_type method, const char *path, const char *query)
{
	const char *rest = path + strlen(CHAT_PREFIX), *id;
	size_t len;

	if (strncmp(path, CHAT_PREFIX, strlen(CHAT_PREFIX)) != 0 || (rest[0] != '\0' && rest[0] != '/'))
		return false;
	if (rest[0] == '\0' || strcmp(rest, "/") == 0) {
		server_label(caller, method == EVHTTP_REQ_POST ? "create" : "list");
		if (method == EVHTTP_REQ_POST)
			chat_handle_create(server->parts.chat, req, caller, query);
		else if (method == EVHTTP_REQ_GET)
			chat_handle_list(server->parts.chat, req, caller, query);
		else
			server_reply_method_not_allowed(req, "GET, POST");
		return true;
	}
	id = rest + 1;
	len = strlen(id);
	if (strchr(id, '/') == NULL) {
		server_label(caller, method == EVHTTP_REQ_DELETE ? "delete" : "history");
		if (method == EVHTTP_REQ_GET)
			chat_handle_history(server->parts.chat, req, caller, id, len, query);
		else if (method == EVHTTP_REQ_DELETE)
			chat_handle_delete(server->parts.chat, req, caller, id, len, query);
		else
			server_reply_method_not_allowed(req, "GET, DELETE");
		return true;
	}
	/* An id holding '/' still lands here, to get a clear 400. */
	if (server_ends_with(id, len, SUMMARY_SUFFIX)) {
		server_label(caller, "summary");
		if (method == EVHTTP_REQ_GET)
			chat_handle_summary(server->parts.chat, req, caller, id, len - strlen(SUMMARY_SUFFIX), query);
		else
			server_reply_method_not_allowed(req, "GET");
		return true;
	}
	if (server_ends_with(id, len, STREAM_SUFFIX)) {
		server_label(caller, "stream");
		if (method == EVHTTP_REQ_POST)
			chat_handle_stream(server->parts.chat, req, caller, id, len - strlen(STREAM_SUFFIX), query);
		else
			server_reply_method_not_allowed(req, "POST");
		return true;
	}
	return false;
}

/* Any other path the route policy allows goes upstream as it is, its answer
 * streamed back. */
static void
server_pass_through(struct server *server, struct evhttp_request *req, const struct chat_caller *caller,
    enum evhttp_cmd_type method, const char *path, const char *query)
{
	struct evbuffer *input = evhttp_request_get_input_buffer(req);
	struct upstream_request request = { 0 };
	bool has_query = query != NULL && query[0] != '\0';
	size_t size = strlen(path) + (has_query ? 1 + strlen(query) : 0) + 1;
	char *target;

	if (evbuffer_get_length(input) > (size_t)server->config->max_body_bytes) {
		reply_errorf(req, 413, REPLY_RETRY_WONT_HELP,
		    "the request body is larger than limits.max_body_bytes (%ld bytes)",
		    server->config->max_body_bytes);
		return;
	}
	if ((target = malloc(size)) == NULL) {
		reply_error(req, 503, REPLY_RETRY_MAY_HELP, "llamachatd is out of memory");
		return;
	}
	snprintf(target, size, "%s%s%s", path, has_query ? "?" : "", has_query ? query : "");
	request.method = server_method_name(method);
	request.path_and_query = target;
	request.client_headers = evhttp_request_get_input_headers(req);
	request.body = evbuffer_pullup(input, -1);
	request.body_len = evbuffer_get_length(input);
	/* Only a GET is surely safe to retry. */
	server_label(caller, "passthrough");
	relay_start(server->parts.relays, req, caller->access, &request, method != EVHTTP_REQ_GET, NULL, NULL);
	free(target);
}

/* True when the request came over a unix socket: a local peer. */
static bool
server_peer_is_local(struct evhttp_request *req)
{
	struct evhttp_connection *evcon = evhttp_request_get_connection(req);
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	return evcon != NULL &&
	    getsockname(bufferevent_getfd(evhttp_connection_get_bufferevent(evcon)), (struct sockaddr *)&ss, &len) ==
	    0 &&
	    ss.ss_family == AF_UNIX;
}

/* GET /healthz for anyone; GET /metrics for local peers, single-user mode,
 * and clients with metrics = true. */
static void
server_own_endpoint(struct server *server, struct evhttp_request *req, struct access_entry *access,
    enum evhttp_cmd_type method, const char *path)
{
	bool metrics = strcmp(path, "/metrics") == 0;
	struct evbuffer *body;

	if (access != NULL)
		access->route = metrics ? "metrics" : "healthz";
	if (method != EVHTTP_REQ_GET) {
		server_reply_method_not_allowed(req, "GET");
		return;
	}
	if (!metrics) {
		health_reply(req, server->parts.store, server->parts.upstream, server->parts.started);
		return;
	}
	if (clients_enabled(server->clients) && !server_peer_is_local(req)) {
		const char *authorization = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");
		const struct config_client *client = clients_authenticate(server->clients, authorization);
		if (client == NULL) {
			evhttp_add_header(evhttp_request_get_output_headers(req), "WWW-Authenticate", "Bearer");
			reply_error(req, 401, REPLY_RETRY_WONT_HELP, "a client token is required");
			return;
		}
		if (access != NULL)
			snprintf(access->client, sizeof(access->client), "%s", client->name);
		if (!client->metrics) {
			reply_errorf(req, 403, REPLY_RETRY_WONT_HELP,
			    "client %s may not read /metrics (metrics = true)", client->name);
			return;
		}
	}
	if ((body = evbuffer_new()) == NULL) {
		reply_error(req, 503, REPLY_RETRY_MAY_HELP, "llamachatd is out of memory");
		return;
	}
	metrics_render(server->parts.metrics, body);
	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "text/plain; version=0.0.4");
	evhttp_send_reply(req, 200, NULL, body);
	evbuffer_free(body);
}

/* evhttp asks for each accepted connection's bufferevent: count them. */
static struct bufferevent *
server_new_connection(struct event_base *base, void *arg)
{
	struct server *server = arg;

	server->connections_accepted++;
	return bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
}

static void
server_route(struct evhttp_request *req, void *arg)
{
	struct server *server = arg;
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	enum evhttp_cmd_type method = evhttp_request_get_command(req);
	const char *path = uri != NULL ? evhttp_uri_get_path(uri) : NULL;
	const char *query = uri != NULL ? evhttp_uri_get_query(uri) : NULL;
	struct access_entry *access = access_begin(server->parts.access, req);
	struct chat_caller caller;
	char *owned_query;

	if (path == NULL || !server_path_is_clean(path)) {
		reply_error(req, 400, REPLY_RETRY_WONT_HELP,
		    "the path is malformed or holds '.', '..', a backslash or an encoded slash, dot or NUL");
		return;
	}
	if (strcmp(path, "/healthz") == 0 || strcmp(path, "/metrics") == 0) {
		server_own_endpoint(server, req, access, method, path);
		return;
	}
	if (strncmp(path, "/api/", 5) != 0) {
		reply_error(req, 404, REPLY_RETRY_WONT_HELP, "no such endpoint in llamachatd");
		return;
	}
	/* Who asks comes first: an unknown client learns nothing of the policy. */
	if (!gate_admit(server->clients, req, &query, &owned_query, &caller))
		return;
	caller.access = access;
	if (access != NULL && caller.name[0] != '\0')
		snprintf(access->client, sizeof(access->client), "%s", caller.name);
	if (!config_route_allows(server->config, path, server_method_bit(method))) {
		reply_errorf(req, 403, REPLY_RETRY_WONT_HELP, "llamachatd's route policy does not allow %s %s",
		    server_method_name(method), path);
	} else if (!server_route_chat(server, req, &caller, method, path, query)) {
		server_pass_through(server, req, &caller, method, path, query);
	}
	free(owned_query);
}

static void
server_resume_accepting(evutil_socket_t fd, short what, void *arg)
{
	struct server_listener *l = arg;

	(void)fd;
	(void)what;
	evconnlistener_enable(l->listener);
}

/* evhttp owns the listeners' callback argument, so the error callback finds
 * its listener here; there is one server per process. */
static struct server *server_running;

/* accept() failed, most likely out of file descriptors: pause this listener
 * briefly instead of spinning on a socket that stays readable. */
static void
server_on_accept_error(struct evconnlistener *listener, void *arg)
{
	struct timeval pause = { 0, ACCEPT_PAUSE_MS * 1000 };

	(void)arg;
	log_warn("server: accept failed; pausing the listener for %d ms", ACCEPT_PAUSE_MS);
	evconnlistener_disable(listener);
	for (size_t i = 0; server_running != NULL && i < server_running->listener_count; i++)
		if (server_running->listeners[i].listener == listener)
			evtimer_add(server_running->listeners[i].resume, &pause);
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

/* Serves HTTP on a listening socket fd, which the listener then owns (it is
 * closed on failure too). origin says where it came from, for the log. */
static int
server_serve_socket(struct server *server, struct event_base *base, int fd, struct server_listener *l,
    const char *origin, char *why, size_t why_size)
{
	struct sockaddr_storage bound;
	socklen_t bound_len = sizeof(bound);
	char shown[128];

	l->listener = evconnlistener_new(base, NULL, NULL, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, -1, fd);
	if (l->listener == NULL) {
		close(fd);
		snprintf(why, why_size, "cannot listen: out of memory");
		return -1;
	}
	l->resume = evtimer_new(base, server_resume_accepting, l);
	if (l->resume == NULL || evhttp_bind_listener(server->http, l->listener) == NULL) {
		snprintf(why, why_size, "cannot attach a listener to the HTTP server");
		return -1;
	}
	evconnlistener_set_error_cb(l->listener, server_on_accept_error);
	getsockname(fd, (struct sockaddr *)&bound, &bound_len);
	address_format((struct sockaddr *)&bound, bound_len, shown, sizeof(shown));
	log_info("listening on %s%s", shown, origin);
	return 0;
}

/* Binds a listen address of the config and serves it. */
static int
server_open_listener(struct server *server, struct event_base *base, const char *text, struct server_listener *l,
    char *why, size_t why_size)
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
	return server_serve_socket(server, base, fd, l, "", why, why_size);
fail:
	snprintf(why, why_size, "listen \"%s\": %s", text, strerror(errno));
	if (fd >= 0)
		close(fd);
	return -1;
}

/* Serves the sockets systemd passed (socket activation). A config listen
 * address that one of them matches is not bound again (taken[i] is set). */
static int
server_adopt_passed_sockets(struct server *server, struct event_base *base, bool *taken, char *why, size_t why_size)
{
	int passed = sd_listen_fds(1);

	if (passed < 0) {
		snprintf(why, why_size, "cannot take the sockets systemd passed: %s", strerror(-passed));
		return -1;
	}
	for (int fd = SD_LISTEN_FDS_START; fd < SD_LISTEN_FDS_START + passed; fd++) {
		struct sockaddr_storage ss;
		socklen_t len = sizeof(ss);
		bool matched = false;
		struct server_listener *l;

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
		for (size_t i = 0; i < server->config->listen_count; i++) {
			struct address addr;
			const char *reason;
			if (!taken[i] && address_parse(server->config->listen[i], &addr, &reason) == 0 &&
			    address_matches(&addr, (struct sockaddr *)&ss, len)) {
				taken[i] = true;
				matched = true;
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
		l = &server->listeners[server->listener_count++];
		if (server_serve_socket(server, base, fd, l, " (from systemd)", why, why_size) != 0)
			return -1;
	}
	return 0;
}

struct server *
server_create(
    struct event_base *base, const struct config *config, const struct server_parts *parts, char *why, size_t why_size)
{
	struct server *server = calloc(1, sizeof(*server));
	struct timeval timeout = { config->client_timeout_ms / 1000, (config->client_timeout_ms % 1000) * 1000 };

	if (server == NULL || (server->http = evhttp_new(base)) == NULL) {
		snprintf(why, why_size, "server: out of memory");
		free(server);
		return NULL;
	}
	server->parts = *parts;
	server->config = config;
	evhttp_set_bevcb(server->http, server_new_connection, server);
	if ((server->clients = clients_create(config, NULL)) == NULL) {
		snprintf(why, why_size, "server: out of memory");
		evhttp_free(server->http);
		free(server);
		return NULL;
	}
	evhttp_set_gencb(server->http, server_route, server);
	evhttp_set_allowed_methods(server->http,
	    EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_DELETE | EVHTTP_REQ_PUT | EVHTTP_REQ_PATCH | EVHTTP_REQ_HEAD |
	        EVHTTP_REQ_OPTIONS);
	evhttp_set_default_content_type(server->http, "application/json");
	evhttp_set_max_headers_size(server->http, (ev_ssize_t)config->max_header_bytes);
	/* libevent answers bodies over its own limit with a plain 413 before we
	 * see them; leave it room so that bodies just over ours get the JSON 413
	 * from chat, while memory stays bounded at twice the limit. */
	evhttp_set_max_body_size(server->http, (ev_ssize_t)config->max_body_bytes * 2);
	evhttp_set_timeout_tv(server->http, &timeout);
	evhttp_set_flags(server->http, EVHTTP_SERVER_LINGERING_CLOSE);

	bool taken[CONFIG_MAX_LISTEN] = { false };
	if (server_adopt_passed_sockets(server, base, taken, why, why_size) != 0) {
		server_free(server);
		return NULL;
	}
	for (size_t i = 0; i < config->listen_count; i++) {
		if (taken[i])
			continue;
		if (server_open_listener(server, base, config->listen[i], &server->listeners[server->listener_count++],
		        why, why_size) != 0) {
			server_free(server);
			return NULL;
		}
	}
	server_running = server;
	return server;
}

static void
server_close_listener(struct server_listener *l)
{
	/* evhttp frees the listeners bound to it; only the extras are ours. */
	if (l->resume != NULL)
		event_free(l->resume);
	l->resume = NULL;
	if (l->unix_path != NULL) {
		unlink(l->unix_path);
		free(l->unix_path);
		l->unix_path = NULL;
	}
}

const unsigned long long *
server_connections_accepted(const struct server *server)
{
	return &server->connections_accepted;
}

/* True when fd is a socket accepted on one of the server's listeners: its
 * local address is a listener's, and it is not listening itself. */
static bool
server_is_client_socket(const struct server *server, int fd)
{
	struct sockaddr_storage mine, theirs;
	socklen_t mine_len = sizeof(mine), theirs_len;
	int listening = 0;
	socklen_t flag_len = sizeof(listening);

	if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &flag_len) != 0 || listening)
		return false;
	if (getsockname(fd, (struct sockaddr *)&mine, &mine_len) != 0)
		return false;
	for (size_t i = 0; i < server->listener_count; i++) {
		const struct server_listener *l = &server->listeners[i];
		if (l->listener == NULL)
			continue;
		theirs_len = sizeof(theirs);
		if (getsockname(evconnlistener_get_fd(l->listener), (struct sockaddr *)&theirs, &theirs_len) != 0 ||
		    theirs.ss_family != mine.ss_family)
			continue;
		/* An accepted socket has its listener's address (a unix one its
		 * path); stderr to journald and upstream sockets do not. */
		if (theirs_len == mine_len && memcmp(&theirs, &mine, theirs_len) == 0)
			return true;
	}
	return false;
}

long
server_open_connections(const struct server *server)
{
	DIR *fds = opendir("/proc/self/fd");
	struct dirent *entry;
	long open = 0;

	/* Counted when asked (a scrape), not kept per connection: libevent
	 * 2.1 tells of no connection that closes before its first request. */
	if (fds == NULL)
		return -1;
	while ((entry = readdir(fds)) != NULL) {
		char *end;
		long fd = strtol(entry->d_name, &end, 10);
		if (*end == '\0' && entry->d_name[0] != '\0' && fd != dirfd(fds) &&
		    server_is_client_socket(server, (int)fd))
			open++;
	}
	closedir(fds);
	return open;
}

int
server_reload(struct server *server, const struct config *config)
{
	struct clients *clients = clients_create(config, server->clients);

	if (clients == NULL)
		return -1;
	clients_free(server->clients);
	server->clients = clients;
	server->config = config;
	return 0;
}

void
server_stop_accepting(struct server *server)
{
	for (size_t i = 0; i < server->listener_count; i++) {
		struct server_listener *l = &server->listeners[i];
		if (l->listener != NULL)
			evconnlistener_disable(l->listener);
		if (l->resume != NULL)
			evtimer_del(l->resume);
	}
}

void
server_free(struct server *server)
{
	if (server == NULL)
		return;
	if (server_running == server)
		server_running = NULL;
	evhttp_free(server->http);
	clients_free(server->clients);
	for (size_t i = 0; i < server->listener_count; i++)
		server_close_listener(&server->listeners[i]);
	free(server);
}
