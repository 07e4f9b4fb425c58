/* SPDX-License-Identifier: MIT */
/*
 * Logging: one line per decision. Under systemd (stderr is the journal stream JOURNAL_STREAM
 * names) each message goes to the journal with structured fields: PRIORITY, ERRNO, CODE_FILE,
 * CODE_LINE, CODE_FUNC, and the object being served — TIERD_CLIENT_PID, TIERD_SEGMENT,
 * TIERD_NODE — from the log context the loop sets while it serves one (log_context_*). Otherwise
 * plain lines on stderr. Nothing per fault above debug: per-event data goes to counters.
 * log_*_errno() return the negative errno they were given, so `return log_error_errno(r, "…: %m")`
 * logs once where the decision is made. Rate-limited sites say how many lines they suppressed.
 */
#ifndef TIERD_LOG_H
#define TIERD_LOG_H

#include <stdint.h>
#include <stdlib.h>
#include <syslog.h>

void log_set_max_level(int level);
int log_get_max_level(void);
void log_open(void);
int log_internal(int level, int error, const char *file, int line, const char *func,
		 unsigned suppressed, const char *fmt, ...) __attribute__((format(printf, 7, 8)));

/* The object being served, added to every journal entry until cleared (-1 / 0: none). */
void log_context_set(int client_pid, uint32_t segment, int node);
void log_context_clear(void);

/* True at most `burst` times per `interval_usec` for this call site; *suppressed says how many
 * were refused since the last one allowed. */
struct ratelimit {
	uint64_t begin_usec;
	unsigned count, suppressed;
};
int ratelimit_below(struct ratelimit *rl, uint64_t interval_usec, unsigned burst, unsigned *suppressed);

#define log_full(level, err, ...) \
	log_internal((level), (err), __FILE__, __LINE__, __func__, 0, __VA_ARGS__)
#define log_error(...) log_full(LOG_ERR, 0, __VA_ARGS__)
#define log_warning(...) log_full(LOG_WARNING, 0, __VA_ARGS__)
#define log_notice(...) log_full(LOG_NOTICE, 0, __VA_ARGS__)
#define log_info(...) log_full(LOG_INFO, 0, __VA_ARGS__)
#define log_debug(...) log_full(LOG_DEBUG, 0, __VA_ARGS__)
#define log_error_errno(e, ...) log_full(LOG_ERR, (e), __VA_ARGS__)
#define log_warning_errno(e, ...) log_full(LOG_WARNING, (e), __VA_ARGS__)
#define log_info_errno(e, ...) log_full(LOG_INFO, (e), __VA_ARGS__)
#define log_debug_errno(e, ...) log_full(LOG_DEBUG, (e), __VA_ARGS__)

/* Logs at most 10 times per 10 s per call site; the next line says how many were held back. */
#define log_ratelimited(level, err, ...)                                                       \
	({                                                                                     \
		static struct ratelimit _rl;                                                   \
		unsigned _sup;                                                                 \
		ratelimit_below(&_rl, 10 * 1000000ULL, 10, &_sup)                               \
			? log_internal((level), (err), __FILE__, __LINE__, __func__, _sup,     \
				       __VA_ARGS__)                                            \
			: -abs(err);                                                           \
	})

uint64_t now_usec(void);

#endif
