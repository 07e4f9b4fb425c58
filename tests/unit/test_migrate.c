/* SPDX-License-Identifier: MIT */
/* The migration planner: budgets, watermarks, swaps, caps, and mixed page sizes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "migrate.h"

#define PG 4096u

static struct migrate_budget budget(uint64_t budget_pages, uint64_t used_pages)
{
	return (struct migrate_budget){ .fast_budget_bytes = budget_pages * PG,
					.fast_used_bytes = used_pages * PG,
					.high_wm = 0.95f, .low_wm = 0.85f, .hot_threshold = 0.25f,
					.max_move_bytes = UINT64_MAX, .fast_free_bytes = UINT64_MAX };
}

static void fill(struct migrate_candidate *c, size_t n, int8_t tier, float score, uint64_t first)
{
	for (size_t i = 0; i < n; i++)
		c[i] = (struct migrate_candidate){ .page = first + i, .page_bytes = PG, .score = score,
						   .tier = tier };
}

static void test_promote_into_room(void **state)
{
	struct migrate_candidate c[30];
	struct migrate_budget b = budget(100, 0);
	struct migrate_plan p;

	(void)state;
	fill(c, 10, 1, 0.9f, 0);   /* hot on the slow tier */
	fill(c + 10, 10, 1, 0.0f, 10); /* cold on the slow tier: stays */
	fill(c + 20, 10, -1, 0.9f, 20); /* unknown node: not planned */
	migrate_plan_build(c, 30, &b, &p);
	assert_int_equal(p.npromote, 10);
	assert_int_equal(p.ndemote, 0);
	for (size_t i = 0; i < p.npromote; i++)
		assert_true(p.promote[i].page < 10);
}

static void test_hottest_first_within_budget(void **state)
{
	struct migrate_candidate c[20];
	struct migrate_budget b = budget(10, 0); /* high watermark: 9 pages */
	struct migrate_plan p;

	(void)state;
	for (int i = 0; i < 20; i++)
		c[i] = (struct migrate_candidate){ .page = (uint64_t)i, .page_bytes = PG,
						   .score = 0.3f + 0.03f * (float)i, .tier = 2 };
	migrate_plan_build(c, 20, &b, &p);
	assert_int_equal(p.npromote, 9);
	for (size_t i = 0; i < p.npromote; i++)
		assert_true(p.promote[i].page >= 11); /* the nine hottest */
}

static void test_demote_above_high_watermark(void **state)
{
	struct migrate_candidate c[100];
	struct migrate_budget b = budget(50, 100);
	struct migrate_plan p;

	(void)state;
	for (int i = 0; i < 100; i++)
		c[i] = (struct migrate_candidate){ .page = (uint64_t)i, .page_bytes = PG,
						   .score = (float)i / 100.0f, .tier = 0 };
	migrate_plan_build(c, 100, &b, &p);
	/* Down to the low watermark (42 pages of 50): 58 coldest demoted. */
	assert_int_equal(p.ndemote, 58);
	for (size_t i = 0; i < p.ndemote; i++)
		assert_true(p.demote[i].page < 58);
	assert_int_equal(p.npromote, 0);
}

static void test_swap_when_full(void **state)
{
	struct migrate_candidate c[20];
	struct migrate_budget b = budget(10, 9); /* at the high watermark */
	struct migrate_plan p;

	(void)state;
	fill(c, 9, 0, 0.05f, 0);      /* fast tier full of cold pages */
	fill(c + 9, 5, 1, 0.9f, 100); /* hot pages waiting */
	fill(c + 14, 6, 1, 0.1f, 200);
	migrate_plan_build(c, 20, &b, &p);
	assert_int_equal(p.npromote, 5);
	assert_int_equal(p.ndemote, 5);
}

static void test_no_pingpong(void **state)
{
	struct migrate_candidate c[11];
	struct migrate_budget b = budget(10, 9); /* at the high watermark, not above */
	struct migrate_plan p;

	(void)state;
	fill(c, 9, 0, 0.50f, 0);
	fill(c + 9, 2, 1, 0.55f, 10); /* barely hotter: not worth two moves */
	migrate_plan_build(c, 11, &b, &p);
	assert_int_equal(p.npromote, 0);
	assert_int_equal(p.ndemote, 0);
}

static void test_caps(void **state)
{
	struct migrate_candidate c[100];
	struct migrate_budget b = budget(1000, 0);
	struct migrate_plan p;

	(void)state;
	fill(c, 100, 1, 0.9f, 0);
	b.max_move_bytes = 7 * PG; /* rate limit */
	migrate_plan_build(c, 100, &b, &p);
	assert_int_equal(p.npromote, 7);
	b.max_move_bytes = UINT64_MAX;
	b.fast_free_bytes = 3 * PG; /* the fast node is nearly full */
	fill(c, 100, 1, 0.9f, 0);
	migrate_plan_build(c, 100, &b, &p);
	assert_int_equal(p.npromote, 3);
}

static void test_mixed_page_sizes(void **state)
{
	struct migrate_candidate c[3] = {
		{ .page = 0, .page_bytes = 2u << 20, .score = 0.9f, .tier = 1 },
		{ .page = 1, .page_bytes = 2u << 20, .score = 0.8f, .tier = 1 },
		{ .page = 7, .page_bytes = PG, .score = 0.7f, .tier = 1 },
	};
	struct migrate_budget b = budget(0, 0);
	struct migrate_plan p;

	(void)state;
	b.fast_budget_bytes = 3u << 20; /* high watermark ~2.85 MiB: one huge page fits */
	migrate_plan_build(c, 3, &b, &p);
	assert_int_equal(p.npromote, 1);
	assert_int_equal(p.promote[0].page, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_promote_into_room),  cmocka_unit_test(test_hottest_first_within_budget),
		cmocka_unit_test(test_demote_above_high_watermark), cmocka_unit_test(test_swap_when_full),
		cmocka_unit_test(test_no_pingpong),        cmocka_unit_test(test_caps),
		cmocka_unit_test(test_mixed_page_sizes),
	};

	return cmocka_run_group_tests_name("migration planner", tests, NULL, NULL);
}
