/* SPDX-License-Identifier: MIT */
/* Adaptive sampling regions: pick windows, score regions, merge and split. */
#include "region.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Weight of the newest window in a region's score: high enough that a shifted hot set is seen
 * within two or three samples of a region, low enough that one unlucky window does not flip it. */
#define SCORE_NEW_WEIGHT 0.5f

static uint64_t rng_next(struct region_set *rs)
{
	/* xorshift64*: cheap, and good enough to scatter windows and split points. */
	uint64_t x = rs->rng;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	rs->rng = x;
	return x * UINT64_C(2685821657736338717);
}

static uint64_t rng_below(struct region_set *rs, uint64_t n)
{
	return n ? rng_next(rs) % n : 0;
}

static int reserve(struct region_set *rs, size_t n)
{
	struct region *r;

	if (n <= rs->cap)
		return 0;
	r = realloc(rs->r, n * sizeof(*r));
	if (!r)
		return -ENOMEM;
	rs->r = r;
	rs->cap = n;
	return 0;
}

int region_set_init(struct region_set *rs, uint64_t npages, size_t min_regions, size_t max_regions,
		    uint64_t min_region_pages, uint64_t seed)
{
	uint64_t per, start = 0;
	size_t n;

	memset(rs, 0, sizeof(*rs));
	if (npages == 0 || min_regions == 0 || max_regions < min_regions || min_region_pages == 0)
		return -EINVAL;
	rs->npages = npages;
	rs->min_regions = min_regions;
	rs->max_regions = max_regions;
	rs->min_region_pages = min_region_pages;
	rs->rng = seed ? seed : UINT64_C(0x9e3779b97f4a7c15);

	n = min_regions;
	if ((uint64_t)n * min_region_pages > npages)
		n = (size_t)(npages / min_region_pages);
	if (n == 0)
		n = 1;
	if (reserve(rs, max_regions) < 0)
		return -ENOMEM;
	per = npages / n;
	for (size_t i = 0; i < n; i++) {
		uint64_t end = i + 1 == n ? npages : start + per;

		rs->r[i] = (struct region){ .start = start, .end = end };
		start = end;
	}
	rs->n = n;
	return 0;
}

void region_set_fini(struct region_set *rs)
{
	free(rs->r);
	memset(rs, 0, sizeof(*rs));
}

size_t region_set_pick(struct region_set *rs, size_t max, uint64_t win_pages, struct region_window *out)
{
	size_t k = 0, per, regions;

	if (rs->n == 0 || win_pages == 0 || max == 0)
		return 0;
	per = max / rs->n ? max / rs->n : 1;
	regions = max < rs->n ? max : rs->n;
	for (size_t j = 0; j < regions; j++) {
		size_t i = rs->cursor++ % rs->n;
		const struct region *r = &rs->r[i];
		uint64_t len = r->end - r->start;
		uint64_t w = win_pages < len ? win_pages : len;
		/* Window-aligned slots keep hugetlb windows and their registrations aligned. */
		uint64_t slots = len / w, want = per < slots ? per : slots;
		uint64_t first = rng_below(rs, slots), step = slots / want;

		/* Evenly spaced slots from a random start: distinct, and a stratified sample. */
		for (uint64_t s = 0; s < want; s++)
			out[k++] = (struct region_window){
				.start = r->start + ((first + s * step) % slots) * w,
				.npages = w,
				.region = i,
			};
	}
	return k;
}

void region_set_record(struct region_set *rs, const struct region_window *w, uint64_t touched)
{
	struct region *r;

	if (w->region >= rs->n || w->npages == 0)
		return;
	r = &rs->r[w->region];
	if (w->start < r->start || w->start >= r->end)
		return; /* the region changed since the pick; drop the sample */
	r->acc_pages += (uint32_t)w->npages;
	r->acc_hits += (uint32_t)(touched < w->npages ? touched : w->npages);
}

void region_set_commit(struct region_set *rs)
{
	for (size_t i = 0; i < rs->n; i++) {
		struct region *r = &rs->r[i];
		float frac;

		if (r->acc_pages == 0)
			continue;
		frac = (float)r->acc_hits / (float)r->acc_pages;
		r->prev_score = r->score;
		r->score = r->samples ? (1.0f - SCORE_NEW_WEIGHT) * r->score + SCORE_NEW_WEIGHT * frac
				      : frac;
		r->samples++;
		r->acc_pages = r->acc_hits = 0;
	}
}

static void merge(struct region_set *rs, float merge_delta)
{
	uint64_t size_limit = rs->npages / rs->min_regions;
	size_t out = 0;

	for (size_t i = 1; i < rs->n; i++) {
		struct region *a = &rs->r[out], *b = &rs->r[i];
		float d = a->score - b->score;

		if (d < 0)
			d = -d;
		uint64_t la = a->end - a->start, lb = b->end - b->start;

		if (out + 1 + (rs->n - i) > rs->min_regions && d <= merge_delta &&
		    la + lb <= size_limit) {
			a->score = (a->score * (float)la + b->score * (float)lb) / (float)(la + lb);
			a->prev_score = (a->prev_score * (float)la + b->prev_score * (float)lb) /
					(float)(la + lb);
			a->samples = a->samples < b->samples ? a->samples : b->samples;
			a->end = b->end;
		} else {
			rs->r[++out] = *b;
		}
	}
	rs->n = out + 1;
}

static void split(struct region_set *rs)
{
	size_t n = rs->n;

	/* Split each region once at a random point while there is room; walk backwards so inserting
	 * does not disturb unvisited regions. Splitting only up to half of max keeps room for the
	 * next round's merges to matter. */
	for (size_t i = n; i-- > 0 && rs->n < rs->max_regions;) {
		struct region *r = &rs->r[i];
		uint64_t len = r->end - r->start, at;

		if (len < 2 * rs->min_region_pages)
			continue;
		at = r->start + rs->min_region_pages +
		     rng_below(rs, len - 2 * rs->min_region_pages + 1);
		memmove(&rs->r[i + 2], &rs->r[i + 1], (rs->n - i - 1) * sizeof(*r));
		rs->r[i + 1] = (struct region){ .start = at, .end = r->end, .score = r->score,
						.prev_score = r->prev_score, .samples = r->samples, .acc_pages = 0, .acc_hits = 0 };
		r->end = at;
		rs->n++;
	}
}

void region_set_adapt(struct region_set *rs, float merge_delta)
{
	if (rs->n == 0)
		return;
	merge(rs, merge_delta);
	if (rs->n * 2 <= rs->max_regions)
		split(rs);
	if (rs->cursor >= rs->n)
		rs->cursor = 0;
}

size_t region_set_find(const struct region_set *rs, uint64_t page)
{
	size_t lo = 0, hi = rs->n;

	while (hi - lo > 1) {
		size_t mid = lo + (hi - lo) / 2;

		if (rs->r[mid].start <= page)
			lo = mid;
		else
			hi = mid;
	}
	return lo;
}

float region_set_score(const struct region_set *rs, uint64_t page)
{
	if (rs->n == 0)
		return 0;
	return rs->r[region_set_find(rs, page)].score;
}
