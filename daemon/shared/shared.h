/* shared: the state several daemons share through Redis, driven from the
 * event loop with hiredis's async API and its libevent adapter.
 * Layer shared (daemon/shared/): may include base/ only; chat/ and above
 * use it. This version shares who owns each session (llamachatd:own:{id}).
 *
 * Every call has a deadline (timeout_ms) and the calls in flight are
 * bounded; after breaker_failures failures in a row the connection counts
 * as down and calls fail at once until a PING answers in time. A cached
 * lookup never waits on Redis: only a local miss asks it. */
#ifndef LLAMACHATD_SHARED_H
#define LLAMACHATD_SHARED_H

#include <stdbool.h>
#include <stddef.h>

#include "base/counters.h"

struct event_base;
struct shared;
struct shared_op;

struct shared_settings {
	const char *redis; /* "unix:/path" or "IPv4:port" / "[IPv6]:port" */
	const char *instance; /* this daemon's name among the others */
	long timeout_ms; /* every call's deadline */
	long max_in_flight; /* calls waiting for Redis at once */
	long breaker_failures; /* failures in a row that make it down */
	long stream_max_entries; /* the sessions stream is trimmed to about this many */
};

/* Creates the client on base and starts connecting (a Redis that is down
 * is no failure: the daemon serves and keeps trying). Returns NULL with a
 * reason in why when the settings cannot work. Free with shared_free(),
 * which answers every caller still waiting "unavailable". */
struct shared *shared_create(struct event_base *base, const struct shared_settings *settings, char *why,
    size_t why_size) __attribute__((warn_unused_result));
void shared_free(struct shared *shared);

/* Calls fn each time Redis starts or stops answering (the first
 * connection too), with since when it was in the state it leaves (Unix
 * seconds). */
void shared_set_on_change(struct shared *shared, void (*fn)(bool up, double since_wall, void *arg), void *arg);

/* Whether Redis answers now, and since when (Unix seconds). */
bool shared_is_up(const struct shared *shared, double *since_wall);

/* Who owns a session, as the instance that made it published it. */
#define SHARED_NAME_MAX 64
#define SHARED_SCOPE_MAX 128
struct shared_owner {
	char owner[SHARED_NAME_MAX + 1];
	char organization_id[SHARED_SCOPE_MAX + 1];
	char project_id[SHARED_SCOPE_MAX + 1];
};

enum shared_result {
	SHARED_FOUND,
	SHARED_ABSENT, /* Redis answered: no such record */
	SHARED_UNAVAILABLE, /* down, too busy, past the deadline, or a bad answer */
};

/* Asks for the owner of session; cb runs exactly once, later, from the
 * loop (owner NULL unless found), or from shared_free() (unavailable).
 * Returns NULL, without calling cb, only when out of memory. */
typedef void (*shared_owner_cb)(enum shared_result result, const struct shared_owner *owner, void *arg);
struct shared_op *shared_get_owner(struct shared *shared, const char *session, shared_owner_cb cb, void *arg);

/* Publishes a session's owner record again, in the background (a
 * republication after Redis lost its data; a session's own changes go by
 * shared_publish): a failure is counted (and a change of state logged). */
void shared_put_owner(struct shared *shared, const char *session, const struct shared_owner *owner);

/* A client's use of one UTC day, summed over instances, never added to:
 * each instance writes its own running totals into the day's hash
 * (llamachatd:budget:{client}:{YYYY-MM-DD}, fields {instance}:tokens and
 * {instance}:sessions), only ever raising them (a script), so a retry, a
 * restart or a republication cannot inflate the sum. cb gets the other
 * instances' totals (what this one wrote is its own to know). */
typedef void (*shared_usage_cb)(
    enum shared_result result, unsigned long long others_tokens, unsigned long long others_sessions, void *arg);
struct shared_op *shared_sync_usage(struct shared *shared, const char *client, const char *day,
    unsigned long long tokens, unsigned long long sessions, shared_usage_cb cb, void *arg);

/* Says this instance is live (a sorted set, llamachatd:instances, scored
 * by the time of each instance's last word) and counts those heard from
 * within the last 5 seconds: cb gets the count (in others_tokens; the
 * usage callback's shape) and, in others_sessions, 1 when Redis did not
 * know this instance (its marker llamachatd:seen:{instance} was missing:
 * the first word, or Redis lost its data), else 0. */
struct shared_op *shared_heartbeat(struct shared *shared, shared_usage_cb cb, void *arg);

/* Takes one call from client's rate limit, one GCRA bucket for every
 * instance (shared_rate.c; llamachatd:rate:{client}, by Redis's clock):
 * rate_per_s, and burst calls at once. cb gets (in the usage callback's
 * shape) 1 when the call may go, else 0, and the milliseconds until one
 * may. */
struct shared_op *shared_take_rate(
    struct shared *shared, const char *client, double rate_per_s, double burst, shared_usage_cb cb, void *arg);

/* Idempotency-Keys of creates, for every instance (shared_keys.c). A
 * key's record, llamachatd:idem:{client}:{key hash}, is a claim (in
 * flight on some instance, for lease_ms at most) or an answer (status and
 * body, for ttl_ms). */
enum shared_claim {
	SHARED_CLAIMED, /* ours now: go upstream */
	SHARED_CLAIM_BUSY, /* another request with it is in flight: 409 */
	SHARED_CLAIM_MISMATCH, /* used for a different request: 422 */
	SHARED_CLAIM_ANSWERED, /* done: replay status and body */
	SHARED_CLAIM_UNAVAILABLE, /* Redis cannot say: claim it locally */
};
typedef void (*shared_claim_cb)(enum shared_claim result, int status, const char *body, size_t len, void *arg);
/* Claims, replays or refuses in one round trip (a script). key_hash and
 * fingerprint are hex. cb runs exactly once, later. */
struct shared_op *shared_claim_key(struct shared *shared, const char *client, const char *key_hash,
    const char *fingerprint, long lease_ms, shared_claim_cb cb, void *arg);
/* The claimed key's answer, kept ttl_ms. cb (may be NULL; owner NULL)
 * runs exactly once, later, when Redis took it or could not; NULL returned
 * (cb will not run) when it cannot be sent at all (said in the log). */
struct shared_op *shared_answer_key(struct shared *shared, const char *client, const char *key_hash,
    const char *fingerprint, int status, const char *body, size_t len, long ttl_ms, shared_owner_cb cb, void *arg);
/* Gives a claim of this instance back (background): the call ended with no
 * answer to keep. */
void shared_release_key(struct shared *shared, const char *client, const char *key_hash);

/* The stream of sessions (shared_stream.c), llamachatd:sessions: every
 * instance publishes each session it stores or deletes, and follows what
 * the others publish, so that every store converges. */
#define SHARED_STREAM_ID_MAX 41 /* "ms-seq", two 64-bit numbers */
#define SHARED_STREAM_POSITION_MAX (SHARED_STREAM_ID_MAX + 21) /* "id n" */
struct shared_publication {
	const char *session;
	bool removed; /* deleted: its owner record goes too */
	const struct shared_owner *owner; /* NULL, or owner "": none (no owner record) */
	const char *json; /* upstream's Session summary; NULL when removed */
	size_t json_len;
};

/* Publishes in one round trip (a script): the owner record set (when the
 * session has an owner) or removed, and an entry appended to the stream,
 * trimmed to about stream_max_entries. cb (SHARED_FOUND: acknowledged;
 * owner NULL) runs exactly once, later. NULL only when out of memory. */
struct shared_op *shared_publish(
    struct shared *shared, const struct shared_publication *pub, shared_owner_cb cb, void *arg);

/* One entry another instance published. */
struct shared_entry {
	char stream_id[SHARED_STREAM_ID_MAX + 1];
	unsigned long long n; /* its number in the stream (0: not numbered) */
	const char *instance; /* the one that published it */
	struct shared_publication pub; /* pointers valid during the callback */
	struct shared_owner owner;
};

/* A batch read: entries of other instances (this one's are skipped), the
 * read position the batch ends at (to store and give shared_follow() after
 * a restart: the last entry's id and number, "id n"; at most
 * SHARED_STREAM_POSITION_MAX bytes; "" when nothing was read) and whether
 * more were waiting (a full batch). Called with count 0 and position ""
 * when Redis had nothing new within a second. */
typedef void (*shared_entries_cb)(
    const struct shared_entry *entries, size_t count, const char *position, bool more, void *arg);

/* Follows the stream from position (exclusive; "0" from its start) on a
 * connection of its own (a blocking read there never holds up the other
 * calls). Each batch comes to cb; the next is asked only when
 * shared_follow_next() says the batch is stored. An entry number skipped
 * (entries trimmed before they were read) is logged and counted
 * (stream_trimmed). Returns false when out of memory. */
bool shared_follow(struct shared *shared, const char *position, shared_entries_cb cb, void *arg);
void shared_follow_next(struct shared *shared);

/* Milliseconds of the Redis clock in a stream id or position (its first
 * number). */
unsigned long long shared_stream_id_ms(const char *stream_id);

/* What the client saw, for /metrics. */
enum shared_op_kind {
	SHARED_OP_GET_OWNER,
	SHARED_OP_PUT_OWNER,
	SHARED_OP_PING,
	SHARED_OP_SYNC_USAGE,
	SHARED_OP_HEARTBEAT,
	SHARED_OP_CLAIM_KEY,
	SHARED_OP_ANSWER_KEY,
	SHARED_OP_RELEASE_KEY,
	SHARED_OP_PUBLISH,
	SHARED_OP_FOLLOW, /* a read of the stream (its wait not counted) */
	SHARED_OP_TAKE_RATE,
	SHARED_OP_KINDS
};
enum shared_error_kind {
	SHARED_ERR_TIMEOUT, /* no answer within timeout_ms */
	SHARED_ERR_CONNECTION, /* not connected, or the connection dropped */
	SHARED_ERR_REPLY, /* Redis answered with an error or an answer we cannot read */
	SHARED_ERR_BUSY, /* max_in_flight calls were waiting already */
	SHARED_ERROR_KINDS
};
struct shared_stats {
	struct histogram duration[SHARED_OP_KINDS]; /* of calls that were answered */
	unsigned long long errors[SHARED_ERROR_KINDS];
	unsigned long long stream_trimmed; /* times entries not yet read were found trimmed */
	long in_flight;
};
const struct shared_stats *shared_get_stats(const struct shared *shared);
const char *shared_op_name(enum shared_op_kind kind);
const char *shared_error_name(enum shared_error_kind kind);

#endif
