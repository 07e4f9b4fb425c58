/* SPDX-License-Identifier: MIT */
/* Adaptive regions: coverage invariants, round-robin picking, scoring, and that merge/split
 * converges on a hot set (and follows it when it moves) in a simulated workload. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "region.h"

static void assert_covers(const struct region_set *rs)
{
	assert_true(rs->n >= 1 && rs->n <= rs->max_regions);
	assert_int_equal(rs->r[0].start, 0);
	assert_int_equal(rs->r[rs->n - 1].end, rs->npages);
	for (size_t i = 0; i < rs->n; i++) {
		assert_true(rs->r[i].start < rs->r[i].end);
		if (i)
			assert_int_equal(rs->r[i].start, rs->r[i - 1].end);
		assert_true(rs->r[i].score >= 0.0f && rs->r[i].score <= 1.0f);
	}
}

static void test_init(void **state)
{
	struct region_set rs;

	(void)state;
	assert_int_equal(region_set_init(&rs, 0, 10, 100, 1, 1), -EINVAL);
	assert_int_equal(region_set_init(&rs, 100, 10, 5, 1, 1), -EINVAL);
	assert_int_equal(region_set_init(&rs, 1000, 10, 100, 16, 1), 0);
	assert_int_equal(rs.n, 10);
	assert_covers(&rs);
	region_set_fini(&rs);
	/* Fewer pages than min_regions windows: fewer, window-sized regions. */
	assert_int_equal(region_set_init(&rs, 40, 10, 100, 16, 1), 0);
	assert_int_equal(rs.n, 2);
	assert_covers(&rs);
	region_set_fini(&rs);
	assert_int_equal(region_set_init(&rs, 1, 10, 100, 1, 1), 0);
	assert_int_equal(rs.n, 1);
	region_set_fini(&rs);
}

static void test_pick_round_robin(void **state)
{
	struct region_set rs;
	struct region_window w[4];
	int seen[10] = { 0 };

	(void)state;
	assert_int_equal(region_set_init(&rs, 1000, 10, 100, 16, 1), 0);
	for (int round = 0; round < 5; round++) {
		size_t n = region_set_pick(&rs, 4, 16, w);

		assert_true(n <= 4);
		for (size_t i = 0; i < n; i++) {
			const struct region *r = &rs.r[w[i].region];

			seen[w[i].region]++;
			assert_true(w[i].start >= r->start);
			assert_true(w[i].start + w[i].npages <= r->end);
			assert_int_equal(w[i].npages, 16);
			assert_int_equal((w[i].start - r->start) % 16, 0);
		}
	}
	/* 20 picks over 10 regions: each exactly twice. */
	for (int i = 0; i < 10; i++)
		assert_int_equal(seen[i], 2);
	region_set_fini(&rs);
}

static void test_pick_spreads_budget(void **state)
{
	struct region_set rs;
	struct region_window w[64];
	size_t n;

	(void)state;
	assert_int_equal(region_set_init(&rs, 1024, 4, 100, 16, 5), 0);
	n = region_set_pick(&rs, 64, 16, w); /* 4 regions of 16 slots: 16 windows each */
	assert_int_equal(n, 64);
	for (size_t i = 0; i < n; i++)
		for (size_t j = i + 1; j < n; j++)
			assert_true(w[i].start != w[j].start); /* distinct */
	n = region_set_pick(&rs, 10, 16, w); /* 2 per region */
	assert_int_equal(n, 8);
	region_set_fini(&rs);
}

static void test_record(void **state)
{
	struct region_set rs;
	struct region_window w;

	(void)state;
	assert_int_equal(region_set_init(&rs, 100, 1, 10, 10, 1), 0);
	assert_int_equal(region_set_pick(&rs, 1, 10, &w), 1);
	region_set_record(&rs, &w, 10);
	assert_true(rs.r[0].score == 0.0f); /* nothing folded in before the commit */
	region_set_commit(&rs);
	assert_true(rs.r[0].score == 1.0f);
	region_set_record(&rs, &w, 0);
	region_set_commit(&rs);
	assert_true(rs.r[0].score == 0.5f);
	region_set_record(&rs, &w, 50); /* clamped */
	region_set_commit(&rs);
	assert_true(rs.r[0].score <= 1.0f);
	region_set_commit(&rs); /* no sample this epoch: unchanged */
	assert_int_equal(rs.r[0].samples, 3);
	w.region = 7; /* stale index: ignored */
	region_set_record(&rs, &w, 0);
	/* Two windows in one epoch count as one sample of their mean. */
	w.region = 0;
	region_set_record(&rs, &w, 10);
	region_set_record(&rs, &w, 0);
	region_set_commit(&rs);
	assert_int_equal(rs.r[0].samples, 4);
	region_set_fini(&rs);
}

/* Simulates tierd's epochs over a segment whose pages [hot_lo, hot_hi) are touched every epoch. */
static double simulate(struct region_set *rs, uint64_t hot_lo, uint64_t hot_hi, int epochs)
{
	struct region_window w[64];
	uint64_t right = 0, hot = hot_hi - hot_lo;

	for (int e = 1; e <= epochs; e++) {
		size_t n = region_set_pick(rs, 64, 16, w);

		for (size_t i = 0; i < n; i++) {
			uint64_t touched = 0;

			for (uint64_t p = w[i].start; p < w[i].start + w[i].npages; p++)
				touched += p >= hot_lo && p < hot_hi;
			region_set_record(rs, &w[i], touched);
		}
		region_set_commit(rs);
		if (e % 5 == 0)
			region_set_adapt(rs, 0.1f);
		assert_covers(rs);
	}
	/* Share of pages classified right at threshold 0.25. */
	for (uint64_t p = 0; p < rs->npages; p++) {
		int is_hot = p >= hot_lo && p < hot_hi;

		right += (region_set_score(rs, p) >= 0.25f) == is_hot;
	}
	(void)hot;
	return (double)right / (double)rs->npages;
}

static void test_converges_and_follows(void **state)
{
	struct region_set rs;
	double acc;

	(void)state;
	assert_int_equal(region_set_init(&rs, 16384, 10, 256, 16, 42), 0);
	acc = simulate(&rs, 2000, 3638, 100); /* a 10% hot set */
	print_message("classified right after 100 epochs: %.3f (regions %zu)\n", acc, rs.n);
	assert_true(acc >= 0.95);
	acc = simulate(&rs, 9000, 10638, 100); /* the hot set moves */
	print_message("after the shift: %.3f (regions %zu)\n", acc, rs.n);
	assert_true(acc >= 0.95);
	region_set_fini(&rs);
}

static void test_merge_bounded(void **state)
{
	struct region_set rs;

	(void)state;
	assert_int_equal(region_set_init(&rs, 100000, 10, 40, 16, 3), 0);
	for (int i = 0; i < 50; i++) {
		region_set_adapt(&rs, 0.1f); /* all scores equal: merge down to min, split back */
		assert_covers(&rs);
		assert_true(rs.n >= 10);
		for (size_t k = 0; k < rs.n; k++) /* no region outgrows npages / min_regions */
			assert_true(rs.r[k].end - rs.r[k].start <= 100000 / 10 + 1);
	}
	region_set_fini(&rs);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_init),          cmocka_unit_test(test_pick_round_robin),
		cmocka_unit_test(test_record), cmocka_unit_test(test_pick_spreads_budget),        cmocka_unit_test(test_converges_and_follows),
		cmocka_unit_test(test_merge_bounded),
	};

	return cmocka_run_group_tests_name("sampling regions", tests, NULL, NULL);
}
