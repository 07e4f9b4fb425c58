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
#include "plan.h"
#include "migrate.h"
#include "mems.h"

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
		m->no_topology = true; /* nothing to re-read either */
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
	m->backoff_passes = m->skip_passes = 0; /* a node that came may take what others refused */
	return 0;
}


/* Pages whose node one pass (re)learns at most, all segments together: every 4096 of them cost a
 * move_pages query (and the alias's population), and the loop serves no fault meanwhile. Hot
 * regions come first; the rest of each segment is walked a slice per pass. Measured on the host:
 * a whole 4 GiB segment (1 Mi pages) took 0.25-0.5 s a pass. */
#define QUERY_BUDGET_PAGES (64u * 1024)

static void refresh(struct segment *seg, uint64_t first, uint64_t n)
{
	long r = migrate_populate_alias(seg, first, n);

	if (r < 0)
		log_ratelimited(LOG_WARNING, (int)r, "seg %u: mapping the alias for migration: %m",
				seg->id);
	r = migrate_query_nodes(seg, first, n);
	if (r < 0)
		log_ratelimited(LOG_WARNING, (int)r, "seg %u: querying page nodes: %m", seg->id);
}

/* Refreshes up to `left` pages of the segment's hot regions, going on from where the last pass
 * stopped (so a hot set larger than the budget is walked over several passes). Returns pages. */
static uint64_t locate_hot(struct manager *m, struct segment *seg, uint64_t left)
{
	size_t nr = seg->regions.n, ri = 0;
	uint64_t cur = seg->hot_cursor, done = 0;

	while (ri < nr && seg->regions.r[ri].end <= cur)
		ri++;
	if (ri == nr)
		ri = cur = 0;
	for (size_t k = 0; k < nr && done < left; k++) {
		const struct region *reg = &seg->regions.r[(ri + k) % nr];
		uint64_t from = reg->start, n;

		if (reg->score < m->cfg.hot_threshold)
			continue;
		if (k == 0 && cur > from && cur < reg->end)
			from = cur;
		n = reg->end - from < left - done ? reg->end - from : left - done;
		refresh(seg, from, n);
		done += n;
		seg->hot_cursor = from + n;
	}
	return done;
}

/* Learns where pages live, within the pass's budget: at most half of it on the hot regions, the
 * rest on the segment's next slice, so both advance every pass. */
static void locate(struct manager *m, struct segment **segs, unsigned nsegs)
{
	uint64_t budget = QUERY_BUDGET_PAGES / nsegs;

	if (budget < 512)
		budget = 512;
	for (unsigned si = 0; si < nsegs; si++) {
		struct segment *seg = segs[si];
		uint64_t left = budget - locate_hot(m, seg, budget / 2), walked = 0;

		while (left && walked < seg->npages) {
			uint64_t cur = seg->query_cursor < seg->npages ? seg->query_cursor : 0;
			uint64_t n = seg->npages - cur < left ? seg->npages - cur : left;

			refresh(seg, cur, n);
			left -= n;
			walked += n;
			seg->query_cursor = cur + n;
		}
	}
}

/* Where tracked pages are: per segment and node (status), and per tier (the policy's view). */
static void count(struct manager *m, struct segment **segs, unsigned nsegs)
{
	locate(m, segs, nsegs);
	memset(m->tier_used, 0, sizeof(m->tier_used));
	for (unsigned si = 0; si < nsegs; si++) {
		struct segment *seg = segs[si];

		memset(seg->pages_on_node, 0, sizeof(seg->pages_on_node));
		for (uint64_t p = 0; p < seg->npages; p++) {
			int node = seg->pages[p].node, tier = node_tier(m, node);

			if (node < 0 || tier < 0)
				continue;
			if (node < SEG_MAX_NODES)
				seg->pages_on_node[node]++;
			if (tier < TIERD_MAX_TIERS)
				m->tier_used[tier] += seg->page_size;
		}
	}
}

/* Time one pass may spend moving pages (migration.batch_ms). The loop serves no fault meanwhile:
 * well under the clients' hang timeout (2 s), and short enough that a fault waits at most this
 * long. */
#define PASS_BUDGET_USEC ((uint64_t)m->cfg.batch_ms * 1000u)
/* A batch's zap ranges per segment: each is a range in every ZAP and, with per-window
 * registration, a registration (a VMA split) in every client while the batch is out. */
#define BATCH_MAX_RUNS 512u
/* How long a batch waits for the clients' zaps before it moves whatever they zapped
 * (migration.batch_wait_ms). Faults on its pages wait this long at most, plus the move: far
 * below the clients' hang timeout. */
#define BATCH_WAIT_USEC ((uint64_t)m->cfg.batch_wait_ms * 1000u)
/* Passes skipped at most after passes that moved nothing (x migrate_every epochs). */
#define MAX_BACKOFF_PASSES 16u
/* Until a move has been timed: what a batch may hold. */
#define BATCH_FIRST_BYTES (8ull << 20)

/* Moves the plan's pages of each segment to `node`, until the pass's deadline. */
static void execute(struct manager *m, struct segment **segs, unsigned nsegs,
		    const struct migrate_candidate *c, size_t n, int node, uint64_t deadline,
		    uint64_t *moved_bytes, uint64_t *moved_pages)
{
	for (unsigned si = 0; si < nsegs && n; si++) {
		struct migrate_stats before;
		size_t k = 0;
		long r;

		if (plan_grow((void **)&m->pagebuf, &m->pagebuf_cap, n, sizeof(*m->pagebuf)) < 0)
			return;
		for (size_t i = 0; i < n; i++)
			if (c[i].seg_index == si)
				m->pagebuf[k++] = c[i].page;
		if (!k)
			continue;
		if (now_usec() > deadline)
			return;
		before = m->mstats;
		r = migrate_pages_to(segs[si], m->pagebuf, k, node, MIGRATE_MAPPED, &m->move_all,
				     deadline, &m->mstats);
		m->move_err = r < 0 ? (int)r : 0;
		events_moved(m, segs[si], k, r > 0 ? (uint64_t)r : 0, node, &before);
		if (r < 0) {
			log_ratelimited(LOG_WARNING, (int)r, "seg %u: move_pages to node %d: %m",
					segs[si]->id, node);
			continue;
		}
		*moved_pages += (uint64_t)r;
		*moved_bytes += (uint64_t)r * segs[si]->page_size;
	}
}

static int by_page(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return (x > y) - (x < y);
}

/* What one batch may move in a pass's time budget, from the throughput measured so far: more
 * would only zap pages that then wait for nothing. At least a swap of the largest pages (one
 * promoted, one demoted to make its room): below that a full fast tier could never change. */
static uint64_t batch_cap_bytes(const struct manager *m, uint64_t floor)
{
	double cap;

	if (m->mstats.move_usec < 20000 || !m->mstats.bytes_moved)
		cap = BATCH_FIRST_BYTES;
	else
		cap = (double)m->mstats.bytes_moved / (double)m->mstats.move_usec * PASS_BUDGET_USEC;
	return cap < (double)floor ? floor : (uint64_t)cap;
}

static void batch_clear(struct manager *m, struct segment *seg)
{
	struct seg_batch *b = &seg->batch;

	for (size_t i = 0; i < b->n; i++)
		seg->pages[b->pages[i]].flags &= (uint16_t)~PS_MOVING;
	free(b->pages);
	free(b->runs);
	*b = (struct seg_batch){ 0 };
	m->batches_active--;
}

void manager_batch_drop(struct manager *m, struct segment *seg)
{
	if (seg->batch.active)
		batch_clear(m, seg);
}

/*
 * Takes segment si's pages of the plan into its batch: demotions first, then promotions, at most
 * BATCH_MAX_RUNS runs (the pages at the highest offsets wait for a later pass). Returns pages
 * taken.
 */
static size_t batch_build(struct segment *seg, unsigned si, const struct migrate_plan *plan,
			  bool demote)
{
	struct seg_batch *b = &seg->batch;
	size_t n = 0, nd = 0, k = 0, cut;
	uint64_t *sorted, limit = UINT64_MAX;

	for (size_t i = 0; demote && i < plan->ndemote; i++)
		nd += plan->demote[i].seg_index == si;
	for (size_t i = 0; i < plan->npromote; i++)
		n += plan->promote[i].seg_index == si;
	n += nd;
	if (!n)
		return 0;
	b->pages = malloc(n * sizeof(*b->pages));
	sorted = malloc(n * sizeof(*sorted));
	b->runs = malloc(BATCH_MAX_RUNS * sizeof(*b->runs));
	if (!b->pages || !sorted || !b->runs) {
		free(sorted);
		free(b->pages);
		free(b->runs);
		*b = (struct seg_batch){ 0 };
		return 0;
	}
	for (size_t i = 0; demote && i < plan->ndemote; i++)
		if (plan->demote[i].seg_index == si)
			b->pages[k++] = plan->demote[i].page;
	for (size_t i = 0; i < plan->npromote; i++)
		if (plan->promote[i].seg_index == si)
			b->pages[k++] = plan->promote[i].page;
	memcpy(sorted, b->pages, n * sizeof(*sorted));
	qsort(sorted, n, sizeof(*sorted), by_page);
	for (size_t i = 0; i < n; i++) {
		struct page_run *r = b->nruns ? &b->runs[b->nruns - 1] : NULL;

		if (r && sorted[i] == r->start + r->n) {
			r->n++;
			continue;
		}
		if (b->nruns == BATCH_MAX_RUNS) {
			limit = sorted[i];
			break;
		}
		b->runs[b->nruns++] = (struct page_run){ .start = sorted[i], .n = 1 };
	}
	free(sorted);
	/* Keep the order (demotions, then hottest first), without the pages past the cut. */
	for (size_t i = cut = 0; i < n; i++) {
		if (b->pages[i] >= limit)
			continue;
		b->ndemote += i < nd;
		b->pages[cut++] = b->pages[i];
		seg->pages[b->pages[i]].flags |= PS_MOVING;
	}
	b->n = cut;
	return cut;
}

/* Moves one side of a batch (its demotions, or its promotions) until the deadline. */
static uint64_t batch_move(struct manager *m, struct segment *seg, bool demote, uint64_t deadline)
{
	struct seg_batch *b = &seg->batch;
	const uint64_t *pages = demote ? b->pages : b->pages + b->ndemote;
	size_t n = demote ? b->ndemote : b->n - b->ndemote;
	int node = demote ? m->batch_slow : m->batch_fast;
	long r;

	if (!n || node < 0 || now_usec() >= deadline)
		return 0;
	r = migrate_pages_to(seg, pages, n, node, MIGRATE_ZAPPED, &m->move_all, deadline, &m->mstats);
	m->move_err = r < 0 ? (int)r : 0;
	if (r < 0) {
		log_ratelimited(LOG_WARNING, (int)r, "seg %u: move_pages to node %d: %m", seg->id, node);
		return 0;
	}
	return (uint64_t)r;
}

/*
 * The rate limit: bytes moved in any one-second window stay within rate_limit_mbps. A token
 * bucket holding a second's worth let a window see up to twice the limit (a full bucket spent,
 * then a second of refill); so every move is remembered with its time, and a pass may move the
 * limit minus what moved in the second before it. Passes never overlap their moves (no pass
 * while a batch is out), so a pass's moves and the earlier moves of any window ending after them
 * were all counted when it was planned: no window exceeds the limit, wherever its moves fall.
 */
static void rate_record(struct manager *m, uint64_t bytes)
{
	if (!bytes)
		return;
	m->rate_ring[(m->rate_head + m->rate_n) % RATE_RING] = (struct rate_entry){ now_usec(), bytes };
	if (m->rate_n < RATE_RING)
		m->rate_n++;
	else
		m->rate_head = (m->rate_head + 1) % RATE_RING; /* oldest lost: see rate_allowance */
}

/* What a pass starting now may move. `floor`: a limit below two of the largest pages per second
 * would stop huge pages for good, so that much is allowed once the window is clear. */
static uint64_t rate_allowance(struct manager *m, uint64_t now, uint64_t floor)
{
	uint64_t limit = (uint64_t)m->cfg.rate_limit_mbps * 1000000u, used = 0;

	while (m->rate_n && now - m->rate_ring[m->rate_head].usec >= 1000000u) {
		m->rate_head = (m->rate_head + 1) % RATE_RING;
		m->rate_n--;
	}
	/* A full ring may have lost moves of this very second: move nothing until it drains. */
	if (m->rate_n == RATE_RING)
		return 0;
	for (unsigned i = 0; i < m->rate_n; i++)
		used += m->rate_ring[(m->rate_head + i) % RATE_RING].bytes;
	if (limit < floor)
		return used ? 0 : floor;
	return used < limit ? limit - used : 0;
}

/* Accounts a moved batch, lets its clients' faults onto the moved pages, and ends it. */
static void batch_end(struct manager *m, struct segment *seg, uint64_t up, uint64_t down)
{
	struct seg_batch *b = &seg->batch;

	m->mstats.promoted += up;
	m->mstats.demoted += down;
	m->pass_moved += up + down;
	rate_record(m, (up + down) * seg->page_size);
	/* "batch in" pairs with batches_start's "batch out": a log cut off by a crash says
	 * whether a batch was out when it happened (test_chaos_vm counts its kills that way). */
	log_debug("seg %u: batch in: %zu pages in %zu runs: promoted %" PRIu64 " to node %d, "
		  "demoted %" PRIu64 " to node %d", seg->id, b->n, b->nruns, up, m->batch_fast, down,
		  m->batch_slow);
	if (!up && !down && b->n)
		log_ratelimited(LOG_WARNING, 0,
				"seg %u: none of %zu planned moves succeeded (not moved so far: nomem %" PRIu64
				", busy %" PRIu64 ", mapped %" PRIu64 ", other %" PRIu64 ")",
				seg->id, b->n, m->mstats.err_nomem, m->mstats.err_busy,
				m->mstats.err_access, m->mstats.err_other + m->mstats.err_fault);
	if (b->held)
		manager_fault_latency(m, now_usec() - b->started_usec, b->held);
	log_context_set(-1, seg->id, up ? m->batch_fast : m->batch_slow);
	/* Walk a saved next: a client that died meanwhile is dropped here (and, were it the
	 * last, the batch with it). */
	for (struct attachment *a = seg->attachments, *next; a; a = next) {
		next = a->seg_next;
		attachment_batch_release(m, a);
	}
	manager_batch_drop(m, seg);
	log_context_clear();
}

/* True while a client of the segment has not acknowledged its batch's zap. */
static bool batch_waiting(const struct segment *seg)
{
	for (const struct attachment *a = seg->attachments; a; a = a->seg_next)
		if (!a->dead && a->batch_waiting)
			return true;
	return false;
}

/* The batches of one pass finish together, once none waits for a zap any more (or its wait is
 * over): every demotion first, then every promotion, as a mapped-mode pass does — a promotion
 * in one segment may count on the room a demotion in another makes. */
#define POLL_MAX_SEGS 1024
void manager_batches_poll(struct manager *m)
{
	static struct segment *ready[POLL_MAX_SEGS];
	static uint64_t down[POLL_MAX_SEGS];
	uint64_t now, deadline;
	unsigned n = 0;

	if (!m->batches_active)
		return;
	now = now_usec();
	for (struct segment *seg = m->segments; seg && n < POLL_MAX_SEGS; seg = seg->next) {
		if (!seg->batch.active)
			continue;
		if (batch_waiting(seg) && now < seg->batch.deadline_usec)
			return;
		ready[n++] = seg;
	}
	for (unsigned i = 0; i < n; i++)
		m->stats.batch_timeouts += batch_waiting(ready[i]);
	deadline = now + PASS_BUDGET_USEC;
	for (unsigned i = 0; i < n; i++) {
		struct migrate_stats before = m->mstats;

		m->move_err = 0;
		down[i] = batch_move(m, ready[i], true, deadline);
		events_moved(m, ready[i], ready[i]->batch.ndemote, down[i], m->batch_slow, &before);
	}
	for (unsigned i = 0; i < n; i++) {
		struct migrate_stats before = m->mstats;
		uint64_t up;

		m->move_err = 0;
		up = batch_move(m, ready[i], false, deadline);

		events_moved(m, ready[i], ready[i]->batch.n - ready[i]->batch.ndemote, up, m->batch_fast,
			     &before);
		batch_end(m, ready[i], up, down[i]);
	}
}

/* Zap-then-move: each segment's share of the plan becomes a batch, and its clients are asked to
 * zap those pages. The move happens in manager_batches_poll() once they all have. */
static void batches_start(struct manager *m, struct segment **segs, unsigned nsegs,
			  const struct migrate_plan *plan, int fast, int slow)
{
	m->batch_fast = fast;
	m->batch_slow = slow;
	for (unsigned si = 0; si < nsegs; si++) {
		struct segment *seg = segs[si];

		/* A zap that failed for an earlier segment may have dropped this one's last
		 * client: it is in the graveyard now, and must not get a batch. */
		if (!seg->nattach || !batch_build(seg, si, plan, slow >= 0))
			continue;
		m->pass_planned += seg->batch.n;
		seg->batch.active = true;
		seg->batch.started_usec = now_usec();
		seg->batch.deadline_usec = seg->batch.started_usec + BATCH_WAIT_USEC;
		m->batches_active++;
		m->stats.batches++;
		log_debug("seg %u: batch out: %zu pages (%zu to demote), zapping", seg->id,
			  seg->batch.n, seg->batch.ndemote);
		for (struct attachment *a = seg->attachments, *next; a; a = next) {
			next = a->seg_next;
			attachment_batch_zap(m, a);
		}
	}
}

/* Whether this epoch has a migration pass: migration on, its epoch, no batch out, two tiers or
 * more (the topology is re-read here, so a node that comes or goes is seen), and not backing off
 * after passes that moved nothing. */
static bool pass_due(struct manager *m)
{
	if (!m->cfg.migrate || m->no_topology || m->cfg.migrate_every_epochs == 0 ||
	    m->epoch % m->cfg.migrate_every_epochs || m->batches_active)
		return false;
	/* Re-read even with one tier: a node that comes (back) must be seen. */
	if (refresh_topology(m) < 0 || m->topo.ntiers < 2)
		return false;
	if (m->pass_planned) {
		/* The last pass planned moves: back off if none of them succeeded. */
		if (m->pass_moved)
			m->backoff_passes = 0;
		else
			m->backoff_passes = m->backoff_passes ? m->backoff_passes * 2 : 1;
		if (m->backoff_passes > MAX_BACKOFF_PASSES)
			m->backoff_passes = MAX_BACKOFF_PASSES;
		m->skip_passes = m->backoff_passes;
		m->pass_planned = m->pass_moved = 0;
	}
	if (m->skip_passes) {
		m->skip_passes--;
		events_skipped(m, "backing off: the last passes moved nothing (%u passes skipped)",
			       m->backoff_passes);
		return false;
	}
	if (m->cfg.mode == MODE_OBSERVE) {
		events_skipped(m, "mode observe: tracking only");
		return false;
	}
	return true;
}

/* The tiers as the policy sees them: capacity, free memory above the reserve on the node moves go
 * to, tracked bytes as of the last pass. */
static void view_tiers(struct manager *m, struct tierd_view *v)
{
	memset(v->node_tier, -1, sizeof(v->node_tier));
	v->ntiers = m->topo.ntiers < TIERD_MAX_TIERS ? m->topo.ntiers : TIERD_MAX_TIERS;
	for (unsigned t = 0; t < v->ntiers; t++) {
		struct tierd_tier_view *tv = &v->tiers[t];

		tv->target_node = pick_node(m, t, &tv->free_bytes);
		tv->used_bytes = m->tier_used[t];
		tv->nnodes = m->topo.tier_size[t];
		for (unsigned i = 0; i < m->topo.tier_size[t]; i++) {
			const struct tier_node *n = tiers_node(&m->topo, m->topo.tier_nodes[t][i]);

			tv->capacity_bytes += n ? n->total_bytes : 0;
			if (n && n->id >= 0 && n->id < TIERD_MAX_NODES)
				v->node_tier[n->id] = (int8_t)t;
		}
	}
	v->fast_budget_bytes = m->cfg.fast_budget_bytes;
	if (!v->fast_budget_bytes)
		v->fast_budget_bytes = v->tiers[0].capacity_bytes / 10 * 9; /* auto: 90 % */
}

static void pass_execute(struct manager *m, struct segment **segs, unsigned nsegs,
			 const struct tierd_view *v, struct tierd_plan *plan);

static size_t seg_index(struct segment **segs, unsigned nsegs, uint32_t id, size_t *hint)
{
	if (*hint < nsegs && segs[*hint]->id == id)
		return *hint;
	for (unsigned i = 0; i < nsegs; i++)
		if (segs[i]->id == id)
			return *hint = i;
	return nsegs; /* cannot happen: the host validated the plan against these segments */
}

/* The plan's moves, as runs per segment, for tierctl events (advice in advise mode). */
static void record_decisions(struct manager *m, struct segment **segs, unsigned nsegs,
			     const struct tierd_plan *plan, int fast, int slow)
{
	for (int side = 0; side < 2; side++) {
		const struct tierd_move *mv = side ? plan->demote : plan->promote;
		size_t n = side ? plan->ndemote : plan->npromote, hint = 0;

		for (size_t a = 0, b; a < n; a = b) {
			size_t si = seg_index(segs, nsegs, mv[a].seg, &hint);

			for (b = a + 1; b < n && mv[b].seg == mv[a].seg; b++)
				;
			if (si < nsegs)
				events_decided(m, segs[si], mv + a, b - a, side ? slow : fast,
					       m->cfg.mode == MODE_ADVISE);
		}
	}
}

void manager_placement(struct manager *m)
{
	struct segment *segs[1024];
	struct tierd_view v = { .size = sizeof(v) };
	struct tierd_plan plan;
	uint64_t now = now_usec(), max_page = 0;
	unsigned nsegs = 0;
	bool pass;

	if (!m->policy)
		return;
	for (struct segment *s = m->segments; s && nsegs < 1024; s = s->next)
		if (s->nattach) {
			segs[nsegs++] = s;
			max_page = s->page_size > max_page ? s->page_size : max_page;
		}
	pass = pass_due(m) && nsegs;
	v.epoch = m->epoch;
	v.now_ns = (now - m->started_usec) * 1000;
	v.epoch_ms = m->cfg.epoch_ms;
	v.high_wm = m->cfg.high_wm;
	v.low_wm = m->cfg.low_wm;
	v.window_bytes = m->cfg.window_bytes;
	if (pass) {
		uint64_t cap;

		m->tokens_bytes = rate_allowance(m, now, 2 * max_page);
		m->mstats.passes++;
		count(m, segs, nsegs);
		v.migrate = 1;
		v.max_move_bytes = m->tokens_bytes;
		if (m->cfg.migrate_how == MIGRATE_ZAPPED) {
			cap = batch_cap_bytes(m, 2 * max_page);
			v.max_move_bytes = cap < v.max_move_bytes ? cap : v.max_move_bytes;
		}
	}
	if (!m->no_topology)
		view_tiers(m, &v);
	else
		v.ntiers = 1;
	if (manager_policy_decide(m, segs, nsegs, &v, &plan) == 0 && pass)
		pass_execute(m, segs, nsegs, &v, &plan);
	if (pass) {
		m->mstats.pass_usec_last = now_usec() - now;
		if (m->mstats.pass_usec_last > m->mstats.pass_usec_max)
			m->mstats.pass_usec_max = m->mstats.pass_usec_last;
	}
}


static void add_candidates(struct manager *m, struct segment **segs, unsigned nsegs,
			   const struct tierd_move *mv, size_t n, size_t *k)
{
	size_t hint = 0;

	for (size_t i = 0; i < n; i++) {
		size_t si = seg_index(segs, nsegs, mv[i].seg, &hint);

		if (si < nsegs)
			m->cands[(*k)++] = (struct migrate_candidate){
				.seg_index = (uint32_t)si, .page_bytes = (uint32_t)segs[si]->page_size,
				.page = mv[i].page, .score = mv[i].score };
	}
}

/* The policy's plan, in the executor's terms (candidates indexed by position in segs). */
static int to_candidates(struct manager *m, struct segment **segs, unsigned nsegs,
			 const struct tierd_plan *plan, struct migrate_plan *mp)
{
	size_t k = 0;

	if (plan_grow((void **)&m->cands, &m->cands_cap, plan->npromote + plan->ndemote,
		 sizeof(*m->cands)) < 0)
		return -ENOMEM;
	add_candidates(m, segs, nsegs, plan->promote, plan->npromote, &k);
	mp->promote = m->cands;
	mp->npromote = k;
	add_candidates(m, segs, nsegs, plan->demote, plan->ndemote, &k);
	mp->demote = m->cands + mp->npromote;
	mp->ndemote = k - mp->npromote;
	return 0;
}

/* tiers.huge_reserve_pages: promotions of huge pages leave that many free pages in the fast
 * node's 2 MiB pool, for the applications' own new huge pages (a database that restarts needs
 * its whole buffer pool from the pool). The plan's excess huge promotions are dropped. */
static void keep_huge_reserve(struct manager *m, struct segment **segs, unsigned nsegs, int fast,
			      struct tierd_plan *plan)
{
	const struct tier_node *n = tiers_node(&m->topo, fast);
	uint64_t room, kept = 0, dropped = 0;
	size_t hint = 0, k = 0;

	if (!m->cfg.huge_reserve_pages || !n)
		return;
	room = n->huge_free_2m > m->cfg.huge_reserve_pages ? n->huge_free_2m - m->cfg.huge_reserve_pages
							    : 0;
	for (size_t i = 0; i < plan->npromote; i++) {
		size_t si = seg_index(segs, nsegs, plan->promote[i].seg, &hint);
		bool huge = si < nsegs && segs[si]->page_size == 2u << 20;

		if (huge && kept == room) {
			dropped++;
			continue;
		}
		kept += huge;
		plan->promote[k++] = plan->promote[i];
	}
	plan->npromote = k;
	if (dropped)
		events_skipped(m, "%" PRIu64 " huge page promotion(s) held back: node %d keeps %u free "
			       "2 MiB pages (tiers.huge_reserve_pages)", dropped, fast,
			       m->cfg.huge_reserve_pages);
}

/* How often placement reads a client's cpuset mems again before moving its pages: a cpuset can
 * change under a running process (systemctl set-property AllowedMemoryNodes=, a container moved),
 * and reading /proc/PID/status for every attachment of every planned segment on every pass would
 * cost more than the moves it guards. */
#define MEMS_REFRESH_USEC 1000000

/* The nodes a segment's pages may go to: those tierd and every process mapping it may allocate
 * on (mems.h). *pid gets a process that excludes `node`, or 0 when tierd itself does. */
static uint64_t segment_mems(struct segment *s, uint64_t now, uint64_t own, int node, pid_t *pid)
{
	uint64_t allowed = own;

	*pid = 0;
	for (struct attachment *a = s->attachments; a; a = a->seg_next) {
		if (now - a->mems_usec > MEMS_REFRESH_USEC) {
			if (mems_of(a->client->pid, &a->mems) < 0)
				a->mems = MEMS_ALL;
			a->mems_usec = now;
		}
		if (node >= 0 && node < 64 && (allowed & UINT64_C(1) << node) &&
		    !(a->mems & UINT64_C(1) << node))
			*pid = a->client->pid;
		allowed &= a->mems;
	}
	return allowed;
}

/* Drops the plan's moves to a node outside the mems of the page's segment (segment_mems): the
 * kernel checks only tierd's own cpuset when tierd moves pages through its alias, so a client
 * confined to some nodes would otherwise get its memory where it could not have put it. */
static void keep_allowed_nodes(struct manager *m, struct segment **segs, unsigned nsegs, int fast,
			       int slow, struct tierd_plan *plan)
{
	uint64_t own = MEMS_ALL, now = now_usec(), held = 0;
	char nodes[64] = "", text[160];
	int why_node = -1;
	pid_t why_pid = 0;
	uint32_t why_seg = 0;

	if (mems_of(0, &own) < 0)
		own = MEMS_ALL;
	for (int side = 0; side < 2; side++) {
		struct tierd_move *mv = side ? plan->demote : plan->promote;
		size_t *n = side ? &plan->ndemote : &plan->npromote, k = 0, hint = 0;
		int node = side ? slow : fast;
		uint32_t last_seg = UINT32_MAX;
		/* A node this kernel does not have (a --sysfs-root fixture's) is in nobody's mems:
		 * its moves fail by themselves (ENODEV). */
		bool check = node >= 0 && node < 64 && mems_node_exists(node), ok = true;

		for (size_t i = 0; i < *n; i++) {
			if (mv[i].seg != last_seg) {
				size_t si = seg_index(segs, nsegs, mv[i].seg, &hint);
				uint64_t allowed;
				pid_t pid;

				last_seg = mv[i].seg;
				ok = true;
				if (si < nsegs && check) {
					allowed = segment_mems(segs[si], now, own, node, &pid);
					ok = allowed & UINT64_C(1) << node;
					if (!ok && why_node < 0) {
						why_node = node;
						why_pid = pid;
						why_seg = mv[i].seg;
						mems_format(allowed, nodes, sizeof(nodes));
					}
				}
			}
			if (ok)
				mv[k++] = mv[i];
			else
				held++;
		}
		*n = k;
	}
	if (!held)
		return;
	m->mstats.held_mems += held;
	/* No count in the text: a pass held back for the same reason folds into the last record. */
	if (why_pid)
		snprintf(text, sizeof(text), "held: node %d not in the cpuset mems of pid %d (seg %u: "
			 "nodes %s)", why_node, (int)why_pid, why_seg, nodes);
	else
		snprintf(text, sizeof(text), "held: node %d not in tierd's own cpuset mems (seg %u: "
			 "nodes %s)", why_node, why_seg, nodes);
	events_skipped(m, "%s", text);
	/* Logged when the reason changes; each pass is counted (held_mems) and in the events. */
	if (strcmp(text, m->mems_logged)) {
		snprintf(m->mems_logged, sizeof(m->mems_logged), "%s", text);
		log_notice("placement: %" PRIu64 " page move(s) %s", held, text);
	}
}

/* A pass's moves: in zap mode, each segment's share becomes a batch (moved once its clients
 * zapped it); in mapped mode, moved now, demotions first. */
static void pass_execute(struct manager *m, struct segment **segs, unsigned nsegs,
			 const struct tierd_view *v, struct tierd_plan *plan)
{
	struct migrate_plan mp = { 0 };
	uint64_t now, up_bytes = 0, up = 0, down_bytes = 0, down = 0;
	int fast = v->tiers[0].target_node, slow = -1;

	if (!plan->npromote && !plan->ndemote)
		return;
	/* Demotion goes to the nearest slower tier with room above the reserve: when tier 1 is
	 * full, tier 2 takes the pages (none: no demotion this pass). */
	for (unsigned t = 1; t < v->ntiers && slow < 0; t++)
		if (v->tiers[t].free_bytes)
			slow = v->tiers[t].target_node;
	/* Before the decisions are recorded: advice, too, stays within the clients' cpusets. */
	keep_allowed_nodes(m, segs, nsegs, fast, slow, plan);
	record_decisions(m, segs, nsegs, plan, fast, slow);
	if (m->cfg.mode == MODE_ADVISE)
		return; /* recorded as advice; nothing moves */
	if (fast < 0) {
		events_skipped(m, "no node of the fast tier has free memory above the reserve");
		return;
	}
	keep_huge_reserve(m, segs, nsegs, fast, plan);
	if (to_candidates(m, segs, nsegs, plan, &mp) < 0)
		return;
	if (m->cfg.migrate_how == MIGRATE_ZAPPED) {
		batches_start(m, segs, nsegs, &mp, fast, slow);
		return;
	}
	now = now_usec();
	if (mp.ndemote && slow >= 0)
		execute(m, segs, nsegs, mp.demote, mp.ndemote, slow, now + PASS_BUDGET_USEC,
			&down_bytes, &down);
	if (mp.npromote)
		execute(m, segs, nsegs, mp.promote, mp.npromote, fast, now + PASS_BUDGET_USEC,
			&up_bytes, &up);
	m->mstats.promoted += up;
	m->mstats.demoted += down;
	m->pass_planned += mp.npromote + mp.ndemote;
	m->pass_moved += up + down;
	rate_record(m, up_bytes + down_bytes);
	if (up || down)
		log_info("placement: promoted %" PRIu64 " of %zu planned pages to node %d, demoted %" PRIu64
			 " of %zu to node %d (%.1f MiB moved; budget %.1f MiB)",
			 up, mp.npromote, fast, down, mp.ndemote, slow,
			 (double)(up_bytes + down_bytes) / 1048576.0,
			 (double)v->fast_budget_bytes / 1048576.0);
	else
		log_ratelimited(LOG_WARNING, 0,
				"placement: none of %zu planned moves succeeded (not moved so far: "
				"nomem %" PRIu64 ", busy %" PRIu64 ", mapped %" PRIu64 ", other %" PRIu64 ")",
				mp.npromote + mp.ndemote, m->mstats.err_nomem, m->mstats.err_busy,
				m->mstats.err_access, m->mstats.err_other + m->mstats.err_fault);
}
