/* llamachatctl: reads a llamachatd store for people (sessions, usage,
 * stats), also while the daemon runs, and purges old sessions. */
#include <errno.h>
#include <event2/buffer.h>
#include <getopt.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "gate/clients.h"
#include "base/clock.h"
#include "base/config.h"
#include "store/session.h"
#include "store/store.h"

#ifndef LLAMACHATD_VERSION
#define LLAMACHATD_VERSION "unknown"
#endif

enum format { FORMAT_TABLE, FORMAT_JSON, FORMAT_CSV };

struct options {
	const char *config;
	const char *store;
	const char *client;
	const char *project;
	uint64_t since_us; /* 0: no bound */
	long limit;
	enum format format;
	bool by_project;
	long older_than_days;
	bool yes;
};

static void
usage(FILE *out)
{
	fprintf(out,
	    "usage: llamachatctl [-c FILE | --store DIR] COMMAND [OPTIONS]\n"
	    "\n"
	    "Reads llamachatd's session store, also while the daemon runs.\n"
	    "\n"
	    "  sessions [--client C] [--project P] [--since DATE] [--limit N] [--json|--csv]\n"
	    "                       sessions, newest first (a table by default; --limit 100)\n"
	    "  show ID              everything stored about one session, as JSON\n"
	    "  usage [--by client|project] [--since DATE] [--json|--csv]\n"
	    "                       sessions created, turns, tokens, run time and errors\n"
	    "  stats                sessions stored, store size, map use\n"
	    "  hash-token           read a client token on stdin, print its config line\n"
	    "  purge --older-than DAYS [--yes]\n"
	    "                       remove sessions not updated for DAYS days (the one\n"
	    "                       command that writes; asks first, or needs --yes)\n"
	    "\n"
	    "  -c, --config FILE    take the store path from this llamachatd config\n"
	    "                       (default %s)\n"
	    "      --store DIR      the store directory itself\n"
	    "  -h, --help           show this help\n"
	    "  -V, --version        show the version\n"
	    "DATE is YYYY-MM-DD (UTC) or a full ISO-8601 time.\n",
	    CONFIG_DEFAULT_PATH);
}

static int fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Says what went wrong on stderr; returns the exit status 1. */
static int
fail(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "llamachatctl: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n");
	return 1;
}

/* The store directory: --store, else the config's store.path. */
static char *
store_path(const struct options *o)
{
	struct config_errors errors;
	struct config *config;
	char *path;

	if (o->store != NULL)
		return strdup(o->store);
	config = config_load(o->config != NULL ? o->config : CONFIG_DEFAULT_PATH, &errors);
	if (config == NULL) {
		for (size_t i = 0; i < errors.count; i++)
			fprintf(stderr, "llamachatctl: %s\n", errors.lines[i]);
		config_errors_free(&errors);
		fprintf(stderr, "llamachatctl: give the store with --store DIR or a config with -c FILE\n");
		return NULL;
	}
	path = strdup(config->store_path);
	config_free(config);
	return path;
}

static uint64_t
parse_date(const char *text)
{
	char full[64];

	if (strlen(text) == 10) {
		snprintf(full, sizeof(full), "%sT00:00:00", text);
		return session_time_parse(full);
	}
	return session_time_parse(text);
}

/* One session as the commands see it. */
struct row {
	char *json; /* the stored Session JSON, NUL-terminated */
	char id[SESSION_ID_MAX + 1];
	char owner[SESSION_OWNER_MAX + 1];
	char org[SESSION_SCOPE_MAX + 1];
	char project[SESSION_SCOPE_MAX + 1];
	uint64_t updated_us;
	uint64_t stored_at_us;
};

struct rows {
	struct row *items;
	size_t count, size;
	bool failed; /* out of memory: the result is not whole */
	const struct options *o;
};

/* Makes room for one more item in a growing array; returns -1 when out of
 * memory (the array is left as it was). */
static int
grow(void **items, size_t *size, size_t count, size_t item_size)
{
	size_t wanted = *size == 0 ? 64 : *size * 2;
	void *grown;

	if (count < *size)
		return 0;
	if ((grown = realloc(*items, wanted * item_size)) == NULL)
		return -1;
	*items = grown;
	*size = wanted;
	return 0;
}

static void
copy_field(char *out, size_t size, const char *text, size_t len)
{
	snprintf(out, size, "%.*s", (int)len, text != NULL ? text : "");
}

static int
collect(const char *key, size_t key_len, const void *value, size_t value_len, const void *index_key,
    size_t index_key_len, void *arg)
{
	struct rows *rows = arg;
	struct session_record rec;
	struct row *r;

	(void)index_key;
	(void)index_key_len;
	if (session_record_decode(value, value_len, &rec) != 0)
		return 0;
	if (grow((void **)&rows->items, &rows->size, rows->count, sizeof(*rows->items)) != 0) {
		rows->failed = true;
		return 1;
	}
	r = &rows->items[rows->count];
	memset(r, 0, sizeof(*r));
	copy_field(r->id, sizeof(r->id), key, key_len);
	copy_field(r->owner, sizeof(r->owner), rec.owner, rec.owner_len);
	copy_field(r->org, sizeof(r->org), rec.organization_id, rec.organization_id_len);
	copy_field(r->project, sizeof(r->project), rec.project_id, rec.project_id_len);
	r->stored_at_us = rec.stored_at_us;
	if ((r->json = strndup(rec.json, rec.json_len)) == NULL) {
		rows->failed = true;
		return 1;
	}
	{
		json_t *doc = json_loads(r->json, 0, NULL);
		r->updated_us = session_time_parse(json_string_value(json_object_get(doc, "last_updated_at")) != NULL
		        ? json_string_value(json_object_get(doc, "last_updated_at"))
		        : "");
		json_decref(doc);
	}
	if ((rows->o->client != NULL && strcmp(rows->o->client, r->owner) != 0) ||
	    (rows->o->project != NULL && strcmp(rows->o->project, r->project) != 0) ||
	    (rows->o->since_us != 0 && r->updated_us < rows->o->since_us)) {
		free(r->json);
		return 0;
	}
	rows->count++;
	return 0;
}

static int
newest_first(const void *a, const void *b)
{
	const struct row *x = a, *y = b;
	return x->updated_us < y->updated_us ? 1 : x->updated_us > y->updated_us ? -1 : strcmp(x->id, y->id);
}

static void
free_rows(struct rows *rows)
{
	for (size_t i = 0; i < rows->count; i++)
		free(rows->items[i].json);
	free(rows->items);
}

/* Every session of the store (the index of all sessions), filtered. */
static int
load_rows(struct store *store, const struct options *o, struct rows *rows)
{
	memset(rows, 0, sizeof(*rows));
	rows->o = o;
	if (store_scan(store, "A", 1, NULL, 0, SIZE_MAX, collect, rows) != STORE_OK || rows->failed) {
		free_rows(rows);
		return -1;
	}
	qsort(rows->items, rows->count, sizeof(*rows->items), newest_first);
	return 0;
}

/* A CSV field: quoted, with quotes doubled. */
static void
csv_field(const char *text, bool last)
{
	putchar('"');
	for (const char *p = text; *p != '\0'; p++) {
		if (*p == '"')
			putchar('"');
		putchar(*p);
	}
	putchar('"');
	putchar(last ? '\n' : ',');
}

static json_t *
row_json(const struct row *r)
{
	json_t *session = json_loads(r->json, JSON_DECODE_ANY, NULL);
	char stored[SESSION_TIME_TEXT];

	session_time_format(r->stored_at_us, stored);
	return json_pack("{s:s,s:s,s:s,s:s,s:o}", "client", r->owner, "organization_id", r->org, "project_id",
	    r->project, "stored_at", stored, "session", session != NULL ? session : json_null());
}

static int
cmd_sessions(struct store *store, const struct options *o)
{
	struct rows rows;
	size_t shown;
	json_t *all;

	if (load_rows(store, o, &rows) != 0)
		return fail("%s", "cannot read the store");
	shown = o->limit > 0 && (size_t)o->limit < rows.count ? (size_t)o->limit : rows.count;
	if (o->format == FORMAT_JSON) {
		all = json_array();
		for (size_t i = 0; i < shown; i++)
			json_array_append_new(all, row_json(&rows.items[i]));
		json_dumpf(all, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
		putchar('\n');
		json_decref(all);
	} else {
		if (o->format == FORMAT_CSV)
			printf("session_id,client,organization_id,project_id,last_updated_at,turns,input_tokens,output_"
			       "tokens,"
			       "title\n");
		else
			printf("%-24s %-12s %-16s %-26s %5s %8s %8s  %s\n", "SESSION", "CLIENT", "PROJECT", "UPDATED",
			    "TURNS", "IN", "OUT", "TITLE");
		for (size_t i = 0; i < shown; i++) {
			const struct row *r = &rows.items[i];
			json_t *doc = json_loads(r->json, 0, NULL), *meta = json_object_get(doc, "job_metadata");
			const char *title = json_string_value(json_object_get(doc, "generated_title"));
			const char *updated = json_string_value(json_object_get(doc, "last_updated_at"));
			char turns[24], in[24], out[24];
			snprintf(turns, sizeof(turns), "%lld",
			    (long long)json_integer_value(json_object_get(meta, "turns")));
			snprintf(in, sizeof(in), "%lld",
			    (long long)json_integer_value(json_object_get(meta, "total_input_tokens")));
			snprintf(out, sizeof(out), "%lld",
			    (long long)json_integer_value(json_object_get(meta, "total_output_tokens")));
			if (o->format == FORMAT_CSV) {
				const char *fields[] = { r->id, r->owner, r->org, r->project,
					updated != NULL ? updated : "", turns, in, out, title != NULL ? title : "" };
				for (size_t f = 0; f < 9; f++)
					csv_field(fields[f], f == 8);
			} else {
				printf("%-24s %-12s %-16s %-26s %5s %8s %8s  %.40s\n", r->id,
				    r->owner[0] ? r->owner : "-", r->project[0] ? r->project : "-",
				    updated != NULL ? updated : "-", turns, in, out, title != NULL ? title : "");
			}
			json_decref(doc);
		}
	}
	free_rows(&rows);
	return 0;
}

static int
cmd_show(struct store *store, const char *id)
{
	struct evbuffer *buf = evbuffer_new();
	struct session_record rec;
	struct row r = { 0 };
	json_t *doc;
	int rc = 1;

	if (buf == NULL || store_get(store, id, strlen(id), buf) != STORE_OK ||
	    session_record_decode(evbuffer_pullup(buf, -1), evbuffer_get_length(buf), &rec) != 0) {
		fprintf(stderr, "llamachatctl: no session %s in the store\n", id);
		goto out;
	}
	copy_field(r.id, sizeof(r.id), id, strlen(id));
	copy_field(r.owner, sizeof(r.owner), rec.owner, rec.owner_len);
	copy_field(r.org, sizeof(r.org), rec.organization_id, rec.organization_id_len);
	copy_field(r.project, sizeof(r.project), rec.project_id, rec.project_id_len);
	r.stored_at_us = rec.stored_at_us;
	r.json = strndup(rec.json, rec.json_len);
	doc = row_json(&r);
	json_dumpf(doc, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	putchar('\n');
	json_decref(doc);
	free(r.json);
	rc = 0;
out:
	if (buf != NULL)
		evbuffer_free(buf);
	return rc;
}

/* Usage totals of one client or project. */
struct total {
	char name[SESSION_SCOPE_MAX + SESSION_OWNER_MAX + 2];
	unsigned long long counters[SESSION_LEDGER_FIELD_COUNT];
};

struct totals {
	struct total *items;
	size_t count, size;
	bool failed;
	const struct options *o;
};

static int
add_usage(const void *key, size_t key_len, const unsigned long long *counters, void *arg)
{
	struct totals *t = arg;
	const char *client, *org, *project;
	size_t client_len, org_len, project_len;
	unsigned day;
	char name[sizeof(((struct total *)0)->name)];
	struct total *slot = NULL;

	if (session_ledger_key_parse(
	        key, key_len, &client, &client_len, &org, &org_len, &project, &project_len, &day) != 0)
		return 0;
	if (t->o->since_us != 0 && day < session_day_of(t->o->since_us))
		return 0;
	if (t->o->by_project)
		snprintf(name, sizeof(name), "%.*s%s%.*s", (int)org_len, org, org_len > 0 ? "/" : "", (int)project_len,
		    project);
	else
		snprintf(name, sizeof(name), "%.*s", (int)client_len, client);
	for (size_t i = 0; i < t->count && slot == NULL; i++)
		if (strcmp(t->items[i].name, name) == 0)
			slot = &t->items[i];
	if (slot == NULL) {
		if (grow((void **)&t->items, &t->size, t->count, sizeof(*t->items)) != 0) {
			t->failed = true;
			return 1;
		}
		slot = &t->items[t->count++];
		memset(slot, 0, sizeof(*slot));
		snprintf(slot->name, sizeof(slot->name), "%s", name);
	}
	for (int f = 0; f < SESSION_LEDGER_FIELD_COUNT; f++)
		slot->counters[f] += counters[f];
	return 0;
}

/* "N", or "-" for no budget, into out. */
static const char *
budget_left(long long limit, unsigned long long used, char *out, size_t size)
{
	if (limit <= 0)
		return "-";
	snprintf(out, size, "%llu", used >= (unsigned long long)limit ? 0 : (unsigned long long)limit - used);
	return out;
}

/* What each configured client used today (UTC) and what its budgets leave,
 * from the store's daily totals. */
static void
print_budgets_today(struct store *store, const struct config *config)
{
	uint64_t now = clock_unix_us();
	unsigned today = session_day_of(now);
	char date[SESSION_TIME_TEXT], tokens_left[32], sessions_left[32];

	if (config == NULL || config->client_count == 0)
		return;
	session_time_format(now, date);
	date[10] = '\0';
	printf("\ntoday (%s, UTC): what each client used and what its budgets leave\n", date);
	printf("%-24s %12s %12s %9s %9s\n", "CLIENT", "TOKENS", "TOKENS_LEFT", "SESSIONS", "SESS_LEFT");
	for (size_t i = 0; i < config->client_count; i++) {
		const struct config_client *c = &config->clients[i];
		unsigned char key[SESSION_DAILY_KEY_MAX];
		unsigned long long counters[STORE_LEDGER_FIELDS], tokens;
		if (store_daily_get(store, key, session_daily_key(c->name, today, key), counters) != STORE_OK)
			continue;
		tokens = counters[SESSION_LEDGER_INPUT_TOKENS] + counters[SESSION_LEDGER_OUTPUT_TOKENS];
		printf("%-24s %12llu %12s %9llu %9s\n", c->name, tokens,
		    budget_left(c->max_tokens_per_day, tokens, tokens_left, sizeof(tokens_left)),
		    counters[SESSION_LEDGER_SESSIONS],
		    budget_left(c->max_sessions_per_day, counters[SESSION_LEDGER_SESSIONS], sessions_left,
		        sizeof(sessions_left)));
	}
}

static int
cmd_usage(struct store *store, const struct options *o, const struct config *config)
{
	static const char *const fields[SESSION_LEDGER_FIELD_COUNT] = { "sessions", "turns", "input_tokens",
		"output_tokens", "run_seconds", "errors" };
	struct totals t = { .o = o };
	const char *by = o->by_project ? "project" : "client";

	if (store_ledger_scan(store, SIZE_MAX, add_usage, &t) != STORE_OK || t.failed) {
		free(t.items);
		return fail("%s", "cannot read the ledger (or out of memory)");
	}
	if (o->format == FORMAT_JSON) {
		json_t *all = json_array();
		for (size_t i = 0; i < t.count; i++) {
			json_t *item = json_pack("{s:s}", by, t.items[i].name);
			for (int f = 0; f < SESSION_LEDGER_FIELD_COUNT; f++)
				json_object_set_new(item, fields[f],
				    f == SESSION_LEDGER_DURATION_MS ? json_real((double)t.items[i].counters[f] / 1000.0)
				                                    : json_integer((json_int_t)t.items[i].counters[f]));
			json_array_append_new(all, item);
		}
		json_dumpf(all, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
		putchar('\n');
		json_decref(all);
	} else {
		if (o->format == FORMAT_CSV)
			printf("%s,sessions,turns,input_tokens,output_tokens,run_seconds,errors\n", by);
		else
			printf("%-24s %9s %9s %12s %12s %12s %7s\n", o->by_project ? "PROJECT" : "CLIENT", "SESSIONS",
			    "TURNS", "INPUT", "OUTPUT", "RUN_S", "ERRORS");
		for (size_t i = 0; i < t.count; i++) {
			const unsigned long long *c = t.items[i].counters;
			if (o->format == FORMAT_CSV) {
				csv_field(t.items[i].name, false);
				printf("%llu,%llu,%llu,%llu,%.3f,%llu\n", c[0], c[1], c[2], c[3], (double)c[4] / 1000.0,
				    c[5]);
			} else {
				printf("%-24s %9llu %9llu %12llu %12llu %12.3f %7llu\n",
				    t.items[i].name[0] ? t.items[i].name : "-", c[0], c[1], c[2], c[3],
				    (double)c[4] / 1000.0, c[5]);
			}
		}
		if (o->format == FORMAT_TABLE)
			print_budgets_today(store, config);
	}
	free(t.items);
	return 0;
}

static int
cmd_stats(struct store *store, const char *path)
{
	unsigned long long entries, used, map;

	if (store_stats(store, &entries, &used, &map) != STORE_OK)
		return fail("%s", "cannot read the store's statistics");
	printf("store:     %s\nsessions:  %llu\nused:      %llu bytes\nmap size:  %llu bytes\nmap used:  %.1f%%\n",
	    path, entries, used, map, map > 0 ? 100.0 * (double)used / (double)map : 0.0);
	return 0;
}

static int
cmd_hash_token(void)
{
	return clients_print_token_line(stdin, stdout, "llamachatctl", NULL, NULL);
}

static int
cmd_purge(const char *path, const struct options *o)
{
	char why[512];
	struct store *store;
	struct rows rows;
	struct options all = *o;
	uint64_t cutoff;
	size_t removed = 0, old = 0;
	struct timespec now;

	if (o->older_than_days < 0)
		return fail("%s", "purge needs --older-than DAYS");
	clock_gettime(CLOCK_REALTIME, &now);
	cutoff = ((uint64_t)now.tv_sec - (uint64_t)o->older_than_days * 86400u) * 1000000u;
	/* Writing goes through LMDB's own writer lock, taken for each commit:
	 * the daemon keeps running meanwhile. */
	if ((store = store_open(NULL, path, 0, 0, why, sizeof(why))) == NULL)
		return fail("%s", why);
	all.client = all.project = NULL;
	all.since_us = 0;
	if (load_rows(store, &all, &rows) != 0) {
		store_close(store);
		return fail("%s", "cannot read the store");
	}
	for (size_t i = 0; i < rows.count; i++)
		old += rows.items[i].updated_us < cutoff;
	if (!o->yes) {
		char answer[16] = "";
		if (!isatty(STDIN_FILENO)) {
			free_rows(&rows);
			store_close(store);
			return fail("%s", "purge removes sessions: without a terminal to ask on, say --yes");
		}
		printf("remove %zu session(s) not updated for %ld days? [y/N] ", old, o->older_than_days);
		fflush(stdout);
		if (fgets(answer, sizeof(answer), stdin) == NULL || (answer[0] != 'y' && answer[0] != 'Y')) {
			free_rows(&rows);
			store_close(store);
			printf("nothing removed\n");
			return 1;
		}
	}
	for (size_t i = 0; i < rows.count; i++)
		if (rows.items[i].updated_us < cutoff &&
		    store_delete(store, rows.items[i].id, strlen(rows.items[i].id)) == STORE_OK)
			removed++;
	printf("removed %zu session(s) not updated for %ld days\n", removed, o->older_than_days);
	free_rows(&rows);
	store_close(store);
	return removed == old ? 0 : 1;
}

int
main(int argc, char **argv)
{
	static const struct option options[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "store", required_argument, NULL, 's' },
		{ "client", required_argument, NULL, 'C' },
		{ "project", required_argument, NULL, 'P' },
		{ "since", required_argument, NULL, 'S' },
		{ "limit", required_argument, NULL, 'l' },
		{ "json", no_argument, NULL, 'j' },
		{ "csv", no_argument, NULL, 'v' },
		{ "by", required_argument, NULL, 'b' },
		{ "older-than", required_argument, NULL, 'o' },
		{ "yes", no_argument, NULL, 'y' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	struct options o = { .limit = 100, .older_than_days = -1 };
	const char *command;
	char why[512], *path;
	struct store *store;
	int opt, rc;

	while ((opt = getopt_long(argc, argv, "c:hV", options, NULL)) != -1) {
		switch (opt) {
		case 'c':
			o.config = optarg;
			break;
		case 's':
			o.store = optarg;
			break;
		case 'C':
			o.client = optarg;
			break;
		case 'P':
			o.project = optarg;
			break;
		case 'S':
			if ((o.since_us = parse_date(optarg)) == 0)
				return fail("--since: \"%s\" is not a date (YYYY-MM-DD)", optarg);
			break;
		case 'l':
			o.limit = strtol(optarg, NULL, 10);
			if (o.limit < 1)
				return fail("--limit: \"%s\" is not a positive number", optarg);
			break;
		case 'j':
			o.format = FORMAT_JSON;
			break;
		case 'v':
			o.format = FORMAT_CSV;
			break;
		case 'b':
			if (strcmp(optarg, "client") != 0 && strcmp(optarg, "project") != 0)
				return fail("--by: \"%s\" is neither client nor project", optarg);
			o.by_project = strcmp(optarg, "project") == 0;
			break;
		case 'o':
			o.older_than_days = strtol(optarg, NULL, 10);
			if (o.older_than_days < 0 || optarg[0] < '0' || optarg[0] > '9')
				return fail("--older-than: \"%s\" is not a number of days", optarg);
			break;
		case 'y':
			o.yes = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			printf("llamachatctl %s\n", LLAMACHATD_VERSION);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind >= argc) {
		usage(stderr);
		return 2;
	}
	command = argv[optind];
	if (strcmp(command, "hash-token") == 0)
		return cmd_hash_token();
	if ((path = store_path(&o)) == NULL)
		return 1;
	if (strcmp(command, "purge") == 0) {
		rc = cmd_purge(path, &o);
		free(path);
		return rc;
	}
	if ((store = store_open_readonly(path, why, sizeof(why))) == NULL) {
		free(path);
		return fail("%s", why);
	}
	if (strcmp(command, "sessions") == 0)
		rc = cmd_sessions(store, &o);
	else if (strcmp(command, "show") == 0 && optind + 1 < argc)
		rc = cmd_show(store, argv[optind + 1]);
	else if (strcmp(command, "usage") == 0) {
		/* The budgets are in the config: the one given, or the default
		 * one when the store is not given on its own. */
		struct config_errors errors;
		struct config *config = o.config != NULL || o.store == NULL
		    ? config_load(o.config != NULL ? o.config : CONFIG_DEFAULT_PATH, &errors)
		    : NULL;
		if (config == NULL && (o.config != NULL || o.store == NULL))
			config_errors_free(&errors);
		rc = cmd_usage(store, &o, config);
		config_free(config);
	} else if (strcmp(command, "stats") == 0)
		rc = cmd_stats(store, path);
	else {
		fprintf(stderr, "llamachatctl: unknown command or missing argument: %s\n", command);
		usage(stderr);
		rc = 2;
	}
	store_close(store);
	free(path);
	return rc;
}
