/* SPDX-License-Identifier: MIT */
/* stderr/journal logging with %m support and per-site rate limits. */
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int max_level = LOG_INFO;
static int journal_prefix;

void log_set_max_level(int level)
{
	max_level = level;
}

int log_get_max_level(void)
{
	return max_level;
}

void log_open(void)
{
	journal_prefix = getenv("JOURNAL_STREAM") != NULL;
}

uint64_t now_usec(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

int ratelimit_below(struct ratelimit *rl, uint64_t interval_usec, unsigned burst)
{
	uint64_t now = now_usec();

	if (rl->begin_usec == 0 || now - rl->begin_usec > interval_usec) {
		rl->begin_usec = now;
		rl->count = 0;
	}
	return rl->count++ < burst;
}

int log_internal(int level, int error, const char *fmt, ...)
{
	static const char *const names[] = { "emerg", "alert", "crit", "error",
					     "warning", "notice", "info", "debug" };
	int saved = errno;
	char msg[1024];
	va_list ap;

	error = abs(error);
	if (level > max_level)
		return -error;
	/* %m in the format means the given error, not whatever errno happens to hold. */
	errno = error ? error : saved;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (journal_prefix)
		fprintf(stderr, "<%d>%s\n", level, msg);
	else
		fprintf(stderr, "tierd[%s]: %s\n", names[level & 7], msg);
	errno = saved;
	return -error;
}
