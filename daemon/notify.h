/* notify: tells systemd how the daemon is doing (sd_notify): ready,
 * reloading, stopping, a live status line, and watchdog pings. Outside
 * systemd every call does nothing. */
#ifndef LLAMACHATD_NOTIFY_H
#define LLAMACHATD_NOTIFY_H

struct event_base;
struct notify;

/* Reports a live STATUS= line; the summary callback fills it in. */
typedef void (*notify_status_cb)(char *line, unsigned long size, void *arg);

/* Starts the watchdog pings (when systemd asked for them, at half its
 * interval) and the status line updates on base. Returns NULL when out of
 * memory; free with notify_free(). */
struct notify *notify_create(struct event_base *base, notify_status_cb status, void *arg)
    __attribute__((warn_unused_result));
void notify_free(struct notify *notify);

void notify_ready(struct notify *notify);
/* RELOADING=1 with MONOTONIC_USEC, as systemd's reload protocol wants. */
void notify_reloading(void);
void notify_stopping(void);

#endif
