/* shared_rate: every client's rate limit, one bucket for every instance:
 * GCRA (the generic cell rate algorithm) in a script, by Redis's clock, so
 * the instances' clocks need not agree and a call costs one round trip. */
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shared/shared.h"
#include "shared/shared_private.h"

/* The bucket is one number, the theoretical arrival time (ms) of the next
 * call at the rate: a call may go while that is at most burst - 1
 * intervals ahead of now; each call moves it one interval on. */
static struct shared_script shared_rate_script = {
	.text = "local t = redis.call('TIME')\n"
	        "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
	        "local interval = tonumber(ARGV[1])\n"
	        "local burst = tonumber(ARGV[2])\n"
	        "local tat = tonumber(redis.call('GET', KEYS[1]) or '0')\n"
	        "if tat < now then tat = now end\n"
	        "local allow_at = tat + interval - burst * interval\n"
	        "if allow_at > now then return {0, math.ceil(allow_at - now)} end\n"
	        "tat = tat + interval\n"
	        "redis.call('SET', KEYS[1], string.format('%.3f', tat), 'PX', math.ceil(tat - now) + 1000)\n"
	        "return {1, 0}\n",
};

static bool
shared_read_rate(struct shared_op *op, const redisReply *reply)
{
	if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
	    reply->element[0]->type != REDIS_REPLY_INTEGER || reply->element[1]->type != REDIS_REPLY_INTEGER ||
	    reply->element[1]->integer < 0)
		return false;
	op->usage_cb(SHARED_FOUND, reply->element[0]->integer == 1 ? 1 : 0,
	    (unsigned long long)reply->element[1]->integer, op->arg);
	return true;
}

struct shared_op *
shared_take_rate(
    struct shared *shared, const char *client, double rate_per_s, double burst, shared_usage_cb cb, void *arg)
{
	struct shared_op *op = shared_op_new(shared, SHARED_OP_TAKE_RATE, NULL, arg);
	char key[192], interval[32], calls[32];
	int n = snprintf(key, sizeof(key), SHARED_KEY_PREFIX "rate:%s", client);

	if (op == NULL)
		return NULL;
	op->usage_cb = cb;
	op->read_reply = shared_read_rate;
	if (n <= 0 || (size_t)n >= sizeof(key) || rate_per_s <= 0) {
		struct timeval now = { 0, 0 };
		op->early = SHARED_UNAVAILABLE;
		evtimer_add(op->deadline, &now);
		return op;
	}
	snprintf(interval, sizeof(interval), "%.6f", 1000.0 / rate_per_s);
	snprintf(calls, sizeof(calls), "%.6f", burst >= 1 ? burst : 1);
	shared_op_script(op, &shared_rate_script, key, interval, calls, NULL);
	shared_send(shared, op, 0, NULL, NULL);
	return op;
}
