/* SPDX-License-Identifier: MIT */
/*
 * What the BPF programs (bpf/NAME.bpf.c) and their loader (daemon/bpf.c) share: the layout of the
 * maps' keys and values. Fixed-width types only, no pointers, explicit padding, so the two sides
 * agree whatever compiler or target built them; the sizes are asserted below.
 */
#ifndef TIERD_BPF_H
#define TIERD_BPF_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

/* Ranges tracked per process. A client attaches a handful of segments at most (PostgreSQL: one);
 * the program walks them all on every fault of the process, so the bound also bounds its cost. */
#define TIERD_BPF_MAX_RANGES 8

/* One mapping of a segment in a tracked process: [start, start + length) holds the segment's
 * pages from page 0, each 1 << page_shift bytes. length 0: a free slot. Its pages' "faulted since
 * tracked" bits are the words [seen_word, seen_word + ceil(pages / 64)) of the `seen` array. */
struct tierd_bpf_range {
	__u64 start;
	__u64 length;
	__u32 seg;
	__u32 page_shift;
	__u64 seen_word;
};

/* Value of the `procs` map, keyed by tgid (as tierd's pid namespace numbers it). */
struct tierd_bpf_proc {
	struct tierd_bpf_range ranges[TIERD_BPF_MAX_RANGES];
};

/* Slots of the per-CPU `stats` array. */
enum tierd_bpf_stat {
	TIERD_BPF_STAT_OVERFLOW = 0,    /* re-access faults that found `counts` full */
	TIERD_BPF_STAT_FIRST_TOUCH = 1, /* a page's first fault in a process since it was tracked */
	TIERD_BPF_STAT_PERF_OVERFLOW = 2, /* perf_event samples that found `perf_counts` full */
	TIERD_BPF_STAT_PERF_OTHER = 3,  /* perf_event samples of tracked processes outside their ranges */
	TIERD_BPF_NSTATS = 4,
};

/* Key of the `counts` map; its value is a __u64 count of faults since the last drain. */
struct tierd_bpf_page_key {
	__u32 seg;
	__u32 pad; /* always 0: keys are compared byte by byte */
	__u64 page;
};

/* Migration outcomes (bpf/migrate.bpf.c): one slot per `enum migrate_reason` value (MR_*; the
 * names come from the kernel's BTF), the last slot also for any value beyond. */
#define TIERD_BPF_MIGRATE_REASONS 16

/* Value of the per-CPU `outcomes` array: the sums of mm_migrate_pages' fields over its calls. */
struct tierd_bpf_migrate {
	__u64 calls;
	__u64 succeeded;
	__u64 failed;
	__u64 thp_succeeded;
	__u64 thp_failed;
	__u64 thp_split;
	__u64 large_folio_split; /* 0 on kernels whose tracepoint lacks the field */
};

_Static_assert(sizeof(struct tierd_bpf_migrate) == 56, "tierd_bpf_migrate layout");
_Static_assert(sizeof(struct tierd_bpf_range) == 32, "tierd_bpf_range layout");
_Static_assert(sizeof(struct tierd_bpf_proc) == 32 * TIERD_BPF_MAX_RANGES, "tierd_bpf_proc layout");
_Static_assert(sizeof(struct tierd_bpf_page_key) == 16, "tierd_bpf_page_key layout");

#endif
