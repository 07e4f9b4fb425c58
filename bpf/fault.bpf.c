/* SPDX-License-Identifier: MIT */
/*
 * The per-page fault counter: every user page fault of a process tierd tracks, inside one of the
 * ranges tierd registered for it, adds one to (segment, page) in `counts`; tierd drains and
 * deletes the entries each epoch (daemon/bpf.c). When `counts` is full the fault is added to the
 * per-CPU `overflow` counter instead: counted, never silently dropped.
 *
 * This sees every user page fault in the ranges: the minor faults tierd resolves through
 * userfaultfd for armed windows (the same event the uffd path counts), and the ones it never
 * hears of — first touches after fork, pages outside windows after tierd released them, zapped
 * pages the kernel maps back on its own. Faults, not accesses: a page that stays mapped is touched
 * for free and counted once.
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

/* Faults that found `counts` full. Per CPU: no contention on a counter every CPU may hit. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} overflow SEC(".maps");

static void count_page(__u32 seg, __u64 page)
{
	struct tierd_bpf_page_key key = { .seg = seg, .page = page };
	__u64 one = 1, *v;
	__u32 zero = 0;
	long err;

	v = bpf_map_lookup_elem(&counts, &key);
	if (v) {
		__sync_fetch_and_add(v, 1);
		return;
	}
	err = bpf_map_update_elem(&counts, &key, &one, BPF_NOEXIST);
	if (err == -17 /* EEXIST: another CPU inserted it meanwhile */) {
		v = bpf_map_lookup_elem(&counts, &key);
		if (v) {
			__sync_fetch_and_add(v, 1);
			return;
		}
	}
	if (err) {
		v = bpf_map_lookup_elem(&overflow, &zero);
		if (v) /* this CPU's slot; atomic all the same: the program may be preempted */
			__sync_fetch_and_add(v, 1);
	}
}

SEC("tp_btf/page_fault_user")
int BPF_PROG(page_fault_user, unsigned long address, struct pt_regs *regs, unsigned long error_code)
{
	struct bpf_pidns_info ns;
	struct tierd_bpf_proc *p;
	__u32 tgid;

	/* Fails for a task whose pid namespace is not tierd's: it cannot be one of its clients
	 * (a client in a namespace nested below tierd's is not counted either). */
	if (bpf_get_ns_current_pid_tgid(pidns_dev, pidns_ino, &ns, sizeof(ns)))
		return 0;
	tgid = ns.tgid;
	p = bpf_map_lookup_elem(&procs, &tgid);
	if (!p)
		return 0;
	for (int i = 0; i < TIERD_BPF_MAX_RANGES; i++) {
		struct tierd_bpf_range *r = &p->ranges[i];

		/* Unsigned: an address below start wraps and fails the test too. */
		if (address - r->start < r->length) {
			count_page(r->seg, (address - r->start) >> (r->page_shift & 63));
			break;
		}
	}
	return 0;
}
