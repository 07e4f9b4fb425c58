/* SPDX-License-Identifier: MIT */
/*
 * Placement: tiers discovered at start (and re-read every pass, so hot-add and hot-remove of nodes
 * are seen), and the migration pass every few epochs: learn where each tracked page lives, plan
 * promotions and demotions against the fast tier's budget, watermarks, free memory and the rate
 * limit, and move pages through the segments' aliases. With one tier it does nothing (track-only).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "manager.h"
#include "migrate.h"

int manager_tiers_init(struct manager *m)
{
	char desc[1024];
	int r = tiers_discover(m->cfg.sysfs_root, &m->topo);

	if (r < 0) {
		/* No NUMA sysfs (some containers): run as one tier, tracking only. */
		log_warning_errno(r, "Cannot read the NUMA topology under %s: %m; tracking only",
				  m->cfg.sysfs_root);
		memset(&m->topo, 0, sizeof(m->topo));
		m->topo.nnodes = 1;
		m->topo.ntiers = 1;
		return 0;
	}
	if (tiers_describe(&m->topo, desc, sizeof(desc)) > 0) {
		size_t l = strlen(desc);

		if (l && desc[l - 1] == '\n')
			desc[l - 1] = '\0';
		log_info("NUMA tiers:\n%s", desc);
	}
	if (m->topo.ntiers < 2)
		log_info("One memory tier: tracking only, nothing to migrate");
	else if (!m->cfg.migrate)
		log_info("%u memory tiers, migration disabled (--no-migrate): tracking only",
			 m->topo.ntiers);
	m->move_all = true;
	m->tokens_usec = now_usec();
	return 0;
}

static int node_tier(const struct manager *m, int node)
{
	const struct tier_node *n = node >= 0 ? tiers_node(&m->topo, node) : NULL;

	return n ? n->tier : -1;
}

/* The node of `tier` with the most free memory above the reserve; -1 if none has room. */
static int pick_node(const struct manager *m, unsigned tier, uint64_t *free_bytes)
{
	int best = -1;

	*free_bytes = 0;
	if (tier >= m->topo.ntiers)
		return -1;
	for (unsigned i = 0; i < m->topo.tier_size[tier]; i++) {
		const struct tier_node *n = tiers_node(&m->topo, m->topo.tier_nodes[tier][i]);
		uint64_t f;

		if (!n)
			continue;
		f = n->free_bytes > m->cfg.reserve_bytes ? n->free_bytes - m->cfg.reserve_bytes : 0;
		if (best < 0 || f > *free_bytes) {
			best = n->id;
			*free_bytes = f;
		}
	}
	return best;
}

static int refresh_topology(struct manager *m)
{
	struct tier_topology t;
	int r = tiers_refresh(m->cfg.sysfs_root, &m->topo);

	if (r == 0)
		return 0;
	/* A node came or went: discover again, and never target a node that is gone. */
	r = tiers_discover(m->cfg.sysfs_root, &t);
	if (r < 0)
		return log_ratelimited(LOG_WARNING, r, "Re-reading the NUMA topology: %m");
	if (!tiers_same_nodes(&m->topo, &t))
		log_notice("NUMA topology changed: now %u node(s) in %u tier(s)", t.nnodes, t.ntiers);
	m->topo = t;
	return 0;
}

static int grow(void **buf, size_t *cap, size_t need, size_t elem)
{
	void *p;
	size_t n = *cap ? *cap : 1024;

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

/* Gathers every page with a known node as a candidate; counts pages per node and fast use. */
static int gather(struct manager *m, struct segment **segs, unsigned nsegs, size_t *ncand,
		  uint64_t *fast_used)
{
	size_t n = 0;

	*fast_used = 0;
	for (unsigned si = 0; si < nsegs; si++) {
		struct segment *seg = segs[si];
		long r;

		r = migrate_populate_alias(seg);
		if (r < 0)
			log_ratelimited(LOG_WARNING, (int)r, "seg %u: mapping the alias for migration: %m",
					seg->id);
		r = migrate_query_nodes(seg);
		if (r < 0) {
			log_ratelimited(LOG_WARNING, (int)r, "seg %u: querying page nodes: %m", seg->id);
			continue;
		}
		if (grow((void **)&m->cands, &m->cands_cap, n + seg->npages, sizeof(*m->cands)) < 0)
			return -ENOMEM;
		memset(seg->pages_on_node, 0, sizeof(seg->pages_on_node));
		for (size_t ri = 0; ri < seg->regions.n; ri++) {
			const struct region *reg = &seg->regions.r[ri];

			for (uint64_t p = reg->start; p < reg->end; p++) {
				int node = seg->pages[p].node, tier = node_tier(m, node);

				if (node < 0 || tier < 0)
					continue;
				if (node < SEG_MAX_NODES)
					seg->pages_on_node[node]++;
				if (tier == 0)
					*fast_used += seg->page_size;
				m->cands[n++] = (struct migrate_candidate){
					.seg_index = si, .page_bytes = (uint32_t)seg->page_size,
					.page = p, .score = reg->score, .tier = (int8_t)tier };
			}
		}
	}
	*ncand = n;
	return 0;
}

/* Time one pass may spend moving pages. The loop serves no fault meanwhile: well under the
 * clients' hang timeout (2 s), and short enough that a fault waits at most this long. */
#define PASS_BUDGET_USEC 50000u

/* Moves the plan's pages of each segment to `node`, until the pass's deadline. */
static void execute(struct manager *m, struct segment **segs, unsigned nsegs,
		    const struct migrate_candidate *c, size_t n, int node, uint64_t deadline,
		    uint64_t *moved_bytes, uint64_t *moved_pages)
{
	for (unsigned si = 0; si < nsegs && n; si++) {
		size_t k = 0;
		long r;

		if (grow((void **)&m->pagebuf, &m->pagebuf_cap, n, sizeof(*m->pagebuf)) < 0)
			return;
		for (size_t i = 0; i < n; i++)
			if (c[i].seg_index == si)
				m->pagebuf[k++] = c[i].page;
		if (!k)
			continue;
		if (now_usec() > deadline)
			return;
		r = migrate_pages_to(segs[si], m->pagebuf, k, node, &m->move_all, deadline, &m->mstats);
		if (r < 0) {
			log_ratelimited(LOG_WARNING, (int)r, "seg %u: move_pages to node %d: %m",
					segs[si]->id, node);
			continue;
		}
		*moved_pages += (uint64_t)r;
		*moved_bytes += (uint64_t)r * segs[si]->page_size;
	}
}

void manager_placement(struct manager *m)
{
	struct segment *segs[1024];
	struct migrate_budget b = { .high_wm = m->cfg.high_wm, .low_wm = m->cfg.low_wm,
				    .hot_threshold = m->cfg.hot_threshold };
	struct migrate_plan plan;
	uint64_t now, fast_free, slow_free, up_bytes = 0, up = 0, down_bytes = 0, down = 0;
	unsigned nsegs = 0;
	size_t ncand;
	int fast, slow;

	if (!m->cfg.migrate || m->topo.ntiers < 2 || m->cfg.migrate_every_epochs == 0 ||
	    m->epoch % m->cfg.migrate_every_epochs)
		return;
	if (refresh_topology(m) < 0 || m->topo.ntiers < 2)
		return;

	/* Token bucket: rate_limit_mbps, at most one second's worth saved up. */
	now = now_usec();
	m->tokens_bytes += (now - m->tokens_usec) * (uint64_t)m->cfg.rate_limit_mbps; /* MB/s = B/us */
	m->tokens_usec = now;
	if (m->tokens_bytes > (uint64_t)m->cfg.rate_limit_mbps * 1000000u)
		m->tokens_bytes = (uint64_t)m->cfg.rate_limit_mbps * 1000000u;

	for (struct segment *s = m->segments; s && nsegs < 1024; s = s->next)
		if (s->nattach)
			segs[nsegs++] = s;
	if (!nsegs || gather(m, segs, nsegs, &ncand, &b.fast_used_bytes) < 0)
		return;

	fast = pick_node(m, 0, &fast_free);
	slow = pick_node(m, 1, &slow_free);
	if (fast < 0)
		return;
	b.fast_budget_bytes = m->cfg.fast_budget_bytes;
	if (!b.fast_budget_bytes) {
		/* Auto: 90 % of the fast tier's memory. */
		for (unsigned i = 0; i < m->topo.tier_size[0]; i++) {
			const struct tier_node *n = tiers_node(&m->topo, m->topo.tier_nodes[0][i]);

			b.fast_budget_bytes += n ? n->total_bytes / 10 * 9 : 0;
		}
	}
	b.fast_free_bytes = fast_free;
	b.max_move_bytes = m->tokens_bytes;
	migrate_plan_build(m->cands, ncand, &b, &plan);

	/* Demote first: it makes the room promotions count on. */
	now = now_usec();
	if (plan.ndemote && slow >= 0)
		execute(m, segs, nsegs, plan.demote, plan.ndemote, slow, now + PASS_BUDGET_USEC,
			&down_bytes, &down);
	if (plan.npromote)
		execute(m, segs, nsegs, plan.promote, plan.npromote, fast, now + PASS_BUDGET_USEC,
			&up_bytes, &up);
	m->mstats.promoted += up;
	m->mstats.demoted += down;
	m->tokens_bytes -= up_bytes + down_bytes < m->tokens_bytes ? up_bytes + down_bytes : m->tokens_bytes;
	if (up || down)
		log_info("placement: promoted %" PRIu64 " of %zu planned pages to node %d, demoted %" PRIu64
			 " of %zu to node %d (%.1f MiB moved; budget %.1f MiB)",
			 up, plan.npromote, fast, down, plan.ndemote, slow,
			 (double)(up_bytes + down_bytes) / 1048576.0,
			 (double)b.fast_budget_bytes / 1048576.0);
	else if (plan.npromote || plan.ndemote)
		log_ratelimited(LOG_WARNING, 0,
				"placement: none of %zu planned moves succeeded (not moved so far: "
				"nomem %" PRIu64 ", busy %" PRIu64 ", mapped %" PRIu64 ", other %" PRIu64 ")",
				plan.npromote + plan.ndemote, m->mstats.err_nomem, m->mstats.err_busy,
				m->mstats.err_access, m->mstats.err_other + m->mstats.err_fault);
}
