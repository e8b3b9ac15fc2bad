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

#include "address.h"
#include "chat.h"
#include "config.h"
#include "log.h"
#include "reply.h"

#define CHAT_PREFIX "/api/v1/chat"
#define SUMMARY_SUFFIX "/summary"
#define LISTEN_BACKLOG 1024
#define ACCEPT_PAUSE_MS 100

struct server_listener {
	struct evconnlistener *listener;
	struct event *resume; /* re-enables accept after running out of fds */
	char *unix_path; /* unlinked on close */
};

struct server {
	struct evhttp *http;
	struct chat *chat;
	struct server_listener listeners[CONFIG_MAX_LISTEN];
	size_t listener_count;
};

static void
server_route(struct evhttp_request *req, void *arg)
{
	struct server *server = arg;
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	enum evhttp_cmd_type method = evhttp_request_get_command(req);
	const char *path = uri != NULL ? evhttp_uri_get_path(uri) : NULL;
	const char *query = uri != NULL ? evhttp_uri_get_query(uri) : NULL;
	size_t path_len, prefix_len = strlen(CHAT_PREFIX), suffix_len = strlen(SUMMARY_SUFFIX);

	if (path == NULL) {
		reply_error(req, 400, REPLY_RETRY_WONT_HELP, "the request target is malformed");
		return;
	}
	path_len = strlen(path);
	if (strcmp(path, CHAT_PREFIX) == 0 || strcmp(path, CHAT_PREFIX "/") == 0) {
		if (method != EVHTTP_REQ_POST) {
			evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "POST");
			reply_error(req, 405, REPLY_RETRY_WONT_HELP, "this path takes POST");
			return;
		}
		chat_handle_create(server->chat, req, query);
		return;
	}
	/* /api/v1/chat/{id}/summary; an id holding '/' is still routed here, so
	 * that it gets a clear 400 rather than a 404. */
	if (path_len >= prefix_len + 1 + suffix_len && strncmp(path, CHAT_PREFIX "/", prefix_len + 1) == 0 &&
	    strcmp(path + path_len - suffix_len, SUMMARY_SUFFIX) == 0) {
		if (method != EVHTTP_REQ_GET) {
			evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "GET");
			reply_error(req, 405, REPLY_RETRY_WONT_HELP, "this path takes GET");
			return;
		}
		const char *id = path + prefix_len + 1;
		chat_handle_summary(server->chat, req, id, (size_t)(path + path_len - suffix_len - id), query);
		return;
	}
	reply_error(req, 404, REPLY_RETRY_WONT_HELP, "no such endpoint in llamachatd");
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

static int
server_open_listener(struct server *server, struct event_base *base, const char *text, struct server_listener *l,
    char *why, size_t why_size)
{
	struct address addr;
	const char *reason;
	struct sockaddr_storage bound;
	socklen_t bound_len = sizeof(bound);
	char shown[128];
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
	l->listener = evconnlistener_new(base, NULL, NULL, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, -1, fd);
	l->resume = evtimer_new(base, server_resume_accepting, l);
	if (l->listener == NULL || l->resume == NULL)
		goto fail;
	fd = -1; /* the listener owns it now */
	if (evhttp_bind_listener(server->http, l->listener) == NULL) {
		snprintf(why, why_size, "listen \"%s\": cannot attach to the HTTP server", text);
		return -1;
	}
	evconnlistener_set_error_cb(l->listener, server_on_accept_error);
	getsockname(evconnlistener_get_fd(l->listener), (struct sockaddr *)&bound, &bound_len);
	address_format((struct sockaddr *)&bound, bound_len, shown, sizeof(shown));
	log_info("listening on %s", shown);
	return 0;
fail:
	snprintf(why, why_size, "listen \"%s\": %s", text, strerror(errno));
	if (fd >= 0)
		close(fd);
	return -1;
}

struct server *
server_create(struct event_base *base, const struct config *config, struct chat *chat, char *why, size_t why_size)
{
	struct server *server = calloc(1, sizeof(*server));
	struct timeval timeout = { config->client_timeout_ms / 1000, (config->client_timeout_ms % 1000) * 1000 };

	if (server == NULL || (server->http = evhttp_new(base)) == NULL) {
		snprintf(why, why_size, "server: out of memory");
		free(server);
		return NULL;
	}
	server->chat = chat;
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

	for (size_t i = 0; i < config->listen_count; i++) {
		if (server_open_listener(server, base, config->listen[i], &server->listeners[i], why, why_size) != 0) {
			server->listener_count = i + 1;
			server_free(server);
			return NULL;
		}
		server->listener_count = i + 1;
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
	for (size_t i = 0; i < server->listener_count; i++)
		server_close_listener(&server->listeners[i]);
	free(server);
}
