/* SPDX-License-Identifier: MIT */
/*
 * tierd's side of the policy ABI: starts and switches the placement policy, feeds it the access
 * events the fault path sees, builds its view of segments and tiers each epoch, and takes its plan
 * (policy/host.c validates it). A policy that fails is replaced by `none`, so tracking goes on.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "manager.h"
#include "plan.h"
#include "host.h"

/* Events buffered before observe() gets them: one call per this many faults at most. */
#define EVENT_BUF 1024

static void policy_log(int level, const char *fmt, ...)
{
	char buf[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (level < LOG_EMERG || level > LOG_DEBUG)
		level = LOG_INFO;
	log_ratelimited(level, 0, "policy: %s", buf);
}

static void seg_view(struct manager *m, struct segment *seg, struct tierd_seg_view *v)
{
	(void)m;
	if (seg->vregions_cap < seg->regions.n) {
		struct tierd_region *r = realloc(seg->vregions, seg->regions.max_regions * sizeof(*r));

		if (r) {
			seg->vregions = r;
			seg->vregions_cap = seg->regions.max_regions;
		}
	}
	*v = (struct tierd_seg_view){
		.id = seg->id,
		.kind = seg->kind == TIERD_SEG_HUGETLB ? TIERD_SEGV_HUGETLB : TIERD_SEGV_SHMEM,
		.page_size = seg->page_size,
		.npages = seg->npages,
		.pages = seg->pages,
		.regions = seg->vregions,
		.closed = seg->closed,
		.nclosed = seg->nclosed,
		.nattach = seg->nattach,
	};
	if (seg->vregions_cap < seg->regions.n)
		return; /* out of memory: no regions this epoch */
	for (size_t i = 0; i < seg->regions.n; i++) {
		const struct region *r = &seg->regions.r[i];

		seg->vregions[i] = (struct tierd_region){ .start = r->start, .end = r->end,
							  .score = r->score, .prev_score = r->prev_score,
							  .samples = r->samples };
	}
	v->nregions = seg->regions.n;
}

static void params_of(const struct tierd_config *cfg, const char *name,
		      struct tierd_policy_param *out, size_t *n)
{
	*n = 0;
	for (unsigned i = 0; i < cfg->n_policy_params; i++)
		if (!strcmp(cfg->policy_params[i].policy, name))
			out[(*n)++] = (struct tierd_policy_param){ .key = cfg->policy_params[i].key,
								   .value = cfg->policy_params[i].value };
}

int manager_policy_open(const struct tierd_config *cfg, const char *name,
			const struct tierd_policy_param *params, size_t nparams, struct policy **ret,
			char *why, size_t whylen)
{
	struct tierd_policy_param all[TIERD_MAX_POLICY_PARAMS + TIERD_CONTROL_MAX_ARGS];
	struct tierd_policy_env env = { .abi_version = TIERD_POLICY_ABI_VERSION,
					.epoch_ms = cfg->epoch_ms,
					.seed = cfg->policy_seed,
					.log = policy_log };
	size_t n;

	/* The configuration's [policy.NAME] parameters, then those given here (tierctl policy
	 * set), which win key by key. */
	params_of(cfg, name, all, &n);
	for (size_t i = 0; i < nparams; i++) {
		size_t k = 0;

		while (k < n && strcmp(all[k].key, params[i].key))
			k++;
		if (k == n && n == sizeof(all) / sizeof(all[0])) {
			snprintf(why, whylen, "more than %zu policy parameters", n);
			return -E2BIG;
		}
		all[k] = params[i];
		n += k == n;
	}
	return policy_open(name, cfg->policy_dir, all, n, &env, ret, why, whylen);
}

/* Hands every segment to a freshly opened policy. */
static int adopt_segments(struct manager *m, struct policy *p, char *why, size_t whylen)
{
	for (struct segment *s = m->segments; s; s = s->next) {
		struct tierd_seg_view v;
		int r;

		seg_view(m, s, &v);
		r = policy_seg_add(p, &v);
		if (r < 0) {
			snprintf(why, whylen, "seg_add(%u) failed: %s%s%s", s->id, strerror(-r),
				 policy_disabled(p) ? ": " : "", policy_disabled(p) ? policy_disabled(p) : "");
			return r;
		}
	}
	return 0;
}

int manager_policy_switch(struct manager *m, const char *name, const struct tierd_policy_param *params,
			  size_t nparams, char *why, size_t whylen)
{
	struct policy *p;
	int r;

	manager_policy_flush(m);
	r = manager_policy_open(&m->cfg, name, params, nparams, &p, why, whylen);
	if (r < 0)
		return r;
	r = adopt_segments(m, p, why, whylen);
	if (r < 0) {
		policy_close(p);
		return r;
	}
	/* Page state lives in the segments, not in the policy: nothing is lost by switching. */
	if (m->policy)
		log_info("Placement policy %s replaces %s", policy_name(p), policy_name(m->policy));
	else
		log_info("Placement policy: %s", policy_name(p));
	policy_close(m->policy);
	m->policy = p;
	policy_set_decision_log(p, m->decision_log);
	m->policy_failed_why[0] = '\0';
	return 0;
}

/* The policy failed (crash, error, invalid plan): say why, once, and track with `none`. */
static void fall_back(struct manager *m)
{
	char why[256];
	const char *reason = policy_disabled(m->policy);

	snprintf(m->policy_failed_why, sizeof(m->policy_failed_why), "%s: %s",
		 policy_name(m->policy), reason ? reason : "failed");
	log_error("Placement policy %s disabled: %s; tracking only (policy none) until it is set "
		  "again (tierctl policy set, or SIGHUP)", policy_name(m->policy),
		  reason ? reason : "failed");
	snprintf(why, sizeof(why), "%s", m->policy_failed_why);
	if (manager_policy_switch(m, "none", NULL, 0, why, sizeof(why)) < 0) {
		/* `none` cannot fail to start; if it did, keep the disabled policy: a disabled
		 * policy is never called, so nothing moves either. */
		log_error("Starting policy none: %s", why);
		return;
	}
	snprintf(m->policy_failed_why, sizeof(m->policy_failed_why), "%s", why);
}

void manager_policy_seg_add(struct manager *m, struct segment *seg)
{
	struct tierd_seg_view v;

	if (!m->policy)
		return;
	seg_view(m, seg, &v);
	if (policy_seg_add(m->policy, &v) < 0 || policy_disabled(m->policy))
		fall_back(m);
	manager_record_seg(m, seg, true);
}

void manager_policy_seg_remove(struct manager *m, struct segment *seg)
{
	/* Its events go first: they name a segment the policy still knows. */
	manager_policy_flush(m);
	if (m->policy)
		policy_seg_remove(m->policy, seg->id);
	manager_record_seg(m, seg, false);
}

void manager_policy_flush(struct manager *m)
{
	size_t n = m->nevents;

	m->nevents = 0;
	if (!n || !m->policy || policy_disabled(m->policy))
		return;
	policy_observe(m->policy, m->events, n);
	if (policy_disabled(m->policy))
		fall_back(m);
}

void manager_policy_event(struct manager *m, const struct segment *seg, uint64_t page, uint16_t kind)
{
	manager_policy_event_weighted(m, seg, page, kind, 1);
}

void manager_policy_event_weighted(struct manager *m, const struct segment *seg, uint64_t page,
				   uint16_t kind, uint16_t weight)
{
	struct tierd_event *e;

	if (!m->events) {
		m->events = calloc(EVENT_BUF, sizeof(*m->events));
		if (!m->events)
			return;
	}
	e = &m->events[m->nevents++];
	*e = (struct tierd_event){ .time_ns = (now_usec() - m->started_usec) * 1000, .page = page,
				   .seg = seg->id, .kind = kind, .weight = weight };
	manager_record_event(m, e);
	if (m->nevents == EVENT_BUF)
		manager_policy_flush(m);
}

int manager_policy_decide(struct manager *m, struct segment **segs, unsigned nsegs,
			  struct tierd_view *v, struct tierd_plan *plan)
{
	uint64_t min_page = UINT64_MAX, pages = 0;
	size_t max_moves = 0;
	int r;

	memset(plan, 0, sizeof(*plan));
	if (plan_grow((void **)&m->segviews, &m->segviews_cap, nsegs, sizeof(*m->segviews)) < 0)
		return -ENOMEM;
	for (unsigned i = 0; i < nsegs; i++) {
		seg_view(m, segs[i], &m->segviews[i]);
		min_page = segs[i]->page_size < min_page ? segs[i]->page_size : min_page;
		pages += segs[i]->npages;
	}
	v->segs = m->segviews;
	v->nsegs = nsegs;
	if (v->migrate && nsegs) {
		/* Room for every move max_move_bytes allows, and never more than there are pages. */
		uint64_t by_bytes = v->max_move_bytes / min_page;

		max_moves = (size_t)(by_bytes < pages ? by_bytes : pages);
	}
	if (plan_grow((void **)&m->promote, &m->promote_cap, max_moves, sizeof(*m->promote)) < 0 ||
	    plan_grow((void **)&m->demote, &m->demote_cap, max_moves, sizeof(*m->demote)) < 0 ||
	    plan_grow((void **)&m->pwindows, &m->pwindows_cap, m->cfg.max_windows, sizeof(*m->pwindows)) < 0)
		return -ENOMEM;
	*plan = (struct tierd_plan){ .promote = m->promote, .max_promote = max_moves,
				     .demote = m->demote, .max_demote = max_moves,
				     .windows = m->pwindows, .max_windows = m->cfg.max_windows };
	manager_policy_flush(m);
	manager_record_view(m, v);
	r = policy_decide(m->policy, v, plan);
	if (r < 0) {
		fall_back(m);
		memset(plan, 0, sizeof(*plan));
	}
	m->npwindows = plan->nwindows;
	return r;
}

void manager_policy_status(const struct manager *m, char *buf, size_t len)
{
	char why[sizeof(m->policy_failed_why) * 2 + 2];
	size_t k = 0;

	for (const char *c = m->policy_failed_why; *c && k + 2 < sizeof(why); c++) {
		if (*c == '"' || *c == '\\')
			why[k++] = '\\';
		why[k++] = (unsigned char)*c < 0x20 ? ' ' : *c;
	}
	why[k] = '\0';
	snprintf(buf, len, "{\"name\":\"%s\",\"picks_windows\":%s,\"failed\":%s%s%s}",
		 m->policy ? policy_name(m->policy) : "",
		 m->policy && policy_picks_windows(m->policy) ? "true" : "false",
		 k ? "\"" : "null", why, k ? "\"" : "");
}
