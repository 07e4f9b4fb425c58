/* SPDX-License-Identifier: MIT */
/*
 * hotness (the default): frequency with decay plus recency, sized to the fast tier.
 *
 * Each page's heat is an estimate of the share of epochs in which it is touched. Two sources:
 *   - the page's own samples: every time a window covering it closes, one observation (touched or
 *     not, from the FAULT events observe() saw); a SAMPLE event counts as a touched observation.
 *     Old observations fade by `decay` per epoch, so recent behaviour weighs most (recency) while
 *     repeated touches add up (frequency).
 *   - the host's region score: the spatial estimate, standing for pages not sampled individually.
 *     A region counts only with what it showed in its two latest samples (the lower of score and
 *     prev_score), so a sweep that touches every page once (a scan, PostgreSQL 18's NUMA views)
 *     does not make the whole segment look hot.
 * They combine as a shrunk ratio, heat = (hits + prior * R) / (samples + prior): a page without
 * samples has its region's heat, one seen once counts less than one seen again, and stale
 * evidence returns to the region's estimate as it decays. A region whose latest sample moved its
 * score by `change` or more (a hot set moved in or out) drops its pages' old evidence at once:
 * slow decay keeps estimates steady while nothing changes, and a move is still followed within
 * a sample or two of the region.
 *
 * On a migration pass the hot set is sized to the fast tier from a histogram of heat weighted by
 * page bytes: the threshold is where the hottest pages fill fast_budget * high_wm, never below
 * min_score (so pages never touched are never hot). Hot pages off the fast tier are promoted
 * hottest first; the coldest fast pages are demoted above the high watermark (down to the low one)
 * or to make room for a page hotter by swap_margin (plan_fill). Candidates are ordered by heat to
 * 1/1024, then by (segment, page).
 *
 * Cost: observe() is O(events); decide() is O(closed window pages + touched pages) every epoch,
 * plus a 1/64 slice of the pages (decay upkeep). A migration pass reads every tracked page's node
 * once (the histogram); the second pass reads only regions whose heat makes their pages
 * candidates, and pages with samples (found through one bit per 64 pages). 1 Mi pages: 1-3 ms
 * a pass (tierd-sim --bench=decide). State: 4 bytes a page.
 *
 * Parameters ("key=value"):
 *   min_score     0.25   (0, 1]   heat below which a page is never hot (tierd's hot_threshold)
 *   decay         0.99   (0, 1]   weight kept per epoch by old observations (half-life 69 epochs)
 *   prior         1.0    [0, 16]  weight of the region estimate, in samples
 *   swap_margin   0.10   [0, 1]   how much hotter a page must be to displace a fast-tier page
 *   change        0.35   (0, 1]   score step of a region's latest sample that drops its pages'
 *                                 evidence (scores move by half the surprise: 0.35 is a window
 *                                 70 % off the region's estimate, which sampling noise of 8-page
 *                                 windows almost never gives)
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "builtins.h"
#include "plan.h"

/* Fixed point of hits and samples: one observation. 8 keeps up to 31 observations in a byte,
 * which a page reaches only when sampled nearly every epoch; past that both are scaled down
 * together, keeping the ratio. */
#define FP_ONE 8u
#define FP_MAX 255u
/* Every page is brought up to date at least this often (in epochs), so its 8-bit epoch stamp
 * never wraps: the gap stays far below 256. */
#define RESTAMP_EPOCHS 64u
/* Heat histogram resolution: the hot set's edge is placed within 1/1024 of heat. */
#define NBUCKETS 1024

#define HP_TOUCHED 1u /* a FAULT or SAMPLE since the last decide */

struct hpage {
	uint8_t hits, samples; /* decayed observations, fixed point (FP_ONE = 1) */
	uint8_t stamp;         /* epoch (mod 256) they were decayed to */
	uint8_t flags;
};
_Static_assert(sizeof(struct hpage) == 4, "hotness keeps 4 bytes a page");

struct touched {
	uint32_t seg;
	uint64_t page;
};

struct hotness {
	float min_score, decay, prior, swap_margin, change;
	float decay_pow[256];
	struct plan_segs segs;
	struct touched *touched;
	size_t ntouched, touched_cap;
	struct plan_cand *up, *down, *tmp;
	size_t up_cap, down_cap, tmp_cap;
	uint32_t *order; /* the view's segments by id */
	size_t order_cap;
	uint64_t hist_all[NBUCKETS], hist_fast[NBUCKETS];
	size_t bstart[NBUCKETS];
};

static int hot_init(void **state, const struct tierd_policy_env *env,
		    const struct tierd_policy_param *params, size_t nparams, char *err, size_t errlen)
{
	struct hotness *h = calloc(1, sizeof(*h));
	int r = 0;

	(void)env; /* deterministic without randomness */
	if (!h)
		return -ENOMEM;
	h->min_score = 0.25f;
	h->decay = 0.99f;
	h->prior = 1.0f;
	h->swap_margin = 0.10f;
	h->change = 0.35f;
	for (size_t i = 0; i < nparams && r == 0; i++) {
		const struct tierd_policy_param *p = &params[i];

		if (strcmp(p->key, "min_score") == 0) {
			r = plan_param_float(p, 0, 1, &h->min_score, err, errlen);
			if (r == 0 && h->min_score <= 0) {
				snprintf(err, errlen, "parameter min_score=\"%s\": must be above 0 (untouched "
					 "pages are never hot)", p->value);
				r = -EINVAL;
			}
		} else if (strcmp(p->key, "decay") == 0) {
			r = plan_param_float(p, 0, 1, &h->decay, err, errlen);
			if (r == 0 && h->decay <= 0) {
				snprintf(err, errlen, "parameter decay=\"%s\": must be above 0", p->value);
				r = -EINVAL;
			}
		} else if (strcmp(p->key, "prior") == 0) {
			r = plan_param_float(p, 0, 16, &h->prior, err, errlen);
		} else if (strcmp(p->key, "swap_margin") == 0) {
			r = plan_param_float(p, 0, 1, &h->swap_margin, err, errlen);
		} else if (strcmp(p->key, "change") == 0) {
			r = plan_param_float(p, 0, 1, &h->change, err, errlen);
			if (r == 0 && h->change <= 0) {
				snprintf(err, errlen, "parameter change=\"%s\": must be above 0", p->value);
				r = -EINVAL;
			}
		} else {
			snprintf(err, errlen, "unknown parameter \"%s\" (hotness knows: min_score, decay, "
				 "prior, swap_margin, change)", p->key);
			r = -EINVAL;
		}
	}
	if (r < 0) {
		free(h);
		return r;
	}
	h->decay_pow[0] = 1.0f;
	for (int g = 1; g < 256; g++)
		h->decay_pow[g] = h->decay_pow[g - 1] * h->decay;
	*state = h;
	return 0;
}

static void hot_fini(void *state)
{
	struct hotness *h = state;

	if (!h)
		return;
	plan_segs_free(&h->segs);
	free(h->touched);
	free(h->up);
	free(h->down);
	free(h->tmp);
	free(h->order);
	free(h);
}

static int hot_seg_add(void *state, const struct tierd_seg_view *seg)
{
	struct hotness *h = state;

	return plan_segs_add(&h->segs, seg, sizeof(struct hpage));
}

static void hot_seg_remove(void *state, uint32_t seg)
{
	struct hotness *h = state;

	plan_segs_remove(&h->segs, seg);
}

static void hot_observe(void *state, const struct tierd_event *ev, size_t n)
{
	struct hotness *h = state;

	for (size_t i = 0; i < n; i++) {
		struct plan_seg *s;
		struct hpage *hp;

		if (ev[i].kind != TIERD_EV_FAULT && ev[i].kind != TIERD_EV_SAMPLE)
			continue; /* first touches are not heat; unknown kinds are ignored */
		s = plan_segs_find(&h->segs, ev[i].seg);
		if (!s || ev[i].page >= s->npages)
			continue;
		hp = &((struct hpage *)s->pages)[ev[i].page];
		if (hp->flags & HP_TOUCHED)
			continue;
		/* Remember it for decide(): pages outside closed windows (eBPF samples) are found
		 * through this list. Without room the page still counts if its window closes. */
		if (plan_grow((void **)&h->touched, &h->touched_cap, h->ntouched + 1,
			      sizeof(*h->touched)) < 0)
			continue;
		hp->flags |= HP_TOUCHED;
		h->touched[h->ntouched++] = (struct touched){ .seg = ev[i].seg, .page = ev[i].page };
	}
}

/* Decays a page's evidence to epoch `now`, then adds one observation when `sample`. */
static void page_update(const struct hotness *h, struct hpage *hp, uint32_t now, bool sample, bool hit)
{
	float f = h->decay_pow[(uint8_t)(now - hp->stamp)];
	float hits = (float)hp->hits * f + (hit ? (float)FP_ONE : 0.0f);
	float samples = (float)hp->samples * f + (sample ? (float)FP_ONE : 0.0f);

	if (samples > (float)FP_MAX) {
		hits = hits * (float)FP_MAX / samples;
		samples = (float)FP_MAX;
	}
	hp->hits = (uint8_t)(hits + 0.5f);
	hp->samples = (uint8_t)(samples + 0.5f);
	if (hp->hits > hp->samples)
		hp->hits = hp->samples;
	hp->stamp = (uint8_t)now;
}

/* Pages with samples are looked at one by one on a migration pass; the others by region. The
 * chunk bits say where they may be (set here, cleared by the pass that finds a chunk empty). */
static void mark_chunk(struct plan_seg *s, uint64_t page)
{
	s->chunks[page >> 12] |= UINT64_C(1) << ((page >> 6) & 63);
}

/* The region estimate, counting only what its two latest samples agree on. */
static float region_heat(const struct tierd_region *r)
{
	if (r->samples < 2)
		return 0;
	return r->score < r->prev_score ? r->score : r->prev_score;
}

static float page_heat(const struct hotness *h, const struct hpage *hp, uint32_t now, float region)
{
	float f, hits, samples;

	if (!hp->samples)
		return region;
	f = h->decay_pow[(uint8_t)(now - hp->stamp)] * (1.0f / (float)FP_ONE);
	hits = (float)hp->hits * f;
	samples = (float)hp->samples * f;
	return (hits + h->prior * region) / (samples + h->prior);
}

static int bucket_of(float heat)
{
	int b = (int)(heat * (float)NBUCKETS);

	return b < 0 ? 0 : b >= NBUCKETS ? NBUCKETS - 1 : b;
}

/* The index of the region holding `page`, or nregions. */
static size_t region_of(const struct tierd_seg_view *sv, uint64_t page)
{
	size_t lo = 0, hi = sv->nregions;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (sv->regions[mid].end <= page)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < sv->nregions && sv->regions[lo].start <= page ? lo : sv->nregions;
}

/*
 * A region whose latest sample moved its score by `change` or more changed behaviour (a hot set
 * moved in or out): its pages' own evidence describes the past and is dropped, so the pages
 * follow the region (and their next samples) at once instead of after the evidence decays. Only
 * regions sampled in the epoch that just closed are looked at, so this happens once per change.
 */
static void forget_changed(struct hotness *h, const struct tierd_seg_view *sv, struct hpage *pages)
{
	size_t last = SIZE_MAX;

	if (!sv->regions || !sv->closed)
		return;
	for (size_t wi = 0; wi < sv->nclosed; wi++) {
		size_t ri = region_of(sv, sv->closed[wi].start);
		const struct tierd_region *r;
		float d;

		if (ri == sv->nregions || ri == last)
			continue;
		r = &sv->regions[ri];
		d = r->score - r->prev_score;
		if (r->samples < 2 || (d < h->change && -d < h->change))
			continue;
		last = ri;
		for (uint64_t p = r->start; p < r->end && p < sv->npages; p++)
			pages[p].hits = pages[p].samples = 0;
	}
}

/* Folds the last epoch's observations into the pages' evidence. */
static void commit_epoch(struct hotness *h, const struct tierd_view *v)
{
	uint32_t now = v->epoch;

	for (uint32_t si = 0; si < v->nsegs; si++) {
		const struct tierd_seg_view *sv = &v->segs[si];
		struct plan_seg *s = plan_segs_get(&h->segs, sv, sizeof(struct hpage));
		struct hpage *pages;

		if (!s)
			continue;
		pages = s->pages;
		forget_changed(h, sv, pages);
		for (size_t wi = 0; sv->closed && wi < sv->nclosed; wi++) {
			const struct tierd_window *w = &sv->closed[wi];
			uint64_t end = w->start + w->npages;

			if (w->start >= s->npages)
				continue;
			if (end > s->npages || end < w->start)
				end = s->npages;
			for (uint64_t p = w->start; p < end; p++) {
				struct hpage *hp = &pages[p];

				page_update(h, hp, now, true, hp->flags & HP_TOUCHED);
				hp->flags &= (uint8_t)~HP_TOUCHED;
				mark_chunk(s, p);
			}
		}
	}
	/* Touched outside a closed window (an eBPF sample): one touched observation. */
	for (size_t i = 0; i < h->ntouched; i++) {
		struct plan_seg *s = plan_segs_find(&h->segs, h->touched[i].seg);
		struct hpage *hp;

		if (!s || h->touched[i].page >= s->npages)
			continue;
		hp = &((struct hpage *)s->pages)[h->touched[i].page];
		if (hp->flags & HP_TOUCHED) {
			page_update(h, hp, now, true, true);
			hp->flags &= (uint8_t)~HP_TOUCHED;
			mark_chunk(s, h->touched[i].page);
		}
	}
	h->ntouched = 0;
	/* Upkeep: a slice of each segment is decayed to now, so no stamp grows stale. */
	for (size_t i = 0; i < h->segs.n; i++) {
		struct plan_seg *s = &h->segs.s[i];
		struct hpage *pages = s->pages;
		uint64_t n = s->npages / RESTAMP_EPOCHS + 1;

		for (uint64_t k = 0; k < n && s->npages; k++) {
			uint64_t p = s->sweep_cursor++ % s->npages;

			if (pages[p].samples)
				page_update(h, &pages[p], now, false, false);
			else
				pages[p].stamp = (uint8_t)now;
		}
		s->sweep_cursor %= s->npages ? s->npages : 1;
	}
}

/* State of one migration pass's walks over the tracked pages. */
struct walk {
	struct hotness *h;
	const struct tierd_view *v;
	/* pass 1: the histograms (in h) and the bytes on the fast tier */
	uint64_t used;
	uint64_t known_mask, fast_mask; /* bit n: node n has a tier / is on the fast tier */
	/* pass 2: what to collect */
	int thr, pb, db;                       /* hot from thr; promote from pb; demote up to db */
	uint64_t up_edge_left, down_edge_left; /* bytes still taken from the edge buckets */
	size_t nup, ndown;
	bool want_down;
	int err;
};

static int tier_of(const struct tierd_view *v, const struct tierd_page *pg)
{
	return (uint16_t)pg->node < TIERD_MAX_NODES ? v->node_tier[pg->node] : -1;
}

/* Pass 2: takes the page as a candidate if it is one. */
static void consider(struct walk *w, const struct tierd_seg_view *sv, uint64_t p, int tier, float heat, int b)
{
	struct hotness *h = w->h;
	uint64_t bytes = sv->page_size;

	if (tier > 0 && b >= w->pb && heat >= h->min_score) {
		if (b == w->pb) {
			if (!w->up_edge_left)
				return;
			w->up_edge_left -= bytes < w->up_edge_left ? bytes : w->up_edge_left;
		}
		if (plan_grow((void **)&h->up, &h->up_cap, w->nup + 1, sizeof(*h->up)) < 0) {
			w->err = -ENOMEM;
			return;
		}
		h->up[w->nup++] = (struct plan_cand){ .seg = sv->id, .bytes = (uint32_t)bytes, .page = p,
						      .score = heat };
	} else if (tier == 0 && w->want_down && b <= w->db) {
		if (b == w->db) {
			if (!w->down_edge_left)
				return;
			w->down_edge_left -= bytes < w->down_edge_left ? bytes : w->down_edge_left;
		}
		if (plan_grow((void **)&h->down, &h->down_cap, w->ndown + 1, sizeof(*h->down)) < 0) {
			w->err = -ENOMEM;
			return;
		}
		h->down[w->ndown++] = (struct plan_cand){ .seg = sv->id, .bytes = (uint32_t)bytes, .page = p,
							  .score = heat };
	}
}

/* Pass 2 in a region whose unsampled pages cannot be candidates: only the pages with samples,
 * found through the chunk bits (a chunk wholly inside the region found empty is cleared). */
static void collect_sampled(struct walk *w, const struct tierd_seg_view *sv, struct plan_seg *s,
			    uint64_t start, uint64_t end, float rh)
{
	const struct hpage *hpages = s->pages;

	for (uint64_t c = start >> 6; c << 6 < end && !w->err; c++) {
		uint64_t *word = &s->chunks[c >> 6], bit = UINT64_C(1) << (c & 63);
		uint64_t from = c << 6 > start ? c << 6 : start, to = (c << 6) + 64 < end ? (c << 6) + 64 : end;
		bool any = false;

		if (!(*word & bit)) {
			/* Skip the rest of an empty word at once. */
			if (!(*word >> (c & 63)))
				c |= 63;
			continue;
		}
		for (uint64_t p = from; p < to; p++) {
			int tier;
			float heat;

			if (!hpages[p].samples)
				continue;
			any = true;
			tier = tier_of(w->v, &sv->pages[p]);
			if (tier < 0)
				continue;
			heat = page_heat(w->h, &hpages[p], w->v->epoch, rh);
			consider(w, sv, p, tier, heat, bucket_of(heat));
		}
		if (!any && from == c << 6 && to == (c << 6) + 64)
			*word &= ~bit;
	}
}

/*
 * Walks the tracked pages region by region, segments in id order. Pass 1 (collect false) fills
 * the heat histograms; pass 2 collects the candidates. A page without samples has its region's
 * heat, so pass 1 only counts those by tier, and pass 2 looks at them only in regions whose heat
 * makes them candidates: the common case reads 4 bytes of policy state a page and little more.
 * A segment without regions is one region of heat 0.
 */
static void walk_pages(struct walk *w, bool collect)
{
	struct hotness *h = w->h;
	const struct tierd_view *v = w->v;
	uint32_t now = v->epoch;

	for (uint32_t k = 0; k < v->nsegs && !w->err; k++) {
		const struct tierd_seg_view *sv = &v->segs[h->order[k]];
		struct plan_seg *s = plan_segs_get(&h->segs, sv, sizeof(struct hpage));
		struct tierd_region whole = { .start = 0, .end = sv->npages };
		const struct tierd_region *regs = sv->nregions ? sv->regions : &whole;
		size_t nregs = sv->nregions ? sv->nregions : 1;
		uint64_t bytes = sv->page_size;
		const struct tierd_page *pages = sv->pages;
		const struct hpage *hpages;

		if (!s || !pages)
			continue;
		hpages = s->pages;
		for (size_t ri = 0; ri < nregs && !w->err; ri++) {
			const struct tierd_region *r = &regs[ri];
			uint64_t end = r->end < sv->npages ? r->end : sv->npages;
			uint32_t known = 0, fast = 0;
			float rh = sv->nregions ? region_heat(r) : 0;
			int rb = bucket_of(rh);
			/* Its unsampled pages can be candidates (and the edge bucket is not full). */
			bool plain = collect &&
				     ((rb >= w->pb && rh >= h->min_score && (rb > w->pb || w->up_edge_left)) ||
				      (w->want_down && rb <= w->db && (rb < w->db || w->down_edge_left)));

			if (collect && !plain) {
				collect_sampled(w, sv, s, r->start, end, rh);
				continue;
			}
			for (uint64_t p = r->start; p < end; p++) {
				/* Pass 1 over a 64-page chunk without samples: count nodes only. */
				if (!collect && !(p & 63) && p + 64 <= end &&
				    !(s->chunks[p >> 12] & (UINT64_C(1) << ((p >> 6) & 63)))) {
					for (uint64_t q = p; q < p + 64; q++) {
						uint32_t n = (uint16_t)pages[q].node, in = n < 64;

						known += in & (uint32_t)(w->known_mask >> (n & 63));
						fast += in & (uint32_t)(w->fast_mask >> (n & 63));
					}
					p += 63;
					continue;
				}
				int tier, b;
				float heat;

				if (!hpages[p].samples) {
					if (!collect) {
						/* Branch-free: nodes are scattered over tiers page by page. */
						uint32_t n = (uint16_t)pages[p].node, in = n < 64;

						known += in & (uint32_t)(w->known_mask >> (n & 63));
						fast += in & (uint32_t)(w->fast_mask >> (n & 63));
					} else if (plain) {
						tier = tier_of(v, &pages[p]);
						if (tier >= 0)
							consider(w, sv, p, tier, rh, rb);
					}
					continue;
				}
				tier = tier_of(v, &pages[p]);
				if (tier < 0)
					continue;
				heat = page_heat(h, &hpages[p], now, rh);
				b = bucket_of(heat);
				if (collect) {
					consider(w, sv, p, tier, heat, b);
					continue;
				}
				h->hist_all[b] += bytes;
				if (tier == 0) {
					h->hist_fast[b] += bytes;
					w->used += bytes;
				}
			}
			if (!collect) {
				h->hist_all[rb] += (uint64_t)known * bytes;
				h->hist_fast[rb] += (uint64_t)fast * bytes;
				w->used += (uint64_t)fast * bytes;
			}
		}
	}
}

/*
 * Orders candidates by heat bucket (hottest first, or coldest first), keeping the (segment, page)
 * order they were collected in within a bucket: a counting sort, O(n). A full sort by exact heat
 * costs more than the rest of decide() together when a pass has tens of thousands of
 * candidates, and heat within 1/NBUCKETS is noise.
 */
static int bucket_sort(struct hotness *h, struct plan_cand *c, size_t n, bool hot_first)
{
	size_t sum = 0;

	if (n < 2)
		return 0;
	if (plan_grow((void **)&h->tmp, &h->tmp_cap, n, sizeof(*h->tmp)) < 0)
		return -ENOMEM;
	memset(h->bstart, 0, sizeof(h->bstart));
	for (size_t i = 0; i < n; i++)
		h->bstart[bucket_of(c[i].score)]++;
	for (int k = 0; k < NBUCKETS; k++) {
		int b = hot_first ? NBUCKETS - 1 - k : k;
		size_t cnt = h->bstart[b];

		h->bstart[b] = sum;
		sum += cnt;
	}
	for (size_t i = 0; i < n; i++)
		h->tmp[h->bstart[bucket_of(c[i].score)]++] = c[i];
	memcpy(c, h->tmp, n * sizeof(*c));
	return 0;
}

static int migration_pass(struct hotness *h, const struct tierd_view *v, struct tierd_plan *plan)
{
	uint64_t target = (uint64_t)((double)v->fast_budget_bytes * v->high_wm), cum = 0, hot_off = 0;
	uint64_t free_bytes = v->tiers[0].free_bytes, cap = v->max_move_bytes, up_cap, down_cap;
	uint64_t low = (uint64_t)((double)v->fast_budget_bytes * v->low_wm);
	struct walk w = { .h = h, .v = v };
	struct plan_budget b;
	int minb = bucket_of(h->min_score);

	/* Segments in id order: candidates come out by (segment, page), the plan's tie-break. */
	if (plan_grow((void **)&h->order, &h->order_cap, v->nsegs + 1, sizeof(*h->order)) < 0)
		return -ENOMEM;
	for (uint32_t i = 0; i < v->nsegs; i++) {
		uint32_t j = i;

		for (; j > 0 && v->segs[h->order[j - 1]].id > v->segs[i].id; j--)
			h->order[j] = h->order[j - 1];
		h->order[j] = i;
	}
	_Static_assert(TIERD_MAX_NODES <= 64, "node masks are 64 bits");
	for (int n = 0; n < TIERD_MAX_NODES; n++) {
		w.known_mask |= (uint64_t)(v->node_tier[n] >= 0) << n;
		w.fast_mask |= (uint64_t)(v->node_tier[n] == 0) << n;
	}
	memset(h->hist_all, 0, sizeof(h->hist_all));
	memset(h->hist_fast, 0, sizeof(h->hist_fast));
	walk_pages(&w, false);

	/* The hot set: the hottest buckets until they fill the fast tier up to its high watermark.
	 * The bucket that crosses it is in: the planner stops at the budget, hottest first. */
	w.thr = NBUCKETS - 1;
	for (int k = NBUCKETS - 1; k >= 0; k--) {
		cum += h->hist_all[k];
		w.thr = k;
		if (cum >= target)
			break;
	}
	if (w.thr < minb)
		w.thr = minb;
	for (int k = w.thr; k < NBUCKETS; k++)
		hot_off += h->hist_all[k] - h->hist_fast[k];
	w.want_down = w.used > target || (hot_off && (w.used + hot_off > target || hot_off > free_bytes));
	if (!hot_off && w.used <= target)
		return 0;

	/* Collect no more than this pass can move: the coldest fast pages it may demote (down to the
	 * low watermark, plus room for the promotions), the hottest others it may promote (into the
	 * room below the high watermark, plus what demotions free). The edge bucket gives only what
	 * is still missing (its pages differ by < 1/NBUCKETS). */
	down_cap = (w.used > target ? w.used - low : 0) + (hot_off < cap ? hot_off : cap);
	if (down_cap > cap || !w.want_down)
		down_cap = w.want_down ? cap : 0;
	up_cap = (target > w.used ? target - w.used : 0) + down_cap;
	if (up_cap > cap)
		up_cap = cap;
	cum = 0;
	w.pb = NBUCKETS - 1;
	for (int k = NBUCKETS - 1; k >= w.thr; k--) {
		uint64_t off = h->hist_all[k] - h->hist_fast[k];

		w.pb = k;
		if (cum + off >= up_cap) {
			w.up_edge_left = up_cap - cum;
			break;
		}
		cum += off;
		w.up_edge_left = off;
	}
	cum = 0;
	w.db = 0;
	for (int k = 0; k < NBUCKETS; k++) {
		w.db = k;
		if (cum + h->hist_fast[k] >= down_cap) {
			w.down_edge_left = down_cap - cum;
			break;
		}
		cum += h->hist_fast[k];
		w.down_edge_left = h->hist_fast[k];
	}
	walk_pages(&w, true);
	if (w.err)
		return w.err;
	if (bucket_sort(h, h->up, w.nup, true) < 0 || bucket_sort(h, h->down, w.ndown, false) < 0)
		return -ENOMEM;
	b = (struct plan_budget){ .fast_budget_bytes = v->fast_budget_bytes, .fast_used_bytes = w.used,
				  .fast_free_bytes = free_bytes, .max_move_bytes = cap,
				  .high_wm = v->high_wm, .low_wm = v->low_wm,
				  .swap_margin = h->swap_margin, .can_demote = plan_can_demote(v) };
	plan_fill(h->up, w.nup, h->down, w.ndown, &b, plan);
	return 0;
}

static int hot_decide(void *state, const struct tierd_view *view, struct tierd_plan *plan)
{
	struct hotness *h = state;

	plan->npromote = plan->ndemote = plan->nwindows = 0;
	commit_epoch(h, view);
	if (!plan_may_move(view))
		return 0;
	return migration_pass(h, view, plan);
}

const struct tierd_policy_ops policy_hotness = {
	.abi_version = TIERD_POLICY_ABI_VERSION,
	.size = sizeof(struct tierd_policy_ops),
	.name = "hotness",
	.description = "frequency with decay plus recency, sized to the fast tier; scans discounted",
	.init = hot_init,
	.fini = hot_fini,
	.seg_add = hot_seg_add,
	.seg_remove = hot_seg_remove,
	.observe = hot_observe,
	.decide = hot_decide,
};
