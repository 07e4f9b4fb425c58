/* SPDX-License-Identifier: MIT */
/*
 * The per-page fault counter: a user page fault of a process tierd tracks, inside one of the
 * ranges tierd registered for it, on a page that process has faulted before since it was tracked,
 * adds one to (segment, page) in `counts`; tierd drains and deletes the entries each epoch
 * (daemon/bpf.c). When `counts` is full the fault is added to the per-CPU overflow counter
 * instead: counted, never silently dropped. With per-CPU counters (sampling.bpf_percpu_pages) it
 * bumps the page's slot in `pcounts` instead: no hash, never full (see `pcounts`).
 *
 * A page's first fault in a process since tierd tracked it is not heat — it is the write that
 * populates a fresh page, or a new or forked process mapping the segment for the first time —
 * and is only counted, in the per-CPU first-touch counter: the uffd path's FIRST_TOUCH. One bit
 * per page and range in `seen` tells the two apart: a fetch-or per fault, no allocation. What
 * is counted is a re-access: a fault on a page the process had mapped and lost since (tierd's
 * zaps, the kernel unmapping it). Faults, not accesses: a page that stays mapped is touched for
 * free and not seen.
 *
 * The perf_event sampler (perf_sample, below) is the source for accesses to mapped pages: tierd
 * attaches it to a per-CPU sampling event (PEBS mem-loads, IBS ops, or the software page-fault
 * event: daemon/perfsel.c); a sample's data address in a tracked range adds one to
 * `perf_counts[(segment, page)]`, drained like `counts`. Samples are accesses, not faults: no
 * first-touch filter.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "tierd.bpf.h"

char LICENSE[] SEC("license") = "Dual MIT/GPL";

/* tierd's pid namespace (the nsfs dev and inode of /proc/self/ns/pid), set by the loader before
 * load: tierd knows its clients by the pids SO_PEERCRED gives, which are numbers in its own
 * namespace, so faults are attributed to tgids as that namespace sees them (under systemd-nspawn
 * or in a container they differ from the kernel's global ones). */
const volatile __u64 pidns_dev = 0;
const volatile __u64 pidns_ino = 0;
/* Set when that namespace is the initial one (tierd as a systemd service): its numbers are then
 * the kernel's own tgids, read without the namespace helper, which cost 140 ns of the program's
 * 300 on the test host (kernel BPF run-time stats: docs/bpf.md). Clients in nested namespaces
 * (containers) are counted too in that case: SO_PEERCRED gave tierd their global pids. */
const volatile bool init_pidns = false;

/* tgid → its ranges; written by tierd on attach/detach only. Sized for max_clients' worth of
 * processes in the loader (set before load). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, struct tierd_bpf_proc);
} procs SEC(".maps");

/* (segment, page) → faults since the last drain. max_entries comes from the configuration
 * (sampling.bpf_map_entries), set by the loader before load. Preallocated (the default): an
 * update in the fault path never allocates, and a full map answers -E2BIG. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct tierd_bpf_page_key);
	__type(value, __u64);
} counts SEC(".maps");

/* The per-CPU counters (sampling.bpf_percpu_pages > 0, `percpu_counts` set by the loader): one
 * per page of every tracked range, at the range's first-touch bit index (seen_word * 64 + page),
 * on each CPU: an array slot instead of a shared hash entry, never full. tierd sums the CPUs' values
 * and hands over what grew since its last read (daemon/bpf.c). Sized by the loader (1 entry when
 * off). */
const volatile bool percpu_counts = false;
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} pcounts SEC(".maps");

/* (segment, page) → perf_event samples since the last drain; sized by the loader (1 entry when
 * the perf sampler is not wanted). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct tierd_bpf_page_key);
	__type(value, __u64);
} perf_counts SEC(".maps");

/* One bit per page of every tracked range ("faulted since tracked"), 64 pages a word; the loader
 * hands each range its own words (zeroed) and sizes the array from the configuration
 * (sampling.bpf_seen_pages). Mappable: the loader zeroes a range's words with a memset. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 1 << 18);
	__type(key, __u32);
	__type(value, __u64);
} seen SEC(".maps");

/* enum tierd_bpf_stat counters. Per CPU: no contention on counters every CPU may hit. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, TIERD_BPF_NSTATS);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

static void stat_add(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&stats, &idx);

	if (v) /* this CPU's slot; atomic all the same: the program may be preempted */
		__sync_fetch_and_add(v, 1);
}

/* Sets the page's bit; returns true when it was already set (the page faulted before). */
static bool seen_before(const struct tierd_bpf_range *r, __u64 page)
{
	__u32 idx = (__u32)(r->seen_word + (page >> 6));
	__u64 bit = 1ULL << (page & 63), *w;

	w = bpf_map_lookup_elem(&seen, &idx);
	if (!w) /* out of the array: the loader never hands out such a range */
		return false;
	/* Read first: a re-access (the common case once a page is known) costs no atomic. */
	if (*w & bit)
		return true;
	/* Two threads may race on the same first touch: only one of them finds the bit clear. */
	return (__sync_fetch_and_or(w, bit) & bit) != 0;
}

/* Adds one to map[(seg, page)], or to the stats slot `full` when the map is full. */
static __always_inline void count_page(void *map, __u32 full, __u32 seg, __u64 page)
{
	struct tierd_bpf_page_key key = { .seg = seg, .page = page };
	__u64 one = 1, *v;
	long err;

	v = bpf_map_lookup_elem(map, &key);
	if (v) {
		__sync_fetch_and_add(v, 1);
		return;
	}
	err = bpf_map_update_elem(map, &key, &one, BPF_NOEXIST);
	if (err == -17 /* EEXIST: another CPU inserted it meanwhile */) {
		v = bpf_map_lookup_elem(map, &key);
		if (v) {
			__sync_fetch_and_add(v, 1);
			return;
		}
	}
	if (err)
		stat_add(full);
}

/* The range of the current process (a tracked one, in tierd's pid namespace) that holds
 * `address`, and the page there; NULL when none does. */
static __always_inline struct tierd_bpf_range *find_range(__u64 address, __u64 *page, bool *tracked)
{
	struct bpf_pidns_info ns;
	struct tierd_bpf_proc *p;
	__u32 tgid;

	*tracked = false;
	if (init_pidns) {
		tgid = (__u32)(bpf_get_current_pid_tgid() >> 32);
	} else {
		/* Fails for a task whose pid namespace is not tierd's: it cannot be one of its
		 * clients (a client in a namespace nested below tierd's is not counted either). */
		if (bpf_get_ns_current_pid_tgid(pidns_dev, pidns_ino, &ns, sizeof(ns)))
			return NULL;
		tgid = ns.tgid;
	}
	p = bpf_map_lookup_elem(&procs, &tgid);
	if (!p)
		return NULL;
	*tracked = true;
	for (int i = 0; i < TIERD_BPF_MAX_RANGES; i++) {
		struct tierd_bpf_range *r = &p->ranges[i];

		/* Unsigned: an address below start wraps and fails the test too. */
		if (address - r->start < r->length) {
			*page = (address - r->start) >> (r->page_shift & 63);
			return r;
		}
	}
	return NULL;
}

SEC("tp_btf/page_fault_user")
int BPF_PROG(page_fault_user, unsigned long address, struct pt_regs *regs, unsigned long error_code)
{
	struct tierd_bpf_range *r;
	bool tracked;
	__u64 page;

	r = find_range(address, &page, &tracked);
	if (!r)
		return 0;
	if (seen_before(r, page)) {
		if (percpu_counts) {
			__u32 idx = (__u32)(r->seen_word * 64 + page);
			__u64 *c = bpf_map_lookup_elem(&pcounts, &idx);

			/* This CPU's slot; atomic all the same: the program may be preempted. */
			if (c)
				__sync_fetch_and_add(c, 1);
			else /* out of the array: the loader never hands out such a range */
				stat_add(TIERD_BPF_STAT_OVERFLOW);
		} else {
			count_page(&counts, TIERD_BPF_STAT_OVERFLOW, r->seg, page);
		}
	} else
		stat_add(TIERD_BPF_STAT_FIRST_TOUCH);
	return 0;
}

SEC("perf_event")
int perf_sample(struct bpf_perf_event_data *ctx)
{
	struct tierd_bpf_range *r;
	bool tracked;
	__u64 page;

	/* The sampled data address (PERF_SAMPLE_ADDR): a load's for PEBS and IBS, the faulting
	 * address for the software page-fault event; 0 when the sample has none. */
	r = find_range(ctx->addr, &page, &tracked);
	if (r)
		count_page(&perf_counts, TIERD_BPF_STAT_PERF_OVERFLOW, r->seg, page);
	else if (tracked)
		stat_add(TIERD_BPF_STAT_PERF_OTHER);
	return 0;
}
