/* SPDX-License-Identifier: MIT */
/*
 * The manager owns every resource of the daemon: the listening socket, the clients, their
 * attachments, the segments, the epoch timer and the signal fd. Single-threaded: one epoll loop
 * serves faults, client messages and epochs in turn, so no state needs locking.
 */
#ifndef TIERD_MANAGER_H
#define TIERD_MANAGER_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "migrate.h"
#include "segment.h"
#include "bpf.h"
#include "privs.h"
#include "tiers.h"
#include "tierd/policy.h"
#include "tierd/proto.h"

#define TIERD_MAX_ALLOW 32
#define TIERD_MAX_POLICY_PARAMS 32
/* Moves remembered for the rate limit's one-second window (passes come at most once an epoch:
 * 1 ms epochs would need 1000). */
#define RATE_RING 1024
/* How often the loop looks at migration batches' deadlines while one is out. */
#define BATCH_POLL_MS 20

/* What the policy's plans do (policy.mode, tierctl mode / pause / resume). */
enum tierd_mode {
	MODE_ENFORCE, /* move pages */
	MODE_ADVISE,  /* plan, log what would move (tierctl events), move nothing */
	MODE_OBSERVE, /* track only: no plans */
};

/* daemon.socket_group unset: the socket keeps tierd's own group. */
#define TIERD_NO_GROUP UINT32_MAX

struct tierd_config {
	char socket_path[108];
	uint32_t socket_mode;       /* of the socket tierd binds itself (not of systemd's) */
	uint32_t socket_gid;        /* its group, or TIERD_NO_GROUP */
	uint32_t epoch_ms;          /* sampling epoch */
	uint32_t max_windows;       /* windows armed per epoch, all segments together */
	uint64_t window_bytes;      /* 4K shmem window size; hugetlb windows are one huge page */
	uint32_t min_regions, max_regions;
	uint32_t aggregate_epochs;  /* merge/split every N epochs */
	float hot_threshold;        /* region score at or above which its pages count as hot */
	float merge_delta;
	uint32_t heartbeat_ms;      /* how often clients ping */
	bool shmem_register_whole;  /* register whole 4K mappings instead of per window */
	bool bpf;                   /* the eBPF page-fault counter (daemon/bpf.c), when the host allows */
	uint32_t bpf_map_entries;   /* distinct pages it counts per epoch; more go to its overflow */
	uint32_t bpf_seen_pages;    /* pages of all tracked mappings it tells first touches apart in */
	uint32_t bpf_percpu_pages;  /* > 0: per-CPU per-page counters for that many pages, not the hash */
	bool perf;                  /* the eBPF perf_event sampler on a PEBS/IBS PMU, when there is one */
	bool perf_software;         /* ... else on the software page-fault event */
	uint32_t perf_period;       /* its sample period; 0: the event's default (perfsel.h) */
	uint32_t max_clients;
	uint32_t hello_timeout_ms;  /* a connection that has not sent HELLO by then is closed */
	uint32_t max_attach_per_client;
	uint32_t max_zaps_in_flight; /* ZAP batches unacknowledged per attachment before it is skipped */
	unsigned n_allow_uids, n_allow_gids;
	uid_t allow_uids[TIERD_MAX_ALLOW];
	gid_t allow_gids[TIERD_MAX_ALLOW];
	const char *uffd_dev_path;  /* "/dev/userfaultfd" */

	/* Placement (ignored with one memory tier). */
	bool migrate;               /* false: track only */
	uint64_t fast_budget_bytes; /* tracked memory allowed on the fast tier; 0 = 90% of it */
	float high_wm, low_wm;      /* demote above high * budget, down to low * budget */
	uint32_t rate_limit_mbps;   /* migration rate cap */
	uint32_t migrate_every_epochs;
	uint64_t reserve_bytes;     /* free memory per node that migration never consumes */
	uint32_t huge_reserve_pages; /* free 2 MiB pool pages promotions leave on the fast node */
	uint32_t batch_ms;          /* time one pass (or a batch's move) may take */
	uint32_t batch_wait_ms;     /* how long a batch waits for its clients' zaps */
	enum migrate_how migrate_how; /* zap-then-move, or move mapped pages (MOVE_ALL) */
	const char *sysfs_root;     /* "/sys" */

	/* Placement policy (policy/host.h): a built-in or a module in policy_dir. */
	char policy_name[64];
	char policy_dir[256];
	/* [policy.NAME] key = value: parameters of every policy named in the files; the running
	 * policy gets its own. */
	unsigned n_policy_params;
	struct tierd_policy_kv {
		char policy[48], key[48], value[128];
	} policy_params[TIERD_MAX_POLICY_PARAMS];
	uint64_t policy_seed;       /* for policies that randomise */
	enum tierd_mode mode;

	/* Metrics for node_exporter's textfile collector: written every textfile_interval_ms to
	 * this path (empty: never). */
	char metrics_textfile[256];
	uint32_t metrics_interval_ms;
};

void tierd_config_defaults(struct tierd_config *cfg);

enum watch_kind { WATCH_LISTEN, WATCH_CLIENT, WATCH_UFFD, WATCH_TIMER, WATCH_SIGNAL, WATCH_BPF };

struct watch {
	enum watch_kind kind;
	void *obj;
};

struct client;

struct attachment {
	struct watch watch;
	uint32_t id;
	struct client *client;
	struct segment *seg;
	int uffd;
	uint64_t base, length;
	uint32_t registration; /* enum tierd_registration */
	uint8_t *zapped;       /* REG_WHOLE: pages tierd asked to zap and not yet faulted or closed */
	uint64_t faults;
	uint32_t zaps_in_flight;
	/* Seqs of the last ZAP sent and the last one acknowledged: an ack counts only for a ZAP
	 * sent and not yet acknowledged (acks come in order), so a replayed or invented ZAP_DONE
	 * cannot buy more zaps in flight. */
	uint64_t zap_seq_sent, zap_seq_acked;
	uint64_t batch_seq;    /* seq of the ZAP of its segment's migration batch */
	bool batch_waiting;    /* that ZAP is not acknowledged yet */
	bool armed;            /* got this epoch's windows (registered/zapped): close them */
	/* Idle backoff: an attachment whose windows brought no fault (a process that does not touch
	 * the segment, like PostgreSQL's postmaster) is armed every 2nd, 4th, ... 16th epoch only:
	 * its zaps cost it TLB flushes and mmap_lock time and tell tierd nothing. */
	uint64_t faults_at_arm;
	uint32_t continue_failures; /* UFFDIO_CONTINUEs in a row that failed with an error that
				     * waking the thread does not cure (not EEXIST/EFAULT/ENOENT) */
	uint64_t mems;         /* nodes its process may allocate on (cpuset.mems; mems.h) */
	uint64_t mems_usec;    /* when they were read */
	uint8_t idle;          /* armed epochs in a row without a fault, up to IDLE_MAX_SHIFT */
	uint8_t rest;          /* epochs to skip before it is armed again */
	bool dead;
	struct attachment *seg_next, *client_next, *grave_next;
};

struct client {
	struct watch watch;
	uint32_t id;
	int fd;
	pid_t pid;          /* SO_PEERCRED at accept: in tierd's pid namespace, 0 when not visible */
	/* Kernels without SO_PEERPIDFD (< 6.5): a pidfd of that pid opened at accept, else -1
	 * (pidfd_err: why it could not be opened). With SO_PEERPIDFD the socket gives it. */
	int pidfd, pidfd_err;
	uid_t uid;
	gid_t gid;
	uint64_t accepted_usec;
	bool hello_done;
	bool ever_attached; /* query-only connections are logged at debug level */
	bool dead;
	uint64_t seq;
	struct client *grave_next;
	unsigned nattach;
	struct attachment *attachments;
	struct client *next;
};

/* Fault latency buckets (upper bounds, seconds): log-linear 1-2.5-5 from 1 us to 1 s (metrics.c). */
#define FAULT_LAT_BUCKETS 19

/* Migration events (events.c): the latest EVENTS_RING records. */
#define EVENTS_RING 1024
enum mig_event_kind { EV_DECIDED, EV_ADVISED, EV_MOVED, EV_SKIPPED };
struct mig_event {
	uint64_t usec;          /* since tierd started */
	uint64_t page, npages;  /* DECIDED/ADVISED: the run; MOVED: pages planned; SKIPPED: passes */
	uint64_t moved;         /* MOVED: pages that moved */
	uint64_t page_size;
	uint32_t epoch, seg;
	int16_t from, to;       /* nodes, -1 none */
	int32_t err;            /* MOVED: the kernel's main reason for what did not move */
	float score;            /* DECIDED/ADVISED: the policy's, highest of the run */
	uint8_t kind;           /* enum mig_event_kind */
	char policy[16];
	char why[96];
};

struct manager_stats {
	/* Time from tierd reading a fault to resolving it; a fault held by a migration batch is
	 * counted from the batch's start to its release (an upper bound). */
	uint64_t fault_lat[FAULT_LAT_BUCKETS + 1]; /* last: above the largest bound */
	uint64_t fault_lat_count;
	double fault_lat_sum_s;
	uint64_t faults, first_touch_faults, continue_eexist, continue_retries, continue_absent;
	uint64_t continue_failed, continue_drops; /* CONTINUE errors; clients dropped for them */
	uint64_t wake_after_unregister;
	uint64_t windows_armed, windows_closed, zaps_sent, zaps_skipped, zaps_rested, zap_acks, zap_errors;
	uint64_t zap_acks_stale;  /* ZAP_DONEs for no ZAP in flight (replayed, invented): ignored */
	uint64_t faults_outside;  /* faults outside the attachment's mapping (client-registered) */
	uint64_t clients_accepted, clients_refused, clients_dropped, attach_refused;
	uint64_t register_errors, epochs;
	uint64_t batches, batch_timeouts, faults_held; /* zap-then-move batches */
	/* The eBPF page-fault counter: re-access faults drained (sum of the counts) and those it
	 * could not attribute (map full: read from the kernel; segment gone or page out of range:
	 * here); first touches it discounted (read from the kernel). */
	uint64_t bpf_samples, bpf_overflow, bpf_unmatched, bpf_first_touch;
	/* The perf_event sampler: samples drained, and those that found its map full or fell
	 * outside the tracked ranges of a tracked process (read from the kernel). */
	uint64_t perf_samples, perf_overflow, perf_other;
	/* Resource faults: connections and messages with fds refused because tierd was at its
	 * RLIMIT_NOFILE. */
	uint64_t fd_refusals;
	/* ATTACHes refused for lack of memory (the alias mapping or the page state: ENOMEM, e.g.
	 * under RLIMIT_AS or MemoryMax=); the client runs untracked and retries. */
	uint64_t attach_nomem;
	/* Misbehaving clients: connections closed for sending no HELLO in time; ATTACHes refused
	 * because the process that connected had exited (its pid may name another process). */
	uint64_t hello_timeouts, attach_peer_exited;
};

struct manager {
	struct tierd_config cfg;
	int epfd, listen_fd, timer_fd, signal_fd;
	/* An fd held in reserve (/dev/null): at RLIMIT_NOFILE it is closed for a moment so that a
	 * pending connection can be accepted, told why, and closed, instead of staying in the
	 * backlog with the listening socket readable (epoll would spin on it). */
	int spare_fd;
	bool own_socket; /* bound by us: unlink at exit */
	bool quit;
	struct watch listen_watch, timer_watch, signal_watch;
	struct client *clients;
	unsigned nclients;
	/* Connections without HELLO yet, and when the next of them runs out of time. */
	unsigned hello_pending;
	uint64_t hello_due_usec;
	struct segment *segments;
	unsigned nsegments;
	uint32_t next_id;
	uint32_t epoch;
	uint64_t started_usec;
	struct manager_stats stats;
	/* Placement state (placement.c). */
	struct tier_topology topo;
	struct migrate_stats mstats;
	bool move_all; /* MPOL_MF_MOVE_ALL allowed (CAP_SYS_NICE) */
	bool no_topology; /* no NUMA sysfs at start: one tier for good */
	/* SIGHUP: reads the configuration again (NULL: nothing to reload). */
	int (*reload)(struct tierd_config *cfg);
	/* The migration rate limit (placement.c): what moved in the last second, move by move, and
	 * what a pass may move now. */
	struct rate_entry {
		uint64_t usec, bytes;
	} rate_ring[RATE_RING];
	unsigned rate_head, rate_n;
	uint64_t tokens_bytes;
	unsigned batches_active; /* segments with a migration batch in flight */
	int batch_fast, batch_slow; /* the batches' promotion and demotion nodes */
	/* Passes that move nothing back off (a node that refuses must not cost the clients a zap
	 * every pass): skip_passes doubles up to a limit, and resets once pages move. */
	uint64_t pass_planned, pass_moved;
	unsigned backoff_passes, skip_passes;
	struct migrate_candidate *cands;
	size_t cands_cap;
	uint64_t *pagebuf;
	size_t pagebuf_cap;
	/* Placement policy (policyd.c). */
	struct policy *policy;
	char policy_failed_why[256]; /* the last policy that was disabled, and why */
	struct tierd_event *events;  /* buffered for observe() */
	size_t nevents;
	struct tierd_seg_view *segviews;
	size_t segviews_cap;
	struct tierd_move *promote, *demote;
	size_t promote_cap, demote_cap;
	struct tierd_window *pwindows; /* windows the policy picked for the next epoch */
	size_t pwindows_cap, npwindows;
	uint64_t tier_used[TIERD_MAX_TIERS]; /* tracked bytes per tier, as of the last pass */
	FILE *decision_log;
	uint64_t metrics_written_usec;
	uint64_t watchdog_usec, watchdog_fed_usec; /* systemd's WatchdogSec (0: none) */
	uint64_t status_usec;
	char status_text[256]; /* the last STATUS= sent */
	int move_err; /* the last move_pages(2) call's own failure (events.c says it) */
	struct mig_event events_ring[EVENTS_RING];
	uint64_t events_next;
	struct trace_writer *trace; /* recording (tierctl record) */
	/* The eBPF samplers (bpf.c): NULL when off, and then bpf_off_why says why. */
	struct tierd_bpf *bpf;
	char bpf_off_why[384];
	struct privs privs; /* what privs_drop() kept */
	char mems_logged[160]; /* the last cpuset reason placement logged (keep_allowed_nodes) */
	/* The programs load on a thread (sampler.c): bpf_loading until its result is taken. */
	struct bpf_load *bpf_loading;
	struct watch bpf_watch;
	/* The perf_event sampler: perf_desc says which event when perf_on, else why it is off. */
	bool perf_on;
	uint64_t perf_period;
	char perf_desc[384];
	/* The migration-outcome counter's sums per reason (bpf.c) as of the last epoch. */
	struct tierd_kmig kmig[TIERD_BPF_MIGRATE_REASONS];
	/* Objects that died during an epoll batch are freed after the batch. */
	struct client *graveyard;
	struct attachment *graveyard_attachments;
	struct segment *graveyard_segments;
};

/* Builds the manager: socket (systemd's if passed, else bound at cfg->socket_path), timer, signals. */
int manager_new(const struct tierd_config *cfg, struct manager **ret);
struct manager *manager_free(struct manager *m);
/* Runs until SIGTERM/SIGINT. Returns 0 or a negative errno. */
int manager_run(struct manager *m);

/* placement.c */

int manager_tiers_init(struct manager *m);
void manager_placement(struct manager *m);
/* Moves and releases each batch whose zaps are all acknowledged or whose deadline passed. Called
 * after every round of events. */
void manager_batches_poll(struct manager *m);
/* Ends a segment's batch at once without moving (its last attachment went away). */
void manager_batch_drop(struct manager *m, struct segment *seg);

/* events.c */
void events_skipped(struct manager *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Runs of the plan's moves of one segment to node `to`. */
void events_decided(struct manager *m, const struct segment *seg, const struct tierd_move *mv,
		    size_t n, int to, bool advise);
/* A batch side's outcome: `before` is mstats from before its move. */
void events_moved(struct manager *m, const struct segment *seg, size_t planned, uint64_t moved,
		  int to, const struct migrate_stats *before);
/* The latest `max` (0: all) as JSON Lines, oldest first. Returns the length. */
int events_format(const struct manager *m, uint64_t max, char *buf, size_t len);

/* tierd's own resources (status "resources", metrics): bytes malloc has handed out and not
 * taken back, and open fds (a negative errno when /proc cannot be read, e.g. at the fd limit). */
size_t manager_heap_bytes(void);
int manager_fds_open(void);

/* metrics.c */
/* Records `n` faults that took `usec` each. */
void manager_fault_latency(struct manager *m, uint64_t usec, uint64_t n);
/* The metrics in Prometheus' text format (version 0.0.4). Returns the length written, or
 * -ENOBUFS when `len` is too small. */
int manager_metrics(const struct manager *m, char *buf, size_t len);
/* Writes them to cfg.metrics_textfile (temp file + rename) when due. */
void manager_metrics_textfile(struct manager *m);

/* policyd.c */
struct policy;
struct tierd_policy_param;
/* Opens policy `name` with `params` (NULL: those of [policy.NAME] in cfg). */
int manager_policy_open(const struct tierd_config *cfg, const char *name,
			const struct tierd_policy_param *params, size_t nparams, struct policy **ret,
			char *why, size_t whylen);
/* Starts `name` and hands it every segment; on success it replaces the running policy (the page
 * state stays), else the running one stays and `why` says what failed. */
int manager_policy_switch(struct manager *m, const char *name, const struct tierd_policy_param *params,
			  size_t nparams, char *why, size_t whylen);
void manager_policy_seg_add(struct manager *m, struct segment *seg);
void manager_policy_seg_remove(struct manager *m, struct segment *seg);
/* An access event for the policy (buffered; observe() gets them in batches). */
void manager_policy_event(struct manager *m, const struct segment *seg, uint64_t page, uint16_t kind);
/* The same with a weight (a sample standing for `weight` accesses; TIERD_EV_SAMPLE). */
void manager_policy_event_weighted(struct manager *m, const struct segment *seg, uint64_t page,
				   uint16_t kind, uint16_t weight);
void manager_policy_flush(struct manager *m);
/* Builds the segments' part of the view, sizes the plan and calls the policy. A policy that fails
 * is replaced by `none` and the plan is empty. */
int manager_policy_decide(struct manager *m, struct segment **segs, unsigned nsegs,
			  struct tierd_view *v, struct tierd_plan *plan);
/* The "policy" object of the status JSON. */
void manager_policy_status(const struct manager *m, char *buf, size_t len);
/* Recording (record.c). Starts writing the policy's input to `fd` (owned by the recording from
 * then on), at most max_bytes. Returns 0, -EBUSY (already recording) or a negative errno. */
int manager_record_start(struct manager *m, int fd, uint64_t max_bytes, char *why, size_t whylen);
void manager_record_stop(struct manager *m);
/* No-ops unless a trace is being written. */
void manager_record_seg(struct manager *m, const struct segment *seg, bool added);
void manager_record_event(struct manager *m, const struct tierd_event *e);
void manager_record_view(struct manager *m, const struct tierd_view *v);

/* sampler.c */
/* Starts loading the eBPF programs the configuration asks for, on a thread: libbpf takes
 * 0.1 s (more on a loaded host) and clients must not wait for it. When the thread cannot be
 * started, the samplers are off (said once). */
void manager_bpf_start(struct manager *m);
/* The loading thread is done (its pipe in epoll): takes its result, logs once what runs and what
 * is off and why, and tracks the attachments made meanwhile. */
void manager_bpf_loaded(struct manager *m);
/* The attachment's mapping is counted from now on / no more. */
void manager_bpf_track(struct manager *m, const struct attachment *a);
void manager_bpf_untrack(struct manager *m, const struct attachment *a);
/* Turns the counts of the last epoch into TIERD_EV_SAMPLE events for the policy, and reads the
 * kernel's migration outcomes. */
void manager_bpf_drain(struct manager *m);
/* The "samplers" object of the status JSON, then ,"kernel_migrations":{…}. */
void manager_bpf_status(const struct manager *m, char *buf, size_t len);
/* Stops and frees the eBPF programs. */
void manager_bpf_stop(struct manager *m);
/* The name of a migrate_reason (its number when the kernel has none): a static buffer. */
const char *manager_bpf_reason(const struct manager *m, unsigned reason);
/* The kernel's migration outcomes summed over reasons (all zero while off). */
struct tierd_kmig manager_bpf_kmig_total(const struct manager *m);

/* attach.c */
int attachment_new(struct manager *m, struct client *c, const struct tierd_msg_attach *msg, int memfd,
		   int uffd, struct attachment **ret, char *why, size_t whylen);
/* Releases every fault and registration the attachment holds, then frees it. */
void attachment_release(struct manager *m, struct attachment *a);
void attachment_handle_uffd(struct manager *m, struct attachment *a);
void manager_epoch(struct manager *m);
/* Zap-then-move: asks the attachment to zap its segment's batch runs (registering them first for
 * per-window registration, so touches fault to tierd and wait). */
void attachment_batch_zap(struct manager *m, struct attachment *a);
/* After the batch moved: lets the attachment's held faults and zapped pages onto the pages. */
void attachment_batch_release(struct manager *m, struct attachment *a);
void manager_client_drop(struct manager *m, struct client *c, const char *why);
int manager_send(struct manager *m, struct client *c, void *msg, size_t len, const int *fds,
		 unsigned nfds);
/* Whether the process that connected still exists (a zombie does: its pid is not free yet): 0,
 * -ESRCH when it has exited and been reaped (its pid may name another process now), or another
 * negative errno when tierd cannot tell. */
int manager_client_alive(const struct client *c);

#endif
