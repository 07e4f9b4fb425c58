/* SPDX-License-Identifier: MIT */
/*
 * The manager's side of the eBPF samplers (the loader is bpf.c): starts them if the host allows,
 * keeps the kernel's table of tracked ranges in step with attachments, and each epoch turns the
 * per-page fault counts into weighted TIERD_EV_SAMPLE events for the policy.
 *
 * What a sample means for heat: a re-access. The counter counts a user page fault in a tracked
 * range only when the process faulted on that page before since tierd tracked it; the first
 * fault (the write that populates a fresh page, a new or forked process's first touch) is only
 * counted as a first touch, as the uffd path's FIRST_TOUCH is not heat. For a page in an armed
 * window a sample is the same fault the uffd path reports (the policy gets both a FAULT and a
 * SAMPLE for it); outside windows it is what uffd never shows: refaults of pages tierd zapped and
 * released, faults of pages the kernel unmapped. A page that stays mapped is accessed without
 * faulting and is not seen here: counts say "touched again since it was last unmapped", not how
 * often.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "bpf.h"
#include "log.h"
#include "manager.h"

/* A tracked process per client at most, plus room: clients beyond max_clients are refused. */
#define BPF_PROCS_MIN 64

void manager_bpf_start(struct manager *m)
{
	struct tierd_bpf_opts o = { .map_entries = m->cfg.bpf_map_entries,
				    .max_procs = m->cfg.max_clients > BPF_PROCS_MIN ? m->cfg.max_clients
										     : BPF_PROCS_MIN,
				    .seen_pages = m->cfg.bpf_seen_pages };
	int r;

	if (!m->cfg.bpf) {
		snprintf(m->bpf_off_why, sizeof(m->bpf_off_why), "sampling.bpf = no");
		log_info("eBPF sampler page_fault is off: %s", m->bpf_off_why);
		return;
	}
	r = tierd_bpf_new(&o, &m->bpf, m->bpf_off_why, sizeof(m->bpf_off_why));
	if (r < 0) {
		m->bpf = NULL;
		/* The reason goes into the status JSON as is: keep it a plain string. */
		for (char *p = m->bpf_off_why; *p; p++)
			if (*p == '"' || *p == '\\' || (unsigned char)*p < 0x20)
				*p = '\'';
		log_warning("eBPF sampler page_fault is off: %s; tracking goes on with faults alone",
			    m->bpf_off_why);
		return;
	}
	m->bpf_off_why[0] = '\0';
	log_info("eBPF sampler page_fault is on (%" PRIu32 " pages per epoch)", o.map_entries);
}

void manager_bpf_track(struct manager *m, const struct attachment *a)
{
	int r;

	if (!m->bpf)
		return;
	r = tierd_bpf_track(m->bpf, (uint32_t)a->client->pid, a->base, a->length, a->seg->id,
			    a->seg->page_size);
	if (r < 0)
		log_ratelimited(LOG_NOTICE, r,
				"pid %d seg %" PRIu32 ": its faults are not sampled (%s)",
				(int)a->client->pid, a->seg->id,
				r == -ENOSPC	? "too many segments in one process"
				: r == -ENOBUFS ? "sampling.bpf_seen_pages is used up"
						: strerror(-r));
}

void manager_bpf_untrack(struct manager *m, const struct attachment *a)
{
	if (m->bpf)
		(void)tierd_bpf_untrack(m->bpf, (uint32_t)a->client->pid, a->base); /* -ENOENT: never tracked */
}

static void on_sample(void *ctx, uint32_t seg_id, uint64_t page, uint64_t count)
{
	struct manager *m = ctx;
	struct segment *seg;

	m->stats.bpf_samples += count;
	for (seg = m->segments; seg && seg->id != seg_id; seg = seg->next)
		;
	/* Counted before its segment went away (or a stale range): nobody to give it to. */
	if (!seg || page >= seg->npages) {
		m->stats.bpf_unmatched += count;
		return;
	}
	manager_policy_event_weighted(m, seg, page, TIERD_EV_SAMPLE,
				      count > UINT16_MAX ? UINT16_MAX : (uint16_t)count);
}

void manager_bpf_drain(struct manager *m)
{
	struct tierd_bpf_stats st;
	int r;

	if (!m->bpf)
		return;
	r = tierd_bpf_drain(m->bpf, on_sample, m);
	if (r < 0)
		log_ratelimited(LOG_WARNING, r, "Draining the eBPF page-fault counts failed: %m");
	if (tierd_bpf_stats(m->bpf, &st) == 0) {
		m->stats.bpf_overflow = st.overflow;
		m->stats.bpf_first_touch = st.first_touch;
	}
}

void manager_bpf_status(const struct manager *m, char *buf, size_t len)
{
	const struct manager_stats *s = &m->stats;

	snprintf(buf, len,
		 "{\"page_fault\":\"%s%s\",\"samples\":%" PRIu64 ",\"overflow\":%" PRIu64
		 ",\"unmatched\":%" PRIu64 ",\"first_touch\":%" PRIu64 "}",
		 m->bpf ? "on" : "off: ", m->bpf ? "" : m->bpf_off_why, s->bpf_samples, s->bpf_overflow,
		 s->bpf_unmatched, s->bpf_first_touch);
}
