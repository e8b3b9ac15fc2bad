/* gate: who a request comes from and what it may ask: client tokens, rate
 * limits and pinned organization/project. */
/* Layer gate (daemon/gate/): who is calling and what it may do. Owns the
 * caller (caller.h), client tokens and rates (clients.h), budgets, the API
 * key's sources, the Idempotency-Key rules and the Host/Origin check. May
 * include http/, store/ and base/; never chat/ or upstream/. */
#ifndef LLAMACHATD_GATE_H
#define LLAMACHATD_GATE_H

#include <stdbool.h>
#include <stddef.h>

struct caller;
struct clients;
struct request;

/* Lets a request in, or answers it (401 unknown token, 429 over the rate,
 * 403 another scope than the client's pin, 400 malformed query or a scope given twice) and returns
 * false. On success caller says who it is (in single-user mode: nobody, who
 * may see all), and *query points at the query to use: the request's own,
 * or a new one with the client's pins added, which the caller frees through
 * *owned (NULL when nothing was allocated). Lookups and lists answered from
 * the store need nothing more. */
bool gate_admit(struct clients *clients, struct request *req, const char **query, char **owned, struct caller *caller)
    __attribute__((warn_unused_result));

/* The check a call makes right before it goes upstream (creates, streams,
 * history, delete, pass-through, summary misses): the client's budgets for
 * the day, then its rate. Returns true when it may go; otherwise it has
 * answered req (429 with Retry-After: the seconds until the day turns, with
 * x-should-retry: false, for a budget; the wait for the next token, for the
 * rate) and returns false, or (shared mode) has handed req to
 * caller->take_shared_rate, which routes it again once Redis took its rate,
 * and returns false: either way the handler is done with req and must have
 * changed nothing before (a request routed again runs it anew). Always
 * true in single-user mode. */
bool gate_may_go_upstream(struct request *req, const struct caller *caller) __attribute__((warn_unused_result));

/* A pinned client's scope holds in a body too: a create body whose
 * organization_id or project_id is another than the client's pin is
 * answered 403 and false is returned. True otherwise (also for a body that
 * is not JSON, which its own check refuses). */
bool gate_body_keeps_pins(struct request *req, const struct caller *caller, const char *body, size_t len)
    __attribute__((warn_unused_result));

#endif
