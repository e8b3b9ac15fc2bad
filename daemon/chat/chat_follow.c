/* chat_follow: applies what the other instances published (the stream of
 * sessions) to this store, so that lookups and lists answer here for
 * sessions made anywhere. Each batch is queued in one loop turn, with the
 * read position, so the store commits them in one transaction: after a
 * restart the daemon reads on from where its store is. */
#include <event2/buffer.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/log.h"
#include "chat/chat_private.h"
#include "shared/shared.h"
#include "store/session.h"
#include "store/store.h"

/* Where the read position lives in the store's meta table. */
static const char follow_position_key[] = { STORE_META_KEY_TAG, 's', 't', 'r', 'e', 'a', 'm' };

#define FOLLOW_CAUGHT_UP_S 5 /* a read that left nothing behind counts this long */

struct chat_follow {
	struct chat *chat;
	struct store_write *write; /* the batch's position, while it commits */
	bool more; /* the last read left entries behind */
	uint64_t last_entry_ms; /* Redis's clock in the last entry applied */
	double caught_up_wall; /* of the last read that left nothing behind */
};

/* True when the store holds id with a last_updated_at newer than updated_us. */
static bool
follow_local_is_newer(struct chat *chat, const char *id, uint64_t updated_us)
{
	struct evbuffer *buf = evbuffer_new();
	struct session_record rec;
	char local_id[SESSION_ID_MAX + 1];
	uint64_t local_us = 0;
	const char *why;
	bool newer = false;

	if (buf != NULL && chat_load_record(chat, id, buf, &rec) &&
	    session_parse_summary(rec.json, rec.json_len, local_id, &local_us, &why) == 0)
		newer = local_us > updated_us;
	if (buf != NULL)
		evbuffer_free(buf);
	return newer;
}

/* Queues one entry for the store; false when it cannot be applied. */
static bool
follow_apply(struct chat_follow *follow, const struct shared_entry *e)
{
	struct chat *chat = follow->chat;
	const struct shared_publication *pub = &e->pub;
	char id[SESSION_ID_MAX + 1];
	uint64_t updated_us;
	const char *why;
	struct chat_scope scope;
	struct store_write *w;

	if (!session_id_is_safe(pub->session, strlen(pub->session)))
		return false;
	if (pub->removed) {
		struct store_change change = { .key = { pub->session, strlen(pub->session) }, .remove = 1 };
		return store_queue(chat->store, &change, NULL, NULL) != NULL;
	}
	/* The id in the summary must be the entry's: an entry names one
	 * session only. */
	if (session_parse_summary(pub->json, pub->json_len, id, &updated_us, &why) != 0 ||
	    strcmp(id, pub->session) != 0 ||
	    !session_scope_is_safe(e->owner.organization_id, strlen(e->owner.organization_id)) ||
	    !session_scope_is_safe(e->owner.project_id, strlen(e->owner.project_id)))
		return false;
	/* This instance changed it later (a turn here, say): its own stands. */
	if (follow_local_is_newer(chat, id, updated_us))
		return true;
	snprintf(scope.organization_id, sizeof(scope.organization_id), "%s", e->owner.organization_id);
	snprintf(scope.project_id, sizeof(scope.project_id), "%s", e->owner.project_id);
	/* An entry without an owner (read through by a see-all client
	 * there) never takes the owner this store knows away. */
	struct chat_summary summary = {
		.json = pub->json,
		.len = pub->json_len,
		.known_id = id,
		.known_updated_us = updated_us,
		.fallback = &scope,
		.new_owner = e->owner.owner[0] != '\0' ? e->owner.owner : NULL,
		.from_stream = true,
	};
	w = chat_store_summary(chat, &summary, NULL, NULL);
	return w != NULL;
}

static void
follow_on_position_stored(enum store_result result, void *arg)
{
	struct chat_follow *follow = arg;

	follow->write = NULL;
	if (result != STORE_OK)
		log_warnx("shared: cannot store the stream's read position; a restart reads some entries again");
	shared_follow_next(follow->chat->shared);
}

static void
follow_on_entries(const struct shared_entry *entries, size_t count, const char *last_id, bool more, void *arg)
{
	struct chat_follow *follow = arg;
	struct store_change position = { 0 };

	follow->more = more;
	if (!more)
		follow->caught_up_wall = clock_unix_s();
	for (size_t i = 0; i < count; i++) {
		if (!follow_apply(follow, &entries[i]))
			log_warnx(
			    "shared: stream entry %s (session %.*s) cannot be applied; the session is read through "
			    "on a miss",
			    entries[i].stream_id, SESSION_ID_MAX, entries[i].pub.session);
	}
	if (last_id[0] == '\0') {
		shared_follow_next(follow->chat->shared);
		return;
	}
	follow->last_entry_ms = shared_stream_id_ms(last_id);
	/* Queued in the same loop turn as the entries: one commit. */
	position.table = STORE_META;
	position.key.data = follow_position_key;
	position.key.len = sizeof(follow_position_key);
	position.value.data = last_id;
	position.value.len = strlen(last_id);
	if ((follow->write = store_queue(follow->chat->store, &position, follow_on_position_stored, follow)) == NULL)
		shared_follow_next(follow->chat->shared);
}

void
chat_follow_start(struct chat *chat)
{
	struct chat_follow *follow;
	struct evbuffer *buf = evbuffer_new();
	char after[SHARED_STREAM_POSITION_MAX + 1] = "0";

	if (chat->shared == NULL || chat->follow != NULL || buf == NULL ||
	    (follow = calloc(1, sizeof(*follow))) == NULL) {
		if (buf != NULL)
			evbuffer_free(buf);
		if (chat->shared != NULL && chat->follow == NULL)
			log_warnx("shared: out of memory: sessions made on other instances are read through on a miss");
		return;
	}
	if (store_get_in(chat->store, STORE_META, follow_position_key, sizeof(follow_position_key), buf) == STORE_OK &&
	    evbuffer_get_length(buf) > 0 && evbuffer_get_length(buf) <= SHARED_STREAM_POSITION_MAX)
		evbuffer_copyout(buf, after, evbuffer_get_length(buf));
	after[evbuffer_get_length(buf) <= SHARED_STREAM_POSITION_MAX ? evbuffer_get_length(buf) : 0] = '\0';
	if (after[0] == '\0')
		snprintf(after, sizeof(after), "0");
	evbuffer_free(buf);
	follow->chat = chat;
	follow->more = true; /* until a read says otherwise */
	chat->follow = follow;
	if (!shared_follow(chat->shared, after, follow_on_entries, follow)) {
		log_warnx("shared: out of memory: sessions made on other instances are read through on a miss");
		chat->follow = NULL;
		free(follow);
		return;
	}
	log_info("shared: following the sessions stream from %s", after);
}

bool
chat_follow_state(const struct chat *chat, double *lag_seconds)
{
	const struct chat_follow *follow = chat->follow;
	double now = clock_unix_s(), lag = 0;

	if (follow == NULL) {
		*lag_seconds = 0;
		return false;
	}
	if (follow->more && follow->last_entry_ms > 0)
		lag = now - (double)follow->last_entry_ms / 1000.0;
	else if (follow->caught_up_wall > 0 && now - follow->caught_up_wall > FOLLOW_CAUGHT_UP_S)
		lag = now - follow->caught_up_wall;
	*lag_seconds = lag > 0 ? lag : 0;
	return follow->more || follow->caught_up_wall == 0 || now - follow->caught_up_wall > FOLLOW_CAUGHT_UP_S;
}

void
chat_follow_free(struct chat *chat)
{
	if (chat->follow == NULL)
		return;
	store_write_forget(chat->follow->write);
	free(chat->follow);
	chat->follow = NULL;
}
