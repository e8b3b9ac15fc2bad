/* shared_private: what the files of the shared layer share (shared.c:
 * the connection, calls and their deadlines, the owner and usage records;
 * shared_keys.c: the Idempotency-Key records). Nothing outside
 * daemon/shared/ includes it. */
#ifndef LLAMACHATD_SHARED_PRIVATE_H
#define LLAMACHATD_SHARED_PRIVATE_H

#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <sys/queue.h>

#include "shared/shared.h"

#define SHARED_KEY_PREFIX "llamachatd:"

struct shared_op {
	struct shared *shared;
	LIST_ENTRY(shared_op) link;
	enum shared_op_kind kind;
	shared_owner_cb cb; /* NULL: nobody waits (a publication, a probe) */
	shared_usage_cb usage_cb; /* for SHARED_OP_SYNC_USAGE */
	shared_claim_cb claim_cb; /* for SHARED_OP_CLAIM_KEY */
	/* Reads a reply of an op defined outside shared.c and answers its
	 * caller; false when the reply is not one (it then answers
	 * unavailable). NULL: shared.c reads it. */
	bool (*read_reply)(struct shared_op *op, const redisReply *reply);
	void *arg;
	struct event *deadline;
	double started; /* monotonic seconds */
	bool answered; /* the caller has its result (or cancelled) */
	bool with_redis; /* hiredis holds it: freed by its reply callback */
	enum shared_result early; /* for an op failed before it was sent */
	/* A script call: sent by its SHA-1 (EVALSHA), and once more whole
	 * (EVAL) when Redis does not know it (NOSCRIPT: a restart, a
	 * FLUSHALL, a new primary). Its key and arguments are kept for that. */
	const struct shared_script *script;
	bool sent_whole;
	int script_argc; /* the key, then the arguments */
	char script_args[4][192];
	/* Or, for a script with larger arguments (a publication): numkeys
	 * keys then arguments, pointing into big, which the op owns. */
	int big_argc, numkeys;
	const char *big_argv[16];
	size_t big_lens[16];
	char *big;
};

struct shared_script {
	const char *text;
	char sha1[41]; /* "": not computed yet */
};

struct shared {
	struct event_base *base;
	struct shared_settings settings; /* strings owned below */
	char *redis, *instance;
	char *unix_path; /* NULL: TCP */
	char host[64];
	int port;
	redisAsyncContext *ac; /* NULL: not connected */
	bool connected;
	bool up; /* connected, and the breaker closed */
	double since_wall; /* of up's value */
	long failures; /* in a row */
	long reconnect_ms;
	struct event *reconnect, *probe;
	bool probing;
	LIST_HEAD(, shared_op) ops; /* every op not yet freed */
	struct shared_stats stats;
	bool stopping;
	void (*on_change)(bool up, double since_wall, void *arg); /* shared_set_on_change */
	void *on_change_arg;
	struct shared_follower *follower; /* NULL: not following (shared_stream.c) */
};

/* shared_stream.c: stops following (shared_free). */
void shared_follow_stop(struct shared *shared);
/* shared.c: the connect target, for the follower's own connection. */
redisAsyncContext *shared_connect_context(const struct shared *shared);

/* A new op of kind; it answers cb (may be NULL) once. NULL: out of memory. */
struct shared_op *shared_op_new(struct shared *shared, enum shared_op_kind kind, shared_owner_cb cb, void *arg);
/* Sends op (argv of argc strings with lens; a script op sends its script
 * instead); on any failure to send, op answers SHARED_UNAVAILABLE from the
 * loop, later. */
void shared_send(struct shared *shared, struct shared_op *op, int argc, const char **argv, const size_t *lens);
/* An owner record's JSON (owner, scope, this instance) as a new string the
 * caller frees; "" when owner is NULL or names nobody; NULL when out of
 * memory. */
char *shared_owner_json(const struct shared *shared, const struct shared_owner *owner);
/* Frees an op never sent (its caller is not answered). */
void shared_op_discard(struct shared_op *op);
/* The script, its SHA-1 computed (once). */
const struct shared_script *shared_script_ready(struct shared_script *script);
/* Sets op up as a call of script with key and up to three arguments. */
void shared_op_script(struct shared_op *op, struct shared_script *script, const char *key, const char *a1,
    const char *a2, const char *a3);

#endif
