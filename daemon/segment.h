/* SPDX-License-Identifier: MIT */
/*
 * Segments: one per shared memory object (memfd), identified by (st_dev, st_ino). A segment owns
 * the memfd tierd received, tierd's alias mapping of it, the per-page state and the sampling
 * regions. Attachments (one per process mapping) point at it.
 */
#ifndef TIERD_SEGMENT_H
#define TIERD_SEGMENT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "region.h"
#include "tierd/policy.h"

/* Page flags (struct tierd_page.flags, include/tierd/policy.h: policies read them). */
#define PS_ARMED TIERD_PAGE_ARMED     /* inside the currently open sampling window */
#define PS_HIT TIERD_PAGE_HIT         /* touched while its window was open */
#define PS_EXISTS TIERD_PAGE_EXISTS   /* known to be in the page cache (a minor fault or CONTINUE saw it) */
#define PS_ALIASED TIERD_PAGE_HOST1   /* tierd's alias maps it (migration needs that) */
#define PS_MOVING TIERD_PAGE_MOVING   /* in the segment's migration batch: faults on it wait for the move */

/*
 * Per-page state (struct tierd_page, the policies' read-only view of it). The budget is 16 bytes
 * a page; this is 12, so that with the per-segment fixed costs (regions, windows) and a policy's
 * own few bytes a page tierd stays near 16 B a tracked page.
 */
_Static_assert(sizeof(struct tierd_page) <= 12, "tierd_page must stay within 12 bytes");

struct attachment;

/* A run of pages [start, start + n). */
struct page_run {
	uint64_t start, n;
};

/*
 * A migration batch in flight (zap-then-move, docs/migration.md): every attachment is asked to
 * zap `runs`; once all have (or the deadline passed) the pages move on the alias, and the faults
 * that came meanwhile are released onto the moved pages.
 */
struct seg_batch {
	uint64_t *pages;       /* demotions [0, ndemote), then promotions [ndemote, n) */
	size_t n, ndemote;
	struct page_run *runs; /* the pages, coalesced and sorted */
	size_t nruns;
	uint64_t deadline_usec; /* move with whatever was zapped by then */
	uint64_t started_usec;
	uint64_t held;          /* faults held on its pages (their latency is observed at release) */
	bool active;
};

/* Per-segment page counts are kept for node ids below this (status and tests). */
#define SEG_MAX_NODES 16

struct segment {
	uint32_t id;
	uint32_t kind; /* enum tierd_seg_kind */
	dev_t dev;
	ino_t ino;
	int memfd;
	void *alias;
	uint64_t size_bytes, page_size, npages;
	struct tierd_page *pages;
	struct region_set regions;

	/* Windows armed this epoch, shared by all attachments. */
	struct region_window *windows;
	size_t nwindows, windows_cap;

	struct seg_batch batch;

	/* The policy's view (policyd.c): the regions as it sees them, and the windows that closed
	 * at the end of the last epoch. */
	struct tierd_region *vregions;
	size_t vregions_cap;
	struct tierd_window *closed;
	size_t nclosed, closed_cap;
	int16_t *recorded_node; /* while recording: the node last written to the trace, per page */

	struct attachment *attachments; /* list through attachment.seg_next */
	unsigned nattach;
	/* Where the next epoch's arming starts in that list (attach.c: with many attachments only
	 * some get each epoch's windows, in turn). */
	unsigned arm_cursor;

	uint64_t faults;             /* minor faults resolved */
	uint64_t first_touch_faults; /* faults on pages tierd had not zapped (new process) */
	uint64_t windows_closed;
	uint64_t pages_on_node[SEG_MAX_NODES]; /* as of the last placement pass */
	uint64_t query_cursor; /* where the next pass goes on learning page nodes */
	uint64_t hot_cursor;   /* the same within the hot regions */
	struct segment *next, *grave_next;
};

struct memfd_info {
	dev_t dev;
	ino_t ino;
	uint32_t kind;
	uint64_t size_bytes, page_size;
	int seals;
};

/*
 * Inspects an fd a client claims is a tracked memfd: tmpfs or hugetlbfs, sealed against shrinking
 * (F_SEAL_SHRINK: an unsealed file that shrinks would SIGBUS tierd's alias). Returns 0 or a
 * negative errno with a human reason in `why`.
 */
int memfd_inspect(int fd, struct memfd_info *info, char *why, size_t whylen);

/* True when `fd` is a userfaultfd. */
bool fd_is_userfaultfd(int fd);

/*
 * Checks that process `pid` maps the file (dev, ino) at [base, base+length) from offset 0,
 * possibly as several adjacent VMAs. `maps_path` is normally "/proc/PID/maps" (tests pass a
 * fixture). Returns 0, -ENOENT when not covered, or a negative errno.
 */
int maps_cover(const char *maps_path, uint64_t base, uint64_t length, dev_t dev, ino_t ino);

int segment_new(const struct memfd_info *info, int memfd, uint32_t id, uint64_t window_pages,
		size_t min_regions, size_t max_regions, struct segment **ret);
struct segment *segment_free(struct segment *seg);

/* Records an access to `page` at `epoch`. */
static inline void page_touch(struct tierd_page *ps, uint32_t epoch)
{
	if (ps->accesses != UINT32_MAX)
		ps->accesses++;
	ps->last_epoch = epoch;
	if (ps->flags & PS_ARMED)
		ps->flags |= PS_HIT;
}

#endif
