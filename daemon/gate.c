/* gate: who a request comes from and what it may ask: client tokens, rate
 * limits and pinned organization/project. */
#include "gate.h"

#include <event2/buffer.h>
#include <event2/http.h>
#include <sys/queue.h>
#include <event2/keyvalq_struct.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "chat.h"
#include "clients.h"
#include "config.h"
#include "reply.h"

static long long
gate_now_ms(void)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (long long)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

/* Appends "&key=value" (escaped) to out; returns -1 when out of memory. */
static int
gate_add_param(struct evbuffer *out, const char *key, const char *value)
{
	char *k = evhttp_uriencode(key, -1, 0), *v = evhttp_uriencode(value, -1, 0);
	int rc = -1;

	if (k != NULL && v != NULL)
		rc = evbuffer_add_printf(out, "%s%s=%s", evbuffer_get_length(out) > 0 ? "&" : "", k, v) < 0 ? -1 : 0;
	free(k);
	free(v);
	return rc;
}

/* Checks the query against the client's pins and adds the missing ones.
 * Returns 0 with *rewritten set (or NULL when no pin applies), 403 or 400
 * with *why set. */
static int
gate_apply_pins(const struct config_client *client, const char *query, char **rewritten, const char **why)
{
	const char *pins[2][2] = { { "organization_id", client->organization_id },
		{ "project_id", client->project_id } };
	struct evkeyvalq params;
	struct evkeyval *p;
	struct evbuffer *out;
	int rc = 0;

	*rewritten = NULL;
	if (client->organization_id == NULL && client->project_id == NULL)
		return 0;
	TAILQ_INIT(&params);
	if (query != NULL && evhttp_parse_query_str(query, &params) != 0) {
		*why = "the query string is malformed";
		return 400;
	}
	if ((out = evbuffer_new()) == NULL) {
		evhttp_clear_headers(&params);
		*why = "llamachatd is out of memory";
		return 503;
	}
	TAILQ_FOREACH(p, &params, next) {
		bool pinned = false;
		for (int i = 0; i < 2; i++) {
			if (pins[i][1] == NULL || strcmp(p->key, pins[i][0]) != 0)
				continue;
			/* Absent, empty or the pin itself: the pin is added below. */
			if (p->value[0] != '\0' && strcmp(p->value, pins[i][1]) != 0) {
				*why = i == 0 ? "this client may only use its own organization_id"
				              : "this client may only use its own project_id";
				rc = 403;
			}
			pinned = true;
		}
		if (!pinned && rc == 0 && gate_add_param(out, p->key, p->value) != 0)
			rc = 503;
	}
	for (int i = 0; i < 2 && rc == 0; i++)
		if (pins[i][1] != NULL && gate_add_param(out, pins[i][0], pins[i][1]) != 0)
			rc = 503;
	if (rc == 0) {
		size_t len = evbuffer_get_length(out);
		if ((*rewritten = malloc(len + 1)) == NULL) {
			rc = 503;
		} else {
			evbuffer_remove(out, *rewritten, len);
			(*rewritten)[len] = '\0';
		}
	}
	if (rc == 503)
		*why = "llamachatd is out of memory";
	evbuffer_free(out);
	evhttp_clear_headers(&params);
	return rc;
}

bool
gate_admit(
    struct clients *clients, struct evhttp_request *req, const char **query, char **owned, struct chat_caller *caller)
{
	const char *authorization = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");
	const struct config_client *client;
	const char *why;
	long wait;
	int status;

	*owned = NULL;
	memset(caller, 0, sizeof(*caller));
	if (!clients_enabled(clients)) {
		caller->see_all = true; /* single-user mode: loopback only, one user */
		return true;
	}
	if ((client = clients_authenticate(clients, authorization)) == NULL) {
		evhttp_add_header(evhttp_request_get_output_headers(req), "WWW-Authenticate", "Bearer");
		reply_error(req, 401, REPLY_RETRY_WONT_HELP,
		    "a client token is required: send Authorization: Bearer <token> with a token llamachatd knows");
		return false;
	}
	if ((wait = clients_take(clients, client, gate_now_ms())) > 0) {
		char seconds[24];
		snprintf(seconds, sizeof(seconds), "%ld", wait);
		evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After", seconds);
		reply_errorf(req, 429, REPLY_RETRY_MAY_HELP, "client %s is over its rate of %g requests per second",
		    client->name, client->rate_per_s);
		return false;
	}
	snprintf(caller->name, sizeof(caller->name), "%s", client->name);
	caller->see_all = client->see_all;
	if ((status = gate_apply_pins(client, *query, owned, &why)) != 0) {
		reply_error(req, status, status == 503 ? REPLY_RETRY_MAY_HELP : REPLY_RETRY_WONT_HELP, why);
		return false;
	}
	if (*owned != NULL)
		*query = *owned;
	return true;
}
