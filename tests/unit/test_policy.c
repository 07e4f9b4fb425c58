/* SPDX-License-Identifier: MIT */
/*
 * The policy host (policy/host.c): ABI version and size rules, plan validation against hostile
 * plans, the crash and time guard, module loading and its refusals (real dlopen of fixture
 * modules from tests/policy/, in directories with the ownership and modes under test), and
 * deterministic decision logs.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "host.h"

static const char *build_dir(void)
{
	const char *b = getenv("BUILD");

	return b && *b ? b : "build";
}

/* ---- a small world: two segments, two tiers (node 0 fast, node 1 slow) --------------------- */

#define NPAGES 64

struct world {
	struct tierd_page pages[2][NPAGES];
	struct tierd_region regions[2][1];
	struct tierd_seg_view segs[2];
	struct tierd_view v;
	struct tierd_move promote[16], demote[16];
	struct tierd_window windows[8];
	struct tierd_plan plan;
};

static void world_init(struct world *w)
{
	memset(w, 0, sizeof(*w));
	for (int s = 0; s < 2; s++) {
		for (int p = 0; p < NPAGES; p++)
			w->pages[s][p] = (struct tierd_page){ .node = (int16_t)(p < NPAGES / 2 ? 0 : 1) };
		w->regions[s][0] = (struct tierd_region){ .start = 0, .end = NPAGES, .score = 0.5f };
		w->segs[s] = (struct tierd_seg_view){ .id = 10 + (uint32_t)s, .page_size = 4096,
						      .npages = NPAGES, .pages = w->pages[s],
						      .regions = w->regions[s], .nregions = 1 };
	}
	w->v = (struct tierd_view){ .size = sizeof(w->v), .epoch = 7, .ntiers = 2, .nsegs = 2,
				    .segs = w->segs, .migrate = 1, .max_move_bytes = 8 * 4096,
				    .fast_budget_bytes = 1 << 20, .high_wm = 0.95f, .low_wm = 0.85f,
				    .window_bytes = 4 * 4096 };
	memset(w->v.node_tier, -1, sizeof(w->v.node_tier));
	w->v.node_tier[0] = 0;
	w->v.node_tier[1] = 1;
	w->plan = (struct tierd_plan){ .promote = w->promote, .max_promote = 16, .demote = w->demote,
				       .max_demote = 16, .windows = w->windows, .max_windows = 8 };
}

static int validate(struct world *w, bool windows, char *why)
{
	return policy_validate(&w->v, &w->plan, windows, why, 256);
}

static void expect_invalid(struct world *w, bool windows, const char *needle)
{
	char why[256] = "";

	assert_int_equal(validate(w, windows, why), -EPROTO);
	if (!strstr(why, needle))
		fail_msg("reason \"%s\" lacks \"%s\"", why, needle);
}

static void test_validate(void **state)
{
	struct world w;
	char why[256];

	(void)state;
	world_init(&w);
	/* A good plan: promote slow pages, demote fast ones, within every bound. */
	w.promote[0] = (struct tierd_move){ .seg = 10, .page = 40 };
	w.promote[1] = (struct tierd_move){ .seg = 11, .page = 40 };
	w.demote[0] = (struct tierd_move){ .seg = 10, .page = 3 };
	w.plan.npromote = 2;
	w.plan.ndemote = 1;
	if (validate(&w, false, why) < 0)
		fail_msg("a good plan refused: %s", why);

	w.promote[1].seg = 99;
	expect_invalid(&w, false, "segment 99, which does not exist");
	w.promote[1] = (struct tierd_move){ .seg = 11, .page = NPAGES };
	expect_invalid(&w, false, "which has 64 pages");
	w.promote[1] = (struct tierd_move){ .seg = 11, .page = 2 };
	expect_invalid(&w, false, "on the fast tier already");
	w.promote[1] = (struct tierd_move){ .seg = 10, .page = 40 };
	expect_invalid(&w, false, "appears in the plan twice");
	w.promote[1] = (struct tierd_move){ .seg = 11, .page = 41 };
	w.demote[0].page = 50;
	expect_invalid(&w, false, "not on the fast tier");
	w.demote[0].page = 3;
	w.pages[0][3].node = -1;
	expect_invalid(&w, false, "is not known");
	w.pages[0][3].node = 0;
	w.pages[0][3].node = 5; /* a node that is no memory tier */
	expect_invalid(&w, false, "is not known");
	w.pages[0][3].node = 0;
	assert_int_equal(validate(&w, false, why), 0);

	w.v.max_move_bytes = 2 * 4096;
	expect_invalid(&w, false, "this pass allows 8192");
	w.v.max_move_bytes = 8 * 4096;
	w.plan.max_promote = 1;
	expect_invalid(&w, false, "at most 1 and 16");
	w.plan.max_promote = 16;
	w.v.migrate = 0;
	expect_invalid(&w, false, "outside a migration pass");
	w.v.migrate = 1;

	/* Windows: only from a policy that picks them, inside, apart, and not too big. */
	w.plan.npromote = w.plan.ndemote = 0;
	w.windows[0] = (struct tierd_window){ .seg = 10, .start = 0, .npages = 4 };
	w.windows[1] = (struct tierd_window){ .seg = 11, .start = 2, .npages = 4 };
	w.plan.nwindows = 2;
	expect_invalid(&w, false, "does not pick them");
	assert_int_equal(validate(&w, true, why), 0);
	w.windows[1] = (struct tierd_window){ .seg = 10, .start = 2, .npages = 4 };
	expect_invalid(&w, true, "windows overlap in segment 10");
	w.windows[1] = (struct tierd_window){ .seg = 11, .start = 62, .npages = 4 };
	expect_invalid(&w, true, "outside segment 11");
	w.windows[1] = (struct tierd_window){ .seg = 11, .start = 0, .npages = 5 };
	expect_invalid(&w, true, "windows are at most 16384 bytes");
	w.windows[1] = (struct tierd_window){ .seg = 11, .start = 0, .npages = 0 };
	expect_invalid(&w, true, "outside");
	w.plan.max_windows = 1;
	expect_invalid(&w, true, "at most 1 were allowed");
}

/* ---- ABI rules --------------------------------------------------------------------------------- */

static int ok_init(void **state, const struct tierd_policy_env *env,
		   const struct tierd_policy_param *params, size_t n, char *err, size_t errlen)
{
	(void)env, (void)params, (void)err, (void)errlen;
	*state = NULL;
	return n ? -EINVAL : 0;
}

static int ok_decide(void *state, const struct tierd_view *v, struct tierd_plan *plan)
{
	(void)state, (void)v, (void)plan;
	return 0;
}

static void test_abi_versions(void **state)
{
	struct tierd_policy_ops ops = { .abi_version = TIERD_POLICY_ABI_VERSION,
					.size = sizeof(ops), .name = "t", .init = ok_init,
					.decide = ok_decide, .picks_windows = 1 };
	struct tierd_policy_ops out;
	char why[256];
	union {
		struct tierd_policy_ops ops;
		uint8_t raw[sizeof(struct tierd_policy_ops) + 64];
	} older;

	(void)state;
	assert_int_equal(policy_check_ops(&ops, &out, why, sizeof(why)), 0);
	assert_int_equal(out.picks_windows, 1);

	/* A module newer than this tierd is refused, naming both versions. */
	ops.abi_version = TIERD_POLICY_ABI_VERSION + 1;
	assert_int_equal(policy_check_ops(&ops, &out, why, sizeof(why)), -EPROTO);
	assert_non_null(strstr(why, "built for policy ABI 2"));
	assert_non_null(strstr(why, "supports ABI 1 at most"));
	ops.abi_version = 0;
	assert_int_equal(policy_check_ops(&ops, &out, why, sizeof(why)), -EPROTO);
	ops.abi_version = TIERD_POLICY_ABI_VERSION;

	/* An older (shorter) module: what lies past its size is not read, and counts as NULL/0. */
	memset(&older, 0xff, sizeof(older));
	memcpy(&older.ops, &ops, offsetof(struct tierd_policy_ops, picks_windows));
	older.ops.size = offsetof(struct tierd_policy_ops, picks_windows);
	assert_int_equal(policy_check_ops(&older.ops, &out, why, sizeof(why)), 0);
	assert_int_equal(out.picks_windows, 0);
	assert_int_equal(out.size, sizeof(struct tierd_policy_ops));

	/* Too short for version 1, or lacking what version 1 requires. */
	older.ops.size = offsetof(struct tierd_policy_ops, decide);
	assert_int_equal(policy_check_ops(&older.ops, &out, why, sizeof(why)), -EPROTO);
	ops.decide = NULL;
	assert_int_equal(policy_check_ops(&ops, &out, why, sizeof(why)), -EINVAL);
	assert_non_null(strstr(why, "lacks decide()"));
}

/* ---- the guard --------------------------------------------------------------------------------- */

static int mode; /* 0 fine, 1 crash, 2 loop, 3 error, 4 invalid plan */
static int fini_calls;

static void m_fini(void *state)
{
	(void)state;
	fini_calls++;
}

/* Mode 1 faults on purpose, for the host's guard to catch: UBSan (SANITIZE=1) must let the load
 * happen instead of stopping the test at it. */
__attribute__((no_sanitize("null")))
static int m_decide(void *state, const struct tierd_view *v, struct tierd_plan *plan)
{
	volatile int *volatile null = NULL;

	(void)state;
	switch (mode) {
	case 1:
		return *null;
	case 2:
		for (;;)
			__asm__ volatile("" ::: "memory");
	case 3:
		return -EIO;
	case 4:
		plan->promote[0] = (struct tierd_move){ .seg = v->segs[0].id, .page = 1 }; /* fast */
		plan->npromote = 1;
		return 0;
	}
	return 0;
}

static const struct tierd_policy_ops moody = { .abi_version = TIERD_POLICY_ABI_VERSION,
					       .size = sizeof(struct tierd_policy_ops),
					       .name = "moody", .init = ok_init, .fini = m_fini,
					       .decide = m_decide };

static int run_mode(int m, unsigned guard_ms, char *reason, size_t len)
{
	struct policy *p;
	struct world w;
	char why[256];
	int r;

	world_init(&w);
	mode = m;
	assert_int_equal(policy_open_ops(&moody, NULL, 0, NULL, &p, why, sizeof(why)), 0);
	policy_set_guard_ms(p, guard_ms);
	r = policy_decide(p, &w.v, &w.plan);
	snprintf(reason, len, "%s", policy_disabled(p) ? policy_disabled(p) : "");
	if (r < 0) {
		/* Disabled for good: never called again, and its plan is empty. */
		assert_int_equal(w.plan.npromote + w.plan.ndemote + w.plan.nwindows, 0);
		mode = 0;
		assert_int_equal(policy_decide(p, &w.v, &w.plan), -ECANCELED);
	}
	policy_close(p);
	return r;
}

static void test_guard(void **state)
{
	char reason[256];

	(void)state;
	fini_calls = 0;
	assert_int_equal(run_mode(0, 2000, reason, sizeof(reason)), 0);
	assert_string_equal(reason, "");
	assert_int_equal(fini_calls, 1);

	/* A crash is caught; the crashed policy's fini is not called (its state may be torn). */
	assert_int_equal(run_mode(1, 2000, reason, sizeof(reason)), -EFAULT);
	assert_non_null(strstr(reason, "decide() crashed with SIGSEGV"));
	assert_int_equal(fini_calls, 1);

	assert_int_equal(run_mode(2, 100, reason, sizeof(reason)), -ETIME);
	assert_non_null(strstr(reason, "decide() ran longer than 100 ms"));

	assert_int_equal(run_mode(3, 2000, reason, sizeof(reason)), -EIO);
	assert_non_null(strstr(reason, "decide() failed"));
	assert_int_equal(fini_calls, 2); /* an error is not a crash: fini runs */

	assert_int_equal(run_mode(4, 2000, reason, sizeof(reason)), -EPROTO);
	assert_non_null(strstr(reason, "invalid plan at epoch 7: promotion of segment 10 page 1"));
}

/* After a guarded crash, the host's own faults still reach the handler that was there before the
 * guard (the sanitizer's, or the default): here a test handler. Runs first, before any other test
 * installs the guard. */
static sigjmp_buf own_jmp;
static void own_segv(int sig)
{
	(void)sig;
	siglongjmp(own_jmp, 1);
}

/* Faults on purpose too (no UBSan stop, as in m_decide). */
__attribute__((no_sanitize("null")))
static void test_guard_passes_host_faults_on(void **state)
{
	struct sigaction sa = { .sa_handler = own_segv }, old;
	char reason[256];
	volatile int *volatile null = NULL;
	volatile int caught = 0;

	(void)state;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGSEGV, &sa, &old);
	/* The guard installs itself on the first call and keeps our handler as the previous one. */
	assert_int_equal(run_mode(1, 2000, reason, sizeof(reason)), -EFAULT);
	if (sigsetjmp(own_jmp, 1) == 0)
		(void)*null;
	else
		caught = 1;
	sigaction(SIGSEGV, &old, NULL);
	assert_true(caught);
}

/* ---- modules ------------------------------------------------------------------------------- */

static char moddir[64];

static void copy_file(const char *from, const char *to, mode_t mode_bits)
{
	char buf[65536];
	int in = open(from, O_RDONLY | O_CLOEXEC), out;
	ssize_t n;

	if (in < 0)
		fail_msg("%s: %s (built by make)", from, strerror(errno));
	out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode_bits);
	assert_true(out >= 0);
	while ((n = read(in, buf, sizeof(buf))) > 0)
		assert_int_equal(write(out, buf, (size_t)n), n);
	close(in);
	assert_int_equal(fchmod(out, mode_bits), 0);
	close(out);
}

static int open_module(const char *name, const char *dir, const char *param, struct policy **p,
		       char *why)
{
	struct tierd_policy_param kv = { "mode", param };

	return policy_open(name, dir, param ? &kv : NULL, param ? 1 : 0, NULL, p, why, 256);
}

static int setup_moddir(void **state)
{
	char from[512], to[128];

	(void)state;
	if (geteuid() != 0)
		return 0;
	/* Under /run: root-owned 0755 all the way up, unlike /tmp (world-writable). */
	snprintf(moddir, sizeof(moddir), "/run/tierd-policy-test.XXXXXX");
	if (!mkdtemp(moddir))
		return -1;
	chmod(moddir, 0755);
	for (const char *const *n = (const char *const[]){ "hostile", "nosym", "newabi", NULL }; *n; n++) {
		snprintf(from, sizeof(from), "%s/tests/policy/%s.so", build_dir(), *n);
		snprintf(to, sizeof(to), "%s/%s.so", moddir, *n);
		copy_file(from, to, 0644);
	}
	return 0;
}

static int teardown_moddir(void **state)
{
	char cmd[128];

	(void)state;
	if (moddir[0]) {
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", moddir);
		if (system(cmd) != 0)
			return -1;
	}
	return 0;
}

static void test_module_load_and_refusals(void **state)
{
	char why[256], path[600], tmpdir[64];
	struct policy *p;
	struct world w;

	(void)state;
	if (geteuid() != 0)
		skip(); /* ownership rules need root to set up */
	if (open_module("hostile", moddir, NULL, &p, why) < 0)
		fail_msg("loading hostile.so from %s: %s", moddir, why);
	assert_string_equal(policy_name(p), "hostile");
	world_init(&w);
	assert_int_equal(policy_decide(p, &w.v, &w.plan), 0);
	policy_close(p);

	/* Parameters reach init(), and its refusal comes back with its reason. */
	assert_int_equal(policy_open("hostile", moddir, &(struct tierd_policy_param){ "bogus", "1" }, 1,
				     NULL, &p, why, sizeof(why)),
			 -EINVAL);
	assert_non_null(strstr(why, "unknown parameter \"bogus\""));

	assert_int_equal(open_module("nosym", moddir, NULL, &p, why), -ENOEXEC);
	assert_non_null(strstr(why, "does not export the symbol tierd_policy"));
	assert_int_equal(open_module("newabi", moddir, NULL, &p, why), -EPROTO);
	assert_non_null(strstr(why, "built for policy ABI 2, but this tierd supports ABI 1"));
	assert_int_equal(open_module("absent", moddir, NULL, &p, why), -ENOENT);

	/* A module file others may write to. */
	snprintf(path, sizeof(path), "%s/hostile.so", moddir);
	chmod(path, 0664);
	assert_int_equal(open_module("hostile", moddir, NULL, &p, why), -EPERM);
	assert_non_null(strstr(why, "writable by its group"));
	chmod(path, 0644);
	assert_int_equal(chown(path, 65534, 65534), 0);
	assert_int_equal(open_module("hostile", moddir, NULL, &p, why), -EPERM);
	assert_non_null(strstr(why, "is owned by uid 65534, not root"));
	assert_int_equal(chown(path, 0, 0), 0);

	/* A directory others may write to, itself or above it. */
	chmod(moddir, 0777);
	assert_int_equal(open_module("hostile", moddir, NULL, &p, why), -EPERM);
	assert_non_null(strstr(why, "writable by everyone"));
	chmod(moddir, 0755);
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/tierd-policy-test.XXXXXX");
	assert_non_null(mkdtemp(tmpdir));
	chmod(tmpdir, 0755);
	snprintf(path, sizeof(path), "%s/hostile.so", tmpdir);
	{
		char from[512];

		snprintf(from, sizeof(from), "%s/tests/policy/hostile.so", build_dir());
		copy_file(from, path, 0644);
	}
	assert_int_equal(open_module(path, tmpdir, NULL, &p, why), -EPERM);
	assert_non_null(strstr(why, "/tmp is writable by everyone"));
	unlink(path);
	rmdir(tmpdir);

	/* Without a module directory (tierd-sim, tests) any path loads: the user's own code. */
	snprintf(path, sizeof(path), "%s/tests/policy/hostile.so", build_dir());
	if (path[0] != '/') {
		char cwd[256];

		assert_non_null(getcwd(cwd, sizeof(cwd)));
		snprintf(path, sizeof(path), "%s/%s/tests/policy/hostile.so", cwd, build_dir());
	}
	assert_int_equal(open_module(path, NULL, NULL, &p, why), 0);
	policy_close(p);
}

static void test_module_misbehaving(void **state)
{
	static const struct {
		const char *mode;
		int err;
		const char *reason;
	} cases[] = {
		{ "crash", -EFAULT, "decide() crashed with SIGSEGV" },
		{ "loop", -ETIME, "decide() ran longer than 100 ms" },
		{ "error", -EIO, "decide() failed" },
		{ "dup", -EPROTO, "appears in the plan twice" },
		{ "foreign", -EPROTO, "segment 57005, which does not exist" },
	};
	char why[256];

	(void)state;
	if (geteuid() != 0)
		skip();
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct policy *p;
		struct world w;

		world_init(&w);
		for (int s = 0; s < 2; s++) /* the dup case promotes page 0: put it on the slow node */
			w.pages[s][0].node = 1;
		if (open_module("hostile", moddir, cases[i].mode, &p, why) < 0)
			fail_msg("loading hostile.so (mode=%s): %s", cases[i].mode, why);
		policy_set_guard_ms(p, 100);
		assert_int_equal(policy_decide(p, &w.v, &w.plan), cases[i].err);
		assert_non_null(policy_disabled(p));
		if (!strstr(policy_disabled(p), cases[i].reason))
			fail_msg("%s: \"%s\" lacks \"%s\"", cases[i].mode, policy_disabled(p),
				 cases[i].reason);
		policy_close(p);
	}
}

/* ---- built-ins and the decision log -------------------------------------------------------- */

static void test_builtins(void **state)
{
	struct policy *p;
	char why[256];

	(void)state;
	assert_non_null(policy_builtin("hotness"));
	assert_non_null(policy_builtin("none"));
	assert_null(policy_builtin("nonesuch"));
	assert_int_equal(policy_open("nonesuch", NULL, NULL, 0, NULL, &p, why, sizeof(why)), -ENOENT);
	assert_non_null(strstr(why, "built-ins: hotness"));
	assert_int_equal(policy_open("none", NULL, &(struct tierd_policy_param){ "k", "v" }, 1, NULL, &p,
				     why, sizeof(why)),
			 -EINVAL);
	assert_non_null(strstr(why, "none takes no parameters"));
}

/* Two instances of a policy, the same inputs: byte-identical decision logs. */
static void test_decision_log_deterministic(void **state)
{
	char *text[2];
	size_t len[2];

	(void)state;
	for (int k = 0; k < 2; k++) {
		FILE *f = open_memstream(&text[k], &len[k]);
		struct policy *p;
		struct world w;
		char why[256];

		assert_int_equal(policy_open("hotness", NULL, NULL, 0, NULL, &p, why, sizeof(why)), 0);
		policy_set_decision_log(p, f);
		world_init(&w);
		/* Fast tier over its budget, hot pages waiting on the slow one. */
		w.v.fast_budget_bytes = 16 * 4096;
		w.v.tiers[0] = (struct tierd_tier_view){ .used_bytes = 64 * 4096, .free_bytes = 1 << 20 };
		for (uint32_t e = 1; e <= 3; e++) {
			w.v.epoch = e;
			w.plan.max_promote = w.plan.max_demote = 16;
			assert_int_equal(policy_decide(p, &w.v, &w.plan), 0);
		}
		policy_close(p);
		fclose(f);
	}
	assert_int_equal(len[0], len[1]);
	assert_memory_equal(text[0], text[1], len[0]);
	assert_non_null(strstr(text[0], "epoch 1 policy hotness migrate 1 promote "));
	assert_non_null(strstr(text[0], "\n- 1"));
	free(text[0]);
	free(text[1]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_validate),
		cmocka_unit_test(test_abi_versions),
		cmocka_unit_test(test_guard_passes_host_faults_on),
		cmocka_unit_test(test_guard),
		cmocka_unit_test(test_module_load_and_refusals),
		cmocka_unit_test(test_module_misbehaving),
		cmocka_unit_test(test_builtins),
		cmocka_unit_test(test_decision_log_deterministic),
	};

	return cmocka_run_group_tests(tests, setup_moddir, teardown_moddir);
}
