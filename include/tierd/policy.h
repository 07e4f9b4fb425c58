/* SPDX-License-Identifier: MIT */
/*
 * tierd placement policy ABI, version 1.
 *
 * A policy decides which tracked pages belong on the fast tier. It runs inside tierd, inside the
 * trace-replay simulator tierd-sim and inside unit tests, unchanged: it never makes a system call
 * on tierd's behalf, never touches application memory, and sees only what this header gives it.
 * From the same inputs it must return the same plan (no clocks, no unseeded randomness: use
 * tierd_policy_env.seed), so a trace and a seed give one decision log everywhere.
 *
 * A module is a shared object exporting one symbol, TIERD_POLICY_SYMBOL, of type
 * `const struct tierd_policy_ops`. tierd loads modules only from a root-owned directory that is
 * not group- or world-writable (see tierd-policy(7) and docs/policy.md).
 *
 * Calls, all from one thread:
 *   init            once; parameters from the configuration ("key=value")
 *   seg_add         a segment got its first client (its pages view stays valid until seg_remove)
 *   observe         access events since the last call (any number of calls per epoch)
 *   decide          once per epoch, after the epoch's sampling windows closed: the windows to
 *                   arm next and, on epochs with a migration pass, the pages to move
 *   seg_remove      the segment's last client left
 *   fini            once
 *
 * Compatibility rules (tested in tests/unit/test_policy.c):
 *   - abi_version is the version of this header the module was built with; `size` is
 *     sizeof(struct tierd_policy_ops) in that header.
 *   - tierd loads a module whose abi_version is at most its own and whose size covers at least
 *     the version-1 operations. Operations a newer header adds are appended at the end, so an
 *     older module's struct is a prefix; tierd treats missing operations as NULL.
 *   - A module built for a newer ABI than tierd's is refused with the two versions named.
 *   - Structures passed to the policy only grow at their end and carry their size where they may
 *     grow (tierd_view.size); a module reads only the fields of the version it was built for.
 *   - Enum values and flag bits are never reused; unknown event kinds and flags must be ignored.
 */
#ifndef TIERD_POLICY_H
#define TIERD_POLICY_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TIERD_POLICY_ABI_VERSION 1u
#define TIERD_POLICY_SYMBOL "tierd_policy"

#define TIERD_MAX_TIERS 8
#define TIERD_MAX_NODES 64

/* ---- what the policy sees ------------------------------------------------------------------ */

enum tierd_event_kind {
	/* A minor fault in an armed window: the page was touched at least once since the window
	 * was armed (further touches in the same epoch do not fault). weight = 1. */
	TIERD_EV_FAULT = 1,
	/* An eBPF sample of an access; weight = the accesses it stands for. */
	TIERD_EV_SAMPLE = 2,
	/* A process touched a page it had never mapped (it started or forked): not heat. */
	TIERD_EV_FIRST_TOUCH = 3,
	/* Simulator only: one access of a full (unsampled) synthetic trace. Policies never see it;
	 * the simulator turns accesses into FAULT events through the same windows tierd arms. */
	TIERD_EV_ACCESS = 4,
};

struct tierd_event {
	uint64_t time_ns; /* since the host started (tierd: CLOCK_MONOTONIC; tierd-sim: trace time) */
	uint64_t page;    /* page index within the segment */
	uint32_t seg;     /* segment id */
	uint32_t tid;     /* thread id, 0 when unknown */
	uint16_t kind;    /* enum tierd_event_kind */
	uint16_t weight;
	uint32_t reserved;
};

/* tierd_page.flags */
#define TIERD_PAGE_ARMED (1u << 0)  /* inside a window armed this epoch */
#define TIERD_PAGE_HIT (1u << 1)    /* touched while its window was armed */
#define TIERD_PAGE_EXISTS (1u << 2) /* known to be in the page cache */
#define TIERD_PAGE_HOST1 (1u << 3)  /* host-private */
#define TIERD_PAGE_MOVING (1u << 4) /* in a migration batch now */

/* Per-page state kept by the host from the events it delivered (read-only for the policy). */
struct tierd_page {
	uint32_t accesses;   /* FAULT events plus SAMPLE weights seen on the page, saturating */
	uint32_t last_epoch; /* epoch of the last of them, 0 never */
	int16_t node;        /* NUMA node the page is on, -1 unknown */
	uint16_t flags;      /* TIERD_PAGE_* */
};

/* A run of pages of one segment. As a window: armed for one epoch, so that the first touch of
 * each of its pages raises a FAULT event. */
struct tierd_window {
	uint32_t seg;
	uint32_t reserved;
	uint64_t start, npages;
};

/* The host's adaptive sampling regions (DAMON-like): contiguous, covering the segment. */
struct tierd_region {
	uint64_t start, end; /* pages [start, end) */
	float score;         /* 0..1: EWMA of the share of its sampled pages touched per epoch */
	float prev_score;    /* the score before the latest sample */
	uint32_t samples;    /* epochs in which the region was sampled */
	uint32_t reserved;
};

enum tierd_seg_kind_v { TIERD_SEGV_SHMEM = 0, TIERD_SEGV_HUGETLB = 1 };

struct tierd_seg_view {
	uint32_t id;
	uint32_t kind;       /* enum tierd_seg_kind_v */
	uint64_t page_size;  /* bytes */
	uint64_t npages;
	const struct tierd_page *pages;     /* npages entries */
	const struct tierd_region *regions; /* the host's sampling regions */
	size_t nregions;
	const struct tierd_window *closed;  /* windows that closed at the end of the last epoch */
	size_t nclosed;
	uint32_t nattach;   /* processes mapping it */
	uint32_t reserved;
};

struct tierd_tier_view {
	uint64_t capacity_bytes; /* memory of the tier's nodes */
	uint64_t free_bytes;     /* free memory less the reserve tierd keeps */
	uint64_t used_bytes;     /* tracked pages on the tier, as far as the host knows */
	uint32_t nnodes;
	int32_t target_node;     /* node moves to this tier go to; -1 none has room */
};

struct tierd_view {
	uint32_t size;          /* sizeof(struct tierd_view) of the host */
	uint32_t epoch;
	uint64_t now_ns;
	uint32_t epoch_ms;
	uint32_t ntiers;        /* 1: nothing can move */
	struct tierd_tier_view tiers[TIERD_MAX_TIERS]; /* 0 is the fastest */
	int8_t node_tier[TIERD_MAX_NODES];              /* -1: no memory node */
	uint64_t fast_budget_bytes; /* tracked memory the fast tier may hold */
	float high_wm, low_wm;      /* shares of fast_budget_bytes: demote above high, down to low */
	uint64_t max_move_bytes;    /* this pass may move at most this much (rate limit, batch cap) */
	uint32_t nsegs;
	uint32_t migrate;           /* 1: this epoch has a migration pass and moves are taken */
	const struct tierd_seg_view *segs;
	uint64_t window_bytes;      /* the host's window size for 4 KiB pages (hugetlb: one page) */
};

/* ---- what the policy returns --------------------------------------------------------------- */

struct tierd_move {
	uint32_t seg;
	uint32_t reserved;
	uint64_t page;
	float score;  /* the policy's reason, logged with the move (higher = hotter) */
	uint32_t reserved2;
};

/*
 * The host provides the arrays and their capacities (max_*: 0 when nothing of that kind may be
 * returned this epoch, e.g. max_promote and max_demote outside a migration pass); the policy
 * fills them and sets the counts. Promotions go to the fast tier (tier 0), demotions to the
 * nearest slower tier with room. tierd validates every plan: an unknown segment or page, a page
 * twice, a promotion of a page already on the fast tier, a demotion of one not on it, a count
 * over its capacity, more than max_move_bytes in all, or a window outside its segment makes the
 * plan invalid: nothing of it is applied and the policy is disabled with the reason logged.
 * windows: NULL when the host picks the windows itself (the policy has no `windows` say).
 */
struct tierd_plan {
	struct tierd_move *promote;
	size_t npromote, max_promote;
	struct tierd_move *demote;
	size_t ndemote, max_demote;
	struct tierd_window *windows;
	size_t nwindows, max_windows;
};

/* Parameters from the configuration ([policy.NAME] section, or tierctl policy set). */
struct tierd_policy_param {
	const char *key, *value;
};

enum tierd_log_level { TIERD_LOG_ERR = 3, TIERD_LOG_WARNING = 4, TIERD_LOG_INFO = 6, TIERD_LOG_DEBUG = 7 };

struct tierd_policy_env {
	uint32_t abi_version; /* the host's TIERD_POLICY_ABI_VERSION */
	uint32_t epoch_ms;
	uint64_t seed;        /* for any randomness the policy uses */
	/* Logs through the host (journal or stderr; the simulator's log). May be NULL. */
	void (*log)(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
};

struct tierd_policy_ops {
	uint32_t abi_version; /* TIERD_POLICY_ABI_VERSION */
	uint32_t size;        /* sizeof(struct tierd_policy_ops) */
	const char *name;
	const char *description;
	/* Returns 0, or a negative errno with a reason in err (an unknown or invalid parameter:
	 * name it). *state is passed to every other call. */
	int (*init)(void **state, const struct tierd_policy_env *env,
		    const struct tierd_policy_param *params, size_t nparams, char *err, size_t errlen);
	void (*fini)(void *state);
	/* May be NULL. Returns 0 or a negative errno: a policy that cannot take a segment (out of
	 * memory) fails like any other — tierd disables it and tracks with `none`, and
	 * `tierctl policy set` refuses to start it while the segment exists. */
	int (*seg_add)(void *state, const struct tierd_seg_view *seg);
	void (*seg_remove)(void *state, uint32_t seg); /* may be NULL */
	void (*observe)(void *state, const struct tierd_event *events, size_t n); /* may be NULL */
	/* Returns 0, or a negative errno (the plan is dropped and the policy disabled). */
	int (*decide)(void *state, const struct tierd_view *view, struct tierd_plan *plan);
	/* 1: decide() fills plan->windows; 0: the host's region sampler picks them. */
	uint32_t picks_windows;
	uint32_t reserved;
};

#ifdef __cplusplus
}
#endif

#endif
