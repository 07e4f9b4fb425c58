/* SPDX-License-Identifier: MIT */
/*
 * lru: second chance with a 2Q-like admission, on each page's own evidence only (FAULT and SAMPLE
 * events; the host's regions are ignored).
 *
 *   - A page seen once is on probation (SEEN). Seen again in a later epoch within window_epochs,
 *     it enters the active set (ACTIVE, referenced). A sampling window that closes without
 *     seeing a page ends its probation and its active membership: the sightings must come from
 *     consecutive samples. A sweep that touches every page once never makes a page active.
 *   - Active pages off the fast tier are promoted, most recently referenced first. Active pages
 *     off the fast tier that are not seen again within window_epochs drop out of the set.
 *   - A clock hand walks the fast tier's pages when room is needed (above the high watermark, or
 *     for promotions that do not fit): a page referenced since the hand last passed loses its
 *     reference and stays (its second chance); an active one that was not leaves the active set
 *     and stays; any other is demoted. Sampling sees a page rarely, so an active page is demoted
 *     only after two laps without a sighting: less churn for the same hot set.
 *
 * Parameters ("key=value"):
 *   window_epochs  16  [2, 200]  how recent a second sighting must be; how long an active page off
 *                                the fast tier stays active unseen
 * State: 2 bytes a page.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "builtins.h"
#include "plan.h"

#define LP_SEEN 1u
#define LP_ACTIVE 2u
#define LP_REF 4u
#define LP_VICTIM 8u /* picked by this pass's clock walk (cleared before decide returns) */
/* The probation upkeep visits every page within this many epochs: with window_epochs <= 200,
 * a page's 8-bit stamp is looked at before it can wrap. */
#define SWEEP_EPOCHS 32u

/* A promotion displaces a victim only if it was seen more recently: 1/(1+age) of a page seen this
 * epoch against one seen a few epochs ago. */
#define LRU_SWAP_MARGIN 0.05f

struct lpage {
	uint8_t flags;
	uint8_t stamp; /* epoch (mod 256) of the last sighting */
};
_Static_assert(sizeof(struct lpage) == 2, "lru keeps 2 bytes a page");

struct lru {
	uint32_t window_epochs;
	uint32_t epoch; /* of the last decide: events since then belong to the next one */
	struct plan_segs segs;
	struct plan_cand *up, *down;
	size_t up_cap, down_cap;
	uint32_t hand_seg; /* clock hand: segment id and page */
	uint64_t hand_page;
};

static int lru_init(void **state, const struct tierd_policy_env *env,
		    const struct tierd_policy_param *params, size_t nparams, char *err, size_t errlen)
{
	struct lru *l = calloc(1, sizeof(*l));

	(void)env;
	if (!l)
		return -ENOMEM;
	l->window_epochs = 16;
	for (size_t i = 0; i < nparams; i++) {
		float v;

		if (strcmp(params[i].key, "window_epochs")) {
			snprintf(err, errlen, "unknown parameter \"%s\" (lru knows: window_epochs)",
				 params[i].key);
			free(l);
			return -EINVAL;
		}
		if (plan_param_float(&params[i], 2, 200, &v, err, errlen) < 0 || v != (float)(uint32_t)v) {
			snprintf(err, errlen, "parameter window_epochs=\"%s\": expected a whole number in "
				 "[2, 200]", params[i].value);
			free(l);
			return -EINVAL;
		}
		l->window_epochs = (uint32_t)v;
	}
	*state = l;
	return 0;
}

static void lru_fini(void *state)
{
	struct lru *l = state;

	if (!l)
		return;
	plan_segs_free(&l->segs);
	free(l->up);
	free(l->down);
	free(l);
}

static int lru_seg_add(void *state, const struct tierd_seg_view *seg)
{
	struct lru *l = state;

	return plan_segs_add(&l->segs, seg, sizeof(struct lpage));
}

static void lru_seg_remove(void *state, uint32_t seg)
{
	struct lru *l = state;

	plan_segs_remove(&l->segs, seg);
}

static void lru_observe(void *state, const struct tierd_event *ev, size_t n)
{
	struct lru *l = state;
	uint8_t now = (uint8_t)(l->epoch + 1);

	for (size_t i = 0; i < n; i++) {
		struct plan_seg *s;
		struct lpage *lp;

		if (ev[i].kind != TIERD_EV_FAULT && ev[i].kind != TIERD_EV_SAMPLE)
			continue;
		s = plan_segs_find(&l->segs, ev[i].seg);
		if (!s || ev[i].page >= s->npages)
			continue;
		lp = &((struct lpage *)s->pages)[ev[i].page];
		if (lp->flags & LP_ACTIVE) {
			lp->flags |= LP_REF;
		} else if ((lp->flags & LP_SEEN) && lp->stamp != now &&
			   (uint8_t)(now - lp->stamp) <= l->window_epochs) {
			lp->flags = LP_ACTIVE | LP_REF;
		} else if (!(lp->flags & LP_SEEN) || (uint8_t)(now - lp->stamp) > l->window_epochs) {
			lp->flags = LP_SEEN;
		} else {
			continue; /* seen again within the same epoch: not a second sighting */
		}
		lp->stamp = now;
	}
}

/* The score moves are ranked and logged with: 1 for a page seen this epoch, falling with age. */
static float recency(uint8_t now, uint8_t stamp)
{
	return 1.0f / (1.0f + (float)(uint8_t)(now - stamp));
}

/* A page of a closed window that was not seen in it missed: its sightings must start again, and
 * an active page leaves the active set (it keeps its reference bit until the hand passes). Two
 * sightings must be consecutive samples of the page, which a page touched now and then rarely
 * manages, and a hot one always does. */
static void misses(struct lru *l, const struct tierd_view *v)
{
	uint8_t now = (uint8_t)(l->epoch + 1); /* what observe() stamped this epoch's sightings */

	for (uint32_t si = 0; si < v->nsegs; si++) {
		const struct tierd_seg_view *sv = &v->segs[si];
		struct plan_seg *s = plan_segs_get(&l->segs, sv, sizeof(struct lpage));
		struct lpage *pages;

		if (!s || !sv->closed)
			continue;
		pages = s->pages;
		for (size_t k = 0; k < sv->nclosed; k++)
			for (uint64_t p = sv->closed[k].start;
			     p < sv->closed[k].start + sv->closed[k].npages && p < sv->npages; p++)
				if (pages[p].stamp != now)
					pages[p].flags &= (uint8_t)~(LP_SEEN | LP_ACTIVE);
	}
}

/* Probation and idle active pages off the fast tier expire after window_epochs. */
static void upkeep(struct lru *l, const struct tierd_view *v)
{
	uint8_t now = (uint8_t)v->epoch;

	for (uint32_t si = 0; si < v->nsegs; si++) {
		const struct tierd_seg_view *sv = &v->segs[si];
		struct plan_seg *s = plan_segs_get(&l->segs, sv, sizeof(struct lpage));
		struct lpage *pages;
		uint64_t n;

		if (!s || !s->npages || s->npages != sv->npages || !sv->pages)
			continue;
		pages = s->pages;
		n = s->npages / SWEEP_EPOCHS + 1;
		for (uint64_t k = 0; k < n; k++) {
			uint64_t p = s->sweep_cursor++ % s->npages;
			struct lpage *lp = &pages[p];

			if (!lp->flags || (uint8_t)(now - lp->stamp) <= l->window_epochs)
				continue;
			if (!(lp->flags & LP_ACTIVE) || plan_page_tier(v, &sv->pages[p]) != 0)
				lp->flags = 0;
		}
		s->sweep_cursor %= s->npages;
	}
}

/* Advances the clock over the fast tier's pages until `need` bytes of unreferenced ones are in
 * l->down (in hand order), or every page was passed twice. Returns how many. */
static size_t clock_walk(struct lru *l, const struct tierd_view *v, uint64_t need, uint64_t total)
{
	size_t n = 0;
	uint64_t got = 0, visited = 0;
	uint32_t si = 0;
	uint64_t p = 0;

	if (!v->nsegs)
		return 0;
	for (uint32_t i = 0; i < v->nsegs; i++)
		if (v->segs[i].id == l->hand_seg) {
			si = i;
			p = l->hand_page;
		}
	while (got < need && visited < total) {
		const struct tierd_seg_view *sv = &v->segs[si];
		struct plan_seg *s = plan_segs_get(&l->segs, sv, sizeof(struct lpage));

		if (!s || s->npages != sv->npages || p >= sv->npages || !sv->pages) {
			si = (si + 1) % v->nsegs;
			p = 0;
			visited++; /* a segment without pages still ends the walk */
			continue;
		}
		for (; p < sv->npages && got < need; p++) {
			struct lpage *lp = &((struct lpage *)s->pages)[p];

			visited++;
			if (plan_page_tier(v, &sv->pages[p]) != 0)
				continue;
			if (lp->flags & LP_VICTIM)
				continue; /* passed again on the second lap */
			if (lp->flags & LP_REF) {
				lp->flags &= (uint8_t)~LP_REF; /* second chance */
				continue;
			}
			if (lp->flags & LP_ACTIVE) {
				/* An active page gets a second lap: it leaves the active set first. */
				lp->flags &= (uint8_t)~LP_ACTIVE;
				continue;
			}
			lp->flags |= LP_VICTIM;
			if (plan_grow((void **)&l->down, &l->down_cap, n + 1, sizeof(*l->down)) < 0)
				return n;
			l->down[n++] = (struct plan_cand){ .seg = sv->id, .bytes = (uint32_t)sv->page_size,
							   .page = p,
							   .score = lp->flags & LP_SEEN ? recency((uint8_t)v->epoch,
												  lp->stamp)
											: 0 };
			got += sv->page_size;
		}
		l->hand_seg = sv->id;
		l->hand_page = p;
		if (p >= sv->npages) {
			si = (si + 1) % v->nsegs;
			p = 0;
		}
	}
	return n;
}

static int lru_decide(void *state, const struct tierd_view *v, struct tierd_plan *plan)
{
	struct lru *l = state;
	uint64_t used = 0, up_bytes = 0, total = 0, high, low, avail, need;
	size_t nup = 0, ndown = 0;
	uint8_t now = (uint8_t)v->epoch;
	struct plan_budget b;

	plan->npromote = plan->ndemote = plan->nwindows = 0;
	misses(l, v);
	l->epoch = v->epoch;
	upkeep(l, v);
	if (!plan_may_move(v))
		return 0;
	for (uint32_t si = 0; si < v->nsegs; si++) {
		const struct tierd_seg_view *sv = &v->segs[si];
		struct plan_seg *s = plan_segs_get(&l->segs, sv, sizeof(struct lpage));
		const struct lpage *pages;

		if (!s || s->npages != sv->npages || !sv->pages)
			continue;
		pages = s->pages;
		total += sv->npages;
		for (uint64_t p = 0; p < sv->npages; p++) {
			int tier = plan_page_tier(v, &sv->pages[p]);

			if (tier == 0) {
				used += sv->page_size;
			} else if (tier > 0 && (pages[p].flags & LP_ACTIVE)) {
				if (plan_grow((void **)&l->up, &l->up_cap, nup + 1, sizeof(*l->up)) < 0)
					return -ENOMEM;
				/* Most recently referenced first. */
				l->up[nup++] = (struct plan_cand){
					.seg = sv->id, .bytes = (uint32_t)sv->page_size, .page = p,
					.score = recency(now, pages[p].stamp) };
				up_bytes += sv->page_size;
			}
		}
	}
	plan_sort_hot_first(l->up, nup);
	high = (uint64_t)((double)v->fast_budget_bytes * v->high_wm);
	low = (uint64_t)((double)v->fast_budget_bytes * v->low_wm);
	avail = used < high ? high - used : 0;
	if (avail > v->tiers[0].free_bytes)
		avail = v->tiers[0].free_bytes;
	need = (used > high ? used - low : 0) + (up_bytes > avail ? up_bytes - avail : 0);
	if (need > v->max_move_bytes)
		need = v->max_move_bytes;
	if (need && plan_can_demote(v))
		ndown = clock_walk(l, v, need, total);
	b = (struct plan_budget){ .fast_budget_bytes = v->fast_budget_bytes, .fast_used_bytes = used,
				  .fast_free_bytes = v->tiers[0].free_bytes,
				  .max_move_bytes = v->max_move_bytes, .high_wm = v->high_wm,
				  .low_wm = v->low_wm, .swap_margin = LRU_SWAP_MARGIN,
				  .can_demote = plan_can_demote(v) };
	plan_fill(l->up, nup, l->down, ndown, &b, plan);
	for (size_t i = 0; i < ndown; i++) {
		struct plan_seg *s = plan_segs_find(&l->segs, l->down[i].seg);

		if (s)
			((struct lpage *)s->pages)[l->down[i].page].flags &= (uint8_t)~LP_VICTIM;
	}
	/* Demoted pages leave the active set: they must earn it again. */
	for (size_t i = 0; i < plan->ndemote; i++) {
		struct plan_seg *s = plan_segs_find(&l->segs, plan->demote[i].seg);

		if (s)
			((struct lpage *)s->pages)[plan->demote[i].page].flags = 0;
	}
	return 0;
}

const struct tierd_policy_ops policy_lru = {
	.abi_version = TIERD_POLICY_ABI_VERSION,
	.size = sizeof(struct tierd_policy_ops),
	.name = "lru",
	.description = "second chance with 2Q-like admission on per-page evidence",
	.init = lru_init,
	.fini = lru_fini,
	.seg_add = lru_seg_add,
	.seg_remove = lru_seg_remove,
	.observe = lru_observe,
	.decide = lru_decide,
};
