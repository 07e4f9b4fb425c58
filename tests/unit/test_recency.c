/* SPDX-License-Identifier: MIT */
/* The example module examples/policy-example (recency.so), dlopened as built and called directly
 * on small views: parameter checks, which pages it picks, and that every plan keeps within the
 * view's budgets (max_move_bytes, max_promote/max_demote, the fast tier's free bytes). */
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "tierd/policy.h"

#define PAGE 4096u
#define NPAGES 64u
#define EPOCH 100u

static void *handle;
static const struct tierd_policy_ops *ops;

/* The module sits at $(BUILD)/examples/recency.so; this binary at $(BUILD)/tests/unit/. */
static int group_setup(void **state)
{
	char self[PATH_MAX], so[PATH_MAX + 32];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	char *slash;

	(void)state;
	if (n < 0)
		return -1;
	self[n] = 0;
	for (int up = 0; up < 3; up++) {
		slash = strrchr(self, '/');
		if (!slash)
			return -1;
		*slash = 0;
	}
	snprintf(so, sizeof(so), "%s/examples/recency.so", self);
	handle = dlopen(so, RTLD_NOW | RTLD_LOCAL);
	if (!handle) {
		fprintf(stderr, "dlopen %s: %s\n", so, dlerror());
		return -1;
	}
	ops = dlsym(handle, TIERD_POLICY_SYMBOL);
	if (!ops) {
		fprintf(stderr, "%s: no %s symbol\n", so, TIERD_POLICY_SYMBOL);
		return -1;
	}
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	if (handle)
		dlclose(handle);
	return 0;
}

static void test_ops(void **state)
{
	(void)state;
	assert_int_equal(ops->abi_version, TIERD_POLICY_ABI_VERSION);
	assert_int_equal(ops->size, sizeof(struct tierd_policy_ops));
	assert_string_equal(ops->name, "recency");
	assert_non_null(ops->description);
	assert_non_null(ops->init);
	assert_non_null(ops->fini);
	assert_non_null(ops->decide);
	assert_int_equal(ops->picks_windows, 0);
	/* Nothing but the ops is exported: the module cannot clash with the host's symbols. */
	assert_null(dlsym(handle, "recency_decide"));
}

static unsigned nlogs;

static void count_log(int level, const char *fmt, ...)
{
	(void)level;
	(void)fmt;
	nlogs++;
}

static const struct tierd_policy_env env = { .abi_version = TIERD_POLICY_ABI_VERSION, .epoch_ms = 250,
					     .seed = 1, .log = count_log };

static int init_with(const char *k1, const char *v1, const char *k2, const char *v2, void **st,
		     char *err, size_t errlen)
{
	struct tierd_policy_param p[2] = { { k1, v1 }, { k2, v2 } };
	size_t n = k2 ? 2 : k1 ? 1 : 0;

	*st = NULL;
	err[0] = 0;
	return ops->init(st, &env, p, n, err, errlen);
}

static void test_init_params(void **state)
{
	static const struct {
		const char *key, *value, *says;
	} bad[] = {
		{ "window_epochs", "0", "window_epochs=0" },
		{ "window_epochs", "abc", "window_epochs=abc" },
		{ "window_epochs", "-3", "window_epochs=-3" },
		{ "window_epochs", " 4", "window_epochs= 4" },
		{ "window_epochs", "4x", "window_epochs=4x" },
		{ "window_epochs", "", "window_epochs=" },
		{ "window_epochs", "99999999999999999999999", "window_epochs=9999" },
		{ "idle_epochs", "14401", "idle_epochs=14401" },
		{ "speed", "fast", "unknown parameter \"speed\"" },
	};
	char err[256];
	void *st;

	(void)state;
	nlogs = 0;
	assert_int_equal(init_with(NULL, NULL, NULL, NULL, &st, err, sizeof(err)), 0);
	assert_non_null(st);
	assert_int_equal(nlogs, 1);
	ops->fini(st);
	assert_int_equal(init_with("window_epochs", "2", "idle_epochs", "14400", &st, err, sizeof(err)), 0);
	ops->fini(st);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int r = init_with(bad[i].key, bad[i].value, NULL, NULL, &st, err, sizeof(err));

		if (r != -EINVAL || !strstr(err, bad[i].says))
			fail_msg("%s=%s: got %d \"%s\", expected -EINVAL naming \"%s\"", bad[i].key,
				 bad[i].value, r, err, bad[i].says);
	}
	/* idle shorter than the window would make pages flap between tiers. */
	assert_int_equal(init_with("window_epochs", "8", "idle_epochs", "4", &st, err, sizeof(err)),
			 -EINVAL);
	assert_non_null(strstr(err, "idle_epochs (4) must be at least window_epochs (8)"));
	/* A host without a log callback is fine. */
	{
		struct tierd_policy_env quiet = env;

		quiet.log = NULL;
		assert_int_equal(ops->init(&st, &quiet, NULL, 0, err, sizeof(err)), 0);
		ops->fini(st);
	}
}

/*
 * Two tiers: node 0 fast (tier 0), node 1 slow. One segment of 64 pages: pages 0..31 on node 0,
 * 32..63 on node 1. Fast pages 0..15 last touched at epoch 10 (idle 90 epochs), 16..31 at the
 * current epoch. Slow page 32+i last touched i epochs ago (page 32: now, 33: one epoch ago...),
 * with accesses decreasing, so the policy's order is known.
 */
struct fixture {
	struct tierd_page pages[NPAGES];
	struct tierd_seg_view seg;
	struct tierd_view view;
	struct tierd_move promote[NPAGES], demote[NPAGES];
	struct tierd_plan plan;
};

static void fixture_init(struct fixture *f)
{
	memset(f, 0, sizeof(*f));
	for (unsigned p = 0; p < NPAGES; p++) {
		struct tierd_page *pg = &f->pages[p];

		pg->node = p < 32 ? 0 : 1;
		pg->flags = TIERD_PAGE_EXISTS;
		if (p < 16) {
			pg->last_epoch = 10;
			pg->accesses = 3;
		} else if (p < 32) {
			pg->last_epoch = EPOCH;
			pg->accesses = 50;
		} else {
			pg->last_epoch = EPOCH - (p - 32);
			pg->accesses = 100 - (p - 32);
		}
	}
	f->seg = (struct tierd_seg_view){ .id = 5, .kind = TIERD_SEGV_SHMEM, .page_size = PAGE,
					  .npages = NPAGES, .pages = f->pages, .nattach = 1 };
	f->view.size = sizeof(f->view);
	f->view.epoch = EPOCH;
	f->view.epoch_ms = 250;
	f->view.ntiers = 2;
	f->view.tiers[0] = (struct tierd_tier_view){ .capacity_bytes = 64 * PAGE, .free_bytes = 32 * PAGE,
						     .used_bytes = 32 * PAGE, .nnodes = 1, .target_node = 0 };
	f->view.tiers[1] = (struct tierd_tier_view){ .capacity_bytes = 1024 * PAGE,
						     .free_bytes = 900 * PAGE, .used_bytes = 32 * PAGE,
						     .nnodes = 1, .target_node = 1 };
	memset(f->view.node_tier, -1, sizeof(f->view.node_tier));
	f->view.node_tier[0] = 0;
	f->view.node_tier[1] = 1;
	/* Budget 64 pages: 32 used is 50%, below the 90% high watermark. */
	f->view.fast_budget_bytes = 64 * PAGE;
	f->view.high_wm = 0.9f;
	f->view.low_wm = 0.7f;
	f->view.max_move_bytes = 1024 * PAGE;
	f->view.nsegs = 1;
	f->view.migrate = 1;
	f->view.segs = &f->seg;
	f->view.window_bytes = 16 * PAGE;
	f->plan = (struct tierd_plan){ .promote = f->promote, .max_promote = NPAGES,
				       .demote = f->demote, .max_demote = NPAGES };
}

static void *open_policy(const char *window, const char *idle)
{
	char err[256];
	void *st;

	assert_int_equal(init_with("window_epochs", window, "idle_epochs", idle, &st, err, sizeof(err)), 0);
	return st;
}

/* What the host's validation would check, plus the policy's own promises. */
static void assert_plan_valid(const struct fixture *f, uint64_t window, uint64_t idle)
{
	const struct tierd_plan *pl = &f->plan;
	uint8_t seen[NPAGES] = { 0 };
	uint64_t moved = 0, promoted = 0;

	assert_true(pl->npromote <= pl->max_promote);
	assert_true(pl->ndemote <= pl->max_demote);
	for (size_t i = 0; i < pl->npromote; i++) {
		const struct tierd_move *m = &pl->promote[i];

		assert_int_equal(m->seg, 5);
		assert_true(m->page < NPAGES);
		assert_int_equal(seen[m->page]++, 0);
		assert_int_equal(f->view.node_tier[f->pages[m->page].node], 1);
		assert_true(f->view.epoch - f->pages[m->page].last_epoch < window);
		moved += PAGE;
		promoted += PAGE;
	}
	for (size_t i = 0; i < pl->ndemote; i++) {
		const struct tierd_move *m = &pl->demote[i];

		assert_int_equal(m->seg, 5);
		assert_true(m->page < NPAGES);
		assert_int_equal(seen[m->page]++, 0);
		assert_int_equal(f->view.node_tier[f->pages[m->page].node], 0);
		assert_true(f->view.epoch - f->pages[m->page].last_epoch >= idle);
		moved += PAGE;
	}
	assert_true(moved <= f->view.max_move_bytes);
	assert_true(promoted <= f->view.tiers[0].free_bytes);
}

static void test_promotes_recent(void **state)
{
	struct fixture f;
	void *st = open_policy("4", "8");

	(void)state;
	fixture_init(&f);
	assert_int_equal(ops->decide(st, &f.view, &f.plan), 0);
	assert_plan_valid(&f, 4, 8);
	/* Pages 32..35 were touched 0..3 epochs ago; 36 four ago is outside the window. */
	assert_int_equal(f.plan.npromote, 4);
	for (unsigned i = 0; i < 4; i++)
		assert_int_equal(f.plan.promote[i].page, 32 + i);
	assert_true(f.plan.promote[0].score > f.plan.promote[3].score);
	/* 50% of the budget: no demotion. */
	assert_int_equal(f.plan.ndemote, 0);
	ops->fini(st);
}

static void test_budgets(void **state)
{
	struct fixture f;
	void *st = open_policy("32", "32");

	(void)state;
	/* The byte budget: 3 pages for everything. */
	fixture_init(&f);
	f.view.max_move_bytes = 3 * PAGE + PAGE / 2;
	assert_int_equal(ops->decide(st, &f.view, &f.plan), 0);
	assert_plan_valid(&f, 32, 32);
	assert_int_equal(f.plan.npromote, 3);

	/* The count capacity. */
	fixture_init(&f);
	f.plan.max_promote = 2;
	assert_int_equal(ops->decide(st, &f.view, &f.plan), 0);
	assert_plan_valid(&f, 32, 32);
	assert_int_equal(f.plan.npromote, 2);
	assert_int_equal(f.plan.promote[0].page, 32);
	assert_int_equal(f.plan.promote[1].page, 33);

	/* The fast tier's free memory. */
	fixture_init(&f);
	f.view.tiers[0].free_bytes = 5 * PAGE;
	assert_int_equal(ops->decide(st, &f.view, &f.plan), 0);
	assert_plan_valid(&f, 32, 32);
	assert_int_equal(f.plan.npromote, 5);
	f.view.tiers[0].free_bytes = 0;
	assert_int_equal(ops->decide(st, &f.view, &f.plan), 0);
	assert_int_equal(f.plan.npromote, 0);

	/* The high watermark: 32 used + at most 25 more pages = 57.6 pages of a 64-page budget. */
	fixture_init(&f);
	assert_int_equal(ops->decide(st, &f.view, &f.plan), 0);
	assert_plan_valid(&f, 32, 32);
	assert_int_equal(f.plan.npromote, 25);

	/* No migration pass, no capacity, one tier: nothing. */
	fixture_init(&f);
	f.view.migrate = 0;
	assert_int_equal(ops->decide(st, &f.view, &f.plan), 0);
	assert_int_equal(f.plan.npromote + f.plan.ndemote, 0);
	fixture_init(&f);
	f.plan.max_promote = f.plan.max_demote = 0;
	assert_int_equal(ops->decide(st, &f.view, &f.plan), 0);
	assert_int_equal(f.plan.npromote + f.plan.ndemote, 0);
	fixture_init(&f);
	f.view.ntiers = 1;
	assert_int_equal(ops->decide(st, &f.view, &f.plan), 0);
	assert_int_equal(f.plan.npromote + f.plan.ndemote, 0);
	ops->fini(st);
}

static void test_demotes_idle(void **state)
{
	struct fixture f;
	void *st = open_policy("4", "8");

	(void)state;
	/* 32 pages used of a 34-page budget: 94% > 90%; demote down to 70% = 23.8 pages. */
	fixture_init(&f);
	f.view.fast_budget_bytes = 34 * PAGE;
	assert_int_equal(ops->decide(st, &f.view, &f.plan), 0);
	assert_plan_valid(&f, 4, 8);
	assert_int_equal(f.plan.ndemote, 9); /* 32 - 9 = 23 pages <= 23.8 */
	for (size_t i = 0; i < f.plan.ndemote; i++)
		assert_true(f.plan.demote[i].page < 16);
	/* The room the demotions make (up to 30.6 pages) is filled, within the free bytes. */
	assert_int_equal(f.plan.npromote, 4);

	/* Demotions share max_move_bytes with promotions and come first. */
	fixture_init(&f);
	f.view.fast_budget_bytes = 34 * PAGE;
	f.view.max_move_bytes = 6 * PAGE;
	assert_int_equal(ops->decide(st, &f.view, &f.plan), 0);
	assert_plan_valid(&f, 4, 8);
	assert_int_equal(f.plan.ndemote, 6);
	assert_int_equal(f.plan.npromote, 0);

	/* max_demote. */
	fixture_init(&f);
	f.view.fast_budget_bytes = 34 * PAGE;
	f.plan.max_demote = 2;
	assert_int_equal(ops->decide(st, &f.view, &f.plan), 0);
	assert_plan_valid(&f, 4, 8);
	assert_int_equal(f.plan.ndemote, 2);

	/* No slower tier can take pages: no demotion. */
	fixture_init(&f);
	f.view.fast_budget_bytes = 34 * PAGE;
	f.view.tiers[1].target_node = -1;
	assert_int_equal(ops->decide(st, &f.view, &f.plan), 0);
	assert_int_equal(f.plan.ndemote, 0);

	/* Idle pages that are moving or of unknown placement are left alone. */
	fixture_init(&f);
	f.view.fast_budget_bytes = 34 * PAGE;
	for (unsigned p = 0; p < 16; p++) {
		if (p % 2)
			f.pages[p].flags |= TIERD_PAGE_MOVING;
		else
			f.pages[p].node = -1;
	}
	assert_int_equal(ops->decide(st, &f.view, &f.plan), 0);
	assert_int_equal(f.plan.ndemote, 0);
	ops->fini(st);
}

static void test_deterministic(void **state)
{
	struct fixture f, g;
	void *st1 = open_policy("6", "10"), *st2 = open_policy("6", "10");

	(void)state;
	fixture_init(&f);
	fixture_init(&g);
	f.view.fast_budget_bytes = g.view.fast_budget_bytes = 34 * PAGE;
	/* Equal recency and accesses everywhere: only the tie-break orders them. */
	for (unsigned p = 32; p < NPAGES; p++) {
		f.pages[p].last_epoch = g.pages[p].last_epoch = EPOCH;
		f.pages[p].accesses = g.pages[p].accesses = 1;
	}
	assert_int_equal(ops->decide(st1, &f.view, &f.plan), 0);
	assert_int_equal(ops->decide(st2, &g.view, &g.plan), 0);
	assert_int_equal(f.plan.npromote, g.plan.npromote);
	assert_int_equal(f.plan.ndemote, g.plan.ndemote);
	assert_memory_equal(f.promote, g.promote, f.plan.npromote * sizeof(f.promote[0]));
	assert_memory_equal(f.demote, g.demote, f.plan.ndemote * sizeof(f.demote[0]));
	for (size_t i = 0; i < f.plan.npromote; i++)
		assert_int_equal(f.promote[i].page, 32 + i);
	/* Again on the same state: the same plan. */
	assert_int_equal(ops->decide(st1, &g.view, &g.plan), 0);
	assert_memory_equal(f.promote, g.promote, f.plan.npromote * sizeof(f.promote[0]));
	ops->fini(st1);
	ops->fini(st2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ops),
		cmocka_unit_test(test_init_params),
		cmocka_unit_test(test_promotes_recent),
		cmocka_unit_test(test_budgets),
		cmocka_unit_test(test_demotes_idle),
		cmocka_unit_test(test_deterministic),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
