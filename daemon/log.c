/* SPDX-License-Identifier: MIT */
/* stderr/journal logging with %m support and per-site rate limits. */
#include "log.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
/* The location fields are the caller's (log_full passes them), not this file's. */
#define SD_JOURNAL_SUPPRESS_LOCATION
#include <systemd/sd-journal.h>
#include <time.h>

static int max_level = LOG_INFO;
static int journal_prefix; /* stderr is the journal: "<N>" prefixes if sending fields fails */
static int journal_native; /* send entries with fields through sd_journal_sendv() */
static struct {
	int pid;
	uint32_t segment;
	int node;
} ctx = { -1, 0, -1 };

void log_context_set(int client_pid, uint32_t segment, int node)
{
	ctx.pid = client_pid;
	ctx.segment = segment;
	ctx.node = node;
}

void log_context_clear(void)
{
	log_context_set(-1, 0, -1);
}

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
	const char *js = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	struct stat st;

	journal_prefix = js != NULL;
	/* systemd's rule: only when stderr is still the stream it names (not redirected by a
	 * wrapper) is the journal listening there. */
	journal_native = js && sscanf(js, "%llu:%llu", &dev, &ino) == 2 && fstat(2, &st) == 0 &&
			 (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

uint64_t now_usec(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

int ratelimit_below(struct ratelimit *rl, uint64_t interval_usec, unsigned burst, unsigned *suppressed)
{
	uint64_t now = now_usec();

	*suppressed = 0;
	if (rl->begin_usec == 0 || now - rl->begin_usec > interval_usec) {
		rl->begin_usec = now;
		rl->count = 0;
	}
	if (rl->count++ < burst) {
		*suppressed = rl->suppressed;
		rl->suppressed = 0;
		return 1;
	}
	rl->suppressed++;
	return 0;
}

/* One journal entry: the message and its fields. */
static int journal_send(int level, int error, const char *file, int line, const char *func,
			const char *msg)
{
	static char m[4200];
	char f[8][128];
	struct iovec iov[10];
	int n = 0;

	snprintf(f[0], sizeof(f[0]), "PRIORITY=%d", level);
	snprintf(f[1], sizeof(f[1]), "CODE_FILE=%s", file);
	snprintf(f[2], sizeof(f[2]), "CODE_LINE=%d", line);
	snprintf(f[3], sizeof(f[3]), "CODE_FUNC=%s", func);
	for (int i = 0; i < 4; i++)
		iov[n++] = (struct iovec){ f[i], strlen(f[i]) };
	if (error) {
		snprintf(f[4], sizeof(f[4]), "ERRNO=%d", error);
		iov[n++] = (struct iovec){ f[4], strlen(f[4]) };
	}
	if (ctx.pid >= 0) {
		snprintf(f[5], sizeof(f[5]), "TIERD_CLIENT_PID=%d", ctx.pid);
		iov[n++] = (struct iovec){ f[5], strlen(f[5]) };
	}
	if (ctx.segment) {
		snprintf(f[6], sizeof(f[6]), "TIERD_SEGMENT=%" PRIu32, ctx.segment);
		iov[n++] = (struct iovec){ f[6], strlen(f[6]) };
	}
	if (ctx.node >= 0) {
		snprintf(f[7], sizeof(f[7]), "TIERD_NODE=%d", ctx.node);
		iov[n++] = (struct iovec){ f[7], strlen(f[7]) };
	}
	/* Each iovec is one whole field. */
	snprintf(m, sizeof(m), "MESSAGE=%s", msg);
	iov[n++] = (struct iovec){ m, strlen(m) };
	return sd_journal_sendv(iov, n);
}

int log_internal(int level, int error, const char *file, int line, const char *func,
		 unsigned suppressed, const char *fmt, ...)
{
	static const char *const names[] = { "emerg", "alert", "crit", "error",
					     "warning", "notice", "info", "debug" };
	int saved = errno;
	char msg[4096];
	va_list ap;

	error = abs(error);
	if (level > max_level)
		return -error;
	/* %m in the format means the given error, not whatever errno happens to hold. */
	errno = error ? error : saved;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (suppressed) {
		size_t l = strlen(msg);

		snprintf(msg + l, sizeof(msg) - l, " (and %u similar messages suppressed)", suppressed);
	}
	if (journal_native && journal_send(level, error, file, line, func, msg) >= 0) {
		errno = saved;
		return -error;
	}
	if (journal_prefix)
		fprintf(stderr, "<%d>%s\n", level, msg);
	else
		fprintf(stderr, "tierd[%s]: %s\n", names[level & 7], msg);
	errno = saved;
	return -error;
}
