/* SPDX-License-Identifier: MIT */
/* Migration planning (pure) and execution with move_pages(2) on tierd's alias mappings. */
#include "migrate.h"

#include <errno.h>
#include <limits.h>
#include <numaif.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "log.h" /* now_usec() */
#include "segment.h"
#include "tierd/proto.h"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

/* move_pages() has a fixed cost of tens of microseconds per call (ARCHITECTURE.md §2): batch. */
#define MOVE_BATCH_PAGES 4096
/* A page must be this much hotter than the fast-tier page it displaces: no ping-pong. */
#define SWAP_HYSTERESIS 0.10f

static int by_score_desc(const void *a, const void *b)
{
	float x = ((const struct migrate_candidate *)a)->score;
	float y = ((const struct migrate_candidate *)b)->score;

	return (x < y) - (x > y);
}

static int by_score_asc(const void *a, const void *b)
{
	return by_score_desc(b, a);
}

void migrate_plan_build(struct migrate_candidate *cands, size_t n, const struct migrate_budget *b,
			struct migrate_plan *plan)
{
	uint64_t used = b->fast_used_bytes, moved = 0, free_bytes = b->fast_free_bytes;
	uint64_t high = (uint64_t)((double)b->fast_budget_bytes * b->high_wm);
	uint64_t low = (uint64_t)((double)b->fast_budget_bytes * b->low_wm);
	size_t nfast = 0, nslow = 0, d = 0;
	struct migrate_candidate *fast, *slow;

	memset(plan, 0, sizeof(*plan));
	/* Partition in place: fast-tier pages first, then hot pages off the fast tier. */
	for (size_t i = 0; i < n; i++) {
		if (cands[i].tier == 0) {
			struct migrate_candidate t = cands[nfast];

			cands[nfast++] = cands[i];
			cands[i] = t;
		}
	}
	for (size_t i = nfast; i < n; i++) {
		if (cands[i].tier > 0 && cands[i].score >= b->hot_threshold) {
			struct migrate_candidate t = cands[nfast + nslow];

			cands[nfast + nslow++] = cands[i];
			cands[i] = t;
		}
	}
	fast = cands;
	slow = cands + nfast;
	qsort(fast, nfast, sizeof(*fast), by_score_asc);  /* coldest first */
	qsort(slow, nslow, sizeof(*slow), by_score_desc); /* hottest first */

	/* Over the high watermark: demote the coldest down to the low watermark. */
	if (used > high)
		while (used > low && d < nfast && moved + fast[d].page_bytes <= b->max_move_bytes) {
			used -= fast[d].page_bytes;
			moved += fast[d].page_bytes;
			free_bytes += fast[d].page_bytes;
			d++;
		}

	plan->promote = slow;
	for (size_t i = 0; i < nslow; i++) {
		uint64_t sz = slow[i].page_bytes;

		if (moved + sz > b->max_move_bytes)
			break;
		if (used + sz <= high && free_bytes >= sz) {
			plan->npromote++;
			used += sz;
			free_bytes -= sz;
			moved += sz;
			continue;
		}
		/* Full: swap with the coldest remaining fast page if this one is clearly hotter and
		 * the swap frees at least as much as it takes. */
		if (d < nfast && fast[d].page_bytes >= sz && moved + sz + fast[d].page_bytes <= b->max_move_bytes &&
		    fast[d].score + SWAP_HYSTERESIS <= slow[i].score) {
			moved += sz + fast[d].page_bytes;
			used = used - fast[d].page_bytes + sz;
			d++;
			plan->npromote++;
			continue;
		}
		break;
	}
	plan->demote = fast;
	plan->ndemote = d;
}

static void count_status(int status, int node, struct migrate_stats *st)
{
	if (status == node)
		return;
	switch (status) {
	case -ENOMEM:
		st->err_nomem++; /* the target node is full */
		break;
	case -EBUSY:
		st->err_busy++; /* page in use (pinned, under I/O): retried next pass */
		break;
	case -EACCES:
		st->err_access++; /* still mapped by a process, and MOVE_ALL not allowed */
		break;
	case -ENOENT:
		st->err_noent++; /* not mapped in the alias (a hole) */
		break;
	case -EFAULT:
		st->err_fault++;
		break;
	default:
		st->err_other++; /* e.g. -EINVAL */
		break;
	}
}

/* A status the kernel never writes: tells entries it left unwritten from real errors. */
#define STATUS_UNWRITTEN INT_MIN

/* One move_pages(2) call over addrs[0, k), timed; afterwards status[i] is the page's node or why it
 * is not on `node`. Returns 0, or a negative errno when the call itself failed. */
static int move_once(void **addrs, size_t k, int node, int flags, int *nodes, int *status,
		     struct migrate_stats *st)
{
	static int now_on[MOVE_BATCH_PAGES];
	uint64_t t0 = now_usec();
	long r;

	for (size_t i = 0; i < k; i++) {
		nodes[i] = node;
		status[i] = STATUS_UNWRITTEN;
	}
	st->calls++;
	r = move_pages(0, (unsigned long)k, addrs, nodes, status, flags);
	st->move_usec += now_usec() - t0;
	if (r < 0)
		return -errno;
	if (r > 0) {
		/* Some pages failed, and the kernel (6.1, and upstream's
		 * move_pages_and_store_status) may then leave the status array unwritten for the
		 * whole batch although the others moved: ask where they are now, keeping the
		 * reasons it did write. */
		st->calls++;
		if (move_pages(0, (unsigned long)k, addrs, NULL, now_on, 0) < 0)
			return -errno;
		for (size_t i = 0; i < k; i++)
			if (status[i] == STATUS_UNWRITTEN || now_on[i] == node)
				status[i] = now_on[i];
	}
	return 0;
}

long migrate_pages_to(struct segment *seg, const uint64_t *pages, size_t n, int node,
		      enum migrate_how how, bool *move_all, uint64_t deadline_usec,
		      struct migrate_stats *st)
{
	static void *addrs[MOVE_BATCH_PAGES], *again[MOVE_BATCH_PAGES];
	static int nodes[MOVE_BATCH_PAGES], status[MOVE_BATCH_PAGES], status2[MOVE_BATCH_PAGES];
	static size_t where[MOVE_BATCH_PAGES];
	long moved = 0;

	for (size_t off = 0; off < n; off += MOVE_BATCH_PAGES) {
		size_t k = n - off < MOVE_BATCH_PAGES ? n - off : MOVE_BATCH_PAGES, nagain = 0;
		int r;

		/* The fault path waits while we move: stop between batches once over the time
		 * budget; the rest is planned again next pass. */
		if (off && now_usec() > deadline_usec)
			break;
		for (size_t i = 0; i < k; i++)
			addrs[i] = (char *)seg->alias + pages[off + i] * seg->page_size;
		if (how == MIGRATE_ZAPPED || !*move_all) {
			/* Pages that only tierd's alias maps (zapped everywhere else) move without
			 * touching any client's page tables, and without CAP_SYS_NICE. */
			r = move_once(addrs, k, node, MPOL_MF_MOVE, nodes, status, st);
		} else {
			r = move_once(addrs, k, node, MPOL_MF_MOVE_ALL, nodes, status, st);
			if (r == -EPERM) {
				/* No CAP_SYS_NICE: only pages no client maps can move. */
				*move_all = false;
				r = move_once(addrs, k, node, MPOL_MF_MOVE, nodes, status, st);
			}
		}
		if (r < 0)
			return moved ? moved : r;
		if (how == MIGRATE_ZAPPED && *move_all) {
			/* Still mapped by some process (-EACCES): a client that did not zap in time,
			 * or a process tierd does not know. The kernel's migration of mapped pages is
			 * just as safe, only dearer. A page whose reason the kernel did not write
			 * waits for the next pass. */
			for (size_t i = 0; i < k; i++)
				if (status[i] == -EACCES) {
					where[nagain] = i;
					again[nagain++] = addrs[i];
				}
		}
		if (nagain) {
			st->fallback_pages += nagain;
			r = move_once(again, nagain, node, MPOL_MF_MOVE_ALL, nodes, status2, st);
			if (r == -EPERM)
				*move_all = false;
			else if (r < 0)
				return moved ? moved : r;
			else
				for (size_t j = 0; j < nagain; j++)
					status[where[j]] = status2[j];
		}
		st->batches++;
		for (size_t i = 0; i < k; i++) {
			struct tierd_page *ps = &seg->pages[pages[off + i]];

			if (status[i] == node) {
				moved++;
				if (ps->node >= 0 && ps->node < MIGRATE_STAT_NODES && node < MIGRATE_STAT_NODES)
					st->moved[ps->node][node][seg->page_size > 4096]++;
				ps->node = (int16_t)node;
				st->bytes_moved += seg->page_size;
			} else {
				if (status[i] >= 0)
					ps->node = (int16_t)status[i];
				count_status(status[i], node, st);
			}
		}
	}
	return moved;
}

int migrate_populate_alias(struct segment *seg, uint64_t first, uint64_t npages)
{
	uint64_t last = first + npages > seg->npages ? seg->npages : first + npages;
	off_t pos = (off_t)(first * seg->page_size), end = (off_t)(last * seg->page_size);

	if (seg->kind == TIERD_SEG_HUGETLB) {
		/* hugetlbfs has no SEEK_DATA, and populating a missing huge page would allocate it
		 * on tierd's node, against the client's own placement: map only pages a minor
		 * fault or a CONTINUE showed to exist, in runs. */
		for (uint64_t p = first; p < last;) {
			uint64_t q = p;

			while (q < last && (seg->pages[q].flags & (PS_EXISTS | PS_ALIASED)) == PS_EXISTS)
				q++;
			if (q > p) {
				if (madvise((char *)seg->alias + p * seg->page_size, (q - p) * seg->page_size,
					    MADV_POPULATE_WRITE) < 0)
					return -errno;
				for (uint64_t i = p; i < q; i++)
					seg->pages[i].flags |= PS_ALIASED;
			}
			p = q + 1;
		}
		return 0;
	}
	/* Map only what exists: populating a hole would allocate memory the client never used. */
	while (pos < end) {
		off_t data = lseek(seg->memfd, pos, SEEK_DATA), hole;

		if (data < 0)
			return errno == ENXIO ? 0 : -errno;
		if (data >= end)
			return 0;
		hole = lseek(seg->memfd, data, SEEK_HOLE);
		if (hole < 0 || hole > end)
			hole = end;
		if (madvise((char *)seg->alias + data, (size_t)(hole - data), MADV_POPULATE_WRITE) < 0 &&
		    errno != EFAULT)
			return -errno;
		pos = hole;
	}
	return 0;
}

long migrate_query_nodes(struct segment *seg, uint64_t first, uint64_t npages)
{
	static void *addrs[MOVE_BATCH_PAGES];
	static int status[MOVE_BATCH_PAGES];
	uint64_t last = first + npages > seg->npages ? seg->npages : first + npages;
	long known = 0;

	for (uint64_t off = first; off < last; off += MOVE_BATCH_PAGES) {
		size_t k = last - off < MOVE_BATCH_PAGES ? last - off : MOVE_BATCH_PAGES;

		for (size_t i = 0; i < k; i++)
			addrs[i] = (char *)seg->alias + (off + i) * seg->page_size;
		if (move_pages(0, (unsigned long)k, addrs, NULL, status, 0) < 0)
			return -errno;
		for (size_t i = 0; i < k; i++) {
			seg->pages[off + i].node = (int16_t)(status[i] >= 0 ? status[i] : -1);
			known += status[i] >= 0;
		}
	}
	return known;
}
