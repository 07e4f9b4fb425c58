/* SPDX-License-Identifier: MIT */
/*
 * 64 threads blocked in minor faults on tracked pages, then released (issue 8): the test process
 * is a libtier client whose whole mapping tierd registered (--shmem-registration whole; hugetlb
 * always is). It stops tierd, zaps its own pages (what the control thread does on a ZAP), and
 * starts 64 threads that each read a zapped page: with tierd stopped nobody answers, and every
 * thread sleeps in the fault (checked: state S outside any syscall, in /proc). Then:
 *   - hang: tierd stays stopped; libtier's guardian misses its PONGs, unregisters the mapping and
 *     wakes it (UFFDIO_UNREGISTER + UFFDIO_WAKE) — the release is the guardian's own moment,
 *     measured from the first thread it woke;
 *   - kill: tierd (still stopped, as systemd's watchdog finds a hung one) is SIGKILLed; the
 *     control thread sees the hang-up, unregisters, wakes and closes its uffd copy — the release
 *     is the kill.
 * Pass: all 64 threads wake, none is left blocked, every page reads back what was written, and
 * the slowest wake is within WAKE_BOUND_MS of the release. The target is 100 ms; the bound is ten
 * times that because this 2-CPU machine is shared with other test runs (a woken thread can wait
 * that long for a CPU). The distribution is printed (docs/reliability.md has the numbers).
 *
 * WAKE_ROUNDS=N runs each case N times (default 3; make chaos runs more).
 */
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"
#include "tierd/tier.h"

#define NTHREADS 64
/* The wake target is 100 ms; see the top of the file for why the assertion allows ten times it. */
#define WAKE_TARGET_MS 100u
#define WAKE_BOUND_MS 1000u
/* Every thread must be back this long after the release, or it is counted as left blocked. */
#define JOIN_DEADLINE_MS 10000u
/* The guardian's hang timeout in the hang case: long enough that the threads are seen blocked
 * first (they start within milliseconds of the stop), short enough to keep the test quick. */
#if defined(__SANITIZE_THREAD__)
/* Under ThreadSanitizer starting 64 threads takes 1.3-1.8 s here: the guardian would let go
 * first. */
#define HANG_MS 8000u
#else
#define HANG_MS 1500u
#endif
/* In the kill case the guardian must not act first. */
#define NO_HANG_MS 60000u
/* How long the threads are left blocked before the test looks at them. */
#define BLOCKED_CHECK_MS 300u
#define DEFAULT_ROUNDS 3u

enum release_how { BY_GUARDIAN, BY_KILL };

static char sock[128];
static bool have_huge;
static unsigned rounds = DEFAULT_ROUNDS;
/* Every wake latency of a case (µs), over its rounds, for the distribution. */
static uint64_t lat[NTHREADS * 64];
static size_t nlat;

struct blocked {
	pthread_t th;
	pid_t tid;
	const volatile uint64_t *word; /* the word it reads: the first of its page */
	uint64_t expect;
	uint64_t woke_usec;
	atomic_bool started, done;
	bool ok;
};

static struct blocked thr[NTHREADS];
static pthread_barrier_t go;

static int group_setup(void **state)
{
	const char *r = getenv("WAKE_ROUNDS");

	(void)state;
	if (r && *r)
		rounds = (unsigned)strtoul(r, NULL, 10);
	if (rounds == 0 || rounds > 64)
		rounds = DEFAULT_ROUNDS;
	snprintf(sock, sizeof(sock), "%s/tierd.sock", harness_dir());
	have_huge = hugepages_reserve(16) == 0;
	return 0;
}

static void *reader(void *arg)
{
	struct blocked *b = arg;
	uint64_t v;

	b->tid = (pid_t)syscall(SYS_gettid);
	pthread_barrier_wait(&go);
	atomic_store(&b->started, true);
	v = *b->word; /* the minor fault: blocks until someone answers or releases it */
	b->woke_usec = mono_usec();
	b->ok = v == b->expect;
	atomic_store(&b->done, true);
	return NULL;
}

/* Sleeping in a page fault: state S, and blocked outside any syscall (a thread in a syscall shows
 * its number in /proc/.../syscall, a running one "running"). */
static bool in_fault(pid_t tid)
{
	return harness_proc_state(tid) == 'S' && harness_proc_syscall(tid) == -1;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static uint64_t pct(const uint64_t *v, size_t n, unsigned p)
{
	size_t i = (n * p + 99) / 100;

	return v[i ? i - 1 : 0];
}

/* One round: block 64 threads, release them, check everything. */
/* Joins the threads of a round that is given up (they are released or about to be). */
static void join_all(void)
{
	for (unsigned i = 0; i < NTHREADS; i++)
		pthread_join(thr[i].th, NULL);
	pthread_barrier_destroy(&go);
}

/* One round: false when it has to be run again (the guardian let go before the test could see
 * the threads blocked: a thread got no CPU for over a second on a loaded box). */
static bool round_once(enum tier_kind kind, enum release_how how, unsigned round)
{
	struct tier_options o = { .kind = kind, .name = "wake", .socket_path = sock,
				  .hang_timeout_ms = how == BY_GUARDIAN ? HANG_MS : NO_HANG_MS };
	uint64_t stop_usec, release_usec, first = UINT64_MAX, last = 0;
	struct tier_segment *seg;
	struct tier_info info;
	size_t ps, npages;
	uint8_t *base;
	unsigned in_fault_n = 0, woke = 0;
	pid_t d;

	d = daemon_start(sock, "--shmem-registration", "whole", "--max-windows", "0", NULL);
	assert_true(d > 0);
	/* 64 distinct 4 KiB pages; hugetlb: 8 huge pages, 8 threads on each. */
	o.size = kind == TIER_HUGETLB ? 8u << 21 : NTHREADS * 4096u;
	assert_int_equal(tier_segment_create(&o, &seg), 0);
	base = tier_segment_addr(seg);
	ps = tier_segment_page_size(seg);
	npages = tier_segment_size(seg) / ps;
	for (size_t p = 0; p < npages; p++)
		memset(base + p * ps, (int)(0x11 * (p + 1) + round), ps);
	assert_int_equal(tier_segment_wait_tracked(seg, 5000), 0);

	kill(d, SIGSTOP);
	assert_true(harness_wait_stopped(d));
	stop_usec = mono_usec();
	/* The zap: what the control thread does for a ZAP, on our own mapping. */
	assert_int_equal(madvise(base, tier_segment_size(seg), MADV_DONTNEED), 0);

	assert_int_equal(pthread_barrier_init(&go, NULL, NTHREADS + 1), 0);
	for (unsigned i = 0; i < NTHREADS; i++) {
		size_t p = i % npages;

		thr[i] = (struct blocked){ .word = (const volatile uint64_t *)(base + p * ps) };
		memset(&thr[i].expect, (int)(0x11 * (p + 1) + round), sizeof(thr[i].expect));
		assert_int_equal(pthread_create(&thr[i].th, NULL, reader, &thr[i]), 0);
	}
	pthread_barrier_wait(&go);
	for (unsigned i = 0; i < NTHREADS; i++)
		while (!atomic_load(&thr[i].started))
			msleep(1);
	msleep(BLOCKED_CHECK_MS);
	for (unsigned i = 0; i < NTHREADS; i++) {
		if (atomic_load(&thr[i].done)) {
			/* Nobody answers, so all must still wait — unless the guardian already let
			 * go (it counts after its wake: give it a moment). */
			msleep(100);
			tier_segment_info(seg, &info);
			if (how == BY_GUARDIAN && info.guardian_detaches) {
				print_message("round %u: the guardian let go %.0f ms after the stop, "
					      "before the threads were seen blocked (overloaded box); "
					      "again\n", round, (double)(mono_usec() - stop_usec) / 1000.0);
				join_all();
				tier_segment_destroy(seg);
				daemon_stop(d);
				return false;
			}
			fail_msg("thread %u returned with nobody answering", i);
		}
		in_fault_n += in_fault(thr[i].tid);
	}
	/* A thread can be between the barrier and its access, but not 300 ms later. */
	assert_int_equal(in_fault_n, NTHREADS);

	release_usec = mono_usec();
	if (how == BY_KILL) {
		kill(d, SIGKILL);
		waitpid(d, NULL, 0);
	}
	for (uint64_t deadline = mono_usec() + (uint64_t)(how == BY_GUARDIAN ? HANG_MS : 0) * 1000 +
				 JOIN_DEADLINE_MS * 1000ull;
	     woke < NTHREADS && mono_usec() < deadline; msleep(1)) {
		woke = 0;
		for (unsigned i = 0; i < NTHREADS; i++)
			woke += atomic_load(&thr[i].done);
	}
	if (woke < NTHREADS) {
		/* Left blocked: say so, then let tierd answer so that the threads can be joined. */
		print_message("%u of %d threads still blocked %u ms after the release\n",
			      NTHREADS - woke, NTHREADS, JOIN_DEADLINE_MS);
		if (how == BY_GUARDIAN)
			kill(d, SIGKILL);
		fail();
	}
	for (unsigned i = 0; i < NTHREADS; i++) {
		pthread_join(thr[i].th, NULL);
		assert_true(thr[i].ok);
		first = thr[i].woke_usec < first ? thr[i].woke_usec : first;
		last = thr[i].woke_usec > last ? thr[i].woke_usec : last;
	}
	pthread_barrier_destroy(&go);
	/* The guardian's release is the moment its single UFFDIO_WAKE lets the first thread go. */
	if (how == BY_GUARDIAN)
		release_usec = first;
	for (unsigned i = 0; i < NTHREADS; i++)
		lat[nlat++] = thr[i].woke_usec - release_usec;
	tier_segment_info(seg, &info);
	print_message("round %u: stop -> release %.1f ms, release -> first wake %.2f ms, -> last "
		      "%.2f ms (guardian detaches %llu, detaches %llu)\n",
		      round, (double)(release_usec - stop_usec) / 1000.0,
		      (double)(first - release_usec) / 1000.0, (double)(last - release_usec) / 1000.0,
		      (unsigned long long)info.guardian_detaches, (unsigned long long)info.detaches);
	if (how == BY_GUARDIAN)
		assert_int_equal(info.guardian_detaches, 1);
	assert_true(info.detaches >= 1);
	assert_int_not_equal(info.state, TIER_STATE_TRACKED);
	/* Every page still holds what was written before the zap: nothing lost. */
	for (size_t p = 0; p < npages; p++)
		for (size_t off = 0; off < ps; off += 512)
			assert_int_equal(base[p * ps + off], (uint8_t)(0x11 * (p + 1) + round));
	tier_segment_destroy(seg);
	if (how == BY_GUARDIAN)
		daemon_stop(d);
	return true;
}

static void run_case(enum tier_kind kind, enum release_how how)
{
	uint64_t worst;

	nlat = 0;
	for (unsigned r = 0, tries = 0; r < rounds; r++) {
		while (!round_once(kind, how, r))
			assert_true(++tries < 5);
	}
	qsort(lat, nlat, sizeof(lat[0]), cmp_u64);
	worst = lat[nlat - 1];
	print_message("%s, released by %s: %zu wakes, latency p50 %.2f ms, p90 %.2f ms, p99 %.2f ms, "
		      "max %.2f ms (target %u ms, bound %u ms)\n",
		      kind == TIER_HUGETLB ? "hugetlb" : "shmem",
		      how == BY_GUARDIAN ? "the guardian (tierd hung)" : "tierd's death", nlat,
		      (double)pct(lat, nlat, 50) / 1000.0, (double)pct(lat, nlat, 90) / 1000.0,
		      (double)pct(lat, nlat, 99) / 1000.0, (double)worst / 1000.0, WAKE_TARGET_MS,
		      WAKE_BOUND_MS);
	assert_true(worst <= WAKE_BOUND_MS * 1000ull);
}

static void test_hang_shmem(void **state)
{
	(void)state;
	run_case(TIER_SHMEM, BY_GUARDIAN);
}

static void test_kill_shmem(void **state)
{
	(void)state;
	run_case(TIER_SHMEM, BY_KILL);
}

static void test_hang_hugetlb(void **state)
{
	(void)state;
	if (!have_huge)
		skip();
	run_case(TIER_HUGETLB, BY_GUARDIAN);
}

static void test_kill_hugetlb(void **state)
{
	(void)state;
	if (!have_huge)
		skip();
	run_case(TIER_HUGETLB, BY_KILL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hang_shmem),   cmocka_unit_test(test_kill_shmem),
		cmocka_unit_test(test_hang_hugetlb), cmocka_unit_test(test_kill_hugetlb),
	};

	if (geteuid() != 0) {
		fprintf(stderr, "kernel tests need root\n");
		return 77;
	}
	setenv("TIERD_QUIET", "1", 1);
	return cmocka_run_group_tests_name("64 threads blocked, then released", tests, group_setup,
					   harness_group_teardown);
}
