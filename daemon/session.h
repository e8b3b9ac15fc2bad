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

/* Checks that json is a Session object (string session_id that is safe,
 * string last_updated_at) and copies its id into id (SESSION_ID_MAX + 1
 * bytes). Returns 0, or -1 with a static reason in *why. */
int session_parse_summary(const char *json, size_t len, char *id, const char **why) __attribute__((warn_unused_result));

/* What the store keeps for a session. Encoded records own nothing: a decoded
 * record's pointers point into the buffer it was decoded from. */
struct session_record {
	uint64_t stored_at_us; /* when the daemon stored it, Unix microseconds */
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
