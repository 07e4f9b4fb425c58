/* SPDX-License-Identifier: MIT */
/*
 * End-to-end migration on a machine with several NUMA nodes (the QEMU guest of tests/vm/): a
 * workload's memory starts on the slow node; tierd must bring its hot set to the fast node,
 * follow the hot set when it moves while keeping the fast tier within its budget (demoting what
 * went cold), on shmem and hugetlbfs, without losing a byte. Placement is measured by the test
 * itself with move_pages(2) status queries, not by tierd's counters: each query maps the pages
 * briefly (vm_where in vmlib.c), because a mapping that stayed would keep MPOL_MF_MOVE from
 * moving them while the client has them zapped.
 * Skips on a machine with one node.
 */
#include <errno.h>
#include <numa.h>
#include <numaif.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"
#include "tierd/tier.h"
#include "vmlib.h"

#define BUDGET_MIB "6"   /* fast-tier budget for tracked memory: room for ~1.5 hot sets */
#define CONVERGE_MS 90000u /* TCG is slow: generous, the test reports the actual time */

static char sock[128];
static pid_t tierd = -1;
static int slow_node = -1;

static int group_setup(void **state)
{
	(void)state;
	if (numa_available() < 0 || numa_num_configured_nodes() < 2)
		return 0; /* the tests skip */
	slow_node = numa_max_node();
	snprintf(sock, sizeof(sock), "%s/tierd.sock", harness_dir());
	tierd = daemon_start(sock, "--epoch-ms", "50", "--migrate-every", "2", "--fast-budget-mib",
			     BUDGET_MIB, "--reserve-mib", "16", NULL);
	return tierd > 0 ? 0 : -1;
}

static int group_teardown(void **state)
{
	(void)state;
	if (tierd > 0)
		daemon_stop(tierd);
	vm_pools_restore(); /* after a failed case */
	harness_cleanup();
	return 0;
}

struct work {
	uint8_t *base;
	int memfd; /* where pages are is asked through short-lived mappings of it */
	size_t page_size;
	uint64_t npages;
	_Atomic uint64_t lo, hi; /* the hot set [lo, hi) */
	atomic_bool stop;
	pthread_t th;
};

static uint64_t pattern(uint64_t page, uint64_t w)
{
	return (page + 1) * 0x9E3779B97F4A7C15ull ^ w;
}

/* Reads (and checks) the hot pages over and over: accesses without changing the data. */
static void *hot_loop(void *arg)
{
	struct work *w = arg;
	uint64_t bad = 0;

	while (!atomic_load(&w->stop)) {
		uint64_t lo = atomic_load(&w->lo), hi = atomic_load(&w->hi);

		for (uint64_t p = lo; p < hi; p++)
			bad += *(volatile uint64_t *)(w->base + p * w->page_size + 64) != pattern(p, 8);
	}
	return (void *)(uintptr_t)bad;
}

/* Share of pages [lo, hi) that move_pages reports on `node`: the observer maps the range, fills
 * it read-only, asks and unmaps (vmlib.c). A failed query counts as nothing there. */
static double share_on(struct work *w, uint64_t lo, uint64_t hi, int node)
{
	return vm_share_on(w->memfd, w->page_size, lo, hi, node);
}

static void place_on_slow(struct work *w)
{
	struct bitmask *bm = numa_allocate_nodemask();

	numa_bitmask_setbit(bm, (unsigned)slow_node);
	assert_int_equal(set_mempolicy(MPOL_BIND, bm->maskp, bm->size + 1), 0);
	for (uint64_t p = 0; p < w->npages; p++)
		for (uint64_t k = 0; k < w->page_size / 8; k += 8) /* one word per cache line */
			((uint64_t *)(w->base + p * w->page_size))[k] = pattern(p, k);
	assert_int_equal(set_mempolicy(MPOL_DEFAULT, NULL, 0), 0);
	numa_free_nodemask(bm);
	assert_true(share_on(w, 0, w->npages, slow_node) > 0.99);
}

static double wait_converged(struct work *w, uint64_t lo, uint64_t hi)
{
	uint64_t t0 = mono_usec();
	double share = 0;

	while (mono_usec() - t0 < (uint64_t)CONVERGE_MS * 1000) {
		share = share_on(w, lo, hi, 0);
		if (share >= 0.95)
			break;
		msleep(250);
	}
	print_message("hot pages [%llu, %llu) on the fast node: %.3f after %.1f s\n",
		      (unsigned long long)lo, (unsigned long long)hi, share,
		      (double)(mono_usec() - t0) / 1e6);
	return share;
}

static void verify_all(struct work *w)
{
	for (uint64_t p = 0; p < w->npages; p++)
		for (uint64_t k = 0; k < w->page_size / 8; k += 8)
			if (((uint64_t *)(w->base + p * w->page_size))[k] != pattern(p, k))
				fail_msg("page %llu word %llu corrupt", (unsigned long long)p,
					 (unsigned long long)k);
}

static void run_case(enum tier_kind kind, size_t bytes, uint64_t hot_pages)
{
	struct tier_options o = { .kind = kind, .size = bytes, .socket_path = sock, .name = "vm" };
	struct tier_segment *seg;
	struct work w = { 0 };
	char js[16384];
	void *bad;
	double s1, s2, fast_share_cold;

	if (tierd <= 0)
		skip();
	assert_int_equal(tier_segment_create(&o, &seg), 0);
	w.base = tier_segment_addr(seg);
	w.page_size = tier_segment_page_size(seg);
	w.npages = tier_segment_size(seg) / w.page_size;
	w.memfd = tier_segment_memfd(seg);
	place_on_slow(&w);
	assert_int_equal(tier_segment_wait_tracked(seg, 10000), 0);

	/* Phase 1: a hot set at 20% of the segment. */
	atomic_store(&w.lo, w.npages / 5);
	atomic_store(&w.hi, w.npages / 5 + hot_pages);
	pthread_create(&w.th, NULL, hot_loop, &w);
	s1 = wait_converged(&w, w.npages / 5, w.npages / 5 + hot_pages);

	/* Phase 2: the hot set moves to 60%; the fast tier's budget holds ~1.5 hot sets, so the
	 * old hot set must be demoted to make room. */
	atomic_store(&w.lo, w.npages * 3 / 5);
	atomic_store(&w.hi, w.npages * 3 / 5 + hot_pages);
	s2 = wait_converged(&w, w.npages * 3 / 5, w.npages * 3 / 5 + hot_pages);
	atomic_store(&w.stop, true);
	pthread_join(w.th, &bad);

	/* The first hot set went cold: the budget only had room for part of it. */
	fast_share_cold = share_on(&w, w.npages / 5, w.npages / 5 + hot_pages, 0);
	assert_true(status_fetch(sock, js, sizeof(js)) > 0);
	print_message("tierd: promoted %lld, demoted %lld, move_pages calls %lld; old hot set on the "
		      "fast node %.3f\n",
		      json_int(js, "\"migration\"", "promoted"), json_int(js, "\"migration\"", "demoted"),
		      json_int(js, "\"migration\"", "move_calls"), fast_share_cold);
	assert_int_equal((uintptr_t)bad, 0);
	assert_true(s1 >= 0.95);
	assert_true(s2 >= 0.95);
	assert_true(fast_share_cold <= 0.5); /* demoted to make room */
	/* Within budget: tracked memory on the fast node stays under the budget. */
	assert_true(share_on(&w, 0, w.npages, 0) * (double)bytes <= atof(BUDGET_MIB) * 1048576.0 * 1.01);
	verify_all(&w);
	tier_segment_destroy(seg);
}

static void test_shmem_promote_follow_demote(void **state)
{
	(void)state;
	/* 32 MiB of 4 KiB pages, a 4 MiB hot set. */
	run_case(TIER_SHMEM, 32u << 20, 1024);
}

static void test_hugetlb_promote_follow_demote(void **state)
{
	(void)state;
	if (tierd <= 0)
		skip();
	/* The slow node's pool must hold the segment; migration needs free memory on the target,
	 * not pool pages there (TESTBED.md). Both pools are put back afterwards. */
	vm_pool_save(0);
	if (vm_pool_reserve(slow_node, 24) < 0) {
		vm_pools_restore();
		skip();
	}
	/* 32 MiB of 2 MiB pages, 2 hot (4 MiB). */
	run_case(TIER_HUGETLB, 32u << 20, 2);
	/* The pages go back to the pools once tierd has dropped the segment. */
	status_wait_no_segments(sock, 10000);
	vm_pools_restore();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_shmem_promote_follow_demote),
		cmocka_unit_test(test_hugetlb_promote_follow_demote),
	};

	return cmocka_run_group_tests_name("migration across NUMA nodes", tests, group_setup,
					   group_teardown);
}
