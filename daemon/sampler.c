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
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bpf.h"
#include "log.h"
#include "manager.h"
#include "memcg.h"
#include "perfsel.h"

/* The reasons go into the status JSON as they are: keep them plain strings. */
static void json_plain(char *s)
{
	for (; *s; s++)
		if (*s == '"' || *s == '\\' || (unsigned char)*s < 0x20)
			*s = '\'';
}

/* A tracked process per client at most, plus room: clients beyond max_clients are refused. */
#define BPF_PROCS_MIN 64

/* One load, handed from the loading thread to the loop: the thread writes bpf, why, perf_r and
 * perf_why, then one byte to pipe[1]; the loop reads none of them before that byte and the join. */
struct bpf_load {
	pthread_t thread;
	int pipe[2];
	struct tierd_bpf_opts o;
	struct perfsel ev;
	bool want_perf;
	struct tierd_bpf *bpf; /* NULL: the load failed, why says why */
	char why[192];
	int perf_r;
	char perf_why[256];
};

static void *bpf_load_thread(void *arg)
{
	struct bpf_load *l = arg;
	char one = 1;

	if (tierd_bpf_new(&l->o, &l->bpf, l->why, sizeof(l->why)) < 0)
		l->bpf = NULL;
	else if (l->want_perf)
		l->perf_r = tierd_bpf_perf_start(l->bpf, &l->ev, l->perf_why, sizeof(l->perf_why));
	/* A full or broken pipe cannot happen (one byte, read end open until joined). */
	(void)!write(l->pipe[1], &one, 1);
	return NULL;
}

static void bpf_load_free(struct bpf_load *l)
{
	if (!l)
		return;
	if (l->pipe[0] >= 0)
		close(l->pipe[0]);
	if (l->pipe[1] >= 0)
		close(l->pipe[1]);
	free(l);
}

/* About what loading the programs takes of tierd's memory at its peak: libbpf holds the kernel's
 * BTF parsed (twice the file: measured 16 MiB peak over tierd's 0.8 MiB idle with the default
 * maps and a 5.3 MiB BTF, 9.5 MiB after), plus the maps as sized. */
static uint64_t bpf_load_need(const struct tierd_bpf_opts *o)
{
	struct stat st;
	uint64_t btf = stat("/sys/kernel/btf/vmlinux", &st) == 0 ? (uint64_t)st.st_size : 8u << 20;
	long ncpus = sysconf(_SC_NPROCESSORS_CONF);

	return 2 * btf + (2u << 20) /* programs, verifier, skeleton */ +
	       (uint64_t)o->map_entries * 72 + (uint64_t)o->perf_map_entries * 72 +
	       o->seen_pages / 8 + o->percpu_pages * 8 * (uint64_t)(ncpus > 0 ? ncpus : 1) +
	       (uint64_t)o->max_procs * 320;
}

/* True (and the reason set) when tierd's memory limit has no room for loading the programs: under
 * MemoryMax= a load that does not fit would have tierd OOM-killed, or refused with ENOMEM. */
static bool bpf_no_room(struct manager *m, const struct tierd_bpf_opts *o)
{
	uint64_t room = 0, limit = 0, need = bpf_load_need(o);
	char where[512];

	if (memcg_room(&room, &limit, where, sizeof(where)) != 1 || room >= need)
		return false;
	snprintf(m->bpf_off_why, sizeof(m->bpf_off_why),
		 "tierd's memory limit leaves %" PRIu64 " MiB (%" PRIu64 " MiB in %.200s); loading the "
		 "eBPF programs takes about %" PRIu64 " MiB: raise MemoryMax= or set sampling.bpf = no",
		 room >> 20, limit >> 20, where, (need + (1u << 20) - 1) >> 20);
	json_plain(m->bpf_off_why);
	return true;
}

void manager_bpf_start(struct manager *m)
{
	struct bpf_load *l;
	sigset_t all, old;
	int r, pr = -ENOENT;

	if (!m->cfg.bpf) {
		snprintf(m->bpf_off_why, sizeof(m->bpf_off_why), "sampling.bpf = no");
		snprintf(m->perf_desc, sizeof(m->perf_desc), "sampling.bpf = no");
		log_info("eBPF programs are off: %s", m->bpf_off_why);
		return;
	}
	l = calloc(1, sizeof(*l));
	if (!l) {
		r = -ENOMEM;
		goto fail;
	}
	l->pipe[0] = l->pipe[1] = -1;
	l->o = (struct tierd_bpf_opts){ .map_entries = m->cfg.bpf_map_entries,
					.max_procs = m->cfg.max_clients > BPF_PROCS_MIN ? m->cfg.max_clients
											 : BPF_PROCS_MIN,
					.seen_pages = m->cfg.bpf_seen_pages,
					.percpu_pages = m->cfg.bpf_percpu_pages };
	/* The event first: its count map is sized at load, and not at all without an event. */
	if (!m->cfg.perf)
		snprintf(m->perf_desc, sizeof(m->perf_desc), "sampling.perf = no");
	else
		pr = perfsel_probe(m->cfg.sysfs_root, m->cfg.perf_software, m->cfg.perf_period, &l->ev,
				   m->perf_desc, sizeof(m->perf_desc));
	if (pr == 0) {
		l->o.perf_map_entries = m->cfg.bpf_map_entries;
		l->want_perf = true;
	}
	if (bpf_no_room(m, &l->o))
		goto off; /* bpf_off_why says why */
	if (pipe2(l->pipe, O_CLOEXEC | O_NONBLOCK) < 0) {
		r = -errno;
		goto fail;
	}
	m->bpf_watch = (struct watch){ WATCH_BPF, m };
	if (epoll_ctl(m->epfd, EPOLL_CTL_ADD, l->pipe[0],
		      &(struct epoll_event){ .events = EPOLLIN, .data.ptr = &m->bpf_watch }) < 0) {
		r = -errno;
		goto fail;
	}
	/* The thread starts with every signal blocked: tierd takes SIGTERM and SIGHUP through its
	 * signalfd, and a signal the kernel handed to this thread instead would take the default
	 * action (terminate) while it loads. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	r = -pthread_create(&l->thread, NULL, bpf_load_thread, l);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (r < 0) {
		(void)epoll_ctl(m->epfd, EPOLL_CTL_DEL, l->pipe[0], NULL);
		goto fail;
	}
	snprintf(m->bpf_off_why, sizeof(m->bpf_off_why), "loading");
	if (pr == 0)
		snprintf(m->perf_desc, sizeof(m->perf_desc), "loading");
	m->bpf_loading = l;
	return;
fail:
	snprintf(m->bpf_off_why, sizeof(m->bpf_off_why), "cannot start loading: %s", strerror(-r));
off:
	bpf_load_free(l);
	snprintf(m->perf_desc, sizeof(m->perf_desc), "%s", m->bpf_off_why);
	log_warning("eBPF programs are off: %s; tracking goes on with faults alone", m->bpf_off_why);
}

/* Joins the loading thread and takes what it loaded (NULL on failure). */
static struct bpf_load *bpf_load_join(struct manager *m)
{
	struct bpf_load *l = m->bpf_loading;

	if (!l)
		return NULL;
	m->bpf_loading = NULL;
	(void)epoll_ctl(m->epfd, EPOLL_CTL_DEL, l->pipe[0], NULL);
	pthread_join(l->thread, NULL);
	return l;
}

void manager_bpf_loaded(struct manager *m)
{
	struct bpf_load *l = bpf_load_join(m);

	if (!l)
		return;
	m->bpf = l->bpf;
	if (!m->bpf) {
		snprintf(m->bpf_off_why, sizeof(m->bpf_off_why), "%s", l->why);
		json_plain(m->bpf_off_why);
		snprintf(m->perf_desc, sizeof(m->perf_desc), "%s", m->bpf_off_why);
		log_warning("eBPF sampler page_fault and counter migrate are off: %s; tracking goes on "
			    "with faults alone", m->bpf_off_why);
		bpf_load_free(l);
		return;
	}
	m->bpf_off_why[0] = '\0';
	if (l->o.percpu_pages)
		log_info("eBPF sampler page_fault is on (per-CPU counters for %" PRIu64 " pages)",
			 l->o.percpu_pages < l->o.seen_pages ? l->o.percpu_pages : l->o.seen_pages);
	else
		log_info("eBPF sampler page_fault is on (%" PRIu32 " pages per epoch)", l->o.map_entries);
	if (tierd_bpf_migrate_status(m->bpf))
		log_warning("eBPF counter migrate is off: %s; tierctl shows tierd's own move_pages "
			    "results only", tierd_bpf_migrate_status(m->bpf));
	else
		log_info("eBPF counter migrate is on (tp_btf/mm_migrate_pages)");
	if (l->want_perf) {
		if (l->perf_r == 0) {
			m->perf_on = true;
			m->perf_period = l->ev.sample_period;
			snprintf(m->perf_desc, sizeof(m->perf_desc), "%s", l->ev.desc);
			log_info("eBPF sampler perf is on: %s, %d CPUs", l->ev.desc, tierd_bpf_perf_cpus(m->bpf));
		} else {
			snprintf(m->perf_desc, sizeof(m->perf_desc), "%s", l->perf_why);
		}
	}
	json_plain(m->perf_desc);
	if (!m->perf_on)
		log_notice("eBPF sampler perf is off: %s", m->perf_desc);
	/* Clients that attached while the programs loaded: their pages' first faults from now on
	 * are first touches. */
	for (const struct client *c = m->clients; c; c = c->next)
		for (const struct attachment *a = c->attachments; a; a = a->client_next)
			if (!a->dead)
				manager_bpf_track(m, a);
	bpf_load_free(l);
}

void manager_bpf_stop(struct manager *m)
{
	struct bpf_load *l = bpf_load_join(m);

	if (l) /* stopped while loading: what was loaded goes too */
		tierd_bpf_free(l->bpf);
	bpf_load_free(l);
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

static void on_perf_sample(void *ctx, uint32_t seg_id, uint64_t page, uint64_t count)
{
	struct manager *m = ctx;
	struct segment *seg;
	uint64_t w;

	m->stats.perf_samples += count;
	for (seg = m->segments; seg && seg->id != seg_id; seg = seg->next)
		;
	if (!seg || page >= seg->npages) {
		m->stats.bpf_unmatched += count;
		return;
	}
	/* A sample stands for sample_period events (loads, ops, faults) of that page. */
	w = count * (m->perf_period ? m->perf_period : 1);
	manager_policy_event_weighted(m, seg, page, TIERD_EV_SAMPLE, w > UINT16_MAX ? UINT16_MAX : (uint16_t)w);
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
	if (m->perf_on) {
		r = tierd_bpf_perf_drain(m->bpf, on_perf_sample, m);
		if (r < 0)
			log_ratelimited(LOG_WARNING, r, "Draining the eBPF perf samples failed: %m");
	}
	if (tierd_bpf_stats(m->bpf, &st) == 0) {
		m->stats.bpf_overflow = st.overflow;
		m->stats.bpf_first_touch = st.first_touch;
		m->stats.perf_overflow = st.perf_overflow;
		m->stats.perf_other = st.perf_other;
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
		     "{\"page_fault\":\"%s%s\",\"counters\":\"%s\",\"samples\":%" PRIu64 ",\"overflow\":%" PRIu64
		     ",\"unmatched\":%" PRIu64 ",\"first_touch\":%" PRIu64 ",\"migrate\":\"%s%s\","
		     "\"perf\":\"%s: %s\",\"perf_samples\":%" PRIu64 ",\"perf_overflow\":%" PRIu64
		     ",\"perf_other\":%" PRIu64 "},\"kernel_migrations\":{",
		     m->bpf ? "on" : "off: ", m->bpf ? "" : m->bpf_off_why,
		     m->cfg.bpf_percpu_pages ? "per-cpu" : "hash", s->bpf_samples, s->bpf_overflow,
		     s->bpf_unmatched, s->bpf_first_touch, migrate_why ? "off: " : "on",
		     migrate_why ? migrate_why : "", m->perf_on ? "on" : "off", m->perf_desc,
		     s->perf_samples, s->perf_overflow, s->perf_other);
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
