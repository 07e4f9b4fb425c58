/* SPDX-License-Identifier: MIT */
/*
 * tierd-sim's engine: replays an access trace against a tier model, with the sampling tierd does,
 * and runs a policy through the policy host exactly as tierd hosts it. Pure: no clock, no
 * randomness but the seeded generators, so a trace and a seed give one result and one decision
 * log.
 *
 * Generators write one segment (id 1). Epoch 0 is a load: every page touched once in page order
 * (the application populating its memory), so first touch places pages by address, not by heat;
 * zipf scatters its ranks over the pages with a seeded permutation. Then each epoch has
 * epoch_events accesses, plus sweeps (scan, mix): every page once, spread over scan_epochs.
 *
 * Model (FULL traces and generators):
 *   - Tiers: tier 0 of fast_bytes (also the fast budget), tier 1 large enough for everything, or
 *     with ntiers = 3 a tier 1 of mid_bytes and a tier 2 for the rest. Node i is tier i.
 *   - First touch: a page lands on the fastest tier with room, as the kernel's default policy
 *     would put it; without migration it stays there (the "no-migration" baseline).
 *   - Sampling as tierd's manager_epoch does it: per epoch, windows picked by the host's region
 *     sampler (daemon/region.c) with max_windows split over the segments that had accesses; the
 *     first access to a page of an armed window raises one FAULT (then the page counts as mapped
 *     until the window closes); windows close at the epoch's end into the regions' scores;
 *     regions adapt every aggregate_epochs; decide() runs every epoch, with a migration pass
 *     every migrate_every_epochs; the plan is applied; new windows are armed.
 *   - Costs: each access costs its tier's latency; each page moved costs migrate_ns_per_4k
 *     scaled by its size. Mean access time = (access latencies + migration costs) / accesses.
 *   - Optimum: each epoch's hottest pages (known in hindsight) on tier 0 up to its capacity, no
 *     migration cost.
 * SAMPLED traces (recorded by tierd) are replayed as recorded: views from the trace, decide() at
 * each DECIDE record; nothing is moved (page nodes come from the trace).
 */
#ifndef TIERD_POLICY_SIM_H
#define TIERD_POLICY_SIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "tierd/policy.h"
#include "trace.h"

/* ---- sources: a trace file, or a generator ------------------------------------------------ */

enum sim_gen_kind { SIM_GEN_ZIPF, SIM_GEN_SHIFT, SIM_GEN_SCAN, SIM_GEN_MIX };

struct sim_gen_config {
	enum sim_gen_kind kind;
	uint64_t pages;             /* segment size (one segment, id 1) */
	uint64_t events;            /* accesses in all (the load and sweeps included) */
	uint64_t epoch_events;      /* accesses per epoch besides sweeps: the time base */
	uint64_t seed;
	uint32_t page_size;         /* bytes (4096) */
	uint32_t epoch_ms;          /* 100 */
	double zipf_skew;           /* zipf, mix: 0.99 */
	uint64_t hot_pages;         /* shift, scan, mix: hot set size (0: pages / 8) */
	uint32_t shift_epochs;      /* shift, mix: the hot set moves every this many epochs (200) */
	double hot_share;           /* shift, scan: share of accesses that go to the hot set (0.9) */
	uint32_t scan_every_epochs; /* scan, mix: a sweep over the whole segment starts every ... (50) */
	uint32_t scan_epochs;       /* ... and lasts this many epochs (4) */
};

/* Fills the defaults above for `kind`. */
void sim_gen_defaults(struct sim_gen_config *g, enum sim_gen_kind kind);
/* "zipf" | "shift" | "scan" | "mix". Returns 0 or -EINVAL. */
int sim_gen_parse_kind(const char *name, enum sim_gen_kind *kind);
const char *sim_gen_kind_name(enum sim_gen_kind kind);

struct sim_source;

/* Returns 0, -EINVAL with the reason, or -ENOMEM. */
int sim_source_gen(const struct sim_gen_config *g, struct sim_source **ret, char *why, size_t whylen);
int sim_source_trace(const char *path, struct sim_source **ret, char *why, size_t whylen);
void sim_source_free(struct sim_source *s);
/* Back to the first record (each policy replays the same stream). Returns 0 or a negative errno. */
int sim_source_rewind(struct sim_source *s, char *why, size_t whylen);
/* 1 with a record, 0 at the end, or a negative errno with the reason. */
int sim_source_next(struct sim_source *s, struct trace_rec *rec, char *why, size_t whylen);
const struct trace_header *sim_source_header(const struct sim_source *s);

/* Writes the source's whole stream to `path` as a trace (replacing it). Returns 0 or -errno. */
int sim_source_write(struct sim_source *s, const char *path, char *why, size_t whylen);

/* ---- runs ----------------------------------------------------------------------------------- */

struct sim_config {
	uint64_t fast_bytes;          /* tier 0 capacity and fast budget */
	uint32_t ntiers;              /* 2 or 3 */
	uint64_t mid_bytes;           /* tier 1 capacity when ntiers = 3 */
	double lat_ns[3];             /* per access, by tier */
	double migrate_ns_per_4k;     /* per 4 KiB moved */
	uint32_t rate_limit_mbps;     /* max_move_bytes = rate x the time between passes */
	float high_wm, low_wm;
	uint32_t max_windows;
	uint64_t window_bytes;
	size_t min_regions, max_regions;
	float merge_delta;
	uint32_t aggregate_epochs, migrate_every_epochs;
	uint64_t seed;                /* the policy's env seed; the regions' seeds derive from it */
	FILE *decision_log;           /* NULL: none */
};

/* tierd's defaults (daemon/config.c) and the latencies documented in sim.c. fast_bytes is 0:
 * the caller says how big the fast tier is. */
void sim_config_defaults(struct sim_config *c);

struct sim_result {
	char policy[64];
	uint64_t accesses, fast_hits;
	double hit_ratio;
	uint64_t bytes_migrated, pages_promoted, pages_demoted;
	double mean_access_ns;
	uint64_t epochs, decides;
	/* Generators with a stable hot set (scan): share of it on tier 0, the lowest seen from the
	 * first sweep on, and at the end; -1 when the source has none. */
	double hot_on_fast_min, hot_on_fast_end;
	char disabled[256];           /* why the host disabled the policy; "" when it ran */
	float *series;                /* hit ratio per epoch */
	size_t nseries;
};

void sim_result_free(struct sim_result *r);

/* Runs `spec` (a built-in's name or a module path, opened with policy_open) over a FULL source.
 * Returns 0 or a negative errno with the reason. */
int sim_run_policy(struct sim_source *src, const char *spec, const struct tierd_policy_param *params,
		   size_t nparams, const struct sim_config *cfg, struct sim_result *res, char *why,
		   size_t whylen);

/* Access counts by page offset (all segments end to end, in page_bins bins) and epoch. */
struct sim_heatmap {
	uint32_t page_bins;
	uint64_t total_pages;
	uint32_t *counts; /* nepochs rows of page_bins */
	size_t nepochs, cap;
};

/* One pass for the two baselines: "optimum" and "no-migration"; hm (may be NULL) gets the
 * access heatmap. */
int sim_run_baselines(struct sim_source *src, const struct sim_config *cfg, struct sim_result *optimum,
		      struct sim_result *nomig, struct sim_heatmap *hm, char *why, size_t whylen);

/* Replays a SAMPLED source: decide() at each DECIDE record with the recorded view. res gets the
 * hit ratio over the events and the moves planned (none applied). */
int sim_replay_sampled(struct sim_source *src, const char *spec, const struct tierd_policy_param *params,
		       size_t nparams, FILE *decision_log, struct sim_result *res, char *why,
		       size_t whylen);

/* ---- output ----------------------------------------------------------------------------- */

/* Hit ratio over time, one polyline per result: a plain SVG with axes and a legend. */
void sim_write_svg(FILE *f, const struct sim_result *res, size_t n, const char *title);
/* Page offset x time, colour = log of access counts. */
void sim_write_heatmap(FILE *f, const struct sim_heatmap *hm, const char *title);
void sim_heatmap_free(struct sim_heatmap *hm);

#endif
