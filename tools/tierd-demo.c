/* SPDX-License-Identifier: MIT */
/*
 * tierd-demo: what tierd sees, in a few seconds.
 *
 * Creates a 4K shmem segment and a 2 MiB hugetlbfs segment through libtier, runs a workload
 * whose hot set (10% of each segment) moves halfway through, and prints twice a second how many
 * faults tierd resolved and how well its hot pages match the true hot set.
 *   tierd-demo --socket PATH [--seconds N] [--mib N]
 */
#include <errno.h>
#include <getopt.h>
#include <numa.h>
#include <numaif.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "tierd/tier.h"

struct demo_seg {
	const char *label;
	struct tier_segment *seg;
	volatile uint8_t *base;
	uint8_t *observer; /* untracked second mapping, populated only while a placement query
			    * runs: tierd moves zapped pages with MPOL_MF_MOVE, which refuses a page
			    * another process keeps mapped */
	double on_fast;    /* share of the true hot set on node 0 at the last report */
	size_t page_size;
	uint64_t npages, hot_lo, hot_hi; /* true hot set [hot_lo, hot_hi) */
	pthread_t th;
};

static atomic_bool stop;
static int nodes = 1, slow_node; /* with several nodes, memory starts on the slowest */
static atomic_int phase; /* 0, then 1 after the shift */

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void hot_range(struct demo_seg *d, int ph)
{
	uint64_t n = d->npages / 10 ? d->npages / 10 : 1;

	/* Phase 0: pages from 23%; phase 1: the hot set jumps to 71%. Deliberately not aligned with
	 * tierd's initial regions (tenths of the segment), which would flatter the estimate. */
	d->hot_lo = d->npages * (ph == 0 ? 23 : 71) / 100;
	d->hot_hi = d->hot_lo + n;
}

static void *worker(void *arg)
{
	struct demo_seg *d = arg;
	uint64_t x = 88172645463325252ull;

	while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
		uint64_t lo = d->hot_lo, hi = d->hot_hi, p;

		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		p = lo + x % (hi - lo);
		d->base[p * d->page_size + (x >> 32) % d->page_size] += 1;
	}
	return NULL;
}

static void report(struct demo_seg *d, double t)
{
	uint8_t *bits = calloc((d->npages + 7) / 8, 1);
	uint64_t found = 0, right = 0, faults = 0, truth = d->hot_hi - d->hot_lo;
	struct tier_info info;
	int r;

	if (!bits) {
		printf("  %5.1fs  %-8s  no memory for the heat bitmap\n", t, d->label);
		return;
	}

	tier_segment_info(d->seg, &info);
	r = info.state == TIER_STATE_TRACKED ? tier_segment_heat(d->seg, bits, d->npages, &faults)
					     : -ENOTCONN;
	if (r < 0) {
		printf("  %5.1fs  %-8s  not tracked: %s\n", t, d->label,
		       info.last_reason[0] ? info.last_reason : strerror(-r));
		free(bits);
		return;
	}
	for (uint64_t p = 0; p < d->npages; p++)
		if (bits[p / 8] & (1u << (p % 8))) {
			found++;
			right += p >= d->hot_lo && p < d->hot_hi;
		}
	printf("  %5.1fs  %-8s  faults %8llu   hot pages found %6llu, of them in the true hot set "
	       "%6llu / %llu  (%3.0f%%)",
	       t, d->label, (unsigned long long)faults, (unsigned long long)found,
	       (unsigned long long)right, (unsigned long long)truth,
	       truth ? 100.0 * (double)right / (double)truth : 0.0);
	if (nodes > 1) {
		/* Where the true hot set lives, asked of the kernel (not of tierd). */
		size_t on_fast = 0;
		void **addrs = calloc(truth, sizeof(void *));
		int *status = calloc(truth, sizeof(int));
		uint8_t *from = d->observer + d->hot_lo * d->page_size;

		if (!addrs || !status) {
			printf("   (no memory to ask where the hot set is)\n");
			free(addrs);
			free(status);
			free(bits);
			return;
		}
		for (uint64_t i = 0; i < truth; i++)
			addrs[i] = from + i * d->page_size;
		if (d->observer != (uint8_t *)d->base)
			(void)madvise(from, truth * d->page_size, 22 /* MADV_POPULATE_READ */);
		if (move_pages(0, truth, addrs, NULL, status, 0) == 0)
			for (uint64_t i = 0; i < truth; i++)
				on_fast += status[i] == 0;
		if (d->observer != (uint8_t *)d->base)
			(void)madvise(from, truth * d->page_size, MADV_DONTNEED);
		d->on_fast = (double)on_fast / (double)truth;
		printf("   on node 0: %3.0f%%", 100.0 * d->on_fast);
		free(addrs);
		free(status);
	}
	printf("\n");
	free(bits);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = { { "socket", 1, NULL, 's' }, { "seconds", 1, NULL, 't' },
					      { "mib", 1, NULL, 'm' }, {} };
	const char *sock = NULL;
	unsigned seconds = 6, mib = 64;
	struct demo_seg segs[2] = { { .label = "shmem" }, { .label = "hugetlb" } };
	int nsegs = 0, c;
	double t0;

	while ((c = getopt_long(argc, argv, "", opts, NULL)) >= 0) {
		switch (c) {
		case 's': sock = optarg; break;
		case 't': seconds = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'm': mib = (unsigned)strtoul(optarg, NULL, 10); break;
		default: return 2;
		}
	}
	if (seconds < 2 || mib < 4)
		return 2;
	nodes = numa_available() < 0 ? 1 : numa_num_configured_nodes();
	slow_node = nodes > 1 ? numa_max_node() : 0;
	if (nodes > 1) {
		/* Start the memory on the slowest node, so there is something to promote. */
		struct bitmask *bm = numa_allocate_nodemask();

		numa_bitmask_setbit(bm, (unsigned)slow_node);
		set_mempolicy(MPOL_BIND, bm->maskp, bm->size + 1);
		numa_free_nodemask(bm);
		printf("  %d NUMA nodes: the segments start on node %d; tierd should bring each hot "
		       "set to node 0.\n", nodes, slow_node);
	}

	for (int i = 0; i < 2; i++) {
		struct tier_options o = { .name = segs[i].label, .size = (size_t)mib << 20,
					  .kind = i ? TIER_HUGETLB : TIER_SHMEM, .socket_path = sock };
		struct demo_seg *d = &segs[nsegs];
		const char *label = segs[i].label;
		int r;

		d->label = label;
		r = tier_segment_create(&o, &d->seg);
		if (r < 0) {
			printf("  (%s segment not created: %s%s)\n", label, strerror(-r),
			       i ? " — the huge page pool (vm.nr_hugepages) is too small" : "");
			continue;
		}
		d->base = tier_segment_addr(d->seg);
		d->page_size = tier_segment_page_size(d->seg);
		d->npages = tier_segment_size(d->seg) / d->page_size;
		memset((void *)d->base, 0, tier_segment_size(d->seg));
		d->observer = mmap(NULL, tier_segment_size(d->seg), PROT_READ, MAP_SHARED,
				   tier_segment_memfd(d->seg), 0);
		if (d->observer == MAP_FAILED)
			d->observer = (uint8_t *)d->base;
		hot_range(d, 0);
		nsegs++;
	}
	set_mempolicy(MPOL_DEFAULT, NULL, 0);
	if (nsegs == 0)
		return 1;

	for (int i = 0; i < nsegs; i++) {
		int r = tier_segment_wait_tracked(segs[i].seg, 3000);

		printf("  %-8s segment: %llu MiB, %llu pages of %zu KiB — %s\n", segs[i].label,
		       (unsigned long long)(tier_segment_size(segs[i].seg) >> 20),
		       (unsigned long long)segs[i].npages, segs[i].page_size >> 10,
		       r == 0 ? "attached to tierd" : "NOT tracked (is tierd running?)");
	}
	printf("\n  The workload touches 10%% of each segment (its hot set); halfway through the hot set "
	       "moves.\n  tierd samples windows of pages, zaps them, and learns from the minor faults.\n\n");

	for (int i = 0; i < nsegs; i++)
		pthread_create(&segs[i].th, NULL, worker, &segs[i]);
	t0 = now_s();
	for (unsigned tick = 1; tick <= seconds * 2; tick++) {
		usleep(500000);
		if (tick == seconds) {
			atomic_store(&phase, 1);
			for (int i = 0; i < nsegs; i++)
				hot_range(&segs[i], 1);
			printf("  ------  the hot set moves from 23%% to 71%% of each segment ------\n");
		}
		for (int i = 0; i < nsegs; i++)
			report(&segs[i], now_s() - t0);
	}
	atomic_store(&stop, true);
	for (int i = 0; i < nsegs; i++) {
		pthread_join(segs[i].th, NULL);
		tier_segment_destroy(segs[i].seg);
	}

	printf("\n");
	if (nodes < 2)
		printf("  This machine has ONE NUMA node, so tierd only tracks here: there is no slower\n"
		       "  node to demote to. Moving pages between nodes is shown in a multi-node QEMU\n"
		       "  guest: make demo-vm.\n");
	else
		for (int i = 0; i < nsegs; i++)
			printf("  %s: %.0f%% of the hot set ended on node 0 (asked of the kernel)%s\n",
			       segs[i].label, 100.0 * segs[i].on_fast,
			       segs[i].on_fast >= 0.95 ? "" : " -- NOT converged; see tierd's log");
	return 0;
}
