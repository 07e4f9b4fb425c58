/* SPDX-License-Identifier: MIT */
/*
 * What the kernel actually migrated for tierd: migrate_pages() ends with the tracepoint
 * migrate:mm_migrate_pages (succeeded, failed, thp_succeeded, thp_failed, thp_split, since 6.x
 * large_folio_split, mode, reason). For calls made by tierd itself (its move_pages(2) and mbind(2)
 * on the alias: reason MR_SYSCALL or MR_MEMPOLICY_MBIND) the fields are added to the per-CPU
 * `outcomes` slot of their reason; tierd reads the sums (daemon/bpf.c). Another process's
 * migrations, and the kernel's own (compaction, NUMA balancing, demotion in kswapd), are not
 * tierd's and not counted.
 *
 * tp_btf hands the tracepoint's arguments as an array of u64 in prototype order. The prototype
 * grew (thp_split, then large_folio_split): which ones this kernel has is read from its BTF
 * (CO-RE field checks on the event's record), and the arguments after them are read at the
 * index that follows. The verifier only allows constant offsets into the context, so those
 * reads go through bpf_probe_read_kernel.
 *
 * Linked into one object with fault.bpf.c (Makefile: samplers.bpf.o), whose license and pid
 * namespace knobs it shares.
 */
#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>

#include "tierd.bpf.h"

/* tierd's pid namespace (defined in fault.bpf.c) and its tgid there, set by the loader before
 * load. */
extern const volatile __u64 pidns_dev;
extern const volatile __u64 pidns_ino;
const volatile __u32 self_tgid = 0;

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, TIERD_BPF_MIGRATE_REASONS);
	__type(key, __u32);
	__type(value, struct tierd_bpf_migrate);
} outcomes SEC(".maps");

static __u64 arg(__u64 *ctx, unsigned int i)
{
	__u64 v = 0;

	bpf_probe_read_kernel(&v, sizeof(v), ctx + i);
	return v;
}

SEC("tp_btf/mm_migrate_pages")
int mm_migrate_pages(__u64 *ctx)
{
	struct bpf_pidns_info ns;
	struct tierd_bpf_migrate *o;
	unsigned int i = 4; /* the first argument after thp_failed */
	__u64 thp_split = 0, lf_split = 0;
	__u32 reason;

	if (bpf_get_ns_current_pid_tgid(pidns_dev, pidns_ino, &ns, sizeof(ns)) || ns.tgid != self_tgid)
		return 0;
	if (bpf_core_field_exists(struct trace_event_raw_mm_migrate_pages, thp_split))
		thp_split = arg(ctx, i++);
	if (bpf_core_field_exists(struct trace_event_raw_mm_migrate_pages, large_folio_split))
		lf_split = arg(ctx, i++);
	i++; /* mode */
	reason = (__u32)arg(ctx, i);
	if (reason >= TIERD_BPF_MIGRATE_REASONS)
		reason = TIERD_BPF_MIGRATE_REASONS - 1;
	o = bpf_map_lookup_elem(&outcomes, &reason);
	if (!o)
		return 0;
	/* This CPU's slot; atomic all the same: the program may be preempted. */
	__sync_fetch_and_add(&o->calls, 1);
	__sync_fetch_and_add(&o->succeeded, ctx[0]);
	__sync_fetch_and_add(&o->failed, ctx[1]);
	__sync_fetch_and_add(&o->thp_succeeded, ctx[2]);
	__sync_fetch_and_add(&o->thp_failed, ctx[3]);
	__sync_fetch_and_add(&o->thp_split, thp_split);
	__sync_fetch_and_add(&o->large_folio_split, lf_split);
	return 0;
}
