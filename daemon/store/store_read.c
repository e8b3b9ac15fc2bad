/* store_read: reads on the event loop, each in a short read transaction
 * (one reused MDB_NOTLS reader, reset after each): lookups, in-place peeks,
 * ordered scans of the indexes, and the ledger. */
#include "store/store.h"

#include <errno.h>
#include <event2/buffer.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/eventfd.h>
#include <event2/event.h>
#include <lmdb.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/counters.h"
#include "base/log.h"
#include "store/store_private.h"

/* The table's handle; false when a read-only store does not have it. */
bool
store_table_dbi(const struct store *store, enum store_table table, MDB_dbi *dbi)
{
	if (table == STORE_KEYS) {
		*dbi = store->keys;
		return store->has_keys;
	}
	if (table == STORE_OUTBOX) {
		*dbi = store->outbox;
		return store->has_outbox;
	}
	if (table == STORE_META) {
		*dbi = store->meta;
		return store->has_meta;
	}
	*dbi = store->sessions;
	return true;
}

enum store_result
store_get(struct store *store, const char *key, size_t key_len, struct evbuffer *out)
{
	return store_get_in(store, STORE_SESSIONS, key, key_len, out);
}

enum store_result
store_get_in(struct store *store, enum store_table table, const void *key, size_t key_len, struct evbuffer *out)
{
	MDB_val k = { key_len, (void *)key }, v;
	enum store_result result;
	MDB_dbi dbi;
	int rc;

	if (!store_table_dbi(store, table, &dbi))
		return STORE_NOT_FOUND;
	if ((rc = mdb_txn_renew(store->reader)) != 0) {
		log_warnx("store: cannot start a read: %s", mdb_strerror(rc));
		return STORE_ERR;
	}
	rc = mdb_get(store->reader, dbi, &k, &v);
	if (rc == 0)
		result = evbuffer_add(out, v.mv_data, v.mv_size) == 0 ? STORE_OK : STORE_ERR;
	else if (rc == MDB_NOTFOUND)
		result = STORE_NOT_FOUND;
	else {
		log_warnx("store: lookup failed: %s", mdb_strerror(rc));
		result = STORE_ERR;
	}
	mdb_txn_reset(store->reader);
	return result;
}

enum store_result
store_peek(struct store *store, const char *key, size_t key_len, const void **data, size_t *len)
{
	MDB_val k = { key_len, (void *)key }, v;
	int rc;

	if ((rc = mdb_txn_renew(store->reader)) != 0) {
		log_warnx("store: cannot start a read: %s", mdb_strerror(rc));
		return STORE_ERR;
	}
	store->peeking = true;
	rc = mdb_get(store->reader, store->sessions, &k, &v);
	if (rc == MDB_NOTFOUND)
		return STORE_NOT_FOUND;
	if (rc != 0) {
		log_warnx("store: lookup failed: %s", mdb_strerror(rc));
		return STORE_ERR;
	}
	*data = v.mv_data;
	*len = v.mv_size;
	return STORE_OK;
}

void
store_peek_done(struct store *store)
{
	if (store->peeking)
		mdb_txn_reset(store->reader);
	store->peeking = false;
}

/* Reads the counters stored under key in table dbi into out. */
static enum store_result
store_counters_get(
    struct store *store, MDB_dbi dbi, const void *key, size_t key_len, unsigned long long out[STORE_LEDGER_FIELDS])
{
	MDB_val k = { key_len, (void *)key }, v;
	int rc;

	memset(out, 0, sizeof(unsigned long long) * STORE_LEDGER_FIELDS);
	if ((rc = mdb_txn_renew(store->reader)) != 0)
		return STORE_ERR;
	rc = mdb_get(store->reader, dbi, &k, &v);
	if (rc == 0 && v.mv_size == STORE_LEDGER_FIELDS * 8) {
		const unsigned char *p = v.mv_data;
		for (int f = 0; f < STORE_LEDGER_FIELDS; f++)
			for (int b = 0; b < 8; b++)
				out[f] |= (unsigned long long)p[f * 8 + b] << (8 * b);
	}
	mdb_txn_reset(store->reader);
	return rc == 0 || rc == MDB_NOTFOUND ? STORE_OK : STORE_ERR;
}

enum store_result
store_ledger_get(struct store *store, const void *key, size_t key_len, unsigned long long out[STORE_LEDGER_FIELDS])
{
	return store_counters_get(store, store->ledger, key, key_len, out);
}

enum store_result
store_daily_get(struct store *store, const void *key, size_t key_len, unsigned long long out[STORE_LEDGER_FIELDS])
{
	if (!store->has_daily) {
		memset(out, 0, sizeof(unsigned long long) * STORE_LEDGER_FIELDS);
		return STORE_OK;
	}
	return store_counters_get(store, store->daily, key, key_len, out);
}

enum store_result
store_scan(struct store *store, const void *prefix, size_t prefix_len, const void *after, size_t after_len,
    size_t limit, store_scan_cb cb, void *arg)
{
	return store_scan_in(store, STORE_SESSIONS, prefix, prefix_len, after, after_len, limit, cb, arg);
}

enum store_result
store_scan_in(struct store *store, enum store_table table, const void *prefix, size_t prefix_len, const void *after,
    size_t after_len, size_t limit, store_scan_cb cb, void *arg)
{
	MDB_cursor *cursor = NULL;
	MDB_val ik, k, v;
	enum store_result result = STORE_OK;
	size_t seen = 0;
	MDB_dbi dbi;
	int rc;

	if (!store_table_dbi(store, table, &dbi))
		return STORE_OK;
	if ((rc = mdb_txn_renew(store->reader)) != 0) {
		log_warnx("store: cannot start a read: %s", mdb_strerror(rc));
		return STORE_ERR;
	}
	if ((rc = mdb_cursor_open(store->reader, store->index, &cursor)) != 0)
		goto fail;
	ik.mv_data = (void *)(after != NULL ? after : prefix);
	ik.mv_size = after != NULL ? after_len : prefix_len;
	rc = mdb_cursor_get(cursor, &ik, &k, MDB_SET_RANGE);
	/* The position itself was shown already: start after it. */
	if (rc == 0 && after != NULL && ik.mv_size == after_len && memcmp(ik.mv_data, after, after_len) == 0)
		rc = mdb_cursor_get(cursor, &ik, &k, MDB_NEXT);
	while (rc == 0 && seen < limit) {
		if (ik.mv_size < prefix_len || memcmp(ik.mv_data, prefix, prefix_len) != 0)
			break;
		if ((rc = mdb_get(store->reader, dbi, &k, &v)) == 0) {
			seen++;
			if (cb(k.mv_data, k.mv_size, v.mv_data, v.mv_size, ik.mv_data, ik.mv_size, arg) != 0)
				break;
		} else if (rc != MDB_NOTFOUND) {
			goto fail;
		}
		rc = mdb_cursor_get(cursor, &ik, &k, MDB_NEXT);
	}
	if (rc != 0 && rc != MDB_NOTFOUND)
		goto fail;
	goto out;
fail:
	log_warnx("store: scan failed: %s", mdb_strerror(rc));
	result = STORE_ERR;
out:
	if (cursor != NULL)
		mdb_cursor_close(cursor);
	mdb_txn_reset(store->reader);
	return result;
}

enum store_result
store_ledger_scan(struct store *store, size_t limit, store_ledger_cb cb, void *arg)
{
	MDB_cursor *cursor = NULL;
	MDB_val k, v;
	size_t seen = 0;
	int rc;

	if (mdb_txn_renew(store->reader) != 0)
		return STORE_ERR;
	if ((rc = mdb_cursor_open(store->reader, store->ledger, &cursor)) == 0) {
		for (rc = mdb_cursor_get(cursor, &k, &v, MDB_FIRST); rc == 0 && seen < limit;
		     rc = mdb_cursor_get(cursor, &k, &v, MDB_NEXT)) {
			unsigned long long counters[STORE_LEDGER_FIELDS] = { 0 };
			const unsigned char *p = v.mv_data;
			if (v.mv_size != sizeof(counters))
				continue;
			for (int f = 0; f < STORE_LEDGER_FIELDS; f++)
				for (int b = 0; b < 8; b++)
					counters[f] |= (unsigned long long)p[f * 8 + b] << (8 * b);
			seen++;
			if (cb(k.mv_data, k.mv_size, counters, arg) != 0)
				break;
		}
		mdb_cursor_close(cursor);
	}
	mdb_txn_reset(store->reader);
	return rc == 0 || rc == MDB_NOTFOUND ? STORE_OK : STORE_ERR;
}
