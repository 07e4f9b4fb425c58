/* SPDX-License-Identifier: MIT */
/*
 * The kernel types tierd's BPF programs (bpf/NAME.bpf.c) use, for a build machine without kernel
 * BTF (/sys/kernel/btf/vmlinux) to generate vmlinux.h from. Hand-maintained, and only what the
 * programs name: the Makefile uses it as $(BUILD)/bpf/vmlinux.h when VMLINUX_BTF is unreadable
 * or "none", and make check builds every program against it (check-bpf-fallback), so a type a
 * program starts using fails there until it is added here.
 *
 * Kernel-internal structs carry preserve_access_index: their field offsets are CO-RE relocations
 * resolved against the running kernel's BTF at load, so only the fields named here need to
 * exist, in any order, at any offset. UAPI values (map types, flags, struct bpf_pidns_info,
 * struct bpf_perf_event_data) are ABI and are spelled as the kernel's uapi/linux/bpf.h has them.
 * The programs still need kernel BTF where they *run* (tp_btf attach, CO-RE).
 */
#ifndef __VMLINUX_H__
#define __VMLINUX_H__

typedef unsigned char __u8;
typedef signed char __s8;
typedef unsigned short __u16;
typedef short __s16;
typedef unsigned int __u32;
typedef int __s32;
typedef unsigned long long __u64;
typedef long long __s64;
typedef __u16 __be16;
typedef __u32 __be32;
typedef __u32 __wsum;
typedef _Bool bool;
enum { false = 0, true = 1 };

/* uapi/linux/bpf.h */
enum bpf_map_type {
	BPF_MAP_TYPE_HASH = 1,
	BPF_MAP_TYPE_ARRAY = 2,
	BPF_MAP_TYPE_PERCPU_ARRAY = 6,
};

enum {
	BPF_ANY = 0,
	BPF_NOEXIST = 1,
	BPF_EXIST = 2,
};

enum {
	BPF_F_MMAPABLE = (1U << 10),
};

struct bpf_pidns_info {
	__u32 pid;
	__u32 tgid;
};

/* Opaque to the programs: only passed around (BPF_PROG's argument list). */
struct pt_regs;

/* uapi/linux/bpf_perf_event.h: the perf_event program's context. Its first member (the
 * registers, bpf_user_pt_regs_t) is arch-specific and not read here; the offset of the one field
 * read, addr, is a CO-RE relocation against the kernel's own definition. */
struct bpf_perf_event_data {
	__u64 sample_period;
	__u64 addr;
} __attribute__((preserve_access_index));

/* include/trace/events/migrate.h: the record of migrate:mm_migrate_pages. Only field existence
 * is asked (bpf_core_field_exists), to know how many arguments the tp_btf prototype has. */
struct trace_event_raw_mm_migrate_pages {
	unsigned long succeeded;
	unsigned long failed;
	unsigned long thp_succeeded;
	unsigned long thp_failed;
	unsigned long thp_split;
	unsigned long large_folio_split;
	int mode;
	int reason;
} __attribute__((preserve_access_index));

#endif
