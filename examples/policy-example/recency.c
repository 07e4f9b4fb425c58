/* SPDX-License-Identifier: MIT */
/*
 * "recency": an example tierd placement policy, built as a module against <tierd/policy.h> only.
 *
 *   - promote a page that is not on the fast tier when it was touched within the last
 *     window_epochs epochs (most recently touched first, then most accessed);
 *   - while the fast tier holds more than high_wm of its budget, demote fast-tier pages untouched
 *     for idle_epochs epochs or more (longest idle first), down to low_wm.
 *
 * It keeps no per-page state of its own: the host's tierd_page.last_epoch and .accesses, built
 * from the events it delivered, are all it needs, so observe, seg_add and seg_remove are left
 * NULL. Everything it returns is a function of its parameters and the view: no clocks, no
 * randomness, ties broken by (segment, page), so a trace replays to the same plan anywhere.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tierd/policy.h>

/* Defaults: a page touched in the last second (4 epochs of 250 ms) is worth the fast tier; one
 * idle for two seconds is not worth keeping there when space is short. */
#define DEFAULT_WINDOW_EPOCHS 4u
#define DEFAULT_IDLE_EPOCHS 8u
/* Larger windows mean "touched at all in the last hour" at 250 ms epochs: no recency left. */
#define MAX_EPOCHS 14400u

struct recency {
	uint32_t window_epochs;
	uint32_t idle_epochs;
	/* Candidate buffer reused across epochs: decide() runs every epoch, and a policy that
	 * allocates per call can fail (and be disabled) at the worst time. */
	struct cand *cand;
	size_t ncand_alloc;
};

struct cand {
	uint32_t seg_index; /* into view->segs */
	uint32_t age;       /* epochs since the last touch */
	uint32_t accesses;
	uint32_t seg;
	uint64_t page;
};

static int parse_epochs(const char *key, const char *value, uint32_t *out, char *err, size_t errlen)
{
	unsigned long long v;
	char *end;

	/* strtoull accepts a sign and leading spaces; a parameter is digits only. */
	if (value[0] < '0' || value[0] > '9')
		goto bad;
	errno = 0;
	v = strtoull(value, &end, 10);
	if (errno != 0 || *end != '\0' || v < 1 || v > MAX_EPOCHS)
		goto bad;
	*out = (uint32_t)v;
	return 0;
bad:
	snprintf(err, errlen, "%s=%s: expected a whole number of epochs in 1..%u", key, value,
		 MAX_EPOCHS);
	return -EINVAL;
}

static int recency_init(void **state, const struct tierd_policy_env *env,
			const struct tierd_policy_param *params, size_t nparams, char *err,
			size_t errlen)
{
	struct recency *s;
	int r;

	s = calloc(1, sizeof(*s));
	if (!s) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	s->window_epochs = DEFAULT_WINDOW_EPOCHS;
	s->idle_epochs = DEFAULT_IDLE_EPOCHS;
	for (size_t i = 0; i < nparams; i++) {
		const char *key = params[i].key, *value = params[i].value;

		if (strcmp(key, "window_epochs") == 0)
			r = parse_epochs(key, value, &s->window_epochs, err, errlen);
		else if (strcmp(key, "idle_epochs") == 0)
			r = parse_epochs(key, value, &s->idle_epochs, err, errlen);
		else {
			snprintf(err, errlen, "unknown parameter \"%s\" (known: window_epochs, idle_epochs)",
				 key);
			r = -EINVAL;
		}
		if (r < 0) {
			free(s);
			return r;
		}
	}
	/* A page could be promoted and demoted on alternate epochs if idle were not longer than
	 * the window in which a touch earns promotion. */
	if (s->idle_epochs < s->window_epochs) {
		snprintf(err, errlen, "idle_epochs (%u) must be at least window_epochs (%u)",
			 s->idle_epochs, s->window_epochs);
		free(s);
		return -EINVAL;
	}
	if (env && env->log)
		env->log(TIERD_LOG_INFO, "recency: window_epochs=%u idle_epochs=%u", s->window_epochs,
			 s->idle_epochs);
	*state = s;
	return 0;
}

static void recency_fini(void *state)
{
	struct recency *s = state;

	if (!s)
		return;
	free(s->cand);
	free(s);
}

/* Most recent first, then most accessed; (segment, page) breaks ties so the order is total. */
static int cmp_promote(const void *x, const void *y)
{
	const struct cand *a = x, *b = y;

	if (a->age != b->age)
		return a->age < b->age ? -1 : 1;
	if (a->accesses != b->accesses)
		return a->accesses > b->accesses ? -1 : 1;
	if (a->seg != b->seg)
		return a->seg < b->seg ? -1 : 1;
	return a->page < b->page ? -1 : a->page > b->page;
}

/* Longest idle first, then least accessed, then (segment, page). */
static int cmp_demote(const void *x, const void *y)
{
	const struct cand *a = x, *b = y;

	if (a->age != b->age)
		return a->age > b->age ? -1 : 1;
	if (a->accesses != b->accesses)
		return a->accesses < b->accesses ? -1 : 1;
	if (a->seg != b->seg)
		return a->seg < b->seg ? -1 : 1;
	return a->page < b->page ? -1 : a->page > b->page;
}

/* The tier a page is on, or -1 when unknown (no node yet, or a node without a tier). */
static int page_tier(const struct tierd_view *view, const struct tierd_page *pg)
{
	if (pg->node < 0 || pg->node >= TIERD_MAX_NODES)
		return -1;
	return view->node_tier[pg->node];
}

static uint32_t page_age(const struct tierd_view *view, const struct tierd_page *pg)
{
	/* last_epoch 0 means never touched: older than anything. */
	if (pg->last_epoch == 0)
		return UINT32_MAX;
	return pg->last_epoch >= view->epoch ? 0 : view->epoch - pg->last_epoch;
}

static int reserve(struct recency *s, size_t n)
{
	struct cand *c;

	if (n <= s->ncand_alloc)
		return 0;
	c = realloc(s->cand, n * sizeof(*c));
	if (!c)
		return -ENOMEM;
	s->cand = c;
	s->ncand_alloc = n;
	return 0;
}

/* Collects the pages that qualify for `promote` (or demotion) into s->cand; returns the count. */
static size_t collect(struct recency *s, const struct tierd_view *view, bool promote)
{
	size_t n = 0;

	for (uint32_t i = 0; i < view->nsegs; i++) {
		const struct tierd_seg_view *seg = &view->segs[i];

		for (uint64_t p = 0; p < seg->npages; p++) {
			const struct tierd_page *pg = &seg->pages[p];
			int tier = page_tier(view, pg);
			uint32_t age = page_age(view, pg);

			/* A page in flight or of unknown placement: next epoch will tell. */
			if (tier < 0 || (pg->flags & TIERD_PAGE_MOVING))
				continue;
			if (promote ? (tier == 0 || age >= s->window_epochs)
				    : (tier != 0 || age < s->idle_epochs))
				continue;
			s->cand[n++] = (struct cand){ .seg_index = i, .age = age, .accesses = pg->accesses,
						      .seg = seg->id, .page = p };
		}
	}
	return n;
}

static float promote_score(const struct recency *s, const struct cand *c)
{
	return 1.0f - (float)c->age / (float)s->window_epochs;
}

static float demote_score(const struct cand *c)
{
	return c->age == UINT32_MAX ? 0.0f : 1.0f / (1.0f + (float)c->age);
}

static int recency_decide(void *state, const struct tierd_view *view, struct tierd_plan *plan)
{
	struct recency *s = state;
	const struct tierd_tier_view *fast = &view->tiers[0];
	uint64_t budget = view->max_move_bytes, used = fast->used_bytes, total_pages = 0;
	uint64_t high = (uint64_t)((double)view->high_wm * (double)view->fast_budget_bytes);
	uint64_t low = (uint64_t)((double)view->low_wm * (double)view->fast_budget_bytes);
	uint64_t slow_room = 0, fast_room;
	size_t n;
	int r;

	plan->npromote = 0;
	plan->ndemote = 0;
	/* Fields this module reads all exist in the version-1 view; a host never passes less. */
	if (view->size < sizeof(*view))
		return -EPROTO;
	if (!view->migrate || view->ntiers < 2)
		return 0;
	for (uint32_t i = 0; i < view->nsegs; i++)
		total_pages += view->segs[i].npages;
	if (total_pages > SIZE_MAX / sizeof(struct cand))
		return -ENOMEM;
	r = reserve(s, (size_t)total_pages);
	if (r < 0)
		return r;

	/* Demotions first: they make the room the promotions then use. They go to the nearest
	 * slower tier with room, so bound them by what the slower tiers that have a target hold. */
	for (uint32_t t = 1; t < view->ntiers && t < TIERD_MAX_TIERS; t++)
		if (view->tiers[t].target_node >= 0)
			slow_room += view->tiers[t].free_bytes;
	if (used > high && slow_room > 0) {
		n = collect(s, view, false);
		qsort(s->cand, n, sizeof(*s->cand), cmp_demote);
		for (size_t i = 0; i < n && used > low && plan->ndemote < plan->max_demote; i++) {
			uint64_t sz = view->segs[s->cand[i].seg_index].page_size;

			if (sz > budget || sz > slow_room)
				break;
			plan->demote[plan->ndemote++] = (struct tierd_move){
				.seg = s->cand[i].seg, .page = s->cand[i].page, .score = demote_score(&s->cand[i])
			};
			budget -= sz;
			slow_room -= sz;
			used = sz > used ? 0 : used - sz;
		}
	}

	/* Promotions: into free memory that exists now (the demotions above may not have moved
	 * yet), and never past the high watermark after this plan, which would demote next epoch
	 * what was promoted this one. */
	fast_room = fast->free_bytes;
	if (fast->target_node < 0 || used >= high)
		fast_room = 0;
	else if (high - used < fast_room)
		fast_room = high - used;
	if (fast_room == 0 || plan->max_promote == 0)
		return 0;
	n = collect(s, view, true);
	qsort(s->cand, n, sizeof(*s->cand), cmp_promote);
	for (size_t i = 0; i < n && plan->npromote < plan->max_promote; i++) {
		uint64_t sz = view->segs[s->cand[i].seg_index].page_size;

		/* Pages differ in size across segments: a smaller one further down may still fit,
		 * but taking pages out of order would break "most recent first"; stop here. */
		if (sz > budget || sz > fast_room)
			break;
		plan->promote[plan->npromote++] = (struct tierd_move){
			.seg = s->cand[i].seg, .page = s->cand[i].page, .score = promote_score(s, &s->cand[i])
		};
		budget -= sz;
		fast_room -= sz;
	}
	return 0;
}

/* The one exported symbol (the Makefile hides everything else). */
__attribute__((visibility("default"))) const struct tierd_policy_ops tierd_policy = {
	.abi_version = TIERD_POLICY_ABI_VERSION,
	.size = sizeof(struct tierd_policy_ops),
	.name = "recency",
	.description = "promote pages touched in the last window_epochs epochs; demote fast-tier "
		       "pages idle for idle_epochs epochs above the high watermark",
	.init = recency_init,
	.fini = recency_fini,
	.decide = recency_decide,
	.picks_windows = 0,
};
