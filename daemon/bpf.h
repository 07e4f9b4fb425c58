/* SPDX-License-Identifier: MIT */
/*
 * The eBPF samplers' loader (bpf/fault.bpf.c): opens, sizes, loads and attaches the skeleton, keeps
 * the in-kernel table of tracked processes' ranges, and drains the per-page fault counts. No
 * logging of its own beyond libbpf's chatter at debug level: callers decide what a failure means
 * (tierd runs on with faults alone).
 */
#ifndef TIERD_BPF_LOADER_H
#define TIERD_BPF_LOADER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tierd.bpf.h"

struct tierd_bpf;

struct tierd_bpf_opts {
	uint32_t map_entries; /* distinct (segment, page) counted per drain; more go to overflow */
	uint32_t max_procs;   /* tracked processes */
	uint64_t seen_pages;  /* pages of all tracked ranges together (first-touch bits); 0: 1 << 24 */
	uint32_t perf_map_entries; /* distinct pages the perf_event sampler counts per drain; 0: no
				    * perf sampler will be started (its map gets 1 entry) */
	uint64_t percpu_pages;     /* > 0: count re-access faults in per-CPU per-page counters
				    * (that many pages of all tracked ranges together; also caps
				    * seen_pages) instead of the `counts` hash; 0: the hash */
	bool pidns_helper;         /* ask the pid namespace helper even when tierd runs in the
				    * initial namespace (tierd-bench compares the two) */
};

/* Counters kept in the kernel since load, summed over CPUs. */
struct tierd_bpf_stats {
	uint64_t overflow;    /* re-access faults that found the count map full */
	uint64_t first_touch; /* first faults of a page in a process since it was tracked: not heat */
	uint64_t perf_overflow; /* perf_event samples that found their count map full */
	uint64_t perf_other;    /* perf_event samples of tracked processes outside their ranges */
};

struct perfsel;

/* Loads and attaches the page-fault counter. Returns 0, or a negative errno with `why` saying
 * what is missing in words a user can act on (no BTF, no CAP_BPF/CAP_PERFMON, attach refused). */
int tierd_bpf_new(const struct tierd_bpf_opts *o, struct tierd_bpf **ret, char *why, size_t whylen);
/* Detaches and frees; NULL-safe. Returns NULL. */
struct tierd_bpf *tierd_bpf_free(struct tierd_bpf *b);

/* Counts the faults of process `tgid` (as tierd's pid namespace numbers it) in [start, start +
 * length), a mapping of segment `seg` from its page 0 in pages of page_size bytes (a power of
 * two). A page's first fault from now on is a first touch (tierd_bpf_stats()), later ones are
 * counted per page. Returns 0, -ENOSPC when the process already has TIERD_BPF_MAX_RANGES ranges,
 * -ENOBUFS when the first-touch bits of all tracked ranges would exceed opts.seen_pages, -EINVAL
 * for a bad page size, or the bpf(2) error. */
int tierd_bpf_track(struct tierd_bpf *b, uint32_t tgid, uint64_t start, uint64_t length, uint32_t seg,
		    uint64_t page_size);
/* Stops counting the range of `tgid` that starts at `start`. Returns 0 or -ENOENT. */
int tierd_bpf_untrack(struct tierd_bpf *b, uint32_t tgid, uint64_t start);

typedef void (*tierd_bpf_sample_fn)(void *ctx, uint32_t seg, uint64_t page, uint64_t count);
/* Hands every counted (segment, page) to fn and deletes it (read and deleted together, a bucket at
 * a time: a fault counted while the drain runs lands in this drain or the next, save one that
 * races the delete itself). With per-CPU counters (opts.percpu_pages), reads every tracked range's
 * counters, sums the CPUs and hands over each page's growth since the last drain: nothing is
 * lost to a race, but the cost grows with the pages tracked, not with the pages faulted, and what
 * a range counted after its last drain is dropped when it is untracked. Returns the entries
 * (pages) handed over or a negative errno. */
int tierd_bpf_drain(struct tierd_bpf *b, tierd_bpf_sample_fn fn, void *ctx);
/* The kernel-side counters since load. Returns 0 or a negative errno. */
int tierd_bpf_stats(const struct tierd_bpf *b, struct tierd_bpf_stats *ret);

/* The page-fault program's total run time and runs as the kernel counts them while its BPF
 * run-time statistics are on (bpf_enable_stats(BPF_STATS_RUN_TIME), or sysctl
 * kernel.bpf_stats_enabled=1); both stay 0 otherwise. Returns 0 or a negative errno. */
int tierd_bpf_fault_runtime(const struct tierd_bpf *b, uint64_t *run_ns, uint64_t *runs);

/* Opens the event `ev` (daemon/perfsel.c) on every online CPU (pid -1: every process there; the
 * program keeps tracked processes' samples in their ranges) with PERF_SAMPLE_ADDR and attaches
 * the perf_event program to each. Needs opts.perf_map_entries > 0 at load. Returns 0, or a
 * negative errno with `why` in words a user can act on (perf_event_paranoid, CAP_PERFMON,
 * CAP_SYS_ADMIN at paranoid 3); nothing stays open on failure. */
int tierd_bpf_perf_start(struct tierd_bpf *b, const struct perfsel *ev, char *why, size_t whylen);
/* Hands every (segment, page) sampled since the last call to fn (count = samples) and deletes
 * it. Returns the entries drained or a negative errno. */
int tierd_bpf_perf_drain(struct tierd_bpf *b, tierd_bpf_sample_fn fn, void *ctx);
/* The CPUs the perf event is open on (0: not started). */
int tierd_bpf_perf_cpus(const struct tierd_bpf *b);

/* Migration outcomes: what migrate_pages() reported for tierd's own calls (move_pages(2),
 * mbind(2)), summed per reason (bpf/migrate.bpf.c, loaded and attached with the samplers by
 * tierd_bpf_new(); a kernel that refuses that program still gets the samplers). */

/* The sums for one reason (the fields of migrate:mm_migrate_pages; calls: how many). */
struct tierd_kmig {
	uint64_t calls, succeeded, failed, thp_succeeded, thp_failed, thp_split, large_folio_split;
};

/* NULL when the migration counter runs, else why not. */
const char *tierd_bpf_migrate_status(const struct tierd_bpf *b);
/* The sums since load, one per reason (index: the kernel's enum migrate_reason value; the last
 * also holds any larger value); all zero while the counter is off. Returns 0 or a negative
 * errno. */
int tierd_bpf_migrate_read(struct tierd_bpf *b, struct tierd_kmig out[TIERD_BPF_MIGRATE_REASONS]);
/* The name of a reason as this kernel's BTF spells it, lower case without MR_ ("syscall"); NULL
 * when unknown (the caller names it by number). The first call reads the kernel's BTF. */
const char *tierd_bpf_migrate_reason(struct tierd_bpf *b, unsigned reason);

#endif
