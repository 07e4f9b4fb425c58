/* SPDX-License-Identifier: MIT */
/*
 * The built-in policies (policy/builtin_*.c) on small hand-built views, hosted as tierd hosts them
 * (policy/host.c validates every plan): parameters refused with reasons, the budget, the free
 * memory and max_move_bytes honoured, nothing moved outside a migration pass or with one tier,
 * none never moving, hotness's hot set sizing and scan resistance, lru's second chance, and
 * byte-identical plans from two instances given the same inputs.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "builtins.h"
#include "host.h"

#define NPAGES 256
#define PAGE 4096u

/* One segment (id 7) of NPAGES pages, two tiers: node 0 fast, node 1 slow. */
struct world {
	struct tierd_page pages[NPAGES];
	struct tierd_region regions[4];
	struct tierd_window closed[8];
	struct tierd_seg_view seg;
	struct tierd_view v;
	struct tierd_move promote[NPAGES], demote[NPAGES];
	struct tierd_plan plan;
};

static void world_init(struct world *w, int fast_pages)
{
	memset(w, 0, sizeof(*w));
	for (int p = 0; p < NPAGES; p++)
		w->pages[p] = (struct tierd_page){ .node = (int16_t)(p < fast_pages ? 0 : 1) };
	/* Four regions of 64 pages, all cold. */
	for (int r = 0; r < 4; r++)
		w->regions[r] = (struct tierd_region){ .start = 64u * r, .end = 64u * (r + 1) };
	w->seg = (struct tierd_seg_view){ .id = 7, .page_size = PAGE, .npages = NPAGES, .pages = w->pages,
					  .regions = w->regions, .nregions = 4, .closed = w->closed,
					  .nattach = 1 };
	w->v = (struct tierd_view){ .size = sizeof(w->v), .epoch = 5, .epoch_ms = 100, .ntiers = 2,
				    .nsegs = 1, .segs = &w->seg, .migrate = 1,
				    .max_move_bytes = NPAGES * PAGE, .fast_budget_bytes = 64 * PAGE,
				    .high_wm = 0.95f, .low_wm = 0.85f, .window_bytes = 8 * PAGE };
	memset(w->v.node_tier, -1, sizeof(w->v.node_tier));
	w->v.node_tier[0] = 0;
	w->v.node_tier[1] = 1;
	w->v.tiers[0] = (struct tierd_tier_view){ .capacity_bytes = 64 * PAGE, .nnodes = 1,
						  .free_bytes = (uint64_t)(64 - fast_pages) * PAGE };
	w->v.tiers[1] = (struct tierd_tier_view){ .capacity_bytes = 1 << 30, .free_bytes = 1 << 29,
						  .nnodes = 1, .target_node = 1 };
	w->plan = (struct tierd_plan){ .promote = w->promote, .max_promote = NPAGES, .demote = w->demote,
				       .max_demote = NPAGES };
}

static struct policy *open_policy(const char *name)
{
	struct tierd_policy_env env = { .abi_version = TIERD_POLICY_ABI_VERSION, .epoch_ms = 100, .seed = 3 };
	struct policy *p;
	char why[256];

	if (policy_open(name, NULL, NULL, 0, &env, &p, why, sizeof(why)) < 0)
		fail_msg("%s: %s", name, why);
	assert_int_equal(policy_seg_add(p, &(struct tierd_seg_view){ .id = 7, .page_size = PAGE,
								      .npages = NPAGES }), 0);
	return p;
}

/* Returns the error, with the reason in why. */
static int try_open(const char *name, const char *key, const char *value, char *why)
{
	struct tierd_policy_env env = { .abi_version = TIERD_POLICY_ABI_VERSION };
	struct tierd_policy_param p = { key, value };
	struct policy *pol = NULL;
	int r = policy_open(name, NULL, &p, 1, &env, &pol, why, 256);

	policy_close(pol);
	return r;
}

static void expect_refused(const char *name, const char *key, const char *value)
{
	char why[256] = "";

	assert_int_equal(try_open(name, key, value, why), -EINVAL);
	if (!strstr(why, key))
		fail_msg("%s %s=%s refused without naming the key: \"%s\"", name, key, value, why);
}

static void test_params(void **state)
{
	char why[256];

	(void)state;
	expect_refused("hotness", "nonesuch", "1");
	expect_refused("hotness", "min_score", "0");
	expect_refused("hotness", "min_score", "1.5");
	expect_refused("hotness", "min_score", "abc");
	expect_refused("hotness", "decay", "0");
	expect_refused("hotness", "decay", "1.01");
	expect_refused("hotness", "prior", "-1");
	expect_refused("hotness", "swap_margin", "");
	expect_refused("hotness", "change", "0");
	expect_refused("lru", "window_epochs", "1");
	expect_refused("lru", "window_epochs", "2.5");
	expect_refused("lru", "window_epochs", "300");
	expect_refused("lru", "min_score", "0.3");
	expect_refused("none", "min_score", "0.3");
	assert_int_equal(try_open("hotness", "min_score", "0.4", why), 0);
	assert_int_equal(try_open("hotness", "decay", "1", why), 0);
	assert_int_equal(try_open("hotness", "change", "1", why), 0);
	assert_int_equal(try_open("lru", "window_epochs", "8", why), 0);
	assert_non_null(policy_builtin("lru"));
}

/* The last epoch's window over pages [first, first + n) closed; `touched` of them faulted. */
static void sample(struct policy *p, struct world *w, uint64_t first, uint64_t n, const bool *touched)
{
	struct tierd_event ev[64];
	size_t k = 0;

	for (uint64_t i = 0; i < n; i++)
		if (touched[i])
			ev[k++] = (struct tierd_event){ .seg = 7, .page = first + i, .kind = TIERD_EV_FAULT,
							 .weight = 1 };
	policy_observe(p, ev, k);
	w->closed[w->seg.nclosed++] = (struct tierd_window){ .seg = 7, .start = first, .npages = n };
}

static int decide(struct policy *p, struct world *w)
{
	int r = policy_decide(p, &w->v, &w->plan);

	if (r < 0)
		fail_msg("%s disabled: %s", policy_name(p), policy_disabled(p));
	w->seg.nclosed = 0;
	w->v.epoch++;
	return r;
}

/* Makes region 3 (pages 192-255, all slow) hot, seen hot in two samples. */
static void hot_region3(struct world *w)
{
	w->regions[3] = (struct tierd_region){ .start = 192, .end = 256, .score = 0.9f, .prev_score = 0.8f,
					       .samples = 4 };
}

static void check_plan(const struct world *w, uint64_t fast_used_before)
{
	uint64_t moved = (w->plan.npromote + w->plan.ndemote) * (uint64_t)PAGE;
	uint64_t after = fast_used_before + (w->plan.npromote - w->plan.ndemote) * (uint64_t)PAGE;
	char why[256];

	assert_true(moved <= w->v.max_move_bytes);
	assert_true(w->plan.npromote * (uint64_t)PAGE <= w->v.tiers[0].free_bytes +
							       w->plan.ndemote * (uint64_t)PAGE);
	if (w->plan.npromote)
		assert_true(after <= (uint64_t)((double)w->v.fast_budget_bytes * w->v.high_wm));
	if (policy_validate(&w->v, &w->plan, false, why, sizeof(why)) < 0)
		fail_msg("invalid plan: %s", why);
}

static void test_nothing_moves_outside_a_pass(void **state)
{
	static const char *const names[] = { "hotness", "lru", "none" };

	(void)state;
	for (size_t i = 0; i < 3; i++) {
		struct world *w = malloc(sizeof(*w));
		struct policy *p = open_policy(names[i]);
		bool all[8] = { 1, 1, 1, 1, 1, 1, 1, 1 };

		world_init(w, 0);
		hot_region3(w);
		for (int e = 0; e < 6; e++) {
			/* Pages 200-207 seen in every epoch: hot for every policy but none. */
			sample(p, w, 200, 8, all);
			w->v.migrate = 0;
			decide(p, w);
			assert_int_equal(w->plan.npromote + w->plan.ndemote, 0);
		}
		/* One tier: nothing can move either. */
		sample(p, w, 200, 8, all);
		w->v.migrate = 1;
		w->v.ntiers = 1;
		decide(p, w);
		assert_int_equal(w->plan.npromote + w->plan.ndemote, 0);
		/* The same with two tiers and a pass: the policies that move do move. */
		sample(p, w, 200, 8, all);
		w->v.ntiers = 2;
		decide(p, w);
		if (strcmp(names[i], "none"))
			assert_true(w->plan.npromote > 0);
		else
			assert_int_equal(w->plan.npromote + w->plan.ndemote, 0);
		check_plan(w, 0);
		policy_close(p);
		free(w);
	}
}

static void test_hotness_budget_and_cap(void **state)
{
	struct world *w = malloc(sizeof(*w));
	struct policy *p = open_policy("hotness");

	(void)state;
	/* 40 fast pages (cold, region 0); region 3 hot and off the fast tier: the hot set (64 pages)
	 * is bigger than the room below the high watermark (60.8 pages). */
	world_init(w, 40);
	hot_region3(w);
	w->v.max_move_bytes = 10 * PAGE;
	decide(p, w);
	assert_int_equal(w->plan.npromote + w->plan.ndemote, 10); /* the cap, exactly */
	check_plan(w, 40 * PAGE);
	for (size_t i = 0; i < w->plan.npromote; i++)
		assert_true(w->plan.promote[i].page >= 192);

	/* Free memory binds before the budget. */
	world_init(w, 40);
	hot_region3(w);
	w->v.tiers[0].free_bytes = 3 * PAGE;
	decide(p, w);
	check_plan(w, 40 * PAGE);
	assert_true(w->plan.npromote >= 3);

	/* No cap: fill up to the high watermark, then swap the coldest fast pages for hotter ones. */
	world_init(w, 40);
	hot_region3(w);
	decide(p, w);
	check_plan(w, 40 * PAGE);
	/* 20 fit below the high watermark (60.8 pages); each of the 40 cold fast pages is swapped for
	 * a hot one; then nothing colder is left to swap. */
	assert_int_equal(w->plan.npromote, 60);
	assert_int_equal(w->plan.ndemote, 40);
	for (size_t i = 0; i < w->plan.ndemote; i++)
		assert_true(w->plan.demote[i].page < 40);

	/* Over the high watermark with nothing hot: demote down to the low watermark. */
	world_init(w, 64);
	w->v.tiers[0].free_bytes = 0;
	decide(p, w);
	check_plan(w, 64 * PAGE);
	assert_int_equal(w->plan.npromote, 0);
	assert_int_equal(w->plan.ndemote, 64 - 54); /* 64 -> floor(0.85 * 64) = 54 pages */
	policy_close(p);
	free(w);
}

/* Pages never touched are never hot; a sweep (one hot sample of a region) is not heat; a page seen
 * twice ranks above a page seen once. */
static void test_hotness_scan_resistance(void **state)
{
	struct world *w = malloc(sizeof(*w));
	struct policy *p = open_policy("hotness");
	bool all[8] = { 1, 1, 1, 1, 1, 1, 1, 1 }, none[8] = { 0 };

	(void)state;
	world_init(w, 0);
	/* Nothing touched: nothing promoted, though the fast tier is empty. */
	decide(p, w);
	assert_int_equal(w->plan.npromote, 0);

	/* A sweep: region 2's latest sample says hot, its previous one cold. */
	w->regions[2] = (struct tierd_region){ .start = 128, .end = 192, .score = 0.55f, .prev_score = 0.1f,
					       .samples = 3 };
	decide(p, w);
	assert_int_equal(w->plan.npromote, 0);

	/* Pages 0-7 seen in two samples, pages 64-71 in one (then missed), in cold regions. */
	sample(p, w, 0, 8, all);
	sample(p, w, 64, 8, all);
	w->v.migrate = 0;
	decide(p, w);
	sample(p, w, 0, 8, all);
	sample(p, w, 64, 8, none);
	w->v.migrate = 1;
	w->v.fast_budget_bytes = 8 * PAGE; /* room for the hottest 7 (high watermark) */
	w->v.tiers[0].free_bytes = 8 * PAGE;
	decide(p, w);
	check_plan(w, 0);
	assert_true(w->plan.npromote > 0);
	for (size_t i = 0; i < w->plan.npromote; i++)
		assert_true(w->plan.promote[i].page < 8);
	policy_close(p);
	free(w);
}

/* eBPF samples (TIERD_EV_SAMPLE) are evidence without a window; first touches are not heat. */
static void test_hotness_samples(void **state)
{
	struct world *w = malloc(sizeof(*w));
	struct policy *p = open_policy("hotness");

	(void)state;
	world_init(w, 0);
	for (int e = 0; e < 3; e++) {
		struct tierd_event ev[] = {
			{ .seg = 7, .page = 130, .kind = TIERD_EV_SAMPLE, .weight = 50 },
			{ .seg = 7, .page = 131, .kind = TIERD_EV_FIRST_TOUCH, .weight = 1 },
			{ .seg = 7, .page = 132, .kind = 99, .weight = 1 }, /* unknown kinds are ignored */
			{ .seg = 99, .page = 1, .kind = TIERD_EV_SAMPLE, .weight = 1 }, /* no such segment */
			{ .seg = 7, .page = NPAGES, .kind = TIERD_EV_SAMPLE, .weight = 1 }, /* nor page */
		};

		policy_observe(p, ev, sizeof(ev) / sizeof(ev[0]));
		w->v.migrate = e == 2;
		decide(p, w);
	}
	check_plan(w, 0);
	assert_int_equal(w->plan.npromote, 1);
	assert_int_equal(w->plan.promote[0].page, 130);
	assert_true(w->plan.promote[0].score > 0.5f);
	policy_close(p);
	free(w);
}

static void test_lru_second_chance(void **state)
{
	struct world *w = malloc(sizeof(*w));
	struct policy *p = open_policy("lru");
	bool all[8] = { 1, 1, 1, 1, 1, 1, 1, 1 };

	(void)state;
	/* The fast tier is full (64 pages: 0-63); pages 0-7 are referenced on it. */
	world_init(w, 64);
	w->v.tiers[0].free_bytes = 0;
	w->v.migrate = 0;
	sample(p, w, 0, 8, all);
	sample(p, w, 100, 8, all);
	decide(p, w);
	/* Seen once: pages 100-107 are on probation, not promoted. */
	sample(p, w, 0, 8, all);
	w->v.migrate = 1;
	decide(p, w);
	for (size_t i = 0; i < w->plan.npromote; i++)
		assert_true(w->plan.promote[i].page < 100 || w->plan.promote[i].page >= 108);
	/* Seen again in the next sample: active, promoted; the clock demotes unreferenced fast pages
	 * (above the high watermark anyway), never the referenced 0-7. */
	sample(p, w, 100, 8, all);
	decide(p, w);
	check_plan(w, 64 * PAGE);
	assert_int_equal(w->plan.npromote, 8);
	for (size_t i = 0; i < w->plan.npromote; i++)
		assert_true(w->plan.promote[i].page >= 100 && w->plan.promote[i].page < 108);
	assert_true(w->plan.ndemote >= 8);
	for (size_t i = 0; i < w->plan.ndemote; i++)
		assert_true(w->plan.demote[i].page >= 8 && w->plan.demote[i].page < 64);
	policy_close(p);
	free(w);
}

static void test_none_never_moves(void **state)
{
	struct world *w = malloc(sizeof(*w));
	struct policy *p = open_policy("none");
	bool all[8] = { 1, 1, 1, 1, 1, 1, 1, 1 };

	(void)state;
	world_init(w, 64);
	hot_region3(w);
	w->v.tiers[0].free_bytes = 0;
	for (int e = 0; e < 20; e++) {
		sample(p, w, 192 + 8 * (e % 8), 8, all);
		decide(p, w);
		assert_int_equal(w->plan.npromote + w->plan.ndemote, 0);
	}
	policy_close(p);
	free(w);
}

/* A seeded workload for two instances: each must make the same plans, byte for byte. */
static void run_workload(const char *name, char **log, size_t *len)
{
	struct world *w = malloc(sizeof(*w));
	struct policy *p = open_policy(name);
	FILE *f = open_memstream(log, len);
	uint64_t rng = 12345;

	assert_non_null(f);
	policy_set_decision_log(p, f);
	world_init(w, 32);
	for (int e = 0; e < 60; e++) {
		for (int k = 0; k < 4; k++) {
			bool t[8];
			uint64_t first;

			rng = rng * 6364136223846793005ull + 1442695040888963407ull;
			first = (rng >> 33) % (NPAGES / 8) * 8;
			for (int i = 0; i < 8; i++) {
				rng = rng * 6364136223846793005ull + 1442695040888963407ull;
				/* Upper pages are hotter. */
				t[i] = (rng >> 33) % NPAGES < first;
			}
			sample(p, w, first, 8, t);
		}
		for (int r = 0; r < 4; r++) {
			w->regions[r].prev_score = w->regions[r].score;
			w->regions[r].score = 0.2f * (float)r + 0.05f * (float)(e % 3);
			w->regions[r].samples++;
		}
		w->v.migrate = e % 5 == 4;
		decide(p, w);
		/* Apply the plan, as the host would. */
		for (size_t i = 0; i < w->plan.ndemote; i++)
			w->pages[w->plan.demote[i].page].node = 1;
		for (size_t i = 0; i < w->plan.npromote; i++)
			w->pages[w->plan.promote[i].page].node = 0;
		w->v.tiers[0].free_bytes = 0;
		for (int i = 0; i < NPAGES; i++)
			w->v.tiers[0].free_bytes += w->pages[i].node == 0 ? 0 : PAGE;
		w->v.tiers[0].free_bytes = w->v.tiers[0].free_bytes > (NPAGES - 64) * PAGE
						   ? w->v.tiers[0].free_bytes - (NPAGES - 64) * PAGE : 0;
	}
	policy_close(p);
	fclose(f);
	free(w);
}

static void test_determinism(void **state)
{
	static const char *const names[] = { "hotness", "lru", "none" };

	(void)state;
	for (size_t i = 0; i < 3; i++) {
		char *a, *b;
		size_t la, lb;

		run_workload(names[i], &a, &la);
		run_workload(names[i], &b, &lb);
		assert_int_equal(la, lb);
		assert_memory_equal(a, b, la);
		if (strcmp(names[i], "none"))
			assert_non_null(strstr(a, "\n+ 7 ")); /* it did move something */
		else
			assert_null(strstr(a, "\n+ "));
		free(a);
		free(b);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_params),
		cmocka_unit_test(test_nothing_moves_outside_a_pass),
		cmocka_unit_test(test_hotness_budget_and_cap),
		cmocka_unit_test(test_hotness_scan_resistance),
		cmocka_unit_test(test_hotness_samples),
		cmocka_unit_test(test_lru_second_chance),
		cmocka_unit_test(test_none_never_moves),
		cmocka_unit_test(test_determinism),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
