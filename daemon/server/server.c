/* server: the HTTP server's limits, and routing of each request to its
 * handler (the listeners and TLS are server_listen.c). */
#include "server/server.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <grp.h>
#include <systemd/sd-daemon.h>

#include "http/access.h"
#include "base/address.h"
#include "chat/chat.h"
#include "gate/clients.h"
#include "base/clock.h"
#include "base/config.h"
#include "gate/gate.h"
#include "gate/hostcheck.h"
#include "http/http.h"
#include "http/http_tls.h"
#include "gate/idempotency.h"
#include "base/log.h"
#include "chat/relay.h"
#include "http/reply.h"
#include "http/request.h"
#include "server/route.h"
#include "shared/shared.h"
#include "server/server_private.h"
#include "upstream/upstream.h"

/* The route policy's bit for a method; 0 for methods never sent upstream. */
static unsigned
server_method_bit(enum request_method method)
{
	switch (method) {
	case REQUEST_GET:
		return CONFIG_METHOD_GET;
	case REQUEST_POST:
		return CONFIG_METHOD_POST;
	case REQUEST_PUT:
		return CONFIG_METHOD_PUT;
	case REQUEST_PATCH:
		return CONFIG_METHOD_PATCH;
	case REQUEST_DELETE:
		return CONFIG_METHOD_DELETE;
	default:
		return 0;
	}
}

static void
server_reply_method_not_allowed(struct request *req, const char *allow)
{
	request_add_header(req, "Allow", allow);
	reply_errorf(req, 405, REPLY_RETRY_WONT_HELP, "this path takes %s", allow);
}

/* Names the route of a request for the metrics. */
static void
server_label(const struct caller *caller, const char *route)
{
	if (caller->access != NULL)
		caller->access->route = route;
}

static void server_wait_for_owner(
    struct server *server, struct request *req, const struct caller *caller, const struct route_match *route);

/* Hands the chat resource's own endpoints to their handlers, by the kind
 * of path route_classify() found; returns false for any other path, which
 * is then passed through. */
static bool
server_route_chat(struct server *server, struct request *req, const struct caller *caller,
    const struct route_match *route, const char *query)
{
	enum request_method method = req->method;

	switch (route->kind) {
	case ROUTE_CHAT:
		server_label(caller, method == REQUEST_POST ? "create" : "list");
		if (method == REQUEST_POST)
			chat_handle_create(server->parts.chat, req, caller, query);
		else if (method == REQUEST_GET)
			chat_handle_list(server->parts.chat, req, caller, query);
		else
			server_reply_method_not_allowed(req, "GET, POST");
		return true;
	case ROUTE_SESSION:
		server_label(caller, method == REQUEST_DELETE ? "delete" : "history");
		if (method == REQUEST_GET)
			chat_handle_history(server->parts.chat, req, caller, route->id, route->id_len, query);
		else if (method == REQUEST_DELETE)
			chat_handle_delete(server->parts.chat, req, caller, route->id, route->id_len, query);
		else
			server_reply_method_not_allowed(req, "GET, DELETE");
		return true;
	case ROUTE_SUMMARY:
		server_label(caller, "summary");
		if (method == REQUEST_GET) {
			if (chat_handle_summary(server->parts.chat, req, caller, route->id, route->id_len, query) ==
			    CHAT_NAMING_ASK_OWNER)
				server_wait_for_owner(server, req, caller, route);
		} else
			server_reply_method_not_allowed(req, "GET");
		return true;
	case ROUTE_STREAM:
		server_label(caller, "stream");
		if (method == REQUEST_POST)
			chat_handle_stream(server->parts.chat, req, caller, route->id, route->id_len, query);
		else
			server_reply_method_not_allowed(req, "POST");
		return true;
	default:
		return false;
	}
}

/* The route policy, decided on the fully decoded path: the form upstream
 * routes on. */
static bool
server_policy_allows(const struct config *config, const char *path, enum request_method method)
{
	char *decoded;
	size_t size;
	bool allowed;

	if (strchr(path, '%') == NULL)
		return config_route_allows(config, path, server_method_bit(method));
	size = strlen(path) + 1;
	if ((decoded = malloc(size)) == NULL || route_decode(path, decoded, size) != 0) {
		free(decoded);
		return false;
	}
	allowed = config_route_allows(config, decoded, server_method_bit(method));
	free(decoded);
	return allowed;
}

/* Any other path the route policy allows goes upstream as it is, its answer
 * streamed back. */
static void
server_pass_through(struct server *server, struct request *req, const struct caller *caller,
    const struct route_match *route, const char *path, const char *query)
{
	enum request_method method = req->method;
	char project[CHAT_PROJECT_MAX + 1];
	struct evbuffer *input = req->body;
	struct upstream_request request = { 0 };
	bool has_query = query != NULL && query[0] != '\0';
	size_t size = strlen(path) + (has_query ? 1 + strlen(query) : 0) + 1;
	const char *client_key = request_header(req, IDEMPOTENCY_HEADER);
	char upstream_key[IDEMPOTENCY_UPSTREAM_KEY_LEN + 1];
	char *target;

	if (evbuffer_get_length(input) > (size_t)server->config->max_body_bytes) {
		reply_errorf(req, 413, REPLY_RETRY_WONT_HELP,
		    "the request body is larger than limits.max_body_bytes (%ld bytes)",
		    server->config->max_body_bytes);
		return;
	}
	if (!gate_may_go_upstream(req, caller))
		return;
	if ((target = malloc(size)) == NULL) {
		reply_error(req, 503, REPLY_RETRY_MAY_HELP, "llamachatd is out of memory");
		return;
	}
	snprintf(target, size, "%s%s%s", path, has_query ? "?" : "", has_query ? query : "");
	request.method = request_method_name(method);
	request.path_and_query = target;
	request.client_headers = &req->headers;
	request.body = evbuffer_pullup(input, -1);
	request.body_len = evbuffer_get_length(input);
	chat_project_for(server->parts.chat, caller, route->id, route->id_len, query, project);
	request.project_id = project;
	/* A call that may act upstream, without a key to dedupe it by, is never
	 * sent twice. */
	request.send_once = method != REQUEST_GET && method != REQUEST_DELETE && client_key == NULL;
	/* Never the client's own key: one derived from it and the client. */
	if (client_key != NULL && idempotency_key_is_valid(client_key)) {
		unsigned char record_key[IDEMPOTENCY_RECORD_KEY_MAX];
		idempotency_upstream_key(
		    record_key, idempotency_record_key(caller->name, client_key, record_key), upstream_key);
		request.idempotency_key = upstream_key;
	}
	/* Only a GET is surely safe to retry. */
	server_label(caller, "passthrough");
	relay_start(server->parts.relays, req, &request, method != REQUEST_GET, NULL, NULL);
	free(target);
}

/* GET /healthz for anyone; GET /metrics for local peers, single-user mode,
 * and clients with metrics = true. */
static void
server_own_endpoint(
    struct server *server, struct request *req, struct access_entry *access, enum request_method method, bool metrics)
{
	struct evbuffer *body;
	const struct config_client *client = NULL;
	enum clients_refusal refusal;
	bool trusted = !clients_enabled(server->clients) || req->local_peer;

	if (access != NULL)
		access->route = metrics ? "metrics" : "healthz";
	if (method != REQUEST_GET) {
		server_reply_method_not_allowed(req, "GET");
		return;
	}
	if (!trusted)
		client = clients_authenticate(server->clients, request_header(req, "Authorization"),
		    req->peer_cert_sha256, clock_unix_us() / 1000000, &refusal);
	if (!metrics) {
		/* Anyone may ask whether the daemon is up; what it holds is for
		 * those who may read /metrics. */
		server->parts.answer_health(
		    req, trusted || (client != NULL && client->metrics), server->parts.render_arg);
		return;
	}
	if (!trusted) {
		if (client == NULL) {
			request_add_header(req, "WWW-Authenticate", "Bearer");
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
	server->parts.render_metrics(body, server->parts.render_arg);
	request_add_header(req, "Content-Type", "text/plain; version=0.0.4");
	request_reply_buffer(req, 200, body);
	evbuffer_free(body);
}

static void server_route_as(struct server *server, struct request *req, const struct caller_grant *granted);

/* A request waiting for a session's owner record, or for its client's
 * rate in the bucket every instance shares (shared mode). */
struct server_wait {
	struct server *server;
	struct request *req; /* NULL once its client left */
	char id[REQUEST_SESSION_MAX + 1];
	char owner[CALLER_NAME_MAX + 1];
	bool granted; /* a rate wait: the request had id granted to owner */
	char client[CALLER_NAME_MAX + 1];
	double rate_per_s;
};

static void
server_on_wait_gone(void *arg)
{
	struct server_wait *wait = arg;

	wait->req = NULL;
}

static void
server_on_owner(enum chat_owner_verdict verdict, const char *owner, void *arg)
{
	struct server_wait *wait = arg;
	struct request *req = wait->req;

	if (req != NULL) {
		request_set_on_gone(req, NULL, NULL);
		if (verdict == CHAT_OWNER_GRANTS) {
			/* Routed again from the start (a reload may have come
			 * meanwhile), with the session granted. */
			struct caller_grant grant = { wait->id, wait->owner };
			snprintf(wait->owner, sizeof(wait->owner), "%s", owner);
			server_route_as(wait->server, req, &grant);
		} else if (verdict == CHAT_OWNER_NOT_CALLER) {
			chat_reply_not_found(req);
		} else {
			/* Never a false 404: the owner may be this very client. */
			request_add_header(req, "Retry-After", "1");
			reply_error(req, 503, REPLY_RETRY_MAY_HELP,
			    "llamachatd cannot tell now who owns this session (the state it shares with other "
			    "instances, in Redis, is unavailable); retry shortly");
		}
	}
	free(wait);
}

static void
server_on_rate(enum shared_result result, unsigned long long allowed, unsigned long long wait_ms, void *arg)
{
	struct server_wait *wait = arg;
	struct request *req = wait->req;
	char seconds[24];

	if (req != NULL) {
		request_set_on_gone(req, NULL, NULL);
		if (result == SHARED_FOUND && !allowed) {
			snprintf(seconds, sizeof(seconds), "%llu", wait_ms > 1000 ? (wait_ms + 999) / 1000 : 1);
			request_add_header(req, "Retry-After", seconds);
			reply_errorf(req, 429, REPLY_RETRY_MAY_HELP,
			    "client %s is over its rate of %g requests per second", wait->client, wait->rate_per_s);
		} else {
			/* Taken; or Redis could not say, and this instance's
			 * part of the rate decides. Routed again from the start,
			 * with the grant it had. */
			struct caller_grant grant = { wait->id, wait->owner };
			req->rate = result == SHARED_FOUND ? REQUEST_RATE_TAKEN : REQUEST_RATE_LOCAL;
			server_route_as(wait->server, req, wait->granted ? &grant : NULL);
		}
	}
	free(wait);
}

/* caller->take_shared_rate: holds req until the bucket every instance
 * shares has answered for its client. */
static bool
server_take_shared_rate(void *arg, struct request *req, const struct caller *caller)
{
	struct server *server = arg;
	struct server_wait *wait;

	if (server->parts.shared == NULL || caller->client == NULL || !shared_is_up(server->parts.shared, NULL) ||
	    (wait = calloc(1, sizeof(*wait))) == NULL)
		return false;
	wait->server = server;
	wait->req = req;
	if (caller->granted != NULL) {
		wait->granted = true;
		snprintf(wait->id, sizeof(wait->id), "%s", caller->granted->session);
		snprintf(wait->owner, sizeof(wait->owner), "%s", caller->granted->owner);
	}
	snprintf(wait->client, sizeof(wait->client), "%s", caller->name);
	wait->rate_per_s = caller->client->rate_per_s;
	request_set_on_gone(req, server_on_wait_gone, wait);
	if (shared_take_rate(server->parts.shared, caller->name, caller->client->rate_per_s, caller->client->burst,
	        server_on_rate, wait) == NULL) {
		request_set_on_gone(req, NULL, NULL);
		free(wait);
		return false;
	}
	return true;
}

/* Holds req until the owner record of the session route names answers. */
static void
server_wait_for_owner(
    struct server *server, struct request *req, const struct caller *caller, const struct route_match *route)
{
	struct server_wait *wait = calloc(1, sizeof(*wait));

	if (wait == NULL || route->id_len > REQUEST_SESSION_MAX) {
		free(wait);
		reply_error(req, 503, REPLY_RETRY_MAY_HELP, "llamachatd is out of memory");
		return;
	}
	wait->server = server;
	wait->req = req;
	memcpy(wait->id, route->id, route->id_len);
	wait->id[route->id_len] = '\0';
	request_set_on_gone(req, server_on_wait_gone, wait);
	if (chat_ask_owner(server->parts.chat, caller, route->id, route->id_len, server_on_owner, wait) == NULL) {
		request_set_on_gone(req, NULL, NULL);
		free(wait);
		reply_error(req, 503, REPLY_RETRY_MAY_HELP, "llamachatd is out of memory");
	}
}

static void
server_route(struct request *req, void *arg)
{
	server_route_as(arg, req, NULL);
}

/* Routes req; granted names a session its shared owner record lets the
 * caller touch, and its owner (NULL: none). */
static void
server_route_as(struct server *server, struct request *req, const struct caller_grant *granted)
{
	enum request_method method = req->method;
	const char *path = req->path;
	const char *query = req->query;
	struct access_entry *access = &req->access;
	struct route_match route;
	struct caller caller;
	char *owned_query;
	const char *refusal;

	/* Before anything else, /healthz and /metrics too: a loopback
	 * listener is no door for a page whose name rebinds to it. */
	if ((refusal = hostcheck_refusal(server->config, request_header(req, "Host"), request_header(req, "Origin"),
	         req->local_peer)) != NULL) {
		reply_error(req, 403, REPLY_RETRY_WONT_HELP, refusal);
		return;
	}
	route_classify(path, &route);
	switch (route.kind) {
	case ROUTE_BAD:
		reply_error(req, 400, REPLY_RETRY_WONT_HELP, route.why);
		return;
	case ROUTE_NOT_FOUND:
		reply_error(req, 404, REPLY_RETRY_WONT_HELP, "no such endpoint in llamachatd");
		return;
	case ROUTE_HEALTHZ:
	case ROUTE_METRICS:
		server_own_endpoint(server, req, access, method, route.kind == ROUTE_METRICS);
		return;
	default:
		break;
	}
	/* For the spans: a call of the chat resource, and its session. */
	access->chat = route.kind != ROUTE_API;
	if (route.id != NULL && route.id_len <= REQUEST_SESSION_MAX) {
		memcpy(access->session_id, route.id, route.id_len);
		access->session_id[route.id_len] = '\0';
	}
	/* Who asks comes first: an unknown client learns nothing of the policy. */
	if (!gate_admit(server->clients, req, &query, &owned_query, &caller))
		return;
	caller.access = access;
	caller.budgets = server->parts.budgets;
	caller.instances = server->parts.instances != NULL ? *server->parts.instances : 1;
	if (server->parts.shared != NULL) {
		caller.take_shared_rate = server_take_shared_rate;
		caller.take_shared_rate_arg = server;
	}
	if (caller.name[0] != '\0')
		snprintf(access->client, sizeof(access->client), "%s", caller.name);
	/* Every path that names a session is that session's, whatever the
	 * method and whether a handler knows it: checked before the policy,
	 * so that another client's session answers exactly as a missing one.
	 * A summary's GET is checked by its handler on the record it serves
	 * (so the hit path reads the store once). */
	caller.granted = granted;
	if (route_names_session(route.kind) && !(route.kind == ROUTE_SUMMARY && method == REQUEST_GET)) {
		enum chat_naming naming =
		    chat_may_name_session(server->parts.chat, req, &caller, route.id, route.id_len);
		if (naming == CHAT_NAMING_ASK_OWNER)
			server_wait_for_owner(server, req, &caller, &route);
		if (naming != CHAT_NAMING_MAY) {
			free(owned_query);
			return;
		}
	}
	if (!server_policy_allows(server->config, path, method)) {
		reply_errorf(req, 403, REPLY_RETRY_WONT_HELP, "llamachatd's route policy does not allow %s %s",
		    request_method_name(method), path);
	} else if (!server_route_chat(server, req, &caller, &route, query)) {
		server_pass_through(server, req, &caller, &route, path, query);
	}
	free(owned_query);
}

static void
server_on_begin(struct request *req, void *arg)
{
	struct server *server = arg;

	access_begin(server->parts.access, req);
}

static void
server_on_done(const struct request *req, void *arg)
{
	struct server *server = arg;

	access_end(server->parts.access, req);
}

/* The HTTP server's limits, from the config. */
static void
server_http_settings(const struct config *config, struct http_settings *out)
{
	*out = (struct http_settings){
		.max_header_bytes = (size_t)config->max_header_bytes,
		.max_target_bytes = (size_t)config->max_target_bytes,
		.max_body_bytes = (size_t)config->max_body_bytes,
		.header_timeout_ms = config->header_timeout_ms,
		.body_timeout_ms = config->body_timeout_ms,
		.keepalive_timeout_ms = config->keepalive_timeout_ms,
		.send_timeout_ms = config->client_timeout_ms,
		.max_connections = config->max_connections,
		.max_pending_output_bytes = (size_t)config->max_pending_output_bytes,
	};
}

struct server *
server_create(
    struct event_base *base, const struct config *config, const struct server_parts *parts, char *why, size_t why_size)
{
	struct server *server = calloc(1, sizeof(*server));
	struct http_settings settings;
	struct http_hooks hooks = { server_on_begin, server_route, server_on_done, server };
	struct http_tls *tls = NULL;

	if (server == NULL) {
		snprintf(why, why_size, "server: out of memory");
		return NULL;
	}
	hooks.arg = server;
	server->parts = *parts;
	server->config = config;
	server_http_settings(config, &settings);
	if ((server->http = http_server_create(base, &settings, &hooks)) == NULL ||
	    (server->clients = clients_create(config, NULL)) == NULL) {
		snprintf(why, why_size, "server: out of memory");
		server_free(server);
		return NULL;
	}
	if (server_tls_load(config, &tls, why, why_size) != 0) {
		server_free(server);
		return NULL;
	}
	server_set_tls(server, tls);
	if (server_listen_all(server, why, why_size) != 0) {
		server_free(server);
		return NULL;
	}
	return server;
}

unsigned long long
server_connections_accepted(const struct server *server)
{
	return http_server_accepted(server->http);
}

long
server_open_connections(const struct server *server)
{
	return http_server_open_connections(server->http);
}

int
server_reload(struct server *server, const struct config *config, char *why, size_t why_size)
{
	struct clients *clients;
	struct http_settings settings;
	struct http_tls *tls = NULL;

	/* A certificate or key that does not load keeps the old ones. */
	if (server_tls_load(config, &tls, why, why_size) != 0)
		return -1;
	if ((clients = clients_create(config, server->clients)) == NULL) {
		http_tls_free(tls);
		snprintf(why, why_size, "out of memory");
		return -1;
	}
	clients_free(server->clients);
	server->clients = clients;
	server->config = config;
	server_set_tls(server, tls);
	server_http_settings(config, &settings);
	http_server_set_settings(server->http, &settings);
	return 0;
}

void
server_stop_accepting(struct server *server)
{
	http_server_stop_accepting(server->http);
}

void
server_free(struct server *server)
{
	if (server == NULL)
		return;
	http_server_free(server->http);
	clients_free(server->clients);
	for (size_t i = 0; i < server->listener_count; i++) {
		struct server_listener *l = &server->listeners[i];
		if (l->unix_path != NULL) {
			unlink(l->unix_path);
			free(l->unix_path);
		}
	}
	free(server);
}

void
server_tls_stats(const struct server *server, struct server_tls_stats *out)
{
	struct http_tls_counts counts;

	http_server_tls_counts(server->http, &counts);
	*out = (struct server_tls_stats){ counts.ok, counts.resumed, counts.failed, counts.timeout,
		server->tls_not_after };
}
