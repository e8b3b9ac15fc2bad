/* shared_keys: Idempotency-Keys of creates, shared by every instance: one
 * script claims a key, replays its answer or refuses, in one round trip. */
#include <event2/event.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "shared/shared.h"
#include "shared/shared_private.h"

/* No record: claim it for lease_ms. A claim or an answer with another
 * fingerprint: mismatch. A claim: busy. An answer: its status and body. */
static struct shared_script shared_claim_script = {
	.text = "local v = redis.call('GET', KEYS[1])\n"
	        "if not v then\n"
	        "  redis.call('SET', KEYS[1], cjson.encode({state = 'claimed', fp = ARGV[1], by = ARGV[2]}),\n"
	        "             'PX', tonumber(ARGV[3]))\n"
	        "  return {'claimed'}\n"
	        "end\n"
	        "local r = cjson.decode(v)\n"
	        "if r.fp ~= ARGV[1] then return {'mismatch'} end\n"
	        "if r.state ~= 'answered' then return {'busy'} end\n"
	        "return {'answered', tostring(r.status), r.body}\n",
};

/* A claim goes back only if it is still this instance's claim. */
static struct shared_script shared_release_script = {
	.text = "local v = redis.call('GET', KEYS[1])\n"
	        "if v then\n"
	        "  local r = cjson.decode(v)\n"
	        "  if r.state == 'claimed' and r.by == ARGV[1] then redis.call('DEL', KEYS[1]) end\n"
	        "end\n"
	        "return 1\n",
};

/* "llamachatd:idem:{client}:{key hash}" into key; false when too long. */
static bool
shared_key_name(const char *client, const char *key_hash, char *key, size_t size)
{
	int n = snprintf(key, size, SHARED_KEY_PREFIX "idem:%s:%s", client, key_hash);

	return n > 0 && (size_t)n < size;
}

static bool
shared_read_claim(struct shared_op *op, const redisReply *reply)
{
	const redisReply *what;

	if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 1 ||
	    (what = reply->element[0])->type != REDIS_REPLY_STRING)
		return false;
	if (strcmp(what->str, "claimed") == 0)
		op->claim_cb(SHARED_CLAIMED, 0, NULL, 0, op->arg);
	else if (strcmp(what->str, "busy") == 0)
		op->claim_cb(SHARED_CLAIM_BUSY, 0, NULL, 0, op->arg);
	else if (strcmp(what->str, "mismatch") == 0)
		op->claim_cb(SHARED_CLAIM_MISMATCH, 0, NULL, 0, op->arg);
	else if (strcmp(what->str, "answered") == 0 && reply->elements == 3 &&
	    reply->element[1]->type == REDIS_REPLY_STRING && reply->element[2]->type == REDIS_REPLY_STRING) {
		int status = atoi(reply->element[1]->str);
		if (status < 100 || status > 599)
			return false;
		op->claim_cb(SHARED_CLAIM_ANSWERED, status, reply->element[2]->str, reply->element[2]->len, op->arg);
	} else {
		return false;
	}
	return true;
}

struct shared_op *
shared_claim_key(struct shared *shared, const char *client, const char *key_hash, const char *fingerprint,
    long lease_ms, shared_claim_cb cb, void *arg)
{
	struct shared_op *op = shared_op_new(shared, SHARED_OP_CLAIM_KEY, NULL, arg);
	char key[192], lease[24];

	if (op == NULL)
		return NULL;
	op->claim_cb = cb;
	op->read_reply = shared_read_claim;
	snprintf(lease, sizeof(lease), "%ld", lease_ms);
	if (!shared_key_name(client, key_hash, key, sizeof(key))) {
		/* Cannot be named: the caller claims it locally. */
		struct timeval now = { 0, 0 };
		op->early = SHARED_UNAVAILABLE;
		evtimer_add(op->deadline, &now);
		return op;
	}
	shared_op_script(op, &shared_claim_script, key, fingerprint, shared->settings.instance, lease);
	shared_send(shared, op, 0, NULL, NULL);
	return op;
}

struct shared_op *
shared_answer_key(struct shared *shared, const char *client, const char *key_hash, const char *fingerprint, int status,
    const char *body, size_t len, long ttl_ms, shared_owner_cb cb, void *arg)
{
	char key[192], ttl[24], *value = NULL;
	json_t *text = json_stringn(body, len);
	json_t *doc = text != NULL ? json_pack("{s:s,s:s,s:s,s:i,s:o}", "state", "answered", "fp", fingerprint, "by",
	                                 shared->settings.instance, "status", status, "body", text)
	                           : NULL;
	struct shared_op *op;

	if (doc != NULL)
		value = json_dumps(doc, JSON_COMPACT);
	json_decref(doc);
	snprintf(ttl, sizeof(ttl), "%ld", ttl_ms);
	if (value != NULL && shared_key_name(client, key_hash, key, sizeof(key)) &&
	    (op = shared_op_new(shared, SHARED_OP_ANSWER_KEY, cb, arg)) != NULL) {
		const char *argv[5] = { "SET", key, value, "PX", ttl };
		size_t lens[5] = { 3, strlen(key), strlen(value), 2, strlen(ttl) };
		shared_send(shared, op, 5, argv, lens);
		free(value);
		return op;
	} else {
		log_warnx("shared: the answer of an Idempotency-Key of client %s is not shared (not UTF-8, or out of "
		          "memory); other instances will see its claim until the lease ends",
		    client);
	}
	free(value);
	return NULL;
}

void
shared_release_key(struct shared *shared, const char *client, const char *key_hash)
{
	char key[192];
	struct shared_op *op;

	if (shared_key_name(client, key_hash, key, sizeof(key)) &&
	    (op = shared_op_new(shared, SHARED_OP_RELEASE_KEY, NULL, NULL)) != NULL) {
		shared_op_script(op, &shared_release_script, key, shared->settings.instance, NULL, NULL);
		shared_send(shared, op, 0, NULL, NULL);
	}
}
