/* budget: token and session budgets per client and UTC day. */
#include "gate/budget.h"

#include <event2/buffer.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/config.h"
#include "store/session.h"
#include "store/store.h"

#define BUDGET_DAY_US (86400ull * 1000000u)

struct budget_entry {
	char name[65]; /* config client names are at most 64 bytes */
	struct budget_limits limits;
	struct budget_usage usage; /* this instance's own */
	struct budget_usage others; /* the other instances', last known (shared mode) */
};

/* The Retry-After of a refusal while the shared sums cannot be read. */
#define BUDGET_UNSHARED_RETRY_S 5

struct budgets {
	struct budget_entry *entries; /* in config order */
	size_t count;
	void (*on_add)(const char *client, void *arg);
	void *on_add_arg;
	bool refuse_unshared; /* the other instances' use cannot be known now: refuse */
};

unsigned
budget_day(uint64_t now_us)
{
	return session_day_of(now_us);
}

long
budget_seconds_to_next_day(uint64_t now_us)
{
	uint64_t next = ((uint64_t)budget_day(now_us) + 1) * BUDGET_DAY_US;

	return (long)((next - now_us + 999999u) / 1000000u);
}

void
budget_usage_add(struct budget_usage *usage, unsigned today, unsigned long long tokens, unsigned long long sessions)
{
	if (usage->day != today) {
		usage->day = today;
		usage->tokens = usage->sessions = 0;
	}
	usage->tokens += tokens;
	usage->sessions += sessions;
}

bool
budget_exceeded(
    const struct budget_limits *limits, const struct budget_usage *usage, unsigned today, char *why, size_t why_size)
{
	unsigned long long tokens = usage->day == today ? usage->tokens : 0;
	unsigned long long sessions = usage->day == today ? usage->sessions : 0;

	if (limits->max_tokens_per_day > 0 && tokens >= (unsigned long long)limits->max_tokens_per_day) {
		snprintf(why, why_size,
		    "the max_tokens_per_day budget is used up: %llu of %lld tokens today (UTC); it renews at midnight "
		    "UTC",
		    tokens, limits->max_tokens_per_day);
		return true;
	}
	if (limits->max_sessions_per_day > 0 && sessions >= (unsigned long long)limits->max_sessions_per_day) {
		snprintf(why, why_size,
		    "the max_sessions_per_day budget is used up: %llu of %lld sessions today (UTC); it renews at "
		    "midnight UTC",
		    sessions, limits->max_sessions_per_day);
		return true;
	}
	return false;
}

struct budgets *
budgets_create(void)
{
	return calloc(1, sizeof(struct budgets));
}

void
budgets_free(struct budgets *budgets)
{
	if (budgets == NULL)
		return;
	free(budgets->entries);
	free(budgets);
}

static int
budget_entry_compare(const void *a, const void *b)
{
	return strcmp(((const struct budget_entry *)a)->name, ((const struct budget_entry *)b)->name);
}

/* The entries are kept sorted by name: every upstream call looks its
 * client up here, so a gateway of thousands of clients stays cheap. */
static struct budget_entry *
budgets_find(const struct budgets *budgets, const char *client)
{
	struct budget_entry key;

	if (budgets->count == 0 || strlen(client) >= sizeof(key.name))
		return NULL;
	memcpy(key.name, client, strlen(client) + 1);
	return bsearch(&key, budgets->entries, budgets->count, sizeof(*budgets->entries), budget_entry_compare);
}

/* Today's usage of a client new to the table, from the store. */
static void
budgets_read_today(struct store *store, const char *client, unsigned today, struct budget_usage *usage)
{
	unsigned char key[SESSION_DAILY_KEY_MAX];
	unsigned long long counters[STORE_LEDGER_FIELDS];

	usage->day = today;
	usage->tokens = usage->sessions = 0;
	if (store == NULL || store_daily_get(store, key, session_daily_key(client, today, key), counters) != STORE_OK)
		return;
	usage->tokens = counters[SESSION_LEDGER_INPUT_TOKENS] + counters[SESSION_LEDGER_OUTPUT_TOKENS];
	usage->sessions = counters[SESSION_LEDGER_SESSIONS];
}

int
budgets_sync(struct budgets *budgets, const struct config *config, struct store *store, uint64_t now_us)
{
	struct budget_entry *fresh = NULL;
	unsigned today = budget_day(now_us);

	if (config->client_count > 0 && (fresh = calloc(config->client_count, sizeof(*fresh))) == NULL)
		return -1;
	for (size_t i = 0; i < config->client_count; i++) {
		const struct config_client *client = &config->clients[i];
		const struct budget_entry *known = budgets_find(budgets, client->name);
		snprintf(fresh[i].name, sizeof(fresh[i].name), "%s", client->name);
		fresh[i].limits.max_tokens_per_day = client->max_tokens_per_day;
		fresh[i].limits.max_sessions_per_day = client->max_sessions_per_day;
		if (known != NULL) {
			fresh[i].usage = known->usage;
			fresh[i].others = known->others;
		} else
			budgets_read_today(store, client->name, today, &fresh[i].usage);
	}
	if (config->client_count > 1)
		qsort(fresh, config->client_count, sizeof(*fresh), budget_entry_compare);
	free(budgets->entries);
	budgets->entries = fresh;
	budgets->count = config->client_count;
	return 0;
}

void
budgets_add(struct budgets *budgets, const char *client, uint64_t now_us, unsigned long long tokens,
    unsigned long long sessions)
{
	struct budget_entry *e;

	if (budgets != NULL && (e = budgets_find(budgets, client)) != NULL) {
		budget_usage_add(&e->usage, budget_day(now_us), tokens, sessions);
		if (budgets->on_add != NULL)
			budgets->on_add(client, budgets->on_add_arg);
	}
}

/* What a client's budgets count on today: its own use and, in shared
 * mode, the other instances' last known. */
static struct budget_usage
budgets_counted(const struct budget_entry *e, unsigned today)
{
	struct budget_usage sum = { today, 0, 0 };

	if (e->usage.day == today) {
		sum.tokens += e->usage.tokens;
		sum.sessions += e->usage.sessions;
	}
	if (e->others.day == today) {
		sum.tokens += e->others.tokens;
		sum.sessions += e->others.sessions;
	}
	return sum;
}

void
budgets_set_on_add(struct budgets *budgets, void (*fn)(const char *client, void *arg), void *arg)
{
	budgets->on_add = fn;
	budgets->on_add_arg = arg;
}

size_t
budgets_count(const struct budgets *budgets)
{
	return budgets->count;
}

const char *
budgets_own(const struct budgets *budgets, size_t index, uint64_t now_us, struct budget_usage *usage, bool *has_limits)
{
	const struct budget_entry *e = &budgets->entries[index];
	unsigned today = budget_day(now_us);

	usage->day = today;
	usage->tokens = e->usage.day == today ? e->usage.tokens : 0;
	usage->sessions = e->usage.day == today ? e->usage.sessions : 0;
	*has_limits = e->limits.max_tokens_per_day > 0 || e->limits.max_sessions_per_day > 0;
	return e->name;
}

void
budgets_set_others(
    struct budgets *budgets, const char *client, unsigned day, unsigned long long tokens, unsigned long long sessions)
{
	struct budget_entry *e;

	if (budgets != NULL && (e = budgets_find(budgets, client)) != NULL) {
		e->others.day = day;
		e->others.tokens = tokens;
		e->others.sessions = sessions;
	}
}

void
budgets_set_unshared(struct budgets *budgets, bool refuse)
{
	budgets->refuse_unshared = refuse;
}

long
budgets_check(
    const struct budgets *budgets, const char *client, uint64_t now_us, char *why, size_t why_size, bool *may_retry)
{
	const struct budget_entry *e;
	struct budget_usage counted;

	*may_retry = false;
	if (budgets == NULL || (e = budgets_find(budgets, client)) == NULL)
		return 0;
	if (budgets->refuse_unshared && (e->limits.max_tokens_per_day > 0 || e->limits.max_sessions_per_day > 0)) {
		snprintf(why, why_size,
		    "its budgets are counted with the other instances' through Redis, which cannot answer now "
		    "(shared.budgets_when_unavailable is \"refuse\"); retry shortly");
		*may_retry = true;
		return BUDGET_UNSHARED_RETRY_S;
	}
	counted = budgets_counted(e, budget_day(now_us));
	if (!budget_exceeded(&e->limits, &counted, budget_day(now_us), why, why_size))
		return 0;
	return budget_seconds_to_next_day(now_us);
}

void
budgets_render(const struct budgets *budgets, uint64_t now_us, struct evbuffer *out)
{
	static const char *const kinds[] = { "tokens", "sessions" };
	unsigned today = budget_day(now_us);

	evbuffer_add_printf(out,
	    "# HELP llamachatd_budget_limit A client's budget per UTC day (clients with one).\n"
	    "# TYPE llamachatd_budget_limit gauge\n");
	for (size_t i = 0; i < budgets->count; i++) {
		const struct budget_entry *e = &budgets->entries[i];
		long long limits[] = { e->limits.max_tokens_per_day, e->limits.max_sessions_per_day };
		for (int k = 0; k < 2; k++)
			if (limits[k] > 0)
				evbuffer_add_printf(out, "llamachatd_budget_limit{client=\"%s\",budget=\"%s\"} %lld\n",
				    e->name, kinds[k], limits[k]);
	}
	evbuffer_add_printf(out,
	    "# HELP llamachatd_budget_used What a client has used today (UTC), as its budgets count it.\n"
	    "# TYPE llamachatd_budget_used gauge\n");
	for (size_t i = 0; i < budgets->count; i++) {
		const struct budget_entry *e = &budgets->entries[i];
		struct budget_usage counted = budgets_counted(e, today);
		evbuffer_add_printf(
		    out, "llamachatd_budget_used{client=\"%s\",budget=\"tokens\"} %llu\n", e->name, counted.tokens);
		evbuffer_add_printf(
		    out, "llamachatd_budget_used{client=\"%s\",budget=\"sessions\"} %llu\n", e->name, counted.sessions);
	}
}
