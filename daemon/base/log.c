/* log: leveled logging to stderr, with sd-daemon priority prefixes under journald. */
#include "base/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static enum log_level log_threshold = LOG_LEVEL_INFO;
static bool log_journal;

void
log_init(enum log_level level, bool journal_prefixes)
{
	log_threshold = level;
	log_journal = journal_prefixes;
}

int
log_level_parse(const char *name, enum log_level *out)
{
	static const struct {
		const char *name;
		enum log_level level;
	} levels[] = {
		{ "error", LOG_LEVEL_ERROR },
		{ "warning", LOG_LEVEL_WARNING },
		{ "info", LOG_LEVEL_INFO },
		{ "debug", LOG_LEVEL_DEBUG },
	};
	for (size_t i = 0; i < sizeof(levels) / sizeof(levels[0]); i++) {
		if (strcmp(name, levels[i].name) == 0) {
			*out = levels[i].level;
			return 0;
		}
	}
	return -1;
}

static const char *
log_level_word(enum log_level level)
{
	switch (level) {
	case LOG_LEVEL_ERROR:
		return "error";
	case LOG_LEVEL_WARNING:
		return "warning";
	case LOG_LEVEL_INFO:
		return "info";
	case LOG_LEVEL_DEBUG:
		return "debug";
	}
	return "?";
}

/* Formats one whole line first so concurrent writers never interleave it. */
static void log_emit(enum log_level level, int errnum, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

static void
log_emit(enum log_level level, int errnum, const char *fmt, va_list ap)
{
	char line[2048];
	size_t used = 0;

	if (level > log_threshold)
		return;
	if (log_journal) {
		used = (size_t)snprintf(line, sizeof(line), "<%d>", (int)level);
	} else {
		struct timespec now;
		struct tm tm;
		clock_gettime(CLOCK_REALTIME, &now);
		gmtime_r(&now.tv_sec, &tm);
		used = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%SZ ", &tm);
		used += (size_t)snprintf(line + used, sizeof(line) - used, "%s: ", log_level_word(level));
	}
	int n = vsnprintf(line + used, sizeof(line) - used, fmt, ap);
	if (n > 0)
		used += (size_t)n;
	if (used >= sizeof(line) - 1)
		used = sizeof(line) - 2;
	if (errnum != 0) {
		n = snprintf(line + used, sizeof(line) - used, ": %s", strerror(errnum));
		if (n > 0)
			used += (size_t)n;
		if (used >= sizeof(line) - 1)
			used = sizeof(line) - 2;
	}
	line[used++] = '\n';
	fwrite(line, 1, used, stderr);
	fflush(stderr);
}

#define LOG_FUNCTION(name, level, with_errno) \
	void name(const char *fmt, ...) \
	{ \
		int saved_errno = errno; \
		va_list ap; \
		va_start(ap, fmt); \
		log_emit(level, with_errno ? saved_errno : 0, fmt, ap); \
		va_end(ap); \
		errno = saved_errno; \
	}

LOG_FUNCTION(log_debug, LOG_LEVEL_DEBUG, 0)
LOG_FUNCTION(log_info, LOG_LEVEL_INFO, 0)
LOG_FUNCTION(log_warn, LOG_LEVEL_WARNING, 1)
LOG_FUNCTION(log_warnx, LOG_LEVEL_WARNING, 0)
LOG_FUNCTION(log_err, LOG_LEVEL_ERROR, 1)
LOG_FUNCTION(log_errx, LOG_LEVEL_ERROR, 0)
