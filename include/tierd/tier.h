/* SPDX-License-Identifier: MIT */
/*
 * libtier: put an application's shared memory under tierd.
 *
 * A tracked segment is a sealed memfd (shmem, or hugetlbfs with MFD_HUGETLB) mapped MAP_SHARED in
 * the calling process. A control thread (all signals blocked; it never touches the tracked
 * memory) connects to tierd, hands it the memfd and a userfaultfd, executes tierd's zap requests
 * on the process's own mapping, and guards the application:
 *   - tierd absent at attach time: the segment works untracked; the library says so once on
 *     stderr and keeps retrying with backoff;
 *   - tierd dies (socket hang-up): the control thread closes its uffd copy, which releases every
 *     blocked fault; tracking resumes when tierd is back;
 *   - tierd hangs (no PONG within the hang timeout): the control thread unregisters the whole
 *     mapping and wakes every blocked fault on its own, then reconnects with backoff.
 * fork(): children re-attach on their own through a pthread_atfork child handler.
 *
 * Every function returns 0 (or a documented value) on success and a negative errno on failure.
 */
#ifndef TIERD_TIER_H
#define TIERD_TIER_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum tier_kind {
	TIER_SHMEM = 1,   /* 4 KiB pages from shmem */
	TIER_HUGETLB = 2, /* huge pages from hugetlbfs (pool: /proc/sys/vm/nr_hugepages) */
};

struct tier_options {
	const char *name;        /* memfd name, for /proc/PID/maps; NULL = "tier" */
	enum tier_kind kind;
	size_t size;             /* bytes; rounded up to the page size */
	unsigned huge_shift;     /* hugetlb page size as log2 (21 = 2 MiB, 30 = 1 GiB); 0 = default */
	const char *socket_path; /* NULL = $TIERD_SOCKET, else /run/tierd/tierd.sock */
	unsigned hang_timeout_ms;/* 0 = $TIERD_HANG_TIMEOUT_MS, else 2000 */
};

enum tier_state {
	TIER_STATE_UNTRACKED = 0, /* not attached (tierd absent, refused, or detached) */
	TIER_STATE_TRACKED = 1,   /* attached: tierd tracks this mapping */
	TIER_STATE_DISABLED = 2,  /* will not attach: the kernel lacks what tracking needs */
};

struct tier_info {
	enum tier_state state;
	uint32_t segment_id;     /* tierd's id while tracked */
	uint32_t attach_id;
	uint64_t attaches;       /* successful attaches (re-attaches after tierd restarts count) */
	uint64_t detaches;       /* socket hang-ups and refusals */
	uint64_t guardian_detaches; /* detaches because tierd stopped answering */
	uint64_t zaps;           /* sampling windows zapped on tierd's request */
	int last_error;          /* negative errno of the last failure, 0 if none */
	char last_reason[160];   /* human-readable reason of the last failure */
};

struct tier_segment;

/* Creates, seals, maps and (asynchronously) attaches a segment. The mapping is usable at once. */
int tier_segment_create(const struct tier_options *opts, struct tier_segment **ret);

/*
 * Adopts an existing mapping of a memfd sealed with F_SEAL_SHRINK (the LD_PRELOAD shim's path).
 * The segment takes ownership of memfd; addr/len must map it from offset 0.
 */
int tier_segment_adopt(int memfd, void *addr, size_t len, const struct tier_options *opts,
		       struct tier_segment **ret);

void *tier_segment_addr(const struct tier_segment *seg);
size_t tier_segment_size(const struct tier_segment *seg);
size_t tier_segment_page_size(const struct tier_segment *seg);
int tier_segment_memfd(const struct tier_segment *seg);

/* Copies the current state. */
void tier_segment_info(struct tier_segment *seg, struct tier_info *info);

/* Waits until the segment is tracked: 0, -ETIMEDOUT, or the negative errno that disabled it. */
int tier_segment_wait_tracked(struct tier_segment *seg, unsigned timeout_ms);

/*
 * Asks tierd which pages it currently rates hot. bitmap holds one bit per page (page i = bit
 * i % 8 of byte i / 8) for npages pages. *faults (optional) receives the faults tierd resolved for
 * the segment. Opens a short connection of its own.
 */
int tier_segment_heat(struct tier_segment *seg, uint8_t *bitmap, uint64_t npages, uint64_t *faults);

/* The same for any segment tierd tracks, by its id (tierctl status lists them); the asker must be
 * root or share the uid of a process attached to it. socket_path NULL: $TIERD_SOCKET or the
 * default. */
int tier_heat_query(const char *socket_path, uint32_t segment_id, uint8_t *bitmap, uint64_t npages,
		    uint64_t *faults);

/* Detaches (tierd releases everything), unmaps and closes. NULL-safe. */
void tier_segment_destroy(struct tier_segment *seg);

/* Fetches tierd's status document (JSON) into buf. Returns its length or a negative errno. */
int tier_status_json(const char *socket_path, char *buf, size_t len);

/*
 * Asks tierd to do something (tierctl; root only): op is an enum tierd_control_op
 * (<tierd/proto.h>), args its string arguments, fd an fd to pass along (-1: none). tierd's answer
 * (what it did, or why not) goes to out. Returns tierd's status: 0 or a negative errno (also
 * when tierd cannot be reached).
 */
int tier_control(const char *socket_path, uint32_t op, uint64_t arg, const char *const *args,
		 unsigned nargs, int fd, char *out, size_t len);

#ifdef __cplusplus
}
#endif
#endif
