/* SPDX-License-Identifier: MIT */
/*
 * The eBPF samplers' loader (bpf/fault.bpf.c): opens, sizes, loads and attaches the skeleton, keeps
 * the in-kernel table of tracked processes' ranges, and drains the per-page fault counts. No
 * logging of its own beyond libbpf's chatter at debug level: callers decide what a failure means
 * (tierd runs on with faults alone).
 */
#ifndef TIERD_BPF_LOADER_H
#define TIERD_BPF_LOADER_H

#include <stddef.h>
#include <stdint.h>

struct tierd_bpf;

struct tierd_bpf_opts {
	uint32_t map_entries; /* distinct (segment, page) counted per drain; more go to overflow */
	uint32_t max_procs;   /* tracked processes */
};

/* Loads and attaches the page-fault counter. Returns 0, or a negative errno with `why` saying
 * what is missing in words a user can act on (no BTF, no CAP_BPF/CAP_PERFMON, attach refused). */
int tierd_bpf_new(const struct tierd_bpf_opts *o, struct tierd_bpf **ret, char *why, size_t whylen);
/* Detaches and frees; NULL-safe. Returns NULL. */
struct tierd_bpf *tierd_bpf_free(struct tierd_bpf *b);

/* Counts the faults of process `tgid` (as tierd's pid namespace numbers it) in [start, start + length), a mapping of segment `seg` from
 * its page 0 in pages of page_size bytes (a power of two). Returns 0, -ENOSPC when the process
 * already has TIERD_BPF_MAX_RANGES ranges, -EINVAL for a bad page size, or the bpf(2) error. */
int tierd_bpf_track(struct tierd_bpf *b, uint32_t tgid, uint64_t start, uint64_t length, uint32_t seg,
		    uint64_t page_size);
/* Stops counting the range of `tgid` that starts at `start`. Returns 0 or -ENOENT. */
int tierd_bpf_untrack(struct tierd_bpf *b, uint32_t tgid, uint64_t start);

typedef void (*tierd_bpf_sample_fn)(void *ctx, uint32_t seg, uint64_t page, uint64_t count);
/* Hands every counted (segment, page) to fn and deletes it (read and deleted together, a bucket at
 * a time: a fault counted while the drain runs lands in this drain or the next, save one that
 * races the delete itself). Returns the entries drained or a negative errno. */
int tierd_bpf_drain(struct tierd_bpf *b, tierd_bpf_sample_fn fn, void *ctx);
/* Faults that found the count map full since load (all CPUs). Returns 0 or a negative errno. */
int tierd_bpf_overflow(const struct tierd_bpf *b, uint64_t *ret);

#endif
