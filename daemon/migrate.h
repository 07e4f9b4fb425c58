/* SPDX-License-Identifier: MIT */
/*
 * Migration: where tracked pages live, which should move, and moving them.
 *
 * The planner is pure: given each candidate page's score and current tier, the fast tier's budget
 * and watermarks and a cap, it returns the pages to promote and to demote. The executor moves
 * pages with move_pages(2) on tierd's alias mapping of the segment (one move serves every
 * process's mapping), checks each page's result and records why a page did not move.
 */
#ifndef TIERD_MIGRATE_H
#define TIERD_MIGRATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct segment;

/* Units are bytes throughout, so 4 KiB and 2 MiB pages of different segments plan together. */
struct migrate_candidate {
	uint32_t seg_index; /* caller's segment index */
	uint32_t page_bytes;
	uint64_t page;
	float score;
	int8_t tier;        /* current tier of the page's node; -1 unknown */
};

struct migrate_budget {
	uint64_t fast_budget_bytes; /* tracked memory tierd may keep on the fast tier */
	uint64_t fast_used_bytes;   /* tracked memory on the fast tier now */
	float high_wm, low_wm;      /* shares of the budget: demote above high down to low */
	float hot_threshold;        /* score at or above which a page is hot */
	uint64_t max_move_bytes;    /* cap for this pass (rate limit and per-epoch cap) */
	uint64_t fast_free_bytes;   /* free memory on the fast tier less the reserve */
};

struct migrate_plan {
	struct migrate_candidate *promote, *demote;
	size_t npromote, ndemote;
};

/*
 * Plans one pass. `cands` is reordered. Hot pages off the fast tier are promoted hottest first
 * while the budget has room (below high_wm, and within fast_free_pages); cold pages on the fast
 * tier are demoted coldest first when usage is above high_wm (down to low_wm) or to make room for
 * a hotter page. Never more than max_move_bytes moved in all. The plan points into `cands`.
 */
void migrate_plan_build(struct migrate_candidate *cands, size_t n, const struct migrate_budget *b,
			struct migrate_plan *plan);

/* Pages moved are counted per (from node, to node, page size) for node ids below this. */
#define MIGRATE_STAT_NODES 16

/* Per-reason counters of pages that did not move. */
struct migrate_stats {
	/* [from][to][huge]: pages moved; from = the node tierd last saw the page on */
	uint64_t moved[MIGRATE_STAT_NODES][MIGRATE_STAT_NODES][2];
	uint64_t promoted, demoted, batches, calls;
	uint64_t err_nomem, err_busy, err_access, err_noent, err_fault, err_other;
	uint64_t bytes_moved;
	uint64_t fallback_pages; /* zapped moves retried with MOVE_ALL: still mapped somewhere */
	uint64_t held_mems;      /* planned moves not made: the target node is outside the cpuset
				  * mems of a process mapping the page, or of tierd */
	uint64_t passes, pass_usec_last, pass_usec_max; /* planning passes: the loop waits on them */
	uint64_t move_usec; /* time spent inside move_pages(2): the engine's throughput is
			    * bytes_moved / move_usec */
};

/* How pages are moved (--migrate-mode). */
enum migrate_how {
	/* Every client has zapped the pages: only tierd's alias maps them, and MPOL_MF_MOVE moves
	 * them without touching any process's page tables and without CAP_SYS_NICE. Pages still
	 * mapped somewhere (-EACCES) are retried with MPOL_MF_MOVE_ALL where allowed. */
	MIGRATE_ZAPPED,
	/* Pages stay mapped by the clients: MPOL_MF_MOVE_ALL (needs CAP_SYS_NICE; without it only
	 * pages no client maps move). */
	MIGRATE_MAPPED,
};

/*
 * Moves pages [pages[i]] of `seg` to `node` through its alias, as `how` says; updates
 * page_state.node for each page from the per-page status. *move_all says MPOL_MF_MOVE_ALL is
 * allowed and is cleared when the kernel refuses it (EPERM). Stops between batches of 4096 pages
 * once CLOCK_MONOTONIC passes deadline_usec. Returns pages moved, or a negative errno when
 * move_pages itself failed.
 */
long migrate_pages_to(struct segment *seg, const uint64_t *pages, size_t n, int node,
		      enum migrate_how how, bool *move_all, uint64_t deadline_usec,
		      struct migrate_stats *st);

/*
 * Makes the alias map the pages of [first, first + npages) that exist in the segment (move_pages
 * needs them mapped) without allocating holes: shmem runs come from SEEK_DATA/SEEK_HOLE; hugetlb
 * (no SEEK_DATA) maps the pages that a minor fault or a CONTINUE showed to exist (PS_EXISTS),
 * once each.
 */
int migrate_populate_alias(struct segment *seg, uint64_t first, uint64_t npages);

/* Refreshes page_state.node for pages [first, first + npages) of seg (move_pages query). Returns
 * pages with a node. */
long migrate_query_nodes(struct segment *seg, uint64_t first, uint64_t npages);

#endif
