/* shared: the Redis client on the loop (hiredis async, libevent adapter),
 * with a deadline per call, a bound on calls in flight, a breaker, and the
 * owner records. */
#include "shared/shared.h"
#include "shared/shared_private.h"

#include <event2/event.h>
#include <hiredis/adapters/libevent.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <jansson.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include "base/clock.h"
#include "base/log.h"

#define SHARED_RECONNECT_MIN_MS 100
#define SHARED_RECONNECT_MAX_MS 5000
#define SHARED_PROBE_MS 500

const char *
shared_op_name(enum shared_op_kind kind)
{
	static const char *const names[SHARED_OP_KINDS] = { "get_owner", "put_owner", "ping", "sync_usage", "heartbeat",
		"claim_key", "answer_key", "release_key", "publish", "follow", "take_rate" };

	return (unsigned)kind < SHARED_OP_KINDS ? names[kind] : "other";
}

const char *
shared_error_name(enum shared_error_kind kind)
{
	static const char *const names[SHARED_ERROR_KINDS] = { "timeout", "connection", "reply", "busy" };

	return (unsigned)kind < SHARED_ERROR_KINDS ? names[kind] : "other";
}

static void shared_connect(struct shared *shared);

/* Up or down, said once per change. */
static void
shared_set_up(struct shared *shared, bool up, const char *why)
{
	double down_since = shared->since_wall; /* of the state it leaves */

	if (shared->up == up)
		return;
	shared->up = up;
	shared->since_wall = clock_unix_s();
	if (shared->on_change != NULL)
		shared->on_change(up, down_since, shared->on_change_arg);
	if (up)
		log_info("shared: Redis at %s is up", shared->redis);
	else
		log_warnx("shared: Redis at %s is down (%s): a miss that needs a session's owner answers 503 until it "
		          "is back",
		    shared->redis, why);
}

static void
shared_op_free(struct shared_op *op)
{
	LIST_REMOVE(op, link);
	if (op->deadline != NULL)
		event_free(op->deadline);
	free(op->big);
	free(op);
}

void
shared_op_discard(struct shared_op *op)
{
	shared_op_free(op);
}

/* Hands the caller its result, once. */
static void
shared_op_answer(struct shared_op *op, enum shared_result result, const struct shared_owner *owner)
{
	if (op->answered)
		return;
	op->answered = true;
	evtimer_del(op->deadline);
	if (op->cb != NULL)
		op->cb(result, owner, op->arg);
	else if (op->usage_cb != NULL)
		op->usage_cb(result, 0, 0, op->arg);
	else if (op->claim_cb != NULL)
		op->claim_cb(SHARED_CLAIM_UNAVAILABLE, 0, NULL, 0, op->arg);
}

static void
shared_failed(struct shared *shared, enum shared_error_kind kind, const char *why)
{
	shared->stats.errors[kind]++;
	if (++shared->failures >= shared->settings.breaker_failures)
		shared_set_up(shared, false, why);
	if (!shared->up && shared->connected && !evtimer_pending(shared->probe, NULL)) {
		struct timeval tv = clock_timeval_ms(SHARED_PROBE_MS);
		evtimer_add(shared->probe, &tv);
	}
}

static void
shared_succeeded(struct shared *shared, struct shared_op *op)
{
	shared->failures = 0;
	histogram_observe(&shared->stats.duration[op->kind], clock_monotonic_s() - op->started);
	if (shared->connected)
		shared_set_up(shared, true, NULL);
}

static void
shared_on_deadline(evutil_socket_t fd, short what, void *arg)
{
	struct shared_op *op = arg;
	struct shared *shared = op->shared;

	(void)fd;
	(void)what;
	if (!op->with_redis) {
		/* Failed before it was sent: its answer, deferred to here. */
		shared_op_answer(op, op->early, NULL);
		shared_op_free(op);
		return;
	}
	shared_op_answer(op, SHARED_UNAVAILABLE, NULL);
	shared_failed(shared, SHARED_ERR_TIMEOUT, "a call passed shared.timeout_ms");
	/* The op stays until hiredis hands its reply (or the connection's
	 * end) to shared_on_reply. */
}

/* Reads an owner record's JSON into owner; false when it is not one. */
static bool
shared_parse_owner(const char *text, size_t len, struct shared_owner *owner)
{
	json_t *doc = json_loadb(text, len, 0, NULL);
	const char *name = json_string_value(json_object_get(doc, "owner"));
	const char *org = json_string_value(json_object_get(doc, "organization_id"));
	const char *project = json_string_value(json_object_get(doc, "project_id"));
	bool ok = name != NULL && strlen(name) <= SHARED_NAME_MAX && (org == NULL || strlen(org) <= SHARED_SCOPE_MAX) &&
	    (project == NULL || strlen(project) <= SHARED_SCOPE_MAX);

	if (ok) {
		snprintf(owner->owner, sizeof(owner->owner), "%s", name);
		snprintf(owner->organization_id, sizeof(owner->organization_id), "%s", org != NULL ? org : "");
		snprintf(owner->project_id, sizeof(owner->project_id), "%s", project != NULL ? project : "");
	}
	json_decref(doc);
	return ok;
}

/* Sums the other instances' fields of a usage hash (HGETALL's flat array
 * of names and values) into others (tokens, sessions). */
static bool
shared_read_others(const struct shared *shared, const redisReply *reply, unsigned long long others[2])
{
	size_t own = strlen(shared->instance);

	others[0] = others[1] = 0;
	if (reply->type != REDIS_REPLY_ARRAY || reply->elements % 2 != 0)
		return false;
	for (size_t i = 0; i < reply->elements; i += 2) {
		const redisReply *name = reply->element[i], *value = reply->element[i + 1];
		const char *colon;
		char *end;
		unsigned long long n;
		if (name->type != REDIS_REPLY_STRING || value->type != REDIS_REPLY_STRING ||
		    (colon = memchr(name->str, ':', name->len)) == NULL)
			return false;
		n = strtoull(value->str, &end, 10);
		if (end == value->str)
			return false;
		if ((size_t)(colon - name->str) == own && memcmp(name->str, shared->instance, own) == 0)
			continue; /* ours */
		if (strcmp(colon + 1, "tokens") == 0)
			others[0] += n;
		else if (strcmp(colon + 1, "sessions") == 0)
			others[1] += n;
	}
	return true;
}

static void shared_on_reply(redisAsyncContext *ac, void *r, void *privdata);

/* Sends op's script with its key and arguments: by its SHA-1, or whole
 * once Redis said it does not know it. */
static int
shared_send_script(struct shared *shared, struct shared_op *op)
{
	const char *argv[3 + 4];
	size_t lens[3 + 4];
	int argc = 0;

	if (shared->ac == NULL)
		return REDIS_ERR;
	if (op->big_argc > 0) {
		op->big_argv[0] = op->sent_whole ? "EVAL" : "EVALSHA";
		op->big_argv[1] = op->sent_whole ? op->script->text : op->script->sha1;
		op->big_lens[0] = strlen(op->big_argv[0]);
		op->big_lens[1] = strlen(op->big_argv[1]);
		return redisAsyncCommandArgv(shared->ac, shared_on_reply, op, op->big_argc, op->big_argv, op->big_lens);
	}
	argv[argc++] = op->sent_whole ? "EVAL" : "EVALSHA";
	argv[argc++] = op->sent_whole ? op->script->text : op->script->sha1;
	argv[argc++] = "1";
	for (int i = 0; i < op->script_argc; i++)
		argv[argc++] = op->script_args[i];
	for (int i = 0; i < argc; i++)
		lens[i] = strlen(argv[i]);
	return redisAsyncCommandArgv(shared->ac, shared_on_reply, op, argc, argv, lens);
}

static void
shared_on_reply(redisAsyncContext *ac, void *r, void *privdata)
{
	struct shared_op *op = privdata;
	struct shared *shared = op->shared;
	redisReply *reply = r;
	struct shared_owner owner;

	(void)ac;
	if (shared->stopping) {
		shared_op_free(op);
		return;
	}
	if (op->kind == SHARED_OP_PING)
		shared->probing = false;
	if (reply != NULL && reply->type == REDIS_REPLY_ERROR && op->script != NULL && !op->sent_whole &&
	    !op->answered && strncmp(reply->str, "NOSCRIPT", 8) == 0) {
		op->sent_whole = true;
		if (shared_send_script(shared, op) == REDIS_OK)
			return; /* the same op, its deadline running */
	}
	if (reply == NULL) {
		/* The connection ended before the answer. */
		if (!op->answered)
			shared_failed(shared, SHARED_ERR_CONNECTION, "the connection dropped");
		shared_op_answer(op, SHARED_UNAVAILABLE, NULL);
	} else if (reply->type == REDIS_REPLY_ERROR) {
		log_warnx("shared: Redis answered %s with an error: %.*s", shared_op_name(op->kind), (int)reply->len,
		    reply->str);
		if (!op->answered)
			shared_failed(shared, SHARED_ERR_REPLY, "Redis answers with errors");
		shared_op_answer(op, SHARED_UNAVAILABLE, NULL);
	} else if (op->answered) {
		/* Past its deadline: too late for the caller, but Redis lives. */
		shared->failures = 0;
	} else if (op->read_reply != NULL) {
		/* Marked answered first: the reader hands the caller its result. */
		bool good;
		op->answered = true;
		evtimer_del(op->deadline);
		if ((good = op->read_reply(op, reply)))
			shared_succeeded(shared, op);
		else
			shared_failed(shared, SHARED_ERR_REPLY, "an answer is not readable");
		if (!good && op->claim_cb != NULL)
			op->claim_cb(SHARED_CLAIM_UNAVAILABLE, 0, NULL, 0, op->arg);
		else if (!good && op->usage_cb != NULL)
			op->usage_cb(SHARED_UNAVAILABLE, 0, 0, op->arg);
	} else if (op->kind == SHARED_OP_HEARTBEAT) {
		if (reply->type == REDIS_REPLY_ARRAY && reply->elements == 2 &&
		    reply->element[0]->type == REDIS_REPLY_INTEGER && reply->element[0]->integer >= 1 &&
		    reply->element[1]->type == REDIS_REPLY_INTEGER) {
			shared_succeeded(shared, op);
			op->answered = true;
			evtimer_del(op->deadline);
			op->usage_cb(SHARED_FOUND, (unsigned long long)reply->element[0]->integer,
			    (unsigned long long)reply->element[1]->integer, op->arg);
		} else {
			shared_failed(shared, SHARED_ERR_REPLY, "the instance count is not readable");
			shared_op_answer(op, SHARED_UNAVAILABLE, NULL);
		}
	} else if (op->kind == SHARED_OP_SYNC_USAGE) {
		unsigned long long others[2];
		if (shared_read_others(shared, reply, others)) {
			shared_succeeded(shared, op);
			op->answered = true;
			evtimer_del(op->deadline);
			op->usage_cb(SHARED_FOUND, others[0], others[1], op->arg);
		} else {
			shared_failed(shared, SHARED_ERR_REPLY, "a usage hash is not readable");
			shared_op_answer(op, SHARED_UNAVAILABLE, NULL);
		}
	} else if (op->kind == SHARED_OP_GET_OWNER) {
		if (reply->type == REDIS_REPLY_NIL) {
			shared_succeeded(shared, op);
			shared_op_answer(op, SHARED_ABSENT, NULL);
		} else if (reply->type == REDIS_REPLY_STRING && shared_parse_owner(reply->str, reply->len, &owner)) {
			shared_succeeded(shared, op);
			shared_op_answer(op, SHARED_FOUND, &owner);
		} else {
			shared_failed(shared, SHARED_ERR_REPLY, "an owner record is not readable");
			shared_op_answer(op, SHARED_UNAVAILABLE, NULL);
		}
	} else {
		shared_succeeded(shared, op);
		shared_op_answer(op, SHARED_FOUND, NULL);
	}
	shared->stats.in_flight--;
	shared_op_free(op);
}

/* A new op of kind; it answers cb (may be NULL) once. */
struct shared_op *
shared_op_new(struct shared *shared, enum shared_op_kind kind, shared_owner_cb cb, void *arg)
{
	struct shared_op *op = calloc(1, sizeof(*op));

	if (op == NULL)
		return NULL;
	op->shared = shared;
	op->kind = kind;
	op->cb = cb;
	op->arg = arg;
	op->started = clock_monotonic_s();
	if ((op->deadline = evtimer_new(shared->base, shared_on_deadline, op)) == NULL) {
		free(op);
		return NULL;
	}
	LIST_INSERT_HEAD(&shared->ops, op, link);
	return op;
}

/* Sends op's command (argv of argc strings with lengths); on any failure
 * to send, op answers SHARED_UNAVAILABLE from the loop, later. */
void
shared_send(struct shared *shared, struct shared_op *op, int argc, const char **argv, const size_t *lens)
{
	struct timeval tv = clock_timeval_ms(shared->settings.timeout_ms);
	enum shared_error_kind refusal = SHARED_ERR_CONNECTION;

	/* A probe goes while down; anything else fails at once then. */
	if (shared->ac != NULL && shared->connected && (shared->up || op->kind == SHARED_OP_PING)) {
		if (shared->stats.in_flight >= shared->settings.max_in_flight) {
			refusal = SHARED_ERR_BUSY;
		} else if ((op->script != NULL ? shared_send_script(shared, op)
		                               : redisAsyncCommandArgv(
		                                     shared->ac, shared_on_reply, op, argc, argv, lens)) == REDIS_OK) {
			op->with_redis = true;
			shared->stats.in_flight++;
			evtimer_add(op->deadline, &tv);
			return;
		}
	}
	shared->stats.errors[refusal]++;
	op->early = SHARED_UNAVAILABLE;
	tv = clock_timeval_ms(0);
	evtimer_add(op->deadline, &tv);
}

static void
shared_on_probe(evutil_socket_t fd, short what, void *arg)
{
	struct shared *shared = arg;
	struct shared_op *op;
	const char *argv[] = { "PING" };
	size_t lens[] = { 4 };

	(void)fd;
	(void)what;
	if (shared->up || !shared->connected || shared->probing)
		return;
	if ((op = shared_op_new(shared, SHARED_OP_PING, NULL, NULL)) != NULL) {
		shared->probing = true;
		shared_send(shared, op, 1, argv, lens);
		if (!op->with_redis)
			shared->probing = false;
	}
	{
		struct timeval tv = clock_timeval_ms(SHARED_PROBE_MS);
		evtimer_add(shared->probe, &tv);
	}
}

static void
shared_on_connect(const redisAsyncContext *ac, int status)
{
	struct shared *shared = ac->data;

	if (status != REDIS_OK) {
		/* hiredis frees the context after this. */
		shared->ac = NULL;
		shared->connected = false;
		shared_set_up(shared, false, ac->errstr[0] != '\0' ? ac->errstr : "cannot connect");
		struct timeval tv = clock_timeval_ms(shared->reconnect_ms);
		evtimer_add(shared->reconnect, &tv);
		shared->reconnect_ms = shared->reconnect_ms * 2 > SHARED_RECONNECT_MAX_MS ? SHARED_RECONNECT_MAX_MS
		                                                                          : shared->reconnect_ms * 2;
		return;
	}
	shared->connected = true;
	shared->failures = 0;
	shared->reconnect_ms = SHARED_RECONNECT_MIN_MS;
	shared_set_up(shared, true, NULL);
}

static void
shared_on_disconnect(const redisAsyncContext *ac, int status)
{
	struct shared *shared = ac->data;
	struct timeval tv = clock_timeval_ms(SHARED_RECONNECT_MIN_MS);

	(void)status;
	shared->ac = NULL;
	shared->connected = false;
	if (shared->stopping)
		return;
	shared_set_up(shared, false, ac->errstr[0] != '\0' ? ac->errstr : "the connection closed");
	evtimer_add(shared->reconnect, &tv);
}

static void
shared_on_reconnect(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	shared_connect(arg);
}

redisAsyncContext *
shared_connect_context(const struct shared *shared)
{
	return shared->unix_path != NULL ? redisAsyncConnectUnix(shared->unix_path)
	                                 : redisAsyncConnect(shared->host, shared->port);
}

/* Starts a connection; its outcome comes to shared_on_connect. */
static void
shared_connect(struct shared *shared)
{
	redisAsyncContext *ac = shared_connect_context(shared);

	if (ac == NULL || ac->err != 0 || redisLibeventAttach(ac, shared->base) != REDIS_OK) {
		struct timeval tv = clock_timeval_ms(shared->reconnect_ms);
		shared_set_up(shared, false, ac != NULL && ac->errstr[0] != '\0' ? ac->errstr : "cannot connect");
		if (ac != NULL)
			redisAsyncFree(ac);
		evtimer_add(shared->reconnect, &tv);
		return;
	}
	ac->data = shared;
	redisAsyncSetConnectCallback(ac, shared_on_connect);
	redisAsyncSetDisconnectCallback(ac, shared_on_disconnect);
	shared->ac = ac;
}

/* Splits "unix:/path", "1.2.3.4:6379" or "[::1]:6379"; NULL or a reason.
 * Names are refused: hiredis would resolve them blocking the loop. */
static const char *
shared_parse_address(struct shared *shared, const char *text)
{
	const char *colon;
	char *end;
	long port;
	size_t host_len;

	if (strncmp(text, "unix:", 5) == 0) {
		if (text[5] != '/')
			return "a unix socket's path must be absolute";
		shared->unix_path = strdup(text + 5);
		return shared->unix_path != NULL ? NULL : "out of memory";
	}
	if ((colon = strrchr(text, ':')) == NULL)
		return "must be \"unix:/path\" or \"address:port\"";
	port = strtol(colon + 1, &end, 10);
	if (*end != '\0' || port < 1 || port > 65535)
		return "has no valid port";
	host_len = (size_t)(colon - text);
	if (text[0] == '[' && host_len > 2 && text[host_len - 1] == ']')
		text++, host_len -= 2;
	if (host_len == 0 || host_len >= sizeof(shared->host))
		return "has no valid address";
	memcpy(shared->host, text, host_len);
	shared->host[host_len] = '\0';
	if (strspn(shared->host, "0123456789.") != host_len &&
	    strspn(shared->host, "0123456789abcdefABCDEF:.") != host_len)
		return "must be an IP address, not a name (hiredis would resolve a name blocking the loop)";
	shared->port = (int)port;
	return NULL;
}

struct shared *
shared_create(struct event_base *base, const struct shared_settings *settings, char *why, size_t why_size)
{
	struct shared *shared = calloc(1, sizeof(*shared));
	const char *bad;

	if (shared == NULL || (shared->redis = strdup(settings->redis)) == NULL ||
	    (shared->instance = strdup(settings->instance)) == NULL) {
		snprintf(why, why_size, "shared: out of memory");
		goto fail;
	}
	if ((bad = shared_parse_address(shared, settings->redis)) != NULL) {
		snprintf(why, why_size, "shared.redis: \"%s\" %s", settings->redis, bad);
		goto fail;
	}
	shared->base = base;
	shared->settings = *settings;
	shared->settings.redis = shared->redis;
	shared->settings.instance = shared->instance;
	shared->reconnect_ms = SHARED_RECONNECT_MIN_MS;
	shared->since_wall = clock_unix_s();
	LIST_INIT(&shared->ops);
	shared->reconnect = evtimer_new(base, shared_on_reconnect, shared);
	shared->probe = evtimer_new(base, shared_on_probe, shared);
	if (shared->reconnect == NULL || shared->probe == NULL) {
		snprintf(why, why_size, "shared: out of memory");
		goto fail;
	}
	shared_connect(shared);
	return shared;
fail:
	shared_free(shared);
	return NULL;
}

void
shared_free(struct shared *shared)
{
	if (shared == NULL)
		return;
	/* Whoever still waits hears "unavailable" now: nothing is left
	 * hanging at a stop. */
	for (struct shared_op *op = LIST_FIRST(&shared->ops); op != NULL; op = LIST_NEXT(op, link))
		shared_op_answer(op, SHARED_UNAVAILABLE, NULL);
	shared->stopping = true;
	shared_follow_stop(shared);
	if (shared->ac != NULL)
		redisAsyncFree(shared->ac); /* its pending replies come back NULL: freed */
	while (!LIST_EMPTY(&shared->ops))
		shared_op_free(LIST_FIRST(&shared->ops));
	if (shared->reconnect != NULL)
		event_free(shared->reconnect);
	if (shared->probe != NULL)
		event_free(shared->probe);
	free(shared->redis);
	free(shared->instance);
	free(shared->unix_path);
	free(shared);
}

void
shared_set_on_change(struct shared *shared, void (*fn)(bool up, double since_wall, void *arg), void *arg)
{
	shared->on_change = fn;
	shared->on_change_arg = arg;
}

bool
shared_is_up(const struct shared *shared, double *since_wall)
{
	if (since_wall != NULL)
		*since_wall = shared->since_wall;
	return shared->up;
}

const struct shared_stats *
shared_get_stats(const struct shared *shared)
{
	return &shared->stats;
}

/* "llamachatd:own:{session}" into key (size bytes); its length, or 0. */
static size_t
shared_owner_key(const char *session, char *key, size_t size)
{
	int n = snprintf(key, size, SHARED_KEY_PREFIX "own:%s", session);

	return n > 0 && (size_t)n < size ? (size_t)n : 0;
}

struct shared_op *
shared_get_owner(struct shared *shared, const char *session, shared_owner_cb cb, void *arg)
{
	struct shared_op *op = shared_op_new(shared, SHARED_OP_GET_OWNER, cb, arg);
	char key[256];
	const char *argv[2] = { "GET", key };
	size_t lens[2] = { 3, shared_owner_key(session, key, sizeof(key)) };

	if (op == NULL)
		return NULL;
	if (lens[1] == 0) {
		op->early = SHARED_ABSENT; /* no session has such an id */
		struct timeval tv = clock_timeval_ms(0);
		evtimer_add(op->deadline, &tv);
		return op;
	}
	shared_send(shared, op, 2, argv, lens);
	return op;
}

char *
shared_owner_json(const struct shared *shared, const struct shared_owner *owner)
{
	json_t *doc;
	char *text;

	if (owner == NULL || owner->owner[0] == '\0')
		return strdup("");
	doc = json_pack("{s:s,s:s,s:s,s:s}", "owner", owner->owner, "organization_id", owner->organization_id,
	    "project_id", owner->project_id, "instance", shared->instance);
	text = doc != NULL ? json_dumps(doc, JSON_COMPACT) : NULL;
	json_decref(doc);
	return text;
}

void
shared_put_owner(struct shared *shared, const char *session, const struct shared_owner *owner)
{
	char key[256], *value = shared_owner_json(shared, owner);
	struct shared_op *op;

	if (value != NULL && value[0] != '\0' && shared_owner_key(session, key, sizeof(key)) > 0 &&
	    (op = shared_op_new(shared, SHARED_OP_PUT_OWNER, NULL, NULL)) != NULL) {
		const char *argv[3] = { "SET", key, value };
		size_t lens[3] = { 3, strlen(key), strlen(value) };
		shared_send(shared, op, 3, argv, lens);
	} else if (value == NULL || value[0] != '\0') {
		log_warnx("shared: out of memory: the owner of session %s is not published", session);
	}
	free(value);
}

/* The script's SHA-1, as EVALSHA names it, computed once. */
const struct shared_script *
shared_script_ready(struct shared_script *script)
{
	unsigned char digest[SHA_DIGEST_LENGTH];

	if (script->sha1[0] == '\0') {
		SHA1((const unsigned char *)script->text, strlen(script->text), digest);
		for (int i = 0; i < SHA_DIGEST_LENGTH; i++)
			snprintf(script->sha1 + 2 * i, 3, "%02x", digest[i]);
	}
	return script;
}

/* Sets op up as a call of script with key and up to three arguments. */
void
shared_op_script(
    struct shared_op *op, struct shared_script *script, const char *key, const char *a1, const char *a2, const char *a3)
{
	const char *args[4] = { key, a1, a2, a3 };

	op->script = shared_script_ready(script);
	op->script_argc = 0;
	for (int i = 0; i < 4 && args[i] != NULL; i++)
		snprintf(op->script_args[op->script_argc++], sizeof(op->script_args[0]), "%s", args[i]);
}

/* Raises this instance's fields of a usage hash to the totals given (never
 * lowers them: a stale or repeated write cannot undo a newer one), keeps
 * the hash two days, and returns it whole. */
static struct shared_script shared_usage_script = {
	.text = "local function raise(field, value)\n"
	        "  local now = tonumber(redis.call('HGET', KEYS[1], field) or '0')\n"
	        "  if value > now then redis.call('HSET', KEYS[1], field, value) end\n"
	        "end\n"
	        "raise(ARGV[1] .. ':tokens', tonumber(ARGV[2]))\n"
	        "raise(ARGV[1] .. ':sessions', tonumber(ARGV[3]))\n"
	        "redis.call('EXPIRE', KEYS[1], 172800)\n"
	        "return redis.call('HGETALL', KEYS[1])\n",
};

struct shared_op *
shared_sync_usage(struct shared *shared, const char *client, const char *day, unsigned long long tokens,
    unsigned long long sessions, shared_usage_cb cb, void *arg)
{
	struct shared_op *op = shared_op_new(shared, SHARED_OP_SYNC_USAGE, NULL, arg);
	char key[192], tokens_text[24], sessions_text[24];
	int n = snprintf(key, sizeof(key), SHARED_KEY_PREFIX "budget:%s:%s", client, day);

	if (op == NULL)
		return NULL;
	op->usage_cb = cb;
	if (n <= 0 || (size_t)n >= sizeof(key)) {
		op->early = SHARED_UNAVAILABLE;
		struct timeval tv = clock_timeval_ms(0);
		evtimer_add(op->deadline, &tv);
		return op;
	}
	snprintf(tokens_text, sizeof(tokens_text), "%llu", tokens);
	snprintf(sessions_text, sizeof(sessions_text), "%llu", sessions);
	shared_op_script(op, &shared_usage_script, key, shared->instance, tokens_text, sessions_text);
	shared_send(shared, op, 0, NULL, NULL);
	return op;
}

/* Records this instance's word (by Redis's own clock, so the instances'
 * clocks need not agree), forgets instances silent for 5 s, and counts
 * the rest; and says whether this instance's marker was missing (a first
 * word, or Redis lost its data: the instance then republishes). */
static struct shared_script shared_heartbeat_script = {
	.text = "local t = redis.call('TIME')\n"
	        "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
	        "redis.call('ZADD', KEYS[1], now, ARGV[1])\n"
	        "redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - 5000)\n"
	        "redis.call('PEXPIRE', KEYS[1], 60000)\n"
	        "local marker = 'llamachatd:seen:' .. ARGV[1]\n"
	        "local fresh = 0\n"
	        "if redis.call('EXISTS', marker) == 0 then\n"
	        "  redis.call('SET', marker, now)\n"
	        "  fresh = 1\n"
	        "end\n"
	        "return {redis.call('ZCARD', KEYS[1]), fresh}\n",
};

struct shared_op *
shared_heartbeat(struct shared *shared, shared_usage_cb cb, void *arg)
{
	struct shared_op *op = shared_op_new(shared, SHARED_OP_HEARTBEAT, NULL, arg);

	if (op == NULL)
		return NULL;
	op->usage_cb = cb;
	shared_op_script(op, &shared_heartbeat_script, SHARED_KEY_PREFIX "instances", shared->instance, NULL, NULL);
	shared_send(shared, op, 0, NULL, NULL);
	return op;
}
