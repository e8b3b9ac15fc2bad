/* chat_outbox: what this instance owes the others. Every session it
 * stores or deletes (in shared mode) leaves an entry in the outbox table,
 * committed in the same transaction, so that nothing acknowledged is lost
 * while Redis is away or the daemon dies before publishing. The drain
 * walks the outbox in the order entries were made, publishes each
 * session's state as the store holds it then (the owner record and a
 * stream entry, shared_publish), and removes the entry once Redis
 * acknowledged it, unless a newer one replaced it meanwhile. */
#include <event2/buffer.h>
#include <event2/event.h>
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

#define OUTBOX_INDEX_TAG 'P' /* the outbox's index entries: 'P', version, session */
#define OUTBOX_MAX_IN_FLIGHT 64 /* publications waiting for Redis at once */
#define OUTBOX_SWEEP_MS 1000 /* a look for what failed, and was left behind */
#define OUTBOX_VERSION_BYTES 8

struct chat_outbox {
	struct chat *chat;
	struct event *step, *sweep;
	unsigned char after[SESSION_ID_MAX + 1 + OUTBOX_VERSION_BYTES + 1]; /* index key last sent */
	size_t after_len; /* 0: from the start */
	long in_flight;
	bool rewind; /* something failed: the next sweep starts over */
};

/* One publication waiting for Redis. */
struct chat_outbox_send {
	struct chat_outbox *outbox;
	char id[SESSION_ID_MAX + 1];
	unsigned char version[OUTBOX_VERSION_BYTES];
	void (*then)(void *arg); /* NULL: nobody waits */
	void *then_arg;
};

/* Fills e with id's entry of version (OUTBOX_VERSION_BYTES, big-endian),
 * without an index entry (a removal needs none). */
static void
outbox_entry(const char *id, const unsigned char *version, struct chat_outbox_entry *e)
{
	size_t id_len = strlen(id);

	memset(&e->change, 0, sizeof(e->change));
	e->key[0] = STORE_OUTBOX_KEY_TAG;
	memcpy(e->key + 1, id, id_len);
	e->key_len = 1 + id_len;
	memcpy(e->value, version, OUTBOX_VERSION_BYTES);
	e->change.table = STORE_OUTBOX;
	e->change.key.data = e->key;
	e->change.key.len = e->key_len;
	e->change.value.data = e->value;
	e->change.value.len = OUTBOX_VERSION_BYTES;
}

static void
outbox_version_bytes(uint64_t version, unsigned char *out)
{
	for (int i = 0; i < OUTBOX_VERSION_BYTES; i++)
		out[i] = (unsigned char)(version >> (8 * (OUTBOX_VERSION_BYTES - 1 - i)));
}

void
chat_outbox_change(struct chat *chat, const char *id, struct chat_outbox_entry *e)
{
	uint64_t version = clock_unix_us();
	unsigned char bytes[OUTBOX_VERSION_BYTES];
	size_t id_len = strlen(id);

	/* Versions only grow, so that the index keeps the order of changes. */
	if (version <= chat->outbox_version)
		version = chat->outbox_version + 1;
	chat->outbox_version = version;
	outbox_version_bytes(version, bytes);
	outbox_entry(id, bytes, e);
	e->index_key[0] = OUTBOX_INDEX_TAG;
	memcpy(e->index_key + 1, bytes, OUTBOX_VERSION_BYTES);
	memcpy(e->index_key + 1 + OUTBOX_VERSION_BYTES, id, id_len);
	e->change.index_keys[0].data = e->index_key;
	e->change.index_keys[0].len = 1 + OUTBOX_VERSION_BYTES + id_len;
	e->change.index_count = 1;
}

static void
outbox_on_published(enum shared_result result, const struct shared_owner *owner, void *arg)
{
	struct chat_outbox_send *send = arg;
	struct chat_outbox *outbox = send->outbox;
	struct chat_outbox_entry e;

	(void)owner;
	outbox->in_flight--;
	/* Done, unless the session changed again meanwhile (its entry then
	 * has a newer version, and stays). Not done: the sweep sends it again. */
	outbox_entry(send->id, send->version, &e);
	e.change.remove = 1;
	e.change.remove_only_if_value = 1;
	if (result != SHARED_FOUND || store_queue(outbox->chat->store, &e.change, NULL, NULL) == NULL)
		outbox->rewind = true;
	if (send->then != NULL)
		send->then(send->then_arg);
	free(send);
}

/* Publishes the session as the store holds it now (deleted: its removal). */
static void
outbox_publish(struct chat_outbox *outbox, const char *id, const unsigned char *version)
{
	struct chat *chat = outbox->chat;
	struct chat_outbox_send *send = calloc(1, sizeof(*send));
	struct evbuffer *buf = evbuffer_new();
	struct shared_publication pub = { .session = id, .removed = true };
	struct shared_owner owner;
	struct session_record rec;

	if (send == NULL || buf == NULL) {
		free(send);
		if (buf != NULL)
			evbuffer_free(buf);
		outbox->rewind = true;
		return;
	}
	send->outbox = outbox;
	snprintf(send->id, sizeof(send->id), "%s", id);
	memcpy(send->version, version, OUTBOX_VERSION_BYTES);
	if (chat_load_record(chat, id, buf, &rec) && rec.owner_len <= SHARED_NAME_MAX &&
	    rec.organization_id_len <= SHARED_SCOPE_MAX && rec.project_id_len <= SHARED_SCOPE_MAX) {
		snprintf(owner.owner, sizeof(owner.owner), "%.*s", (int)rec.owner_len, rec.owner ? rec.owner : "");
		snprintf(owner.organization_id, sizeof(owner.organization_id), "%.*s", (int)rec.organization_id_len,
		    rec.organization_id != NULL ? rec.organization_id : "");
		snprintf(owner.project_id, sizeof(owner.project_id), "%.*s", (int)rec.project_id_len,
		    rec.project_id != NULL ? rec.project_id : "");
		pub.removed = false;
		pub.owner = &owner;
		pub.json = rec.json;
		pub.json_len = rec.json_len;
	}
	outbox->in_flight++;
	if (shared_publish(chat->shared, &pub, outbox_on_published, send) == NULL) {
		outbox->in_flight--;
		outbox->rewind = true;
		free(send);
	}
	evbuffer_free(buf);
}

/* What a scan step found: the entries to send, copied out of the read. */
struct outbox_batch {
	size_t count;
	char ids[OUTBOX_MAX_IN_FLIGHT][SESSION_ID_MAX + 1];
	unsigned char versions[OUTBOX_MAX_IN_FLIGHT][OUTBOX_VERSION_BYTES];
	struct chat_outbox *outbox;
};

static int
outbox_collect(const char *key, size_t key_len, const void *value, size_t value_len, const void *index_key,
    size_t index_key_len, void *arg)
{
	struct outbox_batch *b = arg;
	struct chat_outbox *outbox = b->outbox;

	if (index_key_len <= sizeof(outbox->after)) {
		memcpy(outbox->after, index_key, index_key_len);
		outbox->after_len = index_key_len;
	}
	if (key_len < 2 || key_len - 1 > SESSION_ID_MAX || value_len != OUTBOX_VERSION_BYTES)
		return 0;
	memcpy(b->ids[b->count], (const char *)key + 1, key_len - 1);
	b->ids[b->count][key_len - 1] = '\0';
	memcpy(b->versions[b->count], value, OUTBOX_VERSION_BYTES);
	b->count++;
	return 0;
}

static void
outbox_on_step(evutil_socket_t fd, short what, void *arg)
{
	struct chat_outbox *outbox = arg;
	const char tag = OUTBOX_INDEX_TAG;
	struct outbox_batch *b;
	long most = outbox->chat->shared_max_in_flight / 2 < OUTBOX_MAX_IN_FLIGHT
	    ? outbox->chat->shared_max_in_flight / 2
	    : OUTBOX_MAX_IN_FLIGHT;
	size_t room;
	struct timeval later = clock_timeval_ms(10);

	(void)fd;
	(void)what;
	/* Down: the next time it is up starts over (chat_outbox_rewind). */
	if (!shared_is_up(outbox->chat->shared, NULL))
		return;
	if (most < 1)
		most = 1;
	if (outbox->in_flight >= most || (b = calloc(1, sizeof(*b))) == NULL) {
		evtimer_add(outbox->step, &later);
		return;
	}
	b->outbox = outbox;
	room = (size_t)(most - outbox->in_flight);
	if (store_scan_in(outbox->chat->store, STORE_OUTBOX, &tag, 1, outbox->after_len > 0 ? outbox->after : NULL,
	        outbox->after_len, room, outbox_collect, b) != STORE_OK) {
		log_warnx("shared: cannot read the outbox; trying again");
		evtimer_add(outbox->step, &later);
		free(b);
		return;
	}
	for (size_t i = 0; i < b->count; i++)
		outbox_publish(outbox, b->ids[i], b->versions[i]);
	/* A full step: there may be more behind it. */
	if (b->count == room)
		evtimer_add(outbox->step, &later);
	free(b);
}

static void
outbox_on_sweep(evutil_socket_t fd, short what, void *arg)
{
	struct chat_outbox *outbox = arg;
	struct timeval tv = clock_timeval_ms(OUTBOX_SWEEP_MS);

	(void)fd;
	(void)what;
	/* What failed lies before the cursor: walk again from the start
	 * (a publication sent twice is harmless: both say the same). */
	if (outbox->rewind) {
		outbox->rewind = false;
		outbox->after_len = 0;
	}
	chat_outbox_kick(outbox->chat);
	evtimer_add(outbox->sweep, &tv);
}

static struct chat_outbox *
outbox_get(struct chat *chat)
{
	struct chat_outbox *outbox = chat->outbox;
	struct timeval tv = clock_timeval_ms(OUTBOX_SWEEP_MS);

	if (outbox != NULL || chat->shared == NULL || chat->settings.base == NULL)
		return outbox;
	if ((outbox = calloc(1, sizeof(*outbox))) == NULL ||
	    (outbox->step = evtimer_new(chat->settings.base, outbox_on_step, outbox)) == NULL ||
	    (outbox->sweep = evtimer_new(chat->settings.base, outbox_on_sweep, outbox)) == NULL) {
		if (outbox != NULL && outbox->step != NULL)
			event_free(outbox->step);
		free(outbox);
		log_warnx("shared: out of memory: the outbox is drained by the next start");
		return NULL;
	}
	outbox->chat = chat;
	chat->outbox = outbox;
	evtimer_add(outbox->sweep, &tv);
	return outbox;
}

bool
chat_outbox_publish_now(struct chat *chat, const struct shared_publication *pub, void (*then)(void *arg), void *arg)
{
	struct chat_outbox *outbox = outbox_get(chat);
	struct chat_outbox_send *send;
	uint64_t version = chat->outbox_version;

	if (outbox == NULL || strlen(pub->session) > SESSION_ID_MAX || (send = calloc(1, sizeof(*send))) == NULL)
		return false;
	send->outbox = outbox;
	snprintf(send->id, sizeof(send->id), "%s", pub->session);
	outbox_version_bytes(version, send->version);
	send->then = then;
	send->then_arg = arg;
	outbox->in_flight++;
	if (shared_publish(chat->shared, pub, outbox_on_published, send) == NULL) {
		outbox->in_flight--;
		free(send);
		return false;
	}
	return true;
}

void
chat_outbox_kick(struct chat *chat)
{
	struct chat_outbox *outbox = outbox_get(chat);
	struct timeval now = clock_timeval_ms(0);

	if (outbox != NULL && !evtimer_pending(outbox->step, NULL))
		evtimer_add(outbox->step, &now);
}

void
chat_outbox_rewind(struct chat *chat)
{
	struct chat_outbox *outbox = outbox_get(chat);

	if (outbox == NULL)
		return;
	outbox->after_len = 0;
	chat_outbox_kick(chat);
}

long
chat_outbox_pending(struct chat *chat)
{
	return chat->shared != NULL ? store_count_in(chat->store, STORE_OUTBOX) : 0;
}

void
chat_outbox_free(struct chat *chat)
{
	if (chat->outbox == NULL)
		return;
	event_free(chat->outbox->step);
	event_free(chat->outbox->sweep);
	free(chat->outbox);
	chat->outbox = NULL;
}
