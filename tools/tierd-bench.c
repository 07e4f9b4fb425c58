/* SPDX-License-Identifier: MIT */
/*
 * tierd-bench: the core benchmarks. Each result is one JSON line (ARCHITECTURE.md §6) whose
 * baseline was measured in the same run; a human line per result goes to stderr.
 *
 *   fault_roundtrip  p50/p99 of one 4K shmem minor fault resolved by a real tierd (libtier client,
 *                    whole-mapping registration, no windows armed) vs. a minimal uffd handler
 *                    process (poll, read, UFFDIO_CONTINUE). The handler is a forked process, not a
 *                    thread, because tierd is one: a fault then costs the same cross-process
 *                    switch. App, tierd and handler share one CPU ("p50"/"p99"); the cross-CPU
 *                    variant moves tierd and the handler to another ("p50_cross"/"p99_cross").
 *                    Rounds alternate tierd, raw, tierd, raw…; samples are pooled per variant.
 *   window_close     ns per page of one ranged UFFDIO_CONTINUE over a zapped, MINOR-registered
 *                    range vs. MADV_POPULATE_READ over a zapped, unregistered mapping of the same
 *                    memfd (the kernel's own way of mapping a range back).
 *   page_state       tierd's resident bytes per page of an attached (untouched) 4 GiB segment,
 *                    from VmRSS; baseline is the 16 B budget.
 *   daemon_cpu       tierd's share of one core (its threads' runtime from schedstat over wall
 *                    time), default settings, while two threads hammer a 10 % hot set of a
 *                    populated 10 GiB segment (4 GiB scaled linearly when RAM is short); baseline
 *                    is the 2 % target.
 *
 * Exit status: 0 when every bench ran, 1 when one failed (a harness or daemon failure, never a
 * missed target), 2 on usage errors, 77 when every bench asked for was skipped.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tierd/tier.h"
#include "uffd.h"

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#endif
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

#define PAGE 4096u
#define MIB ((uint64_t)1024 * 1024)
#define GIB (1024 * MIB)

/* A bench that runs longer than this is stuck (a fault nobody answers): SIGALRM ends it. */
#define BENCH_DEADLINE_S 150
#define DAEMON_START_TIMEOUT_MS 5000
#define TRACK_TIMEOUT_MS 5000

/* fault_roundtrip: 16 MiB is 4096 pages, one round zaps and touches all of them in batches. */
#define FR_SEG_BYTES (16 * MIB)
#define FR_BATCH_PAGES 256
#define FR_ROUNDS_SAME 8
#define FR_FAULTS_SAME 4096
/* Cross-CPU faults wait for the other vCPU to wake (~60 µs in §2): fewer keep the bench short. */
#define FR_ROUNDS_CROSS 6
#define FR_FAULTS_CROSS 2048
#define FR_MAX_ROUNDS 8
_Static_assert(FR_ROUNDS_SAME <= FR_MAX_ROUNDS && FR_ROUNDS_CROSS <= FR_MAX_ROUNDS, "rounds");
#define FR_TARGET_RATIO 1.2

/* window_close: 8192 pages = 32 MiB, the size §2 measured. Odd round count: a true median. */
#define WC_PAGES 8192
#define WC_ROUNDS 11

/* page_state: untouched pages cost tierd nothing but its per-page state. */
#define PS_SEG_BYTES (4 * GIB)
/* Long enough for a few default 100 ms epochs, so windows are armed when RSS is read. */
#define PS_SETTLE_MS 500
#define PS_BUDGET_BYTES 16.0

/* daemon_cpu */
#define DC_SEG_BYTES (10 * GIB)
#define DC_SMALL_SEG_BYTES (4 * GIB)
#define DC_HEADROOM_BYTES (2 * GIB)
#define DC_THREADS 2
#define DC_INTERVALS 5 /* one-second intervals */
#define DC_TARGET_SHARE 0.02

struct ctx {
	const char *tierd_bin;
	const char *dir;
	bool own_dir;
	FILE *json;
	const char *commit;
	const char *where;
	char tierd_log[256];
	int cpu_app, cpu_other; /* the first two CPUs we may run on; cpu_other -1 when alone */
};

struct daemon {
	pid_t pid;
	char sock[108];
};

struct result {
	const char *bench, *metric, *unit;
	double value, baseline;
	uint64_t n;
	char spread[192];
	const char *note;
	double target_ratio; /* 0: no target; a miss is reported, never a failure */
};

static int fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int fail(const char *fmt, ...)
{
	va_list ap;

	fputs("tierd-bench: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return -1;
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* Pins thread/process `tid` (0 = the caller) to one CPU. */
static int pin(pid_t tid, int cpu)
{
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	if (sched_setaffinity(tid, sizeof(set), &set) < 0)
		return fail("pinning %d to CPU %d: %s", (int)tid, cpu, strerror(errno));
	return 0;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return (x > y) - (x < y);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* Nearest-rank percentile of sorted samples. */
static uint32_t pct_sorted(const uint32_t *s, size_t n, double p)
{
	size_t i = (size_t)(p * (double)n);

	return s[i < n ? i : n - 1];
}

static void minmax(const double *v, size_t n, double *lo, double *hi)
{
	*lo = *hi = v[0];
	for (size_t i = 1; i < n; i++) {
		*lo = v[i] < *lo ? v[i] : *lo;
		*hi = v[i] > *hi ? v[i] : *hi;
	}
}

static void json_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			fputc('\\', f);
		fputc((unsigned char)*s < 0x20 ? ' ' : *s, f);
	}
	fputc('"', f);
}

static void emit(const struct ctx *c, const struct result *r)
{
	double ratio = r->baseline != 0 ? r->value / r->baseline : 0;

	fputs("{\"bench\":", c->json);
	json_str(c->json, r->bench);
	fputs(",\"metric\":", c->json);
	json_str(c->json, r->metric);
	fprintf(c->json, ",\"value\":%.6g,\"baseline\":%.6g,\"ratio\":%.4g,\"unit\":", r->value,
		r->baseline, ratio);
	json_str(c->json, r->unit);
	fprintf(c->json, ",\"n\":%" PRIu64 ",\"spread\":", r->n);
	json_str(c->json, r->spread);
	fputs(",\"where\":", c->json);
	json_str(c->json, c->where);
	fputs(",\"commit\":", c->json);
	json_str(c->json, c->commit);
	if (r->note) {
		fputs(",\"note\":", c->json);
		json_str(c->json, r->note);
	}
	fputs("}\n", c->json);
	fflush(c->json);

	fprintf(stderr, "  %-16s %-20s %10.4g %-5s baseline %10.4g  ratio %6.3f", r->bench, r->metric,
		r->value, r->unit, r->baseline, ratio);
	if (r->target_ratio > 0)
		fprintf(stderr, "  target <= %.2f: %s", r->target_ratio,
			ratio <= r->target_ratio ? "met" : "MISSED");
	fprintf(stderr, "\n  %-16s   spread: %s%s%s\n", "", r->spread, r->note ? "; " : "",
		r->note ? r->note : "");
}

/* ---- tierd as a child process ---------------------------------------------------------------- */

static void print_log_tail(const struct ctx *c)
{
	char buf[2048];
	FILE *f = fopen(c->tierd_log, "re");
	long size;
	size_t n;

	if (!f)
		return;
	fseek(f, 0, SEEK_END);
	size = ftell(f);
	fseek(f, size > (long)sizeof(buf) - 1 ? size - (long)sizeof(buf) + 1 : 0, SEEK_SET);
	n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = '\0';
	fclose(f);
	fprintf(stderr, "--- tail of %s:\n%s---\n", c->tierd_log, buf);
}

static bool accepts(const char *sock)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	bool ok;

	if (fd < 0)
		return false;
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock);
	ok = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
	close(fd);
	return ok;
}

/*
 * Starts tierd with `args` (NULL-terminated) on a socket in the scratch directory, pinned to `cpu`
 * when >= 0, and waits until it accepts. Must run before any libtier segment exists: libtier's
 * fork handler would start a control thread in the child.
 */
static int daemon_start(const struct ctx *c, struct daemon *d, int cpu, const char *const *args)
{
	const char *argv[24];
	pid_t parent = getpid();
	int argc = 0;

	snprintf(d->sock, sizeof(d->sock), "%s/tierd.sock", c->dir);
	argv[argc++] = c->tierd_bin;
	argv[argc++] = "--socket";
	argv[argc++] = d->sock;
	for (; *args && argc < 23; args++)
		argv[argc++] = *args;
	argv[argc] = NULL;

	d->pid = fork();
	if (d->pid < 0)
		return fail("fork: %s", strerror(errno));
	if (d->pid == 0) {
		int fd = open(c->tierd_log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

		/* tierd must not outlive the bench, whatever ends it. */
		if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent)
			_exit(127);
		if (fd >= 0) {
			dup2(fd, STDOUT_FILENO);
			dup2(fd, STDERR_FILENO);
		}
		if (cpu >= 0) {
			cpu_set_t set;

			CPU_ZERO(&set);
			CPU_SET(cpu, &set);
			if (sched_setaffinity(0, sizeof(set), &set) < 0)
				_exit(126);
		}
		execv(argv[0], (char *const *)argv);
		fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	for (uint64_t deadline = now_ns() + DAEMON_START_TIMEOUT_MS * 1000000ull; now_ns() < deadline;) {
		int st;

		if (accepts(d->sock))
			return 0;
		if (waitpid(d->pid, &st, WNOHANG) == d->pid) {
			d->pid = 0;
			print_log_tail(c);
			return fail("tierd exited during start-up (status 0x%x)", st);
		}
		sleep_ms(10);
	}
	kill(d->pid, SIGKILL);
	waitpid(d->pid, NULL, 0);
	d->pid = 0;
	print_log_tail(c);
	return fail("tierd did not accept on %s within %u ms", d->sock, DAEMON_START_TIMEOUT_MS);
}

/* SIGTERM, SIGKILL after 3 s. Returns 0 when tierd exited cleanly: a crash is a finding. */
static int daemon_stop(const struct ctx *c, struct daemon *d)
{
	uint64_t deadline = now_ns() + 3000000000ull;
	int st;

	if (d->pid <= 0)
		return 0;
	kill(d->pid, SIGCONT); /* a stopped tierd would sit on SIGTERM */
	kill(d->pid, SIGTERM);
	while (waitpid(d->pid, &st, WNOHANG) == 0) {
		if (now_ns() > deadline) {
			kill(d->pid, SIGKILL);
			waitpid(d->pid, &st, 0);
			break;
		}
		sleep_ms(5);
	}
	d->pid = 0;
	if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
		return 0;
	print_log_tail(c);
	return fail("tierd did not exit cleanly on SIGTERM (status 0x%x)", st);
}

/* The first integer after "key": in tierd's status document, -1 when absent or unavailable. */
static long long daemon_stat(const struct daemon *d, const char *key)
{
	static char js[65536];
	char pat[64];
	const char *p;

	if (tier_status_json(d->sock, js, sizeof(js)) < 0)
		return -1;
	snprintf(pat, sizeof(pat), "\"%s\":", key);
	p = strstr(js, pat);
	return p ? strtoll(p + strlen(pat), NULL, 10) : -1;
}

/* A line "key:   N kB" of /proc/PID/status, in KiB; -1 when absent. */
static long long proc_status_kib(pid_t pid, const char *key)
{
	char path[64], line[256];
	size_t kl = strlen(key);
	long long v = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	f = fopen(path, "re");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (strncmp(line, key, kl) == 0 && line[kl] == ':') {
			v = strtoll(line + kl + 1, NULL, 10);
			break;
		}
	fclose(f);
	return v;
}

/*
 * CPU time of a process. *exact_ns: the sum of its threads' se.sum_exec_runtime from
 * /proc/PID/task/TID/schedstat, in ns. *stat_ns: utime+stime from /proc/PID/stat, the same
 * quantity (the kernel scales its tick samples to the runtime) but in 10 ms ticks — too coarse
 * for a 1 % share over 5 s.
 */
static int proc_cpu_ns(pid_t pid, uint64_t *exact_ns, uint64_t *stat_ns)
{
	char path[300], buf[1024], *p;
	unsigned long long ut, st;
	struct dirent *de;
	DIR *dir;
	FILE *f;
	int ok;

	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	dir = opendir(path);
	if (!dir)
		return fail("%s: %s", path, strerror(errno));
	*exact_ns = 0;
	while ((de = readdir(dir))) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/proc/%d/task/%s/schedstat", (int)pid, de->d_name);
		f = fopen(path, "re");
		if (!f)
			continue; /* the thread exited meanwhile */
		ok = fscanf(f, "%llu", &ut) == 1;
		fclose(f);
		if (!ok) {
			closedir(dir);
			return fail("%s: unexpected format", path);
		}
		*exact_ns += ut;
	}
	closedir(dir);

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "re");
	if (!f)
		return fail("%s: %s", path, strerror(errno));
	ok = fgets(buf, sizeof(buf), f) != NULL;
	fclose(f);
	/* Fields after the command name, which may hold spaces: state is field 3, utime 14, stime 15. */
	p = ok ? strrchr(buf, ')') : NULL;
	if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
		return fail("%s: unexpected format", path);
	*stat_ns = (ut + st) * (1000000000ull / (uint64_t)sysconf(_SC_CLK_TCK));
	return 0;
}

/* Waits until tierd tracks `seg`; destroys it and says why when it does not. */
static int segment_wait(struct tier_segment **seg)
{
	struct tier_info info;
	int r = tier_segment_wait_tracked(*seg, TRACK_TIMEOUT_MS);

	if (r < 0) {
		tier_segment_info(*seg, &info);
		tier_segment_destroy(*seg);
		*seg = NULL;
		return fail("segment not tracked: %s (%s)", strerror(-r), info.last_reason);
	}
	return 0;
}

static int segment_open(const struct daemon *d, size_t bytes, struct tier_segment **seg)
{
	struct tier_options o = { .name = "tierd-bench", .kind = TIER_SHMEM, .size = bytes,
				  .socket_path = d->sock };
	int r = tier_segment_create(&o, seg);

	if (r < 0)
		return fail("tier_segment_create(%zu MiB): %s", (size_t)(bytes / MIB), strerror(-r));
	return segment_wait(seg);
}

/*
 * Like segment_open, but the memory is populated before tierd sees it: populating a tracked
 * mapping contends with tierd's window registrations for the mmap lock and takes twice as long.
 * The mapping stays the caller's to unmap after tier_segment_destroy().
 */
static int segment_open_populated(const struct daemon *d, size_t bytes, struct tier_segment **seg,
				  uint8_t **addr, double *populate_s)
{
	struct tier_options o = { .name = "tierd-bench", .kind = TIER_SHMEM, .socket_path = d->sock };
	uint64_t t0;
	int fd, r;

	fd = memfd_create("tierd-bench", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0)
		return fail("memfd_create: %s", strerror(errno));
	if (ftruncate(fd, (off_t)bytes) < 0 ||
	    fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0) {
		r = fail("sizing and sealing the memfd: %s", strerror(errno));
		close(fd);
		return r;
	}
	*addr = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (*addr == MAP_FAILED) {
		r = fail("mmap of %zu MiB: %s", (size_t)(bytes / MIB), strerror(errno));
		close(fd);
		return r;
	}
	t0 = now_ns();
	if (madvise(*addr, bytes, MADV_POPULATE_WRITE) < 0) {
		r = fail("madvise(POPULATE_WRITE) of %zu MiB: %s", (size_t)(bytes / MIB), strerror(errno));
		goto fail;
	}
	*populate_s = (double)(now_ns() - t0) / 1e9;
	r = tier_segment_adopt(fd, *addr, bytes, &o, seg);
	if (r < 0) {
		r = fail("tier_segment_adopt: %s", strerror(-r));
		goto fail;
	}
	return segment_wait(seg);
fail:
	munmap(*addr, bytes);
	*addr = MAP_FAILED;
	close(fd);
	return r;
}

/* Tracked without a detach since attaching: otherwise faults were not tierd's to serve. */
static int segment_check(struct tier_segment *seg)
{
	struct tier_info info;

	tier_segment_info(seg, &info);
	if (info.state != TIER_STATE_TRACKED || info.detaches || info.guardian_detaches)
		return fail("segment lost tracking during the bench (state %d, %" PRIu64
			    " detaches, %" PRIu64 " by the guardian): %s",
			    (int)info.state, info.detaches, info.guardian_detaches, info.last_reason);
	return 0;
}

/* A shared mapping of a new memfd; *fd and *addr are set only on success. */
static int memfd_mapped(const char *name, size_t bytes, int *fd, uint8_t **addr)
{
	int f = memfd_create(name, MFD_CLOEXEC);
	void *a;

	if (f < 0)
		return fail("memfd_create: %s", strerror(errno));
	if (ftruncate(f, (off_t)bytes) < 0) {
		close(f);
		return fail("ftruncate: %s", strerror(errno));
	}
	a = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, f, 0);
	if (a == MAP_FAILED) {
		close(f);
		return fail("mmap: %s", strerror(errno));
	}
	*fd = f;
	*addr = a;
	return 0;
}

/* A userfaultfd with MINOR_SHMEM, the same features libtier asks for. 1 = skip, with a reason. */
static int uffd_open(int *uffd)
{
	struct uffd_ops ops = uffd_ops_real(NULL);
	struct uffd_handshake hs;

	*uffd = uffd_negotiate(&ops, UFFD_FEATURE_MINOR_SHMEM, 0, &hs);
	if (*uffd == -EPERM || *uffd == -ENOSYS || *uffd == -EPROTONOSUPPORT) {
		fprintf(stderr, "tierd-bench: skipped: no userfaultfd with MINOR_SHMEM here (%s)\n",
			strerror(-*uffd));
		return 1;
	}
	if (*uffd < 0)
		return fail("userfaultfd: %s", strerror(-*uffd));
	return 0;
}

/* ---- fault_roundtrip ------------------------------------------------------------------------- */

/* The baseline handler: the smallest loop that resolves MINOR faults, in a process of its own. */
struct raw_handler {
	pid_t pid;
	_Atomic uint64_t *served; /* shared page: faults the handler resolved */
};

static void __attribute__((noreturn)) raw_handler_loop(int uffd, _Atomic uint64_t *served)
{
	struct pollfd p = { .fd = uffd, .events = POLLIN };
	struct uffd_msg msg;

	for (;;) {
		uint64_t a;
		int r;

		if (poll(&p, 1, -1) < 0) {
			if (errno == EINTR)
				continue;
			_exit(1);
		}
		if (read(uffd, &msg, sizeof(msg)) != sizeof(msg)) {
			if (errno == EAGAIN || errno == EINTR)
				continue;
			_exit(errno == ESRCH ? 0 : 1);
		}
		if (msg.event != UFFD_EVENT_PAGEFAULT)
			continue;
		a = msg.arg.pagefault.address & ~(uint64_t)(PAGE - 1);
		r = uffd_continue(uffd, a, PAGE, NULL);
		if (r == -EEXIST)
			r = uffd_wake(uffd, a, PAGE);
		if (r == -ESRCH)
			_exit(0);
		if (r < 0)
			_exit(1);
		atomic_fetch_add_explicit(served, 1, memory_order_relaxed);
	}
}

/*
 * Registers `addr` MINOR on a new uffd and forks the handler with it. The parent then drops its
 * copy: if the handler dies, the uffd goes away with it and no fault of ours stays blocked.
 * Returns 1 (skip) when userfaultfd is unavailable. Must run before any libtier segment exists.
 */
static int raw_handler_start(struct raw_handler *h, uint8_t *addr, size_t len)
{
	pid_t parent = getpid();
	int uffd, r;

	r = uffd_open(&uffd);
	if (r)
		return r;
	r = uffd_register(uffd, (uint64_t)(uintptr_t)addr, len, UFFDIO_REGISTER_MODE_MINOR);
	if (r < 0) {
		close(uffd);
		return fail("UFFDIO_REGISTER(MINOR): %s", strerror(-r));
	}
	h->served = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (h->served == MAP_FAILED) {
		close(uffd);
		return fail("mmap: %s", strerror(errno));
	}
	h->pid = fork();
	if (h->pid < 0) {
		close(uffd);
		return fail("fork: %s", strerror(errno));
	}
	if (h->pid == 0) {
		if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent)
			_exit(1);
		raw_handler_loop(uffd, h->served);
	}
	close(uffd);
	return 0;
}

static void raw_handler_stop(struct raw_handler *h)
{
	if (h->pid > 0) {
		kill(h->pid, SIGKILL);
		waitpid(h->pid, NULL, 0);
		h->pid = 0;
	}
	if (h->served && h->served != MAP_FAILED)
		munmap((void *)h->served, PAGE);
	h->served = NULL;
}

struct fr_variant {
	uint8_t *base;
	uint32_t *samples; /* ns, all rounds pooled */
	size_t n;
	double round_p50[FR_MAX_ROUNDS], round_p99[FR_MAX_ROUNDS];
	uint64_t faults; /* faults caused since the start, warm-ups included */
};

struct fr_bench {
	struct fr_variant v[2]; /* [0] tierd, [1] the raw handler */
	struct daemon d;
	struct raw_handler h;
	struct tier_segment *seg;
	long long tierd_faults0; /* tierd's fault counter before the first round */
};

/* Zaps `faults` pages batch by batch and times the first read of each: one minor fault each. */
static int fr_round(struct fr_variant *v, size_t faults, bool record, size_t round)
{
	uint32_t *out = v->samples + v->n;

	for (size_t first = 0; first < faults; first += FR_BATCH_PAGES) {
		size_t batch = faults - first < FR_BATCH_PAGES ? faults - first : FR_BATCH_PAGES;
		uint8_t *p = v->base + first * PAGE;

		if (madvise(p, batch * PAGE, MADV_DONTNEED) < 0)
			return fail("madvise(DONTNEED): %s", strerror(errno));
		for (size_t i = 0; i < batch; i++) {
			uint64_t t0 = now_ns();

			(void)*(volatile uint8_t *)(p + i * PAGE);
			out[first + i] = (uint32_t)(now_ns() - t0);
		}
	}
	v->faults += faults;
	if (record) {
		uint32_t *s = malloc(faults * sizeof(*s));

		if (!s)
			return fail("out of memory");
		memcpy(s, out, faults * sizeof(*s));
		qsort(s, faults, sizeof(*s), cmp_u32);
		v->round_p50[round] = pct_sorted(s, faults, 0.50) / 1000.0;
		v->round_p99[round] = pct_sorted(s, faults, 0.99) / 1000.0;
		free(s);
		v->n += faults;
	}
	return 0;
}

/*
 * Every timed touch must have been a fault resolved by its own handler: after a detach (tierd
 * died or hung) the touches are plain kernel faults and the numbers mean nothing.
 */
static int fr_verify(struct fr_bench *b)
{
	long long tierd = daemon_stat(&b->d, "faults");
	uint64_t raw = atomic_load(b->h.served);

	if (segment_check(b->seg) < 0)
		return -1;
	if (tierd < 0 || tierd - b->tierd_faults0 != (long long)b->v[0].faults)
		return fail("tierd resolved %lld faults, the bench caused %" PRIu64,
			    tierd < 0 ? tierd : tierd - b->tierd_faults0, b->v[0].faults);
	if (raw != b->v[1].faults)
		return fail("the raw handler resolved %" PRIu64 " faults, the bench caused %" PRIu64,
			    raw, b->v[1].faults);
	return 0;
}

/* One placement: warm-up, then rounds alternating tierd and raw; both variants pooled. */
static int fr_placement(const struct ctx *c, struct fr_bench *b, size_t rounds, size_t faults,
			const char *suffix)
{
	struct fr_variant *v = b->v;
	char metric[32];
	double p[2][2]; /* [variant][p50, p99] */

	for (int i = 0; i < 2; i++) {
		v[i].n = 0;
		if (fr_round(&v[i], faults, false, 0) < 0)
			return -1;
	}
	for (size_t r = 0; r < rounds; r++)
		for (int i = 0; i < 2; i++)
			if (fr_round(&v[i], faults, true, r) < 0)
				return -1;
	if (fr_verify(b) < 0)
		return -1;
	for (int i = 0; i < 2; i++) {
		qsort(v[i].samples, v[i].n, sizeof(uint32_t), cmp_u32);
		p[i][0] = pct_sorted(v[i].samples, v[i].n, 0.50) / 1000.0;
		p[i][1] = pct_sorted(v[i].samples, v[i].n, 0.99) / 1000.0;
	}
	for (int k = 0; k < 2; k++) {
		struct result res = { .bench = "fault_roundtrip", .metric = metric, .unit = "us",
				      .value = p[0][k], .baseline = p[1][k], .n = v[0].n,
				      .target_ratio = FR_TARGET_RATIO,
				      .note = "baseline: raw uffd handler process (poll/read/CONTINUE)" };
		double lo[2], hi[2];

		for (int i = 0; i < 2; i++)
			minmax(k ? v[i].round_p99 : v[i].round_p50, rounds, &lo[i], &hi[i]);
		snprintf(metric, sizeof(metric), "%s%s", k ? "p99" : "p50", suffix);
		snprintf(res.spread, sizeof(res.spread),
			 "per-round %s %.2f-%.2f, baseline %.2f-%.2f (%zu rounds x %zu faults)",
			 k ? "p99" : "p50", lo[0], hi[0], lo[1], hi[1], rounds, faults);
		emit(c, &res);
	}
	return 0;
}

static int bench_fault_roundtrip(struct ctx *c)
{
	static const char *const args[] = { "--shmem-registration", "whole", "--max-windows", "0",
					    "--epoch-ms", "60000", NULL };
	size_t most = FR_MAX_ROUNDS * (FR_FAULTS_SAME > FR_FAULTS_CROSS ? FR_FAULTS_SAME : FR_FAULTS_CROSS);
	struct fr_bench b = { 0 };
	int raw_fd = -1, r = -1;

	if (daemon_start(c, &b.d, c->cpu_app, args) < 0)
		return -1;
	if (memfd_mapped("tierd-bench-raw", FR_SEG_BYTES, &raw_fd, &b.v[1].base) < 0)
		goto out;
	memset(b.v[1].base, 1, FR_SEG_BYTES);
	r = raw_handler_start(&b.h, b.v[1].base, FR_SEG_BYTES);
	if (r != 0)
		goto out;
	r = -1;
	if (segment_open(&b.d, FR_SEG_BYTES, &b.seg) < 0)
		goto out;
	b.v[0].base = tier_segment_addr(b.seg);
	/* First touches allocate (missing faults, not uffd's); only later refaults are minor. */
	memset(b.v[0].base, 1, FR_SEG_BYTES);
	for (int i = 0; i < 2; i++) {
		b.v[i].samples = malloc(most * sizeof(uint32_t));
		if (!b.v[i].samples) {
			fail("out of memory");
			goto out;
		}
	}
	b.tierd_faults0 = daemon_stat(&b.d, "faults");
	if (b.tierd_faults0 < 0) {
		fail("cannot read tierd's status");
		goto out;
	}

	/* The app thread (this one) stays on one CPU; libtier's control thread is left where the
	 * scheduler puts it: it only wakes for heartbeats. */
	if (pin(0, c->cpu_app) < 0 || pin(b.h.pid, c->cpu_app) < 0 || pin(b.d.pid, c->cpu_app) < 0 ||
	    fr_placement(c, &b, FR_ROUNDS_SAME, FR_FAULTS_SAME, "") < 0)
		goto out;
	if (c->cpu_other >= 0) {
		if (pin(b.h.pid, c->cpu_other) < 0 || pin(b.d.pid, c->cpu_other) < 0 ||
		    fr_placement(c, &b, FR_ROUNDS_CROSS, FR_FAULTS_CROSS, "_cross") < 0)
			goto out;
	} else {
		fprintf(stderr, "  fault_roundtrip: one CPU only, cross-CPU variant skipped\n");
	}
	r = 0;
out:
	tier_segment_destroy(b.seg);
	raw_handler_stop(&b.h);
	if (b.v[1].base)
		munmap(b.v[1].base, FR_SEG_BYTES);
	if (raw_fd >= 0)
		close(raw_fd);
	for (int i = 0; i < 2; i++)
		free(b.v[i].samples);
	if (daemon_stop(c, &b.d) < 0)
		r = -1;
	return r;
}

/* ---- window_close ---------------------------------------------------------------------------- */

static int bench_window_close(struct ctx *c)
{
	const size_t len = (size_t)WC_PAGES * PAGE;
	double cont[WC_ROUNDS], pop[WC_ROUNDS], cs[WC_ROUNDS], ps[WC_ROUNDS], clo, chi, plo, phi;
	struct result res = { .bench = "window_close", .metric = "ns_per_page", .unit = "ns",
			      .n = WC_ROUNDS,
			      .note = "baseline: MADV_POPULATE_READ of an unregistered mapping" };
	uint8_t *reg = MAP_FAILED, *plain = MAP_FAILED;
	int fd = -1, uffd = -1, r;

	if (pin(0, c->cpu_app) < 0)
		return -1;
	r = memfd_mapped("tierd-bench-window", len, &fd, &reg);
	if (r < 0)
		return -1;
	r = -1;
	/* A second mapping of the same file, never registered: the baseline maps the same pages. */
	plain = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (plain == MAP_FAILED) {
		fail("mmap: %s", strerror(errno));
		goto out;
	}
	if (madvise(reg, len, MADV_POPULATE_WRITE) < 0) {
		fail("madvise(POPULATE_WRITE): %s", strerror(errno));
		goto out;
	}
	r = uffd_open(&uffd);
	if (r != 0)
		goto out;
	r = uffd_register(uffd, (uint64_t)(uintptr_t)reg, len, UFFDIO_REGISTER_MODE_MINOR);
	if (r < 0) {
		fail("UFFDIO_REGISTER(MINOR): %s", strerror(-r));
		goto out;
	}
	r = -1;
	for (int i = 0; i < WC_ROUNDS; i++) {
		int64_t mapped = 0;
		uint64_t t0, t1;
		int e;

		if (madvise(reg, len, MADV_DONTNEED) < 0 || madvise(plain, len, MADV_DONTNEED) < 0) {
			fail("madvise(DONTNEED): %s", strerror(errno));
			goto out;
		}
		t0 = now_ns();
		e = uffd_continue(uffd, (uint64_t)(uintptr_t)reg, len, &mapped);
		t1 = now_ns();
		if (e < 0 || mapped != (int64_t)len) {
			fail("ranged UFFDIO_CONTINUE: %s, %" PRId64 " of %zu bytes mapped",
			     strerror(-e), mapped, len);
			goto out;
		}
		cont[i] = (double)(t1 - t0) / WC_PAGES;
		t0 = now_ns();
		e = madvise(plain, len, MADV_POPULATE_READ);
		t1 = now_ns();
		if (e < 0) {
			fail("madvise(POPULATE_READ): %s", strerror(errno));
			goto out;
		}
		pop[i] = (double)(t1 - t0) / WC_PAGES;
	}
	memcpy(cs, cont, sizeof(cs));
	memcpy(ps, pop, sizeof(ps));
	qsort(cs, WC_ROUNDS, sizeof(double), cmp_double);
	qsort(ps, WC_ROUNDS, sizeof(double), cmp_double);
	minmax(cont, WC_ROUNDS, &clo, &chi);
	minmax(pop, WC_ROUNDS, &plo, &phi);
	res.value = cs[WC_ROUNDS / 2];
	res.baseline = ps[WC_ROUNDS / 2];
	snprintf(res.spread, sizeof(res.spread),
		 "median of %d rounds over %d pages; CONTINUE %.1f-%.1f, baseline %.1f-%.1f",
		 WC_ROUNDS, WC_PAGES, clo, chi, plo, phi);
	emit(c, &res);
	r = 0;
out:
	if (uffd >= 0)
		close(uffd);
	if (plain != MAP_FAILED)
		munmap(plain, len);
	if (reg != MAP_FAILED)
		munmap(reg, len);
	if (fd >= 0)
		close(fd);
	return r;
}

/* ---- page_state ------------------------------------------------------------------------------ */

static int bench_page_state(struct ctx *c)
{
	static const char *const args[] = { NULL }; /* default settings: windows are armed */
	const uint64_t pages = PS_SEG_BYTES / PAGE;
	struct result res = { .bench = "page_state", .metric = "bytes_per_page", .unit = "B",
			      .baseline = PS_BUDGET_BYTES, .n = pages, .target_ratio = 1.0,
			      .note = "baseline is the 16 B/page budget; value from tierd's VmRSS" };
	long long rss0, rss1, rss2, anon1, anon2, shm1, shm2;
	struct tier_segment *seg = NULL;
	struct daemon d = { 0 };
	int r = -1;

	if (daemon_start(c, &d, -1, args) < 0)
		return -1;
	/* Attach-free sample over the same interval: what tierd's RSS does on its own. */
	sleep_ms(PS_SETTLE_MS);
	rss0 = proc_status_kib(d.pid, "VmRSS");
	sleep_ms(PS_SETTLE_MS);
	rss1 = proc_status_kib(d.pid, "VmRSS");
	anon1 = proc_status_kib(d.pid, "RssAnon");
	shm1 = proc_status_kib(d.pid, "RssShmem");
	if (segment_open(&d, PS_SEG_BYTES, &seg) < 0)
		goto out;
	sleep_ms(PS_SETTLE_MS);
	rss2 = proc_status_kib(d.pid, "VmRSS");
	anon2 = proc_status_kib(d.pid, "RssAnon");
	shm2 = proc_status_kib(d.pid, "RssShmem");
	if (rss0 < 0 || rss1 < 0 || rss2 < 0 || anon1 < 0 || anon2 < 0 || shm1 < 0 || shm2 < 0) {
		fail("cannot read /proc/%d/status", (int)d.pid);
		goto out;
	}
	if (segment_check(seg) < 0)
		goto out;
	res.value = (double)(rss2 - rss1) * 1024.0 / (double)pages;
	snprintf(res.spread, sizeof(res.spread),
		 "no-attach sample %+.4f B/page; RssAnon %+lld KiB, RssShmem %+lld KiB (%" PRIu64
		 " MiB segment)",
		 (double)(rss1 - rss0) * 1024.0 / (double)pages, anon2 - anon1, shm2 - shm1,
		 (uint64_t)(PS_SEG_BYTES / MIB));
	emit(c, &res);
	r = 0;
out:
	tier_segment_destroy(seg);
	if (daemon_stop(c, &d) < 0)
		r = -1;
	return r;
}

/* ---- daemon_cpu ------------------------------------------------------------------------------ */

struct dc_worker {
	pthread_t th;
	uint8_t *base;
	uint64_t hot_pages;
	unsigned slot;
	uint64_t accesses;
	atomic_bool *stop;
};

static void *dc_worker_main(void *arg)
{
	struct dc_worker *w = arg;
	uint64_t rng = 0x9E3779B97F4A7C15ull * (w->slot + 1), n = 0;

	while (!atomic_load_explicit(w->stop, memory_order_relaxed)) {
		/* 64 accesses between checks keep the stop flag off the hot path. */
		for (int i = 0; i < 64; i++) {
			volatile uint64_t *word;

			rng ^= rng << 13;
			rng ^= rng >> 7;
			rng ^= rng << 17;
			/* The hot set is the segment's first 10 %. One word per thread in each
			 * page: the threads never write the same word. */
			word = (volatile uint64_t *)(w->base + (rng % w->hot_pages) * PAGE) + w->slot;
			*word = *word + 1;
		}
		n += 64;
	}
	w->accesses = n;
	return NULL;
}

static uint64_t mem_available_bytes(void)
{
	char line[256];
	uint64_t kib = 0;
	FILE *f = fopen("/proc/meminfo", "re");

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "MemAvailable: %" SCNu64 " kB", &kib) == 1)
			break;
	fclose(f);
	return kib * 1024;
}

static int bench_daemon_cpu(struct ctx *c)
{
	static const char *const args[] = { NULL };
	uint64_t size = DC_SEG_BYTES, pages, cpu0, cpu1, st0, st1, prev, t0, t1, tprev, accesses = 0;
	double share[DC_INTERVALS], lo, hi, scale, populate_s = 0;
	struct result res = { .bench = "daemon_cpu", .metric = "core_share_per_10gib", .unit = "cores",
			      .baseline = DC_TARGET_SHARE, .n = DC_INTERVALS, .target_ratio = 1.0 };
	struct dc_worker w[DC_THREADS];
	struct tier_segment *seg = NULL;
	uint8_t *base = MAP_FAILED;
	struct daemon d = { 0 };
	atomic_bool stop = false;
	long long f0, f1;
	char note[256];
	int started = 0, r = -1;

	/* No swap here: a 10 GiB segment must fit in RAM with room to spare, else scale a smaller one. */
	if (mem_available_bytes() < DC_SEG_BYTES + DC_HEADROOM_BYTES)
		size = DC_SMALL_SEG_BYTES;
	pages = size / PAGE;
	scale = (double)DC_SEG_BYTES / (double)size;

	if (daemon_start(c, &d, -1, args) < 0)
		return -1;
	if (segment_open_populated(&d, size, &seg, &base, &populate_s) < 0)
		goto out;

	f0 = daemon_stat(&d, "faults");
	if (f0 < 0 || proc_cpu_ns(d.pid, &cpu0, &st0) < 0) {
		fail("cannot read tierd's status or CPU time");
		goto out;
	}
	t0 = now_ns();
	for (; started < DC_THREADS; started++) {
		w[started] = (struct dc_worker){ .base = base, .hot_pages = pages / 10,
						 .slot = (unsigned)started, .stop = &stop };
		errno = pthread_create(&w[started].th, NULL, dc_worker_main, &w[started]);
		if (errno) {
			fail("pthread_create: %s", strerror(errno));
			goto out;
		}
	}
	prev = cpu0;
	tprev = t0;
	for (int i = 0; i < DC_INTERVALS; i++) {
		uint64_t now, t;

		sleep_ms(1000);
		t = now_ns();
		if (proc_cpu_ns(d.pid, &now, &st1) < 0)
			goto out;
		share[i] = (double)(now - prev) / (double)(t - tprev) * scale;
		prev = now;
		tprev = t;
	}
	cpu1 = prev;
	t1 = tprev;
	atomic_store(&stop, true);
	for (; started > 0; started--) {
		pthread_join(w[started - 1].th, NULL);
		accesses += w[started - 1].accesses;
	}
	f1 = daemon_stat(&d, "faults");
	if (f1 < 0 || segment_check(seg) < 0)
		goto out;

	res.value = (double)(cpu1 - cpu0) / (double)(t1 - t0) * scale;
	minmax(share, DC_INTERVALS, &lo, &hi);
	snprintf(res.spread, sizeof(res.spread), "per-second %.4f-%.4f", lo, hi);
	snprintf(note, sizeof(note),
		 "baseline is the 2%% target; %" PRIu64 " MiB segment%s, %d threads on a 10%% hot set, "
		 "%.0f faults/s, %.1f M accesses/s; /proc/PID/stat share %.4f; populate %.1f s",
		 size / MIB, scale != 1.0 ? " scaled linearly to 10 GiB" : "", DC_THREADS,
		 (double)(f1 - f0) / ((double)(t1 - t0) / 1e9),
		 (double)accesses / ((double)(t1 - t0) / 1e3), (double)(st1 - st0) / (double)(t1 - t0) * scale,
		 populate_s);
	res.note = note;
	emit(c, &res);
	r = 0;
out:
	atomic_store(&stop, true);
	for (; started > 0; started--)
		pthread_join(w[started - 1].th, NULL);
	tier_segment_destroy(seg);
	if (base != MAP_FAILED)
		munmap(base, size);
	if (daemon_stop(c, &d) < 0)
		r = -1;
	return r;
}

/* ---- main ------------------------------------------------------------------------------------ */

static const struct {
	const char *name;
	int (*run)(struct ctx *c); /* 0 ran, 1 skipped, < 0 failed */
} benches[] = {
	{ "fault_roundtrip", bench_fault_roundtrip },
	{ "window_close", bench_window_close },
	{ "page_state", bench_page_state },
	{ "daemon_cpu", bench_daemon_cpu },
};
#define NBENCH (sizeof(benches) / sizeof(benches[0]))

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: tierd-bench [OPTIONS] BENCH...\n"
		"Runs tierd's core benchmarks; JSON lines go to --json (default stdout), a human\n"
		"summary to stderr. BENCH: fault_roundtrip window_close page_state daemon_cpu all\n\n"
		"  --tierd PATH    tierd binary (default $BUILD/tierd, BUILD defaulting to build)\n"
		"  --dir DIR       scratch directory for tierd's socket and log (default: a fresh one\n"
		"                  under /tmp, removed at exit)\n"
		"  --json FILE     append the JSON lines to FILE\n"
		"  --commit SHA    \"commit\" field (default uncommitted)\n"
		"  --where W       \"where\" field: host or guest (default host)\n"
		"  -h, --help      this help\n");
}

int main(int argc, char **argv)
{
	enum { O_TIERD = 256, O_DIR, O_JSON, O_COMMIT, O_WHERE };
	static const struct option opts[] = {
		{ "tierd", required_argument, NULL, O_TIERD },
		{ "dir", required_argument, NULL, O_DIR },
		{ "json", required_argument, NULL, O_JSON },
		{ "commit", required_argument, NULL, O_COMMIT },
		{ "where", required_argument, NULL, O_WHERE },
		{ "help", no_argument, NULL, 'h' },
		{}
	};
	struct ctx c = { .commit = "uncommitted", .where = "host", .json = stdout };
	bool want[NBENCH] = { false };
	cpu_set_t cpus;
	char tierd_path[512], dir[64];
	const char *build = getenv("BUILD");
	int opt, ran = 0, failed = 0;

	while ((opt = getopt_long(argc, argv, "h", opts, NULL)) >= 0) {
		switch (opt) {
		case O_TIERD:
			c.tierd_bin = optarg;
			break;
		case O_DIR:
			c.dir = optarg;
			break;
		case O_JSON:
			c.json = fopen(optarg, "ae");
			if (!c.json) {
				fprintf(stderr, "tierd-bench: %s: %s\n", optarg, strerror(errno));
				return 2;
			}
			break;
		case O_COMMIT:
			c.commit = optarg;
			break;
		case O_WHERE:
			c.where = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind == argc) {
		usage(stderr);
		return 2;
	}
	for (int i = optind; i < argc; i++) {
		bool all = strcmp(argv[i], "all") == 0, known = all;

		for (size_t b = 0; b < NBENCH; b++)
			if (all || strcmp(argv[i], benches[b].name) == 0) {
				want[b] = true;
				known = true;
			}
		if (!known) {
			fprintf(stderr, "tierd-bench: unknown bench '%s'\n", argv[i]);
			usage(stderr);
			return 2;
		}
	}
	if (!c.tierd_bin) {
		snprintf(tierd_path, sizeof(tierd_path), "%s/tierd", build && *build ? build : "build");
		c.tierd_bin = tierd_path;
	}
	if (access(c.tierd_bin, X_OK) < 0) {
		fprintf(stderr, "tierd-bench: %s: %s\n", c.tierd_bin, strerror(errno));
		return 2;
	}
	if (sched_getaffinity(0, sizeof(cpus), &cpus) < 0) {
		fprintf(stderr, "tierd-bench: sched_getaffinity: %s\n", strerror(errno));
		return 1;
	}
	c.cpu_app = c.cpu_other = -1;
	for (int cpu = 0; cpu < CPU_SETSIZE && c.cpu_other < 0; cpu++)
		if (CPU_ISSET(cpu, &cpus)) {
			if (c.cpu_app < 0)
				c.cpu_app = cpu;
			else
				c.cpu_other = cpu;
		}
	if (!c.dir) {
		snprintf(dir, sizeof(dir), "/tmp/tierd-bench.XXXXXX");
		if (!mkdtemp(dir)) {
			fprintf(stderr, "tierd-bench: mkdtemp: %s\n", strerror(errno));
			return 1;
		}
		c.dir = dir;
		c.own_dir = true;
	}
	snprintf(c.tierd_log, sizeof(c.tierd_log), "%s/tierd.log", c.dir);
	/* segment_open() reports why a segment is untracked; libtier need not say it too. */
	setenv("TIERD_QUIET", "1", 0);

	for (size_t b = 0; b < NBENCH; b++) {
		int r;

		if (!want[b])
			continue;
		/* Undo the previous bench's pinning: threads started later would inherit it. */
		if (sched_setaffinity(0, sizeof(cpus), &cpus) < 0) {
			fprintf(stderr, "tierd-bench: sched_setaffinity: %s\n", strerror(errno));
			failed++;
			break;
		}
		alarm(BENCH_DEADLINE_S);
		r = benches[b].run(&c);
		alarm(0);
		if (r < 0) {
			fprintf(stderr, "tierd-bench: %s FAILED\n", benches[b].name);
			failed++;
		}
		ran += r == 0;
	}
	if (c.own_dir) {
		char sock[128];

		snprintf(sock, sizeof(sock), "%s/tierd.sock", c.dir);
		(void)unlink(sock);
		(void)unlink(c.tierd_log);
		(void)rmdir(c.dir);
	}
	if (c.json != stdout)
		fclose(c.json);
	return failed ? 1 : ran ? 0 : 77;
}
