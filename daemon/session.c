/* session: the chat Session JSON, client body checks, and the stored record. */
#include "session.h"

#include <jansson.h>
#include <string.h>

bool
session_id_is_safe(const char *id, size_t len)
{
	if (len == 0 || len > SESSION_ID_MAX)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)id[i];
		if (ch < 0x20 || ch == 0x7f || ch == '/' || ch == '%' || ch == '?' || ch == '#')
			return false;
	}
	return true;
}

bool
session_scope_is_safe(const char *value, size_t len)
{
	if (len > SESSION_SCOPE_MAX)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)value[i];
		if (ch <= 0x20 || ch >= 0x7f)
			return false;
	}
	return true;
}

static bool
session_body_is_blank(const char *body, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (body[i] != ' ' && body[i] != '\t' && body[i] != '\r' && body[i] != '\n')
			return false;
	return true;
}

enum session_body_check
session_check_create_body(const char *body, size_t len, const char **why)
{
	enum session_body_check result = SESSION_BODY_INVALID;
	json_error_t error;
	json_t *root, *index_ids;

	if (session_body_is_blank(body, len))
		return SESSION_BODY_OK;
	root = json_loadb(body, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &error);
	if (root == NULL) {
		*why = "the request body is not valid JSON";
		return SESSION_BODY_MALFORMED;
	}
	if (!json_is_object(root)) {
		*why = "the request body must be a JSON object";
		goto out;
	}
	index_ids = json_object_get(root, "index_ids");
	if (index_ids != NULL && !json_is_null(index_ids)) {
		size_t i;
		json_t *item;
		if (!json_is_array(index_ids)) {
			*why = "index_ids must be an array of strings or null";
			goto out;
		}
		if (json_array_size(index_ids) < 1 || json_array_size(index_ids) > SESSION_MAX_INDEX_IDS) {
			*why = "index_ids must hold 1 to 10 index ids";
			goto out;
		}
		json_array_foreach(index_ids, i, item) {
			if (!json_is_string(item) || json_string_length(item) == 0) {
				*why = "every item of index_ids must be a non-empty string";
				goto out;
			}
		}
	}
	result = SESSION_BODY_OK;
out:
	json_decref(root);
	return result;
}

int
session_parse_summary(const char *json, size_t len, char *id, const char **why)
{
	json_error_t error;
	json_t *root, *sid, *updated;
	int rc = -1;

	root = json_loadb(json, len, 0, &error);
	if (root == NULL) {
		*why = "upstream answered with a body that is not JSON";
		return -1;
	}
	sid = json_object_get(root, "session_id");
	updated = json_object_get(root, "last_updated_at");
	if (!json_is_object(root) || !json_is_string(sid) || !json_is_string(updated)) {
		*why = "upstream answered with JSON that is not a chat session "
		       "(session_id and last_updated_at must be strings)";
		goto out;
	}
	if (!session_id_is_safe(json_string_value(sid), json_string_length(sid))) {
		*why = "upstream answered with an unusable session_id";
		goto out;
	}
	memcpy(id, json_string_value(sid), json_string_length(sid));
	id[json_string_length(sid)] = '\0';
	rc = 0;
out:
	json_decref(root);
	return rc;
}

/* Record layout, all integers little-endian:
 *   "LCS1" | u64 stored_at_us | u16 org_len | org | u16 project_len | project
 *   | u32 json_len | json
 * A versioned magic lets a later layout be told apart from this one. */
#define RECORD_MAGIC "LCS1"
#define RECORD_FIXED_BYTES (4 + 8 + 2 + 2 + 4)

size_t
session_record_encoded_size(const struct session_record *rec)
{
	return RECORD_FIXED_BYTES + rec->organization_id_len + rec->project_id_len + rec->json_len;
}

static unsigned char *
put_uint(unsigned char *p, uint64_t value, int bytes)
{
	for (int i = 0; i < bytes; i++)
		*p++ = (unsigned char)(value >> (8 * i));
	return p;
}

static unsigned char *
put_bytes(unsigned char *p, const char *src, size_t len)
{
	if (len > 0)
		memcpy(p, src, len);
	return p + len;
}

void
session_record_encode(const struct session_record *rec, unsigned char *out)
{
	unsigned char *p = out;

	p = put_bytes(p, RECORD_MAGIC, 4);
	p = put_uint(p, rec->stored_at_us, 8);
	p = put_uint(p, rec->organization_id_len, 2);
	p = put_bytes(p, rec->organization_id, rec->organization_id_len);
	p = put_uint(p, rec->project_id_len, 2);
	p = put_bytes(p, rec->project_id, rec->project_id_len);
	p = put_uint(p, rec->json_len, 4);
	put_bytes(p, rec->json, rec->json_len);
}

/* A bounds-checked reader over an encoded record. */
struct record_reader {
	const unsigned char *p;
	size_t left;
};

static int
take_uint(struct record_reader *r, int bytes, uint64_t *value)
{
	if (r->left < (size_t)bytes)
		return -1;
	*value = 0;
	for (int i = 0; i < bytes; i++)
		*value |= (uint64_t)r->p[i] << (8 * i);
	r->p += bytes;
	r->left -= (size_t)bytes;
	return 0;
}

static int
take_bytes(struct record_reader *r, int len_bytes, const char **out, size_t *out_len)
{
	uint64_t len;

	if (take_uint(r, len_bytes, &len) != 0 || len > r->left)
		return -1;
	*out = len > 0 ? (const char *)r->p : NULL;
	*out_len = (size_t)len;
	r->p += len;
	r->left -= (size_t)len;
	return 0;
}

int
session_record_decode(const unsigned char *buf, size_t len, struct session_record *rec)
{
	struct record_reader r = { buf, len };

	if (len < RECORD_FIXED_BYTES || memcmp(buf, RECORD_MAGIC, 4) != 0)
		return -1;
	r.p += 4;
	r.left -= 4;
	if (take_uint(&r, 8, &rec->stored_at_us) != 0 ||
	    take_bytes(&r, 2, &rec->organization_id, &rec->organization_id_len) != 0 ||
	    take_bytes(&r, 2, &rec->project_id, &rec->project_id_len) != 0 ||
	    take_bytes(&r, 4, &rec->json, &rec->json_len) != 0 || r.left != 0)
		return -1;
	return 0;
}
