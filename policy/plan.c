/* SPDX-License-Identifier: MIT */
/* Shared pure helpers of the built-in policies: candidates, the budgeted planner, parameters. */
#include "plan.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool plan_may_move(const struct tierd_view *v)
{
	return v->migrate == 1 && v->ntiers >= 2 && v->ntiers <= TIERD_MAX_TIERS &&
	       v->tiers[0].target_node >= 0;
}

bool plan_can_demote(const struct tierd_view *v)
{
	for (uint32_t t = 1; t < v->ntiers && t < TIERD_MAX_TIERS; t++)
		if (v->tiers[t].target_node >= 0)
			return true;
	return false;
}

static int by_key(const struct plan_cand *x, const struct plan_cand *y)
{
	if (x->seg != y->seg)
		return x->seg < y->seg ? -1 : 1;
	return (x->page > y->page) - (x->page < y->page);
}

static int by_hot(const void *a, const void *b)
{
	const struct plan_cand *x = a, *y = b;

	if (x->score != y->score)
		return x->score > y->score ? -1 : 1;
	return by_key(x, y);
}

static int by_cold(const void *a, const void *b)
{
	const struct plan_cand *x = a, *y = b;

	if (x->score != y->score)
		return x->score < y->score ? -1 : 1;
	return by_key(x, y);
}

void plan_sort_hot_first(struct plan_cand *c, size_t n)
{
	if (n > 1) /* c may be NULL when there is nothing */
		qsort(c, n, sizeof(*c), by_hot);
}

void plan_sort_cold_first(struct plan_cand *c, size_t n)
{
	if (n > 1)
		qsort(c, n, sizeof(*c), by_cold);
}

static void put(struct tierd_move *m, size_t *n, const struct plan_cand *c)
{
	m[(*n)++] = (struct tierd_move){ .seg = c->seg, .page = c->page, .score = c->score };
}

uint64_t plan_fill(const struct plan_cand *up, size_t nup, const struct plan_cand *down, size_t ndown,
		   const struct plan_budget *b, struct tierd_plan *plan)
{
	uint64_t used = b->fast_used_bytes, free_bytes = b->fast_free_bytes, moved = 0;
	uint64_t high = (uint64_t)((double)b->fast_budget_bytes * b->high_wm);
	uint64_t low = (uint64_t)((double)b->fast_budget_bytes * b->low_wm);
	size_t d = 0;

	plan->npromote = plan->ndemote = 0;
	if (!b->can_demote)
		ndown = 0;
	/* Over the high watermark: the coldest go, down to the low one. */
	if (used > high)
		while (used > low && d < ndown && plan->ndemote < plan->max_demote &&
		       moved + down[d].bytes <= b->max_move_bytes) {
			used -= down[d].bytes;
			free_bytes += down[d].bytes;
			moved += down[d].bytes;
			put(plan->demote, &plan->ndemote, &down[d++]);
		}
	for (size_t i = 0; i < nup && plan->npromote < plan->max_promote; i++) {
		uint64_t sz = up[i].bytes;

		if (moved + sz > b->max_move_bytes)
			break;
		if (used + sz <= high && free_bytes >= sz) {
			used += sz;
			free_bytes -= sz;
			moved += sz;
			put(plan->promote, &plan->npromote, &up[i]);
			continue;
		}
		/* Full: swap with the coldest remaining fast page if this one is clearly hotter and
		 * the swap frees at least what it takes (no ping-pong between equals). */
		if (d < ndown && plan->ndemote < plan->max_demote && down[d].bytes >= sz &&
		    moved + sz + down[d].bytes <= b->max_move_bytes &&
		    down[d].score + b->swap_margin <= up[i].score) {
			used = used - down[d].bytes + sz;
			free_bytes = free_bytes + down[d].bytes - sz;
			moved += sz + down[d].bytes;
			put(plan->demote, &plan->ndemote, &down[d++]);
			put(plan->promote, &plan->npromote, &up[i]);
			continue;
		}
		/* Hottest first: if this one does not fit, nothing colder should displace anything. */
		break;
	}
	return moved;
}

int plan_param_float(const struct tierd_policy_param *p, double lo, double hi, float *out, char *err,
		     size_t errlen)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(p->value, &end);
	if (errno || end == p->value || *end || !isfinite(v) || v < lo || v > hi) {
		snprintf(err, errlen, "parameter %s=\"%s\": expected a number in [%g, %g]", p->key,
			 p->value, lo, hi);
		return -EINVAL;
	}
	*out = (float)v;
	return 0;
}

int plan_grow(void **buf, size_t *cap, size_t need, size_t elem)
{
	size_t n = *cap ? *cap : 256;
	void *p;

	if (need <= *cap)
		return 0;
	while (n < need)
		n *= 2;
	p = realloc(*buf, n * elem);
	if (!p)
		return -ENOMEM;
	*buf = p;
	*cap = n;
	return 0;
}

int plan_segs_add(struct plan_segs *t, const struct tierd_seg_view *seg, size_t elem)
{
	uint64_t *chunks;
	void *pages;

	if (plan_segs_find(t, seg->id))
		return -EEXIST;
	if (plan_grow((void **)&t->s, &t->cap, t->n + 1, sizeof(*t->s)) < 0)
		return -ENOMEM;
	pages = calloc(seg->npages ? seg->npages : 1, elem);
	chunks = calloc(seg->npages / 4096 + 1, sizeof(*chunks));
	if (!pages || !chunks) {
		free(pages);
		free(chunks);
		return -ENOMEM;
	}
	t->s[t->n++] = (struct plan_seg){ .id = seg->id, .kind = seg->kind, .npages = seg->npages,
					  .page_size = seg->page_size, .pages = pages, .chunks = chunks };
	return 0;
}

void plan_segs_remove(struct plan_segs *t, uint32_t id)
{
	for (size_t i = 0; i < t->n; i++)
		if (t->s[i].id == id) {
			free(t->s[i].pages);
			free(t->s[i].chunks);
			memmove(&t->s[i], &t->s[i + 1], (t->n - i - 1) * sizeof(*t->s));
			t->n--;
			t->last = 0;
			return;
		}
}

struct plan_seg *plan_segs_find(struct plan_segs *t, uint32_t id)
{
	if (t->last < t->n && t->s[t->last].id == id)
		return &t->s[t->last];
	for (size_t i = 0; i < t->n; i++)
		if (t->s[i].id == id) {
			t->last = i;
			return &t->s[i];
		}
	return NULL;
}

struct plan_seg *plan_segs_get(struct plan_segs *t, const struct tierd_seg_view *seg, size_t elem)
{
	struct plan_seg *s = plan_segs_find(t, seg->id);

	if (!s && seg->pages && plan_segs_add(t, seg, elem) == 0)
		s = plan_segs_find(t, seg->id);
	return s && s->npages == seg->npages ? s : NULL;
}

void plan_segs_free(struct plan_segs *t)
{
	for (size_t i = 0; i < t->n; i++) {
		free(t->s[i].pages);
		free(t->s[i].chunks);
	}
	free(t->s);
	memset(t, 0, sizeof(*t));
}
