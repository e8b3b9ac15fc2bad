/* caller: who a request comes from and with what rights, as the gate
 * found it: what every handler is handed and what the gate checks before a
 * call goes upstream. It belongs to the gate's layer, so that the handlers
 * depend on the gate and never the reverse. */
#ifndef LLAMACHATD_CALLER_H
#define LLAMACHATD_CALLER_H

#include <stdbool.h>

struct access_entry;
struct budgets;
struct clients;
struct config_client;

#define CALLER_NAME_MAX 64
struct request;

struct caller {
	char name[CALLER_NAME_MAX + 1]; /* "" in single-user mode */
	bool see_all; /* may see and touch every session */
	struct access_entry *access; /* the request's record; may be NULL */
	/* The client's entry and table, for the checks made when a call is
	 * about to go upstream (gate_may_go_upstream); NULL in single-user mode.
	 * Valid only while the handler runs: a reload frees them. */
	struct clients *clients;
	const struct config_client *client;
	const struct budgets *budgets; /* lives as long as the daemon */
	/* The daemons that share the client's rate limit (shared mode: those
	 * seen live), each taking its part; 0 or 1: this one alone. */
	long instances;
	/* A session this store does not hold that its owner record (shared
	 * mode) lets this caller touch: a miss of it reads through and is
	 * stored with that owner. NULL: none. Valid only while the handler
	 * runs. */
	const struct caller_grant *granted;
	/* Shared mode: takes the client's rate from the bucket every instance
	 * shares. Returns true when it took the request over (it is held
	 * until Redis answers, then routed again with req->rate set, or
	 * answered 429); false when Redis cannot answer now (the gate takes
	 * the local part then). NULL: the local bucket only. */
	bool (*take_shared_rate)(void *arg, struct request *req, const struct caller *caller);
	void *take_shared_rate_arg;
};

struct caller_grant {
	const char *session;
	const char *owner;
};

#endif
