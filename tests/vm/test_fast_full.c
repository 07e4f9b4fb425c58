/* SPDX-License-Identifier: MIT */
/*
 * The fast node is full (multi-node guest of tests/vm/): a hog fills node 0 until less than
 * tierd's --reserve-mib is free, while the hot set of a segment sits on the slowest node. tierd
 * sees the hot set but must not promote into the reserve: node 0's MemFree must not drop below
 * what the hog left (less a little noise), and the hot set stays where it is. The application
 * keeps reading and writing its hot set the whole time and must see no error and lose nothing.
 * When the hog lets go, the hot set must reach node 0. shmem and hugetlbfs (2 MiB pages).
 * Placement and MemFree are measured by the test itself. Skips on a machine with one node.
 *
 * What the hog leaves is computed from node 0's watermarks (just above them), and tierd's
 * reserve from that, so the hog never drives the kernel into reclaim or the OOM killer.
 */
#include <errno.h>
#include <numa.h>
#include <numaif.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"
#include "tierd/tier.h"
#include "vmlib.h"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

#define MiB (UINT64_C(1) << 20)
/* Above node 0's watermarks, what the hog leaves free: kswapd stays asleep and nothing is
 * reclaimed or OOM-killed (THP raised min_free_kbytes to 66 MiB in the guest: node 0's high
 * watermark is ~48 MiB). */
#define ABOVE_WMARK_MIB 16
/* tierd's --reserve-mib is this much above what the hog leaves: tierd has no room at all. */
#define UNDER_RESERVE_MIB 32
/* How far MemFree may dip below what the hog left while it holds: other allocations on node 0
 * (page tables, slab, the test's and tierd's own; dips of up to 5 MiB were seen with nothing
 * promoted). Less than half the hot set, so promoting it (or most of it) shows up here as well as
 * in the hot set's own placement. */
#define SLACK_MIB 7
#define HOT_MIB 16
#define HOLD_MS 2500u        /* after tierd has seen the hot set: ~20 migration passes */
#define HOT_SEEN_MS 60000u   /* tierd scoring the hot set, generous for TCG */
#define HOG_READY_MS 120000u /* filling ~850 MiB: a few seconds in TCG */
#define CONVERGE_MS 90000u   /* the hot set reaching node 0 once the hog is gone */

static char sock[128];
static pid_t tierd = -1, hog = -1;
static int slow_node = -1;
static uint64_t leave_bytes, reserve_mib;

/*
 * Node 0's free memory that allocations cannot take without waking kswapd: per zone, the high
 * watermark plus the protection (lowmem_reserve) against allocations that may use every zone
 * (the last entry), from /proc/zoneinfo. 0 when it cannot be read.
 */
static uint64_t node0_wmark_bytes(void)
{
	FILE *f = fopen("/proc/zoneinfo", "re");
	char line[512];
	uint64_t sum = 0, high = 0;
	bool node0 = false, have_high = false;

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f)) {
		unsigned long long v;
		int node;
		char *p;

		if (sscanf(line, "Node %d, zone", &node) == 1) {
			node0 = node == 0;
			have_high = false;
		} else if (node0 && !have_high && sscanf(line, " high %llu", &v) == 1) {
			high = v; /* the watermark; the per-CPU lists' "high:" lines come later */
			have_high = true;
		} else if (node0 && have_high && (p = strstr(line, "protection: ("))) {
			unsigned long long last = 0;

			for (p += strlen("protection: ("); *p && *p != ')'; p++)
				if (sscanf(p, "%llu", &last) == 1)
					while (p[1] >= '0' && p[1] <= '9')
						p++;
			sum += (high + last) * 4096;
		}
	}
	fclose(f);
	return sum;
}

static int group_setup(void **state)
{
	char reserve[24];
	uint64_t wmark;

	(void)state;
	slow_node = vm_slowest_node();
	if (slow_node < 0)
		return 0; /* the tests skip */
	wmark = node0_wmark_bytes();
	if (slow_node < 0 || !wmark)
		return 0;
	leave_bytes = wmark + ABOVE_WMARK_MIB * MiB;
	reserve_mib = (leave_bytes + MiB - 1) / MiB + UNDER_RESERVE_MIB;
	snprintf(reserve, sizeof(reserve), "%llu", (unsigned long long)reserve_mib);
	snprintf(sock, sizeof(sock), "%s/tierd.sock", harness_dir());
	/* The budget holds the hot set with room to spare: only node 0's free memory limits. */
	tierd = daemon_start(sock, "--epoch-ms", "50", "--migrate-every", "2", "--fast-budget-mib",
			     "64", "--reserve-mib", reserve, NULL);
	return tierd > 0 ? 0 : -1;
}

static void hog_stop(void)
{
	if (hog > 0) {
		kill(hog, SIGKILL);
		wait_exit(hog, 30000);
		hog = -1;
	}
}

static int group_teardown(void **state)
{
	(void)state;
	hog_stop();
	if (tierd > 0)
		daemon_stop(tierd);
	vm_pools_restore();
	harness_cleanup();
	return 0;
}

/*
 * The hog, in a process of its own (this binary run as "--hog BYTES"), so if the kernel's
 * OOM killer ever steps in, it is the hog's memory on node 0 it finds, not the test's:
 * anonymous memory bound to node 0 (MPOL_BIND), 4 KiB pages, grown until node 0's MemFree is
 * at most BYTES; then it says "ready" and holds until killed.
 */
static int hog_main(int node, uint64_t leave)
{
	unsigned long mask = 1UL << node;
	size_t cap = (size_t)vm_node_meminfo(node, "MemTotal"), len = 0;
	uint64_t t0 = mono_usec();
	int64_t mem_free;
	uint8_t *p;

	p = mmap(NULL, cap, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	/* 4 KiB pages: a huge page would overshoot the last steps and make compaction work. */
	if (p == MAP_FAILED || madvise(p, cap, MADV_NOHUGEPAGE) < 0 ||
	    mbind(p, cap, MPOL_BIND, &mask, sizeof(mask) * 8, 0) < 0) {
		printf("hog: setting up: %s\n", strerror(errno));
		return 1;
	}
	/* Big steps first, then smaller ones as MemFree nears the target: it also moves for
	 * reasons of its own, so it is read again after each step. */
	while ((mem_free = vm_node_meminfo(node, "MemFree")) > (int64_t)leave) {
		size_t step = (size_t)(mem_free - (int64_t)leave);

		step = step > 16 * MiB ? step - 8 * MiB : step;
		step = (step + 4095) & ~(size_t)4095;
		if (len + step > cap) {
			printf("hog: node %d still has %lld MiB free after %zu MiB\n", node,
			       (long long)(mem_free / (int64_t)MiB), len / MiB);
			return 1;
		}
		if (madvise(p + len, step, MADV_POPULATE_WRITE) < 0) {
			printf("hog: populating: %s\n", strerror(errno));
			return 1;
		}
		len += step;
	}
	printf("ready: %zu MiB on node %d in %.1f s, node %d MemFree %lld MiB\n", len / MiB, node,
	       (double)(mono_usec() - t0) / 1e6, node, (long long)(mem_free / (int64_t)MiB));
	fflush(stdout);
	for (;;)
		pause();
}

/* Starts the hog on `node` and waits until it holds that node's memory. */
static void hog_start_on(int node)
{
	char path[160], arg[24], nd[12], text[512];
	char *argv[] = { "/proc/self/exe", "--hog", nd, arg, NULL };
	uint64_t t0 = mono_usec();

	snprintf(path, sizeof(path), "%s/hog.out", harness_dir());
	snprintf(arg, sizeof(arg), "%llu", (unsigned long long)leave_bytes);
	snprintf(nd, sizeof(nd), "%d", node);
	unlink(path);
	hog = spawn_out(argv, path, NULL);
	assert_true(hog > 0);
	for (;;) {
		if (read_text(path, text, sizeof(text)) > 0 && strstr(text, "ready"))
			break;
		if (waitpid(hog, NULL, WNOHANG) == hog) {
			hog = -1;
			fail_msg("the hog died: %s", text);
		}
		if (mono_usec() - t0 > (uint64_t)HOG_READY_MS * 1000)
			fail_msg("the hog did not fill node %d in time: %s", node, text);
		msleep(50);
	}
	print_message("hog %s", text);
}

static void hog_start(void)
{
	hog_start_on(0);
}

/* The first segment's "hot_pages" in tierd's status, -1 when unknown. */
static long long tierd_hot_pages(void)
{
	char js[16384];

	if (status_fetch(sock, js, sizeof(js)) <= 0)
		return -1;
	return json_int(js, "\"segments\"", "hot_pages");
}

static void run_case(enum tier_kind kind, size_t bytes)
{
	struct tier_options o = { .kind = kind, .size = bytes, .socket_path = sock, .name = "full" };
	struct tier_segment *seg;
	struct vm_work w;
	uint64_t lo, hi, hot, t0, passes, allowed, counts[VM_MAX_NODES];
	int64_t left, floor_free, mem_free;
	long long seen = -1;
	double held_share, share, secs;

	if (tierd <= 0)
		skip();
	/* Fill node 0 before the segment is even placed: tierd, already tracking it, must have no
	 * room to promote pages while the test is still writing them to the slow node. */
	hog_start();
	left = vm_node_meminfo(0, "MemFree");
	floor_free = left;
	assert_int_equal(tier_segment_create(&o, &seg), 0);
	vm_work_place(&w, tier_segment_addr(seg), tier_segment_memfd(seg), tier_segment_page_size(seg),
		      tier_segment_size(seg) / tier_segment_page_size(seg), slow_node);
	assert_int_equal(tier_segment_wait_tracked(seg, 10000), 0);
	hot = HOT_MIB * MiB / w.page_size;
	lo = w.npages / 4;
	hi = lo + hot;

	/* What may legitimately reach node 0 without taking free memory there: a swap with a
	 * segment page already on node 0 (one out for one in), or a huge page taking a free page
	 * of node 0's pool (migration takes those first). */
	assert_true(vm_where(w.fd, w.page_size, 0, w.npages, counts) >= 0);
	allowed = counts[0] + (kind == TIER_HUGETLB && vm_node_hugepages(0, true) > 0
				       ? (uint64_t)vm_node_hugepages(0, true) : 0);
	vm_work_hot(&w, lo, hi);

	/* Hold until tierd has scored the hot set (so not promoting it is a decision, not
	 * ignorance), then HOLD_MS more; node 0's MemFree is sampled all along. */
	t0 = mono_usec();
	for (uint64_t held_since = 0;;) {
		mem_free = vm_node_meminfo(0, "MemFree");
		if (mem_free >= 0 && mem_free < floor_free)
			floor_free = mem_free;
		if (!held_since) {
			seen = tierd_hot_pages();
			if (seen >= (long long)hot * 9 / 10)
				held_since = mono_usec();
			else if (mono_usec() - t0 > (uint64_t)HOT_SEEN_MS * 1000)
				break;
		} else if (mono_usec() - held_since > (uint64_t)HOLD_MS * 1000) {
			break;
		}
		msleep(50);
	}
	passes = atomic_load(&w.passes);
	held_share = vm_share_on(w.fd, w.page_size, lo, hi, 0);
	print_message("hog holding %.1f s: tierd saw %lld of %llu hot pages; hot set on node 0 %.3f; "
		      "node 0 MemFree %lld MiB after the hog (reserve %llu MiB), lowest %lld MiB; "
		      "app passes %llu; %llu page(s) could go to node 0 without free memory there\n",
		      (double)(mono_usec() - t0) / 1e6, seen, (unsigned long long)hot, held_share,
		      (long long)(left / (int64_t)MiB), (unsigned long long)reserve_mib,
		      (long long)(floor_free / (int64_t)MiB), (unsigned long long)passes,
		      (unsigned long long)allowed);

	/* The hog lets go: now there is room, and the hot set must get there. Timed from the
	 * kill: the kernel frees the hog's memory while we wait for it to exit. */
	t0 = mono_usec();
	hog_stop();
	share = vm_wait_share(&w, lo, hi, 0, 0.95, CONVERGE_MS, NULL);
	secs = (double)(mono_usec() - t0) / 1e6;
	assert_int_equal(vm_work_stop(&w), 0);
	print_message("after the hog: hot set on node 0 %.3f %.1f s after the kill; app passes %llu\n",
		      share, secs, (unsigned long long)atomic_load(&w.passes));

	assert_true(seen >= (long long)hot * 9 / 10);  /* tierd did see the hot set */
	assert_true(passes > 0);                        /* the app kept working meanwhile */
	assert_true(left < (int64_t)(reserve_mib * MiB)); /* the setup is what it claims */
	assert_true(floor_free >= left - (int64_t)(SLACK_MIB * MiB)); /* the reserve held */
	/* Nothing promoted into the reserve. */
	assert_true(held_share * (double)hot <= 0.05 * (double)hot + (double)allowed);
	assert_true(share >= 0.95);                     /* and promoted once there was room */
	vm_work_verify(&w);
	vm_work_free(&w);
	tier_segment_destroy(seg);
	assert_true(status_wait_no_segments(sock, 10000));
}

static void test_shmem_fast_full(void **state)
{
	(void)state;
	/* 64 MiB of 4 KiB pages, a 16 MiB hot set. */
	run_case(TIER_SHMEM, 64 * MiB);
}

static void test_hugetlb_fast_full(void **state)
{
	(void)state;
	if (tierd <= 0)
		skip();
	/* 64 MiB of 2 MiB pages in the slow node's pool, 8 of them hot (16 MiB). Migration
	 * needs free memory on node 0, not pool pages there, so node 0's pool is not grown; the
	 * promoted pages join it, so its size is put back afterwards like the slow node's. */
	vm_pool_save(0);
	if (vm_pool_reserve(slow_node, 32) < 0) {
		vm_pools_restore();
		skip();
	}
	run_case(TIER_HUGETLB, 64 * MiB);
	vm_pools_restore();
}

/*
 * Three tiers, and the middle one full: demotion must fall through to the slowest tier, not push
 * the middle node below tierd's reserve. A tierd of its own with a fast-tier budget of 6 MiB:
 * after the hot set moves, the old one has to leave node 0.
 */
static void test_middle_tier_full(void **state)
{
	struct tier_options o = { .kind = TIER_SHMEM, .size = 32 * MiB, .name = "middle" };
	char sock2[160], reserve[24];
	uint64_t counts[VM_MAX_NODES], lo, hot, t0, room;
	int64_t left, floor_free, mem_free;
	struct tier_segment *seg;
	int middle = -1;
	struct vm_work w;
	double share, secs;
	pid_t d;

	(void)state;
	if (tierd <= 0 || numa_num_configured_nodes() < 3)
		skip();
	for (int n = 1; n <= numa_max_node(); n++)
		if (n != slow_node && !vm_node_has_cpus(n) && vm_node_meminfo(n, "MemTotal") > 0 &&
		    numa_distance(0, n) < numa_distance(0, slow_node) &&
		    (middle < 0 || numa_distance(0, n) < numa_distance(0, middle)))
			middle = n;
	if (middle < 0)
		skip(); /* no node between node 0 and the slowest */
	snprintf(sock2, sizeof(sock2), "%s/middle.sock", harness_dir());
	snprintf(reserve, sizeof(reserve), "%llu", (unsigned long long)reserve_mib);
	d = daemon_start(sock2, "--epoch-ms", "50", "--migrate-every", "2", "--fast-budget-mib", "6",
			 "--reserve-mib", reserve, NULL);
	assert_true(d > 0);
	o.socket_path = sock2;

	hog_start_on(middle);
	left = vm_node_meminfo(middle, "MemFree");
	floor_free = left;
	assert_int_equal(tier_segment_create(&o, &seg), 0);
	vm_work_place(&w, tier_segment_addr(seg), tier_segment_memfd(seg), tier_segment_page_size(seg),
		      tier_segment_size(seg) / tier_segment_page_size(seg), slow_node);
	assert_int_equal(tier_segment_wait_tracked(seg, 10000), 0);
	hot = 4 * MiB / w.page_size;
	lo = w.npages / 8;
	vm_work_hot(&w, lo, lo + hot);
	share = vm_wait_share(&w, lo, lo + hot, 0, 0.95, CONVERGE_MS, &secs);
	assert_true(share >= 0.95);

	/* The hot set moves: the old one must make room, and node `middle` has none. Demotion
	 * stops at the low watermark (85 % of the 6 MiB budget), so what the new hot set leaves
	 * of the high watermark (95 %) may stay. */
	room = (uint64_t)(6 * MiB * 95 / 100) / w.page_size - hot;
	lo = w.npages * 5 / 8;
	vm_work_hot(&w, lo, lo + hot);
	t0 = mono_usec();
	share = vm_wait_share(&w, lo, lo + hot, 0, 0.95, CONVERGE_MS, &secs);
	for (; mono_usec() - t0 < (uint64_t)CONVERGE_MS * 1000; msleep(100)) {
		mem_free = vm_node_meminfo(middle, "MemFree");
		if (mem_free >= 0 && mem_free < floor_free)
			floor_free = mem_free;
		assert_true(vm_where(w.fd, w.page_size, w.npages / 8, w.npages / 8 + hot, counts) >= 0);
		if (counts[0] <= room)
			break; /* enough of the old hot set left node 0 for the budget */
	}
	print_message("middle tier (node %d) full, %lld MiB free (reserve %llu MiB), lowest %lld MiB; "
		      "old hot set: node 0 %llu, node %d %llu, node %d %llu of %llu pages\n",
		      middle, (long long)(left / (int64_t)MiB), (unsigned long long)reserve_mib,
		      (long long)(floor_free / (int64_t)MiB), (unsigned long long)counts[0], middle,
		      (unsigned long long)counts[middle], slow_node,
		      (unsigned long long)counts[slow_node], (unsigned long long)hot);
	assert_int_equal(vm_work_stop(&w), 0);
	hog_stop();

	assert_true(share >= 0.95);                   /* the new hot set is on node 0 */
	assert_true(counts[0] <= room);               /* the old one made room */
	assert_true(counts[slow_node] >= hot / 2);    /* going to the slowest tier */
	assert_true(counts[middle] <= hot / 20);      /* not into the full middle one */
	assert_true(floor_free >= left - (int64_t)(SLACK_MIB * MiB));
	vm_work_verify(&w);
	vm_work_free(&w);
	tier_segment_destroy(seg);
	assert_int_equal(daemon_stop(d), 0);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_shmem_fast_full),
		cmocka_unit_test(test_hugetlb_fast_full),
		cmocka_unit_test(test_middle_tier_full),
	};

	if (argc == 4 && strcmp(argv[1], "--hog") == 0)
		return hog_main(atoi(argv[2]), strtoull(argv[3], NULL, 10));
	return cmocka_run_group_tests_name("a full fast node", tests, group_setup, group_teardown);
}
