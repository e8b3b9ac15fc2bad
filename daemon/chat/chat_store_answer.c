/* chat_store_answer: a call's answer on its way to the client: committed
 * to the store and, in shared mode, taken by Redis (owner record, stream
 * entry, Idempotency-Key answer) in parallel, before the client hears it. */
#include <event2/buffer.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "chat/chat_private.h"
#include "shared/shared.h"
#include "store/session.h"
#include "store/store.h"

/* The store committed (or failed) and Redis took what it must before the
 * answer (or could not, within shared.timeout_ms: the outbox keeps it). */
static void
chat_after_store(struct chat_call *call)
{
	enum store_result result = call->stored_result;

	if (result == STORE_OK) {
		log_debug("chat: stored session %s", call->session_id[0] ? call->session_id : "-");
		/* What it stored, the outbox owes the other daemons (unless it
		 * went out with the commit: one that failed, the drain's next
		 * sweep sends). */
		if (call->chat->shared != NULL && call->session_id[0] != '\0' && !call->published_now)
			chat_outbox_kick(call->chat);
	} else {
		/* The session exists upstream: an error here would make the SDK
		 * retry and create a duplicate. A later lookup reads it through. */
		call->chat->counters.store_failures++;
		/* Nor may a retry with its key go upstream again. */
		if (call->key != NULL) {
			chat_key_keep(call->chat, call->key);
			call->key = NULL;
		}
		log_warnx("chat: could not store session %s (%s); answering the client anyway", call->session_id,
		    result == STORE_ERR_FULL ? "store full" : "store error");
	}
	chat_call_reply_upstream(call);
}

static void
chat_on_stored(enum store_result result, void *arg)
{
	struct chat_call *call = arg;

	call->write = NULL;
	call->stored = true;
	call->stored_result = result;
	if (call->shared_waits == 0)
		chat_after_store(call);
}

static void
chat_on_shared_taken(void *arg)
{
	struct chat_call *call = arg;

	if (--call->shared_waits == 0 && call->stored)
		chat_after_store(call);
}

static void
chat_on_key_answer_taken(enum shared_result result, const struct shared_owner *owner, void *arg)
{
	(void)result;
	(void)owner;
	chat_on_shared_taken(arg);
}

/* Shared mode, a create or a delete queued for the store: its owner record
 * (and stream entry), and the answer of its Idempotency-Key, go to Redis
 * now, in parallel with the commit; the client's answer waits for both
 * (Redis's part at most shared.timeout_ms), so that another instance
 * never says 404 to the owner of a session it was just told about, nor
 * sends a retry of the create upstream again. */
static void
chat_share_before_answer(struct chat_call *call, bool publish)
{
	struct shared_owner owner;
	struct shared_publication pub = { .session = call->session_id, .removed = call->kind == CHAT_DELETE };

	if (call->chat->shared == NULL || call->write == NULL)
		return;
	if (publish && (call->kind == CHAT_CREATE || call->kind == CHAT_DELETE)) {
		snprintf(owner.owner, sizeof(owner.owner), "%s", call->caller.name);
		snprintf(owner.organization_id, sizeof(owner.organization_id), "%s", call->scope.organization_id);
		snprintf(owner.project_id, sizeof(owner.project_id), "%s", call->scope.project_id);
		pub.owner = &owner;
		pub.json = (const char *)evbuffer_pullup(call->body, -1);
		pub.json_len = evbuffer_get_length(call->body);
		call->shared_waits++;
		call->published_now = chat_outbox_publish_now(call->chat, &pub, chat_on_shared_taken, call);
		if (!call->published_now)
			call->shared_waits--;
	}
	if (call->claim_shared && call->key != NULL && call->kind == CHAT_CREATE) {
		call->shared_waits++;
		if (!chat_key_answer_shared(call->chat, call->key, (int)call->status,
		        (const char *)evbuffer_pullup(call->body, -1), evbuffer_get_length(call->body),
		        chat_on_key_answer_taken, call))
			call->shared_waits--;
	}
}

/* After a 2xx: what the store must learn from upstream's answer. Hands the
 * call on: to the store, or (an unusable answer, a write that cannot be
 * queued) to its answer, which frees it. The caller must not touch call
 * after this returns. */
void
chat_store_answer(struct chat_call *call)
{
	const char *body = (const char *)evbuffer_pullup(call->body, -1);
	size_t len = evbuffer_get_length(call->body);
	char *from_history = NULL;
	const char *why;
	uint64_t updated_us;

	call->state = CHAT_STORING;
	if (call->kind == CHAT_DELETE) {
		struct store_change change = { .key = { call->session_id, strlen(call->session_id) }, .remove = 1 };
		struct chat_outbox_entry outbox;
		if (call->chat->shared != NULL) {
			chat_outbox_change(call->chat, call->session_id, &outbox);
			change.also = &outbox.change;
		}
		call->write = store_queue(call->chat->store, &change, chat_on_stored, call);
		chat_share_before_answer(call, true);
	} else {
		if (call->kind == CHAT_HISTORY) {
			/* The history carries the summary too: keep it fresh. */
			if ((from_history = session_summary_of_history(body, len)) != NULL) {
				body = from_history;
				len = strlen(from_history);
			}
		}
		if (session_parse_summary(body, len, call->session_id, &updated_us, &why) != 0) {
			call->chat->counters.upstream_failures++;
			log_warnx("chat: %s", why);
			free(from_history);
			if (call->kind == CHAT_HISTORY) {
				chat_call_reply_upstream(call); /* not ours to judge; pass it on */
				return;
			}
			/* For a create the session may exist upstream: no retry. */
			chat_call_fail(
			    call, 502, call->kind == CHAT_CREATE ? REPLY_RETRY_WONT_HELP : REPLY_RETRY_MAY_HELP, why);
			return;
		}
		struct chat_summary summary = {
			.json = body,
			.len = len,
			.known_id = call->session_id,
			.known_updated_us = updated_us,
			.fallback = &call->scope,
		};
		struct chat_usage usage;
		struct chat_key_write key_write = { 0 };
		/* The key's record commits with the session: a retry after the
		 * answer was lost finds both, or neither. */
		if (call->kind == CHAT_CREATE && call->key != NULL) {
			if (chat_key_write_init(&key_write, call->key, IDEMPOTENCY_CREATE, (int)call->status,
			        evbuffer_pullup(call->body, -1), evbuffer_get_length(call->body)) == 0)
				summary.also = &key_write.change;
			else
				log_warnx("chat: out of memory: the Idempotency-Key of session %s is not remembered",
				    call->session_id);
		}
		if (call->req != NULL)
			snprintf(
			    call->req->access.session_id, sizeof(call->req->access.session_id), "%s", call->session_id);
		if (call->kind == CHAT_CREATE && chat_owned_by_another(call->chat, &call->caller, call->session_id)) {
			/* Upstream answered with a session made for someone else
			 * (it deduped on a key, say): its owner keeps it. */
			call->chat->counters.takeovers_refused++;
			log_warnx("chat: upstream answered a create of client %s with session %s, which another client "
			          "owns; refused, and the session keeps its owner",
			    call->caller.name[0] != '\0' ? call->caller.name : "-", call->session_id);
			free(from_history);
			chat_call_fail(call, 502, REPLY_RETRY_WONT_HELP,
			    "upstream answered this create with a session another client owns; llamachatd refused it");
			return;
		}
		if (call->kind == CHAT_CREATE) {
			unsigned long long add[SESSION_LEDGER_FIELD_COUNT] = { [SESSION_LEDGER_SESSIONS] = 1 };
			call->chat->counters.creates++; /* it exists upstream, stored or not */
			/* The creator owns it, and the ledger counts it, in one commit. */
			chat_count_usage(call->chat, call->caller.name, call->scope.organization_id,
			    call->scope.project_id, add, &usage);
			summary.new_owner = call->caller.name;
			summary.usage = &usage;
		} else if (call->granted_owner[0] != '\0') {
			/* Read through, and held for its owner, by its shared record. */
			summary.new_owner = call->granted_owner;
		}
		call->write = chat_store_summary(call->chat, &summary, chat_on_stored, call);
		chat_share_before_answer(call, call->kind == CHAT_CREATE);
		chat_key_write_done(&key_write);
		free(from_history);
	}
	if (call->write == NULL)
		chat_on_stored(STORE_ERR, call); /* answers and frees call */
}

/* A create with a key that upstream refused for good (a final 4xx): the
 * refusal is kept for the key, and answered once it commits. Returns false
 * when there is nothing to keep (the caller answers). */
bool
chat_store_final_refusal(struct chat_call *call)
{
	struct chat_key_write w;

	if (call->kind != CHAT_CREATE || call->key == NULL ||
	    !idempotency_answer_is_final(call->status, http_headers_find(&call->headers, "x-should-retry")) ||
	    chat_key_write_init(&w, call->key, IDEMPOTENCY_CREATE, (int)call->status, evbuffer_pullup(call->body, -1),
	        evbuffer_get_length(call->body)) != 0)
		return false;
	call->write = store_queue(call->chat->store, &w.change, chat_on_stored, call);
	chat_key_write_done(&w);
	if (call->write == NULL)
		return false;
	chat_share_before_answer(call, false);
	call->state = CHAT_STORING;
	return true;
}
