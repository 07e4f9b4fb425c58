/* SPDX-License-Identifier: MIT */
/*
 * Fault injection for tierd's uffd ioctls, for tests (LD_PRELOAD into tierd only): reaches the
 * error paths of UFFDIO_CONTINUE and UFFDIO_WAKE that a healthy kernel almost never takes.
 *
 *   TIERD_FI="continue:ENOMEM:3,wake:EIO:50"
 *
 * fails every 3rd UFFDIO_CONTINUE with ENOMEM (without doing it: the page stays unmapped) and
 * every 50th UFFDIO_WAKE with EIO (the thread stays blocked). Period 1 fails every call. Errors:
 * ENOMEM, EAGAIN, EIO, EINVAL. At exit, the injected counts go to $TIERD_FI_REPORT when set
 * ("continue N\nwake N\n"). Built without sanitizers: an ASan tierd needs
 * ASAN_OPTIONS=verify_asan_link_order=0 to accept it.
 *
 * TIERD_FI_NO_PEERPIDFD=1 makes getsockopt(SO_PEERPIDFD) fail with ENOPROTOOPT, as kernels
 * before 6.5 do: tierd then takes the peer's pidfd with pidfd_open() at accept.
 *
 *   TIERD_FI_SEALS_DELAY_MS=400
 *
 * makes every fcntl(F_GET_SEALS) sleep 400 ms before it reads the seals: a window in which a
 * test changes the memfd between what tierd read before and what it reads after.
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <sys/socket.h>

enum { FI_CONTINUE, FI_WAKE, FI_N };

static const char *const names[FI_N] = { "continue", "wake" };
static const unsigned long reqs[FI_N] = { UFFDIO_CONTINUE, UFFDIO_WAKE };

static struct {
	int err;               /* 0: not injected */
	unsigned long period;
	unsigned long calls, injected;
} fi[FI_N];

static int (*real_ioctl)(int, unsigned long, ...);
static int (*real_fcntl)(int, int, ...);
static long seals_delay_ms;
static int (*real_getsockopt)(int, int, int, void *, socklen_t *);
static int no_peerpidfd;

static int errno_of(const char *s)
{
	static const struct { const char *name; int err; } known[] = {
		{ "ENOMEM", ENOMEM }, { "EAGAIN", EAGAIN }, { "EIO", EIO }, { "EINVAL", EINVAL },
	};

	for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
		if (!strcmp(s, known[i].name))
			return known[i].err;
	return 0;
}

__attribute__((constructor)) static void fi_init(void)
{
	const char *spec = getenv("TIERD_FI");
	char buf[256], *save = NULL;

	const char *delay = getenv("TIERD_FI_SEALS_DELAY_MS");

	real_ioctl = (int (*)(int, unsigned long, ...))dlsym(RTLD_NEXT, "ioctl");
	real_fcntl = (int (*)(int, int, ...))dlsym(RTLD_NEXT, "fcntl");
	if (delay)
		seals_delay_ms = strtol(delay, NULL, 10);
	real_getsockopt = (int (*)(int, int, int, void *, socklen_t *))dlsym(RTLD_NEXT, "getsockopt");
	no_peerpidfd = getenv("TIERD_FI_NO_PEERPIDFD") != NULL;
	if (!spec)
		return;
	snprintf(buf, sizeof(buf), "%s", spec);
	for (char *rule = strtok_r(buf, ",", &save); rule; rule = strtok_r(NULL, ",", &save)) {
		char name[32], err[32];
		unsigned long period;

		if (sscanf(rule, "%31[^:]:%31[^:]:%lu", name, err, &period) != 3 || period == 0)
			continue;
		for (int i = 0; i < FI_N; i++)
			if (!strcmp(name, names[i])) {
				fi[i].err = errno_of(err);
				fi[i].period = period;
			}
	}
}

__attribute__((destructor)) static void fi_report(void)
{
	const char *path = getenv("TIERD_FI_REPORT");
	FILE *f;

	if (!path || !(f = fopen(path, "we")))
		return;
	for (int i = 0; i < FI_N; i++)
		fprintf(f, "%s %lu\n", names[i], __atomic_load_n(&fi[i].injected, __ATOMIC_RELAXED));
	fclose(f);
}

int ioctl(int fd, unsigned long req, ...)
{
	va_list ap;
	void *arg;

	va_start(ap, req);
	arg = va_arg(ap, void *);
	va_end(ap);
	for (int i = 0; i < FI_N; i++)
		if (req == reqs[i] && fi[i].err &&
		    __atomic_add_fetch(&fi[i].calls, 1, __ATOMIC_RELAXED) % fi[i].period == 0) {
			__atomic_add_fetch(&fi[i].injected, 1, __ATOMIC_RELAXED);
			errno = fi[i].err;
			return -1;
		}
	return real_ioctl(fd, req, arg);
}

int fcntl(int fd, int cmd, ...)
{
	va_list ap;
	void *arg;

	va_start(ap, cmd);
	arg = va_arg(ap, void *);
	va_end(ap);
	if (cmd == F_GET_SEALS && seals_delay_ms > 0) {
		struct timespec ts = { .tv_sec = seals_delay_ms / 1000,
				       .tv_nsec = (seals_delay_ms % 1000) * 1000000L };

		while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
			;
	}
	return real_fcntl(fd, cmd, arg);
}

#ifndef SO_PEERPIDFD
#define SO_PEERPIDFD 77
#endif
int getsockopt(int fd, int level, int name, void *val, socklen_t *len)
{
	if (no_peerpidfd && level == SOL_SOCKET && name == SO_PEERPIDFD) {
		errno = ENOPROTOOPT;
		return -1;
	}
	return real_getsockopt(fd, level, name, val, len);
}
