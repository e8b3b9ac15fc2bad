/* gate: who a request comes from and what it may ask: client tokens, rate
 * limits and pinned organization/project. */
#include "gate/gate.h"

#include <event2/buffer.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/clock.h"
#include "gate/budget.h"
#include "gate/caller.h"
#include "gate/clients.h"
#include "base/config.h"
#include "http/reply.h"
#include "http/request.h"
#include "http/uri.h"

/* Appends "&key=value" (escaped) to out; returns -1 when out of memory. */
static int
gate_add_param(struct evbuffer *out, const char *key, const char *value)
{
	char k[3 * URI_PARAM_MAX + 1], v[3 * URI_PARAM_MAX + 1];

	if (uri_encode(key, k, sizeof(k)) < 0 || uri_encode(value, v, sizeof(v)) < 0)
		return -1;
	return evbuffer_add_printf(out, "%s%s=%s", evbuffer_get_length(out) > 0 ? "&" : "", k, v) < 0 ? -1 : 0;
}

struct gate_pinning {
	const char *pins[2][2];
	struct evbuffer *out;
	const char *why;
	int rc;
};

static bool
gate_pin_param(const char *name, const char *value, void *arg)
{
	struct gate_pinning *g = arg;
	bool pinned = false;

	for (int i = 0; i < 2; i++) {
		if (g->pins[i][1] == NULL || strcmp(name, g->pins[i][0]) != 0)
			continue;
		/* Absent, empty or the pin itself: the pin is added below. */
		if (value[0] != '\0' && strcmp(value, g->pins[i][1]) != 0) {
			g->why = i == 0 ? "this client may only use its own organization_id"
			                : "this client may only use its own project_id";
			g->rc = 403;
			return false;
		}
		pinned = true;
	}
	if (!pinned && gate_add_param(g->out, name, value) != 0) {
		g->rc = 503;
		return false;
	}
	return true;
}

/* Checks the query against the client's pins and adds the missing ones.
 * Returns 0 with *rewritten set (or NULL when no pin applies), 403 or 400
 * with *why set. */
static int
gate_apply_pins(const struct config_client *client, const char *query, char **rewritten, const char **why)
{
	struct gate_pinning g = { .pins = { { "organization_id", client->organization_id },
		                      { "project_id", client->project_id } } };

	*rewritten = NULL;
	if (client->organization_id == NULL && client->project_id == NULL)
		return 0;
	if ((g.out = evbuffer_new()) == NULL) {
		*why = "llamachatd is out of memory";
		return 503;
	}
	if (uri_query_each(query, gate_pin_param, &g) != 0) {
		g.rc = 400;
		g.why = "the query string is malformed";
	}
	for (int i = 0; i < 2 && g.rc == 0; i++)
		if (g.pins[i][1] != NULL && gate_add_param(g.out, g.pins[i][0], g.pins[i][1]) != 0)
			g.rc = 503;
	if (g.rc == 0) {
		size_t len = evbuffer_get_length(g.out);
		if ((*rewritten = malloc(len + 1)) == NULL) {
			g.rc = 503;
		} else {
			evbuffer_remove(g.out, *rewritten, len);
			(*rewritten)[len] = '\0';
		}
	}
	if (g.rc == 503)
		g.why = "llamachatd is out of memory";
	*why = g.why;
	evbuffer_free(g.out);
	return g.rc;
}

struct gate_scope_count {
	int organization_id, project_id;
};

static bool
gate_count_scope(const char *name, const char *value, void *arg)
{
	struct gate_scope_count *n = arg;

	(void)value;
	n->organization_id += strcmp(name, "organization_id") == 0;
	n->project_id += strcmp(name, "project_id") == 0;
	return true;
}

/* A scope named twice could be read first-wins here and last-wins
 * upstream (FastAPI): refused, so that the scope checked is the one used. */
static bool
gate_scope_is_single(struct request *req, const char *query)
{
	struct gate_scope_count n = { 0, 0 };

	/* Most queries name neither (nor spell a name with escapes). */
	if (query == NULL ||
	    (strstr(query, "organization_id") == NULL && strstr(query, "project_id") == NULL &&
	        strchr(query, '%') == NULL))
		return true;
	if (uri_query_each(query, gate_count_scope, &n) != 0) {
		reply_error(req, 400, REPLY_RETRY_WONT_HELP, "the query string is malformed");
		return false;
	}
	if (n.organization_id > 1 || n.project_id > 1) {
		reply_error(req, 400, REPLY_RETRY_WONT_HELP, "organization_id and project_id may each be given once");
		return false;
	}
	return true;
}

bool
gate_admit(struct clients *clients, struct request *req, const char **query, char **owned, struct caller *caller)
{
	const char *authorization = request_header(req, "Authorization");
	const struct config_client *client;
	enum clients_refusal refusal;
	const char *why;
	int status;

	*owned = NULL;
	memset(caller, 0, sizeof(*caller));
	if (!clients_enabled(clients)) {
		caller->see_all = true; /* single-user mode: loopback only, one user */
		return gate_scope_is_single(req, *query);
	}
	if ((client = clients_authenticate(
	         clients, authorization, req->peer_cert_sha256, clock_unix_us() / 1000000, &refusal)) == NULL) {
		/* The detail names no token, hash or client. */
		request_add_header(req, "WWW-Authenticate", "Bearer");
		reply_error(req, 401, REPLY_RETRY_WONT_HELP,
		    refusal == CLIENTS_EXPIRED             ? "the client token has expired"
		        : refusal == CLIENTS_NOT_YET_VALID ? "the client token is not valid yet"
		        : req->peer_cert_unverified        ? "the client certificate could not be verified against "
		                                             "tls.client_ca_file"
		                                           : "a client token is required: send Authorization: Bearer "
		                                             "<token> with a token llamachatd knows (or, over TLS, a "
		                                             "client certificate it knows)");
		return false;
	}
	if (!gate_scope_is_single(req, *query))
		return false;
	snprintf(caller->name, sizeof(caller->name), "%s", client->name);
	caller->see_all = client->see_all;
	caller->clients = clients;
	caller->client = client;
	if ((status = gate_apply_pins(client, *query, owned, &why)) != 0) {
		reply_error(req, status, status == 503 ? REPLY_RETRY_MAY_HELP : REPLY_RETRY_WONT_HELP, why);
		return false;
	}
	if (*owned != NULL)
		*query = *owned;
	return true;
}

bool
gate_may_go_upstream(struct request *req, const struct caller *caller)
{
	const struct config_client *client = caller->client;
	char seconds[24], why[256];
	bool may_retry;
	long wait;

	if (client == NULL || req == NULL)
		return true;
	/* A budget used up: no retry helps before the day turns. */
	if ((wait = budgets_check(caller->budgets, client->name, clock_unix_us(), why, sizeof(why), &may_retry)) > 0) {
		snprintf(seconds, sizeof(seconds), "%ld", wait);
		request_add_header(req, "Retry-After", seconds);
		reply_errorf(req, 429, may_retry ? REPLY_RETRY_MAY_HELP : REPLY_RETRY_WONT_HELP, "client %s: %s",
		    client->name, why);
		return false;
	}
	/* One bucket for every instance, in Redis: the request is held for
	 * it (never a cached lookup: those do not come here). */
	if (client->rate_per_s > 0 && req->rate == REQUEST_RATE_UNASKED && caller->take_shared_rate != NULL &&
	    caller->take_shared_rate(caller->take_shared_rate_arg, req, caller))
		return false;
	if (req->rate != REQUEST_RATE_TAKEN &&
	    (wait = clients_take(caller->clients, client, clock_monotonic_ms(), caller->instances)) > 0) {
		snprintf(seconds, sizeof(seconds), "%ld", wait);
		request_add_header(req, "Retry-After", seconds);
		reply_errorf(req, 429, REPLY_RETRY_MAY_HELP, "client %s is over its rate of %g requests per second",
		    client->name, client->rate_per_s);
		return false;
	}
	return true;
}

bool
gate_body_keeps_pins(struct request *req, const struct caller *caller, const char *body, size_t len)
{
	const struct config_client *client = caller->client;
	const char *names[2] = { "organization_id", "project_id" };
	json_t *doc;
	bool kept = true;

	if (client == NULL || (client->organization_id == NULL && client->project_id == NULL) || len == 0)
		return true;
	if ((doc = json_loadb(body, len, 0, NULL)) == NULL)
		return true; /* not JSON: the body check answers that */
	for (int i = 0; i < 2 && kept; i++) {
		const char *pin = i == 0 ? client->organization_id : client->project_id;
		json_t *value = json_object_get(doc, names[i]);
		if (pin != NULL && value != NULL && !json_is_null(value) &&
		    !(json_is_string(value) && strcmp(json_string_value(value), pin) == 0)) {
			reply_errorf(req, 403, REPLY_RETRY_WONT_HELP, "this client may only use its own %s", names[i]);
			kept = false;
		}
	}
	json_decref(doc);
	return kept;
}
