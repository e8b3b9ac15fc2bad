/* session: the chat Session JSON, client body checks, and the stored record. */
#ifndef LLAMACHATD_SESSION_H
#define LLAMACHATD_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SESSION_ID_MAX 128
#define SESSION_SCOPE_MAX 128 /* organization_id / project_id */
#define SESSION_MAX_INDEX_IDS 10

enum session_body_check {
	SESSION_BODY_OK,
	SESSION_BODY_MALFORMED, /* not JSON at all: 400 */
	SESSION_BODY_INVALID, /* JSON of the wrong shape: 422 */
};

/* True when id is usable as a key and as a path segment: 1 to
 * SESSION_ID_MAX bytes, none of them '/', '%', '?', '#' or a control byte. */
bool session_id_is_safe(const char *id, size_t len);

/* True for an optional organization_id / project_id value we accept. */
bool session_scope_is_safe(const char *value, size_t len);

/* Checks a create body: empty, {}, {"index_ids": null} or index_ids an array
 * of 1 to 10 non-empty strings; other members are left to upstream. On a
 * failure *why points at a static explanation. */
enum session_body_check session_check_create_body(const char *body, size_t len, const char **why)
    __attribute__((warn_unused_result));

/* Checks a message body: an object with "prompt" a non-empty string and
 * "index_ids" an array of strings; other members are left to upstream. */
enum session_body_check session_check_stream_body(const char *body, size_t len, const char **why)
    __attribute__((warn_unused_result));

/* Checks that json is a Session object (string session_id that is safe,
 * string last_updated_at), copies its id into id (SESSION_ID_MAX + 1 bytes)
 * and reads last_updated_at into *updated_us (0 when it is not a time this
 * parser knows). Returns 0, or -1 with a static reason in *why. */
int session_parse_summary(const char *json, size_t len, char *id, uint64_t *updated_us, const char **why)
    __attribute__((warn_unused_result));

/* Reads an ISO-8601 time as upstream writes it ("2026-04-22T12:34:41.342245",
 * no zone meaning UTC; a trailing "Z" or "+hh:mm" is honoured) into Unix
 * microseconds. Returns 0 when text is not such a time. */
uint64_t session_time_parse(const char *text);

#define SESSION_TIME_TEXT 32
/* Writes us as upstream does: "YYYY-MM-DDTHH:MM:SS.ffffff" in UTC, no zone. */
void session_time_format(uint64_t us, char out[SESSION_TIME_TEXT]);

/* Index keys order sessions for lists. Every session is in the index of
 * all sessions: its scope (organization, project), then newest
 * last_updated_at first, then its id. A session with an owner is also in
 * that owner's index, the same behind the owner's name. A list reads one
 * run of keys that share a prefix. */
#define SESSION_OWNER_MAX 64
#define SESSION_LIST_KEY_MAX (1 + 1 + SESSION_OWNER_MAX + 2 + 2 * SESSION_SCOPE_MAX)
#define SESSION_INDEX_KEY_MAX (SESSION_LIST_KEY_MAX + 8 + SESSION_ID_MAX)

/* Writes the key prefix of one list into out (SESSION_LIST_KEY_MAX bytes):
 * owner's sessions, or all when owner is NULL, in a scope (NULL or "" for
 * an absent id). Returns its length. */
size_t session_list_key(const char *owner, const char *organization_id, const char *project_id, unsigned char *out);

/* Writes a session's key in one list into out (SESSION_INDEX_KEY_MAX
 * bytes); returns its length. */
size_t session_index_key(const char *owner, const char *organization_id, const char *project_id, uint64_t updated_us,
    const char *id, size_t id_len, unsigned char *out);

/* The last_updated_at (Unix microseconds) an index key of the session whose
 * id is id_len bytes long orders it by, or 0 when index_key cannot be one. */
uint64_t session_index_key_updated_us(const void *index_key, size_t index_key_len, size_t id_len);

/* The usage ledger counts per client and project. */
enum session_ledger_field {
	SESSION_LEDGER_SESSIONS,
	SESSION_LEDGER_TURNS,
	SESSION_LEDGER_INPUT_TOKENS,
	SESSION_LEDGER_OUTPUT_TOKENS,
	SESSION_LEDGER_DURATION_MS,
	SESSION_LEDGER_ERRORS,
	SESSION_LEDGER_FIELD_COUNT,
};

/* The ledger counts per client, scope and UTC day: a key is the client and
 * scope, then the day (days since 1970-01-01, big-endian, 4 bytes), so one
 * client's and scope's days lie next to each other. */
#define SESSION_LEDGER_KEY_MAX (SESSION_LIST_KEY_MAX + 4)

/* Writes the ledger key of a client in a scope on day into out
 * (SESSION_LEDGER_KEY_MAX bytes); returns its length. */
size_t session_ledger_key(
    const char *client, const char *organization_id, const char *project_id, unsigned day, unsigned char *out);

/* A client's totals of one day, summed over its scopes, are kept apart
 * (store_change.daily) so that today's usage is one read: the key is the day
 * (4 bytes, big-endian), then the client's name. */
#define SESSION_DAILY_KEY_MAX (4 + SESSION_OWNER_MAX)

/* Writes the daily total key of client on day into out
 * (SESSION_DAILY_KEY_MAX bytes); returns its length. */
size_t session_daily_key(const char *client, unsigned day, unsigned char *out);

/* The UTC day of a Unix time in microseconds, as ledger keys count days. */
unsigned session_day_of(uint64_t unix_us);

/* Splits a ledger key back into its client, organization, project
 * (pointers into key) and day. Returns 0, or -1 when key is not one. */
int session_ledger_key_parse(const void *key, size_t len, const char **client, size_t *client_len, const char **org,
    size_t *org_len, const char **project, size_t *project_len, unsigned *day) __attribute__((warn_unused_result));

/* Reads a stop event's usage into add (SESSION_LEDGER_FIELD_COUNT counters:
 * one turn count, tokens, run time, an error when is_error). Returns 0, or
 * -1 when stop is not a JSON object. */
int session_stop_usage(const char *stop, size_t len, unsigned long long *add) __attribute__((warn_unused_result));

/* Returns a new Session JSON text (caller frees) that is json with the
 * members of a stream's "stop" event applied: job_metadata takes its usage,
 * error and is_error (keeping members the event does not carry, such as
 * export_config_ids), and last_updated_at becomes now_us. NULL when either
 * input is not a JSON object. */
char *session_apply_stop(const char *json, size_t len, const char *stop, size_t stop_len, uint64_t now_us)
    __attribute__((warn_unused_result));

/* Returns a new JSON text (caller frees) that is the history answer json
 * without its "events": the session summary it carries. NULL when json is
 * not an object. */
char *session_summary_of_history(const char *json, size_t len) __attribute__((warn_unused_result));

/* What the store keeps for a session. Encoded records own nothing: a decoded
 * record's pointers point into the buffer it was decoded from. */
struct session_record {
	uint64_t stored_at_us; /* when the daemon stored it, Unix microseconds */
	const char *owner; /* the client that created it; NULL: none known */
	size_t owner_len;
	const char *organization_id; /* may be NULL when absent */
	size_t organization_id_len;
	const char *project_id; /* may be NULL when absent */
	size_t project_id_len;
	const char *json; /* upstream's Session JSON, byte for byte */
	size_t json_len;
};

/* Size of the encoding of rec, for session_record_encode(). */
size_t session_record_encoded_size(const struct session_record *rec);

/* Writes the encoding of rec into out, which holds
 * session_record_encoded_size(rec) bytes. */
void session_record_encode(const struct session_record *rec, unsigned char *out);

/* Decodes buf into rec, whose pointers then point into buf. Returns 0, or -1
 * when buf is not a well-formed record. */
int session_record_decode(const unsigned char *buf, size_t len, struct session_record *rec)
    __attribute__((warn_unused_result));

#endif
