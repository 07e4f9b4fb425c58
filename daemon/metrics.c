/* SPDX-License-Identifier: MIT */
/*
 * Metrics in Prometheus' text exposition format: served by `tierctl metrics` (a control request,
 * no network listener) and written for node_exporter's textfile collector when configured
 * (temp file + rename, so a scrape never reads half a file). Names follow Prometheus'
 * conventions: base units, _total for counters, no per-process labels (they churn: pids, segment
 * ids); what varies per process is in tierctl status.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "host.h"
#include "log.h"
#include "manager.h"

#ifndef TIERD_VERSION
#define TIERD_VERSION "0.1"
#endif

/* Upper bounds of the fault latency buckets, in seconds: 1-2.5-5 per decade, 1 us .. 1 s. A
 * resolved fault takes a few microseconds; a held one up to a batch's wait (200 ms). */
static const double lat_bounds_s[FAULT_LAT_BUCKETS] = {
	1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3,
	2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 1e-1, 2.5e-1, 5e-1, 1,
};

void manager_fault_latency(struct manager *m, uint64_t usec, uint64_t n)
{
	size_t i = 0;

	while (i < FAULT_LAT_BUCKETS && (double)usec / 1e6 > lat_bounds_s[i])
		i++;
	m->stats.fault_lat[i] += n;
	m->stats.fault_lat_count += n;
	m->stats.fault_lat_sum_s += (double)usec * (double)n / 1e6;
}

struct out {
	char *buf;
	size_t len, cap;
	bool full;
};

static void put(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(struct out *o, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (o->full)
		return;
	va_start(ap, fmt);
	n = vsnprintf(o->buf + o->len, o->cap - o->len, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= o->cap - o->len)
		o->full = true;
	else
		o->len += (size_t)n;
}

static void family(struct out *o, const char *name, const char *type, const char *help)
{
	put(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void counter(struct out *o, const char *name, const char *help, uint64_t v)
{
	family(o, name, "counter", help);
	put(o, "%s %" PRIu64 "\n", name, v);
}

static void gauge(struct out *o, const char *name, const char *help, double v)
{
	family(o, name, "gauge", help);
	put(o, "%s %.17g\n", name, v);
}

static double start_time_s(const struct manager *m)
{
	struct timespec ts;

	/* started_usec is CLOCK_MONOTONIC: Prometheus wants wall-clock time. */
	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9 - (double)(now_usec() - m->started_usec) / 1e6;
}

int manager_metrics(const struct manager *m, char *buf, size_t len)
{
	const struct manager_stats *s = &m->stats;
	const struct migrate_stats *ms = &m->mstats;
	struct out o = { .buf = buf, .cap = len };
	uint64_t cum = 0, seg_bytes[2] = { 0 }, nsegs[2] = { 0 };
	uint64_t node_bytes[SEG_MAX_NODES][2] = { { 0 } };

	family(&o, "tierd_build_info", "gauge", "tierd's version and policy ABI (always 1).");
	put(&o, "tierd_build_info{version=\"%s\",policy_abi=\"%u\",proto=\"%u\"} 1\n", TIERD_VERSION,
	    TIERD_POLICY_ABI_VERSION, TIERD_PROTO_VERSION);
	gauge(&o, "tierd_start_time_seconds", "When tierd started (seconds since the Unix epoch).",
	      start_time_s(m));
	counter(&o, "tierd_epochs_total", "Sampling epochs.", s->epochs);
	gauge(&o, "tierd_clients", "Connected clients.", m->nclients);
	counter(&o, "tierd_clients_refused_total", "Connections refused (allow-list, limits).",
		s->clients_refused);
	counter(&o, "tierd_clients_dropped_total", "Clients dropped (protocol errors, hang-ups).",
		s->clients_dropped);
	counter(&o, "tierd_attach_refused_total", "ATTACH requests refused.", s->attach_refused);
	counter(&o, "tierd_fd_refusals_total",
		"Connections and messages with fds refused: tierd was at its open file limit.",
		s->fd_refusals);
	counter(&o, "tierd_attach_nomem_total",
		"ATTACH requests refused for lack of memory (alias mapping or page state).",
		s->attach_nomem);
	counter(&o, "tierd_attach_peer_exited_total",
		"ATTACH requests refused: the process that connected had exited (its pid may be "
		"another's now).", s->attach_peer_exited);
	counter(&o, "tierd_hello_timeouts_total",
		"Connections closed for sending no HELLO within clients.hello_timeout_ms.",
		s->hello_timeouts);
	counter(&o, "tierd_zap_acks_stale_total",
		"ZAP_DONE messages ignored: no ZAP of that attachment was waiting for them.",
		s->zap_acks_stale);
	counter(&o, "tierd_faults_outside_total",
		"Faults on memory outside the segment of the uffd they came from (registered by the "
		"client itself), resolved like the others.", s->faults_outside);
	gauge(&o, "tierd_heap_bytes", "Bytes of tierd's heap in use (malloc).",
	      (double)manager_heap_bytes());

	for (const struct segment *seg = m->segments; seg; seg = seg->next) {
		int huge = seg->page_size > 4096;

		seg_bytes[huge] += seg->size_bytes;
		nsegs[huge]++;
		for (unsigned n = 0; n < SEG_MAX_NODES; n++)
			node_bytes[n][huge] += seg->pages_on_node[n] * seg->page_size;
	}
	/* A family's samples follow its TYPE line, together. */
	family(&o, "tierd_segments", "gauge", "Tracked segments, by page size.");
	for (int h = 0; h < 2; h++)
		put(&o, "tierd_segments{page_size=\"%s\"} %" PRIu64 "\n", h ? "huge" : "4096", nsegs[h]);
	family(&o, "tierd_segment_bytes", "gauge", "Size of the tracked segments, by page size.");
	for (int h = 0; h < 2; h++)
		put(&o, "tierd_segment_bytes{page_size=\"%s\"} %" PRIu64 "\n", h ? "huge" : "4096",
		    seg_bytes[h]);
	family(&o, "tierd_node_bytes", "gauge",
	       "Tracked memory per NUMA node, by page size, as of the last placement pass.");
	for (unsigned i = 0; i < m->topo.nnodes; i++) {
		int id = m->topo.nodes[i].id;

		if (id < 0 || id >= SEG_MAX_NODES)
			continue;
		for (int h = 0; h < 2; h++)
			put(&o, "tierd_node_bytes{node=\"%d\",page_size=\"%s\"} %" PRIu64 "\n", id,
			    h ? "huge" : "4096", node_bytes[id][h]);
	}

	counter(&o, "tierd_faults_total", "Minor faults tierd resolved.", s->faults);
	/* Zero while the sampler is off: tierctl status says whether it runs, and why not. */
	counter(&o, "tierd_bpf_samples_total",
		"Re-access page faults of tracked processes counted by the eBPF sampler and drained.",
		s->bpf_samples);
	counter(&o, "tierd_bpf_perf_samples_total",
		"Samples of the eBPF perf_event sampler in tracked pages, drained.", s->perf_samples);
	counter(&o, "tierd_bpf_perf_overflow_total",
		"Samples of the eBPF perf_event sampler that found its map full.", s->perf_overflow);
	counter(&o, "tierd_bpf_first_touch_total",
		"First page faults of a page in a tracked process, seen by the eBPF sampler: not heat.",
		s->bpf_first_touch);
	counter(&o, "tierd_bpf_overflow_total",
		"Page faults the eBPF sampler counted as overflow (its map was full that epoch).",
		s->bpf_overflow);
	counter(&o, "tierd_first_touch_faults_total",
		"Faults on pages a process had never mapped (started or forked): not heat.",
		s->first_touch_faults);
	/* What the kernel reported of tierd's own migrations (tp_btf/mm_migrate_pages), per reason
	 * seen; nothing while that counter is off or nothing migrated. */
	family(&o, "tierd_kernel_migrate_calls_total", "counter",
	       "migrate_pages() calls the kernel made for tierd (move_pages, mbind), by reason.");
	for (unsigned r = 0; r < TIERD_BPF_MIGRATE_REASONS; r++)
		if (m->kmig[r].calls)
			put(&o, "tierd_kernel_migrate_calls_total{reason=\"%s\"} %" PRIu64 "\n",
			    manager_bpf_reason(m, r), m->kmig[r].calls);
	family(&o, "tierd_kernel_migrate_pages_total", "counter",
	       "Outcomes migrate_pages() reported for tierd's calls, by reason and outcome (THP "
	       "counts are also in succeeded/failed).");
	for (unsigned r = 0; r < TIERD_BPF_MIGRATE_REASONS; r++) {
		const struct tierd_kmig *k = &m->kmig[r];
		const struct {
			const char *name;
			uint64_t v;
		} out[] = { { "succeeded", k->succeeded },	   { "failed", k->failed },
			    { "thp_succeeded", k->thp_succeeded }, { "thp_failed", k->thp_failed },
			    { "thp_split", k->thp_split },	   { "large_folio_split", k->large_folio_split } };

		if (!k->calls)
			continue;
		for (size_t i = 0; i < sizeof(out) / sizeof(out[0]); i++)
			put(&o, "tierd_kernel_migrate_pages_total{reason=\"%s\",outcome=\"%s\"} %" PRIu64 "\n",
			    manager_bpf_reason(m, r), out[i].name, out[i].v);
	}
	counter(&o, "tierd_faults_held_total", "Faults held while their page's migration batch moved.",
		s->faults_held);
	family(&o, "tierd_fault_latency_seconds", "histogram",
	       "From tierd reading a fault to resolving it; held faults from their batch's start.");
	for (size_t i = 0; i < FAULT_LAT_BUCKETS; i++) {
		cum += s->fault_lat[i];
		put(&o, "tierd_fault_latency_seconds_bucket{le=\"%g\"} %" PRIu64 "\n", lat_bounds_s[i],
		    cum);
	}
	put(&o, "tierd_fault_latency_seconds_bucket{le=\"+Inf\"} %" PRIu64 "\n", s->fault_lat_count);
	put(&o, "tierd_fault_latency_seconds_sum %.9f\n", s->fault_lat_sum_s);
	put(&o, "tierd_fault_latency_seconds_count %" PRIu64 "\n", s->fault_lat_count);
	counter(&o, "tierd_windows_armed_total", "Sampling windows armed.", s->windows_armed);
	counter(&o, "tierd_zaps_total", "ZAP requests sent to clients.", s->zaps_sent);
	counter(&o, "tierd_zaps_skipped_total", "ZAP requests skipped (client socket full or behind).",
		s->zaps_skipped);
	counter(&o, "tierd_zaps_rested_total",
		"ZAP requests not sent to idle attachments (no fault from their recent windows).",
		s->zaps_rested);

	family(&o, "tierd_pages_migrated_total", "counter",
	       "Pages tierd moved, by source and target node, page size and direction.");
	for (int f = 0; f < MIGRATE_STAT_NODES; f++)
		for (int t = 0; t < MIGRATE_STAT_NODES; t++)
			for (int h = 0; h < 2; h++) {
				const struct tier_node *from = tiers_node(&m->topo, f), *to;

				if (!ms->moved[f][t][h])
					continue;
				to = tiers_node(&m->topo, t);
				put(&o, "tierd_pages_migrated_total{from=\"%d\",to=\"%d\",page_size=\"%s\","
				    "reason=\"%s\"} %" PRIu64 "\n", f, t, h ? "huge" : "4096",
				    from && to && to->tier < from->tier ? "promote" : "demote",
				    ms->moved[f][t][h]);
			}
	counter(&o, "tierd_migrated_bytes_total", "Bytes tierd moved.", ms->bytes_moved);
	family(&o, "tierd_migration_failures_total", "counter",
	       "Pages move_pages(2) did not move, by reason (as the kernel gave it).");
	put(&o, "tierd_migration_failures_total{reason=\"nomem\"} %" PRIu64 "\n", ms->err_nomem);
	put(&o, "tierd_migration_failures_total{reason=\"busy\"} %" PRIu64 "\n", ms->err_busy);
	put(&o, "tierd_migration_failures_total{reason=\"mapped\"} %" PRIu64 "\n", ms->err_access);
	put(&o, "tierd_migration_failures_total{reason=\"gone\"} %" PRIu64 "\n", ms->err_noent);
	put(&o, "tierd_migration_failures_total{reason=\"fault\"} %" PRIu64 "\n", ms->err_fault);
	put(&o, "tierd_migration_failures_total{reason=\"other\"} %" PRIu64 "\n", ms->err_other);
	counter(&o, "tierd_migration_move_all_fallback_total",
		"Pages of zap-mode moves refused as still mapped (EACCES) and retried with "
		"MPOL_MF_MOVE_ALL.", ms->fallback_pages);
	counter(&o, "tierd_migration_held_mems_total",
		"Planned page moves not made: the target node is outside the cpuset mems of a "
		"process mapping the page, or of tierd.", ms->held_mems);
	counter(&o, "tierd_migration_batches_total", "Zap-then-move batches.", s->batches);
	counter(&o, "tierd_migration_batch_timeouts_total",
		"Batches that moved before every client had zapped.", s->batch_timeouts);
	counter(&o, "tierd_placement_passes_total", "Placement passes.", ms->passes);
	gauge(&o, "tierd_placement_pass_seconds", "Duration of the last placement pass.",
	      (double)ms->pass_usec_last / 1e6);
	family(&o, "tierd_move_seconds_total", "counter", "Time spent inside move_pages(2).");
	put(&o, "tierd_move_seconds_total %.6f\n", (double)ms->move_usec / 1e6);

	family(&o, "tierd_policy_info", "gauge", "The running placement policy (always 1).");
	put(&o, "tierd_policy_info{name=\"%s\"} 1\n", m->policy ? policy_name(m->policy) : "");
	gauge(&o, "tierd_policy_failed", "1 when the last policy was disabled (tierctl policy says why).",
	      m->policy_failed_why[0] ? 1 : 0);
	gauge(&o, "tierd_recording", "1 while the policy's input is recorded.", m->trace ? 1 : 0);
	return o.full ? -ENOBUFS : (int)o.len;
}

void manager_metrics_textfile(struct manager *m)
{
	static char buf[65536];
	char tmp[sizeof(m->cfg.metrics_textfile) + 16];
	uint64_t now = now_usec();
	int n, fd;

	if (!m->cfg.metrics_textfile[0] ||
	    now - m->metrics_written_usec < (uint64_t)m->cfg.metrics_interval_ms * 1000)
		return;
	m->metrics_written_usec = now;
	n = manager_metrics(m, buf, sizeof(buf));
	if (n < 0) {
		log_ratelimited(LOG_WARNING, n, "metrics: more than %zu bytes", sizeof(buf));
		return;
	}
	/* In the same directory, so that rename() replaces the file atomically. */
	snprintf(tmp, sizeof(tmp), "%s.tmp", m->cfg.metrics_textfile);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
	if (fd < 0) {
		log_ratelimited(LOG_WARNING, -errno, "metrics: %s: %m", tmp);
		return;
	}
	if (write(fd, buf, (size_t)n) != n) {
		log_ratelimited(LOG_WARNING, -errno, "metrics: writing %s: %m", tmp);
		close(fd);
		(void)unlink(tmp);
		return;
	}
	if (close(fd) < 0) {
		log_ratelimited(LOG_WARNING, -errno, "metrics: writing %s: %m", tmp);
		(void)unlink(tmp);
		return;
	}
	if (rename(tmp, m->cfg.metrics_textfile) < 0) {
		log_ratelimited(LOG_WARNING, -errno, "metrics: renaming %s: %m", tmp);
		(void)unlink(tmp);
	}
}
