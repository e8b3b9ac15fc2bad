/* notify: tells systemd how the daemon is doing (sd_notify): ready,
 * reloading, stopping, a live status line, and watchdog pings. Outside
 * systemd every call does nothing. */
#include "notify.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <systemd/sd-daemon.h>
#include <time.h>

#include "base/clock.h"
#include "base/log.h"

#define STATUS_EVERY_S 5

struct notify {
	struct event *watchdog;
	struct event *status;
	notify_status_cb status_cb;
	void *arg;
};

static void
notify_send_status(struct notify *n)
{
	char line[256] = "";

	n->status_cb(line, sizeof(line), n->arg);
	sd_notifyf(0, "STATUS=%s", line);
}

/* Runs from the event loop, so a wedged loop stops the pings and systemd
 * restarts the service. */
static void
notify_on_watchdog(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	sd_notify(0, "WATCHDOG=1");
}

static void
notify_on_status(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	notify_send_status(arg);
}

struct notify *
notify_create(struct event_base *base, notify_status_cb status, void *arg)
{
	struct notify *n = calloc(1, sizeof(*n));
	uint64_t usec = 0;

	if (n == NULL)
		return NULL;
	n->status_cb = status;
	n->arg = arg;
	if (sd_watchdog_enabled(0, &usec) > 0 && usec > 0) {
		struct timeval every = { (time_t)(usec / 2 / 1000000), (suseconds_t)(usec / 2 % 1000000) };
		n->watchdog = event_new(base, -1, EV_PERSIST, notify_on_watchdog, n);
		if (n->watchdog == NULL || event_add(n->watchdog, &every) != 0) {
			notify_free(n);
			return NULL;
		}
		log_info("systemd watchdog: pinging every %llu ms", (unsigned long long)(usec / 2000));
	}
	if (getenv("NOTIFY_SOCKET") != NULL) {
		struct timeval every = { STATUS_EVERY_S, 0 };
		n->status = event_new(base, -1, EV_PERSIST, notify_on_status, n);
		if (n->status == NULL || event_add(n->status, &every) != 0) {
			notify_free(n);
			return NULL;
		}
	}
	return n;
}

void
notify_free(struct notify *n)
{
	if (n == NULL)
		return;
	if (n->watchdog != NULL)
		event_free(n->watchdog);
	if (n->status != NULL)
		event_free(n->status);
	free(n);
}

void
notify_ready(struct notify *n)
{
	sd_notify(0, "READY=1");
	if (n != NULL && n->status != NULL)
		notify_send_status(n);
}

void
notify_reloading(void)
{
	sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%llu", (unsigned long long)clock_monotonic_us());
}

void
notify_stopping(void)
{
	sd_notify(0, "STOPPING=1");
}
