/* SPDX-License-Identifier: MIT */
/* What tierd keeps of its privileges once it has started (docs/reliability.md, "Privileges"). */
#ifndef TIERD_PRIVS_H
#define TIERD_PRIVS_H

#include <stdbool.h>

struct privs {
	char kept[160];	    /* the capabilities kept (libcap-ng's names, ", "-separated), or "none" */
	unsigned dropped;   /* how many permitted capabilities were given up */
	bool bounding;	    /* the bounding set was cut down to `kept` as well */
	bool no_new_privs;  /* PR_SET_NO_NEW_PRIVS: no exec can give any back */
	char why[160];	    /* why nothing was dropped, when privs_drop() failed */
};

/* Gives up every capability tierd does not use once its socket listens, in every set: effective,
 * permitted, inheritable, ambient, and (with CAP_SETPCAP) the bounding set; then sets
 * PR_SET_NO_NEW_PRIVS. Kept, when tierd has them: CAP_SYS_PTRACE (reading clients' /proc/PID/maps),
 * CAP_SYS_NICE (MPOL_MF_MOVE_ALL), CAP_BPF and CAP_PERFMON (the eBPF samplers: their load, and
 * their maps on older kernels), and CAP_SYS_ADMIN only on a kernel without CAP_BPF. Capabilities belong to a thread:
 * call it before tierd starts any. Returns 0, or a negative errno with `p->why` set. */
int privs_drop(struct privs *p);

#endif
