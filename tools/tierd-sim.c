/* SPDX-License-Identifier: MIT */
/*
 * tierd-sim: replays an access trace (or a synthetic one) against a tier model with tierd's
 * sampling, hosting each policy as tierd does (policy/host.h), and compares them with the
 * hindsight optimum and with no migration at all (policy/sim.h has the model).
 *
 *   tierd-sim --gen zipf [--pages N --events N --epoch-events N --seed S ...] [--policy P]...
 *   tierd-sim --trace FILE [--decision-log FILE] [--json] [--svg FILE] [--heatmap FILE]
 *   tierd-sim --gen scan --write-trace FILE
 *   tierd-sim --trace FILE --export -          (the records as text)
 *   tierd-sim --bench[=decide|quality|throughput] --bench-json FILE [--dir DIR] [--commit C]
 *             [--where W]   (the sim_policy bench of make bench; every part by default)
 *
 * The table (default) or the JSON object (--json) go to stdout. JSON fields: "source", "flavour"
 * ("full" | "sampled"), "seed", "epoch_ms", "fast_bytes", "ntiers", "lat_ns" (per tier),
 * "migrate_ns_per_4k", "rate_limit_mbps", and "results": one object per run with "policy",
 * "hit_ratio" (fast-tier accesses / accesses), "vs_optimum" (hit_ratio / the optimum's; null for
 * sampled traces), "accesses", "fast_hits", "bytes_migrated", "pages_promoted", "pages_demoted"
 * (sampled traces: planned, not applied), "mean_access_ns" (access latencies plus migration costs,
 * per access), "epochs", "decides", "hot_on_fast_min" / "hot_on_fast_end" (scan generator: share
 * of its hot set on tier 0, lowest from the first sweep on / at the end; null otherwise),
 * "disabled" (why the host disabled the policy, or null). Raw numbers, no times: the same trace
 * and seed give the same bytes.
 *
 * Exit status: 0, 1 on a failed run, 2 on usage errors.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "builtins.h"
#include "host.h"
#include "region.h"
#include "sim.h"

#define MAX_POLICIES 16
#define MAX_PARAMS 16

struct run_spec {
	char *spec;
	char *kv[MAX_PARAMS];
	struct tierd_policy_param params[MAX_PARAMS];
	size_t nparams;
};

static void usage(FILE *f)
{
	fputs("usage: tierd-sim (--trace FILE | --gen zipf|shift|scan|mix) [options]\n"
	      "  source:   --pages N --events N --epoch-events N --seed S --page-size B --epoch-ms MS\n"
	      "            --skew X (zipf, mix) --hot-pages K --hot-share F (shift, scan, mix)\n"
	      "            --shift-epochs P (shift, mix) --scan-every N --scan-epochs N (scan, mix)\n"
	      "  model:    --fast-pages N | --fast-mib M (default: a quarter of the pages)\n"
	      "            --tiers 2|3 --mid-mib M --lat-ns FAST,SLOW[,SLOWER] --migrate-ns N (per 4 KiB)\n"
	      "            --rate-mbps N\n"
	      "  policies: --policy NAME[:key=value,...] (repeatable; default: every built-in)\n"
	      "  output:   --json --decision-log FILE --svg FILE --heatmap FILE --write-trace FILE\n"
	      "            --export FILE|- (the trace's records as text)\n"
	      "  bench:    --bench[=decide|quality|throughput] --bench-json FILE [--dir DIR --commit C\n"
	      "            --where W]\n", f);
}

static int parse_u64(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno || end == s || *end || s[0] == '-')
		return -EINVAL;
	*out = v;
	return 0;
}

static int parse_double(const char *s, double *out)
{
	char *end;

	errno = 0;
	*out = strtod(s, &end);
	return errno || end == s || *end || !isfinite(*out) ? -EINVAL : 0;
}

/* "name:k=v,k=v" -> spec and params (pointing into the string). */
static int parse_policy(char *arg, struct run_spec *rs, char *why, size_t whylen)
{
	char *colon = strchr(arg, ':');
	int r;

	memset(rs, 0, sizeof(*rs));
	rs->spec = arg;
	if (!colon)
		return 0;
	*colon = '\0';
	for (char *tok = strtok(colon + 1, ","); tok; tok = strtok(NULL, ",")) {
		if (rs->nparams == MAX_PARAMS) {
			snprintf(why, whylen, "policy %s: more than %d parameters", arg, MAX_PARAMS);
			return -EINVAL;
		}
		rs->kv[rs->nparams++] = tok;
	}
	r = policy_parse_params(rs->kv, rs->nparams, rs->params, why, whylen);
	return r < 0 ? r : 0;
}

static void json_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			fprintf(f, "\\%c", *s);
		else if ((unsigned char)*s < 0x20)
			fprintf(f, "\\u%04x", *s);
		else
			fputc(*s, f);
	}
	fputc('"', f);
}

static void json_share(FILE *f, const char *key, double v)
{
	fprintf(f, ",\"%s\":", key);
	if (v < 0)
		fputs("null", f);
	else
		fprintf(f, "%.6f", v);
}

struct report {
	const struct trace_header *h;
	const struct sim_config *cfg;
	const struct sim_result *res;
	size_t n;
	double optimum; /* hit ratio; < 0: none (sampled) */
};

static void print_json(FILE *f, const struct report *rp)
{
	const struct sim_config *c = rp->cfg;

	fputs("{\"source\":", f);
	json_str(f, rp->h->source);
	fprintf(f, ",\"flavour\":\"%s\",\"seed\":%" PRIu64 ",\"epoch_ms\":%u,\"fast_bytes\":%" PRIu64
		",\"ntiers\":%u,\"lat_ns\":[%.1f,%.1f", rp->h->flavour == TRACE_SAMPLED ? "sampled" : "full",
		rp->h->seed, rp->h->epoch_ms, c->fast_bytes, c->ntiers, c->lat_ns[0], c->lat_ns[1]);
	if (c->ntiers == 3)
		fprintf(f, ",%.1f", c->lat_ns[2]);
	fprintf(f, "],\"migrate_ns_per_4k\":%.1f,\"rate_limit_mbps\":%u,\"results\":[",
		c->migrate_ns_per_4k, c->rate_limit_mbps);
	for (size_t i = 0; i < rp->n; i++) {
		const struct sim_result *r = &rp->res[i];

		fputs(i ? ",{\"policy\":" : "{\"policy\":", f);
		json_str(f, r->policy);
		fprintf(f, ",\"hit_ratio\":%.6f", r->hit_ratio);
		json_share(f, "vs_optimum", rp->optimum > 0 ? r->hit_ratio / rp->optimum : -1);
		fprintf(f, ",\"accesses\":%" PRIu64 ",\"fast_hits\":%" PRIu64 ",\"bytes_migrated\":%" PRIu64
			",\"pages_promoted\":%" PRIu64 ",\"pages_demoted\":%" PRIu64
			",\"mean_access_ns\":%.3f,\"epochs\":%" PRIu64 ",\"decides\":%" PRIu64, r->accesses,
			r->fast_hits, r->bytes_migrated, r->pages_promoted, r->pages_demoted,
			r->mean_access_ns, r->epochs, r->decides);
		json_share(f, "hot_on_fast_min", r->hot_on_fast_min);
		json_share(f, "hot_on_fast_end", r->hot_on_fast_end);
		fputs(",\"disabled\":", f);
		if (r->disabled[0])
			json_str(f, r->disabled);
		else
			fputs("null", f);
		fputc('}', f);
	}
	fputs("]}\n", f);
}

static void print_table(FILE *f, const struct report *rp, const char *what)
{
	if (rp->optimum < 0)
		fprintf(f, "tierd-sim: %s; the recorded views replayed, nothing moved: hit ratios are "
			"the recording's, moves are planned ones\n", what);
	else
		fprintf(f, "tierd-sim: %s; fast tier %.1f MiB, %u tiers, latency %.0f/%.0f ns, migration "
			"%.0f ns per 4 KiB\n", what, (double)rp->cfg->fast_bytes / 1048576.0,
			rp->cfg->ntiers, rp->cfg->lat_ns[0], rp->cfg->lat_ns[1],
			rp->cfg->migrate_ns_per_4k);
	fprintf(f, "%-14s %9s %10s %12s %9s %9s %9s %s\n", "policy", "hit ratio", "vs optimum",
		"migrated MiB", "promoted", "demoted", "mean ns", "hot set on fast (min/end)");
	for (size_t i = 0; i < rp->n; i++) {
		const struct sim_result *r = &rp->res[i];
		char vs[16] = "-", hot[40] = "";

		if (rp->optimum > 0)
			snprintf(vs, sizeof(vs), "%.3f", r->hit_ratio / rp->optimum);
		if (r->hot_on_fast_min >= 0 || r->hot_on_fast_end >= 0)
			snprintf(hot, sizeof(hot), "%.3f / %.3f", r->hot_on_fast_min, r->hot_on_fast_end);
		fprintf(f, "%-14s %9.4f %10s %12.1f %9" PRIu64 " %9" PRIu64 " %9.1f %s%s%s\n", r->policy,
			r->hit_ratio, vs, (double)r->bytes_migrated / 1048576.0, r->pages_promoted,
			r->pages_demoted, r->mean_access_ns, hot, r->disabled[0] ? " DISABLED: " : "",
			r->disabled);
	}
}

/* Total bytes of the segments a trace declares before its first event. */
static int source_bytes(struct sim_source *src, uint64_t *bytes, uint64_t *pages, char *why, size_t whylen)
{
	struct trace_rec rec;
	int r = sim_source_rewind(src, why, whylen);

	*bytes = *pages = 0;
	while (r >= 0 && (r = sim_source_next(src, &rec, why, whylen)) > 0 && rec.type != TREC_EVENT)
		if (rec.type == TREC_SEG) {
			*bytes += rec.a * rec.b;
			*pages += rec.a;
		}
	return r < 0 ? r : 0;
}

/* The source's records as text, one a line (trace_rec_format), to `path` ("-": stdout). */
static int export_text(struct sim_source *src, const char *path, char *why, size_t whylen)
{
	FILE *f = strcmp(path, "-") ? fopen(path, "we") : stdout;
	struct trace_rec rec;
	char line[512];
	int r;

	if (!f) {
		snprintf(why, whylen, "%s", strerror(errno));
		return -errno;
	}
	fprintf(f, "# %s, flavour %s, seed %" PRIu64 ", epoch %u ms\n", sim_source_header(src)->source,
		sim_source_header(src)->flavour == TRACE_SAMPLED ? "sampled" : "full",
		sim_source_header(src)->seed, sim_source_header(src)->epoch_ms);
	r = sim_source_rewind(src, why, whylen);
	while (r >= 0 && (r = sim_source_next(src, &rec, why, whylen)) > 0)
		if (trace_rec_format(&rec, line, sizeof(line)) >= 0)
			fprintf(f, "%s\n", line);
	if (f != stdout && fclose(f) != 0 && r == 0) {
		snprintf(why, whylen, "%s", strerror(errno));
		r = -EIO;
	}
	return r;
}

/* ---- bench ----------------------------------------------------------------------------------- */

struct bench_ctx {
	FILE *json;
	const char *commit, *where, *dir;
	const char *only; /* NULL: every part; else "decide", "quality" or "throughput" */
};

static void bench_emit(const struct bench_ctx *b, const char *metric, double value, double baseline,
		       const char *unit, unsigned n, const char *spread, const char *note)
{
	double ratio = baseline != 0 ? value / baseline : 0;

	fprintf(b->json, "{\"bench\":\"sim_policy\",\"metric\":\"%s\",\"value\":%.6g,\"baseline\":%.6g,"
		"\"ratio\":%.4g,\"unit\":\"%s\",\"n\":%u,\"spread\":", metric, value, baseline, ratio, unit, n);
	json_str(b->json, spread);
	fputs(",\"where\":", b->json);
	json_str(b->json, b->where);
	fputs(",\"commit\":", b->json);
	json_str(b->json, b->commit);
	if (note) {
		fputs(",\"note\":", b->json);
		json_str(b->json, note);
	}
	fputs("}\n", b->json);
	fflush(b->json);
	fprintf(stderr, "  sim_policy %-32s %10.4g %-8s baseline %10.4g  ratio %6.3f\n    spread: %s\n",
		metric, value, unit, baseline, ratio, spread);
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Seeds per policy-quality figure: each is a different trace; the figure is their mean. */
#define BENCH_SEEDS 3

static int bench_quality(const struct bench_ctx *b)
{
	static const struct {
		enum sim_gen_kind kind;
		const char *name;
	} traces[] = { { SIM_GEN_ZIPF, "zipf" }, { SIM_GEN_SHIFT, "shifting" }, { SIM_GEN_SCAN, "scan" } };
	static const char *const pols[] = { "hotness", "lru" };
	char why[256];

	for (size_t t = 0; t < sizeof(traces) / sizeof(traces[0]); t++)
		for (size_t p = 0; p < 2; p++) {
			double ratio[BENCH_SEEDS], hr[BENCH_SEEDS], opt[BENCH_SEEDS], lo = 1e9, hi = 0;
			double mhr = 0, mopt = 0;
			char metric[64], spread[256];

			for (unsigned s = 0; s < BENCH_SEEDS; s++) {
				struct sim_gen_config g;
				struct sim_config c;
				struct sim_source *src;
				struct sim_result o, nm, r;

				sim_gen_defaults(&g, traces[t].kind);
				g.pages = 2048;
				g.epoch_events = 5000;
				g.events = 5000ull * 1000;
				g.seed = 1000 + s;
				sim_config_defaults(&c);
				c.fast_bytes = g.pages / 4 * g.page_size;
				c.seed = g.seed;
				if (sim_source_gen(&g, &src, why, sizeof(why)) < 0 ||
				    sim_run_baselines(src, &c, &o, &nm, NULL, why, sizeof(why)) < 0 ||
				    sim_run_policy(src, pols[p], NULL, 0, &c, &r, why, sizeof(why)) < 0) {
					fprintf(stderr, "sim_policy: %s\n", why);
					return -1;
				}
				hr[s] = r.hit_ratio;
				opt[s] = o.hit_ratio;
				ratio[s] = r.hit_ratio / o.hit_ratio;
				mhr += hr[s] / BENCH_SEEDS;
				mopt += opt[s] / BENCH_SEEDS;
				lo = ratio[s] < lo ? ratio[s] : lo;
				hi = ratio[s] > hi ? ratio[s] : hi;
				sim_result_free(&o);
				sim_result_free(&nm);
				sim_result_free(&r);
				sim_source_free(src);
			}
			snprintf(metric, sizeof(metric), "%s_vs_optimum_%s", pols[p], traces[t].name);
			snprintf(spread, sizeof(spread), "ratio over %d seeds %.4f-%.4f (hit ratio %.4f-%.4f, "
				 "optimum %.4f-%.4f)", BENCH_SEEDS, lo, hi, fmin(fmin(hr[0], hr[1]), hr[2]),
				 fmax(fmax(hr[0], hr[1]), hr[2]), fmin(fmin(opt[0], opt[1]), opt[2]),
				 fmax(fmax(opt[0], opt[1]), opt[2]));
			bench_emit(b, metric, mhr, mopt, "hit", BENCH_SEEDS, spread,
				   "2048 pages, fast tier 1/4, 5000 accesses an epoch, 1000 epochs (tierd's "
				   "sampler sees 256 pages an epoch); value: hit ratio, baseline: the "
				   "hindsight optimum's; target ratio >= 0.9");
		}
	return 0;
}

#define THROUGHPUT_EVENTS 10000000ull
#define THROUGHPUT_ROUNDS 3

static int bench_throughput(const struct bench_ctx *b)
{
	double sim[THROUGHPUT_ROUNDS], base[THROUGHPUT_ROUNDS], ms = 0, mb = 0, lo = 1e18, hi = 0;
	struct sim_gen_config g;
	struct sim_config c;
	struct sim_source *gen, *src;
	char why[256], path[4096], spread[256];

	sim_gen_defaults(&g, SIM_GEN_ZIPF);
	g.pages = 1u << 20;
	g.epoch_events = 100000;
	g.events = THROUGHPUT_EVENTS;
	sim_config_defaults(&c);
	c.fast_bytes = g.pages / 4 * g.page_size;
	snprintf(path, sizeof(path), "%s/zipf-10m.trace", b->dir);
	if (sim_source_gen(&g, &gen, why, sizeof(why)) < 0 || sim_source_write(gen, path, why, sizeof(why)) < 0 ||
	    sim_source_trace(path, &src, why, sizeof(why)) < 0) {
		fprintf(stderr, "sim_policy: %s\n", why);
		return -1;
	}
	sim_source_free(gen);
	for (int i = 0; i < THROUGHPUT_ROUNDS; i++) {
		struct sim_result r;
		struct trace_rec rec;
		double t0 = now_s(), t1, t2;
		uint64_t n = 0;
		int k;

		/* Baseline: reading the trace, nothing else. */
		if (sim_source_rewind(src, why, sizeof(why)) < 0)
			goto fail;
		while ((k = sim_source_next(src, &rec, why, sizeof(why))) > 0)
			n += rec.type == TREC_EVENT;
		if (k < 0 || n != THROUGHPUT_EVENTS)
			goto fail;
		t1 = now_s();
		if (sim_run_policy(src, "hotness", NULL, 0, &c, &r, why, sizeof(why)) < 0)
			goto fail;
		t2 = now_s();
		base[i] = THROUGHPUT_EVENTS / (t1 - t0);
		sim[i] = THROUGHPUT_EVENTS / (t2 - t1);
		ms += sim[i] / THROUGHPUT_ROUNDS;
		mb += base[i] / THROUGHPUT_ROUNDS;
		lo = sim[i] < lo ? sim[i] : lo;
		hi = sim[i] > hi ? sim[i] : hi;
		sim_result_free(&r);
	}
	sim_source_free(src);
	unlink(path);
	snprintf(spread, sizeof(spread), "hotness run %.3g-%.3g events/s over %d rounds (reading alone "
		 "%.3g-%.3g)", lo, hi, THROUGHPUT_ROUNDS, fmin(fmin(base[0], base[1]), base[2]),
		 fmax(fmax(base[0], base[1]), base[2]));
	bench_emit(b, "throughput_events_per_s", ms, mb, "events/s", THROUGHPUT_ROUNDS, spread,
		   "10M-event zipf trace file (1 Mi pages, 100k accesses an epoch), replayed with "
		   "tierd's sampling and hotness; baseline: reading the same file alone");
	return 0;
fail:
	fprintf(stderr, "sim_policy: %s\n", why);
	sim_source_free(src);
	unlink(path);
	return -1;
}

/* hotness decide() on a view of 1 Mi tracked 4 KiB pages (4 GiB), a quarter of them on the fast
 * tier at random, regions and windows from the host's sampler (tierd's defaults), FAULT events on
 * the windows' pages from a workload with a 10 % hot set. Every epoch is timed; migration passes
 * (every 5th) are the dearest and are the figure. */
#define DT_PAGES (1u << 20)
#define DT_EPOCHS 200
#define DT_EPOCH_MS 100.0
#define DT_TARGET_SHARE 0.05

static int by_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static int bench_decide(const struct bench_ctx *b)
{
	struct tierd_policy_env env = { .abi_version = TIERD_POLICY_ABI_VERSION, .epoch_ms = 100, .seed = 1 };
	struct tierd_page *pages = calloc(DT_PAGES, sizeof(*pages));
	struct tierd_move *up = malloc(DT_PAGES * sizeof(*up)), *down = malloc(DT_PAGES * sizeof(*down));
	struct tierd_region *regs = malloc(256 * sizeof(*regs));
	struct tierd_window closed[32];
	struct region_window win[32];
	struct tierd_event ev[64 * 8];
	double pass_ms[DT_EPOCHS / 5], other_ms[DT_EPOCHS], spread_lo, spread_hi, med, other = 0;
	struct region_set rs = { 0 };
	void *state = NULL;
	double check_ms = 0;
	char why[256], spread[256];
	uint64_t rng = 7;
	size_t npass = 0, nother = 0, nwin = 0;
	int r = -1;

	if (!pages || !up || !down || !regs || region_set_init(&rs, DT_PAGES, 10, 256, 8, 1) < 0)
		goto out;
	for (uint32_t i = 0; i < DT_PAGES; i++) {
		rng = rng * 6364136223846793005ull + 1442695040888963407ull;
		pages[i].node = (int16_t)((rng >> 33) % 4 == 0 ? 0 : 1);
	}
	if (policy_hotness.init(&state, &env, NULL, 0, why, sizeof(why)) < 0) {
		fprintf(stderr, "sim_policy: %s\n", why);
		goto out;
	}
	{
		struct tierd_seg_view sv = { .id = 1, .page_size = 4096, .npages = DT_PAGES, .pages = pages };

		if (policy_hotness.seg_add(state, &sv) < 0)
			goto out;
	}
	for (uint32_t epoch = 1; epoch <= DT_EPOCHS; epoch++) {
		struct tierd_seg_view sv = { .id = 1, .page_size = 4096, .npages = DT_PAGES, .pages = pages,
					     .regions = regs, .closed = closed, .nattach = 1 };
		struct tierd_view v = { .size = sizeof(v), .epoch = epoch, .epoch_ms = 100, .ntiers = 2,
					.fast_budget_bytes = DT_PAGES / 4 * 4096ull, .high_wm = 0.95f,
					.low_wm = 0.85f, .max_move_bytes = 256ull << 20, .nsegs = 1,
					.segs = &sv, .window_bytes = 32768, .migrate = epoch % 5 == 0 };
		struct tierd_plan plan = { .promote = up, .demote = down,
					   .max_promote = v.migrate ? DT_PAGES : 0,
					   .max_demote = v.migrate ? DT_PAGES : 0 };
		size_t nev = 0;
		double t0, dt;

		/* Last epoch's windows: a hot set of 10 % of the pages (8 runs) touched every epoch,
		 * the rest now and then (2 %). */
		for (size_t k = 0; k < nwin; k++) {
			uint64_t touched = 0;

			for (uint64_t q = win[k].start; q < win[k].start + win[k].npages; q++) {
				bool hot = q % (DT_PAGES / 8) < DT_PAGES / 80;

				rng = rng * 6364136223846793005ull + 1442695040888963407ull;
				if ((hot || (rng >> 33) % 50 == 0) && nev < sizeof(ev) / sizeof(ev[0])) {
					ev[nev++] = (struct tierd_event){ .page = q, .seg = 1,
									  .kind = TIERD_EV_FAULT, .weight = 1 };
					touched++;
				}
			}
			region_set_record(&rs, &win[k], touched);
			closed[k] = (struct tierd_window){ .seg = 1, .start = win[k].start, .npages = win[k].npages };
		}
		sv.nclosed = nwin;
		region_set_commit(&rs);
		if (epoch % 5 == 0)
			region_set_adapt(&rs, 0.1f);
		for (size_t k = 0; k < rs.n; k++)
			regs[k] = (struct tierd_region){ .start = rs.r[k].start, .end = rs.r[k].end,
							 .score = rs.r[k].score, .prev_score = rs.r[k].prev_score,
							 .samples = rs.r[k].samples };
		sv.nregions = rs.n;
		memset(&v.node_tier, -1, sizeof(v.node_tier));
		v.node_tier[0] = 0;
		v.node_tier[1] = 1;
		v.tiers[0] = (struct tierd_tier_view){ .capacity_bytes = DT_PAGES / 4 * 4096ull,
						       .free_bytes = 64ull << 20, .nnodes = 1, .target_node = 0 };
		v.tiers[1] = (struct tierd_tier_view){ .capacity_bytes = 1ull << 40, .free_bytes = 1ull << 39,
						       .nnodes = 1, .target_node = 1 };
		/* The policy's own time: its ops called as the host calls them, without the host's
		 * plan check (which tierd adds to every policy alike; it is in the note). */
		t0 = now_s();
		policy_hotness.observe(state, ev, nev);
		if (policy_hotness.decide(state, &v, &plan) < 0) {
			fprintf(stderr, "sim_policy: hotness decide() failed\n");
			goto out;
		}
		dt = (now_s() - t0) * 1000;
		t0 = now_s();
		if (policy_validate(&v, &plan, false, why, sizeof(why)) < 0) {
			fprintf(stderr, "sim_policy: hotness made an invalid plan: %s\n", why);
			goto out;
		}
		check_ms += (now_s() - t0) * 1000 / DT_EPOCHS;
		if (v.migrate)
			pass_ms[npass++] = dt;
		else
			other_ms[nother++] = dt;
		for (size_t i = 0; i < plan.npromote; i++)
			pages[plan.promote[i].page].node = 0;
		for (size_t i = 0; i < plan.ndemote; i++)
			pages[plan.demote[i].page].node = 1;
		nwin = region_set_pick(&rs, 32, 8, win);
	}
	qsort(pass_ms, npass, sizeof(double), by_double);
	spread_lo = pass_ms[0];
	spread_hi = pass_ms[npass - 1];
	med = pass_ms[npass / 2];
	for (size_t i = 0; i < nother; i++)
		other += other_ms[i] / (double)nother;
	snprintf(spread, sizeof(spread), "migration pass %.3f-%.3f ms (median %.3f) over %zu passes; other "
		 "epochs mean %.4f ms; the host's plan check adds %.3f ms an epoch", spread_lo, spread_hi,
		 med, npass, other, check_ms);
	bench_emit(b, "hotness_decide_share_1m_pages", med / DT_EPOCH_MS, DT_TARGET_SHARE, "share", (unsigned)npass,
		   spread, "decide() on a migration pass, 1 Mi tracked pages, as a share of a 100 ms "
		   "epoch; baseline: the 5 % target");
	r = 0;
out:
	if (state)
		policy_hotness.fini(state);
	region_set_fini(&rs);
	free(pages);
	free(up);
	free(down);
	free(regs);
	return r;
}

static int run_bench(const struct bench_ctx *b)
{
	int r = 0;

	fprintf(stderr, "sim_policy: policy quality, simulator throughput, hotness decide() time\n");
	if (!b->only || !strcmp(b->only, "decide"))
		r |= bench_decide(b);
	if (!b->only || !strcmp(b->only, "quality"))
		r |= bench_quality(b);
	if (!b->only || !strcmp(b->only, "throughput"))
		r |= bench_throughput(b);
	return r ? 1 : 0;
}

/* ---- main ----------------------------------------------------------------------------------- */

enum {
	OPT_PAGES = 256, OPT_EVENTS, OPT_EPOCH_EVENTS, OPT_SEED, OPT_PAGE_SIZE, OPT_EPOCH_MS, OPT_SKEW,
	OPT_HOT_PAGES, OPT_HOT_SHARE, OPT_SHIFT_EPOCHS, OPT_SCAN_EVERY, OPT_SCAN_EPOCHS, OPT_FAST_PAGES,
	OPT_FAST_MIB, OPT_TIERS, OPT_MID_MIB, OPT_LAT, OPT_MIGRATE_NS, OPT_RATE, OPT_DLOG, OPT_SVG,
	OPT_HEATMAP, OPT_WRITE, OPT_EXPORT, OPT_BENCH, OPT_BENCH_JSON, OPT_DIR, OPT_COMMIT, OPT_WHERE,
};

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "trace", required_argument, NULL, 't' },    { "gen", required_argument, NULL, 'g' },
		{ "policy", required_argument, NULL, 'p' },   { "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ "pages", required_argument, NULL, OPT_PAGES },
		{ "events", required_argument, NULL, OPT_EVENTS },
		{ "epoch-events", required_argument, NULL, OPT_EPOCH_EVENTS },
		{ "seed", required_argument, NULL, OPT_SEED },
		{ "page-size", required_argument, NULL, OPT_PAGE_SIZE },
		{ "epoch-ms", required_argument, NULL, OPT_EPOCH_MS },
		{ "skew", required_argument, NULL, OPT_SKEW },
		{ "hot-pages", required_argument, NULL, OPT_HOT_PAGES },
		{ "hot-share", required_argument, NULL, OPT_HOT_SHARE },
		{ "shift-epochs", required_argument, NULL, OPT_SHIFT_EPOCHS },
		{ "scan-every", required_argument, NULL, OPT_SCAN_EVERY },
		{ "scan-epochs", required_argument, NULL, OPT_SCAN_EPOCHS },
		{ "fast-pages", required_argument, NULL, OPT_FAST_PAGES },
		{ "fast-mib", required_argument, NULL, OPT_FAST_MIB },
		{ "tiers", required_argument, NULL, OPT_TIERS },
		{ "mid-mib", required_argument, NULL, OPT_MID_MIB },
		{ "lat-ns", required_argument, NULL, OPT_LAT },
		{ "migrate-ns", required_argument, NULL, OPT_MIGRATE_NS },
		{ "rate-mbps", required_argument, NULL, OPT_RATE },
		{ "decision-log", required_argument, NULL, OPT_DLOG },
		{ "svg", required_argument, NULL, OPT_SVG },
		{ "heatmap", required_argument, NULL, OPT_HEATMAP },
		{ "write-trace", required_argument, NULL, OPT_WRITE },
		{ "export", required_argument, NULL, OPT_EXPORT },
		{ "bench", optional_argument, NULL, OPT_BENCH },
		{ "bench-json", required_argument, NULL, OPT_BENCH_JSON },
		{ "dir", required_argument, NULL, OPT_DIR },
		{ "commit", required_argument, NULL, OPT_COMMIT },
		{ "where", required_argument, NULL, OPT_WHERE },
		{ 0 }
	};
	struct run_spec pols[MAX_POLICIES];
	size_t npols = 0;
	struct sim_gen_config g;
	struct sim_config cfg;
	const char *trace = NULL, *dlog_path = NULL, *svg = NULL, *heatmap = NULL, *write = NULL;
	const char *export = NULL;
	const char *bench_json = NULL;
	struct bench_ctx bc = { .commit = "uncommitted", .where = "host", .dir = "/tmp" };
	bool json = false, have_gen = false, bench = false;
	uint64_t fast_pages = 0, fast_mib = 0, u;
	double d;
	int c, rc = 1, r, longindex = -1;
	char why[512] = "", what[256];
	struct sim_source *src = NULL;
	struct sim_result res[MAX_POLICIES + 2];
	size_t nres = 0;
	struct sim_heatmap hm = { 0 };
	FILE *dlog = NULL;

	sim_gen_defaults(&g, SIM_GEN_ZIPF);
	sim_config_defaults(&cfg);
	memset(res, 0, sizeof(res));
	while ((c = getopt_long(argc, argv, "t:g:p:jh", opts, &longindex)) >= 0) {
		r = 0;
		switch (c) {
		case 't':
			trace = optarg;
			break;
		case 'g': {
			struct sim_gen_config keep = g;

			r = sim_gen_parse_kind(optarg, &g.kind);
			if (r == 0) {
				enum sim_gen_kind k = g.kind;

				/* Defaults of this kind, keeping what was given before. */
				sim_gen_defaults(&g, k);
				g.pages = keep.pages;
				g.events = keep.events;
				g.epoch_events = keep.epoch_events;
				g.seed = keep.seed;
				g.page_size = keep.page_size;
				g.epoch_ms = keep.epoch_ms;
			}
			have_gen = true;
			break;
		}
		case 'p':
			if (npols == MAX_POLICIES) {
				fprintf(stderr, "tierd-sim: at most %d policies\n", MAX_POLICIES);
				return 2;
			}
			if (parse_policy(optarg, &pols[npols], why, sizeof(why)) < 0) {
				fprintf(stderr, "tierd-sim: %s\n", why);
				return 2;
			}
			npols++;
			break;
		case 'j':
			json = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case OPT_PAGES:
			r = parse_u64(optarg, &g.pages);
			break;
		case OPT_EVENTS:
			r = parse_u64(optarg, &g.events);
			break;
		case OPT_EPOCH_EVENTS:
			r = parse_u64(optarg, &g.epoch_events);
			break;
		case OPT_SEED:
			r = parse_u64(optarg, &g.seed);
			cfg.seed = g.seed;
			break;
		case OPT_PAGE_SIZE:
			r = parse_u64(optarg, &u);
			g.page_size = (uint32_t)u;
			r = r ? r : (u && u <= (1u << 30) && !(u & (u - 1)) ? 0 : -EINVAL);
			break;
		case OPT_EPOCH_MS:
			r = parse_u64(optarg, &u);
			g.epoch_ms = (uint32_t)u;
			r = r ? r : (u && u < 100000 ? 0 : -EINVAL);
			break;
		case OPT_SKEW:
			r = parse_double(optarg, &g.zipf_skew);
			break;
		case OPT_HOT_PAGES:
			r = parse_u64(optarg, &g.hot_pages);
			break;
		case OPT_HOT_SHARE:
			r = parse_double(optarg, &g.hot_share);
			break;
		case OPT_SHIFT_EPOCHS:
			r = parse_u64(optarg, &u);
			g.shift_epochs = (uint32_t)u;
			break;
		case OPT_SCAN_EVERY:
			r = parse_u64(optarg, &u);
			g.scan_every_epochs = (uint32_t)u;
			break;
		case OPT_SCAN_EPOCHS:
			r = parse_u64(optarg, &u);
			g.scan_epochs = (uint32_t)u;
			break;
		case OPT_FAST_PAGES:
			r = parse_u64(optarg, &fast_pages);
			break;
		case OPT_FAST_MIB:
			r = parse_u64(optarg, &fast_mib);
			break;
		case OPT_TIERS:
			r = parse_u64(optarg, &u);
			cfg.ntiers = (uint32_t)u;
			r = r ? r : (u == 2 || u == 3 ? 0 : -EINVAL);
			break;
		case OPT_MID_MIB:
			r = parse_u64(optarg, &u);
			cfg.mid_bytes = u << 20;
			break;
		case OPT_LAT: {
			char *save = NULL, *tok = strtok_r(optarg, ",", &save);

			for (int i = 0; tok && i < 3 && r == 0; i++, tok = strtok_r(NULL, ",", &save))
				r = parse_double(tok, &cfg.lat_ns[i]);
			break;
		}
		case OPT_MIGRATE_NS:
			r = parse_double(optarg, &d);
			cfg.migrate_ns_per_4k = d;
			break;
		case OPT_RATE:
			r = parse_u64(optarg, &u);
			cfg.rate_limit_mbps = (uint32_t)u;
			break;
		case OPT_DLOG:
			dlog_path = optarg;
			break;
		case OPT_SVG:
			svg = optarg;
			break;
		case OPT_HEATMAP:
			heatmap = optarg;
			break;
		case OPT_WRITE:
			write = optarg;
			break;
		case OPT_EXPORT:
			export = optarg;
			break;
		case OPT_BENCH:
			bench = true;
			bc.only = optarg;
			break;
		case OPT_BENCH_JSON:
			bench_json = optarg;
			break;
		case OPT_DIR:
			bc.dir = optarg;
			break;
		case OPT_COMMIT:
			bc.commit = optarg;
			break;
		case OPT_WHERE:
			bc.where = optarg;
			break;
		default:
			usage(stderr);
			return 2;
		}
		if (r < 0) {
			fprintf(stderr, "tierd-sim: bad value \"%s\" for --%s\n", optarg ? optarg : "",
				longindex >= 0 ? opts[longindex].name : "?");
			return 2;
		}
		longindex = -1;
	}
	if (optind < argc) {
		usage(stderr);
		return 2;
	}
	if (bench) {
		bc.json = bench_json ? fopen(bench_json, "ae") : stdout;
		if (!bc.json) {
			fprintf(stderr, "tierd-sim: %s: %s\n", bench_json, strerror(errno));
			return 1;
		}
		rc = run_bench(&bc);
		if (bc.json != stdout)
			fclose(bc.json);
		return rc;
	}
	if (!!trace == have_gen) {
		fprintf(stderr, "tierd-sim: give one source: --trace FILE or --gen KIND\n");
		usage(stderr);
		return 2;
	}
	r = trace ? sim_source_trace(trace, &src, why, sizeof(why)) : sim_source_gen(&g, &src, why, sizeof(why));
	if (r < 0) {
		fprintf(stderr, "tierd-sim: %s\n", why);
		return r == -EINVAL ? 2 : 1;
	}
	if (write && sim_source_write(src, write, why, sizeof(why)) < 0) {
		fprintf(stderr, "tierd-sim: writing %s: %s\n", write, why);
		goto out;
	}
	if (export && export_text(src, export, why, sizeof(why)) < 0) {
		fprintf(stderr, "tierd-sim: exporting to %s: %s\n", export, why);
		goto out;
	}
	if ((write || export) && !npols && !json && !svg && !heatmap && !dlog_path) {
		rc = 0;
		goto out;
	}
	if (!npols)
		for (size_t i = 0; policy_builtins[i] && npols < MAX_POLICIES; i++)
			pols[npols++] = (struct run_spec){ .spec = (char *)policy_builtins[i]->name };
	if (dlog_path && !(dlog = fopen(dlog_path, "we"))) {
		fprintf(stderr, "tierd-sim: %s: %s\n", dlog_path, strerror(errno));
		goto out;
	}
	cfg.decision_log = dlog;
	if (sim_source_header(src)->flavour == TRACE_SAMPLED) {
		for (size_t i = 0; i < npols; i++) {
			if (sim_replay_sampled(src, pols[i].spec, pols[i].params, pols[i].nparams, dlog,
					       &res[nres], why, sizeof(why)) < 0) {
				fprintf(stderr, "tierd-sim: %s: %s\n", pols[i].spec, why);
				goto out;
			}
			nres++;
		}
		snprintf(what, sizeof(what), "sampled trace %s (%s)", trace, sim_source_header(src)->source);
		cfg.fast_bytes = 0;
	} else {
		uint64_t total_bytes, total_pages;

		if (source_bytes(src, &total_bytes, &total_pages, why, sizeof(why)) < 0) {
			fprintf(stderr, "tierd-sim: %s\n", why);
			goto out;
		}
		cfg.seed = trace ? sim_source_header(src)->seed : g.seed;
		cfg.fast_bytes = fast_mib ? fast_mib << 20
			       : fast_pages ? fast_pages * (total_pages ? total_bytes / total_pages : 4096)
					    : total_bytes / 4;
		if (cfg.ntiers == 3 && !cfg.mid_bytes)
			cfg.mid_bytes = total_bytes / 4;
		if (sim_run_baselines(src, &cfg, &res[0], &res[1], heatmap ? &hm : NULL, why, sizeof(why)) < 0) {
			fprintf(stderr, "tierd-sim: %s\n", why);
			goto out;
		}
		nres = 2;
		for (size_t i = 0; i < npols; i++) {
			if (sim_run_policy(src, pols[i].spec, pols[i].params, pols[i].nparams, &cfg, &res[nres],
					   why, sizeof(why)) < 0) {
				fprintf(stderr, "tierd-sim: %s: %s\n", pols[i].spec, why);
				goto out;
			}
			nres++;
		}
		snprintf(what, sizeof(what), "%s, %" PRIu64 " pages, %" PRIu64 " accesses, %" PRIu64 " epochs",
			 trace ? trace : sim_source_header(src)->source, total_pages, res[0].accesses,
			 res[0].epochs);
	}
	{
		bool full = sim_source_header(src)->flavour != TRACE_SAMPLED;
		struct report rp = { .h = sim_source_header(src), .cfg = &cfg, .res = res, .n = nres,
				     .optimum = full ? res[0].hit_ratio : -1 };

		if (json)
			print_json(stdout, &rp);
		else
			print_table(stdout, &rp, what);
	}
	if (svg) {
		FILE *f = fopen(svg, "we");

		if (!f) {
			fprintf(stderr, "tierd-sim: %s: %s\n", svg, strerror(errno));
			goto out;
		}
		sim_write_svg(f, res, nres, what);
		fclose(f);
	}
	if (heatmap && hm.nepochs) {
		FILE *f = fopen(heatmap, "we");

		if (!f) {
			fprintf(stderr, "tierd-sim: %s: %s\n", heatmap, strerror(errno));
			goto out;
		}
		sim_write_heatmap(f, &hm, what);
		fclose(f);
	}
	rc = 0;
out:
	if (dlog && fclose(dlog) != 0 && rc == 0) {
		fprintf(stderr, "tierd-sim: %s: %s\n", dlog_path, strerror(errno));
		rc = 1;
	}
	for (size_t i = 0; i < nres; i++)
		sim_result_free(&res[i]);
	sim_heatmap_free(&hm);
	sim_source_free(src);
	return rc;
}
