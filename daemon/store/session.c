/* session: the chat Session JSON, client body checks, and the stored record. */
#include "store/session.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "store/json_scan.h"

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

enum session_body_check
session_check_stream_body(const char *body, size_t len, const char **why)
{
	enum session_body_check result = SESSION_BODY_INVALID;
	json_error_t error;
	json_t *root, *prompt, *index_ids, *item;
	size_t i;

	root = json_loadb(body, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &error);
	if (root == NULL) {
		*why = "the request body is not valid JSON";
		return SESSION_BODY_MALFORMED;
	}
	prompt = json_object_get(root, "prompt");
	index_ids = json_object_get(root, "index_ids");
	if (!json_is_object(root)) {
		*why = "the request body must be a JSON object";
	} else if (!json_is_string(prompt) || json_string_length(prompt) == 0) {
		*why = "prompt must be a non-empty string";
	} else if (!json_is_array(index_ids)) {
		*why = "index_ids must be an array of strings";
	} else {
		result = SESSION_BODY_OK;
		json_array_foreach(index_ids, i, item) {
			if (!json_is_string(item)) {
				*why = "index_ids must be an array of strings";
				result = SESSION_BODY_INVALID;
				break;
			}
		}
	}
	json_decref(root);
	return result;
}

int
session_parse_summary(const char *json, size_t len, char *id, uint64_t *updated_us, const char **why)
{
	struct json_scan_field fields[] = { { .name = "session_id" }, { .name = "last_updated_at" } };
	json_error_t error;
	json_t *root, *sid, *updated;
	char time_text[64];
	int rc = -1;

	/* Every create and read-through comes here: a valid answer is checked
	 * in one pass, and Jansson (which says what is wrong) sees the rest. */
	if (json_scan_object(json, len, fields, 2) && fields[1].len < sizeof(time_text)) {
		if (!session_id_is_safe(fields[0].value, fields[0].len)) {
			*why = "upstream answered with an unusable session_id";
			return -1;
		}
		memcpy(id, fields[0].value, fields[0].len);
		id[fields[0].len] = '\0';
		memcpy(time_text, fields[1].value, fields[1].len);
		time_text[fields[1].len] = '\0';
		*updated_us = session_time_parse(time_text);
		return 0;
	}
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
	*updated_us = session_time_parse(json_string_value(updated));
	rc = 0;
out:
	json_decref(root);
	return rc;
}

/* Record layout, all integers little-endian:
 *   "LCS2" | u64 stored_at_us | u16 owner_len | owner | u16 org_len | org
 *   | u16 project_len | project | u32 json_len | json
 * A versioned magic lets a later layout be told apart from this one. */
#define RECORD_MAGIC "LCS2"
#define RECORD_FIXED_BYTES (4 + 8 + 2 + 2 + 2 + 4)

size_t
session_record_encoded_size(const struct session_record *rec)
{
	return RECORD_FIXED_BYTES + rec->owner_len + rec->organization_id_len + rec->project_id_len + rec->json_len;
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
	p = put_uint(p, rec->owner_len, 2);
	p = put_bytes(p, rec->owner, rec->owner_len);
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
	if (take_uint(&r, 8, &rec->stored_at_us) != 0 || take_bytes(&r, 2, &rec->owner, &rec->owner_len) != 0 ||
	    take_bytes(&r, 2, &rec->organization_id, &rec->organization_id_len) != 0 ||
	    take_bytes(&r, 2, &rec->project_id, &rec->project_id_len) != 0 ||
	    take_bytes(&r, 4, &rec->json, &rec->json_len) != 0 || r.left != 0)
		return -1;
	return 0;
}

/* Reads exactly n decimal digits at p into *out, then expects the byte
 * after (0: anything). Returns the position after that byte, or NULL. */
static const char *
session_read_digits(const char *p, int n, int *out, char after)
{
	int v = 0;

	for (int i = 0; i < n; i++, p++) {
		if (*p < '0' || *p > '9')
			return NULL;
		v = v * 10 + (*p - '0');
	}
	*out = v;
	if (after == 0)
		return p;
	return *p == after ? p + 1 : NULL;
}

uint64_t
session_time_parse(const char *text)
{
	struct tm tm = { 0 };
	int year, month, day, hour, minute, second;
	uint64_t micros = 0;
	long offset_s = 0;
	const char *p = text;
	time_t t;

	/* Called for every session stored: plain digit reads, not sscanf. */
	if ((p = session_read_digits(p, 4, &year, '-')) == NULL ||
	    (p = session_read_digits(p, 2, &month, '-')) == NULL ||
	    (p = session_read_digits(p, 2, &day, 'T')) == NULL || (p = session_read_digits(p, 2, &hour, ':')) == NULL ||
	    (p = session_read_digits(p, 2, &minute, ':')) == NULL ||
	    (p = session_read_digits(p, 2, &second, 0)) == NULL)
		return 0;
	if (*p == '.') {
		int digits = 0;
		for (p++; *p >= '0' && *p <= '9'; p++, digits++)
			if (digits < 6)
				micros = micros * 10 + (uint64_t)(*p - '0');
		if (digits == 0)
			return 0;
		for (; digits < 6; digits++)
			micros *= 10;
	}
	if (*p == 'Z') {
		p++;
	} else if (*p == '+' || *p == '-') {
		int oh, om;
		const char *q;
		if ((q = session_read_digits(p + 1, 2, &oh, ':')) == NULL ||
		    (q = session_read_digits(q, 2, &om, 0)) == NULL)
			return 0;
		offset_s = (oh * 3600L + om * 60L) * (*p == '+' ? 1 : -1);
		p = q;
	}
	if (*p != '\0' || month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 || minute > 59 || second > 60)
		return 0;
	tm.tm_year = year - 1900;
	tm.tm_mon = month - 1;
	tm.tm_mday = day;
	tm.tm_hour = hour;
	tm.tm_min = minute;
	tm.tm_sec = second;
	t = timegm(&tm) - offset_s;
	if (t < 0)
		return 0;
	return (uint64_t)t * 1000000u + micros;
}

void
session_time_format(uint64_t us, char out[SESSION_TIME_TEXT])
{
	time_t t = (time_t)(us / 1000000u);
	struct tm tm;
	size_t used;

	gmtime_r(&t, &tm);
	used = strftime(out, SESSION_TIME_TEXT, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out + used, SESSION_TIME_TEXT - used, ".%06u", (unsigned)(us % 1000000u));
}

static size_t
put_short_string(unsigned char *out, const char *text, size_t max)
{
	size_t len = text != NULL ? strlen(text) : 0;

	if (len > max)
		len = max;
	out[0] = (unsigned char)len;
	if (len > 0)
		memcpy(out + 1, text, len);
	return 1 + len;
}

size_t
session_list_key(const char *owner, const char *organization_id, const char *project_id, unsigned char *out)
{
	size_t used = 0;

	/* 'A': the index of all sessions; 'O': an owner's. */
	out[used++] = owner != NULL ? 'O' : 'A';
	if (owner != NULL)
		used += put_short_string(out + used, owner, SESSION_OWNER_MAX);
	used += put_short_string(out + used, organization_id, SESSION_SCOPE_MAX);
	return used + put_short_string(out + used, project_id, SESSION_SCOPE_MAX);
}

size_t
session_index_key(const char *owner, const char *organization_id, const char *project_id, uint64_t updated_us,
    const char *id, size_t id_len, unsigned char *out)
{
	size_t used = session_list_key(owner, organization_id, project_id, out);
	/* Big-endian and inverted, so that ascending keys go newest first. */
	uint64_t order = UINT64_MAX - updated_us;

	for (int i = 7; i >= 0; i--)
		out[used++] = (unsigned char)(order >> (8 * i));
	if (id_len > SESSION_ID_MAX)
		id_len = SESSION_ID_MAX;
	memcpy(out + used, id, id_len);
	return used + id_len;
}

uint64_t
session_index_key_updated_us(const void *index_key, size_t index_key_len, size_t id_len)
{
	const unsigned char *p = index_key;
	uint64_t order = 0;

	if (id_len > SESSION_ID_MAX)
		id_len = SESSION_ID_MAX;
	/* The 8 bytes of time lie right before the id, after a list key of at
	 * least 3 bytes ('A' or 'O' and two short strings). */
	if (index_key_len < 3 + 8 + id_len)
		return 0;
	p += index_key_len - id_len - 8;
	for (int i = 0; i < 8; i++)
		order = order << 8 | p[i];
	return UINT64_MAX - order;
}

size_t
session_ledger_key(
    const char *client, const char *organization_id, const char *project_id, unsigned day, unsigned char *out)
{
	size_t used = put_short_string(out, client, SESSION_OWNER_MAX);

	used += put_short_string(out + used, organization_id, SESSION_SCOPE_MAX);
	used += put_short_string(out + used, project_id, SESSION_SCOPE_MAX);
	for (int i = 3; i >= 0; i--)
		out[used++] = (unsigned char)(day >> (8 * i));
	return used;
}

size_t
session_daily_key(const char *client, unsigned day, unsigned char *out)
{
	size_t len = client != NULL ? strlen(client) : 0;

	if (len > SESSION_OWNER_MAX)
		len = SESSION_OWNER_MAX;
	for (int i = 0; i < 4; i++)
		out[i] = (unsigned char)(day >> (8 * (3 - i)));
	memcpy(out + 4, client != NULL ? client : "", len);
	return 4 + len;
}

unsigned
session_day_of(uint64_t unix_us)
{
	return (unsigned)(unix_us / 1000000u / 86400u);
}

int
session_ledger_key_parse(const void *key, size_t len, const char **client, size_t *client_len, const char **org,
    size_t *org_len, const char **project, size_t *project_len, unsigned *day)
{
	const unsigned char *p = key, *end = p + len;
	const char **parts[3] = { client, org, project };
	size_t *lens[3] = { client_len, org_len, project_len };

	for (int i = 0; i < 3; i++) {
		if (p >= end || (size_t)(end - p - 1) < *p)
			return -1;
		*lens[i] = *p;
		*parts[i] = (const char *)p + 1;
		p += 1 + *p;
	}
	if (end - p != 4)
		return -1;
	*day = (unsigned)p[0] << 24 | (unsigned)p[1] << 16 | (unsigned)p[2] << 8 | (unsigned)p[3];
	return 0;
}

/* The most one stop event may add to a counter: far above any real turn,
 * far below what could overflow a ledger that sums years of them. */
#define SESSION_COUNT_MAX 1000000000000ULL

/* A non-negative whole number member, or 0; upstream's numbers are capped
 * at SESSION_COUNT_MAX (a real as large as 1e35 must not reach a cast). */
static unsigned long long
session_count_of(const json_t *object, const char *name)
{
	const json_t *v = json_object_get(object, name);

	if (json_is_integer(v) && json_integer_value(v) > 0)
		return (unsigned long long)json_integer_value(v) < SESSION_COUNT_MAX
		    ? (unsigned long long)json_integer_value(v)
		    : SESSION_COUNT_MAX;
	if (json_is_real(v) && json_real_value(v) > 0)
		return json_real_value(v) < (double)SESSION_COUNT_MAX ? (unsigned long long)json_real_value(v)
		                                                      : SESSION_COUNT_MAX;
	return 0;
}

int
session_stop_usage(const char *stop, size_t len, unsigned long long *add)
{
	json_t *event = json_loadb(stop, len, 0, NULL);
	json_t *usage = json_object_get(event, "usage");

	if (!json_is_object(event)) {
		json_decref(event);
		return -1;
	}
	memset(add, 0, sizeof(*add) * SESSION_LEDGER_FIELD_COUNT);
	add[SESSION_LEDGER_TURNS] = session_count_of(usage, "turns");
	add[SESSION_LEDGER_INPUT_TOKENS] = session_count_of(usage, "total_input_tokens");
	add[SESSION_LEDGER_OUTPUT_TOKENS] = session_count_of(usage, "total_output_tokens");
	add[SESSION_LEDGER_DURATION_MS] = session_count_of(usage, "duration_ms");
	add[SESSION_LEDGER_ERRORS] = json_is_true(json_object_get(event, "is_error")) ? 1 : 0;
	json_decref(event);
	return 0;
}

/* Loads text as a JSON object, keeping member order for re-encoding. */
static json_t *
session_load_object(const char *text, size_t len)
{
	json_error_t error;
	json_t *doc = json_loadb(text, len, 0, &error);

	if (doc != NULL && !json_is_object(doc)) {
		json_decref(doc);
		return NULL;
	}
	return doc;
}

char *
session_apply_stop(const char *json, size_t len, const char *stop, size_t stop_len, uint64_t now_us)
{
	json_t *session = session_load_object(json, len);
	json_t *event = session_load_object(stop, stop_len);
	json_t *usage = event != NULL ? json_object_get(event, "usage") : NULL;
	json_t *meta;
	char when[SESSION_TIME_TEXT];
	char *text = NULL;

	if (session == NULL || event == NULL)
		goto out;
	meta = json_object_get(session, "job_metadata");
	if (!json_is_object(meta)) {
		meta = json_object();
		json_object_set_new(session, "job_metadata", meta);
	}
	if (json_is_object(usage))
		json_object_update(meta, usage);
	if (json_object_get(event, "error") != NULL)
		json_object_set(meta, "error", json_object_get(event, "error"));
	if (json_object_get(event, "is_error") != NULL)
		json_object_set(meta, "is_error", json_object_get(event, "is_error"));
	session_time_format(now_us, when);
	json_object_set_new(session, "last_updated_at", json_string(when));
	text = json_dumps(session, JSON_COMPACT | JSON_PRESERVE_ORDER);
out:
	json_decref(session);
	json_decref(event);
	return text;
}

char *
session_summary_of_history(const char *json, size_t len)
{
	json_t *doc = session_load_object(json, len);
	char *text;

	if (doc == NULL)
		return NULL;
	json_object_del(doc, "events");
	text = json_dumps(doc, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(doc);
	return text;
}
