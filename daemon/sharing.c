/* sharing: budgets summed over instances through Redis. */
#include "sharing.h"

#include <event2/event.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/clock.h"
#include "base/log.h"
#include "chat/chat.h"
#include "gate/budget.h"
#include "shared/shared.h"

#define SHARING_TICK_MS 1000

/* One client's writes: at most one in flight, and one more owed. */
struct sharing_client {
	char name[65];
	bool in_flight;
	bool owed;
};

struct sharing {
	struct shared *shared;
	struct budgets *budgets;
	struct event *tick;
	struct sharing_client *clients;
	size_t count, size;
	long instances; /* live ones, last known (at least 1: this one) */
	bool refuse_when_unavailable; /* shared.budgets_when_unavailable = "refuse" */
	bool heartbeat_in_flight;
	struct event_base *base;
	struct chat *chat;
};

/* What one write waits with. */
struct sharing_write {
	struct sharing *sharing;
	size_t client; /* index in sharing->clients (it only grows) */
	unsigned day;
};

static void sharing_write(struct sharing *sharing, size_t client);

static size_t
sharing_client_index(struct sharing *sharing, const char *name)
{
	struct sharing_client *grown;

	for (size_t i = 0; i < sharing->count; i++)
		if (strcmp(sharing->clients[i].name, name) == 0)
			return i;
	if (sharing->count == sharing->size) {
		size_t size = sharing->size > 0 ? sharing->size * 2 : 16;
		if ((grown = realloc(sharing->clients, size * sizeof(*grown))) == NULL)
			return SIZE_MAX;
		sharing->clients = grown;
		sharing->size = size;
	}
	memset(&sharing->clients[sharing->count], 0, sizeof(sharing->clients[0]));
	snprintf(sharing->clients[sharing->count].name, sizeof(sharing->clients[0].name), "%s", name);
	return sharing->count++;
}

static void
sharing_on_written(enum shared_result result, unsigned long long tokens, unsigned long long sessions, void *arg)
{
	struct sharing_write *w = arg;
	struct sharing *sharing = w->sharing;
	struct sharing_client *c = &sharing->clients[w->client];

	c->in_flight = false;
	if (result == SHARED_FOUND)
		budgets_set_others(sharing->budgets, c->name, w->day, tokens, sessions);
	/* Unavailable: the last known sums stand, and the next tick tries. */
	if (c->owed && result == SHARED_FOUND) {
		c->owed = false;
		sharing_write(sharing, w->client);
	}
	free(w);
}

/* Writes the client's own totals of today; its answer brings the others'. */
static void
sharing_write(struct sharing *sharing, size_t client)
{
	struct sharing_client *c = &sharing->clients[client];
	uint64_t now = clock_unix_us();
	struct budget_usage own = { 0, 0, 0 };
	struct sharing_write *w;
	bool has_limits = false, known = false;
	char day[16];
	time_t midnight;
	struct tm tm;

	for (size_t i = 0; i < budgets_count(sharing->budgets) && !known; i++)
		known = strcmp(budgets_own(sharing->budgets, i, now, &own, &has_limits), c->name) == 0;
	if (!known || !has_limits || (w = malloc(sizeof(*w))) == NULL)
		return;
	w->sharing = sharing;
	w->client = client;
	w->day = own.day;
	midnight = (time_t)own.day * 86400;
	gmtime_r(&midnight, &tm);
	strftime(day, sizeof(day), "%Y-%m-%d", &tm);
	c->in_flight = true;
	if (shared_sync_usage(sharing->shared, c->name, day, own.tokens, own.sessions, sharing_on_written, w) == NULL) {
		c->in_flight = false;
		free(w);
	}
}

static void
sharing_on_add(const char *client, void *arg)
{
	struct sharing *sharing = arg;
	size_t i = sharing_client_index(sharing, client);

	if (i == SIZE_MAX)
		return;
	if (sharing->clients[i].in_flight)
		sharing->clients[i].owed = true;
	else
		sharing_write(sharing, i);
}

static void
sharing_on_heartbeat(enum shared_result result, unsigned long long count, unsigned long long unknown, void *arg)
{
	struct sharing *sharing = arg;

	sharing->heartbeat_in_flight = false;
	/* Redis did not know this instance: its data is new (or gone). */
	if (result == SHARED_FOUND && unknown)
		chat_republish_owners(sharing->chat, sharing->base);
	/* Unavailable: the last count stands (each keeps its part). */
	if (result == SHARED_FOUND && (long)count != sharing->instances) {
		log_info("shared: %llu instance(s) live; each takes 1/%llu of every client's rate limit", count, count);
		sharing->instances = (long)count;
	}
}

/* Redis starts or stops answering. Back after being away: the outbox
 * holds what could not be published meanwhile, and drains from its
 * oldest. Away: budgets refuse, if so configured. */
static void
sharing_on_change(bool up, double since_wall, void *arg)
{
	struct sharing *sharing = arg;

	(void)since_wall;
	budgets_set_unshared(sharing->budgets, !up && sharing->refuse_when_unavailable);
	if (up)
		chat_outbox_rewind(sharing->chat);
}

const long *
sharing_instances(const struct sharing *sharing)
{
	return &sharing->instances;
}

static void
sharing_on_tick(evutil_socket_t fd, short what, void *arg)
{
	struct sharing *sharing = arg;
	uint64_t now = clock_unix_us();
	struct timeval tv = clock_timeval_ms(SHARING_TICK_MS);

	(void)fd;
	(void)what;
	if (!sharing->heartbeat_in_flight) {
		sharing->heartbeat_in_flight = true;
		if (shared_heartbeat(sharing->shared, sharing_on_heartbeat, sharing) == NULL)
			sharing->heartbeat_in_flight = false;
	}
	for (size_t i = 0; i < budgets_count(sharing->budgets); i++) {
		struct budget_usage own;
		bool has_limits;
		const char *name = budgets_own(sharing->budgets, i, now, &own, &has_limits);
		size_t c;
		if (has_limits && (c = sharing_client_index(sharing, name)) != SIZE_MAX &&
		    !sharing->clients[c].in_flight)
			sharing_write(sharing, c);
	}
	evtimer_add(sharing->tick, &tv);
}

struct sharing *
sharing_create(struct event_base *base, struct shared *shared, struct budgets *budgets, struct chat *chat,
    bool refuse_when_unavailable)
{
	struct sharing *sharing = calloc(1, sizeof(*sharing));
	struct timeval now = clock_timeval_ms(0);

	if (sharing == NULL || (sharing->tick = evtimer_new(base, sharing_on_tick, sharing)) == NULL) {
		free(sharing);
		return NULL;
	}
	sharing->shared = shared;
	sharing->budgets = budgets;
	sharing->instances = 1;
	sharing->base = base;
	sharing->chat = chat;
	sharing->refuse_when_unavailable = refuse_when_unavailable;
	/* Not connected yet: unavailable until the first answer. */
	budgets_set_unshared(budgets, refuse_when_unavailable);
	shared_set_on_change(shared, sharing_on_change, sharing);
	budgets_set_on_add(budgets, sharing_on_add, sharing);
	evtimer_add(sharing->tick, &now);
	return sharing;
}

void
sharing_free(struct sharing *sharing)
{
	if (sharing == NULL)
		return;
	budgets_set_on_add(sharing->budgets, NULL, NULL);
	budgets_set_unshared(sharing->budgets, false);
	event_free(sharing->tick);
	free(sharing->clients);
	free(sharing);
}
