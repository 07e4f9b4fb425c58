/* SPDX-License-Identifier: MIT */
/*
 * Adaptive sampling regions over one segment's pages (DAMON-style).
 *
 * The segment is covered by contiguous regions. Each epoch a bounded number of regions gets one
 * sampling window (a run of pages at a random place inside the region); when the window closes,
 * the share of its pages that were touched updates the region's score (an exponentially weighted
 * average). Periodically, adjacent regions with similar scores merge and regions split at random
 * points, so region boundaries follow the workload's hot and cold areas while the number of
 * regions — and so tierd's work per epoch — stays bounded. Pure: no kernel calls, no clock.
 */
#ifndef TIERD_REGION_H
#define TIERD_REGION_H

#include <stddef.h>
#include <stdint.h>

struct region {
	uint64_t start, end; /* pages [start, end) */
	float score;         /* 0..1: estimated share of the region's pages touched per epoch */
	float prev_score;    /* the score before the latest sample (policies tell sweeps from heat) */
	uint32_t samples;    /* epochs in which the region was sampled */
	uint32_t acc_pages, acc_hits; /* this epoch's closed windows, folded in by region_set_commit */
};

struct region_set {
	struct region *r;
	size_t n, cap;
	size_t min_regions, max_regions;
	uint64_t npages;
	uint64_t min_region_pages; /* never split below a window */
	size_t cursor;             /* round-robin position for window picking */
	uint64_t rng;
};

struct region_window {
	uint64_t start, npages; /* pages */
	size_t region;          /* index at pick time; valid until the next region_set_adapt() */
};

/* Returns 0 or -ENOMEM / -EINVAL. min_region_pages is usually the window size in pages. */
int region_set_init(struct region_set *rs, uint64_t npages, size_t min_regions, size_t max_regions,
		    uint64_t min_region_pages, uint64_t seed);
void region_set_fini(struct region_set *rs);

/*
 * Picks up to `max` windows of at most win_pages pages. With fewer regions than `max`, each region
 * gets max / n windows spread evenly across it (distinct, window-aligned); with more, one window
 * per region round-robin, so every region is sampled within ceil(n / max) epochs. Returns how
 * many were written.
 */
size_t region_set_pick(struct region_set *rs, size_t max, uint64_t win_pages, struct region_window *out);

/* Adds a closed window's result (touched of its npages) to its region's tally for this epoch. */
void region_set_record(struct region_set *rs, const struct region_window *w, uint64_t touched);

/* Folds this epoch's tallies into the regions' scores (an exponentially weighted average). */
void region_set_commit(struct region_set *rs);

/* Merges similar neighbours (|score difference| <= merge_delta, merged size at most
 * npages / min_regions, so one region cannot swallow the segment), then splits while below max. */
void region_set_adapt(struct region_set *rs, float merge_delta);

/* The index of the region that contains `page`. */
size_t region_set_find(const struct region_set *rs, uint64_t page);

/* Score of the region containing `page`. */
float region_set_score(const struct region_set *rs, uint64_t page);

#endif
