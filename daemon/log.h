/* SPDX-License-Identifier: MIT */
/*
 * Logging: one line per decision, to stderr with a syslog priority prefix ("<3>") when stderr is
 * the journal (JOURNAL_STREAM set), plain otherwise. Nothing per fault above debug: per-event data
 * goes to counters. log_*_errno() return the negative errno they were given, so
 * `return log_error_errno(r, "…: %m")` logs once where the decision is made.
 */
#ifndef TIERD_LOG_H
#define TIERD_LOG_H

#include <stdint.h>
#include <stdlib.h>
#include <syslog.h>

void log_set_max_level(int level);
int log_get_max_level(void);
void log_open(void);
int log_internal(int level, int error, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* True at most `burst` times per `interval_usec` for this call site. */
struct ratelimit {
	uint64_t begin_usec;
	unsigned count;
};
int ratelimit_below(struct ratelimit *rl, uint64_t interval_usec, unsigned burst);

#define log_full(level, err, ...) log_internal((level), (err), __VA_ARGS__)
#define log_error(...) log_full(LOG_ERR, 0, __VA_ARGS__)
#define log_warning(...) log_full(LOG_WARNING, 0, __VA_ARGS__)
#define log_notice(...) log_full(LOG_NOTICE, 0, __VA_ARGS__)
#define log_info(...) log_full(LOG_INFO, 0, __VA_ARGS__)
#define log_debug(...) log_full(LOG_DEBUG, 0, __VA_ARGS__)
#define log_error_errno(e, ...) log_full(LOG_ERR, (e), __VA_ARGS__)
#define log_warning_errno(e, ...) log_full(LOG_WARNING, (e), __VA_ARGS__)
#define log_info_errno(e, ...) log_full(LOG_INFO, (e), __VA_ARGS__)
#define log_debug_errno(e, ...) log_full(LOG_DEBUG, (e), __VA_ARGS__)

/* Logs at most 10 times per 10 s per call site. */
#define log_ratelimited(level, err, ...)                                                     \
	({                                                                                   \
		static struct ratelimit _rl;                                                 \
		ratelimit_below(&_rl, 10 * 1000000ULL, 10) ? log_full(level, err, __VA_ARGS__) \
							   : -abs(err);                      \
	})

uint64_t now_usec(void);

#endif
