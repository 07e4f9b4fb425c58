/* SPDX-License-Identifier: MIT */
/*
 * The simulator (policy/sim.c, tools/tierd-sim.c): every built-in on every synthetic trace, with
 * bounds against the hindsight optimum and the no-migration baseline; the scan must not evict the
 * hot set; none equals no-migration; two runs give identical decision logs and JSON; a written
 * trace replays to the generator's result; a hand-made SAMPLED trace replays with the recorded
 * views; the CLI's outputs.
 *
 * Sizes: 1024 pages of 4 KiB, a fast tier of a quarter of them, 2500 accesses an epoch, so a run
 * of 1000 epochs takes a fraction of a second (a few under ASan) and the policies have time to
 * learn: tierd's sampler sees 256 pages an epoch.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "sim.h"

enum { OPT, NOMIG, HOT, LRU, NONE, NRES };

static const char *build_dir(void)
{
	const char *b = getenv("BUILD");

	return b && *b ? b : "build";
}

static void gen_config(struct sim_gen_config *g, enum sim_gen_kind kind, uint64_t epochs, uint64_t seed)
{
	sim_gen_defaults(g, kind);
	g->pages = 1024;
	g->epoch_events = 2500;
	g->events = epochs * g->epoch_events;
	g->seed = seed;
}

static void model_config(struct sim_config *c, const struct sim_gen_config *g)
{
	sim_config_defaults(c);
	c->fast_bytes = g->pages / 4 * g->page_size;
	c->seed = g->seed;
}

static void run_all(enum sim_gen_kind kind, uint64_t epochs, uint64_t seed, struct sim_result res[NRES])
{
	static const char *const pols[] = { [HOT] = "hotness", [LRU] = "lru", [NONE] = "none" };
	struct sim_gen_config g;
	struct sim_config c;
	struct sim_source *src;
	char why[256];

	gen_config(&g, kind, epochs, seed);
	model_config(&c, &g);
	if (sim_source_gen(&g, &src, why, sizeof(why)) < 0)
		fail_msg("generator: %s", why);
	if (sim_run_baselines(src, &c, &res[OPT], &res[NOMIG], NULL, why, sizeof(why)) < 0)
		fail_msg("baselines: %s", why);
	for (int i = HOT; i < NRES; i++) {
		if (sim_run_policy(src, pols[i], NULL, 0, &c, &res[i], why, sizeof(why)) < 0)
			fail_msg("%s: %s", pols[i], why);
		if (res[i].disabled[0])
			fail_msg("%s was disabled: %s", pols[i], res[i].disabled);
		assert_int_equal(res[i].accesses, res[OPT].accesses);
	}
	sim_source_free(src);
	print_message("  %s: optimum %.4f no-migration %.4f hotness %.4f (%.3f) lru %.4f (%.3f) none %.4f\n",
		      sim_gen_kind_name(kind), res[OPT].hit_ratio, res[NOMIG].hit_ratio, res[HOT].hit_ratio,
		      res[HOT].hit_ratio / res[OPT].hit_ratio, res[LRU].hit_ratio,
		      res[LRU].hit_ratio / res[OPT].hit_ratio, res[NONE].hit_ratio);
}

static void free_all(struct sim_result res[NRES])
{
	for (int i = 0; i < NRES; i++)
		sim_result_free(&res[i]);
}

/* What holds on every trace. */
static void common_bounds(const struct sim_result res[NRES])
{
	/* The optimum is an upper bound, of everything. */
	for (int i = NOMIG; i < NRES; i++)
		assert_true(res[i].hit_ratio <= res[OPT].hit_ratio);
	/* none is exactly no migration. */
	assert_int_equal(res[NONE].fast_hits, res[NOMIG].fast_hits);
	assert_int_equal(res[NONE].bytes_migrated, 0);
	assert_true(res[NONE].mean_access_ns == res[NOMIG].mean_access_ns);
	/* hotness pays for its moves and still wins on time. */
	assert_true(res[HOT].bytes_migrated > 0);
	assert_true(res[HOT].mean_access_ns < res[NOMIG].mean_access_ns);
	assert_int_equal(res[HOT].pages_promoted * 4096 + res[HOT].pages_demoted * 4096,
			 res[HOT].bytes_migrated);
	/* One series point per epoch. */
	assert_int_equal(res[HOT].nseries, res[OPT].nseries);
	assert_int_equal(res[HOT].epochs, res[OPT].epochs);
}

static void test_zipf(void **state)
{
	struct sim_result res[NRES];

	(void)state;
	run_all(SIM_GEN_ZIPF, 1000, 1, res);
	common_bounds(res);
	assert_true(res[HOT].hit_ratio >= 0.9 * res[OPT].hit_ratio);
	/* lru learns little from one fault an epoch per sampled page, but must not lose. */
	assert_true(res[LRU].hit_ratio >= res[NOMIG].hit_ratio);
	free_all(res);
}

static void test_shift(void **state)
{
	struct sim_result res[NRES];

	(void)state;
	run_all(SIM_GEN_SHIFT, 1000, 1, res);
	common_bounds(res);
	assert_true(res[HOT].hit_ratio >= 0.9 * res[OPT].hit_ratio);
	assert_true(res[LRU].hit_ratio >= res[NOMIG].hit_ratio + 0.2);
	free_all(res);
}

static void test_scan(void **state)
{
	struct sim_result res[NRES];

	(void)state;
	run_all(SIM_GEN_SCAN, 600, 1, res);
	common_bounds(res);
	assert_true(res[HOT].hit_ratio >= 0.9 * res[OPT].hit_ratio);
	/* The sweeps (every 50 epochs, over every page) never push the hot set out: measured every
	 * pass from the first sweep on. No-migration keeps first touch's share. */
	assert_true(res[HOT].hot_on_fast_min >= 0.9);
	assert_true(res[HOT].hot_on_fast_end >= 0.95);
	assert_true(res[NOMIG].hot_on_fast_min < 0.9);
	assert_true(res[LRU].hot_on_fast_end >= 0.9);
	assert_true(res[LRU].hit_ratio >= res[NOMIG].hit_ratio + 0.2);
	free_all(res);
}

static void test_mix(void **state)
{
	struct sim_result res[NRES];

	(void)state;
	run_all(SIM_GEN_MIX, 600, 2, res);
	common_bounds(res);
	assert_true(res[HOT].hit_ratio >= 0.75 * res[OPT].hit_ratio);
	assert_true(res[HOT].hit_ratio >= res[NOMIG].hit_ratio + 0.3);
	assert_true(res[LRU].hit_ratio >= res[NOMIG].hit_ratio);
	free_all(res);
}

/* Three tiers: first touch fills the fast, then the middle tier; demotions go to the middle tier
 * while it has room. */
static void test_three_tiers(void **state)
{
	struct sim_gen_config g;
	struct sim_config c;
	struct sim_source *src;
	struct sim_result o, n, h;
	char why[256];

	(void)state;
	gen_config(&g, SIM_GEN_SHIFT, 400, 3);
	model_config(&c, &g);
	c.ntiers = 3;
	c.mid_bytes = g.pages / 4 * g.page_size;
	assert_int_equal(sim_source_gen(&g, &src, why, sizeof(why)), 0);
	assert_int_equal(sim_run_baselines(src, &c, &o, &n, NULL, why, sizeof(why)), 0);
	assert_int_equal(sim_run_policy(src, "hotness", NULL, 0, &c, &h, why, sizeof(why)), 0);
	assert_string_equal(h.disabled, "");
	/* Half the pages are on the slowest tier: no-migration's time is above the two-tier mean. */
	assert_true(n.mean_access_ns > c.lat_ns[1]);
	assert_true(h.hit_ratio >= 0.85 * o.hit_ratio);
	assert_true(h.mean_access_ns < n.mean_access_ns);
	assert_true(h.pages_demoted > 0);
	sim_result_free(&o);
	sim_result_free(&n);
	sim_result_free(&h);
	sim_source_free(src);
}

/* Runs `policy` with a decision log into memory. */
static char *decision_log(struct sim_source *src, const struct sim_config *base, const char *policy,
			  size_t *len, struct sim_result *res)
{
	struct sim_config c = *base;
	char *text, why[256];
	FILE *f = open_memstream(&text, len);

	assert_non_null(f);
	c.decision_log = f;
	if (sim_run_policy(src, policy, NULL, 0, &c, res, why, sizeof(why)) < 0)
		fail_msg("%s: %s", policy, why);
	fclose(f);
	return text;
}

static void test_determinism(void **state)
{
	static const char *const pols[] = { "hotness", "lru" };
	struct sim_gen_config g;
	struct sim_config c;
	struct sim_source *src;
	char why[256];

	(void)state;
	gen_config(&g, SIM_GEN_MIX, 200, 9);
	model_config(&c, &g);
	assert_int_equal(sim_source_gen(&g, &src, why, sizeof(why)), 0);
	for (size_t i = 0; i < 2; i++) {
		struct sim_result a, b;
		size_t la, lb;
		char *x = decision_log(src, &c, pols[i], &la, &a), *y = decision_log(src, &c, pols[i], &lb, &b);

		assert_int_equal(la, lb);
		assert_memory_equal(x, y, la);
		assert_non_null(strstr(x, "epoch 5 policy "));
		assert_non_null(strstr(x, "\n+ 1 ")); /* it moved pages */
		assert_int_equal(a.fast_hits, b.fast_hits);
		assert_int_equal(a.bytes_migrated, b.bytes_migrated);
		free(x);
		free(y);
		sim_result_free(&a);
		sim_result_free(&b);
	}
	sim_source_free(src);
}

static void test_trace_roundtrip(void **state)
{
	struct sim_gen_config g;
	struct sim_config c;
	struct sim_source *gen, *file;
	struct sim_result r[2], o[2], n[2];
	char path[] = "/tmp/test_sim.XXXXXX", why[256];
	int fd = mkstemp(path);

	(void)state;
	assert_true(fd >= 0);
	close(fd);
	gen_config(&g, SIM_GEN_SCAN, 160, 4);
	model_config(&c, &g);
	assert_int_equal(sim_source_gen(&g, &gen, why, sizeof(why)), 0);
	if (sim_source_write(gen, path, why, sizeof(why)) < 0)
		fail_msg("write: %s", why);
	if (sim_source_trace(path, &file, why, sizeof(why)) < 0)
		fail_msg("read: %s", why);
	assert_int_equal(sim_source_header(file)->flavour, TRACE_FULL);
	assert_string_equal(sim_source_header(file)->source, "tierd-sim scan");
	for (int i = 0; i < 2; i++) {
		struct sim_source *s = i ? file : gen;

		assert_int_equal(sim_run_baselines(s, &c, &o[i], &n[i], NULL, why, sizeof(why)), 0);
		assert_int_equal(sim_run_policy(s, "hotness", NULL, 0, &c, &r[i], why, sizeof(why)), 0);
	}
	assert_int_equal(r[0].accesses, g.events);
	assert_int_equal(r[0].fast_hits, r[1].fast_hits);
	assert_int_equal(r[0].bytes_migrated, r[1].bytes_migrated);
	assert_true(r[0].mean_access_ns == r[1].mean_access_ns);
	assert_int_equal(o[0].fast_hits, o[1].fast_hits);
	assert_int_equal(n[0].fast_hits, n[1].fast_hits);
	for (int i = 0; i < 2; i++) {
		sim_result_free(&r[i]);
		sim_result_free(&o[i]);
		sim_result_free(&n[i]);
	}
	sim_source_free(gen);
	sim_source_free(file);
	unlink(path);
}

static void put(struct trace_writer *w, struct trace_rec r)
{
	assert_int_equal(trace_write(w, &r), 0);
}

static uint64_t float_bits(float f)
{
	uint32_t u;

	memcpy(&u, &f, sizeof(u));
	return u;
}

/*
 * A SAMPLED trace as tierd records it: one segment of 64 pages, pages 0-15 on node 0 (fast),
 * the rest on node 1; per epoch faults on pages 40-47, their window closed, their region hot;
 * migration passes every 5th epoch. Replayed, the policy sees those views and moves what it
 * would; the hit ratio is the recorded system's (the events' pages are on node 1: none is fast
 * until the trace says a page moved).
 */
static void write_sampled(const char *path)
{
	struct trace_header h = { .flavour = TRACE_SAMPLED, .seed = 5, .epoch_ms = 100, .page_size = 4096,
				  .first_epoch = 1 };
	struct trace_writer *w;

	snprintf(h.source, sizeof(h.source), "tierd test");
	assert_int_equal(trace_writer_open(path, &h, 0, true, &w), 0);
	put(w, (struct trace_rec){ .type = TREC_SEG, .u32 = 3, .a = 64, .b = 4096, .u8 = TIERD_SEGV_SHMEM });
	for (uint32_t e = 1; e <= 20; e++) {
		for (uint64_t p = 40; p < 48; p++)
			put(w, (struct trace_rec){ .type = TREC_EVENT, .a = e * 100000000ull, .b = p, .u32 = 3,
						   .u16 = 1, .u8 = TIERD_EV_FAULT });
		/* One event on a fast page: a hit. */
		put(w, (struct trace_rec){ .type = TREC_EVENT, .a = e * 100000000ull, .b = 2, .u32 = 3,
					   .u16 = 1, .u8 = TIERD_EV_FAULT });
		put(w, (struct trace_rec){ .type = TREC_EPOCH, .u32 = e + 1, .a = e * 100000000ull,
					   .b = 1 << 20, .c = 16 * 4096, .u8 = (e + 1) % 5 == 0, .u16 = 2 });
		put(w, (struct trace_rec){ .type = TREC_TIER, .u8 = 0, .a = 16 * 4096, .b = 4096, .c = 16 * 4096,
					   .u16 = 1, .u32 = 0 });
		put(w, (struct trace_rec){ .type = TREC_TIER, .u8 = 1, .a = 1 << 30, .b = 1 << 29,
					   .c = 48 * 4096, .u16 = 1, .u32 = 1 });
		put(w, (struct trace_rec){ .type = TREC_NODE_TIER, .u8 = 0, .u16 = 0 });
		put(w, (struct trace_rec){ .type = TREC_NODE_TIER, .u8 = 1, .u16 = 1 });
		if (e == 1) {
			put(w, (struct trace_rec){ .type = TREC_NODES, .u32 = 3, .a = 0, .b = 16, .c = 0 });
			put(w, (struct trace_rec){ .type = TREC_NODES, .u32 = 3, .a = 16, .b = 48, .c = 1 });
		}
		put(w, (struct trace_rec){ .type = TREC_REGIONS_BEGIN, .u32 = 3, .a = 2 });
		put(w, (struct trace_rec){ .type = TREC_REGION, .u32 = 3, .a = 0, .b = 32, .u16 = (uint16_t)e,
					   .c = float_bits(0.05f) | float_bits(0.05f) << 32 });
		put(w, (struct trace_rec){ .type = TREC_REGION, .u32 = 3, .a = 32, .b = 64, .u16 = (uint16_t)e,
					   .c = float_bits(0.3f) | float_bits(0.3f) << 32 });
		put(w, (struct trace_rec){ .type = TREC_CLOSED, .u32 = 3, .a = 40, .b = 8 });
		put(w, (struct trace_rec){ .type = TREC_DECIDE, .u32 = e + 1,
					   .a = float_bits(0.95f) | float_bits(0.85f) << 32, .b = 32768,
					   .c = 32 });
	}
	assert_int_equal(trace_writer_close(w), 0);
}

static void test_sampled_replay(void **state)
{
	char path[] = "/tmp/test_sim_sampled.XXXXXX", why[256];
	int fd = mkstemp(path);
	struct sim_source *src;
	struct sim_result r, again, none;
	char *log, *log2, *log3;
	size_t len, len2, len3;
	FILE *f;

	(void)state;
	assert_true(fd >= 0);
	close(fd);
	write_sampled(path);
	if (sim_source_trace(path, &src, why, sizeof(why)) < 0)
		fail_msg("%s", why);
	assert_non_null(f = open_memstream(&log, &len));
	if (sim_replay_sampled(src, "hotness", NULL, 0, f, &r, why, sizeof(why)) < 0)
		fail_msg("replay: %s", why);
	fclose(f);
	assert_string_equal(r.disabled, "");
	assert_int_equal(r.decides, 20);
	assert_int_equal(r.accesses, 20 * 9);
	assert_int_equal(r.fast_hits, 19); /* page 2 is fast from the first NODES record on */
	/* Pages 40-47 are touched every sample: promoted on a pass, into the fast tier's room. */
	assert_non_null(strstr(log, "epoch 5 policy hotness migrate 1 promote "));
	assert_non_null(strstr(log, "\n+ 3 40 "));
	assert_true(r.pages_promoted > 0);
	/* Replays are deterministic, and none plans nothing from the same views. */
	assert_non_null(f = open_memstream(&log2, &len2));
	assert_int_equal(sim_replay_sampled(src, "hotness", NULL, 0, f, &again, why, sizeof(why)), 0);
	fclose(f);
	assert_int_equal(len, len2);
	assert_memory_equal(log, log2, len);
	assert_non_null(f = open_memstream(&log3, &len3));
	assert_int_equal(sim_replay_sampled(src, "none", NULL, 0, f, &none, why, sizeof(why)), 0);
	fclose(f);
	assert_int_equal(none.pages_promoted + none.pages_demoted, 0);
	assert_int_equal(none.fast_hits, r.fast_hits);
	assert_null(strstr(log3, "\n+ "));
	free(log);
	free(log2);
	free(log3);
	sim_result_free(&r);
	sim_result_free(&again);
	sim_result_free(&none);
	sim_source_free(src);
	unlink(path);
}

/* Runs build/tierd-sim with args; returns its exit status, stdout in *out (malloc'd). */
static int run_cli(const char *const *args, char **out)
{
	char bin[512], *argv[32];
	int pipefd[2], status;
	size_t n = 0, cap = 1 << 16;
	pid_t pid;
	ssize_t k;

	snprintf(bin, sizeof(bin), "%s/tierd-sim", build_dir());
	if (access(bin, X_OK) != 0)
		fail_msg("%s is not built", bin);
	argv[0] = bin;
	for (size_t i = 0; args[i]; i++)
		argv[i + 1] = (char *)args[i];
	argv[31] = NULL;
	{
		size_t i = 0;

		while (args[i])
			i++;
		argv[i + 1] = NULL;
	}
	assert_int_equal(pipe(pipefd), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		dup2(pipefd[1], 1);
		close(pipefd[0]);
		execv(bin, argv);
		_exit(127);
	}
	close(pipefd[1]);
	*out = malloc(cap);
	while ((k = read(pipefd[0], *out + n, cap - n - 1)) > 0) {
		n += (size_t)k;
		if (n + 1 == cap)
			*out = realloc(*out, cap *= 2);
	}
	(*out)[n] = '\0';
	close(pipefd[0]);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	char *buf;
	long n;

	assert_non_null(f);
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	rewind(f);
	buf = calloc(1, (size_t)n + 1);
	assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	return buf;
}

static void test_cli(void **state)
{
	char dir[] = "/tmp/test_sim_cli.XXXXXX", svg[256], hm[256], dl[256], tr[256], *a, *b, *c, *t;
	const char *args[] = { "--gen", "shift", "--pages", "512", "--epoch-events", "1500", "--events",
			       "300000", "--seed", "7", "--json", "--svg", svg, "--heatmap", hm,
			       "--decision-log", dl, NULL };

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(svg, sizeof(svg), "%s/hit.svg", dir);
	snprintf(hm, sizeof(hm), "%s/heat.svg", dir);
	snprintf(dl, sizeof(dl), "%s/decisions", dir);
	snprintf(tr, sizeof(tr), "%s/shift.trace", dir);
	assert_int_equal(run_cli(args, &a), 0);
	c = slurp(dl);
	assert_int_equal(run_cli(args, &b), 0);
	/* Same trace and seed: byte-identical JSON and decision log. */
	assert_string_equal(a, b);
	t = slurp(dl);
	assert_string_equal(c, t);
	free(t);
	assert_non_null(strstr(a, "\"policy\":\"optimum\""));
	assert_non_null(strstr(a, "\"policy\":\"no-migration\""));
	assert_non_null(strstr(a, "\"policy\":\"hotness\""));
	assert_non_null(strstr(a, "\"policy\":\"lru\""));
	assert_non_null(strstr(a, "\"policy\":\"none\""));
	assert_non_null(strstr(c, "policy hotness migrate 1"));
	t = slurp(svg);
	assert_true(strncmp(t, "<svg", 4) == 0 && strstr(t, "<polyline") && strstr(t, "hotness"));
	free(t);
	t = slurp(hm);
	assert_true(strncmp(t, "<svg", 4) == 0 && strstr(t, "<rect") && strstr(t, "page offset"));
	free(t);
	free(b);
	/* --write-trace, then the file replays to the same JSON but for where it came from. */
	{
		const char *w[] = { "--gen", "shift", "--pages", "512", "--epoch-events", "1500", "--events",
				    "300000", "--seed", "7", "--write-trace", tr, NULL };
		const char *r[] = { "--trace", tr, "--json", NULL };

		assert_int_equal(run_cli(w, &b), 0);
		free(b);
		assert_int_equal(run_cli(r, &b), 0);
		assert_string_equal(strstr(a, "\"results\""), strstr(b, "\"results\""));
		free(b);
	}
	/* --export: one text line a record. */
	{
		const char *x[] = { "--trace", tr, "--export", "-", NULL };
		size_t lines = 0;

		assert_int_equal(run_cli(x, &b), 0);
		for (const char *q = b; (q = strchr(q, '\n')); q++)
			lines++;
		assert_int_equal(lines, 1 + 1 + 300000); /* a comment, the segment, the events */
		assert_non_null(strstr(b, "\nseg id=1 npages=512 page_size=4096 kind=shmem\n"));
		assert_non_null(strstr(b, "\nevent t=0 seg=1 page=0 kind=access weight=1"));
		free(b);
	}
	/* The example module, built outside the tree against <tierd/policy.h>, with a parameter. */
	{
		char so[512];
		const char *m[] = { "--gen", "shift", "--pages", "512", "--epoch-events", "1500",
				    "--events", "100000", "--seed", "7", "--json", "--policy", so, NULL };

		snprintf(so, sizeof(so), "%s/examples/recency.so:window_epochs=4", build_dir());
		assert_int_equal(run_cli(m, &b), 0);
		assert_non_null(strstr(b, "\"policy\":\"recency\""));
		free(b);
	}
	/* Usage errors. */
	{
		const char *bad[] = { "--gen", "nonesuch", NULL };
		const char *badp[] = { "--gen", "zipf", "--events", "1000", "--policy", "hotness:decay=7", NULL };

		assert_int_equal(run_cli(bad, &b), 2);
		free(b);
		assert_int_equal(run_cli(badp, &b), 1);
		free(b);
	}
	free(a);
	free(c);
	unlink(svg);
	unlink(hm);
	unlink(dl);
	unlink(tr);
	rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_zipf),
		cmocka_unit_test(test_shift),
		cmocka_unit_test(test_scan),
		cmocka_unit_test(test_mix),
		cmocka_unit_test(test_three_tiers),
		cmocka_unit_test(test_determinism),
		cmocka_unit_test(test_trace_roundtrip),
		cmocka_unit_test(test_sampled_replay),
		cmocka_unit_test(test_cli),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
