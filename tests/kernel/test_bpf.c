/* SPDX-License-Identifier: MIT */
/*
 * The eBPF page-fault counter (bpf/fault.bpf.c) through its loader (daemon/bpf.c), on the real
 * kernel: a page's first fault since it was tracked (populating a fresh shmem page) is a first
 * touch, not a sample; a page faulted N times more is counted N times; faults of another process
 * at the same addresses are not; tracking a range again starts its pages unseen again; the
 * first-touch bits run out with -ENOBUFS; a map too small for the pages touched counts the rest
 * as overflow; tierd feeds the counts to its status with a real client; and tierd without
 * CAP_BPF/CAP_PERFMON runs on and says why the sampler is off. Needs root and kernel BTF: skipped
 * with the reason otherwise.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <numaif.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "bpf.h"
#include "harness.h"
#include "log.h"
#include "perfsel.h"

#define PAGE 4096u
#define NPAGES 64u
#define SEG 7u

/* Faults a test page takes beyond the ones it asked for (none seen here; room for a kernel that
 * retries a fault once). */
#define EPSILON 2

struct tally {
	uint64_t count[NPAGES];
	uint64_t entries, other; /* entries drained; counts of other segments or pages */
};

/* A configuration that turns the sampler on, whatever the default; `extra`: more [sampling]
 * lines. */
static const char *bpf_conf_with(const char *name, const char *extra)
{
	static char path[256];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s.conf", harness_dir(), name);
	f = fopen(path, "we");
	assert_non_null(f);
	fprintf(f, "[sampling]\nbpf = yes\n%s", extra);
	fclose(f);
	return path;
}

static const char *bpf_conf(void)
{
	return bpf_conf_with("bpf", "");
}

static void on_sample(void *ctx, uint32_t seg, uint64_t page, uint64_t count)
{
	struct tally *t = ctx;

	t->entries++;
	if (seg == SEG && page < NPAGES)
		t->count[page] += count;
	else
		t->other += count;
}

/* Exactly one fault per call: the page is dropped from this process's page tables (it stays in
 * the shmem file), and a write maps it back in that one fault (write faults do no fault-around). */
static void refault(volatile uint8_t *p)
{
	assert_int_equal(madvise((void *)p, PAGE, MADV_DONTNEED), 0);
	*p = 1;
}

/* NPAGES of a fresh shmem memfd, mapped shared and not populated: each page's first write
 * allocates it (a population fault), later MADV_DONTNEED + write are minor faults. */
static uint8_t *shmem_map(void)
{
	int fd = memfd_create("test_bpf", MFD_CLOEXEC);
	uint8_t *m;

	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, NPAGES * PAGE), 0);
	m = mmap(NULL, NPAGES * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	assert_true(m != MAP_FAILED);
	close(fd);
	return m;
}

/* A forked child (another tgid, the same addresses) drops and writes the page n times. */
static void child_refaults(uint8_t *page, unsigned n)
{
	pid_t kid = fork();
	int st;

	assert_true(kid >= 0);
	if (kid == 0) {
		for (unsigned i = 0; i < n; i++) {
			if (madvise(page, PAGE, MADV_DONTNEED) < 0)
				_exit(1);
			page[0] = 2;
		}
		_exit(0);
	}
	assert_int_equal(waitpid(kid, &st, 0), kid);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

/* A fresh shmem_map(), tracked as segment SEG of this process. */
static uint8_t *tracked_shmem(struct tierd_bpf *b)
{
	uint8_t *m = shmem_map();

	assert_int_equal(tierd_bpf_track(b, (uint32_t)getpid(), (uintptr_t)m, NPAGES * PAGE, SEG, PAGE), 0);
	return m;
}

static uint64_t first_touches(const struct tierd_bpf *b)
{
	struct tierd_bpf_stats st;

	assert_int_equal(tierd_bpf_stats(b, &st), 0);
	return st.first_touch;
}

static bool can_run(void)
{
	if (geteuid() != 0) {
		print_message("skipped: needs root (CAP_BPF and CAP_PERFMON)\n");
		return false;
	}
	if (access("/sys/kernel/btf/vmlinux", R_OK) < 0) {
		print_message("skipped: no kernel BTF (/sys/kernel/btf/vmlinux)\n");
		return false;
	}
	return true;
}

static struct tierd_bpf *load_opts(uint32_t entries, uint64_t seen_pages, bool pidns_helper,
				   uint64_t percpu_pages)
{
	struct tierd_bpf_opts o = { .map_entries = entries, .max_procs = 16, .seen_pages = seen_pages,
				    .pidns_helper = pidns_helper, .percpu_pages = percpu_pages };
	struct tierd_bpf *b = NULL;
	char why[256] = "";
	int r;

	r = tierd_bpf_new(&o, &b, why, sizeof(why));
	if (r < 0)
		print_message("tierd_bpf_new: %s\n", why);
	assert_int_equal(r, 0);
	return b;
}

static struct tierd_bpf *load_seen(uint32_t entries, uint64_t seen_pages)
{
	return load_opts(entries, seen_pages, false, 0);
}

static struct tierd_bpf *load(uint32_t entries)
{
	return load_seen(entries, 0);
}

/* Populating fresh pages is not heat: those faults are first touches; only a page's later faults
 * are counted. Tracking a range again starts its pages over as unseen. */
static void test_first_touch(void **state)
{
	struct tally t = { 0 };
	struct tierd_bpf *b;
	uint64_t ft0, ft;
	uint8_t *m;

	(void)state;
	if (!can_run())
		skip();
	b = load(1024);
	m = tracked_shmem(b);
	ft0 = first_touches(b);
	for (unsigned i = 0; i < NPAGES; i++)
		m[i * PAGE] = 1; /* allocates the page */
	ft = first_touches(b) - ft0;
	assert_int_equal(tierd_bpf_drain(b, on_sample, &t), 0);
	print_message("%u fresh pages written: %llu first touches, 0 samples\n", NPAGES,
		      (unsigned long long)ft);
	assert_true(ft >= NPAGES && ft <= NPAGES + EPSILON);

	/* Re-accesses: every page dropped and written again, page 3 four times more. */
	for (unsigned i = 0; i < NPAGES; i++)
		refault(m + i * PAGE);
	for (unsigned i = 0; i < 4; i++)
		refault(m + 3 * PAGE);
	assert_int_equal(tierd_bpf_drain(b, on_sample, &t), NPAGES);
	for (unsigned i = 0; i < NPAGES; i++)
		assert_true(t.count[i] >= (i == 3 ? 5u : 1u) && t.count[i] <= (i == 3 ? 5u : 1u) + EPSILON);
	assert_int_equal(t.other, 0);
	assert_true(first_touches(b) - ft0 <= NPAGES + EPSILON);

	/* Tracked again (as a process that attaches anew): its first faults are first touches again,
	 * even though the pages exist now. */
	assert_int_equal(tierd_bpf_untrack(b, (uint32_t)getpid(), (uintptr_t)m), 0);
	assert_int_equal(tierd_bpf_track(b, (uint32_t)getpid(), (uintptr_t)m, NPAGES * PAGE, SEG, PAGE), 0);
	ft0 = first_touches(b);
	memset(&t, 0, sizeof(t));
	refault(m + 7 * PAGE);
	refault(m + 7 * PAGE);
	assert_int_equal(tierd_bpf_drain(b, on_sample, &t), 1);
	assert_true(first_touches(b) - ft0 >= 1 && first_touches(b) - ft0 <= 1 + EPSILON);
	assert_true(t.count[7] >= 1 && t.count[7] <= 1 + EPSILON);
	munmap(m, NPAGES * PAGE);
	tierd_bpf_free(b);
}

/* The first-touch bits are a fixed budget (sampling.bpf_seen_pages): a range that does not fit
 * is refused with -ENOBUFS, and an untracked range's bits are reused. */
static void test_seen_budget(void **state)
{
	struct tierd_bpf *b;
	uint32_t me = (uint32_t)getpid();

	(void)state;
	if (!can_run())
		skip();
	b = load_seen(1024, 8192); /* 128 words */
	assert_int_equal(tierd_bpf_track(b, me, 0x100000, 8193 * (uint64_t)PAGE, 1, PAGE), -ENOBUFS);
	assert_int_equal(tierd_bpf_track(b, me, 0x100000, 4096 * (uint64_t)PAGE, 1, PAGE), 0);
	assert_int_equal(tierd_bpf_track(b, me, 0x10000000, 4000 * (uint64_t)PAGE, 2, PAGE), 0);
	/* 1 word left: 64 pages fit, 65 do not. */
	assert_int_equal(tierd_bpf_track(b, me, 0x20000000, 65 * (uint64_t)PAGE, 3, PAGE), -ENOBUFS);
	assert_int_equal(tierd_bpf_track(b, me, 0x20000000, 64 * (uint64_t)PAGE, 3, PAGE), 0);
	assert_int_equal(tierd_bpf_untrack(b, me, 0x100000), 0);
	assert_int_equal(tierd_bpf_track(b, 4242, 0x100000, 4096 * (uint64_t)PAGE, 4, PAGE), 0);
	assert_int_equal(tierd_bpf_track(b, 4242, 0x40000000, PAGE, 5, PAGE), -ENOBUFS);
	tierd_bpf_free(b);
}

/* pidns_helper: the program asks the pid namespace helper for the tgid, as when tierd runs in a
 * container; otherwise (tierd in the initial namespace, as here) it reads the tgid directly.
 * percpu_pages: per-CPU counters instead of the hash. */
static void count_and_filter(bool pidns_helper, uint64_t percpu_pages)
{
	const unsigned n = 1000, p = 5, child_n = 700;
	struct tally t = { 0 };
	struct tierd_bpf *b;
	uint8_t *m;

	if (!can_run())
		skip();
	b = load_opts(1024, 0, pidns_helper, percpu_pages);
	m = tracked_shmem(b);

	m[p * PAGE] = 1; /* populates: a first touch */
	for (unsigned i = 0; i < n; i++)
		refault(m + p * PAGE);
	assert_true(tierd_bpf_drain(b, on_sample, &t) >= 1);
	print_message("page %u faulted %u times: counted %llu\n", p, n, (unsigned long long)t.count[p]);
	assert_true(t.count[p] >= n && t.count[p] <= n + EPSILON);
	for (unsigned i = 0; i < NPAGES; i++)
		if (i != p)
			assert_int_equal(t.count[i], 0);
	assert_int_equal(t.other, 0);

	/* Drained means deleted: nothing left for the next drain. */
	memset(&t, 0, sizeof(t));
	assert_int_equal(tierd_bpf_drain(b, on_sample, &t), 0);

	/* Another process (same addresses, another tgid) is not counted. */
	child_refaults(m + p * PAGE, child_n);
	assert_int_equal(tierd_bpf_drain(b, on_sample, &t), 0);
	print_message("child faulted page %u %u times: counted %llu\n", p, child_n,
		      (unsigned long long)t.count[p]);

	/* Untracked: no more counts, and the range is gone (-ENOENT a second time). */
	assert_int_equal(tierd_bpf_untrack(b, (uint32_t)getpid(), (uintptr_t)m), 0);
	for (unsigned i = 0; i < 100; i++)
		refault(m + p * PAGE);
	assert_int_equal(tierd_bpf_drain(b, on_sample, &t), 0);
	assert_int_equal(tierd_bpf_untrack(b, (uint32_t)getpid(), (uintptr_t)m), -ENOENT);

	munmap(m, NPAGES * PAGE);
	tierd_bpf_free(b);
}

static void test_count_and_filter(void **state)
{
	(void)state;
	count_and_filter(false, 0);
}

static void test_count_and_filter_nshelper(void **state)
{
	(void)state;
	count_and_filter(true, 0);
}

static void test_count_and_filter_percpu(void **state)
{
	(void)state;
	count_and_filter(false, 4096);
}

/* Several ranges of one process, and a full table. */
static void test_ranges(void **state)
{
	struct tally t = { 0 };
	struct tierd_bpf *b;
	uint8_t *m;

	(void)state;
	if (!can_run())
		skip();
	b = load(1024);
	m = shmem_map();
	/* Eight ranges of 8 pages, segment SEG + i: page 3 of range 2 is (SEG + 2, 3). */
	for (unsigned i = 0; i < 8; i++)
		assert_int_equal(tierd_bpf_track(b, (uint32_t)getpid(), (uintptr_t)(m + i * 8 * PAGE),
						 8 * PAGE, SEG + i, PAGE), 0);
	assert_int_equal(tierd_bpf_track(b, 4242, 0, PAGE, 1, PAGE), 0); /* another process */
	assert_int_equal(tierd_bpf_track(b, (uint32_t)getpid(), 0, PAGE, 99, PAGE), -ENOSPC);
	assert_int_equal(tierd_bpf_track(b, (uint32_t)getpid(), 0, PAGE, 99, 3000), -EINVAL);
	m[(2 * 8 + 3) * PAGE] = 1; /* a first touch */
	for (unsigned i = 0; i < 10; i++)
		refault(m + (2 * 8 + 3) * PAGE);
	assert_int_equal(tierd_bpf_drain(b, on_sample, &t), 1);
	/* on_sample files other segments under `other`: the one entry is (SEG + 2, 3). */
	assert_true(t.other >= 10 && t.other <= 10 + EPSILON);
	munmap(m, NPAGES * PAGE);
	tierd_bpf_free(b);
}

/* Per-CPU counters: each range's pages land on its own (segment, page); counts a range left behind
 * are not handed to the range that reuses its slots; the page budget caps what can be tracked. */
static void test_percpu_ranges(void **state)
{
	struct tally t = { 0 };
	struct tierd_bpf *b;
	uint8_t *m;

	(void)state;
	if (!can_run())
		skip();
	b = load_opts(1024, 0, false, 128); /* 128 pages: two 64-page extents */
	m = shmem_map();
	/* Two ranges of 32 pages: the first as segment SEG, the second as SEG + 1. */
	assert_int_equal(tierd_bpf_track(b, (uint32_t)getpid(), (uintptr_t)m, 32 * PAGE, SEG, PAGE), 0);
	assert_int_equal(tierd_bpf_track(b, (uint32_t)getpid(), (uintptr_t)(m + 32 * PAGE), 32 * PAGE,
					 SEG + 1, PAGE), 0);
	/* The budget is used up: a third range is refused. */
	assert_int_equal(tierd_bpf_track(b, (uint32_t)getpid(), 0, PAGE, 99, PAGE), -ENOBUFS);
	m[7 * PAGE] = 1;
	m[(32 + 7) * PAGE] = 1;
	for (unsigned i = 0; i < 30; i++)
		refault(m + 7 * PAGE);
	for (unsigned i = 0; i < 12; i++)
		refault(m + (32 + 7) * PAGE);
	assert_int_equal(tierd_bpf_drain(b, on_sample, &t), 2);
	print_message("page 7 of SEG 30 faults: %llu; page 7 of SEG+1 12 faults: %llu (others)\n",
		      (unsigned long long)t.count[7], (unsigned long long)t.other);
	assert_true(t.count[7] >= 30 && t.count[7] <= 30 + EPSILON);
	assert_true(t.other >= 12 && t.other <= 12 + EPSILON);
	for (unsigned i = 0; i < NPAGES; i++)
		if (i != 7)
			assert_int_equal(t.count[i], 0);

	/* Faults after the drain, then untracked: the next range in those slots starts at 0. */
	for (unsigned i = 0; i < 5; i++)
		refault(m + 7 * PAGE);
	assert_int_equal(tierd_bpf_untrack(b, (uint32_t)getpid(), (uintptr_t)m), 0);
	assert_int_equal(tierd_bpf_track(b, (uint32_t)getpid(), (uintptr_t)m, 32 * PAGE, SEG, PAGE), 0);
	memset(&t, 0, sizeof(t));
	assert_int_equal(tierd_bpf_drain(b, on_sample, &t), 0);
	refault(m + 7 * PAGE); /* a first touch again: the range is new */
	for (unsigned i = 0; i < 3; i++)
		refault(m + 7 * PAGE);
	assert_int_equal(tierd_bpf_drain(b, on_sample, &t), 1);
	assert_true(t.count[7] >= 3 && t.count[7] <= 3 + EPSILON);
	assert_int_equal(t.other, 0);
	munmap(m, NPAGES * PAGE);
	tierd_bpf_free(b);

	/* 64 distinct pages with a hash of 16 entries: the hash would count 48 as overflow, the
	 * per-CPU counters take them all. */
	b = load_opts(16, 0, false, 4096);
	m = tracked_shmem(b);
	for (unsigned i = 0; i < NPAGES; i++)
		m[i * PAGE] = 1;
	for (unsigned i = 0; i < NPAGES; i++)
		refault(m + i * PAGE);
	memset(&t, 0, sizeof(t));
	assert_int_equal(tierd_bpf_drain(b, on_sample, &t), NPAGES);
	for (unsigned i = 0; i < NPAGES; i++)
		assert_true(t.count[i] >= 1 && t.count[i] <= 1 + EPSILON);
	{
		struct tierd_bpf_stats st;

		assert_int_equal(tierd_bpf_stats(b, &st), 0);
		assert_int_equal(st.overflow, 0);
	}
	munmap(m, NPAGES * PAGE);
	tierd_bpf_free(b);
}

static void test_overflow(void **state)
{
	const uint32_t entries = 16;
	struct tally t = { 0 };
	struct tierd_bpf_stats st;
	uint64_t overflow = 0, sum = 0;
	struct tierd_bpf *b;
	uint8_t *m;
	int n;

	(void)state;
	if (!can_run())
		skip();
	b = load(entries);
	m = tracked_shmem(b);
	for (unsigned i = 0; i < NPAGES; i++)
		m[i * PAGE] = 1; /* first touches: not counted, not overflow */
	/* 64 distinct pages, one re-access each, into a map of 16. */
	for (unsigned i = 0; i < NPAGES; i++)
		refault(m + i * PAGE);
	n = tierd_bpf_drain(b, on_sample, &t);
	assert_int_equal(tierd_bpf_stats(b, &st), 0);
	overflow = st.overflow;
	for (unsigned i = 0; i < NPAGES; i++)
		sum += t.count[i];
	print_message("%u pages into %u entries: %d drained (%llu faults), overflow %llu\n", NPAGES,
		      entries, n, (unsigned long long)sum, (unsigned long long)overflow);
	assert_true(n > 0 && (uint32_t)n <= entries);
	/* Every fault is somewhere: in the map or in the overflow counter. */
	assert_true(sum + overflow >= NPAGES && sum + overflow <= NPAGES + EPSILON);
	assert_true(overflow >= NPAGES - entries);
	munmap(m, NPAGES * PAGE);
	tierd_bpf_free(b);
}

/* The perf_event sampler on the software page-fault event (what a machine without PEBS/IBS, like
 * this one, can run; the same program reads a PEBS/IBS sample's address): every fault of the
 * tracked process in its range is a sample with period 1, every 4th with period 4; a child's
 * faults at the same addresses are not counted. */
static void perf_case(uint64_t period, unsigned n)
{
	struct tierd_bpf_opts o = { .map_entries = 1024, .max_procs = 16, .perf_map_entries = 1024 };
	struct tierd_bpf *b = NULL;
	struct perfsel ev;
	struct tally t = { 0 };
	char why[512] = "";
	const unsigned p = 9, child_n = 300;
	uint64_t expect;
	uint8_t *m;

	/* A root without PMUs: the software event, whatever this machine has. */
	assert_int_equal(perfsel_probe("/nonexistent", true, period, &ev, why, sizeof(why)), 0);
	assert_int_equal(ev.kind, PERFSEL_SOFTWARE);
	if (tierd_bpf_new(&o, &b, why, sizeof(why)) < 0)
		fail_msg("tierd_bpf_new: %s", why);
	if (tierd_bpf_perf_start(b, &ev, why, sizeof(why)) < 0)
		fail_msg("tierd_bpf_perf_start: %s", why);
	assert_true(tierd_bpf_perf_cpus(b) >= 1);
	m = tracked_shmem(b);
	child_refaults(m + p * PAGE, child_n);
	/* The child populated the page: every one of ours is a refault (no first touch here). */
	for (unsigned i = 0; i < n; i++)
		refault(m + p * PAGE);
	assert_true(tierd_bpf_perf_drain(b, on_sample, &t) >= 0);
	expect = n / period;
	print_message("period %llu: %u faults of ours, %u of a child: %llu samples (expected %llu)\n",
		      (unsigned long long)period, n, child_n, (unsigned long long)t.count[p],
		      (unsigned long long)expect);
	/* A sampling period counts per CPU event: up to one period's worth per CPU is left over. */
	assert_true(t.count[p] + (uint64_t)tierd_bpf_perf_cpus(b) >= expect && t.count[p] <= expect + EPSILON);
	for (unsigned i = 0; i < NPAGES; i++)
		if (i != p)
			assert_int_equal(t.count[i], 0);
	assert_int_equal(t.other, 0);
	munmap(m, NPAGES * PAGE);
	tierd_bpf_free(b);
}

static void test_perf_software(void **state)
{
	(void)state;
	if (!can_run())
		skip();
	perf_case(1, 500);
	perf_case(4, 400);
}

/* The migration-outcome counter loads and names the kernel's reasons. On this one-node host a
 * move_pages(2) to the node the pages are on migrates nothing and never calls migrate_pages(), so
 * the tracepoint does not fire: what it counts is tested where pages move (tests/vm/test_kmig.c,
 * tests/vm/test_migrate.c). */
static void test_migrate_loads(void **state)
{
	struct tierd_kmig k[TIERD_BPF_MIGRATE_REASONS];
	struct tierd_bpf *mg;
	void *pages[NPAGES];
	int nodes[NPAGES], status[NPAGES];
	uint64_t calls = 0;
	bool syscall = false;
	uint8_t *m;

	(void)state;
	if (!can_run())
		skip();
	mg = load(64);
	assert_null(tierd_bpf_migrate_status(mg));
	for (unsigned r = 0; r < TIERD_BPF_MIGRATE_REASONS; r++) {
		const char *n = tierd_bpf_migrate_reason(mg, r);

		syscall |= n && !strcmp(n, "syscall");
	}
	assert_true(syscall);
	m = shmem_map();
	memset(m, 1, NPAGES * PAGE);
	for (unsigned i = 0; i < NPAGES; i++) {
		pages[i] = m + i * PAGE;
		nodes[i] = 0;
	}
	assert_int_equal(move_pages(0, NPAGES, pages, nodes, status, MPOL_MF_MOVE), 0);
	assert_int_equal(tierd_bpf_migrate_read(mg, k), 0);
	for (unsigned r = 0; r < TIERD_BPF_MIGRATE_REASONS; r++)
		calls += k[r].calls;
	print_message("move_pages of %u pages to node 0, where they are: %llu migrate_pages calls "
		      "seen (none expected: nothing to migrate)\n",
		      NPAGES, (unsigned long long)calls);
	munmap(m, NPAGES * PAGE);
	tierd_bpf_free(mg);
}

/* tierd loads its programs on a thread after it listens: waits (up to 10 s) until that is done,
 * so that a client's faults from its start are seen. */
static void wait_loaded(const char *sock)
{
	static char js[65536];
	int r = -1;

	for (int i = 0; i < 500 && (r <= 0 || strstr(js, "off: loading")); i++) {
		if (i)
			msleep(20);
		r = status_fetch(sock, js, sizeof(js));
	}
	assert_true(r > 0);
	assert_null(strstr(js, "off: loading"));
}

/* tierd with a real client: the client's faults reach the status as samples. */
/* conf: tierd's configuration file; counters: what the status must say of the counters. */
static void tierd_samples(const char *conf, const char *counters)
{
	char sock[256], cout[256], js[65536], want[64];
	char *argv[] = { (char *)harness_bin("tests/helpers/tier-client"), "--socket", sock, "--kind",
			 "shmem", "--threads", "2", "--mib", "16", "--ms", "1500", "--wait-tracked",
			 "3000", NULL };
	long long samples, faults, first;
	pid_t d, c;

	if (!can_run())
		skip();
	snprintf(sock, sizeof(sock), "%s/bpf.sock", harness_dir());
	snprintf(cout, sizeof(cout), "%s/bpf.client", harness_dir());
	d = daemon_start(sock, "--config", conf, "--epoch-ms", "50", NULL);
	assert_true(d > 0);
	wait_loaded(sock);
	c = spawn_out(argv, cout, NULL);
	assert_int_equal(wait_exit(c, 30000), 0);
	msleep(200); /* an epoch drains what the client's last faults left */
	assert_true(status_fetch(sock, js, sizeof(js)) > 0);
	assert_non_null(strstr(js, "\"samplers\":{\"page_fault\":\"on\""));
	snprintf(want, sizeof(want), "\"counters\":\"%s\"", counters);
	assert_non_null(strstr(js, want));
	/* The migration counter runs too; one node: tierd moves nothing, the kernel reports nothing. */
	assert_non_null(strstr(js, "\"migrate\":\"on\""));
	assert_int_equal(json_int(js, "\"kernel_migrations\"", "calls"), 0);
	/* No PEBS/IBS here and the software event not asked for: the perf sampler says so. */
	if (access("/sys/bus/event_source/devices/ibs_op", F_OK) < 0 &&
	    access("/sys/bus/event_source/devices/cpu/events/mem-loads", F_OK) < 0 &&
	    access("/sys/bus/event_source/devices/cpu_core/events/mem-loads", F_OK) < 0)
		assert_non_null(strstr(js, "\"perf\":\"off: no PEBS"));
	samples = json_int(js, "\"samplers\"", "samples");
	faults = json_int(js, "\"stats\"", "faults");
	first = json_int(js, "\"samplers\"", "first_touch");
	print_message("client: %lld uffd faults, %lld sampled page faults, %lld first touches, "
		      "overflow %lld\n",
		      faults, samples, first, json_int(js, "\"samplers\"", "overflow"));
	/* Every fault tierd resolved was a page fault of the client in its segment: the counter saw
	 * it as a sample, or as the page's first fault in the client (one per page at most: the
	 * client's 16 MiB are 4096 pages, which it populates once). */
	assert_true(faults > 0);
	assert_true(first > 0 && first <= 4096 + EPSILON);
	assert_true(samples + first >= faults);
	assert_true(samples > 0);
	assert_int_equal(json_int(js, "\"samplers\"", "overflow"), 0);
	daemon_stop(d);
}

static void test_tierd_samples(void **state)
{
	(void)state;
	tierd_samples(bpf_conf(), "hash");
}

/* The same with per-CPU counters (4096 client pages of 16384 the counters cover). */
static void test_tierd_samples_percpu(void **state)
{
	(void)state;
	tierd_samples(bpf_conf_with("percpu", "bpf_percpu_pages = 16384\n"), "per-cpu");
}

/* tierd with the perf sampler on the software page-fault event (sampling.perf_software = yes): the
 * client's faults reach the status as perf samples too. */
static void test_tierd_perf(void **state)
{
	char sock[256], cout[256], js[65536];
	char *argv[] = { (char *)harness_bin("tests/helpers/tier-client"), "--socket", sock, "--kind",
			 "shmem", "--threads", "2", "--mib", "16", "--ms", "1000", "--wait-tracked",
			 "3000", NULL };
	const char *on;
	pid_t d, c;

	(void)state;
	if (!can_run())
		skip();
	snprintf(sock, sizeof(sock), "%s/perf.sock", harness_dir());
	snprintf(cout, sizeof(cout), "%s/perf.client", harness_dir());
	d = daemon_start(sock, "--config", bpf_conf_with("perf", "perf_software = yes\nperf_period = 2\n"),
			 "--epoch-ms", "50", NULL);
	assert_true(d > 0);
	wait_loaded(sock);
	c = spawn_out(argv, cout, NULL);
	assert_int_equal(wait_exit(c, 30000), 0);
	msleep(200);
	assert_true(status_fetch(sock, js, sizeof(js)) > 0);
	on = strstr(js, "\"perf\":\"");
	assert_non_null(on);
	print_message("%.90s; %lld perf samples, %lld page-fault samples + %lld first touches\n", on,
		      json_int(js, "\"samplers\"", "perf_samples"), json_int(js, "\"samplers\"", "samples"),
		      json_int(js, "\"samplers\"", "first_touch"));
	assert_non_null(strstr(js, "\"perf\":\"on: software page-faults, period 2"));
	/* Every other fault of the client in its segment, populating ones included. */
	assert_true(json_int(js, "\"samplers\"", "perf_samples") > 0);
	daemon_stop(d);
}

/* tierd without CAP_BPF, CAP_PERFMON (and CAP_SYS_ADMIN, which would stand in for them) runs on
 * and says why the sampler is off. */
static void test_no_privilege(void **state)
{
	char sock[256], out[256], cout[256], js[65536], text[8192];
	char *cargv[] = { (char *)harness_bin("tests/helpers/tier-client"), "--socket", sock, "--kind",
			  "shmem", "--threads", "1", "--mib", "4", "--ms", "500", "--wait-tracked",
			  "3000", NULL };
	char *argv[] = { "/usr/bin/setpriv", "--inh-caps=-all", "--bounding-set=-bpf,-perfmon,-sys_admin",
			 (char *)harness_bin("tierd"), "--socket", sock, "--config", NULL, NULL };
	const char *off;
	pid_t d, c;
	int r = -1;

	(void)state;
	if (!can_run())
		skip();
	if (access("/usr/bin/setpriv", X_OK) < 0) {
		print_message("skipped: no setpriv to drop capabilities\n");
		skip();
	}
	argv[7] = (char *)bpf_conf();
	snprintf(sock, sizeof(sock), "%s/nopriv.sock", harness_dir());
	snprintf(out, sizeof(out), "%s/nopriv.out", harness_dir());
	snprintf(cout, sizeof(cout), "%s/nopriv.client", harness_dir());
	d = spawn_out(argv, out, NULL);
	assert_true(d > 0);
	/* Until the loading thread is done. */
	for (int i = 0; i < 300 && (r <= 0 || strstr(js, "off: loading")); i++) {
		msleep(20);
		r = status_fetch(sock, js, sizeof(js));
	}
	assert_true(r > 0);
	off = strstr(js, "\"page_fault\":\"off: ");
	assert_non_null(off);
	print_message("%.120s\n", off);
	assert_non_null(strstr(off, "CAP_BPF"));
	off = strstr(js, "\"migrate\":\"off: ");
	assert_non_null(off);
	assert_non_null(strstr(off, "CAP_BPF"));
	assert_non_null(strstr(js, "\"perf\":\"off: "));
	/* And it tracks with faults alone. */
	c = spawn_out(cargv, cout, NULL);
	assert_int_equal(wait_exit(c, 30000), 0);
	assert_true(status_fetch(sock, js, sizeof(js)) > 0);
	assert_true(json_int(js, "\"stats\"", "faults") > 0);
	assert_int_equal(json_int(js, "\"samplers\"", "samples"), 0);
	assert_int_equal(daemon_stop(d), 0);
	/* Logged once, at start. */
	assert_true(read_text(out, text, sizeof(text)) > 0);
	off = strstr(text, "eBPF sampler page_fault and counter migrate are off");
	assert_non_null(off);
	assert_null(strstr(off + 1, "eBPF sampler page_fault and counter migrate are off"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_count_and_filter),
		cmocka_unit_test(test_count_and_filter_nshelper),
		cmocka_unit_test(test_count_and_filter_percpu),
		cmocka_unit_test(test_percpu_ranges),
		cmocka_unit_test(test_first_touch),
		cmocka_unit_test(test_seen_budget),
		cmocka_unit_test(test_ranges),
		cmocka_unit_test(test_overflow),
		cmocka_unit_test(test_migrate_loads),
		cmocka_unit_test(test_perf_software),
		cmocka_unit_test(test_tierd_samples),
		cmocka_unit_test(test_tierd_samples_percpu),
		cmocka_unit_test(test_tierd_perf),
		cmocka_unit_test(test_no_privilege),
	};

	log_set_max_level(LOG_WARNING);
	return cmocka_run_group_tests(tests, NULL, harness_group_teardown);
}
