/* SPDX-License-Identifier: MIT */
/*
 * Fault injection for tierd's uffd ioctls and page moves, for tests (LD_PRELOAD into tierd only):
 * reaches the error paths of UFFDIO_CONTINUE, UFFDIO_WAKE and move_pages(2) that a healthy kernel
 * almost never takes.
 *
 *   TIERD_FI="continue:ENOMEM:3,wake:EIO:50,move:EBUSY:3"
 *
 * fails every 3rd UFFDIO_CONTINUE with ENOMEM (without doing it: the page stays unmapped) and
 * every 50th UFFDIO_WAKE with EIO (the thread stays blocked). Period 1 fails every call.
 *
 * "move" counts pages, not calls: for move:EBUSY:3, every 3rd page of a move (a move_pages call
 * with a nodes array; status queries, nodes == NULL, pass untouched) is left where it is and
 * gets -EBUSY in its status slot; the real move_pages runs on the other pages only, so what the
 * kernel did and what tierd is told agree. The call returns what the kernel returned for the
 * others, plus the injected pages for EBUSY and ENOMEM (the kernel counts pages migrate_pages()
 * failed on in its positive return), but not for EACCES (a per-page refusal the kernel only
 * writes in the status). EACCES is what the kernel gives a page still mapped by a process
 * without MPOL_MF_MOVE_ALL, so calls with MPOL_MF_MOVE_ALL are never injected EACCES (and their
 * pages do not count towards the period).
 *
 * Errors: ENOMEM, EAGAIN, EIO, EINVAL, EBUSY, EACCES. At exit, the injected counts go to
 * $TIERD_FI_REPORT when set ("continue N\nwake N\nmove N\n"; for move, pages). Built without
 * sanitizers: an ASan tierd needs ASAN_OPTIONS=verify_asan_link_order=0 to accept it.
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
#include <linux/mempolicy.h>
#include <linux/userfaultfd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <sys/socket.h>
#include <unistd.h>

enum { FI_CONTINUE, FI_WAKE, FI_IOCTL_N, FI_MOVE = FI_IOCTL_N, FI_N };

static const char *const names[FI_N] = { "continue", "wake", "move" };
static const unsigned long reqs[FI_IOCTL_N] = { UFFDIO_CONTINUE, UFFDIO_WAKE };

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
		{ "EBUSY", EBUSY },   { "EACCES", EACCES },
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
	for (int i = 0; i < FI_IOCTL_N; i++)
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

long move_pages(int pid, unsigned long count, void **pages, const int *nodes, int *status,
		int flags);

/* libnuma's move_pages() is the bare system call; tierd links it, this one comes first. */
long move_pages(int pid, unsigned long count, void **pages, const int *nodes, int *status,
		int flags)
{
	int err = fi[FI_MOVE].err;
	unsigned long n = 0, ninj = 0, *where;
	void **sub_pages;
	int *sub_nodes, *sub_status;
	long r;

	if (!err || !nodes || !count || (err == EACCES && (flags & MPOL_MF_MOVE_ALL)))
		return syscall(SYS_move_pages, pid, count, pages, nodes, status, flags);
	sub_pages = malloc(count * sizeof(*sub_pages));
	sub_nodes = malloc(count * sizeof(*sub_nodes));
	sub_status = malloc(count * sizeof(*sub_status));
	where = malloc(count * sizeof(*where));
	if (!sub_pages || !sub_nodes || !sub_status || !where) {
		r = -1;
		errno = ENOMEM;
		goto out;
	}
	for (unsigned long i = 0; i < count; i++) {
		if (__atomic_add_fetch(&fi[FI_MOVE].calls, 1, __ATOMIC_RELAXED) % fi[FI_MOVE].period == 0) {
			ninj++;
			continue;
		}
		where[n] = i;
		sub_pages[n] = pages[i];
		sub_nodes[n] = nodes[i];
		sub_status[n] = status[i]; /* what the kernel leaves unwritten stays as it was */
		n++;
	}
	r = n ? syscall(SYS_move_pages, pid, n, sub_pages, sub_nodes, sub_status, flags) : 0;
	if (r < 0)
		goto out; /* the call failed as a whole: nothing injected */
	for (unsigned long j = 0, i = 0; i < count; i++) {
		if (j < n && where[j] == i)
			status[i] = sub_status[j++];
		else
			status[i] = -err;
	}
	__atomic_add_fetch(&fi[FI_MOVE].injected, ninj, __ATOMIC_RELAXED);
	if (err != EACCES)
		r += (long)ninj;
out:
	free(sub_pages);
	free(sub_nodes);
	free(sub_status);
	free(where);
	return r;
}
