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
 *   bpf_overhead     added µs (thread CPU time) per user page fault of the eBPF page-fault counter (daemon/bpf.c)
 *                    with the faulting process tracked ("per_page_us": a re-access, so a hash
 *                    insert per fault) and untracked ("untracked_us": what every other process
 *                    pays, one lookup), vs. the same faults with no program attached, in the
 *                    same rounds; and the drain ("drain_us_per_million": CPU µs tierd_bpf_drain
 *                    spends per million samples, one sample per entry, the worst case). The
 *                    faults are minor faults on populated shmem (MADV_DONTNEED, then one write
 *                    per 4 KiB page) in a child forked after pinning to one CPU: its mm never
 *                    ran elsewhere, so the drop flushes no other CPU's TLB (the IPI that
 *                    buried the effect in the first version of this bench). Each round times
 *                    the three cases interleaved (order reversed every other round) with a
 *                    program load per round; medians over rounds, spread as quartiles and
 *                    min/max. Needs root and kernel BTF.
 *
 *   fork_attach      what a forked child of a process with a tracked segment costs (a PostgreSQL
 *                    backend under the shim): the parent's fork() with a tracked 64 MiB shmem
 *                    segment vs. with none ("fork_us"), and the child's time from fork() until
 *                    its own attachment is tracked ("attach_us"); rounds alternate.
 *
 * The next two need two NUMA nodes or more and root; they skip (77) elsewhere, and make bench-vm
 * runs them in the 2-node QEMU guest (tools/bench-vm.sh). Node 0 is the fast node, the highest
 * node the slow one; placement is always measured by the kernel (move_pages status queries through
 * an untracked read-only mapping), never by tierd's counters.
 *   migration_throughput  MB/s of tierd's engine (bytes_moved / move_usec from its status: time
 *                    inside move_pages) promoting a segment placed on the slow node whose every
 *                    page a thread keeps reading ("mbps_4k": 64 MiB shmem; "mbps_2m": 128 MiB
 *                    hugetlb), vs. raw move_pages(MPOL_MF_MOVE_ALL) of an identically placed
 *                    segment, 4096 pages per call, from a second process (tierd's layout: the
 *                    mover's mapping in another mm). Rounds interleave tierd / raw / raw from the
 *                    application's own process / raw with no thread touching the pages; medians,
 *                    with the spread and tierd's end-to-end time (hot thread start to every page
 *                    on the fast node). tierd and the movers share one CPU, the hot thread has
 *                    another; before each 2M round both nodes' pools hold the segment in free
 *                    huge pages (a move takes a target pool page instead of allocating one).
 *   placement        share of a workload's true hot set (10 % of the segment, moved once halfway)
 *                    on the fast node over time, tierd vs. the kernel's NUMA balancing without
 *                    tierd: kernel.numa_balancing=1 plain, =1 with the
 *                    mbind(MPOL_BIND|MPOL_F_NUMA_BALANCING) opt-in, =2 with the opt-in; for
 *                    hugetlb =1 with the opt-in. The fast node is too small for the segment: a
 *                    hog bound there leaves room for 1.5 hot sets in every variant, so the new hot
 *                    set only fits if the old one leaves (tierd demotes; the kernel's mode 1 does
 *                    not). tierd runs with default settings but --reserve-mib (the kernel's own
 *                    floor there, for the same room). Metrics hot_on_fast_shmem,
 *                    hot_on_fast_hugetlb, hot_on_fast_after_shift(_hugetlb) (shares 0-1) and
 *                    converge_s(_hugetlb), converge_s_after_shift(_hugetlb) (seconds to 0.9); the
 *                    baseline is the best kernel variant.
 *
 * Exit status: 0 when every bench ran, 1 when one failed (a harness or daemon failure, never a
 * missed target), 2 on usage errors, 77 when every bench asked for was skipped.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <numa.h>
#include <numaif.h>
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

#include <bpf/bpf.h>

#include "bpf.h"
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
	char spread[384];
	const char *note;
	double target_ratio; /* 0: no target; a miss is reported, never a failure */
	bool target_min;     /* the target is a floor (ratio >= target_ratio), not a ceiling */
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
	if (r->target_ratio > 0) {
		bool met = r->target_min ? ratio >= r->target_ratio : ratio <= r->target_ratio;

		fprintf(stderr, "  target %s %.2f: %s", r->target_min ? ">=" : "<=", r->target_ratio,
			met ? "met" : "MISSED");
	}
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

/* ---- NUMA benches: segments placed on a node, a hot-set workload, placement queries ---------- */

#ifndef MPOL_F_NUMA_BALANCING
#define MPOL_F_NUMA_BALANCING (1 << 13) /* linux/mempolicy.h, 5.12+ */
#endif
#define HUGE_PAGE (2 * MIB)
#define NUMA_BALANCING_SYSCTL "/proc/sys/kernel/numa_balancing"
#define MAX_NODES 64

static int fast_node, slow_node;

/*
 * 1 (skip) unless this machine has two NUMA nodes or more and we are root (MPOL_MF_MOVE_ALL needs
 * CAP_SYS_NICE; huge page pools and kernel.numa_balancing are sysfs/sysctl writes). The fast node
 * is node 0 (tierd's tier 0 in the QEMU guest: it has the CPUs), the slow one the highest node.
 */
static int numa_skip(void)
{
	if (numa_available() < 0 || numa_num_configured_nodes() < 2) {
		fprintf(stderr, "tierd-bench: skipped: fewer than 2 NUMA nodes here (make bench-vm runs "
				"it in a 2-node guest)\n");
		return 1;
	}
	if (geteuid() != 0) {
		fprintf(stderr, "tierd-bench: skipped: needs root (MPOL_MF_MOVE_ALL, huge page pools)\n");
		return 1;
	}
	fast_node = 0;
	slow_node = numa_max_node();
	if (slow_node <= 0 || slow_node >= MAX_NODES) {
		fprintf(stderr, "tierd-bench: skipped: unexpected node numbering (max node %d)\n",
			slow_node);
		return 1;
	}
	return 0;
}

static int write_text(const char *path, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int write_text(const char *path, const char *fmt, ...)
{
	va_list ap;
	FILE *f = fopen(path, "we");
	int r = 0;

	if (!f)
		return -errno;
	va_start(ap, fmt);
	if (vfprintf(f, fmt, ap) < 0)
		r = -EIO;
	va_end(ap);
	if (fclose(f) != 0 && r == 0)
		r = -errno;
	return r;
}

static long read_long(const char *path)
{
	FILE *f = fopen(path, "re");
	long v = -1;

	if (!f)
		return -1;
	if (fscanf(f, "%ld", &v) != 1)
		v = -1;
	fclose(f);
	return v;
}

/* Per-node 2 MiB huge page pools. Migrated huge pages leave the source node's pool and join the
 * target's (TESTBED.md), so each round sets the pools up again. */
static long hp_get(int node, const char *file)
{
	char path[128];

	snprintf(path, sizeof(path), "/sys/devices/system/node/node%d/hugepages/hugepages-2048kB/%s",
		 node, file);
	return read_long(path);
}

static int hp_set(int node, long nr)
{
	char path[128];

	snprintf(path, sizeof(path),
		 "/sys/devices/system/node/node%d/hugepages/hugepages-2048kB/nr_hugepages", node);
	return write_text(path, "%ld\n", nr);
}

static long hp_saved[MAX_NODES];

static void hp_save(void)
{
	for (int n = 0; n <= slow_node; n++)
		hp_saved[n] = hp_get(n, "nr_hugepages");
}

static void hp_restore(void)
{
	for (int n = 0; n <= slow_node; n++)
		if (hp_saved[n] >= 0)
			(void)hp_set(n, hp_saved[n]);
}

/* Exactly `slow_free` free huge pages on the slow node, `fast_free` on the fast node, none on
 * other nodes. */
static int hp_pools(long slow_free, long fast_free)
{
	for (int n = 0; n <= slow_node; n++) {
		long nr = hp_get(n, "nr_hugepages"), fr = hp_get(n, "free_hugepages"), to;
		int e;

		if (nr < 0 || fr < 0)
			return fail("node %d: no 2 MiB huge page pool in sysfs", n);
		to = nr - fr + (n == slow_node ? slow_free : n == fast_node ? fast_free : 0);
		e = to != nr ? hp_set(n, to) : 0;
		if (e < 0)
			return fail("node %d: setting nr_hugepages to %ld: %s", n, to, strerror(-e));
	}
	if (hp_get(slow_node, "free_hugepages") != slow_free)
		return fail("node %d: %ld free huge pages instead of %ld", slow_node,
			    hp_get(slow_node, "free_hugepages"), slow_free);
	if (hp_get(fast_node, "free_hugepages") != fast_free)
		return fail("node %d: %ld free huge pages instead of %ld", fast_node,
			    hp_get(fast_node, "free_hugepages"), fast_free);
	return 0;
}

/*
 * Exactly `want` free huge pages on the slow node (for the segment) and on the fast node (targets
 * for the moves: with free pool pages there a migration takes one, else it allocates a fresh huge
 * page from the buddy allocator, ~4 ms each under emulation; see TESTBED.md), none on other nodes.
 * Migrated pages leave the source node's pool and join the target's, so every round sets the
 * pools again: rounds that found leftover pages on the fast node ran 5x faster.
 */
static int hp_prepare(long want)
{
	return hp_pools(want, want);
}

/* Waits until tierd has let go of every segment (it unmaps its alias when it handles the detach,
 * after tier_segment_destroy() returned): until then the pages are not back in the pools. */
static int daemon_idle(const struct daemon *d)
{
	static char js[65536];

	for (int i = 0; i < 500; i++) {
		int r = tier_status_json(d->sock, js, sizeof(js));

		if (r >= 0 && strstr(js, "\"segments\":[]"))
			return 0;
		sleep_ms(10);
	}
	return fail("tierd still holds a segment 5 s after it was destroyed");
}

/*
 * A workload's segment: a sealed memfd (shmem or hugetlbfs) mapped MAP_SHARED, filled on a chosen
 * node, and then either handed to tierd (tier_segment_adopt: tierd only sees it once it is placed)
 * or left plain (the raw move_pages baseline, the kernel's NUMA balancing).
 */
struct nseg {
	struct tier_segment *seg; /* adopted by tierd; NULL while plain */
	int fd;
	uint8_t *base;     /* the application's mapping */
	uint8_t *observer; /* read-only mapping, never tracked (and skipped by the kernel's NUMA
			    * scanner, which ignores read-only file mappings); it maps pages only
			    * while share_on() asks where they are */
	uint8_t *mover;    /* optional: the mapping raw move_pages acts on (the role of tierd's alias) */
	size_t bytes, page_size;
	uint64_t npages;
};

static void nseg_close(struct nseg *s)
{
	if (s->seg)
		tier_segment_destroy(s->seg); /* closes the memfd */
	else if (s->fd >= 0)
		close(s->fd);
	if (s->base != MAP_FAILED)
		munmap(s->base, s->bytes);
	if (s->observer != MAP_FAILED)
		munmap(s->observer, s->bytes);
	if (s->mover != MAP_FAILED)
		munmap(s->mover, s->bytes);
	s->seg = NULL;
	s->fd = -1;
	s->base = s->observer = s->mover = MAP_FAILED;
}

static double share_on(const struct nseg *s, uint64_t lo, uint64_t hi, int node, uint64_t *noent);

/* Creates the segment and fills every page on `node` (the bench thread's policy, for the writes
 * only); then maps the observer (and populates the mover) over the placed pages. */
static int nseg_create(bool huge, size_t bytes, bool mover, int node, struct nseg *s)
{
	unsigned long mask = 1UL << node;
	double share;

	*s = (struct nseg){ .fd = -1, .base = MAP_FAILED, .observer = MAP_FAILED, .mover = MAP_FAILED,
			    .bytes = bytes, .page_size = huge ? HUGE_PAGE : PAGE };
	s->npages = bytes / s->page_size;
	s->fd = memfd_create("tierd-bench-numa", MFD_CLOEXEC | MFD_ALLOW_SEALING | (huge ? MFD_HUGETLB : 0));
	if (s->fd < 0)
		return fail("memfd_create%s: %s", huge ? "(MFD_HUGETLB)" : "", strerror(errno));
	if (ftruncate(s->fd, (off_t)bytes) < 0 ||
	    fcntl(s->fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0) {
		fail("sizing and sealing the memfd: %s", strerror(errno));
		goto fail;
	}
	s->base = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, s->fd, 0);
	if (s->base == MAP_FAILED) {
		fail("mmap of %zu MiB%s: %s", bytes / MIB, huge ? " of huge pages" : "", strerror(errno));
		goto fail;
	}
	if (set_mempolicy(MPOL_BIND, &mask, sizeof(mask) * 8 + 1) < 0) {
		fail("set_mempolicy(MPOL_BIND, node %d): %s", node, strerror(errno));
		goto fail;
	}
	for (uint64_t p = 0; p < s->npages; p++)
		*(volatile uint64_t *)(s->base + p * s->page_size) = p + 1;
	(void)set_mempolicy(MPOL_DEFAULT, NULL, 0);
	s->observer = mmap(NULL, bytes, PROT_READ, MAP_SHARED, s->fd, 0);
	if (s->observer == MAP_FAILED) {
		fail("observer mapping: %s", strerror(errno));
		goto fail;
	}
	if (mover) {
		s->mover = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, s->fd, 0);
		if (s->mover == MAP_FAILED || madvise(s->mover, bytes, MADV_POPULATE_WRITE) < 0) {
			fail("mover mapping: %s", strerror(errno));
			goto fail;
		}
	}
	share = share_on(s, 0, s->npages, node, NULL);
	if (share < 0.99) {
		fail("only %.3f of the segment landed on node %d", share, node);
		goto fail;
	}
	return 0;
fail:
	nseg_close(s);
	return -1;
}

/* Hands the placed segment to tierd and waits until it is tracked. */
static int nseg_adopt(struct nseg *s, const struct daemon *d, unsigned hang_timeout_ms)
{
	struct tier_options o = { .name = "tierd-bench-numa", .socket_path = d->sock,
				  .kind = s->page_size == HUGE_PAGE ? TIER_HUGETLB : TIER_SHMEM,
				  .hang_timeout_ms = hang_timeout_ms };
	int r = tier_segment_adopt(s->fd, s->base, s->bytes, &o, &s->seg);

	if (r < 0)
		return fail("tier_segment_adopt: %s", strerror(-r));
	s->fd = -1; /* the segment owns it now */
	return segment_wait(&s->seg);
}

/*
 * Share of pages [lo, hi) that move_pages reports on `node`, asked through the observer; pages
 * reported -ENOENT are added to *noent. -1 when the query fails.
 *
 * move_pages only reports pages the asking mapping maps, so the observer maps the range just for
 * the query (read-only: a segment's pages all exist, nothing is allocated) and lets go right after:
 * MPOL_MF_MOVE refuses a page another process maps, so an observer that stayed populated would
 * block tierd's moves of pages its clients have zapped.
 */
static double share_on(const struct nseg *s, uint64_t lo, uint64_t hi, int node, uint64_t *noent)
{
	size_t n = hi - lo, on = 0;
	uint8_t *start = s->observer + lo * s->page_size;
	void **addrs = malloc(n * sizeof(void *));
	int *status = malloc(n * sizeof(int));
	double r = -1;
	int e = 0;

	if (!addrs || !status) {
		e = ENOMEM;
	} else if (madvise(start, n * s->page_size, MADV_POPULATE_READ) < 0) {
		e = errno;
	} else {
		for (size_t i = 0; i < n; i++)
			addrs[i] = start + i * s->page_size;
		if (move_pages(0, n, addrs, NULL, status, 0) == 0) {
			for (size_t i = 0; i < n; i++) {
				on += status[i] == node;
				if (noent && status[i] == -ENOENT)
					(*noent)++;
			}
			r = (double)on / (double)n;
		} else {
			e = errno;
		}
		(void)madvise(start, n * s->page_size, MADV_DONTNEED);
	}
	free(addrs);
	free(status);
	errno = e;
	return r;
}

/* A thread reading one word of every page of the hot set [lo, hi), over and over. */
struct hot {
	pthread_t th;
	int cpu; /* pinned there when >= 0 */
	const uint8_t *base;
	size_t page_size;
	_Atomic uint64_t lo, hi;
	atomic_bool stop;
	bool running;
	uint64_t sweeps;
};

static void *hot_main(void *arg)
{
	struct hot *h = arg;
	uint64_t sum = 0, n = 0;

	if (h->cpu >= 0)
		(void)pin(0, h->cpu);
	while (!atomic_load_explicit(&h->stop, memory_order_relaxed)) {
		uint64_t lo = atomic_load(&h->lo), hi = atomic_load(&h->hi);

		for (uint64_t p = lo; p < hi; p++)
			sum += *(const volatile uint64_t *)(h->base + p * h->page_size +
							    (p % 64) * 64 % h->page_size);
		n++;
	}
	h->sweeps = n + (sum == 1); /* keeps the reads */
	return NULL;
}

static int hot_start(struct hot *h, const struct nseg *s, uint64_t lo, uint64_t hi, int cpu)
{
	h->cpu = cpu;
	h->base = s->base;
	h->page_size = s->page_size;
	atomic_store(&h->lo, lo);
	atomic_store(&h->hi, hi);
	atomic_store(&h->stop, false);
	errno = pthread_create(&h->th, NULL, hot_main, h);
	if (errno)
		return fail("pthread_create: %s", strerror(errno));
	h->running = true;
	return 0;
}

static void hot_stop(struct hot *h)
{
	if (!h->running)
		return;
	atomic_store(&h->stop, true);
	pthread_join(h->th, NULL);
	h->running = false;
}

/* The longest time tierd took to answer a status query (it serves them between migration passes,
 * so this shows how long a pass keeps its event loop away). */
static double status_max_wait_s;

/* tierd's status document, fetched once and read key by key. libtier gives up on one query after
 * 2 s; a busy tierd (a long migration pass) is asked again, for up to a minute. */
static int status_get(const struct daemon *d, char *js, size_t len)
{
	uint64_t t0 = now_ns();
	double w;
	int r;

	do
		r = tier_status_json(d->sock, js, len);
	while (r == -ETIMEDOUT && now_ns() - t0 < 60000000000ull);
	w = (double)(now_ns() - t0) / 1e9;
	status_max_wait_s = w > status_max_wait_s ? w : status_max_wait_s;
	return r < 0 ? fail("cannot read tierd's status: %s", strerror(-r)) : 0;
}

static long long status_key(const char *js, const char *key)
{
	char pat[64];
	const char *p;

	snprintf(pat, sizeof(pat), "\"%s\":", key);
	p = strstr(js, pat);
	return p ? strtoll(p + strlen(pat), NULL, 10) : -1;
}

static double median3(double *v, size_t n)
{
	double s[16];

	if (n == 0)
		return 0;
	if (n > 16)
		n = 16;
	memcpy(s, v, n * sizeof(*s));
	qsort(s, n, sizeof(*s), cmp_double);
	return n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

/* ---- migration_throughput -------------------------------------------------------------------- */

/* 64 MiB is 16384 pages of 4 KiB but only 32 of 2 MiB: one call of ~0.1 s, noisy under emulation. */
#define MT_SEG_BYTES_4K (64 * MIB)
#define MT_SEG_BYTES_2M (128 * MIB)
#define MT_SEG_BYTES(huge) ((huge) ? MT_SEG_BYTES_2M : MT_SEG_BYTES_4K)
#define MT_ROUNDS 5
#define MT_BATCH_PAGES 4096 /* the engine's batch (daemon/migrate.c, MOVE_BATCH_PAGES) */
#define MT_ROUND_TIMEOUT_MS 40000
#define MT_POLL_MS 100
#define MT_TARGET_RATIO 0.9
/* tierd answers no heartbeat while it moves a batch plan: under emulation one pass of 64 MiB takes
 * longer than libtier's default hang timeout (2 s), and the guardian would detach the segment. */
#define MT_HANG_TIMEOUT_MS 60000

/* The hot thread's CPU; tierd and the raw movers run on the other one (-1: unpinned). Unpinned,
 * whether the mover shared a vCPU with the hot thread made single rounds 5x faster or slower. */
static int mt_cpu_hot = -1;

struct mt_round {
	double mbps;      /* bytes moved / time inside move_pages */
	double e2e_s;     /* tierd: hot thread start to every page on the fast node; raw: the loop */
	uint64_t bytes, usec, calls, pages_on_fast;
	uint64_t status_bytes; /* raw: bytes whose move_pages status says moved */
	int first_error;  /* raw: the first per-page status that was neither the target nor 0 */
	long long last_ret; /* raw: the last move_pages return value */
	long long failed; /* tierd: pages it reports as not moved (failed_* counters) */
	long long fallback; /* tierd: zapped pages it found still mapped and moved with MOVE_ALL */
	double app_sweeps_s; /* the hot thread's sweeps of the segment per second, while it moved */
	bool complete;
};

static const char *const mt_failed_keys[] = { "failed_nomem", "failed_busy", "failed_access",
					      "failed_noent", "failed_other" };

static long long mt_failed(const char *js)
{
	long long n = 0;

	for (size_t i = 0; i < sizeof(mt_failed_keys) / sizeof(mt_failed_keys[0]); i++)
		n += status_key(js, mt_failed_keys[i]);
	return n;
}

static const char *const mt_args[] = { "--epoch-ms", "25", "--migrate-every", "2",
				       "--fast-budget-mib", "768", "--rate-limit-mbps", "1000000",
				       "--reserve-mib", "16", "--migrate-mode", NULL, NULL };

/* One round of tierd's engine, started for it with --migrate-mode `mode`: a placed segment is
 * adopted, every page is made hot, and tierd promotes them; its own counters give the bytes and
 * the time inside move_pages. */
static int mt_tierd_round(struct ctx *c, const char *mode, bool huge, struct mt_round *out)
{
	static char js[65536];
	const char *args[sizeof(mt_args) / sizeof(mt_args[0])];
	long long b0, u0, c0, f0, p0, b1, u1, c1, f1;
	struct daemon dm = { 0 }, *d = &dm;
	struct hot h = { 0 };
	struct nseg s = { .fd = -1, .base = MAP_FAILED, .observer = MAP_FAILED, .mover = MAP_FAILED };
	uint64_t t0, deadline;
	double share = 0;
	int r = -1;

	memset(out, 0, sizeof(*out));
	memcpy(args, mt_args, sizeof(args));
	args[sizeof(args) / sizeof(args[0]) - 2] = mode;
	if (daemon_start(c, d, c->cpu_other >= 0 ? c->cpu_app : -1, args) < 0)
		return -1;
	if (huge && hp_prepare((long)(MT_SEG_BYTES(huge) / HUGE_PAGE)) < 0)
		goto out;
	if (nseg_create(huge, MT_SEG_BYTES(huge), false, slow_node, &s) < 0)
		goto out;
	if (status_get(d, js, sizeof(js)) < 0)
		goto out;
	b0 = status_key(js, "bytes_moved");
	u0 = status_key(js, "move_usec");
	c0 = status_key(js, "move_calls");
	f0 = mt_failed(js);
	p0 = status_key(js, "promoted");
	if (nseg_adopt(&s, d, MT_HANG_TIMEOUT_MS) < 0 || hot_start(&h, &s, 0, s.npages, mt_cpu_hot) < 0)
		goto out;
	t0 = now_ns();
	deadline = t0 + MT_ROUND_TIMEOUT_MS * 1000000ull;
	/* Poll tierd's counters, not the pages: a move_pages query of the whole segment every poll
	 * would compete with the moves it measures. The pages are checked once tierd says done, and
	 * every second in case its counters fall short of what it moved. */
	for (unsigned polls = 1; now_ns() < deadline; polls++) {
		long long p;

		sleep_ms(MT_POLL_MS);
		if (status_get(d, js, sizeof(js)) < 0)
			goto out;
		p = status_key(js, "promoted");
		if (p - p0 >= (long long)s.npages || polls % (1000 / MT_POLL_MS) == 0) {
			share = share_on(&s, 0, s.npages, fast_node, NULL);
			if (share >= 1.0)
				break;
		}
	}
	out->e2e_s = (double)(now_ns() - t0) / 1e9;
	out->complete = share >= 1.0;
	hot_stop(&h);
	out->app_sweeps_s = (double)h.sweeps / out->e2e_s;
	/* The move that finished the segment may still be accounting: let one more pass end. */
	sleep_ms(MT_POLL_MS);
	if (status_get(d, js, sizeof(js)) < 0 || segment_check(s.seg) < 0)
		goto out;
	b1 = status_key(js, "bytes_moved");
	u1 = status_key(js, "move_usec");
	c1 = status_key(js, "move_calls");
	f1 = mt_failed(js);
	if (b0 < 0 || u0 < 0 || c0 < 0 || b1 < 0 || u1 < 0 || c1 < 0) {
		fail("tierd's status has no migration counters (bytes_moved, move_usec, move_calls)");
		goto out;
	}
	out->bytes = (uint64_t)(b1 - b0);
	out->usec = (uint64_t)(u1 - u0);
	out->calls = (uint64_t)(c1 - c0);
	out->failed = f1 - f0;
	out->fallback = status_key(js, "move_all_fallback");
	out->pages_on_fast = (uint64_t)(share_on(&s, 0, s.npages, fast_node, NULL) * (double)s.npages + 0.5);
	out->mbps = out->usec ? (double)out->bytes / (double)out->usec : 0;
	r = 0;
out:
	hot_stop(&h);
	nseg_close(&s);
	if (r == 0 && daemon_idle(d) < 0)
		r = -1;
	if (daemon_stop(c, d) < 0)
		r = -1;
	return r;
}

/* Moves every page of `map` to the fast node with move_pages(MPOL_MF_MOVE_ALL), MT_BATCH_PAGES per
 * call in address order, timing each call as tierd does. Async-signal-safe (runs in a forked
 * child): no allocation. */
static int mt_move_all(uint8_t *map, uint64_t npages, size_t ps, void **addrs, int *nodes,
		       int *status, struct mt_round *out)
{
	uint64_t moved = 0, t_start = now_ns();

	for (uint64_t off = 0; off < npages; off += MT_BATCH_PAGES) {
		size_t k = npages - off < MT_BATCH_PAGES ? npages - off : MT_BATCH_PAGES;
		uint64_t t0, t1;
		long m;

		for (size_t i = 0; i < k; i++) {
			addrs[i] = map + (off + i) * ps;
			nodes[i] = fast_node;
			status[i] = -EINVAL;
		}
		t0 = now_ns();
		m = move_pages(0, k, addrs, nodes, status, MPOL_MF_MOVE_ALL);
		t1 = now_ns();
		out->calls++;
		if (m < 0)
			return -errno;
		out->usec += (t1 - t0) / 1000;
		out->last_ret = m;
		for (size_t i = 0; i < k; i++) {
			moved += status[i] == fast_node;
			if (status[i] != fast_node && !out->first_error)
				out->first_error = status[i] ? status[i] : 1000;
		}
	}
	out->e2e_s = (double)(now_ns() - t_start) / 1e9;
	out->bytes = moved * ps;
	return 0;
}

/*
 * One round of the baseline: an identically placed plain segment with the same hot thread on the
 * application's mapping and the same observer, moved by move_pages(MPOL_MF_MOVE_ALL) in the
 * engine's batches. other_process: the move runs in a forked process through its own mapping
 * (tierd's layout: its alias lives in another mm than the application's); else in this process
 * through a third mapping. !hot: no thread touches the pages (the move's upper bound).
 */
static int mt_raw_round(bool huge, bool other_process, bool hot, struct mt_round *out)
{
	void **addrs = malloc(MT_BATCH_PAGES * sizeof(void *));
	int *nodes = malloc(MT_BATCH_PAGES * sizeof(int)), *status = malloc(MT_BATCH_PAGES * sizeof(int));
	struct mt_round *shared = mmap(NULL, sizeof(*shared), PROT_READ | PROT_WRITE,
				       MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	struct nseg s = { .fd = -1, .base = MAP_FAILED, .observer = MAP_FAILED, .mover = MAP_FAILED,
			  .bytes = MT_SEG_BYTES(huge) };
	struct hot h = { 0 };
	pid_t parent = getpid(), pid;
	uint64_t before;
	int r = -1, st;

	memset(out, 0, sizeof(*out));
	if (!addrs || !nodes || !status || shared == MAP_FAILED) {
		fail("out of memory");
		goto out;
	}
	memset(shared, 0, sizeof(*shared));
	if (huge && hp_prepare((long)(MT_SEG_BYTES(huge) / HUGE_PAGE)) < 0)
		goto out;
	if (nseg_create(huge, MT_SEG_BYTES(huge), !other_process, slow_node, &s) < 0)
		goto out;
	before = (uint64_t)(share_on(&s, 0, s.npages, fast_node, NULL) * (double)s.npages + 0.5);
	if (hot && hot_start(&h, &s, 0, s.npages, mt_cpu_hot) < 0)
		goto out;
	sleep_ms(MT_POLL_MS); /* the hot thread is running, as during tierd's moves */
	if (!other_process) {
		int e = mt_move_all(s.mover, s.npages, s.page_size, addrs, nodes, status, out);

		if (e < 0) {
			fail("move_pages(MPOL_MF_MOVE_ALL): %s", strerror(-e));
			goto out;
		}
	} else {
		pid = fork();
		if (pid < 0) {
			fail("fork: %s", strerror(errno));
			goto out;
		}
		if (pid == 0) {
			uint8_t *map;

			if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent)
				_exit(1);
			map = mmap(NULL, s.bytes, PROT_READ | PROT_WRITE, MAP_SHARED, s.fd, 0);
			if (map == MAP_FAILED || madvise(map, s.bytes, MADV_POPULATE_WRITE) < 0)
				_exit(2);
			_exit(mt_move_all(map, s.npages, s.page_size, addrs, nodes, status, shared) < 0 ? 3
													  : 0);
		}
		if (waitpid(pid, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
			fail("the move_pages process failed (status 0x%x)", st);
			goto out;
		}
		*out = *shared;
	}
	hot_stop(&h);
	if (hot && out->e2e_s > 0)
		out->app_sweeps_s = (double)h.sweeps / (out->e2e_s + MT_POLL_MS / 1000.0);
	out->pages_on_fast = (uint64_t)(share_on(&s, 0, s.npages, fast_node, NULL) * (double)s.npages + 0.5);
	out->complete = out->pages_on_fast == s.npages;
	/*
	 * Bytes moved as the kernel shows them afterwards, not from the status array: when a few
	 * pages of a batch fail (-EAGAIN under contention), 6.1's move_pages returns their count and
	 * leaves the status of the whole batch unwritten (mm/migrate.c,
	 * move_pages_and_store_status()), although the other pages did move.
	 */
	out->status_bytes = out->bytes;
	out->bytes = (out->pages_on_fast > before ? out->pages_on_fast - before : 0) * s.page_size;
	/* A round that moved nothing is reported (INCOMPLETE), not a failure of the bench. */
	out->mbps = out->usec ? (double)out->bytes / (double)out->usec : 0;
	r = 0;
out:
	hot_stop(&h);
	nseg_close(&s);
	if (shared != MAP_FAILED)
		munmap(shared, sizeof(*shared));
	free(addrs);
	free(nodes);
	free(status);
	return r;
}

static void mt_emit_mode(struct ctx *c, bool huge, const char *metric, const char *unit,
			 const double *zap, const double *mapped, bool higher_better, const char *what,
			 const double *app_zap, const double *app_mapped, const long long *fallback)
{
	double zlo, zhi, mlo, mhi, azlo, azhi, amlo, amhi;
	long long fb = 0;
	char note[1024];
	struct result res = { .bench = "migration_throughput", .metric = metric, .unit = unit,
			      .n = MT_ROUNDS };

	for (int i = 0; i < MT_ROUNDS; i++)
		fb += fallback[i];
	minmax(zap, MT_ROUNDS, &zlo, &zhi);
	minmax(mapped, MT_ROUNDS, &mlo, &mhi);
	minmax(app_zap, MT_ROUNDS, &azlo, &azhi);
	minmax(app_mapped, MT_ROUNDS, &amlo, &amhi);
	res.value = median3((double *)zap, MT_ROUNDS);
	res.baseline = median3((double *)mapped, MT_ROUNDS);
	snprintf(res.spread, sizeof(res.spread),
		 "medians of %d interleaved rounds; zap %.2f-%.2f, mapped %.2f-%.2f %s", MT_ROUNDS, zlo,
		 zhi, mlo, mhi, unit);
	snprintf(note, sizeof(note),
		 "tierd --migrate-mode zap (the clients zap the batch's pages, MPOL_MF_MOVE on tierd's "
		 "alias, held faults released onto the moved pages) vs --migrate-mode mapped "
		 "(MPOL_MF_MOVE_ALL on pages the application maps), same %" PRIu64 " MiB %s segment, "
		 "every page hot; %s (%s is better); the hot thread's sweeps of the segment per second "
		 "while pages moved: zap median %.1f (%.1f-%.1f), mapped %.1f (%.1f-%.1f); pages the zap "
		 "mode still found mapped and moved with MOVE_ALL: %lld in all rounds",
		 (uint64_t)(MT_SEG_BYTES(huge) / MIB), huge ? "2 MiB hugetlb" : "4 KiB shmem", what,
		 higher_better ? "higher" : "lower", median3((double *)app_zap, MT_ROUNDS), azlo, azhi,
		 median3((double *)app_mapped, MT_ROUNDS), amlo, amhi, fb);
	res.note = note;
	emit(c, &res);
}

static int mt_kind(struct ctx *c, bool huge)
{
	enum { ENGINE, MAPPED, RAW, RAW_SELF, RAW_IDLE, NV };
	static const char *const names[NV] = { "tierd", "tierd-mapped", "raw", "raw-self", "raw-idle" };
	struct mt_round rounds[NV][MT_ROUNDS];
	double v[NV][MT_ROUNDS], te[NV][MT_ROUNDS], app[NV][MT_ROUNDS], lo[NV], hi[NV], elo, ehi;
	long long fb[NV][MT_ROUNDS];
	uint64_t calls[NV] = { 0 }, counted = 0, on_fast = 0;
	int unwritten = 0;
	long long failed = 0;
	int incomplete = 0;
	char note[3072], metric[64];
	struct result res = { .bench = "migration_throughput", .metric = huge ? "mbps_2m" : "mbps_4k",
			      .unit = "MB/s", .n = MT_ROUNDS, .target_ratio = MT_TARGET_RATIO,
			      .target_min = true };

	status_max_wait_s = 0;
	for (int i = 0; i < MT_ROUNDS; i++) {
		/* Rotate the order: none always runs first on a fresher machine. */
		for (int k = 0; k < NV; k++) {
			int which = (i + k) % NV, r;
			struct mt_round *o = &rounds[which][i];

			r = which == ENGINE   ? mt_tierd_round(c, "zap", huge, o)
			    : which == MAPPED ? mt_tierd_round(c, "mapped", huge, o)
					      : mt_raw_round(huge, which != RAW_SELF, which != RAW_IDLE, o);
			if (r < 0)
				return -1;
			fprintf(stderr, "  migration_throughput %s round %d %-12s %8.1f MB/s  %" PRIu64
					" MiB in %" PRIu64 " ms inside %" PRIu64 " move_pages calls; %.2f s end "
					"to end; app %.1f sweeps/s",
				huge ? "2M" : "4K", i + 1, names[which], o->mbps, o->bytes / MIB,
				o->usec / 1000, o->calls, o->e2e_s, o->app_sweeps_s);
			if (which == ENGINE)
				fprintf(stderr, "; %lld pages still mapped (MOVE_ALL)", o->fallback);
			if (!o->complete)
				fprintf(stderr, " (INCOMPLETE: %" PRIu64 " pages on node %d)",
					o->pages_on_fast, fast_node);
			if (which >= RAW && o->status_bytes != o->bytes)
				fprintf(stderr, " (statuses say %" PRIu64 " MiB: move_pages last returned "
						"%lld, first page status %d)",
					o->status_bytes / MIB, o->last_ret, o->first_error);
			fputc('\n', stderr);
			v[which][i] = o->mbps;
			te[which][i] = o->e2e_s;
			app[which][i] = o->app_sweeps_s;
			fb[which][i] = o->fallback;
			calls[which] += o->calls;
			unwritten += which >= RAW && o->status_bytes != o->bytes;
		}
		counted += rounds[ENGINE][i].bytes / (huge ? HUGE_PAGE : PAGE);
		on_fast += rounds[ENGINE][i].pages_on_fast;
		failed += rounds[ENGINE][i].failed;
		incomplete += !rounds[ENGINE][i].complete + !rounds[MAPPED][i].complete;
	}
	for (int k = 0; k < NV; k++)
		minmax(v[k], MT_ROUNDS, &lo[k], &hi[k]);
	minmax(te[ENGINE], MT_ROUNDS, &elo, &ehi);
	res.value = median3(v[ENGINE], MT_ROUNDS);
	res.baseline = median3(v[RAW], MT_ROUNDS);
	snprintf(res.spread, sizeof(res.spread),
		 "medians of %d interleaved rounds; tierd %.1f-%.1f MB/s, raw %.1f-%.1f MB/s; tierd "
		 "--migrate-mode mapped %.1f (%.1f-%.1f); raw from the application's own process: "
		 "median %.1f (%.1f-%.1f); raw with no thread touching the pages: median %.1f "
		 "(%.1f-%.1f)",
		 MT_ROUNDS, lo[ENGINE], hi[ENGINE], lo[RAW], hi[RAW], median3(v[MAPPED], MT_ROUNDS),
		 lo[MAPPED], hi[MAPPED], median3(v[RAW_SELF], MT_ROUNDS), lo[RAW_SELF], hi[RAW_SELF],
		 median3(v[RAW_IDLE], MT_ROUNDS), lo[RAW_IDLE], hi[RAW_IDLE]);
	snprintf(note, sizeof(note),
		 "%" PRIu64 " MiB %s segment on node %d -> node %d, every page hot (a thread reading "
		 "them all); tierd (default --migrate-mode zap): bytes_moved/move_usec of its status; "
		 "raw: move_pages(MPOL_MF_MOVE_ALL), %d pages per call, from a second process through "
		 "its own mapping (tierd's layout), same application mapping, observer and hot thread; "
		 "tierd end to end (hot thread start to all pages on node %d) median %.2f s "
		 "(%.2f-%.2f)%s; move_pages calls per round: tierd %.1f, raw %.1f; tierd counted %" PRIu64
		 " of the %" PRIu64 " pages moved, reported %lld not moved; tierd's slowest answer to a "
		 "status query %.1f s; raw bytes from the pages' nodes afterwards (%d raw rounds had "
		 "move_pages statuses left unwritten)%s",
		 (uint64_t)(MT_SEG_BYTES(huge) / MIB), huge ? "2 MiB hugetlb" : "4 KiB shmem", slow_node,
		 fast_node, MT_BATCH_PAGES, fast_node, median3(te[ENGINE], MT_ROUNDS), elo, ehi,
		 incomplete ? ", SOME ROUNDS INCOMPLETE" : "", (double)calls[ENGINE] / MT_ROUNDS,
		 (double)calls[RAW] / MT_ROUNDS, counted, on_fast, failed, status_max_wait_s, unwritten,
		 huge ? "; both nodes' pools hold the segment's size in free huge pages before each round "
			"(the moves take the target's pool pages)" : "");
	res.note = note;
	emit(c, &res);
	snprintf(metric, sizeof(metric), "zap_vs_mapped_mbps_%s", huge ? "2m" : "4k");
	mt_emit_mode(c, huge, metric, "MB/s", v[ENGINE], v[MAPPED], true,
		     "bytes moved per second inside move_pages", app[ENGINE], app[MAPPED], fb[ENGINE]);
	snprintf(metric, sizeof(metric), "zap_vs_mapped_e2e_%s", huge ? "2m" : "4k");
	mt_emit_mode(c, huge, metric, "s", te[ENGINE], te[MAPPED], false,
		     "seconds from the hot thread's start until every page is on the fast node "
		     "(sampling, passes, zaps and moves)", app[ENGINE], app[MAPPED], fb[ENGINE]);
	return 0;
}

static int bench_migration_throughput(struct ctx *c)
{
	int r;

	if (numa_skip())
		return 1;
	hp_save();
	/* tierd and this thread (the raw movers: it and the processes it forks) on one CPU, the hot
	 * thread on another. libtier's control thread inherits this thread's CPU, as tierd's. */
	mt_cpu_hot = c->cpu_other;
	if (c->cpu_other >= 0 && pin(0, c->cpu_app) < 0)
		return -1;
	r = mt_kind(c, false);
	if (r == 0)
		r = mt_kind(c, true);
	hp_restore();
	return r;
}

/* ---- placement ------------------------------------------------------------------------------- */

#define PL_SHMEM_BYTES (64 * MIB)
#define PL_HUGE_BYTES (128 * MIB)
#define PL_PHASE1_MS 15000
#define PL_PHASE2_MS 15000
#define PL_SAMPLE_MS 500
#define PL_MAX_SAMPLES (PL_PHASE1_MS / PL_SAMPLE_MS)
#define PL_TAIL_SAMPLES 3 /* a phase's share: the mean of its last samples */
#define PL_CONVERGE 0.9
#define PL_TARGET 0.95
/* Room on the fast node, in hot sets: the segment does not fit, one hot set does, two do not, so
 * after the shift the old hot set must leave for the new one to arrive. */
#define PL_ROOM_HOT_SETS 1.5
/*
 * The guest's 1 GiB fast node lets each CPU's list of free pages grow to its low watermark / CPUs
 * (20 MiB here): memory MemFree (tierd's view) and the kernel's watermark checks do not count.
 * Pages a demotion freed went there and stayed, more than the whole room (measured: 6-20 MiB), so
 * the bench holds every list at its minimum (4 batches, ~1 MiB), for tierd and the kernel alike.
 * On a large node the same lists are a small part of the free memory.
 */
#define PCP_SYSCTL "/proc/sys/vm/percpu_pagelist_high_fraction"
#define PL_PCP_FRACTION (1 << 20)

/* tierd answers no heartbeat while it moves a batch: under emulation one batch of this bench's
 * hot pages took 1.5-3 s (0.5-4 ms a page), past libtier's default hang timeout (2 s), and the
 * guardian detached the segment. tierd's time inside move_pages goes in the note. */
#define PL_HANG_TIMEOUT_MS 30000

/* The fast node's free memory the kernel's NUMA balancing never allocates into (pl_floor()), and
 * tierd's --reserve-mib: that rounded up to a MiB. */
static uint64_t pl_floor_bytes;
static unsigned pl_reserve_mib;
static bool pl_pcp_bounded;

struct pl_variant {
	const char *label;
	bool tierd, huge, optin, shift;
	int nb; /* kernel.numa_balancing during the run */
	/* results */
	bool ran;
	char why[160];                   /* why it did not run, or what changed */
	int nsamples[2];
	double series[2][PL_MAX_SAMPLES];
	double share[2], converge_s[2];  /* converge_s < 0: never reached PL_CONVERGE */
	double seg_fast[2];              /* share of the whole segment on the fast node at the end */
	double free_end_mib[2];          /* the fast node's free memory at the end */
	double old_share;                /* the first hot set's share on the fast node at the end */
	double hog_mib, free_mib;        /* the hog, and the free memory it left */
	uint64_t room_bytes;             /* free memory above pl_reserve_mib, for the workload */
	uint64_t noent;
	uint64_t hot_pages;
	long long promoted, demoted, nomem; /* tierd's counters over the run */
	long long move_usec, move_calls;    /* time inside move_pages(2), calls */
};

static int numa_balancing_set(int mode)
{
	return write_text(NUMA_BALANCING_SYSCTL, "%d\n", mode);
}

/* MemFree of `node` in bytes (its sysfs meminfo); 0 when unreadable. */
static uint64_t node_free_bytes(int node)
{
	long long free_bytes = 0;

	return numa_node_size64(node, &free_bytes) < 0 || free_bytes < 0 ? 0 : (uint64_t)free_bytes;
}

/*
 * The fast node's free memory that the kernel's NUMA balancing leaves alone. It promotes only while
 * one of the node's zones is above its high watermark plus the protection that zone keeps from
 * movable allocations, and allocates without reclaim (6.1's migrate_balanced_pgdat and
 * alloc_misplaced_dst_page): it stops with the zones at about their low watermarks plus that
 * protection. Summed over the node's zones from /proc/zoneinfo (a zone with less free counts what
 * it has).
 */
static uint64_t pl_floor(void)
{
	FILE *f = fopen("/proc/zoneinfo", "re");
	char line[512];
	uint64_t pages = 0, zfree = 0, zlow = 0, zprot = 0;
	bool ours = false;
	int node;

	if (!f)
		return 0;
	for (bool more = true; more;) {
		unsigned long v;
		const char *p;

		more = fgets(line, sizeof(line), f) != NULL;
		if (!more || sscanf(line, "Node %d, zone", &node) == 1) {
			if (ours)
				pages += zlow + zprot < zfree ? zlow + zprot : zfree;
			ours = more && node == fast_node;
			zfree = zlow = zprot = 0;
		} else if (!ours) {
			continue;
		} else if (sscanf(line, " pages free %lu", &v) == 1) {
			zfree = v;
		} else if (sscanf(line, " low %lu", &v) == 1) {
			zlow = v;
		} else if ((p = strstr(line, "protection: ("))) {
			/* Non-decreasing by zone: the last is the movable allocations' protection. */
			for (p += strlen("protection: ("); sscanf(p, "%lu", &v) == 1; p++) {
				zprot = v > zprot ? v : zprot;
				p = strchr(p, ',');
				if (!p)
					break;
			}
		}
	}
	fclose(f);
	return pages * PAGE;
}

/*
 * Anonymous memory bound to the fast node that takes its free memory down to `leave` bytes for a
 * variant's duration, the same for tierd and the kernel: the segment then does not fit there.
 * MADV_NOHUGEPAGE keeps it in 4 KiB pages (khugepaged leaves it alone; it is never touched again).
 */
struct pl_hog {
	uint8_t *addr;
	size_t len, filled;
};

static void pl_hog_free(struct pl_hog *h)
{
	if (h->addr && h->addr != MAP_FAILED)
		munmap(h->addr, h->len);
	*h = (struct pl_hog){ 0 };
}

static int pl_hog_fill(struct pl_hog *h, uint64_t leave, struct pl_variant *v)
{
	unsigned long mask = 1UL << fast_node;
	uint64_t free_bytes = node_free_bytes(fast_node);

	*h = (struct pl_hog){ 0 };
	if (free_bytes < leave + 16 * MIB)
		return fail("node %d has %.1f MiB free; the placement bench wants more than %.1f", fast_node,
			    (double)free_bytes / MIB, (double)(leave + 16 * MIB) / MIB);
	/* Room to go on filling if memory is freed meanwhile. */
	h->len = (free_bytes - leave) / PAGE * 2 * PAGE;
	h->addr = mmap(NULL, h->len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
		       -1, 0);
	if (h->addr == MAP_FAILED ||
	    mbind(h->addr, h->len, MPOL_BIND, &mask, sizeof(mask) * 8 + 1, 0) < 0 ||
	    madvise(h->addr, h->len, MADV_NOHUGEPAGE) < 0) {
		fail("hog on node %d: %s", fast_node, strerror(errno));
		pl_hog_free(h);
		return -1;
	}
	/* Page tables cost 1/512 of what is populated, and other allocations come and go: fill in
	 * steps a little short of the gap until within a MiB of it. */
	for (int i = 0; i < 8; i++) {
		uint64_t f = node_free_bytes(fast_node), step;

		if (f <= leave + MIB)
			break;
		step = ((f - leave) / 512 * 511) & ~(uint64_t)(PAGE - 1);
		if (step > h->len - h->filled)
			step = h->len - h->filled;
		if (!step)
			break;
		if (madvise(h->addr + h->filled, step, MADV_POPULATE_WRITE) < 0) {
			fail("populating the hog on node %d: %s", fast_node, strerror(errno));
			pl_hog_free(h);
			return -1;
		}
		h->filled += step;
	}
	v->hog_mib = (double)h->filled / MIB;
	v->free_mib = (double)node_free_bytes(fast_node) / MIB;
	return 0;
}

/* Samples the share of [lo, lo + n) on the fast node every PL_SAMPLE_MS for `ms`. */
static int pl_phase(struct pl_variant *v, int ph, const struct nseg *s, uint64_t lo, uint64_t n,
		    unsigned ms)
{
	uint64_t t0 = now_ns();
	double tail = 0;
	int k, m = 0;

	v->converge_s[ph] = -1;
	for (k = 0; k < (int)(ms / PL_SAMPLE_MS) && k < PL_MAX_SAMPLES; k++) {
		double sh;

		/* Sleep to the sample's time, not by a fixed amount: queries take time too. */
		uint64_t at = t0 + (uint64_t)(k + 1) * PL_SAMPLE_MS * 1000000ull, now = now_ns();

		if (at > now)
			sleep_ms((unsigned)((at - now) / 1000000));
		sh = share_on(s, lo, lo + n, fast_node, &v->noent);
		if (sh < 0)
			return fail("move_pages query: %s", strerror(errno));
		v->series[ph][k] = sh;
		if (sh >= PL_CONVERGE && v->converge_s[ph] < 0)
			v->converge_s[ph] = (double)(now_ns() - t0) / 1e9;
	}
	v->nsamples[ph] = k;
	v->seg_fast[ph] = share_on(s, 0, s->npages, fast_node, NULL);
	v->free_end_mib[ph] = (double)node_free_bytes(fast_node) / MIB;
	for (int i = k - 1; i >= 0 && m < PL_TAIL_SAMPLES; i--, m++)
		tail += v->series[ph][i];
	v->share[ph] = m ? tail / m : 0;
	return 0;
}

static int pl_run(const struct daemon *d, struct pl_variant *v)
{
	static char js[65536];
	unsigned long mask = (1UL << fast_node) | (1UL << slow_node);
	size_t bytes = v->huge ? PL_HUGE_BYTES : PL_SHMEM_BYTES;
	uint64_t lo, lo0, n;
	struct hot h = { 0 };
	struct pl_hog hog = { 0 };
	struct nseg s;
	int r = -1, e;

	/* hugetlb: no free pool page on the fast node, so a promotion allocates a fresh huge page
	 * from the free memory the hog limits (TESTBED.md); pool pages there would be room besides. */
	if (v->huge && hp_pools((long)(bytes / HUGE_PAGE), 0) < 0)
		return -1;
	if ((e = numa_balancing_set(0)) < 0)
		return fail("%s: %s", NUMA_BALANCING_SYSCTL, strerror(-e));
	if (nseg_create(v->huge, bytes, false, slow_node, &s) < 0)
		return -1;
	if (v->optin && mbind(s.base, bytes, MPOL_BIND | MPOL_F_NUMA_BALANCING, &mask,
			      sizeof(mask) * 8 + 1, 0) < 0) {
		e = errno;
		/* 5.12+ accept it for MPOL_BIND; an older kernel says EINVAL: run without. */
		snprintf(v->why, sizeof(v->why),
			 "mbind(MPOL_BIND|MPOL_F_NUMA_BALANCING) refused (%s): ran without the opt-in",
			 strerror(e));
		v->optin = false;
		if (e != EINVAL) {
			fail("mbind: %s", strerror(e));
			goto out;
		}
	}
	/* The hot set: 10 % of the segment from 23 %, then from 71 % (not aligned with tierd's
	 * initial regions, tenths of the segment, which would flatter it). */
	n = s.npages / 10 ? s.npages / 10 : 1;
	v->hot_pages = n;
	v->room_bytes = ((uint64_t)(PL_ROOM_HOT_SETS * (double)(n * s.page_size)) + s.page_size - 1) /
			s.page_size * s.page_size;
	if (v->tierd) {
		if (status_get(d, js, sizeof(js)) < 0)
			goto out;
		v->promoted = -status_key(js, "promoted");
		v->demoted = -status_key(js, "demoted");
		v->nomem = -status_key(js, "failed_nomem");
		v->move_usec = -status_key(js, "move_usec");
		v->move_calls = -status_key(js, "move_calls");
		if (nseg_adopt(&s, d, PL_HANG_TIMEOUT_MS) < 0)
			goto out;
	}
	/* After the adoption, so that tierd's own memory for the segment (alias page tables, page
	 * state) does not come out of the room; nothing is hot yet, so nothing moves meanwhile. */
	if (pl_hog_fill(&hog, (uint64_t)pl_reserve_mib * MIB + v->room_bytes, v) < 0)
		goto out;
	if (!v->tierd && (e = numa_balancing_set(v->nb)) < 0) {
		snprintf(v->why, sizeof(v->why), "kernel.numa_balancing=%d refused (%s)", v->nb,
			 strerror(-e));
		r = 1;
		goto out;
	}
	lo = lo0 = s.npages * 23 / 100;
	if (hot_start(&h, &s, lo, lo + n, -1) < 0 || pl_phase(v, 0, &s, lo, n, PL_PHASE1_MS) < 0)
		goto out;
	if (v->shift) {
		lo = s.npages * 71 / 100;
		atomic_store(&h.lo, lo);
		atomic_store(&h.hi, lo + n);
		if (pl_phase(v, 1, &s, lo, n, PL_PHASE2_MS) < 0)
			goto out;
		v->old_share = share_on(&s, lo0, lo0 + n, fast_node, NULL);
	}
	hot_stop(&h);
	if (v->tierd) {
		if (status_get(d, js, sizeof(js)) < 0 || segment_check(s.seg) < 0)
			goto out;
		v->promoted += status_key(js, "promoted");
		v->demoted += status_key(js, "demoted");
		v->nomem += status_key(js, "failed_nomem");
		v->move_usec += status_key(js, "move_usec");
		v->move_calls += status_key(js, "move_calls");
	}
	v->ran = true;
	r = 0;
out:
	hot_stop(&h);
	(void)numa_balancing_set(0);
	nseg_close(&s);
	pl_hog_free(&hog);
	if (r == 0 && v->tierd && daemon_idle(d) < 0)
		r = -1;
	return r;
}

/* "0.00 0.12 …": every other sample (one per second). */
static void pl_series(const struct pl_variant *v, int ph, char *buf, size_t len)
{
	size_t l = 0;

	buf[0] = '\0';
	for (int i = 1; i < v->nsamples[ph] && l < len; i += 2) {
		int k = snprintf(buf + l, len - l, "%s%.2f", l ? " " : "", v->series[ph][i]);

		if (k < 0)
			break;
		l += (size_t)k;
	}
}

static void pl_describe(const struct pl_variant *v, int ph, char *buf, size_t len)
{
	char conv[32], old[48] = "";

	if (!v->ran) {
		snprintf(buf, len, "%s: not run (%s)", v->label, v->why);
		return;
	}
	if (v->converge_s[ph] >= 0)
		snprintf(conv, sizeof(conv), "0.9 at %.1f s", v->converge_s[ph]);
	else
		snprintf(conv, sizeof(conv), "never 0.9");
	if (ph)
		snprintf(old, sizeof(old), "; old hot set on fast %.3f", v->old_share);
	snprintf(buf, len, "%s %.3f (%s; segment on fast %.3f; node %d free %.1f MiB at the end%s)",
		 v->label, v->share[ph], conv, v->seg_fast[ph], fast_node, v->free_end_mib[ph], old);
}

/* Emits value `v` (phase ph) against the best of the kernel variants `k[0..nk)` that ran. */
static void pl_emit(struct ctx *c, const char *metric, const struct pl_variant *t,
		    const struct pl_variant *const *k, size_t nk, int ph, bool converge)
{
	const struct pl_variant *best = NULL;
	char spread[384], kernel[800], a[256], ts[128], ks[128], tdesc[256];
	struct result res = { .bench = "placement", .metric = metric, .unit = converge ? "s" : "share" };
	size_t kl = 0;
	char note[2048];
	double cap = (ph ? PL_PHASE2_MS : PL_PHASE1_MS) / 1000.0;

	kernel[0] = '\0';
	for (size_t i = 0; i < nk; i++) {
		if (ph && !k[i]->shift)
			continue;
		if (k[i]->ran && (!best || k[i]->share[ph] > best->share[ph]))
			best = k[i];
		pl_describe(k[i], ph, a, sizeof(a));
		kl += (size_t)snprintf(kernel + kl, kl < sizeof(kernel) ? sizeof(kernel) - kl : 0, "%s%s",
				       kl ? "; " : "", a);
		if (kl >= sizeof(kernel))
			kl = sizeof(kernel) - 1;
	}
	if (!t->ran)
		return;
	if (converge) {
		/* Never converged: the phase's length, a lower bound (said in the note). */
		res.value = t->converge_s[ph] >= 0 ? t->converge_s[ph] : cap;
		res.baseline = best ? (best->converge_s[ph] >= 0 ? best->converge_s[ph] : cap) : 0;
	} else {
		res.value = t->share[ph];
		res.baseline = best ? best->share[ph] : 0;
	}
	res.n = (uint64_t)t->nsamples[ph];
	pl_describe(t, ph, tdesc, sizeof(tdesc));
	pl_series(t, ph, ts, sizeof(ts));
	if (best)
		pl_series(best, ph, ks, sizeof(ks));
	else
		snprintf(ks, sizeof(ks), "-");
	snprintf(spread, sizeof(spread), "hot share per second: tierd %s | kernel (%s) %s", ts,
		 best ? best->label : "none", ks);
	snprintf(res.spread, sizeof(res.spread), "%s", spread);
	snprintf(note, sizeof(note),
		 "%s; hot set 10%% of %zu MiB %s (%" PRIu64 " pages), %s, %.0f s; fast node %d too small "
		 "for the segment: a hog (anonymous, bound there) leaves it %.1f MiB free in every variant, "
		 "%.1f MiB (%.1f hot sets) above %u MiB, the kernel's NUMA balancing floor there (low "
		 "watermarks + lowmem protection: %.1f MiB) and tierd's --reserve-mib (flag needed: the "
		 "default 64 MiB would give tierd %.1f MiB less room than the kernel); %s; target %.2f: %s; "
		 "%s; tierd promoted %lld pages, demoted %lld (%s), -ENOMEM refusals %lld, %.1f s inside "
		 "move_pages in %lld calls (its event loop waits meanwhile); baseline: best "
		 "kernel variant, without tierd: %s; tierd otherwise default settings (epoch 100 ms, "
		 "migration every 5 epochs); -ENOENT samples tierd %" PRIu64 ", kernel %" PRIu64 "%s%s",
		 converge ? "seconds until 0.9 of the hot set is on the fast node (the phase length when "
			    "never)"
			  : "share of the hot set on the fast node, mean of the last 1.5 s",
		 (size_t)((t->huge ? PL_HUGE_BYTES : PL_SHMEM_BYTES) / MIB),
		 t->huge ? "hugetlb 2 MiB" : "shmem 4 KiB", t->hot_pages,
		 ph ? "after the hot set moved from 23% to 71%" : "hot set at 23% of the segment", cap,
		 fast_node, t->free_mib, (double)t->room_bytes / MIB, PL_ROOM_HOT_SETS, pl_reserve_mib,
		 (double)pl_floor_bytes / MIB, 64.0 - pl_reserve_mib,
		 pl_pcp_bounded ? "per-CPU free page lists held at ~1 MiB (vm.percpu_pagelist_high_"
				  "fraction; by default they hide up to 20 MiB per CPU from MemFree)"
				: "per-CPU free page lists NOT bounded (no vm.percpu_pagelist_high_fraction)",
		 PL_TARGET,
		 t->share[ph] >= PL_TARGET ? "met" : "MISSED", tdesc, t->promoted, t->demoted,
		 t->demoted > 0 ? "demotion happened" : "NO demotion", t->nomem,
		 (double)t->move_usec / 1e6, t->move_calls, kernel, t->noent,
		 best ? best->noent : 0, t->why[0] ? "; " : "", t->why);
	res.note = note;
	emit(c, &res);
}

static int bench_placement(struct ctx *c)
{
	char reserve[16];
	const char *const args[] = { "--reserve-mib", reserve, NULL };
	struct pl_variant v[] = {
		{ .label = "tierd", .tierd = true, .shift = true },
		{ .label = "tierd", .tierd = true, .huge = true, .shift = true },
		{ .label = "nb=1", .nb = 1 },
		{ .label = "nb=1+opt-in", .nb = 1, .optin = true, .shift = true },
		{ .label = "nb=2+opt-in", .nb = 2, .optin = true },
		{ .label = "nb=1+opt-in", .nb = 1, .optin = true, .huge = true, .shift = true },
	};
	const struct pl_variant *ks[] = { &v[2], &v[3], &v[4] }, *kh[] = { &v[5] };
	long nb0 = read_long(NUMA_BALANCING_SYSCTL), pcp0 = read_long(PCP_SYSCTL);
	struct daemon d = { 0 };
	int r = 0;

	if (numa_skip())
		return 1;
	if (nb0 < 0) {
		fprintf(stderr, "tierd-bench: skipped: no %s (kernel without NUMA balancing)\n",
			NUMA_BALANCING_SYSCTL);
		return 1;
	}
	pl_floor_bytes = pl_floor();
	if (!pl_floor_bytes)
		return fail("cannot read node %d's watermarks from /proc/zoneinfo", fast_node);
	pl_reserve_mib = (unsigned)((pl_floor_bytes + MIB - 1) / MIB);
	snprintf(reserve, sizeof(reserve), "%u", pl_reserve_mib);
	fprintf(stderr, "  placement: node %d's NUMA balancing floor %.1f MiB; tierd --reserve-mib %u\n",
		fast_node, (double)pl_floor_bytes / MIB, pl_reserve_mib);
	hp_save();
	if (daemon_start(c, &d, -1, args) < 0)
		return -1;
	pl_pcp_bounded = pcp0 >= 0 && write_text(PCP_SYSCTL, "%d\n", PL_PCP_FRACTION) == 0;
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]) && r >= 0; i++) {
		uint64_t t0 = now_ns();

		/* The kernel's runs go without tierd. */
		if (!v[i].tierd && d.pid > 0 && daemon_stop(c, &d) < 0)
			r = -1;
		if (r < 0 || pl_run(&d, &v[i]) < 0) {
			r = -1;
			break;
		}
		fprintf(stderr, "  placement %-12s %-7s hot set on node %d: %.3f", v[i].label,
			v[i].huge ? "hugetlb" : "shmem", fast_node, v[i].share[0]);
		if (v[i].shift)
			fprintf(stderr, ", after the shift %.3f (old hot set %.3f)", v[i].share[1],
				v[i].old_share);
		fprintf(stderr, "; segment on node %d: %.3f", fast_node, v[i].seg_fast[v[i].shift]);
		if (v[i].tierd)
			fprintf(stderr, " (tierd promoted %lld, demoted %lld pages, -ENOMEM %lld, %.1f s in "
				"%lld move_pages calls; hot set %" PRIu64 ")", v[i].promoted, v[i].demoted,
				v[i].nomem, (double)v[i].move_usec / 1e6, v[i].move_calls, v[i].hot_pages);
		fprintf(stderr, "; hog %.0f MiB, node %d free %.1f MiB, at the end %.1f; %.0f s%s%s\n",
			v[i].hog_mib, fast_node, v[i].free_mib, v[i].free_end_mib[v[i].shift],
			(double)(now_ns() - t0) / 1e9, v[i].why[0] ? "; " : "", v[i].why);
		for (int ph = 0; ph < (v[i].shift ? 2 : 1); ph++) {
			fprintf(stderr, "    %s:", ph ? "after shift" : "phase 1   ");
			for (int k = 0; k < v[i].nsamples[ph]; k++)
				fprintf(stderr, " %.2f", v[i].series[ph][k]);
			fprintf(stderr, "\n");
		}
	}
	if (daemon_stop(c, &d) < 0)
		r = -1;
	(void)numa_balancing_set((int)nb0);
	if (pl_pcp_bounded)
		(void)write_text(PCP_SYSCTL, "%ld\n", pcp0);
	hp_restore();
	if (r < 0)
		return -1;
	pl_emit(c, "hot_on_fast_shmem", &v[0], ks, 3, 0, false);
	pl_emit(c, "hot_on_fast_hugetlb", &v[1], kh, 1, 0, false);
	pl_emit(c, "hot_on_fast_after_shift", &v[0], ks, 3, 1, false);
	pl_emit(c, "hot_on_fast_after_shift_hugetlb", &v[1], kh, 1, 1, false);
	pl_emit(c, "converge_s", &v[0], ks, 3, 0, true);
	pl_emit(c, "converge_s_hugetlb", &v[1], kh, 1, 0, true);
	pl_emit(c, "converge_s_after_shift", &v[0], ks, 3, 1, true);
	pl_emit(c, "converge_s_after_shift_hugetlb", &v[1], kh, 1, 1, true);
	return 0;
}

/* ---- bpf_overhead ---------------------------------------------------------------------------- */

/* 16 Ki pages (64 MiB) per pass: a pass of ~1 µs faults takes ~16 ms, far above the clock's noise;
 * 21 rounds (odd: a true median) with a program load each stay within a few seconds. */
#define BO_PAGES 16384u
#define BO_ROUNDS 21
#define BO_TARGET_US 0.3 /* the issue's target for the per-page counter */
#define BO_SEG 1

/* A tracked re-access pass with the counter loaded as bo_variant()'s opts say: the program's ns per
 * fault, µs per fault, and the CPU µs of the drain after it, with the counts it handed over. */
struct bo_variant {
	double ns, us, drain_us;
	uint64_t counted;
};

struct bo_round {
	double off_us, untracked_us, tracked_us; /* per fault */
	double drain_cpu_us;                     /* one drain of BO_PAGES entries, CPU time */
	uint64_t counted, first_touch, other;
	/* The program's own run time per fault, from the kernel's BPF run-time stats (0 when the
	 * kernel keeps none): tracked re-access faults as tierd loads it (the initial pid namespace's
	 * fast path), the same with the pid namespace helper, and faults of an untracked process. */
	double prog_ns, prog_helper_ns, prog_untracked_ns;
	struct bo_variant percpu; /* the per-CPU counters (sampling.bpf_percpu_pages) */
};

static void bo_sum(void *ctx, uint32_t seg, uint64_t page, uint64_t count)
{
	(void)seg;
	(void)page;
	*(uint64_t *)ctx += count;
}

static uint64_t thread_cpu_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Drops the mapping's pages (they stay in the memfd), then times one write per page: BO_PAGES
 * minor faults. Returns µs per fault. Timed in the thread's CPU time (user + the kernel's fault
 * handling, BPF programs included), not wall time: on a shared host the CPU this process is
 * pinned to also runs others, and their share would be counted as fault time (wall time gave
 * 40 µs per fault at load average 10 here). */
static double bo_pass(uint8_t *m)
{
	uint64_t t0;

	if (madvise(m, (size_t)BO_PAGES * PAGE, MADV_DONTNEED) < 0)
		return -1;
	t0 = thread_cpu_ns();
	for (size_t i = 0; i < BO_PAGES; i++)
		((volatile uint8_t *)m)[i * PAGE] = (uint8_t)i;
	return (double)(thread_cpu_ns() - t0) / 1e3 / BO_PAGES;
}

/* ns per run of the page-fault program over `pass`'s faults (kernel BPF stats); 0 without stats. */
static double bo_prog_ns(struct tierd_bpf *b, uint8_t *m, double *pass_us)
{
	uint64_t ns0, n0, ns1, n1;

	if (tierd_bpf_fault_runtime(b, &ns0, &n0) < 0)
		return *pass_us = bo_pass(m), 0;
	*pass_us = bo_pass(m);
	if (tierd_bpf_fault_runtime(b, &ns1, &n1) < 0 || n1 <= n0)
		return 0;
	return (double)(ns1 - ns0) / (double)(n1 - n0);
}

static int bo_variant(uint8_t *m, const struct tierd_bpf_opts *o, struct bo_variant *v)
{
	struct tierd_bpf *b = NULL;
	char why[256];
	uint64_t t0;
	int e = tierd_bpf_new(o, &b, why, sizeof(why));

	if (e < 0)
		return e;
	e = tierd_bpf_track(b, (uint32_t)getpid(), (uintptr_t)m, (uint64_t)BO_PAGES * PAGE, BO_SEG, PAGE);
	if (e == 0 && bo_pass(m) < 0) /* first touches */
		e = -EIO;
	if (e == 0) {
		v->ns = bo_prog_ns(b, m, &v->us);
		t0 = thread_cpu_ns();
		e = tierd_bpf_drain(b, bo_sum, &v->counted);
		v->drain_us = (double)(thread_cpu_ns() - t0) / 1e3;
	}
	tierd_bpf_free(b);
	return e < 0 ? e : 0;
}

/* The pid namespace helper's and the per-CPU counters' variants, in `reverse` order or not. */
static int bo_variants(uint8_t *m, bool reverse, struct bo_round *r)
{
	const struct tierd_bpf_opts helper = { .map_entries = BO_PAGES, .max_procs = 16, .pidns_helper = true };
	const struct tierd_bpf_opts percpu = { .map_entries = BO_PAGES, .max_procs = 16, .percpu_pages = BO_PAGES };
	struct bo_variant h = { 0 };
	int e;

	if (reverse) {
		e = bo_variant(m, &percpu, &r->percpu);
		if (e == 0)
			e = bo_variant(m, &helper, &h);
	} else {
		e = bo_variant(m, &helper, &h);
		if (e == 0)
			e = bo_variant(m, &percpu, &r->percpu);
	}
	r->prog_helper_ns = h.ns;
	return e;
}

/* One round in the measuring child: detached, untracked and tracked passes, in `reverse` order
 * or not; the tracked pass is a re-access pass (a first, untimed one sets the pages' seen bits),
 * and its counts are drained, timed in CPU time. Returns 0 or a negative errno. */
static int bo_round(uint8_t *m, bool reverse, struct bo_round *r)
{
	struct tierd_bpf_opts o = { .map_entries = BO_PAGES, .max_procs = 16 };
	struct tierd_bpf *b = NULL;
	struct tierd_bpf_stats st = { 0 };
	uint64_t t0, none = 0;
	char why[256];
	int e;

	if (reverse && (e = bo_variants(m, true, r)) < 0)
		return e;
	if (!reverse)
		r->off_us = bo_pass(m);
	e = tierd_bpf_new(&o, &b, why, sizeof(why));
	if (e < 0) {
		fprintf(stderr, "tierd-bench: skipped: bpf_overhead: %s\n", why);
		return e;
	}
	if (!reverse)
		r->prog_untracked_ns = bo_prog_ns(b, m, &r->untracked_us);
	e = tierd_bpf_track(b, (uint32_t)getpid(), (uintptr_t)m, (uint64_t)BO_PAGES * PAGE, BO_SEG, PAGE);
	if (e == 0 && bo_pass(m) < 0) /* first touches since tracked: not timed */
		e = -EIO;
	if (e == 0)
		r->prog_ns = bo_prog_ns(b, m, &r->tracked_us);
	if (e == 0) {
		t0 = thread_cpu_ns();
		e = tierd_bpf_drain(b, bo_sum, &r->counted);
		r->drain_cpu_us = (double)(thread_cpu_ns() - t0) / 1e3;
	}
	if (e >= 0)
		e = tierd_bpf_untrack(b, (uint32_t)getpid(), (uintptr_t)m);
	if (e == 0 && reverse)
		r->prog_untracked_ns = bo_prog_ns(b, m, &r->untracked_us);
	if (e == 0)
		e = tierd_bpf_drain(b, bo_sum, &none);
	if (e >= 0)
		e = tierd_bpf_stats(b, &st);
	tierd_bpf_free(b);
	if (e < 0)
		return e;
	if (reverse)
		r->off_us = bo_pass(m);
	if (!reverse && (e = bo_variants(m, false, r)) < 0)
		return e;
	r->first_touch = st.first_touch;
	r->other = none;
	return 0;
}

static int cmp_dbl(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* Sorts v and says "p25 A p75 B, min C max D". */
static void quartiles(double *v, size_t n, char *buf, size_t len)
{
	qsort(v, n, sizeof(double), cmp_dbl);
	snprintf(buf, len, "p25 %.3f p75 %.3f, min %.3f max %.3f", v[n / 4], v[(3 * n) / 4], v[0], v[n - 1]);
}

static int bench_bpf_overhead(struct ctx *c)
{
	struct bo_round *rounds;
	double off[BO_ROUNDS], add_t[BO_ROUNDS], add_u[BO_ROUNDS], drain[BO_ROUNDS], tracked[BO_ROUNDS];
	double pns[BO_ROUNDS], pns_helper[BO_ROUNDS], pns_untracked[BO_ROUNDS];
	double add_pc[BO_ROUNDS], pns_pc[BO_ROUNDS], drain_pc[BO_ROUNDS];
	struct result res = { .bench = "bpf_overhead", .unit = "us", .n = (uint64_t)BO_ROUNDS * BO_PAGES };
	char q[160];
	pid_t kid;
	int st, fd;

	if (geteuid() != 0) {
		fprintf(stderr, "tierd-bench: skipped: bpf_overhead needs root (CAP_BPF, CAP_PERFMON)\n");
		return 1;
	}
	/* Results come back through shared memory: the child is the process being measured. */
	rounds = mmap(NULL, sizeof(*rounds) * BO_ROUNDS, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
		      -1, 0);
	if (rounds == MAP_FAILED)
		return fail("bpf_overhead: mmap: %s", strerror(errno));
	if (pin(0, c->cpu_app) < 0)
		return -1;
	kid = fork();
	if (kid < 0)
		return fail("bpf_overhead: fork: %s", strerror(errno));
	if (kid == 0) {
		uint8_t *m;

		/* A new mm, born on the one CPU this process may run on. */
		fd = memfd_create("tierd-bench-bpf", MFD_CLOEXEC);
		if (fd < 0 || ftruncate(fd, (off_t)BO_PAGES * PAGE) < 0)
			_exit(2);
		m = mmap(NULL, (size_t)BO_PAGES * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		if (m == MAP_FAILED)
			_exit(2);
		memset(m, 1, (size_t)BO_PAGES * PAGE); /* populated: every later fault is minor */
		if (bo_pass(m) < 0) /* warm: page tables, the allocator */
			_exit(2);
		/* The kernel times BPF programs while this fd is open (prog_ns); without it the
		 * end-to-end figures still stand. */
		(void)bpf_enable_stats(BPF_STATS_RUN_TIME);
		for (unsigned k = 0; k < BO_ROUNDS; k++) {
			int e = bo_round(m, k & 1, &rounds[k]);

			if (e < 0)
				_exit(e == -EPERM || e == -ENOENT ? 77 : 3);
		}
		_exit(0);
	}
	if (waitpid(kid, &st, 0) != kid || !WIFEXITED(st))
		return fail("bpf_overhead: the measuring child died");
	if (WEXITSTATUS(st) == 77)
		return 1;
	if (WEXITSTATUS(st) != 0)
		return fail("bpf_overhead: the measuring child failed (%d)", WEXITSTATUS(st));
	for (unsigned k = 0; k < BO_ROUNDS; k++) {
		const struct bo_round *r = &rounds[k];

		/* A tracked re-access is counted once per page; nothing of the untracked passes. */
		if (r->counted != BO_PAGES || r->other || r->first_touch != BO_PAGES ||
		    r->percpu.counted != BO_PAGES)
			return fail("bpf_overhead: round %u: %u faults, %" PRIu64 " counted, %" PRIu64
				    " first touches, %" PRIu64 " left over", k, BO_PAGES, r->counted,
				    r->first_touch, r->other);
		off[k] = r->off_us;
		tracked[k] = r->tracked_us;
		add_t[k] = r->tracked_us - r->off_us;
		add_u[k] = r->untracked_us - r->off_us;
		drain[k] = r->drain_cpu_us * 1e6 / BO_PAGES;
		pns[k] = r->prog_ns;
		pns_helper[k] = r->prog_helper_ns;
		pns_untracked[k] = r->prog_untracked_ns;
		add_pc[k] = r->percpu.us - r->off_us;
		pns_pc[k] = r->percpu.ns;
		drain_pc[k] = r->percpu.drain_us;
	}
	munmap(rounds, sizeof(*rounds) * BO_ROUNDS);
	qsort(off, BO_ROUNDS, sizeof(double), cmp_dbl);
	qsort(tracked, BO_ROUNDS, sizeof(double), cmp_dbl);

	quartiles(add_t, BO_ROUNDS, q, sizeof(q));
	res.metric = "per_page_us";
	res.value = add_t[BO_ROUNDS / 2];
	res.baseline = off[BO_ROUNDS / 2];
	res.note = "value: added us per minor fault of a tracked process (a re-access: hash insert), "
		   "tracked - detached in the same round; baseline: us per minor fault detached; target "
		   "value <= 0.3";
	snprintf(res.spread, sizeof(res.spread), "added %s over %d rounds; tracked %.3f us vs detached %.3f us "
		 "per fault (medians); target %s", q, BO_ROUNDS, tracked[BO_ROUNDS / 2], off[BO_ROUNDS / 2],
		 res.value <= BO_TARGET_US ? "met" : "missed");
	emit(c, &res);

	quartiles(add_u, BO_ROUNDS, q, sizeof(q));
	res.metric = "untracked_us";
	res.value = add_u[BO_ROUNDS / 2];
	res.note = "value: added us per minor fault of a process tierd does not track (one hash "
		   "lookup); baseline: us per fault detached";
	snprintf(res.spread, sizeof(res.spread), "added %s over %d rounds", q, BO_ROUNDS);
	emit(c, &res);

	quartiles(add_pc, BO_ROUNDS, q, sizeof(q));
	res.metric = "per_cpu_us";
	res.value = add_pc[BO_ROUNDS / 2];
	res.note = "value: added us per minor fault of a tracked process with per-CPU counters "
		   "(sampling.bpf_percpu_pages: an array slot per page and CPU, no hash), minus detached "
		   "in the same round; baseline: us per fault detached; target value <= 0.05";
	snprintf(res.spread, sizeof(res.spread), "added %s over %d rounds; target %s", q, BO_ROUNDS,
		 res.value <= 0.05 ? "met" : "missed");
	emit(c, &res);

	quartiles(drain, BO_ROUNDS, q, sizeof(q));
	res.metric = "drain_us_per_million";
	res.value = drain[BO_ROUNDS / 2];
	/* What the samples cost the faulting processes: a million tracked faults. */
	res.baseline = tracked[BO_ROUNDS / 2] * 1e6;
	res.n = BO_ROUNDS;
	res.note = "value: CPU us tierd_bpf_drain spends per million samples (one per entry, "
		   "16384 entries per drain: batched lookup-and-delete); baseline: us a million "
		   "tracked faults cost the faulting process";
	snprintf(res.spread, sizeof(res.spread), "%s over %d drains", q, BO_ROUNDS);
	emit(c, &res);

	/* The program's own cost, timed by the kernel: unlike the figures above, not lost in the
	 * noise of a fault that costs 16-22 us on this VM. */
	qsort(pns_helper, BO_ROUNDS, sizeof(double), cmp_dbl);
	qsort(pns_untracked, BO_ROUNDS, sizeof(double), cmp_dbl);
	quartiles(pns, BO_ROUNDS, q, sizeof(q));
	if (pns[0] <= 0) {
		fprintf(stderr, "tierd-bench: bpf_overhead: the kernel keeps no BPF run-time stats: no prog_ns\n");
		return 0;
	}
	res.metric = "prog_ns";
	res.unit = "ns";
	res.value = pns[BO_ROUNDS / 2];
	res.baseline = pns_helper[BO_ROUNDS / 2];
	res.n = (uint64_t)BO_ROUNDS * BO_PAGES;
	res.note = "value: ns the page-fault program runs per tracked re-access fault as tierd loads it "
		   "(initial pid namespace: tgid read directly), kernel BPF run-time stats (their two "
		   "clock reads included); baseline: the same with the pid namespace helper (tierd in a "
		   "container)";
	snprintf(res.spread, sizeof(res.spread), "%s; helper p25 %.1f p75 %.1f; over %d rounds", q,
		 pns_helper[BO_ROUNDS / 4], pns_helper[(3 * BO_ROUNDS) / 4], BO_ROUNDS);
	emit(c, &res);

	quartiles(pns_pc, BO_ROUNDS, q, sizeof(q));
	res.metric = "prog_percpu_ns";
	res.value = pns_pc[BO_ROUNDS / 2];
	res.baseline = pns[BO_ROUNDS / 2];
	res.note = "value: ns the page-fault program runs per tracked re-access fault with per-CPU "
		   "counters; baseline: with the hash (prog_ns's value)";
	snprintf(res.spread, sizeof(res.spread), "%s over %d rounds", q, BO_ROUNDS);
	emit(c, &res);

	quartiles(drain_pc, BO_ROUNDS, q, sizeof(q));
	res.metric = "drain_percpu_us";
	res.unit = "us";
	res.value = drain_pc[BO_ROUNDS / 2];
	res.baseline = drain[BO_ROUNDS / 2] * BO_PAGES / 1e6;
	res.note = "value: CPU us of one per-CPU drain of a 16384-page range with every page counted "
		   "(it reads every tracked page's slots whether faulted or not); baseline: the hash "
		   "drain of the same 16384 entries";
	snprintf(res.spread, sizeof(res.spread), "%s over %d drains", q, BO_ROUNDS);
	emit(c, &res);
	res.unit = "ns";

	quartiles(pns_untracked, BO_ROUNDS, q, sizeof(q));
	res.metric = "prog_untracked_ns";
	res.value = pns_untracked[BO_ROUNDS / 2];
	res.baseline = off[BO_ROUNDS / 2] * 1e3;
	res.note = "value: ns the page-fault program runs per fault of a process tierd does not track "
		   "(every process on the host pays it); baseline: ns of a minor fault detached";
	snprintf(res.spread, sizeof(res.spread), "%s over %d rounds", q, BO_ROUNDS);
	emit(c, &res);
	return 0;
}

/* ---- fork_attach ----------------------------------------------------------------------------- */

#define FA_ROUNDS 6
#define FA_FORKS 100
#define FA_SEG_BYTES (64 * MIB)

/*
 * FA_FORKS forks, each child exiting at once (seg NULL) or once its own attachment of the
 * inherited segment is tracked (libtier's atfork handler starts it, as for a PostgreSQL backend
 * under the shim). fork_us: what the parent waits in fork(); attach_us: fork to tracked, in the
 * child.
 */
static int fa_round(struct tier_segment *seg, double *fork_us, double *attach_us)
{
	for (int i = 0; i < FA_FORKS; i++) {
		uint64_t t0, t1, v = 0;
		int p[2], st;
		pid_t pid;

		if (pipe2(p, O_CLOEXEC) < 0)
			return fail("pipe: %s", strerror(errno));
		t0 = now_ns();
		pid = fork();
		if (pid == 0) {
			if (seg && tier_segment_wait_tracked(seg, TRACK_TIMEOUT_MS) == 0)
				v = now_ns() - t0;
			(void)!write(p[1], &v, sizeof(v));
			_exit(0);
		}
		t1 = now_ns();
		close(p[1]);
		if (pid < 0) {
			close(p[0]);
			return fail("fork: %s", strerror(errno));
		}
		if (read(p[0], &v, sizeof(v)) != (ssize_t)sizeof(v))
			v = 0;
		close(p[0]);
		waitpid(pid, &st, 0);
		if (seg && v == 0)
			return fail("a forked child was not tracked within %u ms", TRACK_TIMEOUT_MS);
		fork_us[i] = (double)(t1 - t0) / 1e3;
		attach_us[i] = (double)v / 1e3;
	}
	return 0;
}

static double median_of(double *v, size_t n)
{
	qsort(v, n, sizeof(*v), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static int bench_fork_attach(struct ctx *c)
{
	static const char *const args[] = { NULL };
	static double plain[FA_ROUNDS * FA_FORKS], tracked[FA_ROUNDS * FA_FORKS],
		attach[FA_ROUNDS * FA_FORKS], unused[FA_FORKS];
	double round_plain[FA_ROUNDS], round_tracked[FA_ROUNDS], round_attach[FA_ROUNDS];
	struct result res = { .bench = "fork_attach", .unit = "us", .n = FA_ROUNDS * FA_FORKS };
	struct daemon d = { 0 };
	double lo, hi, lo2, hi2, a90;
	int r = -1;

	/* The attach itself, not libtier's default wait before a child attaches (100 ms: children
	 * that live shorter never attach; pgbench's connect_ratio measures that policy). */
	setenv("TIERD_CHILD_ATTACH_DELAY_MS", "0", 1);
	if (daemon_start(c, &d, -1, args) < 0)
		return -1;
	/* Rounds alternate: a process with no segment, then one with a tracked 64 MiB segment. */
	for (int k = 0; k < FA_ROUNDS; k++) {
		struct tier_segment *seg = NULL;

		if (fa_round(NULL, plain + k * FA_FORKS, unused) < 0)
			goto out;
		if (segment_open(&d, FA_SEG_BYTES, &seg) < 0)
			goto out;
		if (fa_round(seg, tracked + k * FA_FORKS, attach + k * FA_FORKS) < 0) {
			tier_segment_destroy(seg);
			goto out;
		}
		tier_segment_destroy(seg);
		round_plain[k] = median_of(plain + k * FA_FORKS, FA_FORKS);
		round_tracked[k] = median_of(tracked + k * FA_FORKS, FA_FORKS);
		round_attach[k] = median_of(attach + k * FA_FORKS, FA_FORKS);
	}
	minmax(round_tracked, FA_ROUNDS, &lo, &hi);
	minmax(round_plain, FA_ROUNDS, &lo2, &hi2);
	res.metric = "fork_us";
	res.value = median_of(tracked, FA_ROUNDS * FA_FORKS);
	res.baseline = median_of(plain, FA_ROUNDS * FA_FORKS);
	res.note = "value: us the parent spends in fork() with a tracked 64 MiB shmem segment "
		   "(libtier's atfork handlers); baseline: fork() with no segment; interleaved rounds";
	snprintf(res.spread, sizeof(res.spread), "per-round medians %.1f-%.1f, baseline %.1f-%.1f "
		 "(%d rounds x %d forks)", lo, hi, lo2, hi2, FA_ROUNDS, FA_FORKS);
	emit(c, &res);
	minmax(round_attach, FA_ROUNDS, &lo, &hi);
	res.metric = "attach_us";
	res.value = median_of(attach, FA_ROUNDS * FA_FORKS);
	a90 = attach[(size_t)(FA_ROUNDS * FA_FORKS * 0.9)];
	res.note = "value: us from fork() until the child's own attachment is tracked (control "
		   "thread, uffd, ATTACH, tierd's registration), in the background of the child; "
		   "baseline: a plain fork()";
	snprintf(res.spread, sizeof(res.spread), "per-round medians %.0f-%.0f, p90 %.0f, max %.0f",
		 lo, hi, a90, attach[FA_ROUNDS * FA_FORKS - 1]);
	emit(c, &res);
	r = 0;
out:
	if (daemon_stop(c, &d) < 0)
		r = -1;
	return r;
}

/* ---- main ------------------------------------------------------------------------------------ */

static const struct {
	const char *name;
	int (*run)(struct ctx *c); /* 0 ran, 1 skipped, < 0 failed */
	unsigned deadline_s;       /* 0: BENCH_DEADLINE_S */
} benches[] = {
	{ "fault_roundtrip", bench_fault_roundtrip, 0 },
	{ "window_close", bench_window_close, 0 },
	{ "page_state", bench_page_state, 0 },
	{ "daemon_cpu", bench_daemon_cpu, 0 },
	{ "bpf_overhead", bench_bpf_overhead, 0 },
	{ "fork_attach", bench_fork_attach, 0 },
	/* Under emulation (the QEMU guest) these take minutes. */
	{ "migration_throughput", bench_migration_throughput, 720 },
	{ "placement", bench_placement, 420 },
};
#define NBENCH (sizeof(benches) / sizeof(benches[0]))

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: tierd-bench [OPTIONS] BENCH...\n"
		"Runs tierd's core benchmarks; JSON lines go to --json (default stdout), a human\n"
		"summary to stderr. BENCH: fault_roundtrip window_close page_state daemon_cpu\n"
		"migration_throughput placement (these two need 2+ NUMA nodes and root) all\n\n"
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
		alarm(benches[b].deadline_s ? benches[b].deadline_s : BENCH_DEADLINE_S);
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
