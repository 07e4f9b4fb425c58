/* SPDX-License-Identifier: MIT */
/*
 * Migration events: why pages did or did not move. A fixed ring of the latest records — each
 * run of pages a policy decided to move (coalesced: one segment, consecutive pages, one source
 * and target node), each batch's outcome with the kernel's reason for what did not move, and
 * each pass that moved nothing on purpose (paused, no room, backing off) — served to
 * `tierctl events` as JSON Lines. Bounded memory, no allocation after start.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "host.h"
#include "log.h"
#include "manager.h"

static const char *const kind_names[] = {
	[EV_DECIDED] = "decided", [EV_ADVISED] = "advised", [EV_MOVED] = "moved",
	[EV_SKIPPED] = "skipped",
};

static struct mig_event *slot(struct manager *m)
{
	struct mig_event *e = &m->events_ring[m->events_next % EVENTS_RING];

	m->events_next++;
	memset(e, 0, sizeof(*e));
	e->usec = now_usec() - m->started_usec;
	e->epoch = m->epoch;
	snprintf(e->policy, sizeof(e->policy), "%s", m->policy ? policy_name(m->policy) : "");
	return e;
}

void events_skipped(struct manager *m, const char *fmt, ...)
{
	struct mig_event *e, *last = m->events_next ? &m->events_ring[(m->events_next - 1) % EVENTS_RING]
						    : NULL;
	char why[sizeof(e->why)];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	/* A pass skipped for the reason the last record gave: count it there, do not flood. */
	if (last && last->kind == EV_SKIPPED && !strcmp(last->why, why)) {
		last->npages++; /* for a skip: how many passes */
		return;
	}
	e = slot(m);
	e->kind = EV_SKIPPED;
	e->from = e->to = -1;
	e->npages = 1;
	memcpy(e->why, why, sizeof(why));
}

static int by_page(const void *a, const void *b)
{
	uint64_t x = ((const struct tierd_move *)a)->page, y = ((const struct tierd_move *)b)->page;

	return (x > y) - (x < y);
}

void events_decided(struct manager *m, const struct segment *seg, const struct tierd_move *plan,
		    size_t n, int to, bool advise)
{
	/* Policies order moves by heat; by page they coalesce into runs. */
	struct tierd_move *mv = malloc(n * sizeof(*mv));
	size_t i = 0;

	if (!mv)
		return;
	memcpy(mv, plan, n * sizeof(*mv));
	qsort(mv, n, sizeof(*mv), by_page);

	/* Runs of consecutive pages from one node: a plan of thousands of pages is a few records. */
	while (i < n) {
		struct mig_event *e;
		size_t j = i + 1;
		float score = mv[i].score;
		int from = seg->pages[mv[i].page].node;

		while (j < n && mv[j].seg == mv[i].seg && mv[j].page == mv[j - 1].page + 1 &&
		       seg->pages[mv[j].page].node == from) {
			score = mv[j].score > score ? mv[j].score : score;
			j++;
		}
		e = slot(m);
		e->kind = advise ? EV_ADVISED : EV_DECIDED;
		e->seg = seg->id;
		e->page = mv[i].page;
		e->npages = j - i;
		e->page_size = seg->page_size;
		e->from = from;
		e->to = to;
		e->score = score;
		i = j;
	}
	free(mv);
}

void events_moved(struct manager *m, const struct segment *seg, size_t planned, uint64_t moved,
		  int to, const struct migrate_stats *before)
{
	const struct migrate_stats *a = &m->mstats;
	static const struct {
		int err;
		const char *why;
	} reasons[] = {
		{ ENOMEM, "the target node is full" },
		{ EBUSY, "pages busy (pinned or under I/O)" },
		{ EACCES, "still mapped by a process that did not zap them" },
		{ ENOENT, "not present" },
		{ EFAULT, "bad address" },
		{ EINVAL, "refused (e.g. the node is not allowed)" },
	};
	uint64_t d[6] = { a->err_nomem - before->err_nomem, a->err_busy - before->err_busy,
			  a->err_access - before->err_access, a->err_noent - before->err_noent,
			  a->err_fault - before->err_fault, a->err_other - before->err_other };
	struct mig_event *e;
	size_t worst = 0;

	if (!planned)
		return;
	for (size_t i = 1; i < 6; i++)
		worst = d[i] > d[worst] ? i : worst;
	e = slot(m);
	e->kind = EV_MOVED;
	e->seg = seg->id;
	e->npages = planned;
	e->moved = moved;
	e->page_size = seg->page_size;
	e->from = -1;
	e->to = to;
	if (moved < planned && d[worst]) {
		e->err = reasons[worst].err;
		snprintf(e->why, sizeof(e->why), "%" PRIu64 " not moved: %s", d[worst],
			 reasons[worst].why);
	} else if (moved < planned && m->move_err) {
		e->err = -m->move_err;
		snprintf(e->why, sizeof(e->why), "move_pages(2) to node %d failed: %s", to,
			 strerror(-m->move_err));
	} else if (moved < planned) {
		snprintf(e->why, sizeof(e->why), "%zu not moved: out of the pass's time or not mapped",
			 planned - (size_t)moved);
	}
}

int events_format(const struct manager *m, uint64_t max, char *buf, size_t len)
{
	uint64_t n = m->events_next < EVENTS_RING ? m->events_next : EVENTS_RING, k = 0;
	size_t used = 0;

	if (max && n > max)
		n = max;
	/* A line is under 400 bytes: keep to what fits, the newest. */
	if (n > len / 400)
		n = len / 400;
	buf[0] = '\0';
	for (uint64_t i = m->events_next - n; i < m->events_next; i++, k++) {
		const struct mig_event *e = &m->events_ring[i % EVENTS_RING];
		int w = snprintf(buf + used, len - used,
				 "{\"t_s\":%.3f,\"epoch\":%u,\"kind\":\"%s\",\"policy\":\"%s\",\"seg\":%u,"
				 "\"page\":%" PRIu64 ",\"pages\":%" PRIu64 ",\"bytes\":%" PRIu64
				 ",\"page_size\":%" PRIu64 ",\"from\":%d,\"to\":%d,\"score\":%.4f,"
				 "\"moved\":%" PRIu64 ",\"errno\":%d,\"why\":\"%s\"}\n",
				 (double)e->usec / 1e6, e->epoch, kind_names[e->kind], e->policy, e->seg,
				 e->page, e->npages, e->npages * e->page_size, e->page_size, e->from, e->to,
				 (double)e->score, e->moved, e->err, e->why);

		if (w < 0 || (size_t)w >= len - used)
			break;
		used += (size_t)w;
	}
	return (int)used;
}
