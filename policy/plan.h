/* SPDX-License-Identifier: MIT */
/*
 * Pure helpers the built-in policies share: where a page is, per-segment state keyed by segment
 * id, parameter parsing with reasons, and the budgeted planner that turns ordered candidates into
 * a plan (the daemon's placement rules: promote hottest first below the high watermark and within
 * the fast tier's free memory, demote coldest first above it down to the low watermark or to make
 * room for a clearly hotter page, never more than max_move_bytes in all).
 */
#ifndef TIERD_POLICY_PLAN_H
#define TIERD_POLICY_PLAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tierd/policy.h"

struct plan_cand {
	uint32_t seg;
	uint32_t bytes;
	uint64_t page;
	float score;
};

struct plan_budget {
	uint64_t fast_budget_bytes; /* view->fast_budget_bytes */
	uint64_t fast_used_bytes;   /* tracked bytes on tier 0 now */
	uint64_t fast_free_bytes;   /* tiers[0].free_bytes */
	uint64_t max_move_bytes;
	float high_wm, low_wm;
	float swap_margin;          /* a promotion displaces a fast page only if this much hotter */
	bool can_demote;            /* a slower tier has a target node */
};

/* Tier of a page from its node (-1: unknown, or not a memory node). */
static inline int plan_page_tier(const struct tierd_view *v, const struct tierd_page *p)
{
	return p->node >= 0 && p->node < TIERD_MAX_NODES ? v->node_tier[p->node] : -1;
}

/* True when this decide may return moves: a migration pass, two tiers or more, and a fast node
 * with room to receive them. */
bool plan_may_move(const struct tierd_view *v);

/* True when some slower tier has a node demotions can go to. */
bool plan_can_demote(const struct tierd_view *v);

/* Orders by score (descending / ascending), then (seg, page): a total order, so plans are the
 * same from the same inputs whatever order the candidates were found in. */
void plan_sort_hot_first(struct plan_cand *c, size_t n);
void plan_sort_cold_first(struct plan_cand *c, size_t n);

/*
 * Fills plan->promote/demote from `up` (off the fast tier, hottest first) and `down` (on the fast
 * tier, coldest first), within the budget and the plan's capacities. `up` and `down` must be
 * disjoint. Returns bytes moved.
 */
uint64_t plan_fill(const struct plan_cand *up, size_t nup, const struct plan_cand *down, size_t ndown,
		   const struct plan_budget *b, struct tierd_plan *plan);

/* Parses a parameter value as a number in [lo, hi]. Returns 0, or -EINVAL with the key, the
 * value and the range named in err. */
int plan_param_float(const struct tierd_policy_param *p, double lo, double hi, float *out, char *err,
		     size_t errlen);

/* Per-segment policy state, keyed by segment id: a small array, searched linearly (tierd serves a
 * handful of segments; the last hit is cached for event streams, which come in runs). */
struct plan_seg {
	uint32_t id;
	uint32_t kind;
	uint64_t npages, page_size;
	void *pages;            /* the policy's per-page state, npages * elem bytes, zeroed */
	uint64_t *chunks;       /* bit c: some page of [64c, 64c + 64) may have state worth a look
				 * (the policy sets and clears them; zeroed) */
	uint64_t sweep_cursor;  /* where the policy's incremental maintenance goes on */
};

struct plan_segs {
	struct plan_seg *s;
	size_t n, cap, last;
};

/* Adds a segment with zeroed per-page state of elem bytes a page. Returns 0, -EEXIST or -ENOMEM. */
int plan_segs_add(struct plan_segs *t, const struct tierd_seg_view *seg, size_t elem);
void plan_segs_remove(struct plan_segs *t, uint32_t id);
struct plan_seg *plan_segs_find(struct plan_segs *t, uint32_t id);
/* The segment's state, created on the spot for a segment the host did not announce with seg_add
 * (or whose seg_add failed for memory): NULL when it cannot be, or when the view's page count
 * differs from the state's. */
struct plan_seg *plan_segs_get(struct plan_segs *t, const struct tierd_seg_view *seg, size_t elem);
void plan_segs_free(struct plan_segs *t);

/* Grows *buf to hold at least `need` elements of elem bytes. Returns 0 or -ENOMEM. */
int plan_grow(void **buf, size_t *cap, size_t need, size_t elem);

#endif
