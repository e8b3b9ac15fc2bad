/* log: leveled logging to stderr, with sd-daemon priority prefixes under journald. */
#ifndef LLAMACHATD_LOG_H
#define LLAMACHATD_LOG_H

#include <stdbool.h>

enum log_level {
	LOG_LEVEL_ERROR = 3,
	LOG_LEVEL_WARNING = 4,
	LOG_LEVEL_INFO = 6,
	LOG_LEVEL_DEBUG = 7,
};

/* Sets the lowest level that is printed and whether lines carry "<N>"
 * priority prefixes (journald) instead of a timestamp and level word. */
void log_init(enum log_level level, bool journal_prefixes);

/* Parses "error", "warning", "info" or "debug"; returns 0, or -1 if unknown. */
int log_level_parse(const char *name, enum log_level *out) __attribute__((warn_unused_result));

/* The log_warn/log_err variants append strerror(errno); the -x ones do not. */
void log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warnx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_errx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
