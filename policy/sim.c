/* SPDX-License-Identifier: MIT */
/* tierd-sim's engine: sources (generators, traces), the tier and sampling model, runs, charts. */
#include "plan.h"
#include "sim.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "host.h"
#include "region.h"

/* Access latencies by tier (ns): DRAM on the local node, then CXL-attached or remote-socket memory
 * (published loaded latencies are 2-2.5x local), then a further tier. Overridable. */
#define LAT_FAST_NS 100.0
#define LAT_SLOW_NS 250.0
#define LAT_SLOWER_NS 400.0
/* Cost of moving one 4 KiB page: move_pages(2) measured 1.5-3 us a page on the project's hosts
 * (bench migration_throughput), scaled by page size. */
#define MIGRATE_NS_PER_4K 2000.0
/* Events buffered before they go to observe(): one call per batch, as tierd batches per wakeup. */
#define EVENT_BATCH 4096
/* The slow tier of the two-tier model: large enough for anything a trace holds. */
#define SLOW_TIER_BYTES (UINT64_C(1) << 50)

/* Returns -EINVAL with the reason in why. */
static int fail(char *why, size_t whylen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(char *why, size_t whylen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, whylen, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

/* Every run returns its error with a reason: one of its own, else the errno's text. */
static int reason(int r, char *why, size_t whylen)
{
	if (r < 0 && whylen && !why[0])
		snprintf(why, whylen, "%s", strerror(-r));
	return r;
}

/* ---- randomness (generators only) ------------------------------------------------------- */

static uint64_t splitmix(uint64_t *s)
{
	uint64_t z = (*s += UINT64_C(0x9e3779b97f4a7c15));

	z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
	return z ^ (z >> 31);
}

static uint64_t below(uint64_t *s, uint64_t n)
{
	return n ? splitmix(s) % n : 0;
}

static double unit(uint64_t *s)
{
	return (double)(splitmix(s) >> 11) * (1.0 / 9007199254740992.0);
}

/* ---- generators ------------------------------------------------------------------------- */

static const char *const gen_names[] = { [SIM_GEN_ZIPF] = "zipf", [SIM_GEN_SHIFT] = "shift",
					  [SIM_GEN_SCAN] = "scan", [SIM_GEN_MIX] = "mix" };

const char *sim_gen_kind_name(enum sim_gen_kind kind)
{
	return kind <= SIM_GEN_MIX ? gen_names[kind] : "?";
}

int sim_gen_parse_kind(const char *name, enum sim_gen_kind *kind)
{
	for (int k = SIM_GEN_ZIPF; k <= SIM_GEN_MIX; k++)
		if (strcmp(name, gen_names[k]) == 0) {
			*kind = (enum sim_gen_kind)k;
			return 0;
		}
	return -EINVAL;
}

void sim_gen_defaults(struct sim_gen_config *g, enum sim_gen_kind kind)
{
	*g = (struct sim_gen_config){
		.kind = kind, .pages = 2048, .events = 2000000, .epoch_events = 5000, .seed = 1,
		.page_size = 4096, .epoch_ms = 100, .zipf_skew = 0.99, .hot_pages = 0,
		.shift_epochs = 200, .hot_share = 0.9, .scan_every_epochs = 50, .scan_epochs = 4,
	};
}

struct gen {
	struct sim_gen_config c;
	uint64_t rng;
	double *cdf;     /* zipf: cumulative probability by rank */
	uint64_t *perm;  /* zipf: rank -> page, so hot pages are scattered */
	uint64_t hot;    /* hot set size */
	uint64_t hot_start;
	uint64_t emitted, epoch, i, m, sweep_n, scan_cursor;
	bool seg_sent, started;
};

static bool gen_sweeps(const struct gen *g)
{
	return (g->c.kind == SIM_GEN_SCAN || g->c.kind == SIM_GEN_MIX) && g->c.scan_every_epochs &&
	       g->c.scan_epochs;
}

static void gen_reset(struct gen *g)
{
	g->rng = g->c.seed;
	g->emitted = g->epoch = g->i = g->m = g->sweep_n = g->scan_cursor = 0;
	g->seg_sent = g->started = false;
	if (g->perm) {
		for (uint64_t i = 0; i < g->c.pages; i++)
			g->perm[i] = i;
		for (uint64_t i = g->c.pages; i > 1; i--) {
			uint64_t j = below(&g->rng, i), t = g->perm[i - 1];

			g->perm[i - 1] = g->perm[j];
			g->perm[j] = t;
		}
	}
	g->hot_start = below(&g->rng, g->c.pages);
}

static void gen_start_epoch(struct gen *g, uint64_t e)
{
	g->epoch = e;
	g->i = 0;
	g->sweep_n = 0;
	if ((g->c.kind == SIM_GEN_SHIFT || g->c.kind == SIM_GEN_MIX) && e && g->c.shift_epochs &&
	    e % g->c.shift_epochs == 0)
		g->hot_start = below(&g->rng, g->c.pages);
	if (gen_sweeps(g) && e >= g->c.scan_every_epochs &&
	    e % g->c.scan_every_epochs < g->c.scan_epochs) {
		if (e % g->c.scan_every_epochs == 0)
			g->scan_cursor = 0;
		g->sweep_n = (g->c.pages + g->c.scan_epochs - 1) / g->c.scan_epochs;
	}
	g->m = g->c.epoch_events + g->sweep_n;
	if (e == 0) {
		/* Epoch 0 is a load: the application populates its memory in page order, so first
		 * touch places pages by address, not by heat. */
		g->scan_cursor = 0;
		g->sweep_n = g->m = g->c.pages;
	}
}

static uint64_t gen_zipf(struct gen *g)
{
	double u = unit(&g->rng);
	uint64_t lo = 0, hi = g->c.pages - 1;

	while (lo < hi) {
		uint64_t mid = lo + (hi - lo) / 2;

		if (g->cdf[mid] > u)
			hi = mid;
		else
			lo = mid + 1;
	}
	return g->perm[lo];
}

static uint64_t gen_hot_or_uniform(struct gen *g)
{
	if (unit(&g->rng) < g->c.hot_share)
		return (g->hot_start + below(&g->rng, g->hot)) % g->c.pages;
	return below(&g->rng, g->c.pages);
}

static uint64_t gen_page(struct gen *g)
{
	switch (g->c.kind) {
	case SIM_GEN_ZIPF:
		return gen_zipf(g);
	case SIM_GEN_MIX:
		return unit(&g->rng) < 0.5 ? gen_zipf(g) : gen_hot_or_uniform(g);
	default:
		return gen_hot_or_uniform(g);
	}
}

static int gen_next(struct gen *g, struct trace_rec *rec)
{
	uint64_t epoch_ns = (uint64_t)g->c.epoch_ms * 1000000u, page;
	bool sweep;

	if (!g->seg_sent) {
		g->seg_sent = true;
		*rec = (struct trace_rec){ .type = TREC_SEG, .u8 = TIERD_SEGV_SHMEM, .u32 = 1,
					   .a = g->c.pages, .b = g->c.page_size };
		return 1;
	}
	if (g->emitted >= g->c.events)
		return 0;
	if (!g->started) {
		g->started = true;
		gen_start_epoch(g, 0);
	}
	while (g->i >= g->m)
		gen_start_epoch(g, g->epoch + 1);
	/* Sweep accesses are spread evenly among the others. */
	sweep = g->sweep_n && (g->i + 1) * g->sweep_n / g->m > g->i * g->sweep_n / g->m &&
		g->scan_cursor < g->c.pages;
	page = sweep ? g->scan_cursor++ : gen_page(g);
	*rec = (struct trace_rec){ .type = TREC_EVENT, .u8 = TIERD_EV_ACCESS, .u16 = 1, .u32 = 1,
				   .a = g->epoch * epoch_ns + g->i * epoch_ns / g->m, .b = page };
	g->i++;
	g->emitted++;
	return 1;
}

/* The stable hot set's share on tier 0 is measured from this epoch on (the first sweep); 0: the
 * source has no stable hot set. */
static uint64_t gen_hot_from_epoch(const struct gen *g)
{
	return g->c.kind == SIM_GEN_SCAN ? g->c.scan_every_epochs : 0;
}

/* ---- sources ---------------------------------------------------------------------------- */

struct sim_source {
	struct gen *gen;
	char *path;
	struct trace_reader *rd;
	struct trace_header h;
};

int sim_source_gen(const struct sim_gen_config *c, struct sim_source **ret, char *why, size_t whylen)
{
	struct sim_source *s;
	struct gen *g;

	if (!c->pages || !c->epoch_events || !c->page_size || !c->epoch_ms || c->kind > SIM_GEN_MIX ||
	    c->hot_share < 0 || c->hot_share > 1 || c->zipf_skew < 0 || c->pages > (UINT64_C(1) << 32)) {
		snprintf(why, whylen, "generator %s: pages, epoch events, page size and epoch must be "
			 "above 0 (pages at most 2^32), hot share in [0, 1], skew >= 0",
			 sim_gen_kind_name(c->kind));
		return -EINVAL;
	}
	s = calloc(1, sizeof(*s));
	g = calloc(1, sizeof(*g));
	if (!s || !g) {
		free(s);
		free(g);
		return -ENOMEM;
	}
	s->gen = g;
	g->c = *c;
	g->hot = c->hot_pages ? c->hot_pages : c->pages / 8;
	if (g->hot == 0)
		g->hot = 1;
	if (g->hot > c->pages)
		g->hot = c->pages;
	if (c->kind == SIM_GEN_ZIPF || c->kind == SIM_GEN_MIX) {
		double sum = 0;

		g->cdf = malloc(c->pages * sizeof(*g->cdf));
		g->perm = malloc(c->pages * sizeof(*g->perm));
		if (!g->cdf || !g->perm) {
			sim_source_free(s);
			return -ENOMEM;
		}
		for (uint64_t r = 0; r < c->pages; r++) {
			sum += pow((double)(r + 1), -c->zipf_skew);
			g->cdf[r] = sum;
		}
		for (uint64_t r = 0; r < c->pages; r++)
			g->cdf[r] /= sum;
	}
	memcpy(s->h.magic, TRACE_MAGIC, 8);
	s->h.version = TRACE_VERSION;
	s->h.header_size = sizeof(s->h);
	s->h.record_size = sizeof(struct trace_rec);
	s->h.flavour = TRACE_FULL;
	s->h.seed = c->seed;
	s->h.epoch_ms = c->epoch_ms;
	s->h.page_size = c->page_size;
	snprintf(s->h.source, sizeof(s->h.source), "tierd-sim %s", sim_gen_kind_name(c->kind));
	gen_reset(g);
	*ret = s;
	return 0;
}

int sim_source_trace(const char *path, struct sim_source **ret, char *why, size_t whylen)
{
	struct sim_source *s = calloc(1, sizeof(*s));
	int r;

	if (!s || !(s->path = strdup(path))) {
		free(s);
		return -ENOMEM;
	}
	r = trace_reader_open(path, &s->rd, why, whylen);
	if (r < 0) {
		sim_source_free(s);
		return r;
	}
	s->h = *trace_reader_header(s->rd);
	*ret = s;
	return 0;
}

void sim_source_free(struct sim_source *s)
{
	if (!s)
		return;
	if (s->gen) {
		free(s->gen->cdf);
		free(s->gen->perm);
		free(s->gen);
	}
	trace_reader_close(s->rd);
	free(s->path);
	free(s);
}

int sim_source_rewind(struct sim_source *s, char *why, size_t whylen)
{
	if (s->gen) {
		gen_reset(s->gen);
		return 0;
	}
	trace_reader_close(s->rd);
	s->rd = NULL;
	return trace_reader_open(s->path, &s->rd, why, whylen);
}

int sim_source_next(struct sim_source *s, struct trace_rec *rec, char *why, size_t whylen)
{
	if (s->gen)
		return gen_next(s->gen, rec);
	return trace_read(s->rd, rec, why, whylen);
}

const struct trace_header *sim_source_header(const struct sim_source *s)
{
	return &s->h;
}

int sim_source_write(struct sim_source *s, const char *path, char *why, size_t whylen)
{
	struct trace_writer *w;
	struct trace_rec rec;
	int r = sim_source_rewind(s, why, whylen);

	if (r < 0)
		return r;
	r = trace_writer_open(path, &s->h, 0, true, &w);
	if (r < 0) {
		snprintf(why, whylen, "%s: %s", path, strerror(-r));
		return r;
	}
	while ((r = sim_source_next(s, &rec, why, whylen)) > 0)
		if ((r = trace_write(w, &rec)) < 0) {
			snprintf(why, whylen, "%s: %s", path, strerror(-r));
			break;
		}
	if (r == 0 && (r = trace_writer_close(w)) < 0)
		snprintf(why, whylen, "%s: %s", path, strerror(-r));
	else if (r < 0)
		trace_writer_close(w);
	return r;
}

/* ---- the model ------------------------------------------------------------------------------ */

void sim_config_defaults(struct sim_config *c)
{
	*c = (struct sim_config){
		.ntiers = 2, .lat_ns = { LAT_FAST_NS, LAT_SLOW_NS, LAT_SLOWER_NS },
		.migrate_ns_per_4k = MIGRATE_NS_PER_4K, .rate_limit_mbps = 512, .high_wm = 0.95f,
		.low_wm = 0.85f, .max_windows = 32, .window_bytes = 32 * 1024, .min_regions = 10,
		.max_regions = 256, .merge_delta = 0.10f, .aggregate_epochs = 5,
		.migrate_every_epochs = 5, .seed = 1,
	};
}

void sim_result_free(struct sim_result *r)
{
	free(r->series);
	r->series = NULL;
	r->nseries = 0;
}

struct sseg {
	uint32_t id, kind;
	uint64_t npages, page_size, base;
	struct tierd_page *pages;
	struct region_set rs;
	bool rs_ok, removed;
	struct region_window *win;
	size_t nwin, win_cap;
	struct tierd_window *closed;
	size_t nclosed, closed_cap;
	struct tierd_region *regs;
	size_t nregs, regs_cap;
	uint64_t accesses;
	uint32_t *counts; /* baselines: this epoch's accesses per page */
};

struct engine {
	const struct sim_config *cfg;
	struct sseg *segs;
	size_t nsegs, segs_cap, last;
	uint64_t cap[3], used[3];
	uint64_t total_pages;
	uint32_t epoch;
	uint64_t epoch_ns;
	/* results of this run */
	struct sim_result *res;
	uint64_t ep_acc, ep_hits;
	double lat_sum;
	/* policy runs */
	struct policy *pol;
	struct tierd_event *evbuf;
	size_t nev;
	struct tierd_seg_view *views;
	struct tierd_move *up, *down;
	size_t moves_cap;
	struct tierd_window *pwin;
	size_t pwin_cap;
	/* the source's stable hot set (scan generator) */
	const struct gen *gen;
	/* baselines */
	struct { uint32_t seg; uint64_t page; } *touched;
	size_t ntouched, touched_cap;
	struct { uint32_t count; uint32_t bytes; } *sortbuf;
	size_t sortbuf_cap;
	struct sim_result *nomig;
	uint64_t nm_used[3];
	uint64_t nm_ep_acc, nm_ep_hits;
	double nm_lat;
	struct sim_heatmap *hm;
};


static void engine_init(struct engine *e, const struct sim_config *cfg, const struct trace_header *h)
{
	memset(e, 0, sizeof(*e));
	e->cfg = cfg;
	e->cap[0] = cfg->fast_bytes;
	if (cfg->ntiers == 3) {
		e->cap[1] = cfg->mid_bytes;
		e->cap[2] = SLOW_TIER_BYTES;
	} else {
		e->cap[1] = SLOW_TIER_BYTES;
	}
	e->epoch = 1;
	e->epoch_ns = (uint64_t)(h->epoch_ms ? h->epoch_ms : 100) * 1000000u;
}

static void engine_fini(struct engine *e)
{
	for (size_t i = 0; i < e->nsegs; i++) {
		struct sseg *s = &e->segs[i];

		free(s->pages);
		if (s->rs_ok)
			region_set_fini(&s->rs);
		free(s->win);
		free(s->closed);
		free(s->regs);
		free(s->counts);
	}
	free(e->segs);
	free(e->evbuf);
	free(e->views);
	free(e->up);
	free(e->down);
	free(e->pwin);
	free(e->touched);
	free(e->sortbuf);
}

static struct sseg *seg_find(struct engine *e, uint32_t id)
{
	if (e->last < e->nsegs && e->segs[e->last].id == id)
		return &e->segs[e->last];
	for (size_t i = 0; i < e->nsegs; i++)
		if (e->segs[i].id == id && !e->segs[i].removed) {
			e->last = i;
			return &e->segs[i];
		}
	return NULL;
}

static void seg_view(const struct sseg *s, struct tierd_seg_view *v)
{
	*v = (struct tierd_seg_view){ .id = s->id, .kind = s->kind, .page_size = s->page_size,
				      .npages = s->npages, .pages = s->pages, .regions = s->regs,
				      .nregions = s->nregs, .closed = s->closed, .nclosed = s->nclosed,
				      .nattach = 1 };
}

static int seg_add(struct engine *e, const struct trace_rec *rec, bool sampling, char *why, size_t whylen)
{
	struct sseg *s;
	uint64_t wp;

	if (seg_find(e, rec->u32))
		return fail(why, whylen, "segment %u declared twice", rec->u32);
	if (!rec->a || !rec->b || rec->a > (UINT64_C(1) << 36) || (rec->b & (rec->b - 1)))
		return fail(why, whylen, "segment %u: %" PRIu64 " pages of %" PRIu64 " bytes",
				rec->u32, rec->a, rec->b);
	if (plan_grow((void **)&e->segs, &e->segs_cap, e->nsegs + 1, sizeof(*e->segs)) < 0)
		return -ENOMEM;
	s = &e->segs[e->nsegs];
	*s = (struct sseg){ .id = rec->u32, .kind = rec->u8, .npages = rec->a, .page_size = rec->b,
			    .base = e->total_pages };
	s->pages = malloc(s->npages * sizeof(*s->pages));
	if (!s->pages)
		return -ENOMEM;
	for (uint64_t p = 0; p < s->npages; p++)
		s->pages[p] = (struct tierd_page){ .node = -1 };
	e->nsegs++;
	e->total_pages += s->npages;
	if (sampling) {
		/* The daemon's window: window_bytes of 4 KiB pages, one page of hugetlb. */
		wp = s->kind == TIERD_SEGV_HUGETLB ? 1 : e->cfg->window_bytes / s->page_size;
		if (!wp)
			wp = 1;
		if (region_set_init(&s->rs, s->npages, e->cfg->min_regions, e->cfg->max_regions, wp,
				    e->cfg->seed ^ ((uint64_t)s->id * UINT64_C(0x9e3779b97f4a7c15))) < 0)
			return fail(why, whylen, "segment %u: cannot set up regions", s->id);
		s->rs_ok = true;
	}
	return 0;
}

/* A segment arrived: its state, room for views and plans covering every page, its view. */
/* The event buffer and the policy, as both runs need them (e->res set). */
static int engine_open_policy(struct engine *e, const char *spec, const struct tierd_policy_param *params,
			      size_t nparams, const struct tierd_policy_env *env, FILE *decision_log,
			      char *why, size_t whylen)
{
	int r;

	e->evbuf = malloc(EVENT_BATCH * sizeof(*e->evbuf));
	if (!e->evbuf)
		return -ENOMEM;
	r = policy_open(spec, NULL, params, nparams, env, &e->pol, why, whylen);
	if (r < 0) {
		engine_fini(e);
		return r;
	}
	snprintf(e->res->policy, sizeof(e->res->policy), "%s", policy_name(e->pol));
	policy_set_decision_log(e->pol, decision_log);
	/* A simulated decide is not held to tierd's wall-clock guard: ASan runs are slow. */
	policy_set_guard_ms(e->pol, 0);
	return 0;
}

static int seg_arrived(struct engine *e, const struct trace_rec *rec, bool sampling,
		       struct tierd_seg_view *sv, char *why, size_t whylen)
{
	int r = seg_add(e, rec, sampling, why, whylen);

	if (r < 0)
		return r;
	if (plan_grow((void **)&e->views, &(size_t){ 0 }, e->nsegs, sizeof(*e->views)) < 0 ||
	    plan_grow((void **)&e->up, &(size_t){ 0 }, e->total_pages, sizeof(*e->up)) < 0 ||
	    plan_grow((void **)&e->down, &(size_t){ 0 }, e->total_pages, sizeof(*e->down)) < 0)
		return -ENOMEM;
	e->moves_cap = e->total_pages;
	seg_view(&e->segs[e->nsegs - 1], sv);
	return 0;
}

/* The fastest tier with room for a page, or -1. */
static int tier_with_room(const uint64_t *used, const uint64_t *cap, uint32_t ntiers, uint32_t from,
			  uint64_t bytes)
{
	for (uint32_t t = from; t < ntiers; t++)
		if (used[t] + bytes <= cap[t])
			return (int)t;
	return -1;
}

static uint32_t ntiers(const struct engine *e)
{
	return e->cfg->ntiers == 3 ? 3 : 2;
}

/* Ends an epoch of a result: its hit ratio joins the series (the previous one for an epoch
 * without accesses). The series grows by doubling: its capacity is the next power of two. Out of
 * memory, the point is lost, not the run. */
static void end_epoch_stats(struct sim_result *r, uint64_t acc, uint64_t hits)
{
	float v = acc ? (float)hits / (float)acc : (r->nseries ? r->series[r->nseries - 1] : 0);

	r->epochs++;
	if ((r->nseries & (r->nseries - 1)) == 0) {
		float *p = realloc(r->series, (r->nseries ? r->nseries * 2 : 1) * sizeof(*p));

		if (!p)
			return;
		r->series = p;
	}
	r->series[r->nseries++] = v;
}

static void finish_result(struct sim_result *r, double lat_sum)
{
	r->hit_ratio = r->accesses ? (double)r->fast_hits / (double)r->accesses : 0;
	r->mean_access_ns = r->accesses ? lat_sum / (double)r->accesses : 0;
}

/* ---- policy runs ---------------------------------------------------------------------------- */

static void flush_events(struct engine *e)
{
	if (e->nev)
		policy_observe(e->pol, e->evbuf, e->nev);
	e->nev = 0;
}

static void push_event(struct engine *e, const struct tierd_event *ev)
{
	e->evbuf[e->nev++] = *ev;
	if (e->nev == EVENT_BATCH)
		flush_events(e);
}

static double hot_on_fast(const struct engine *e)
{
	const struct gen *g = e->gen;
	const struct sseg *s = e->nsegs ? &e->segs[0] : NULL;
	uint64_t on = 0;

	if (!s || s->npages != g->c.pages)
		return 0;
	for (uint64_t i = 0; i < g->hot; i++)
		on += s->pages[(g->hot_start + i) % g->c.pages].node == 0;
	return (double)on / (double)g->hot;
}

static void apply_moves(struct engine *e, const struct tierd_plan *plan)
{
	const struct sim_config *c = e->cfg;

	for (int pass = 0; pass < 2; pass++) {
		const struct tierd_move *m = pass ? plan->promote : plan->demote;
		size_t n = pass ? plan->npromote : plan->ndemote;

		for (size_t i = 0; i < n; i++) {
			struct sseg *s = seg_find(e, m[i].seg);
			struct tierd_page *pg;
			int from, to;

			if (!s || m[i].page >= s->npages)
				continue;
			pg = &s->pages[m[i].page];
			from = pg->node;
			to = pass ? tier_with_room(e->used, e->cap, 1, 0, s->page_size)
				  : tier_with_room(e->used, e->cap, ntiers(e), 1, s->page_size);
			if (from < 0 || to < 0 || to == from)
				continue; /* the target is full: the move fails, as move_pages would */
			e->used[from] -= s->page_size;
			e->used[to] += s->page_size;
			pg->node = (int16_t)to;
			e->res->bytes_migrated += s->page_size;
			e->lat_sum += c->migrate_ns_per_4k * (double)s->page_size / 4096.0;
			if (pass)
				e->res->pages_promoted++;
			else
				e->res->pages_demoted++;
		}
	}
}

/* One epoch boundary, in the order of tierd's manager_epoch. */
static int transition(struct engine *e, char *why, size_t whylen)
{
	const struct sim_config *c = e->cfg;
	struct tierd_view v = { .size = sizeof(v), .epoch_ms = (uint32_t)(e->epoch_ns / 1000000u),
				.ntiers = ntiers(e), .fast_budget_bytes = c->fast_bytes,
				.high_wm = c->high_wm, .low_wm = c->low_wm, .window_bytes = c->window_bytes };
	struct tierd_plan plan = { 0 };
	size_t nviews = 0, active = 0, budget;
	uint64_t min_page = UINT64_MAX;
	int r;

	flush_events(e);
	end_epoch_stats(e->res, e->ep_acc, e->ep_hits);
	e->ep_acc = e->ep_hits = 0;
	e->epoch++;
	for (size_t i = 0; i < e->nsegs; i++) {
		struct sseg *s = &e->segs[i];

		s->nclosed = 0;
		if (s->removed)
			continue;
		if (plan_grow((void **)&s->closed, &s->closed_cap, s->nwin + 1, sizeof(*s->closed)) < 0)
			return -ENOMEM;
		for (size_t k = 0; k < s->nwin; k++) {
			const struct region_window *w = &s->win[k];
			uint64_t hits = 0;

			for (uint64_t p = w->start; p < w->start + w->npages; p++) {
				hits += !!(s->pages[p].flags & TIERD_PAGE_HIT);
				s->pages[p].flags &= (uint16_t)~(TIERD_PAGE_ARMED | TIERD_PAGE_HIT);
			}
			region_set_record(&s->rs, w, hits);
			s->closed[s->nclosed++] = (struct tierd_window){ .seg = s->id, .start = w->start,
									 .npages = w->npages };
		}
		s->nwin = 0;
		region_set_commit(&s->rs);
		if (c->aggregate_epochs && e->epoch % c->aggregate_epochs == 0)
			region_set_adapt(&s->rs, c->merge_delta);
		if (plan_grow((void **)&s->regs, &s->regs_cap, s->rs.n, sizeof(*s->regs)) < 0)
			return -ENOMEM;
		for (size_t k = 0; k < s->rs.n; k++)
			s->regs[k] = (struct tierd_region){ .start = s->rs.r[k].start, .end = s->rs.r[k].end,
							    .score = s->rs.r[k].score,
							    .prev_score = s->rs.r[k].prev_score,
							    .samples = s->rs.r[k].samples };
		s->nregs = s->rs.n;
		seg_view(s, &e->views[nviews++]);
		active += s->accesses > 0;
		min_page = s->page_size < min_page ? s->page_size : min_page;
	}

	v.epoch = e->epoch;
	v.now_ns = (uint64_t)(e->epoch - 1) * e->epoch_ns;
	for (uint32_t t = 0; t < v.ntiers; t++) {
		uint64_t free_bytes = e->cap[t] - e->used[t];

		v.tiers[t] = (struct tierd_tier_view){ .capacity_bytes = e->cap[t], .free_bytes = free_bytes,
						       .used_bytes = e->used[t], .nnodes = 1,
						       .target_node = free_bytes >= min_page ? (int32_t)t : -1 };
	}
	if (v.tiers[0].target_node < 0 && nviews)
		v.tiers[0].target_node = 0; /* full, but it is where promotions would go */
	memset(v.node_tier, -1, sizeof(v.node_tier));
	for (uint32_t t = 0; t < v.ntiers; t++)
		v.node_tier[t] = (int8_t)t;
	/* The rate limit's tokens for one pass interval (tierd saves up at most a second's worth). */
	v.max_move_bytes = (uint64_t)c->rate_limit_mbps * 1000u * (e->epoch_ns / 1000000u) *
			   (c->migrate_every_epochs ? c->migrate_every_epochs : 1);
	v.nsegs = (uint32_t)nviews;
	v.segs = e->views;
	v.migrate = c->migrate_every_epochs && e->epoch % c->migrate_every_epochs == 0;
	plan.promote = e->up;
	plan.demote = e->down;
	plan.max_promote = plan.max_demote = v.migrate ? e->moves_cap : 0;
	plan.windows = e->pwin;
	plan.max_windows = e->pwin_cap;
	r = policy_decide(e->pol, &v, &plan);
	e->res->decides++;
	if (r < 0 && !e->res->disabled[0] && policy_disabled(e->pol))
		snprintf(e->res->disabled, sizeof(e->res->disabled), "%s", policy_disabled(e->pol));
	if (r == 0)
		apply_moves(e, &plan);
	if (e->gen && gen_hot_from_epoch(e->gen) && v.migrate) {
		double share = hot_on_fast(e);

		if (e->epoch > gen_hot_from_epoch(e->gen) &&
		    (e->res->hot_on_fast_min < 0 || share < e->res->hot_on_fast_min))
			e->res->hot_on_fast_min = share;
	}

	if (!active || !c->max_windows)
		return 0;
	budget = c->max_windows / active ? c->max_windows / active : 1;
	for (size_t i = 0; i < e->nsegs; i++) {
		struct sseg *s = &e->segs[i];
		uint64_t wp;

		if (s->removed || !s->accesses)
			continue;
		if (plan_grow((void **)&s->win, &s->win_cap, budget, sizeof(*s->win)) < 0)
			return -ENOMEM;
		wp = s->kind == TIERD_SEGV_HUGETLB ? 1 : c->window_bytes / s->page_size;
		s->nwin = region_set_pick(&s->rs, budget, wp ? wp : 1, s->win);
		for (size_t k = 0; k < s->nwin; k++)
			for (uint64_t p = s->win[k].start; p < s->win[k].start + s->win[k].npages; p++)
				s->pages[p].flags = (uint16_t)((s->pages[p].flags & ~TIERD_PAGE_HIT) |
							       TIERD_PAGE_ARMED);
	}
	(void)why;
	(void)whylen;
	return 0;
}

static int check_event(struct engine *e, const struct trace_rec *rec, struct sseg **sp, char *why,
		       size_t whylen)
{
	struct sseg *s = seg_find(e, rec->u32);

	if (!s)
		return fail(why, whylen, "event for unknown segment %u", rec->u32);
	if (rec->b >= s->npages)
		return fail(why, whylen, "event for page %" PRIu64 " of segment %u (%" PRIu64
				" pages)", rec->b, rec->u32, s->npages);
	*sp = s;
	return 0;
}

/* Moves the clock up to the epoch of `time_ns`: every boundary on the way. */
static int advance(struct engine *e, uint64_t time_ns, bool policy, char *why, size_t whylen);

static int policy_event(struct engine *e, const struct trace_rec *rec, char *why, size_t whylen)
{
	const struct sim_config *c = e->cfg;
	uint16_t w = rec->u16 ? rec->u16 : 1;
	struct tierd_page *pg;
	struct sseg *s;
	int r = check_event(e, rec, &s, why, whylen);

	if (r < 0 || (r = advance(e, rec->a, true, why, whylen)) < 0)
		return r;
	pg = &s->pages[rec->b];
	if (rec->u8 != TIERD_EV_ACCESS) {
		/* Recorded observations (eBPF samples, faults) are delivered as they are. */
		if (rec->u8 == TIERD_EV_FAULT || rec->u8 == TIERD_EV_SAMPLE) {
			pg->accesses = pg->accesses > UINT32_MAX - w ? UINT32_MAX : pg->accesses + w;
			pg->last_epoch = e->epoch;
		}
		push_event(e, &(struct tierd_event){ .time_ns = rec->a, .page = rec->b, .seg = s->id,
						      .tid = (uint32_t)rec->c, .kind = rec->u8,
						      .weight = w });
		return 0;
	}
	if (pg->node < 0) {
		int t = tier_with_room(e->used, e->cap, ntiers(e), 0, s->page_size);

		pg->node = (int16_t)(t < 0 ? (int)ntiers(e) - 1 : t);
		e->used[pg->node] += s->page_size;
	}
	s->accesses += w;
	e->res->accesses += w;
	e->ep_acc += w;
	e->lat_sum += c->lat_ns[pg->node] * w;
	if (pg->node == 0) {
		e->res->fast_hits += w;
		e->ep_hits += w;
	}
	if ((pg->flags & (TIERD_PAGE_ARMED | TIERD_PAGE_HIT)) == TIERD_PAGE_ARMED) {
		/* The first touch in an armed window faults once; then the page is mapped until the
		 * window closes (daemon/segment.h page_touch). */
		if (pg->accesses != UINT32_MAX)
			pg->accesses++;
		pg->last_epoch = e->epoch;
		pg->flags |= TIERD_PAGE_HIT;
		push_event(e, &(struct tierd_event){ .time_ns = rec->a, .page = rec->b, .seg = s->id,
						      .tid = (uint32_t)rec->c, .kind = TIERD_EV_FAULT,
						      .weight = 1 });
	}
	return 0;
}

static int baseline_epoch_end(struct engine *e);

static int advance(struct engine *e, uint64_t time_ns, bool policy, char *why, size_t whylen)
{
	uint64_t target = time_ns / e->epoch_ns + 1;
	int r;

	if (target > UINT32_MAX)
		return fail(why, whylen, "event time %" PRIu64 " ns is past the last epoch", time_ns);
	while (e->epoch < target) {
		r = policy ? transition(e, why, whylen) : baseline_epoch_end(e);
		if (r < 0)
			return r;
	}
	return 0;
}

int sim_run_policy(struct sim_source *src, const char *spec, const struct tierd_policy_param *params,
		   size_t nparams, const struct sim_config *cfg, struct sim_result *res, char *why,
		   size_t whylen)
{
	const struct trace_header *h = sim_source_header(src);
	struct tierd_policy_env env = { .abi_version = TIERD_POLICY_ABI_VERSION, .seed = cfg->seed };
	struct engine e;
	struct trace_rec rec;
	int r;

	memset(res, 0, sizeof(*res));
	res->hot_on_fast_min = res->hot_on_fast_end = -1;
	if (whylen)
		why[0] = '\0';
	if (h->flavour != TRACE_FULL)
		return fail(why, whylen, "not a full trace: replay it with sim_replay_sampled");
	if (cfg->ntiers < 2 || cfg->ntiers > 3 || !cfg->fast_bytes)
		return fail(why, whylen, "the model needs 2 or 3 tiers and a fast tier");
	r = sim_source_rewind(src, why, whylen);
	if (r < 0)
		return r;
	engine_init(&e, cfg, h);
	env.epoch_ms = (uint32_t)(e.epoch_ns / 1000000u);
	e.res = res;
	e.gen = src->gen;
	r = engine_open_policy(&e, spec, params, nparams, &env, cfg->decision_log, why, whylen);
	if (r < 0)
		return r;
	while ((r = sim_source_next(src, &rec, why, whylen)) > 0) {
		if (rec.type == TREC_SEG) {
			struct tierd_seg_view sv;

			r = seg_arrived(&e, &rec, true, &sv, why, whylen);
			if (r < 0)
				break;
			sv.regions = NULL;
			if (policy_seg_add(e.pol, &sv) < 0)
				continue; /* tierd would disable the policy; the simulator goes on */
		} else if (rec.type == TREC_SEG_END) {
			struct sseg *s = seg_find(&e, rec.u32);

			flush_events(&e);
			if (s) {
				policy_seg_remove(e.pol, s->id);
				s->removed = true;
				for (size_t k = 0; k < s->npages; k++)
					if (s->pages[k].node >= 0)
						e.used[s->pages[k].node] -= s->page_size;
			}
		} else if (rec.type == TREC_EVENT) {
			r = policy_event(&e, &rec, why, whylen);
			if (r < 0)
				break;
		}
		/* Other types belong to SAMPLED traces, or are newer: skipped. */
	}
	if (r == 0) {
		flush_events(&e);
		end_epoch_stats(res, e.ep_acc, e.ep_hits);
		if (e.gen && gen_hot_from_epoch(e.gen))
			res->hot_on_fast_end = hot_on_fast(&e);
		finish_result(res, e.lat_sum);
	}
	policy_close(e.pol);
	engine_fini(&e);
	return r < 0 ? reason(r, why, whylen) : 0;
}

/* ---- baselines: optimum and no-migration ---------------------------------------------------- */

static int by_count_desc(const void *a, const void *b)
{
	const uint32_t *x = a, *y = b; /* first member: count */

	return (*x < *y) - (*x > *y);
}

static int heatmap_row(struct sim_heatmap *hm)
{
	if (plan_grow((void **)&hm->counts, &hm->cap, (hm->nepochs + 1) * hm->page_bins, sizeof(*hm->counts)) < 0)
		return -ENOMEM;
	memset(hm->counts + hm->nepochs * hm->page_bins, 0, hm->page_bins * sizeof(*hm->counts));
	return 0;
}

static int baseline_epoch_end(struct engine *e)
{
	const struct sim_config *c = e->cfg;
	struct sim_result *opt = e->res;
	uint64_t u0 = 0, u1 = 0, acc = 0, hits = 0;
	double lat = 0;

	if (plan_grow((void **)&e->sortbuf, &e->sortbuf_cap, e->ntouched, sizeof(*e->sortbuf)) < 0)
		return -ENOMEM;
	for (size_t i = 0; i < e->ntouched; i++) {
		struct sseg *s = &e->segs[e->touched[i].seg];

		e->sortbuf[i].count = s->counts[e->touched[i].page];
		e->sortbuf[i].bytes = (uint32_t)s->page_size;
		s->counts[e->touched[i].page] = 0;
	}
	/* In hindsight: the epoch's most accessed pages fill the fast tier, then the next. */
	qsort(e->sortbuf, e->ntouched, sizeof(*e->sortbuf), by_count_desc);
	for (size_t i = 0; i < e->ntouched; i++) {
		uint32_t n = e->sortbuf[i].count, b = e->sortbuf[i].bytes;

		acc += n;
		if (u0 + b <= e->cap[0]) {
			u0 += b;
			hits += n;
			lat += c->lat_ns[0] * n;
		} else if (ntiers(e) == 3 && u1 + b <= e->cap[1]) {
			u1 += b;
			lat += c->lat_ns[1] * n;
		} else {
			lat += c->lat_ns[ntiers(e) - 1] * n;
		}
	}
	e->ntouched = 0;
	opt->accesses += acc;
	opt->fast_hits += hits;
	e->lat_sum += lat;
	end_epoch_stats(opt, acc, hits);
	end_epoch_stats(e->nomig, e->nm_ep_acc, e->nm_ep_hits);
	e->nm_ep_acc = e->nm_ep_hits = 0;
	if (e->hm) {
		e->hm->nepochs++;
		if (heatmap_row(e->hm) < 0)
			return -ENOMEM;
	}
	e->epoch++;
	return 0;
}

static int baseline_event(struct engine *e, const struct trace_rec *rec, char *why, size_t whylen)
{
	uint32_t w = rec->u16 ? rec->u16 : 1;
	struct tierd_page *pg;
	struct sseg *s;
	int r = check_event(e, rec, &s, why, whylen);

	if (r < 0 || (r = advance(e, rec->a, false, why, whylen)) < 0)
		return r;
	if (rec->u8 != TIERD_EV_ACCESS)
		return 0;
	if (!s->counts && !(s->counts = calloc(s->npages, sizeof(*s->counts))))
		return -ENOMEM;
	if (s->counts[rec->b] == 0) {
		if (plan_grow((void **)&e->touched, &e->touched_cap, e->ntouched + 1, sizeof(*e->touched)) < 0)
			return -ENOMEM;
		e->touched[e->ntouched].seg = (uint32_t)(s - e->segs);
		e->touched[e->ntouched++].page = rec->b;
	}
	s->counts[rec->b] = s->counts[rec->b] > UINT32_MAX - w ? UINT32_MAX : s->counts[rec->b] + w;
	pg = &s->pages[rec->b];
	if (pg->node < 0) {
		int t = tier_with_room(e->nm_used, e->cap, ntiers(e), 0, s->page_size);

		pg->node = (int16_t)(t < 0 ? (int)ntiers(e) - 1 : t);
		e->nm_used[pg->node] += s->page_size;
	}
	e->nomig->accesses += w;
	e->nm_ep_acc += w;
	e->nm_lat += e->cfg->lat_ns[pg->node] * w;
	if (pg->node == 0) {
		e->nomig->fast_hits += w;
		e->nm_ep_hits += w;
	}
	if (e->hm && e->total_pages) {
		uint64_t bin = (s->base + rec->b) * e->hm->page_bins / e->total_pages;

		e->hm->counts[e->hm->nepochs * e->hm->page_bins + bin] += w;
	}
	return 0;
}

int sim_run_baselines(struct sim_source *src, const struct sim_config *cfg, struct sim_result *optimum,
		      struct sim_result *nomig, struct sim_heatmap *hm, char *why, size_t whylen)
{
	struct engine e;
	struct trace_rec rec;
	int r;

	memset(optimum, 0, sizeof(*optimum));
	memset(nomig, 0, sizeof(*nomig));
	if (whylen)
		why[0] = '\0';
	snprintf(optimum->policy, sizeof(optimum->policy), "optimum");
	snprintf(nomig->policy, sizeof(nomig->policy), "no-migration");
	optimum->hot_on_fast_min = optimum->hot_on_fast_end = -1;
	nomig->hot_on_fast_min = nomig->hot_on_fast_end = -1;
	if (sim_source_header(src)->flavour != TRACE_FULL)
		return fail(why, whylen, "not a full trace");
	if (cfg->ntiers < 2 || cfg->ntiers > 3 || !cfg->fast_bytes)
		return fail(why, whylen, "the model needs 2 or 3 tiers and a fast tier");
	r = sim_source_rewind(src, why, whylen);
	if (r < 0)
		return r;
	engine_init(&e, cfg, sim_source_header(src));
	e.res = optimum;
	e.nomig = nomig;
	if (hm) {
		memset(hm, 0, sizeof(*hm));
		hm->page_bins = 64;
		e.hm = hm;
		if (heatmap_row(hm) < 0)
			return -ENOMEM;
	}
	while ((r = sim_source_next(src, &rec, why, whylen)) > 0) {
		if (rec.type == TREC_SEG)
			r = seg_add(&e, &rec, false, why, whylen);
		else if (rec.type == TREC_EVENT)
			r = baseline_event(&e, &rec, why, whylen);
		if (r < 0)
			break;
	}
	if (r == 0 && (r = baseline_epoch_end(&e)) == 0) {
		finish_result(optimum, e.lat_sum);
		finish_result(nomig, e.nm_lat);
		if (e.gen == NULL && src->gen && gen_hot_from_epoch(src->gen)) {
			/* No-migration keeps first-touch placement: its hot set share never changes. */
			e.gen = src->gen;
			nomig->hot_on_fast_min = nomig->hot_on_fast_end = hot_on_fast(&e);
		}
		if (hm)
			hm->total_pages = e.total_pages;
	}
	engine_fini(&e);
	return r < 0 ? reason(r, why, whylen) : 0;
}

void sim_heatmap_free(struct sim_heatmap *hm)
{
	free(hm->counts);
	memset(hm, 0, sizeof(*hm));
}

/* ---- SAMPLED traces: tierd's own inputs, replayed ------------------------------------------ */

int sim_replay_sampled(struct sim_source *src, const char *spec, const struct tierd_policy_param *params,
		       size_t nparams, FILE *decision_log, struct sim_result *res, char *why,
		       size_t whylen)
{
	const struct trace_header *h = sim_source_header(src);
	struct tierd_policy_env env = { .abi_version = TIERD_POLICY_ABI_VERSION, .seed = h->seed,
					.epoch_ms = h->epoch_ms };
	struct sim_config cfg;
	struct tierd_view v = { .size = sizeof(v) };
	int8_t node_tier[TIERD_MAX_NODES];
	struct engine e;
	struct trace_rec rec;
	uint32_t epoch = (uint32_t)h->first_epoch; /* events before the first EPOCH record */
	int r;

	memset(res, 0, sizeof(*res));
	res->hot_on_fast_min = res->hot_on_fast_end = -1;
	if (whylen)
		why[0] = '\0';
	if (h->flavour != TRACE_SAMPLED)
		return fail(why, whylen, "not a sampled trace");
	r = sim_source_rewind(src, why, whylen);
	if (r < 0)
		return r;
	sim_config_defaults(&cfg);
	engine_init(&e, &cfg, h);
	e.res = res;
	memset(node_tier, -1, sizeof(node_tier));
	r = engine_open_policy(&e, spec, params, nparams, &env, decision_log, why, whylen);
	if (r < 0)
		return r;
	while (r >= 0 && (r = sim_source_next(src, &rec, why, whylen)) > 0) {
		struct sseg *s = NULL;

		switch (rec.type) {
		case TREC_SEG: {
			struct tierd_seg_view sv;

			r = seg_arrived(&e, &rec, false, &sv, why, whylen);
			if (r < 0)
				break;
			(void)policy_seg_add(e.pol, &sv);
			break;
		}
		case TREC_SEG_END:
			flush_events(&e);
			if ((s = seg_find(&e, rec.u32))) {
				policy_seg_remove(e.pol, s->id);
				s->removed = true;
			}
			break;
		case TREC_EVENT: {
			uint16_t w = rec.u16 ? rec.u16 : 1;
			struct tierd_page *pg;
			int node;

			r = check_event(&e, &rec, &s, why, whylen);
			if (r < 0)
				break;
			pg = &s->pages[rec.b];
			if (rec.u8 == TIERD_EV_FAULT || rec.u8 == TIERD_EV_SAMPLE) {
				pg->accesses = pg->accesses > UINT32_MAX - w ? UINT32_MAX : pg->accesses + w;
				pg->last_epoch = epoch;
				node = pg->node;
				res->accesses += w;
				if (node >= 0 && node < TIERD_MAX_NODES && node_tier[node] == 0)
					res->fast_hits += w;
			}
			push_event(&e, &(struct tierd_event){ .time_ns = rec.a, .page = rec.b, .seg = s->id,
							       .tid = (uint32_t)rec.c, .kind = rec.u8,
							       .weight = w });
			break;
		}
		case TREC_EPOCH:
			flush_events(&e);
			epoch = rec.u32;
			v = (struct tierd_view){ .size = sizeof(v), .epoch = rec.u32, .now_ns = rec.a,
						 .epoch_ms = h->epoch_ms, .max_move_bytes = rec.b,
						 .fast_budget_bytes = rec.c, .migrate = rec.u8 ? 1 : 0,
						 .ntiers = rec.u16 < TIERD_MAX_TIERS ? rec.u16 : TIERD_MAX_TIERS };
			for (size_t i = 0; i < e.nsegs; i++)
				e.segs[i].nclosed = 0;
			break;
		case TREC_TIER:
			if (rec.u8 < TIERD_MAX_TIERS)
				v.tiers[rec.u8] = (struct tierd_tier_view){
					.capacity_bytes = rec.a, .free_bytes = rec.b, .used_bytes = rec.c,
					.nnodes = rec.u16, .target_node = (int32_t)rec.u32 };
			break;
		case TREC_NODE_TIER:
			if (rec.u8 < TIERD_MAX_NODES)
				node_tier[rec.u8] = (int8_t)(int16_t)rec.u16;
			break;
		case TREC_NODES:
			if (!(s = seg_find(&e, rec.u32)) || rec.a >= s->npages || rec.b > s->npages - rec.a) {
				r = fail(why, whylen, "NODES record outside segment %u", rec.u32);
				break;
			}
			for (uint64_t p = rec.a; p < rec.a + rec.b; p++)
				s->pages[p].node = (int16_t)(int64_t)rec.c;
			break;
		case TREC_REGIONS_BEGIN:
			if ((s = seg_find(&e, rec.u32)))
				s->nregs = 0;
			break;
		case TREC_REGION:
			if (!(s = seg_find(&e, rec.u32)) || rec.a >= rec.b || rec.b > s->npages) {
				r = fail(why, whylen, "REGION record outside segment %u", rec.u32);
				break;
			}
			if (plan_grow((void **)&s->regs, &s->regs_cap, s->nregs + 1, sizeof(*s->regs)) < 0) {
				r = -ENOMEM;
				break;
			}
			{
				uint32_t lo = (uint32_t)rec.c, hi = (uint32_t)(rec.c >> 32);
				struct tierd_region *rg = &s->regs[s->nregs++];

				*rg = (struct tierd_region){ .start = rec.a, .end = rec.b, .samples = rec.u16 };
				memcpy(&rg->score, &lo, sizeof(lo));
				memcpy(&rg->prev_score, &hi, sizeof(hi));
			}
			break;
		case TREC_CLOSED:
			if (!(s = seg_find(&e, rec.u32)) || rec.a >= s->npages || rec.b > s->npages - rec.a) {
				r = fail(why, whylen, "CLOSED record outside segment %u", rec.u32);
				break;
			}
			if (plan_grow((void **)&s->closed, &s->closed_cap, s->nclosed + 1, sizeof(*s->closed)) < 0) {
				r = -ENOMEM;
				break;
			}
			s->closed[s->nclosed++] = (struct tierd_window){ .seg = s->id, .start = rec.a,
									 .npages = rec.b };
			break;
		case TREC_DECIDE: {
			struct tierd_plan plan = { .promote = e.up, .demote = e.down };
			uint32_t lo = (uint32_t)rec.a, hi = (uint32_t)(rec.a >> 32);
			size_t nviews = 0;

			flush_events(&e);
			memcpy(&v.high_wm, &lo, sizeof(lo));
			memcpy(&v.low_wm, &hi, sizeof(hi));
			v.window_bytes = rec.b;
			memcpy(v.node_tier, node_tier, sizeof(node_tier));
			for (size_t i = 0; i < e.nsegs; i++)
				if (!e.segs[i].removed)
					seg_view(&e.segs[i], &e.views[nviews++]);
			v.nsegs = (uint32_t)nviews;
			v.segs = e.views;
			plan.max_promote = plan.max_demote = v.migrate ? e.moves_cap : 0;
			if (policy_picks_windows(e.pol) && rec.c) {
				if (plan_grow((void **)&e.pwin, &e.pwin_cap, rec.c, sizeof(*e.pwin)) < 0) {
					r = -ENOMEM;
					break;
				}
				plan.windows = e.pwin;
				plan.max_windows = rec.c;
			}
			if (policy_decide(e.pol, &v, &plan) < 0 && !res->disabled[0] && policy_disabled(e.pol))
				snprintf(res->disabled, sizeof(res->disabled), "%s", policy_disabled(e.pol));
			res->decides++;
			res->epochs++;
			res->pages_promoted += plan.npromote;
			res->pages_demoted += plan.ndemote;
			for (size_t i = 0; i < plan.npromote + plan.ndemote; i++) {
				const struct tierd_move *m = i < plan.npromote ? &plan.promote[i]
									      : &plan.demote[i - plan.npromote];

				if ((s = seg_find(&e, m->seg)))
					res->bytes_migrated += s->page_size; /* planned, not applied */
			}
			break;
		}
		default:
			break; /* newer record types: skipped */
		}
	}
	if (r >= 0) {
		flush_events(&e);
		finish_result(res, 0);
		r = 0;
	}
	policy_close(e.pol);
	engine_fini(&e);
	return reason(r, why, whylen);
}

/* ---- charts ------------------------------------------------------------------------------- */

static const char *const palette[] = { "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e",
				       "#9467bd", "#8c564b", "#e377c2", "#7f7f7f" };

static void svg_text_escaped(FILE *f, const char *s)
{
	for (; *s; s++) {
		if (*s == '<')
			fputs("&lt;", f);
		else if (*s == '>')
			fputs("&gt;", f);
		else if (*s == '&')
			fputs("&amp;", f);
		else
			fputc(*s, f);
	}
}

#define SVG_W 820
#define SVG_H 440
#define SVG_L 60
#define SVG_R 170
#define SVG_T 40
#define SVG_B 50
/* Points per polyline at most: a chart wider than its pixels only grows the file. */
#define SVG_MAX_POINTS 640

void sim_write_svg(FILE *f, const struct sim_result *res, size_t n, const char *title)
{
	double pw = SVG_W - SVG_L - SVG_R, ph = SVG_H - SVG_T - SVG_B;
	size_t maxx = 1;

	for (size_t i = 0; i < n; i++)
		maxx = res[i].nseries > maxx ? res[i].nseries : maxx;
	fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
		"font-family=\"sans-serif\" font-size=\"12\">\n", SVG_W, SVG_H);
	fprintf(f, "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n<text x=\"%d\" y=\"24\" "
		"font-size=\"15\">", SVG_L);
	svg_text_escaped(f, title);
	fputs("</text>\n", f);
	fprintf(f, "<g stroke=\"black\"><line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\"/><line x1=\"%d\" "
		"y1=\"%d\" x2=\"%.0f\" y2=\"%d\"/></g>\n", SVG_L, SVG_T, SVG_L, SVG_H - SVG_B, SVG_L,
		SVG_H - SVG_B, SVG_L + pw, SVG_H - SVG_B);
	for (int k = 0; k <= 4; k++) {
		double y = SVG_T + ph * (1 - k / 4.0), x = SVG_L + pw * k / 4.0;

		fprintf(f, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>"
			"<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%.2f</text>\n", SVG_L, y, SVG_L + pw,
			y, SVG_L - 6, y + 4, k / 4.0);
		fprintf(f, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%zu</text>\n", x,
			SVG_H - SVG_B + 18, (size_t)((double)maxx * k / 4.0));
	}
	fprintf(f, "<text x=\"%.0f\" y=\"%d\" text-anchor=\"middle\">epoch</text>\n", SVG_L + pw / 2,
		SVG_H - 12);
	fprintf(f, "<text x=\"16\" y=\"%.0f\" transform=\"rotate(-90 16 %.0f)\" text-anchor=\"middle\">"
		"fast-tier hit ratio</text>\n", SVG_T + ph / 2, SVG_T + ph / 2);
	for (size_t i = 0; i < n; i++) {
		const struct sim_result *r = &res[i];
		size_t step = (r->nseries + SVG_MAX_POINTS - 1) / SVG_MAX_POINTS;

		if (!step)
			continue;
		fprintf(f, "<polyline fill=\"none\" stroke-width=\"1.5\" stroke=\"%s\" points=\"",
			palette[i % 8]);
		for (size_t j = 0; j < r->nseries; j += step) {
			double sum = 0;
			size_t k;

			for (k = j; k < j + step && k < r->nseries; k++)
				sum += r->series[k];
			fprintf(f, "%.1f,%.1f ", SVG_L + pw * ((double)j + (double)(k - j) / 2) / (double)maxx,
				SVG_T + ph * (1 - sum / (double)(k - j)));
		}
		fputs("\"/>\n", f);
		fprintf(f, "<rect x=\"%.0f\" y=\"%zu\" width=\"14\" height=\"4\" fill=\"%s\"/><text x=\"%.0f\" "
			"y=\"%zu\">", SVG_L + pw + 14, SVG_T + 6 + 20 * i, palette[i % 8], SVG_L + pw + 34,
			SVG_T + 11 + 20 * i);
		svg_text_escaped(f, r->policy);
		fprintf(f, " %.3f</text>\n", r->hit_ratio);
	}
	fputs("</svg>\n", f);
}

#define HM_MAX_COLS 200

void sim_write_heatmap(FILE *f, const struct sim_heatmap *hm, const char *title)
{
	size_t cols = hm->nepochs < HM_MAX_COLS ? hm->nepochs : HM_MAX_COLS, rows = hm->page_bins;
	double pw = SVG_W - SVG_L - 40, ph = SVG_H - SVG_T - SVG_B, maxv = 0;
	double *grid = cols && rows ? calloc(cols * rows, sizeof(*grid)) : NULL;

	fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
		"font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%%\" height=\"100%%\" "
		"fill=\"white\"/>\n<text x=\"%d\" y=\"24\" font-size=\"15\">", SVG_W, SVG_H, SVG_L);
	svg_text_escaped(f, title);
	fputs(" (colour: log of accesses)</text>\n", f);
	if (grid) {
		for (size_t ep = 0; ep < hm->nepochs; ep++)
			for (size_t b = 0; b < rows; b++) {
				double *g = &grid[(ep * cols / hm->nepochs) * rows + b];

				*g += hm->counts[ep * rows + b];
				maxv = *g > maxv ? *g : maxv;
			}
		for (size_t c = 0; c < cols; c++)
			for (size_t b = 0; b < rows; b++) {
				double v = grid[c * rows + b], x;

				if (v <= 0)
					continue;
				x = log1p(v) / log1p(maxv);
				/* White to dark blue. */
				fprintf(f, "<rect x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\" "
					"fill=\"rgb(%d,%d,%d)\"/>\n", SVG_L + pw * (double)c / (double)cols,
					SVG_T + ph * (double)b / (double)rows, pw / (double)cols + 0.05,
					ph / (double)rows + 0.05, (int)(255 - 247 * x), (int)(255 - 207 * x),
					(int)(255 - 148 * x));
			}
	}
	fprintf(f, "<g stroke=\"black\" fill=\"none\"><rect x=\"%d\" y=\"%d\" width=\"%.0f\" "
		"height=\"%.0f\"/></g>\n", SVG_L, SVG_T, pw, ph);
	fprintf(f, "<text x=\"%d\" y=\"%d\">0</text><text x=\"%.0f\" y=\"%d\" text-anchor=\"end\">%zu "
		"epochs</text>\n", SVG_L, SVG_H - SVG_B + 18, SVG_L + pw, SVG_H - SVG_B + 18, hm->nepochs);
	fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"end\">0</text><text x=\"%d\" y=\"%.0f\" "
		"text-anchor=\"end\">%" PRIu64 "</text>\n", SVG_L - 6, SVG_T + 10, SVG_L - 6, SVG_T + ph,
		hm->total_pages);
	fprintf(f, "<text x=\"16\" y=\"%.0f\" transform=\"rotate(-90 16 %.0f)\" text-anchor=\"middle\">"
		"page offset</text>\n</svg>\n", SVG_T + ph / 2, SVG_T + ph / 2);
	free(grid);
}
