/* SPDX-License-Identifier: MIT */
/*
 * Recording (tierctl record, tierd --record): writes what the policy sees to a trace
 * (policy/trace.h, TRACE_SAMPLED) — segments as they come and go, access events as they happen,
 * and at each decide() the view it was given: tiers, nodes, the page nodes that changed since the
 * last record, regions and closed windows. tierd-sim replays it through any policy; recorded
 * from tierd's start, a replay through the same policy gives tierd's decisions exactly.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "host.h"
#include "log.h"
#include "manager.h"
#include "trace.h"

static uint64_t float_bits(float f)
{
	uint32_t u;

	memcpy(&u, &f, sizeof(u));
	return u;
}

/* Writes one record; a full or failed trace ends the recording. */
static void put(struct manager *m, const struct trace_rec *r)
{
	int e;

	if (!m->trace)
		return;
	e = trace_write(m->trace, r);
	if (e == 0)
		return;
	if (e == -EFBIG)
		log_notice("Recording stopped: the trace reached its size limit (%" PRIu64 " records)",
			   trace_writer_records(m->trace));
	else
		log_error_errno(e, "Recording stopped: writing the trace: %m");
	manager_record_stop(m);
}

static int shadow_alloc(struct segment *seg)
{
	free(seg->recorded_node);
	seg->recorded_node = malloc(seg->npages * sizeof(*seg->recorded_node));
	if (!seg->recorded_node)
		return -ENOMEM;
	/* The replay starts with every node unknown: a page is written once its node is known. */
	for (uint64_t p = 0; p < seg->npages; p++)
		seg->recorded_node[p] = -1;
	return 0;
}

void manager_record_seg(struct manager *m, const struct segment *seg, bool added)
{
	struct segment *s = (struct segment *)seg;

	if (!m->trace)
		return;
	if (!added) {
		put(m, &(struct trace_rec){ .type = TREC_SEG_END, .u32 = seg->id });
		free(s->recorded_node);
		s->recorded_node = NULL;
		return;
	}
	if (shadow_alloc(s) < 0) {
		log_error("Recording stopped: no memory for segment %u's page nodes", seg->id);
		manager_record_stop(m);
		return;
	}
	put(m, &(struct trace_rec){ .type = TREC_SEG, .u32 = seg->id, .a = seg->npages,
				    .b = seg->page_size,
				    .u8 = seg->kind == TIERD_SEG_HUGETLB ? TIERD_SEGV_HUGETLB
									  : TIERD_SEGV_SHMEM });
}

void manager_record_event(struct manager *m, const struct tierd_event *e)
{
	if (!m->trace)
		return;
	put(m, &(struct trace_rec){ .type = TREC_EVENT, .a = e->time_ns, .b = e->page, .u32 = e->seg,
				    .c = e->tid, .u16 = e->weight, .u8 = (uint8_t)e->kind });
}

/* Runs of pages whose node changed since the last record. */
static void put_nodes(struct manager *m, struct segment *seg)
{
	uint64_t p = 0;

	while (p < seg->npages && m->trace) {
		int16_t node = seg->pages[p].node;
		uint64_t q = p;

		if (node == seg->recorded_node[p]) {
			p++;
			continue;
		}
		while (q < seg->npages && seg->pages[q].node == node && seg->recorded_node[q] != node)
			seg->recorded_node[q++] = node;
		put(m, &(struct trace_rec){ .type = TREC_NODES, .u32 = seg->id, .a = p, .b = q - p,
					    .c = (uint64_t)(int64_t)node });
		p = q;
	}
}

void manager_record_view(struct manager *m, const struct tierd_view *v)
{
	if (!m->trace)
		return;
	put(m, &(struct trace_rec){ .type = TREC_EPOCH, .a = v->now_ns, .u32 = v->epoch,
				    .b = v->max_move_bytes, .c = v->fast_budget_bytes,
				    .u8 = (uint8_t)v->migrate, .u16 = (uint16_t)v->ntiers });
	for (unsigned t = 0; t < v->ntiers && m->trace; t++)
		put(m, &(struct trace_rec){ .type = TREC_TIER, .u8 = (uint8_t)t,
					    .a = v->tiers[t].capacity_bytes, .b = v->tiers[t].free_bytes,
					    .c = v->tiers[t].used_bytes, .u16 = (uint16_t)v->tiers[t].nnodes,
					    .u32 = (uint32_t)v->tiers[t].target_node });
	for (unsigned n = 0; n < TIERD_MAX_NODES && m->trace; n++)
		if (v->node_tier[n] >= 0)
			put(m, &(struct trace_rec){ .type = TREC_NODE_TIER, .u8 = (uint8_t)n,
						    .u16 = (uint16_t)(int16_t)v->node_tier[n] });
	for (uint32_t i = 0; i < v->nsegs && m->trace; i++) {
		const struct tierd_seg_view *sv = &v->segs[i];
		struct segment *seg = NULL;

		for (struct segment *s = m->segments; s && !seg; s = s->next)
			if (s->id == sv->id)
				seg = s;
		if (seg && seg->recorded_node)
			put_nodes(m, seg);
		put(m, &(struct trace_rec){ .type = TREC_REGIONS_BEGIN, .u32 = sv->id, .a = sv->nregions });
		for (size_t r = 0; r < sv->nregions && m->trace; r++) {
			const struct tierd_region *rg = &sv->regions[r];

			put(m, &(struct trace_rec){ .type = TREC_REGION, .u32 = sv->id, .a = rg->start,
						    .b = rg->end,
						    .c = float_bits(rg->score) | float_bits(rg->prev_score) << 32,
						    .u16 = (uint16_t)(rg->samples < UINT16_MAX ? rg->samples
											: UINT16_MAX) });
		}
		for (size_t w = 0; w < sv->nclosed && m->trace; w++)
			put(m, &(struct trace_rec){ .type = TREC_CLOSED, .u32 = sv->id,
						    .a = sv->closed[w].start, .b = sv->closed[w].npages });
	}
	put(m, &(struct trace_rec){ .type = TREC_DECIDE, .u32 = v->epoch,
				    .a = float_bits(v->high_wm) | float_bits(v->low_wm) << 32,
				    .b = v->window_bytes, .c = m->cfg.max_windows });
}

int manager_record_start(struct manager *m, int fd, uint64_t max_bytes, char *why, size_t whylen)
{
	struct trace_header h = { .version = TRACE_VERSION, .flavour = TRACE_SAMPLED,
				  .seed = m->cfg.policy_seed, .epoch_ms = m->cfg.epoch_ms,
				  .page_size = (uint32_t)sysconf(_SC_PAGESIZE), .first_epoch = m->epoch };
	int r;

	if (m->trace) {
		close(fd);
		snprintf(why, whylen, "already recording");
		return -EBUSY;
	}
	memcpy(h.magic, TRACE_MAGIC, sizeof(h.magic));
	snprintf(h.source, sizeof(h.source), "tierd %s", m->policy ? policy_name(m->policy) : "none");
	r = trace_writer_fdopen(fd, &h, max_bytes, &m->trace);
	if (r < 0) {
		snprintf(why, whylen, "cannot write the trace: %s", strerror(-r));
		return r;
	}
	manager_policy_flush(m); /* events before the start are not in the trace */
	for (struct segment *s = m->segments; s && m->trace; s = s->next)
		manager_record_seg(m, s, true);
	log_info("Recording the policy's input (at most %" PRIu64 " MiB)", max_bytes >> 20);
	return 0;
}

void manager_record_stop(struct manager *m)
{
	struct trace_writer *w = m->trace;
	uint64_t n, dropped;
	int r;

	if (!w)
		return;
	m->trace = NULL;
	n = trace_writer_records(w);
	dropped = trace_writer_dropped(w);
	r = trace_writer_close(w);
	for (struct segment *s = m->segments; s; s = s->next) {
		free(s->recorded_node);
		s->recorded_node = NULL;
	}
	if (r < 0)
		log_error_errno(r, "Closing the trace: %m");
	log_info("Recording ended: %" PRIu64 " records written, %" PRIu64 " dropped", n, dropped);
}
