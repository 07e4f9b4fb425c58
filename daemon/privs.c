/* SPDX-License-Identifier: MIT */
/* Dropping the capabilities tierd does not need after start: see privs.h. */
#include "privs.h"

#include <cap-ng.h>
#include <errno.h>
#include <linux/capability.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>

static const struct {
	unsigned cap;
	bool only_without_bpf; /* kept only when the kernel has no CAP_BPF (before 5.8) */
} keep[] = {
	{ CAP_SYS_PTRACE, false }, /* /proc/PID/maps of a client of another uid (attach checks) */
	{ CAP_SYS_NICE, false },   /* move_pages(MPOL_MF_MOVE_ALL): pages a client still maps */
	/* The eBPF samplers: loading them (on a thread that inherits this set); kept afterwards for
	 * their maps, since older kernels check CAP_BPF on every bpf(2) command while
	 * kernel.unprivileged_bpf_disabled is set. tierd loads them only at start. */
	{ CAP_BPF, false },
	{ CAP_PERFMON, false },	   /* their tracing programs and perf events */
	{ CAP_SYS_ADMIN, true },   /* bpf(2) itself, on kernels that predate CAP_BPF */
};

static int fail(struct privs *p, int r, const char *what)
{
	snprintf(p->why, sizeof(p->why), "%s failed", what);
	return r;
}

int privs_drop(struct privs *p)
{
	unsigned last = CAP_LAST_CAP;
	bool has_bpf, setpcap, held[sizeof(keep) / sizeof(keep[0])];
	FILE *f;
	char *text;
	int r;

	memset(p, 0, sizeof(*p));
	/* The running kernel's last capability, which may be older than the headers'. */
	f = fopen("/proc/sys/kernel/cap_last_cap", "re");
	if (f) {
		if (fscanf(f, "%u", &last) != 1)
			last = CAP_LAST_CAP;
		fclose(f);
	}
	has_bpf = last >= CAP_BPF;
	if (capng_get_caps_process() < 0)
		return fail(p, -EIO, "reading the process's capabilities (capng_get_caps_process)");
	for (unsigned c = 0; c <= last; c++)
		p->dropped += capng_have_capability(CAPNG_PERMITTED, c) == 1;
	for (size_t i = 0; i < sizeof(keep) / sizeof(keep[0]); i++)
		held[i] = keep[i].cap <= last && (!keep[i].only_without_bpf || !has_bpf) &&
			  capng_have_capability(CAPNG_PERMITTED, keep[i].cap) == 1;
	setpcap = capng_have_capability(CAPNG_EFFECTIVE, CAP_SETPCAP) == 1;

	capng_clear(CAPNG_SELECT_ALL);
	for (size_t i = 0; i < sizeof(keep) / sizeof(keep[0]); i++) {
		if (!held[i])
			continue;
		p->dropped--;
		capng_update(CAPNG_ADD, CAPNG_EFFECTIVE | CAPNG_PERMITTED | CAPNG_BOUNDING_SET,
			     keep[i].cap);
	}
	/* The bounding set needs CAP_SETPCAP to shrink: tierd as root has it, tierd under its unit
	 * does not (and its CapabilityBoundingSet= is this same list already). */
	r = capng_apply(setpcap ? CAPNG_SELECT_ALL : CAPNG_SELECT_CAPS | CAPNG_SELECT_AMBIENT);
	if (r < 0)
		return fail(p, -EPERM, "capng_apply");
	p->bounding = setpcap;
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		return fail(p, -errno, "prctl(PR_SET_NO_NEW_PRIVS)");
	p->no_new_privs = true;

	text = capng_print_caps_text(CAPNG_PRINT_BUFFER, CAPNG_PERMITTED);
	snprintf(p->kept, sizeof(p->kept), "%s", text && *text ? text : "none");
	free(text);
	return 0;
}
