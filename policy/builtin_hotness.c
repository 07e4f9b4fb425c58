/* SPDX-License-Identifier: MIT */
/*
 * hotness (interim): the daemon's planner as it was before policies were pluggable — a page is
 * hot when its sampling region's score reaches min_score; hot pages off the fast tier are
 * promoted hottest first, the coldest fast-tier pages demoted above the high watermark or to make
 * room for a clearly hotter page.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "builtins.h"

/* A fast-tier page is swapped out for a slower one only if that one is this much hotter. */
#define SWAP_HYSTERESIS 0.1f

struct cand {
	uint32_t seg;
	uint32_t bytes;
	uint64_t page;
	float score;
	int tier;
};

struct hot {
	float min_score;
	struct cand *c;
	size_t cap;
};

static int hot_init(void **state, const struct tierd_policy_env *env,
		    const struct tierd_policy_param *params, size_t nparams, char *err, size_t errlen)
{
	struct hot *h = calloc(1, sizeof(*h));

	(void)env;
	if (!h)
		return -ENOMEM;
	h->min_score = 0.25f;
	for (size_t i = 0; i < nparams; i++) {
		char *end;
		double v;

		if (strcmp(params[i].key, "min_score")) {
			snprintf(err, errlen, "unknown parameter \"%s\" (hotness knows: min_score)",
				 params[i].key);
			free(h);
			return -EINVAL;
		}
		v = strtod(params[i].value, &end);
		if (end == params[i].value || *end || !(v > 0 && v <= 1)) {
			snprintf(err, errlen, "min_score=%s: want a number in (0, 1]", params[i].value);
			free(h);
			return -EINVAL;
		}
		h->min_score = (float)v;
	}
	*state = h;
	return 0;
}

static void hot_fini(void *state)
{
	struct hot *h = state;

	free(h->c);
	free(h);
}

static int by_cand(const struct cand *a, const struct cand *b)
{
	if (a->seg != b->seg)
		return a->seg < b->seg ? -1 : 1;
	return (a->page > b->page) - (a->page < b->page);
}

static int asc(const void *x, const void *y)
{
	const struct cand *a = x, *b = y;

	if (a->score != b->score)
		return a->score < b->score ? -1 : 1;
	return by_cand(a, b);
}

static int desc(const void *x, const void *y)
{
	return asc(y, x);
}

static int tier_of(const struct tierd_view *v, int node)
{
	return node >= 0 && node < TIERD_MAX_NODES ? v->node_tier[node] : -1;
}

static int hot_decide(void *state, const struct tierd_view *v, struct tierd_plan *plan)
{
	struct hot *h = state;
	uint64_t high = (uint64_t)((double)v->fast_budget_bytes * v->high_wm);
	uint64_t low = (uint64_t)((double)v->fast_budget_bytes * v->low_wm);
	uint64_t used = v->tiers[0].used_bytes, hot_off = 0, moved = 0, free_bytes;
	size_t nfast = 0, nslow = 0, d = 0;
	bool with_fast;
	struct cand *fast, *slow;

	plan->npromote = plan->ndemote = 0;
	if (!v->migrate || v->ntiers < 2)
		return 0;
	free_bytes = v->tiers[0].free_bytes;
	for (uint32_t s = 0; s < v->nsegs; s++) {
		const struct tierd_seg_view *sv = &v->segs[s];

		for (size_t ri = 0; ri < sv->nregions; ri++) {
			const struct tierd_region *r = &sv->regions[ri];

			if (r->score < h->min_score)
				continue;
			for (uint64_t p = r->start; p < r->end; p++) {
				int t = tier_of(v, sv->pages[p].node);

				if (t > 0)
					hot_off += sv->page_size;
				nslow += t > 0;
			}
		}
	}
	/* Fast-tier pages are candidates only when demotion may be needed. */
	with_fast = used > high || (hot_off && (used + hot_off > high || hot_off > free_bytes));
	for (uint32_t s = 0; s < v->nsegs && with_fast; s++)
		for (uint64_t p = 0; p < v->segs[s].npages; p++)
			nfast += tier_of(v, v->segs[s].pages[p].node) == 0;
	if (nfast + nslow > h->cap) {
		struct cand *c = realloc(h->c, (nfast + nslow) * sizeof(*c));

		if (!c)
			return -ENOMEM;
		h->c = c;
		h->cap = nfast + nslow;
	}
	fast = h->c;
	slow = h->c + nfast;
	nfast = nslow = 0;
	for (uint32_t s = 0; s < v->nsegs; s++) {
		const struct tierd_seg_view *sv = &v->segs[s];

		for (size_t ri = 0; ri < sv->nregions; ri++) {
			const struct tierd_region *r = &sv->regions[ri];
			bool hot = r->score >= h->min_score;

			if (!hot && !with_fast)
				continue;
			for (uint64_t p = r->start; p < r->end; p++) {
				int t = tier_of(v, sv->pages[p].node);
				struct cand c = { .seg = sv->id, .bytes = (uint32_t)sv->page_size, .page = p,
						  .score = r->score, .tier = t };

				if (t == 0 && with_fast)
					fast[nfast++] = c;
				else if (t > 0 && hot)
					slow[nslow++] = c;
			}
		}
	}
	qsort(fast, nfast, sizeof(*fast), asc);
	qsort(slow, nslow, sizeof(*slow), desc);

	if (used > high)
		while (used > low && d < nfast && d < plan->max_demote &&
		       moved + fast[d].bytes <= v->max_move_bytes) {
			used -= fast[d].bytes;
			moved += fast[d].bytes;
			free_bytes += fast[d].bytes;
			d++;
		}
	for (size_t i = 0; i < nslow && plan->npromote < plan->max_promote; i++) {
		uint64_t sz = slow[i].bytes;

		if (moved + sz > v->max_move_bytes)
			break;
		if (used + sz <= high && free_bytes >= sz) {
			used += sz;
			free_bytes -= sz;
			moved += sz;
		} else if (d < nfast && d < plan->max_demote && fast[d].bytes >= sz &&
			   moved + sz + fast[d].bytes <= v->max_move_bytes &&
			   fast[d].score + SWAP_HYSTERESIS <= slow[i].score) {
			moved += sz + fast[d].bytes;
			used = used - fast[d].bytes + sz;
			d++;
		} else {
			continue;
		}
		plan->promote[plan->npromote++] = (struct tierd_move){ .seg = slow[i].seg,
								       .page = slow[i].page,
								       .score = slow[i].score };
	}
	for (size_t i = 0; i < d; i++)
		plan->demote[plan->ndemote++] = (struct tierd_move){ .seg = fast[i].seg,
								     .page = fast[i].page,
								     .score = fast[i].score };
	return 0;
}

const struct tierd_policy_ops policy_hotness = {
	.abi_version = TIERD_POLICY_ABI_VERSION,
	.size = sizeof(struct tierd_policy_ops),
	.name = "hotness",
	.description = "region heat against a threshold (interim)",
	.init = hot_init,
	.fini = hot_fini,
	.decide = hot_decide,
};
