/* chat_republish: after Redis lost its data, publishes again the owner
 * record of every session this store holds with an owner, then the answer
 * of every unexpired Idempotency-Key of a create this instance answered. A
 * walk of the owners' index, then of the keys', in short steps on the
 * loop, paced so that it never fills the calls Redis may have in flight. */
#include <event2/event.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/log.h"
#include "chat/chat_private.h"
#include "gate/idempotency.h"
#include "shared/shared.h"
#include "store/session.h"
#include "store/store.h"

#define REPUBLISH_STEP 64 /* records a step */
#define REPUBLISH_PAUSE_MS 10 /* between two steps */

struct chat_republish {
	struct chat *chat;
	struct event *timer;
	unsigned char after[STORE_MAX_INDEX_KEY]; /* the last index key done */
	size_t after_len; /* 0: from the start */
	size_t seen; /* in this step */
	unsigned long long published; /* in this pass */
	bool keys; /* walking the Idempotency-Keys now (the owners are done) */
	unsigned long long keys_published;
};

/* One key record: a create's answer, unexpired, goes to Redis again. */
static int
chat_republish_key(const char *key, size_t key_len, const void *value, size_t value_len, const void *index_key,
    size_t index_key_len, void *arg)
{
	struct chat_republish *r = arg;
	struct idempotency_record rec;
	char upstream_key[IDEMPOTENCY_UPSTREAM_KEY_LEN + 1], fingerprint[2 * IDEMPOTENCY_FINGERPRINT_BYTES + 1];
	uint64_t now = clock_unix_us();
	long ttl_s = *r->chat->settings.idempotency_ttl_s;
	const char *nul = memchr(key, '\0', key_len);
	long left_ms;

	r->seen++;
	if (index_key_len <= sizeof(r->after)) {
		memcpy(r->after, index_key, index_key_len);
		r->after_len = index_key_len;
	}
	/* Turns' keys are not republished: a turn is never replayed. */
	if (nul == NULL || idempotency_record_decode(value, value_len, &rec) != 0 || rec.kind != IDEMPOTENCY_CREATE ||
	    idempotency_expired(rec.created_us, now, ttl_s))
		return 0;
	left_ms = (long)(((int64_t)rec.created_us + (int64_t)ttl_s * 1000000 - (int64_t)now) / 1000);
	if (left_ms < 1000)
		return 0;
	idempotency_upstream_key((const unsigned char *)key, key_len, upstream_key);
	chat_fingerprint_hex(rec.fingerprint, fingerprint);
	if (shared_answer_key(r->chat->shared, key, upstream_key, fingerprint, rec.status, rec.body, rec.body_len,
	        left_ms, NULL, NULL) != NULL)
		r->keys_published++;
	return 0;
}

static int
chat_republish_one(const char *key, size_t key_len, const void *value, size_t value_len, const void *index_key,
    size_t index_key_len, void *arg)
{
	struct chat_republish *r = arg;
	struct session_record rec;
	struct shared_owner owner;
	char id[SESSION_ID_MAX + 1];

	r->seen++;
	if (index_key_len <= sizeof(r->after)) {
		memcpy(r->after, index_key, index_key_len);
		r->after_len = index_key_len;
	}
	if (key_len > SESSION_ID_MAX || session_record_decode(value, value_len, &rec) != 0 || rec.owner_len == 0 ||
	    rec.owner_len > SHARED_NAME_MAX || rec.organization_id_len > SHARED_SCOPE_MAX ||
	    rec.project_id_len > SHARED_SCOPE_MAX)
		return 0;
	memcpy(id, key, key_len);
	id[key_len] = '\0';
	snprintf(owner.owner, sizeof(owner.owner), "%.*s", (int)rec.owner_len, rec.owner);
	snprintf(owner.organization_id, sizeof(owner.organization_id), "%.*s", (int)rec.organization_id_len,
	    rec.organization_id != NULL ? rec.organization_id : "");
	snprintf(owner.project_id, sizeof(owner.project_id), "%.*s", (int)rec.project_id_len,
	    rec.project_id != NULL ? rec.project_id : "");
	shared_put_owner(r->chat->shared, id, &owner);
	r->published++;
	return 0;
}

static void
chat_republish_step(evutil_socket_t fd, short what, void *arg)
{
	struct chat_republish *r = arg;
	struct timeval pause = clock_timeval_ms(REPUBLISH_PAUSE_MS);
	const struct shared_stats *stats = shared_get_stats(r->chat->shared);
	bool up = shared_is_up(r->chat->shared, NULL);

	(void)fd;
	(void)what;
	/* Down again: the next time it is up starts a pass anew. */
	if (!up)
		return;
	/* Room for a step's calls first. */
	if (stats->in_flight + REPUBLISH_STEP > r->chat->shared_max_in_flight / 2) {
		evtimer_add(r->timer, &pause);
		return;
	}
	r->seen = 0;
	if ((r->keys ? store_scan_in(r->chat->store, STORE_KEYS, "K", 1, r->after_len > 0 ? r->after : NULL,
	                   r->after_len, REPUBLISH_STEP, chat_republish_key, r)
	             : store_scan(r->chat->store, "O", 1, r->after_len > 0 ? r->after : NULL, r->after_len,
	                   REPUBLISH_STEP, chat_republish_one, r)) != STORE_OK) {
		log_warnx("shared: cannot read the store to republish owner records; trying again");
		evtimer_add(r->timer, &pause);
		return;
	}
	if (r->seen == REPUBLISH_STEP) {
		evtimer_add(r->timer, &pause);
		return;
	}
	/* After every owner: the keys. */
	if (!r->keys) {
		r->keys = true;
		r->after_len = 0;
		evtimer_add(r->timer, &pause);
		return;
	}
	log_info("shared: republished %llu owner record(s) and %llu Idempotency-Key answer(s)", r->published,
	    r->keys_published);
}

void
chat_republish_owners(struct chat *chat, struct event_base *base)
{
	struct chat_republish *r = chat->republish;
	struct timeval now = clock_timeval_ms(0);

	if (chat->shared == NULL)
		return;
	if (r == NULL) {
		if ((r = calloc(1, sizeof(*r))) == NULL ||
		    (r->timer = evtimer_new(base, chat_republish_step, r)) == NULL) {
			free(r);
			log_warnx("shared: out of memory: owner records are not republished");
			return;
		}
		r->chat = chat;
		chat->republish = r;
	}
	/* A pass from the start, whether or not one was under way. */
	r->after_len = 0;
	r->published = 0;
	r->keys = false;
	r->keys_published = 0;
	evtimer_add(r->timer, &now);
}

void
chat_republish_free(struct chat *chat)
{
	if (chat->republish == NULL)
		return;
	event_free(chat->republish->timer);
	free(chat->republish);
	chat->republish = NULL;
}
