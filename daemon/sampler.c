/* SPDX-License-Identifier: MIT */
/*
 * The manager's side of the eBPF programs (the loader is bpf.c): starts them if the host allows,
 * keeps the kernel's table of tracked ranges in step with attachments, each epoch turns the
 * per-page fault counts into weighted TIERD_EV_SAMPLE events for the policy and reads what the
 * kernel reported of tierd's own migrations (kernel_migrations in the status, metrics).
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

/* The reasons go into the status JSON as they are: keep them plain strings. */
static void json_plain(char *s)
{
	for (; *s; s++)
		if (*s == '"' || *s == '\\' || (unsigned char)*s < 0x20)
			*s = '\'';
}

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
		log_info("eBPF programs are off: %s", m->bpf_off_why);
		return;
	}
	r = tierd_bpf_new(&o, &m->bpf, m->bpf_off_why, sizeof(m->bpf_off_why));
	if (r < 0) {
		m->bpf = NULL;
		json_plain(m->bpf_off_why);
		log_warning("eBPF sampler page_fault and counter migrate are off: %s; tracking goes on "
			    "with faults alone", m->bpf_off_why);
		return;
	}
	m->bpf_off_why[0] = '\0';
	log_info("eBPF sampler page_fault is on (%" PRIu32 " pages per epoch)", o.map_entries);
	if (tierd_bpf_migrate_status(m->bpf))
		log_warning("eBPF counter migrate is off: %s; tierctl shows tierd's own move_pages "
			    "results only", tierd_bpf_migrate_status(m->bpf));
	else
		log_info("eBPF counter migrate is on (tp_btf/mm_migrate_pages)");
}

void manager_bpf_stop(struct manager *m)
{
	m->bpf = tierd_bpf_free(m->bpf);
}

const char *manager_bpf_reason(const struct manager *m, unsigned reason)
{
	static char num[16];
	const char *name = m->bpf ? tierd_bpf_migrate_reason(m->bpf, reason) : NULL;

	if (name)
		return name;
	snprintf(num, sizeof(num), "%u", reason);
	return num;
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
	(void)tierd_bpf_migrate_read(m->bpf, m->kmig); /* a failed read leaves zeros for an epoch */
	r = tierd_bpf_drain(m->bpf, on_sample, m);
	if (r < 0)
		log_ratelimited(LOG_WARNING, r, "Draining the eBPF page-fault counts failed: %m");
	if (tierd_bpf_stats(m->bpf, &st) == 0) {
		m->stats.bpf_overflow = st.overflow;
		m->stats.bpf_first_touch = st.first_touch;
	}
}

struct tierd_kmig manager_bpf_kmig_total(const struct manager *m)
{
	struct tierd_kmig t = { 0 };

	for (unsigned r = 0; r < TIERD_BPF_MIGRATE_REASONS; r++) {
		t.calls += m->kmig[r].calls;
		t.succeeded += m->kmig[r].succeeded;
		t.failed += m->kmig[r].failed;
		t.thp_succeeded += m->kmig[r].thp_succeeded;
		t.thp_failed += m->kmig[r].thp_failed;
		t.thp_split += m->kmig[r].thp_split;
		t.large_folio_split += m->kmig[r].large_folio_split;
	}
	return t;
}

static int kmig_json(char *buf, size_t len, const struct tierd_kmig *k)
{
	return snprintf(buf, len,
			"\"calls\":%" PRIu64 ",\"succeeded\":%" PRIu64 ",\"failed\":%" PRIu64
			",\"thp_succeeded\":%" PRIu64 ",\"thp_failed\":%" PRIu64 ",\"thp_split\":%" PRIu64
			",\"large_folio_split\":%" PRIu64,
			k->calls, k->succeeded, k->failed, k->thp_succeeded, k->thp_failed, k->thp_split,
			k->large_folio_split);
}

void manager_bpf_status(const struct manager *m, char *buf, size_t len)
{
	const struct manager_stats *s = &m->stats;
	struct tierd_kmig total = manager_bpf_kmig_total(m);
	const char *migrate_why = m->bpf ? tierd_bpf_migrate_status(m->bpf) : m->bpf_off_why;
	size_t n;
	int w;

	w = snprintf(buf, len,
		     "{\"page_fault\":\"%s%s\",\"samples\":%" PRIu64 ",\"overflow\":%" PRIu64
		     ",\"unmatched\":%" PRIu64 ",\"first_touch\":%" PRIu64 ",\"migrate\":\"%s%s\"},"
		     "\"kernel_migrations\":{",
		     m->bpf ? "on" : "off: ", m->bpf ? "" : m->bpf_off_why, s->bpf_samples, s->bpf_overflow,
		     s->bpf_unmatched, s->bpf_first_touch, migrate_why ? "off: " : "on",
		     migrate_why ? migrate_why : "");
	n = w < 0 ? 0 : (size_t)w;
	if (n < len)
		n += (size_t)kmig_json(buf + n, len - n, &total);
	if (n < len)
		n += (size_t)snprintf(buf + n, len - n, ",\"reasons\":{");
	/* Only the reasons seen: most never happen to tierd. */
	for (unsigned r = 0, first = 1; r < TIERD_BPF_MIGRATE_REASONS && n < len; r++) {
		if (!m->kmig[r].calls)
			continue;
		n += (size_t)snprintf(buf + n, len - n, "%s\"%s\":{", first ? "" : ",",
				      manager_bpf_reason(m, r));
		if (n < len)
			n += (size_t)kmig_json(buf + n, len - n, &m->kmig[r]);
		if (n < len)
			n += (size_t)snprintf(buf + n, len - n, "}");
		first = 0;
	}
	if (n < len)
		snprintf(buf + n, len - n, "}}");
}
