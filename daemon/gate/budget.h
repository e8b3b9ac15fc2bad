/* budget: how many tokens and sessions each client may use per UTC day,
 * and what it has used today.
 *
 * The day turns at midnight UTC, as the usage ledger counts days. What a
 * client used today lives in memory (one entry per configured client),
 * seeded at start from the store's daily totals and added to as each
 * session and stream stop is queued for the store; a reload keeps it. In
 * shared mode the other instances' use, last known, counts too. */
#ifndef LLAMACHATD_BUDGET_H
#define LLAMACHATD_BUDGET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct budgets;
struct config;
struct evbuffer;
struct store;

/* A client's budgets; 0 for none. */
struct budget_limits {
	long long max_tokens_per_day; /* input plus output tokens */
	long long max_sessions_per_day;
};

/* What a client used on day (days since 1970-01-01, UTC). */
struct budget_usage {
	unsigned day;
	unsigned long long tokens;
	unsigned long long sessions;
};

/* The UTC day of a Unix time in microseconds, and the whole seconds from
 * then to the next midnight UTC (at least 1). */
unsigned budget_day(uint64_t now_us);
long budget_seconds_to_next_day(uint64_t now_us);

/* Adds to usage on day today; usage of an earlier day is dropped first. */
void budget_usage_add(
    struct budget_usage *usage, unsigned today, unsigned long long tokens, unsigned long long sessions);

/* Whether a client with limits that used usage may start another upstream
 * call on day today. When it may not, why (why_size bytes) names the budget
 * and what was used. Usage of an earlier day counts as nothing. */
bool budget_exceeded(
    const struct budget_limits *limits, const struct budget_usage *usage, unsigned today, char *why, size_t why_size);

/* The table of every configured client's limits and usage. Returns NULL
 * when out of memory; free with budgets_free(). */
struct budgets *budgets_create(void) __attribute__((warn_unused_result));
void budgets_free(struct budgets *budgets);

/* Takes the clients and limits of config (at start and on each reload):
 * a client already known keeps its usage and takes its new limits, at once;
 * a new one reads today's usage from store's daily totals (one read each);
 * one no longer configured is dropped. Returns -1 when out of memory (the
 * table is then as it was). */
int budgets_sync(struct budgets *budgets, const struct config *config, struct store *store, uint64_t now_us)
    __attribute__((warn_unused_result));

/* Adds to client's usage today; a client the table does not know is
 * ignored. */
void budgets_add(struct budgets *budgets, const char *client, uint64_t now_us, unsigned long long tokens,
    unsigned long long sessions);

/* Whether client may start another upstream call now: 0 when it may (or
 * has no budget, or is unknown), else the seconds until the day turns, with
 * why filled as budget_exceeded() does; or, while the shared sums cannot
 * be read and the config says to refuse, a few seconds with *may_retry. */
long budgets_check(
    const struct budgets *budgets, const char *client, uint64_t now_us, char *why, size_t why_size, bool *may_retry);

/* Shared mode: whether to refuse every budgeted client now (the other
 * instances' use cannot be read, and shared.budgets_when_unavailable is
 * "refuse"). */
void budgets_set_unshared(struct budgets *budgets, bool refuse);

/* Shared mode (several instances): the other instances' use of client on
 * day, last known, which the budgets then count with this one's own. */
void budgets_set_others(
    struct budgets *budgets, const char *client, unsigned day, unsigned long long tokens, unsigned long long sessions);
/* Calls fn(client, arg) after each budgets_add() (NULL: nobody). */
void budgets_set_on_add(struct budgets *budgets, void (*fn)(const char *client, void *arg), void *arg);
/* The clients in the table, and the name, own use today and whether it has
 * a budget of the one at index (< budgets_count()). */
size_t budgets_count(const struct budgets *budgets);
const char *budgets_own(
    const struct budgets *budgets, size_t index, uint64_t now_us, struct budget_usage *usage, bool *has_limits);

/* Appends the budget metrics (limit and use per client and budget) to out,
 * in Prometheus text format. */
void budgets_render(const struct budgets *budgets, uint64_t now_us, struct evbuffer *out);

#endif
