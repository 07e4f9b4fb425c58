/* SPDX-License-Identifier: MIT */
/*
 * The pre-flight report of `tierd --check-system`: one item per check, each OK, WARN or FAIL,
 * with what was found and, for WARN/FAIL, the fix (a sysctl, a package, a setting).
 *
 * Pure: everything is read under a `root` prefix ("" = this machine; a fixture tree in tests)
 * from ROOT/proc, ROOT/sys and ROOT/dev/userfaultfd. The one thing that cannot be read from a
 * file — what UFFDIO_API offers — is probed by the caller and handed in. Nothing here logs.
 *
 * Items, by name (tests and the man page refer to them):
 *   uffd.api uffd.minor_shmem uffd.minor_hugetlbfs uffd.dev uffd.unprivileged
 *   numa.tiers numa.tierK                     (K = 0.., one per tier, from tiers_describe())
 *   hugepages.nodeN hugepages.2M hugepages.demote.SIZEkB
 *   conflict.numa_balancing conflict.numad conflict.damon conflict.demotion
 *   bpf.btf perf.paranoid perf.pmu kernel.lockdown
 *   cap.sys_nice cap.sys_ptrace cap.bpf cap.perfmon
 * FAIL only where tierd cannot track anything the kernel lacks (uffd.*); everything else that
 * limits tierd is a WARN.
 */
#ifndef TIERD_SYSCHECK_H
#define TIERD_SYSCHECK_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

enum syscheck_verdict { SYSCHECK_OK, SYSCHECK_WARN, SYSCHECK_FAIL };

#define SYSCHECK_NAME_BYTES 32
#define SYSCHECK_FOUND_BYTES 768 /* the feature list and a tier's nodes are the long ones */
#define SYSCHECK_FIX_BYTES 384

struct syscheck_item {
	enum syscheck_verdict verdict;
	char name[SYSCHECK_NAME_BYTES];
	char found[SYSCHECK_FOUND_BYTES];
	char fix[SYSCHECK_FIX_BYTES]; /* "" for OK */
};

struct syscheck {
	unsigned n, cap;
	struct syscheck_item *items; /* in the order the checks ran */
};

/* What a UFFDIO_API probe on this kernel gave (the caller runs it: a kernel call, not a file). */
struct syscheck_uffd_probe {
	int err;                  /* 0, or the negative errno from creating or probing a uffd */
	uint64_t offered;         /* UFFDIO_API features (err == 0) */
	bool second_call_refused; /* a second UFFDIO_API on one fd was refused */
	bool via_dev;             /* probed through /dev/userfaultfd: userfaultfd(2) was refused */
};

/* An empty report. Returns 0 or -ENOMEM. */
int syscheck_new(struct syscheck **ret);
/* NULL-safe; returns NULL. */
struct syscheck *syscheck_free(struct syscheck *sc);

/*
 * Runs every check under `root` ("" for the real /proc, /sys, /dev) and appends the items to
 * `sc`. A file that cannot be read is a finding (an item says so), not an error. Returns 0, or
 * -ENOMEM, or -ENAMETOOLONG when `root` is too long to build paths under.
 */
int syscheck_run(struct syscheck *sc, const char *root, const struct syscheck_uffd_probe *probe);

/* The item with this name, or NULL. */
const struct syscheck_item *syscheck_find(const struct syscheck *sc, const char *name);

/* The worst verdict in the report (SYSCHECK_OK when empty). */
enum syscheck_verdict syscheck_worst(const struct syscheck *sc);

/*
 * Writes one line per item: "WARN conflict.numa_balancing  <found> -- fix: <fix>". Returns 0 or
 * -EIO when the stream reports an error.
 */
int syscheck_print(const struct syscheck *sc, FILE *f);

#endif
