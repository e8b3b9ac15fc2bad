/* shared_stream: the stream of sessions. Publications (the owner record
 * and a stream entry, in one script) go on the shared connection; the
 * follower reads what the other instances published on a connection of
 * its own, because a blocking XREAD holds up every call queued behind it
 * on the same connection. */
#include "shared/shared.h"
#include "shared/shared_private.h"

#include <event2/event.h>
#include <hiredis/adapters/libevent.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/log.h"

#define SHARED_STREAM_KEY SHARED_KEY_PREFIX "sessions"
#define SHARED_STREAM_COUNT_KEY SHARED_KEY_PREFIX "sessions:count"
#define FOLLOW_BLOCK_MS 1000 /* how long one read waits for news */
#define FOLLOW_COUNT 128 /* entries a read takes at most */
#define FOLLOW_RETRY_MS 1000 /* after a failed read or connection */

/* Sets or removes the owner record and appends the stream entry, trimmed
 * to about ARGV[9] entries ("~": whole macro nodes, cheap). Each entry is
 * numbered (KEYS[3] counts them), so that a follower that finds a number
 * skipped knows entries it had not read were trimmed. */
static struct shared_script shared_publish_script = {
	.text = "if ARGV[1] == 'del' then\n"
	        "  redis.call('DEL', KEYS[1])\n"
	        "elseif ARGV[4] ~= '' then\n"
	        "  redis.call('SET', KEYS[1], ARGV[4])\n"
	        "end\n"
	        "local n = redis.call('INCR', KEYS[3])\n"
	        "return redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[9], '*', 'op', ARGV[1], 'id', ARGV[2],\n"
	        "  'instance', ARGV[3], 'owner', ARGV[5], 'organization_id', ARGV[6], 'project_id', ARGV[7],\n"
	        "  'session', ARGV[8], 'n', tostring(n))\n",
};

struct shared_op *
shared_publish(struct shared *shared, const struct shared_publication *pub, shared_owner_cb cb, void *arg)
{
	static const struct shared_owner none = { "", "", "" };
	const struct shared_owner *owner = pub->owner != NULL ? pub->owner : &none;
	struct shared_op *op = shared_op_new(shared, SHARED_OP_PUBLISH, cb, arg);
	char own_key[256], max_len[24], *owner_json;
	const char *args[12];
	size_t lens[12], total = 0, at = 0;
	int n = snprintf(own_key, sizeof(own_key), SHARED_KEY_PREFIX "own:%s", pub->session);

	if (op == NULL)
		return NULL;
	if ((owner_json = shared_owner_json(shared, owner)) == NULL) {
		shared_op_discard(op);
		return NULL;
	}
	snprintf(max_len, sizeof(max_len), "%ld", shared->settings.stream_max_entries);
	args[0] = own_key;
	args[1] = SHARED_STREAM_KEY;
	args[2] = SHARED_STREAM_COUNT_KEY;
	args[3] = pub->removed ? "del" : "put";
	args[4] = pub->session;
	args[5] = shared->instance;
	args[6] = owner_json;
	args[7] = owner->owner;
	args[8] = owner->organization_id;
	args[9] = owner->project_id;
	args[10] = pub->json != NULL && !pub->removed ? pub->json : "";
	args[11] = max_len;
	for (int i = 0; i < 12; i++)
		total += (lens[i] = i == 10 && args[10][0] != '\0' ? pub->json_len : strlen(args[i]));
	/* The op keeps copies: a NOSCRIPT sends it again, maybe later. */
	if (n <= 0 || (size_t)n >= sizeof(own_key) || (op->big = malloc(total)) == NULL) {
		free(owner_json);
		shared_op_discard(op);
		return NULL;
	}
	op->script = shared_script_ready(&shared_publish_script);
	op->big_argc = 3;
	op->big_argv[2] = "3";
	op->big_lens[2] = 1;
	for (int i = 0; i < 12; i++) {
		memcpy(op->big + at, args[i], lens[i]);
		op->big_argv[op->big_argc] = op->big + at;
		op->big_lens[op->big_argc++] = lens[i];
		at += lens[i];
	}
	free(owner_json);
	shared_send(shared, op, 0, NULL, NULL);
	return op;
}

unsigned long long
shared_stream_id_ms(const char *stream_id)
{
	return strtoull(stream_id, NULL, 10);
}

struct shared_follower {
	struct shared *shared;
	redisAsyncContext *ac; /* NULL: not connected */
	bool connected, reading, with_caller, dropping;
	char after[SHARED_STREAM_ID_MAX + 1]; /* read from just after this id */
	shared_entries_cb cb;
	void *arg;
	struct event *step; /* connects, or reads, when due */
	struct event *deadline; /* of the read out */
	double started; /* of the read out, monotonic seconds */
	bool warned; /* said that reads fail, until one works */
	unsigned long long last_n; /* the number of the last entry read (0: not known) */
};

static void
follow_later(struct shared_follower *f, long ms)
{
	struct timeval tv = clock_timeval_ms(ms);

	evtimer_add(f->step, &tv);
}

/* Says once that reading fails, until a read works again. */
static void
follow_failed(struct shared_follower *f, const char *why)
{
	f->shared->stats.errors[SHARED_ERR_CONNECTION]++;
	if (!f->warned)
		log_warnx("shared: cannot read the sessions stream (%s); sessions made on other instances are read "
		          "through on a miss until it works",
		    why);
	f->warned = true;
}

/* Drops the connection (a read past its deadline: Redis stopped, say). */
static void
follow_drop(struct shared_follower *f)
{
	redisAsyncContext *ac = f->ac;

	if (ac == NULL)
		return;
	f->dropping = true;
	f->ac = NULL;
	f->connected = false;
	redisAsyncFree(ac); /* the read's callback runs with no reply */
	f->dropping = false;
	f->reading = false;
}

/* Reads one entry's fields into e (pointing into entry); false when it
 * is not one this version reads. */
static bool
follow_read_entry(const redisReply *entry, struct shared_entry *e)
{
	const redisReply *fields;
	const char *op = NULL, *owner = "", *org = "", *project = "";

	memset(e, 0, sizeof(*e));
	if (entry->type != REDIS_REPLY_ARRAY || entry->elements != 2 || entry->element[0]->type != REDIS_REPLY_STRING ||
	    entry->element[0]->len > SHARED_STREAM_ID_MAX || (fields = entry->element[1])->type != REDIS_REPLY_ARRAY ||
	    fields->elements % 2 != 0)
		return false;
	memcpy(e->stream_id, entry->element[0]->str, entry->element[0]->len);
	for (size_t i = 0; i < fields->elements; i += 2) {
		const redisReply *name = fields->element[i], *value = fields->element[i + 1];
		if (name->type != REDIS_REPLY_STRING || value->type != REDIS_REPLY_STRING)
			return false;
		if (strcmp(name->str, "op") == 0)
			op = value->str;
		else if (strcmp(name->str, "id") == 0)
			e->pub.session = value->str;
		else if (strcmp(name->str, "instance") == 0)
			e->instance = value->str;
		else if (strcmp(name->str, "owner") == 0)
			owner = value->str;
		else if (strcmp(name->str, "organization_id") == 0)
			org = value->str;
		else if (strcmp(name->str, "project_id") == 0)
			project = value->str;
		else if (strcmp(name->str, "n") == 0)
			e->n = strtoull(value->str, NULL, 10);
		else if (strcmp(name->str, "session") == 0) {
			e->pub.json = value->str;
			e->pub.json_len = value->len;
		}
	}
	if (op == NULL || e->pub.session == NULL || e->instance == NULL || strlen(owner) > SHARED_NAME_MAX ||
	    strlen(org) > SHARED_SCOPE_MAX || strlen(project) > SHARED_SCOPE_MAX)
		return false;
	e->pub.removed = strcmp(op, "del") == 0;
	if (!e->pub.removed && (strcmp(op, "put") != 0 || e->pub.json == NULL || e->pub.json_len == 0))
		return false;
	snprintf(e->owner.owner, sizeof(e->owner.owner), "%s", owner);
	snprintf(e->owner.organization_id, sizeof(e->owner.organization_id), "%s", org);
	snprintf(e->owner.project_id, sizeof(e->owner.project_id), "%s", project);
	e->pub.owner = &e->owner;
	return true;
}

/* Checks an entry's number against the last one read: a number skipped
 * means entries this instance had not read were trimmed (it was away
 * longer than stream_max_entries lasts), and the sessions they carried
 * never reach this store: they are read through when named (a miss asks
 * the owner record). Said, and counted. A smaller number: the count began
 * anew (Redis lost its data). */
static void
follow_count(struct shared_follower *f, unsigned long long n, const char *id)
{
	if (n == 0)
		return;
	if (f->last_n > 0 && n > f->last_n + 1) {
		f->shared->stats.stream_trimmed++;
		log_warnx(
		    "shared: %llu entries of the sessions stream were trimmed before this instance read them (it "
		    "read to number %llu, the stream goes on at %llu, id %s): their sessions are read through when "
		    "named, and missing from lists here until then; raise shared.stream_max_entries if instances "
		    "stay away that long",
		    n - f->last_n - 1, f->last_n, n, id);
	}
	f->last_n = n;
}

/* Hands a batch (XREAD's answer: nil, or [[key, [entry, ...]]]) to the
 * caller; false when the answer is not one. */
static bool
follow_deliver(struct shared_follower *f, const redisReply *reply)
{
	const redisReply *list;
	struct shared_entry *entries;
	char last[SHARED_STREAM_ID_MAX + 1] = "", position[SHARED_STREAM_POSITION_MAX + 1] = "";
	size_t count = 0;

	if (reply->type == REDIS_REPLY_NIL) {
		f->with_caller = true;
		f->cb(NULL, 0, "", false, f->arg);
		return true;
	}
	if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 1 || reply->element[0]->type != REDIS_REPLY_ARRAY ||
	    reply->element[0]->elements != 2 || (list = reply->element[0]->element[1])->type != REDIS_REPLY_ARRAY)
		return false;
	if ((entries = calloc(list->elements > 0 ? list->elements : 1, sizeof(*entries))) == NULL)
		return false;
	for (size_t i = 0; i < list->elements; i++) {
		const redisReply *id = list->element[i]->type == REDIS_REPLY_ARRAY && list->element[i]->elements > 0
		    ? list->element[i]->element[0]
		    : NULL;
		if (id == NULL || id->type != REDIS_REPLY_STRING || id->len > SHARED_STREAM_ID_MAX)
			continue;
		memcpy(last, id->str, id->len);
		last[id->len] = '\0';
		if (!follow_read_entry(list->element[i], &entries[count])) {
			log_warnx("shared: stream entry %s is not one this version reads; skipped", last);
			continue;
		}
		follow_count(f, entries[count].n, last);
		/* Its own entries this instance stored already. */
		if (strcmp(entries[count].instance, f->shared->instance) != 0)
			count++;
	}
	if (last[0] != '\0') {
		snprintf(f->after, sizeof(f->after), "%s", last);
		/* The position to keep: the id, and the entry's number. */
		snprintf(position, sizeof(position), "%s %llu", last, f->last_n);
	}
	f->with_caller = true;
	f->cb(entries, count, position, list->elements == FOLLOW_COUNT, f->arg);
	free(entries);
	return true;
}

static void
follow_on_reply(redisAsyncContext *ac, void *r, void *privdata)
{
	struct shared_follower *f = privdata;
	redisReply *reply = r;

	(void)ac;
	if (f->dropping || f->shared->stopping)
		return;
	f->reading = false;
	evtimer_del(f->deadline);
	if (reply == NULL) {
		follow_failed(f, "the connection dropped");
		follow_later(f, FOLLOW_RETRY_MS);
	} else if (reply->type == REDIS_REPLY_ERROR || !follow_deliver(f, reply)) {
		follow_failed(f, reply->type == REDIS_REPLY_ERROR ? reply->str : "an answer is not readable");
		follow_later(f, FOLLOW_RETRY_MS);
	} else {
		if (f->warned)
			log_info("shared: reading the sessions stream again");
		f->warned = false;
		histogram_observe(&f->shared->stats.duration[SHARED_OP_FOLLOW], clock_monotonic_s() - f->started);
	}
}

static void
follow_on_deadline(evutil_socket_t fd, short what, void *arg)
{
	struct shared_follower *f = arg;

	(void)fd;
	(void)what;
	f->shared->stats.errors[SHARED_ERR_TIMEOUT]++;
	follow_failed(f, "a read passed its deadline");
	follow_drop(f);
	follow_later(f, FOLLOW_RETRY_MS);
}

static void
follow_on_connect(const redisAsyncContext *ac, int status)
{
	struct shared_follower *f = ac->data;

	if (status != REDIS_OK) {
		/* hiredis frees the context after this. */
		f->ac = NULL;
		follow_failed(f, ac->errstr[0] != '\0' ? ac->errstr : "cannot connect");
		follow_later(f, FOLLOW_RETRY_MS);
		return;
	}
	f->connected = true;
	follow_later(f, 0);
}

static void
follow_on_disconnect(const redisAsyncContext *ac, int status)
{
	struct shared_follower *f = ac->data;

	(void)status;
	if (f->dropping || f->shared->stopping)
		return;
	f->ac = NULL;
	f->connected = false;
	f->reading = false;
	evtimer_del(f->deadline);
	follow_later(f, FOLLOW_RETRY_MS);
}

/* Connects, or sends the next read, whichever is due. */
static void
follow_on_step(evutil_socket_t fd, short what, void *arg)
{
	struct shared_follower *f = arg;
	char count[16], block[16];
	const char *argv[8] = { "XREAD", "COUNT", count, "BLOCK", block, "STREAMS", SHARED_STREAM_KEY, f->after };
	size_t lens[8];
	struct timeval tv = clock_timeval_ms(FOLLOW_BLOCK_MS + f->shared->settings.timeout_ms + 1000);

	(void)fd;
	(void)what;
	if (f->ac == NULL) {
		redisAsyncContext *ac = shared_connect_context(f->shared);
		if (ac == NULL || ac->err != 0 || redisLibeventAttach(ac, f->shared->base) != REDIS_OK) {
			follow_failed(f, ac != NULL && ac->errstr[0] != '\0' ? ac->errstr : "cannot connect");
			if (ac != NULL)
				redisAsyncFree(ac);
			follow_later(f, FOLLOW_RETRY_MS);
			return;
		}
		ac->data = f;
		redisAsyncSetConnectCallback(ac, follow_on_connect);
		redisAsyncSetDisconnectCallback(ac, follow_on_disconnect);
		f->ac = ac;
		return;
	}
	if (!f->connected || f->reading || f->with_caller)
		return;
	snprintf(count, sizeof(count), "%d", FOLLOW_COUNT);
	snprintf(block, sizeof(block), "%d", FOLLOW_BLOCK_MS);
	for (int i = 0; i < 8; i++)
		lens[i] = strlen(argv[i]);
	if (redisAsyncCommandArgv(f->ac, follow_on_reply, f, 8, argv, lens) != REDIS_OK) {
		follow_failed(f, "cannot send a read");
		follow_drop(f);
		follow_later(f, FOLLOW_RETRY_MS);
		return;
	}
	f->reading = true;
	f->started = clock_monotonic_s();
	evtimer_add(f->deadline, &tv);
}

bool
shared_follow(struct shared *shared, const char *after_id, shared_entries_cb cb, void *arg)
{
	struct shared_follower *f = calloc(1, sizeof(*f));

	if (f == NULL || (f->step = evtimer_new(shared->base, follow_on_step, f)) == NULL ||
	    (f->deadline = evtimer_new(shared->base, follow_on_deadline, f)) == NULL) {
		if (f != NULL && f->step != NULL)
			event_free(f->step);
		free(f);
		return false;
	}
	f->shared = shared;
	f->cb = cb;
	f->arg = arg;
	/* "id n" (n: the number of that entry), as the batches gave it. */
	snprintf(f->after, sizeof(f->after), "%.*s", (int)strcspn(after_id, " "), after_id[0] != '\0' ? after_id : "0");
	if (f->after[0] == '\0')
		snprintf(f->after, sizeof(f->after), "0");
	if (strchr(after_id, ' ') != NULL)
		f->last_n = strtoull(strchr(after_id, ' ') + 1, NULL, 10);
	shared->follower = f;
	follow_later(f, 0);
	return true;
}

void
shared_follow_next(struct shared *shared)
{
	struct shared_follower *f = shared->follower;

	if (f == NULL)
		return;
	f->with_caller = false;
	follow_later(f, 0);
}

void
shared_follow_stop(struct shared *shared)
{
	struct shared_follower *f = shared->follower;

	if (f == NULL)
		return;
	shared->follower = NULL;
	follow_drop(f);
	event_free(f->step);
	event_free(f->deadline);
	free(f);
}
