/* SPDX-License-Identifier: MIT */
/*
 * End-to-end migration on a machine with several NUMA nodes (the QEMU guest of tests/vm/): a
 * workload's memory starts on the slow node; tierd must bring its hot set to the fast node,
 * follow the hot set when it moves while keeping the fast tier within its budget (demoting what
 * went cold), on shmem and hugetlbfs, without losing a byte. Placement is measured by the test
 * itself with move_pages(2) status queries, not by tierd's counters: each query maps the pages
 * briefly (vm_where in vmlib.c), because a mapping that stayed would keep MPOL_MF_MOVE from
 * moving them while the client has them zapped. What the kernel itself reported of tierd's moves
 * (tp_btf/mm_migrate_pages, "kernel_migrations" in the status) must agree with tierd's own
 * count: every page it counts as moved is one the kernel migrated for it.
 * Skips on a machine with one node.
 */
#include <numa.h>
#include <setjmp.h>
#include <stdarg.h>
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

/* Pages tierd counts as moved (promoted + demoted), and base pages the kernel reported migrated
 * for tierd's calls (kernel_migrations.succeeded), as of the last epoch. */
static void moved_counts(char *js, size_t len, long long *tierd_pages, long long *kernel_pages)
{
	assert_true(status_fetch(sock, js, len) > 0);
	*tierd_pages = json_int(js, "\"migration\"", "promoted") + json_int(js, "\"migration\"", "demoted");
	*kernel_pages = json_int(js, "\"kernel_migrations\"", "succeeded");
}

static void run_case(enum tier_kind kind, size_t bytes, uint64_t hot_pages)
{
	long long t0, k0, t1 = 0, k1 = 0, sub;
	struct tier_options o = { .kind = kind, .size = bytes, .socket_path = sock, .name = "vm" };
	struct tier_segment *seg;
	struct vm_work w;
	char js[65536];
	uint64_t a, b;
	double s1, s2, fast_share_cold;

	if (tierd <= 0)
		skip();
	assert_int_equal(tier_segment_create(&o, &seg), 0);
	moved_counts(js, sizeof(js), &t0, &k0);
	vm_work_place(&w, tier_segment_addr(seg), tier_segment_memfd(seg), tier_segment_page_size(seg),
		      tier_segment_size(seg) / tier_segment_page_size(seg), slow_node);
	assert_int_equal(tier_segment_wait_tracked(seg, 10000), 0);

	/* Phase 1: a hot set at 20% of the segment. */
	a = w.npages / 5;
	vm_work_hot(&w, a, a + hot_pages);
	s1 = vm_wait_share(&w, a, a + hot_pages, 0, 0.95, CONVERGE_MS, NULL);

	/* Phase 2: the hot set moves to 60%; the fast tier's budget holds ~1.5 hot sets, so the
	 * old hot set must be demoted to make room. */
	b = w.npages * 3 / 5;
	vm_work_hot(&w, b, b + hot_pages);
	s2 = vm_wait_share(&w, b, b + hot_pages, 0, 0.95, CONVERGE_MS, NULL);
	assert_int_equal(vm_work_stop(&w), 0); /* the hot loop saw no bad data */

	/* The first hot set went cold: the budget only had room for part of it. */
	fast_share_cold = vm_share_on(w.fd, w.page_size, a, a + hot_pages, 0);
	assert_true(status_fetch(sock, js, sizeof(js)) > 0);
	print_message("tierd: promoted %lld, demoted %lld, move_pages calls %lld; old hot set on the "
		      "fast node %.3f\n",
		      json_int(js, "\"migration\"", "promoted"), json_int(js, "\"migration\"", "demoted"),
		      json_int(js, "\"migration\"", "move_calls"), fast_share_cold);
	assert_true(s1 >= 0.95);
	assert_true(s2 >= 0.95);
	assert_true(fast_share_cold <= 0.5); /* demoted to make room */

	/* The kernel's own count (read each epoch): a base page per 4 KiB page, 512 per 2 MiB one.
	 * tierd counts a page as moved when move_pages reports it on the target node, so the two
	 * agree once an epoch has passed without a pass in between; poll for that. */
	assert_non_null(strstr(js, "\"migrate\":\"on\""));
	sub = (long long)(w.page_size / 4096);
	for (int i = 0; i < 50; i++) {
		moved_counts(js, sizeof(js), &t1, &k1);
		if ((k1 - k0) == (t1 - t0) * sub)
			break;
		msleep(100);
	}
	print_message("tierd moved %lld pages; the kernel reported %lld base pages migrated for it "
		      "(%lld failed, %lld migrate_pages calls since tierd started)\n",
		      t1 - t0, k1 - k0, json_int(js, "\"kernel_migrations\"", "failed"),
		      json_int(js, "\"kernel_migrations\"", "calls"));
	assert_true(t1 - t0 > 0);
	assert_true(k1 - k0 == (t1 - t0) * sub);
	/* Within budget: tracked memory on the fast node stays under the budget. */
	assert_true(vm_share_on(w.fd, w.page_size, 0, w.npages, 0) * (double)bytes <=
		    atof(BUDGET_MIB) * 1048576.0 * 1.01);
	vm_work_verify(&w);
	vm_work_free(&w);
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

/* tiers.huge_reserve_pages: huge page promotions leave that many free pages in the fast node's
 * pool. With room for exactly one, a hot set of two huge pages gets one page on the fast node,
 * never two, the pool keeps its reserve, and tierctl events says why the other stayed. */
static void test_huge_reserve(void **state)
{
	char rsock[160], conf[160], line[640], out[160];
	struct tier_options o = { .kind = TIER_HUGETLB, .size = 16u << 20, .socket_path = rsock,
				  .name = "reserve" };
	struct tier_segment *seg;
	struct vm_work w;
	long free0, reserve;
	double share;
	pid_t d;
	FILE *f;

	(void)state;
	if (tierd <= 0)
		skip();
	vm_pool_save(0);
	if (vm_pool_reserve(slow_node, 8) < 0 || vm_pool_reserve(0, 2) < 0) {
		vm_pools_restore();
		skip();
	}
	free0 = vm_node_hugepages(0, true);
	reserve = free0 - 1; /* room for one promotion */
	snprintf(rsock, sizeof(rsock), "%s/reserve.sock", harness_dir());
	snprintf(conf, sizeof(conf), "%s/reserve.conf", harness_dir());
	f = fopen(conf, "we");
	assert_non_null(f);
	fprintf(f, "[tiers]\nhuge_reserve_pages = %ld\nfast_budget_mib = 64\nreserve_mib = 16\n", reserve);
	fclose(f);
	d = daemon_start(rsock, "--config", conf, "--epoch-ms", "50", "--migrate-every", "2", NULL);
	assert_true(d > 0);
	assert_int_equal(tier_segment_create(&o, &seg), 0);
	vm_work_place(&w, tier_segment_addr(seg), tier_segment_memfd(seg), tier_segment_page_size(seg),
		      8, slow_node);
	assert_int_equal(tier_segment_wait_tracked(seg, 10000), 0);
	vm_work_hot(&w, 2, 4); /* two hot huge pages */
	/* One page of the 8 reaches node 0: usually a hot one, but the policy may pick a page of
	 * the hot region that the hot loop does not touch (seen once in ~10 runs), and what is
	 * tested here is the reserve, not the policy's choice. */
	(void)vm_wait_share(&w, 0, 8, 0, 1.0 / 8, CONVERGE_MS, NULL);
	msleep(3000); /* passes go on: no second page may follow */
	share = vm_share_on(w.fd, w.page_size, 0, 8, 0);
	print_message("node 0: %ld free huge pages before, reserve %ld, %ld free now; segment on node 0 "
		      "%.3f, hot set %.2f\n", free0, reserve, vm_node_hugepages(0, true), share,
		      vm_share_on(w.fd, w.page_size, 2, 4, 0));
	assert_true(share >= 1.0 / 8 && share <= 1.0 / 8);
	assert_true(vm_node_hugepages(0, true) >= reserve);
	assert_int_equal(vm_work_stop(&w), 0);
	vm_work_verify(&w);
	vm_work_free(&w);
	snprintf(out, sizeof(out), "%s/reserve.events", harness_dir());
	snprintf(line, sizeof(line), "%s --socket %s events --count 1000 >%s", harness_bin("tierctl"),
		 rsock, out);
	assert_int_equal(system(line), 0);
	{
		static char text[1 << 18];

		read_text(out, text, sizeof(text));
		assert_non_null(strstr(text, "tiers.huge_reserve_pages"));
	}
	tier_segment_destroy(seg);
	status_wait_no_segments(rsock, 10000);
	daemon_stop(d);
	vm_pools_restore();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_shmem_promote_follow_demote),
		cmocka_unit_test(test_hugetlb_promote_follow_demote),
		cmocka_unit_test(test_huge_reserve),
	};

	return cmocka_run_group_tests_name("migration across NUMA nodes", tests, group_setup,
					   group_teardown);
}
