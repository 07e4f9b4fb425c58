/* SPDX-License-Identifier: MIT */
/*
 * Loader of the eBPF page-fault counter (bpf/fault.bpf.c through its generated skeleton): feature
 * probes before anything is loaded, map sizes from the configuration set between open and load,
 * the tracked-process table, and the drain of per-page counts. See daemon/bpf.h.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/perf_event.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>

#include "bpf.h"
#include "log.h"
#include "perfsel.h"
#include "tierd.bpf.h"
#include "samplers.skel.h"

#define VMLINUX_BTF "/sys/kernel/btf/vmlinux"

/* 16 Mi pages (64 GiB of 4 KiB pages over all tracked mappings) in 2 MiB of kernel memory. */
#define SEEN_PAGES_DEFAULT (UINT64_C(1) << 24)
/* Per-CPU counter slots read per bpf(2) call in a drain. */
#define PC_BATCH 4096u

/* The words of the `seen` bit array one tracked range owns. */
struct seen_extent {
	uint32_t tgid;
	uint64_t start;     /* the range's start address: with tgid, what untrack names */
	uint64_t word, nwords;
	uint32_t seg;       /* for the per-CPU counters' drain: the segment and its pages */
	uint64_t npages;
};

struct tierd_bpf {
	struct samplers_bpf *skel;
	int counts_fd, procs_fd, stats_fd;
	uint32_t map_entries;
	struct tierd_bpf_page_key *keys; /* map_entries keys and counts: one drain's worth */
	uint64_t *values;
	int ncpus;
	uint64_t *percpu; /* ncpus values of one stats counter */
	uint64_t *seen;   /* the `seen` array, mapped: seen_words words */
	size_t seen_bytes;
	uint64_t seen_words;
	struct seen_extent *ext; /* the ranges' words, unordered; n_ext used of cap_ext */
	size_t n_ext, cap_ext;
	/* Per-CPU counters (opts.percpu_pages): seen_words * 64 slots, each range's at its first
	 * bit's index; last[] is each slot's CPU sum at the last read; pc_buf holds one batch of
	 * PC_BATCH slots' per-CPU values. */
	bool pc_on;
	int pcounts_fd;
	uint64_t *last;
	uint64_t *pc_buf;
	int perf_counts_fd;
	uint32_t perf_entries;       /* perf_counts' size (1 when no perf sampler is wanted) */
	struct bpf_link **perf_links; /* one per online CPU the event is open on */
	int *perf_fds;
	int n_perf;
	/* The migration-outcome counter: on, or why not (migrate_why). */
	bool migrate_on;
	char migrate_why[192];
	int outcomes_fd;
	struct tierd_bpf_migrate *mpercpu; /* ncpus values of one outcomes slot */
	/* Names of enum migrate_reason's values from the kernel's BTF ("syscall" for MR_SYSCALL),
	 * read the first time a reason is seen; empty where this kernel has none. */
	bool reasons_read;
	char reason[TIERD_BPF_MIGRATE_REASONS][24];
};

/* libbpf reports through one process-wide callback with no context: route it to our log at debug
 * level, where it explains a failure that tierd_bpf_new() already summed up in `why`. */
static int libbpf_print(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	char buf[512];
	size_t n;

	if (level == LIBBPF_DEBUG)
		return 0;
	vsnprintf(buf, sizeof(buf), fmt, ap);
	n = strlen(buf);
	if (n && buf[n - 1] == '\n')
		buf[n - 1] = '\0';
	log_debug("libbpf: %s", buf);
	return 0;
}

static void perf_close(struct tierd_bpf *b)
{
	for (int i = 0; i < b->n_perf; i++) {
		bpf_link__destroy(b->perf_links[i]);
		if (b->perf_fds[i] >= 0)
			close(b->perf_fds[i]);
	}
	free(b->perf_links);
	free(b->perf_fds);
	b->perf_links = NULL;
	b->perf_fds = NULL;
	b->n_perf = 0;
}

struct tierd_bpf *tierd_bpf_free(struct tierd_bpf *b)
{
	if (!b)
		return NULL;
	if (b->seen)
		munmap(b->seen, b->seen_bytes);
	perf_close(b);
	samplers_bpf__destroy(b->skel);
	free(b->mpercpu);
	free(b->ext);
	free(b->keys);
	free(b->values);
	free(b->percpu);
	free(b->last);
	free(b->pc_buf);
	free(b);
	return NULL;
}

static const char *perm_hint(int err)
{
	return err == -EPERM || err == -EACCES ? " (needs CAP_BPF and CAP_PERFMON)" : "";
}

/* What every program here needs before it is opened: libbpf's messages routed, the kernel's BTF
 * (tp_btf programs and CO-RE relocations need it: say so plainly instead of letting libbpf fail
 * somewhere inside load), and tierd's pid namespace, in which the programs name processes. */
static int preflight(struct stat *pidns, char *why, size_t whylen)
{
	libbpf_set_print(libbpf_print);
	if (access(VMLINUX_BTF, R_OK) < 0) {
		int r = -errno;

		snprintf(why, whylen, "no kernel BTF (%s: %s; needs CONFIG_DEBUG_INFO_BTF=y)", VMLINUX_BTF,
			 strerror(-r));
		return r;
	}
	if (stat("/proc/self/ns/pid", pidns) < 0) {
		int r = -errno;

		snprintf(why, whylen, "cannot read tierd's pid namespace (/proc/self/ns/pid): %s",
			 strerror(-r));
		return r;
	}
	return 0;
}

/* The inode number of the initial pid namespace (the kernel's PROC_PID_INIT_INO, fixed since
 * 3.8; not in the uapi headers). */
#define PID_NS_INIT_INO 0xEFFFFFFCu

/* Opens the object, sizes its maps, sets its knobs and loads it; `migrate`: with the
 * migration-outcome program. On failure the object is gone again and `why` says what failed. */
static int open_load(struct tierd_bpf *b, const struct tierd_bpf_opts *o, const struct stat *ns,
		     bool migrate, char *why, size_t whylen)
{
	int r;

	b->skel = samplers_bpf__open();
	if (!b->skel) {
		r = -errno;
		snprintf(why, whylen, "opening the BPF object failed: %s", strerror(-r));
		return r;
	}
	/* Sizes are fixed at load: a preallocated hash never allocates in the fault path. */
	r = bpf_map__set_max_entries(b->skel->maps.counts, o->map_entries);
	if (r == 0)
		r = bpf_map__set_max_entries(b->skel->maps.procs, o->max_procs);
	if (r == 0)
		r = bpf_map__set_max_entries(b->skel->maps.seen, (uint32_t)b->seen_words);
	if (r == 0)
		r = bpf_map__set_max_entries(b->skel->maps.perf_counts, b->perf_entries);
	if (r == 0)
		r = bpf_map__set_max_entries(b->skel->maps.pcounts,
					     b->pc_on ? (uint32_t)(b->seen_words * 64) : 1);
	if (r == 0 && !migrate)
		r = bpf_program__set_autoload(b->skel->progs.mm_migrate_pages, false);
	if (r < 0) {
		snprintf(why, whylen, "sizing the maps failed: %s", strerror(-r));
		goto fail;
	}
	/* Knobs are read-only data, fixed before load: the verifier sees them as constants. */
	b->skel->rodata->pidns_dev = (uint64_t)ns->st_dev;
	b->skel->rodata->pidns_ino = (uint64_t)ns->st_ino;
	b->skel->rodata->init_pidns = ns->st_ino == PID_NS_INIT_INO && !o->pidns_helper;
	b->skel->rodata->percpu_counts = b->pc_on;
	b->skel->rodata->self_tgid = (uint32_t)getpid();
	r = samplers_bpf__load(b->skel);
	if (r < 0) {
		snprintf(why, whylen, "loading the BPF programs failed: %s%s", strerror(-r), perm_hint(r));
		goto fail;
	}
	return 0;
fail:
	samplers_bpf__destroy(b->skel);
	b->skel = NULL;
	return r;
}

int tierd_bpf_new(const struct tierd_bpf_opts *o, struct tierd_bpf **ret, char *why, size_t whylen)
{
	struct tierd_bpf *b;
	uint64_t seen_pages;
	struct stat ns;
	int r;

	r = preflight(&ns, why, whylen);
	if (r < 0)
		return r;
	if (o->map_entries == 0 || o->max_procs == 0) {
		snprintf(why, whylen, "map sizes must not be 0");
		return -EINVAL;
	}
	seen_pages = o->seen_pages ? o->seen_pages : SEEN_PAGES_DEFAULT;
	/* Per-CPU counters sit at the first-touch bits' indices: the same page budget. */
	if (o->percpu_pages && o->percpu_pages < seen_pages)
		seen_pages = o->percpu_pages;
	if (o->percpu_pages && (seen_pages + 63) / 64 * 64 > UINT32_MAX) {
		snprintf(why, whylen, "too many per-CPU counters (%" PRIu64 " pages)", seen_pages);
		return -EINVAL;
	}
	if (seen_pages / 64 > UINT32_MAX) {
		snprintf(why, whylen, "too many first-touch bits (%" PRIu64 " pages)", seen_pages);
		return -EINVAL;
	}
	b = calloc(1, sizeof(*b));
	if (!b)
		return -ENOMEM;
	b->map_entries = o->map_entries;
	b->perf_entries = o->perf_map_entries ? o->perf_map_entries : 1;
	/* One drain's worth of keys and counts, for whichever map is drained. */
	b->keys = calloc(o->map_entries > b->perf_entries ? o->map_entries : b->perf_entries,
			 sizeof(*b->keys));
	b->values = calloc(o->map_entries > b->perf_entries ? o->map_entries : b->perf_entries,
			   sizeof(*b->values));
	b->ncpus = libbpf_num_possible_cpus();
	if (b->ncpus <= 0) {
		r = b->ncpus < 0 ? b->ncpus : -EINVAL;
		snprintf(why, whylen, "cannot count possible CPUs: %s", strerror(-r));
		goto fail;
	}
	b->percpu = calloc((size_t)b->ncpus, sizeof(*b->percpu));
	b->mpercpu = calloc((size_t)b->ncpus, sizeof(*b->mpercpu));
	b->seen_words = (seen_pages + 63) / 64;
	b->cap_ext = (size_t)o->max_procs * TIERD_BPF_MAX_RANGES;
	b->ext = calloc(b->cap_ext, sizeof(*b->ext));
	b->pc_on = o->percpu_pages > 0;
	if (b->pc_on) {
		b->last = calloc(b->seen_words * 64, sizeof(*b->last));
		b->pc_buf = calloc((size_t)PC_BATCH * (size_t)b->ncpus, sizeof(*b->pc_buf));
	}
	if (!b->keys || !b->values || !b->percpu || !b->mpercpu || !b->ext ||
	    (b->pc_on && (!b->last || !b->pc_buf))) {
		r = -ENOMEM;
		snprintf(why, whylen, "out of memory");
		goto fail;
	}

	/* With the migration counter first; a kernel that refuses it (its tracepoint missing or
	 * changed beyond what the program reads) still gets the samplers. */
	r = open_load(b, o, &ns, true, why, whylen);
	if (r < 0) {
		char first[192];

		snprintf(first, sizeof(first), "%s", why);
		r = open_load(b, o, &ns, false, why, whylen);
		if (r < 0)
			goto fail;
		snprintf(b->migrate_why, sizeof(b->migrate_why), "%s", first);
	}
	b->skel->links.page_fault_user = bpf_program__attach(b->skel->progs.page_fault_user);
	if (!b->skel->links.page_fault_user) {
		r = -errno;
		snprintf(why, whylen, "attaching tp_btf/page_fault_user was refused: %s%s", strerror(-r),
			 perm_hint(r));
		goto fail;
	}
	if (!b->migrate_why[0]) {
		b->skel->links.mm_migrate_pages = bpf_program__attach(b->skel->progs.mm_migrate_pages);
		if (b->skel->links.mm_migrate_pages)
			b->migrate_on = true;
		else
			snprintf(b->migrate_why, sizeof(b->migrate_why),
				 "attaching tp_btf/mm_migrate_pages was refused: %s%s", strerror(errno),
				 perm_hint(-errno));
	}
	b->outcomes_fd = bpf_map__fd(b->skel->maps.outcomes);
	b->counts_fd = bpf_map__fd(b->skel->maps.counts);
	b->procs_fd = bpf_map__fd(b->skel->maps.procs);
	b->stats_fd = bpf_map__fd(b->skel->maps.stats);
	b->perf_counts_fd = bpf_map__fd(b->skel->maps.perf_counts);
	b->pcounts_fd = bpf_map__fd(b->skel->maps.pcounts);
	/* The first-touch bits are zeroed by tierd when it hands a range its words: a plain memset
	 * on the mapped array instead of a syscall per word. */
	b->seen_bytes = (size_t)b->seen_words * sizeof(uint64_t);
	b->seen = mmap(NULL, b->seen_bytes, PROT_READ | PROT_WRITE, MAP_SHARED,
		       bpf_map__fd(b->skel->maps.seen), 0);
	if (b->seen == MAP_FAILED) {
		r = -errno;
		b->seen = NULL;
		snprintf(why, whylen, "mapping the first-touch bits failed: %s", strerror(-r));
		goto fail;
	}
	*ret = b;
	return 0;
fail:
	tierd_bpf_free(b);
	return r;
}

/* First fit: the lowest word where nwords free words start, or -ENOBUFS. The extents are few
 * (max_procs × TIERD_BPF_MAX_RANGES) and this runs on attach only: quadratic is fine. */
static int64_t seen_alloc(const struct tierd_bpf *b, uint64_t nwords)
{
	uint64_t at = 0;

	for (size_t i = 0; i <= b->n_ext; i++) {
		bool fits = at + nwords <= b->seen_words;

		for (size_t j = 0; fits && j < b->n_ext; j++)
			fits = at + nwords <= b->ext[j].word || b->ext[j].word + b->ext[j].nwords <= at;
		if (fits)
			return (int64_t)at;
		if (i < b->n_ext)
			at = b->ext[i].word + b->ext[i].nwords;
	}
	return -ENOBUFS;
}

static void seen_free(struct tierd_bpf *b, uint32_t tgid, uint64_t start)
{
	for (size_t i = 0; i < b->n_ext; i++)
		if (b->ext[i].tgid == tgid && b->ext[i].start == start) {
			b->ext[i] = b->ext[--b->n_ext];
			return;
		}
}

/*
 * Reads the per-CPU counters of extent `e` (its npages slots from index word * 64), sums each
 * slot over the CPUs and, with fn, hands over each page's growth since the last read; the sums
 * become the new `last`. Returns the pages handed over or a negative errno.
 */
static int pc_scan(struct tierd_bpf *b, const struct seen_extent *e, tierd_bpf_sample_fn fn, void *ctx)
{
	LIBBPF_OPTS(bpf_map_batch_opts, opts);
	uint64_t first = e->word * 64, done = 0;
	int handed = 0;

	while (done < e->npages) {
		/* Array batches run from the slot after in_batch (from 0 without one). */
		uint32_t in = (uint32_t)(first + done - 1), out, count = PC_BATCH, keys[PC_BATCH];

		if (e->npages - done < count)
			count = (uint32_t)(e->npages - done);
		if (bpf_map_lookup_batch(b->pcounts_fd, first + done ? &in : NULL, &out, keys, b->pc_buf,
					 &count, &opts) < 0 &&
		    errno != ENOENT)
			return -errno;
		if (count == 0)
			return -EIO;
		for (uint32_t i = 0; i < count; i++) {
			uint64_t sum = 0, *last = &b->last[keys[i]];

			for (int c = 0; c < b->ncpus; c++)
				sum += b->pc_buf[(size_t)i * (size_t)b->ncpus + (size_t)c];
			if (fn && sum != *last && keys[i] >= first && keys[i] - first < e->npages) {
				fn(ctx, e->seg, keys[i] - first, sum - *last);
				handed++;
			}
			*last = sum;
		}
		done += count;
	}
	return handed;
}

int tierd_bpf_track(struct tierd_bpf *b, uint32_t tgid, uint64_t start, uint64_t length, uint32_t seg,
		    uint64_t page_size)
{
	struct tierd_bpf_proc p;
	struct seen_extent ext;
	int free_slot = -1;
	uint64_t nwords;
	int64_t word;

	if (page_size == 0 || (page_size & (page_size - 1)) || length == 0)
		return -EINVAL;
	/* The map is the only copy of the table: read, change one slot, write back. tierd is its
	 * only writer, so nothing changes in between. */
	if (bpf_map_lookup_elem(b->procs_fd, &tgid, &p) < 0) {
		if (errno != ENOENT)
			return -errno;
		memset(&p, 0, sizeof(p));
	}
	for (int i = 0; i < TIERD_BPF_MAX_RANGES; i++)
		if (p.ranges[i].length == 0) {
			free_slot = i;
			break;
		}
	if (free_slot < 0 || b->n_ext == b->cap_ext)
		return -ENOSPC;
	nwords = (length / page_size + 63) / 64;
	word = seen_alloc(b, nwords);
	if (word < 0)
		return (int)word;
	/* Words a range untracked earlier left set: every page starts unseen. The program cannot
	 * touch them meanwhile: no range names them. */
	memset(b->seen + word, 0, nwords * sizeof(uint64_t));
	ext = (struct seen_extent){ .tgid = tgid, .start = start, .word = (uint64_t)word, .nwords = nwords,
				    .seg = seg, .npages = length / page_size };
	/* Counts a range untracked earlier left in these slots are not this range's: start from them. */
	if (b->pc_on) {
		int r = pc_scan(b, &ext, NULL, NULL);

		if (r < 0)
			return r;
	}
	p.ranges[free_slot] = (struct tierd_bpf_range){ .start = start, .length = length, .seg = seg,
							.page_shift = (uint32_t)__builtin_ctzll(page_size),
							.seen_word = (uint64_t)word };
	if (bpf_map_update_elem(b->procs_fd, &tgid, &p, BPF_ANY) < 0)
		return -errno;
	b->ext[b->n_ext++] = ext;
	return 0;
}

int tierd_bpf_untrack(struct tierd_bpf *b, uint32_t tgid, uint64_t start)
{
	struct tierd_bpf_proc p;
	bool found = false, any = false;

	if (bpf_map_lookup_elem(b->procs_fd, &tgid, &p) < 0)
		return -errno;
	for (int i = 0; i < TIERD_BPF_MAX_RANGES; i++) {
		if (!found && p.ranges[i].length && p.ranges[i].start == start) {
			memset(&p.ranges[i], 0, sizeof(p.ranges[i]));
			found = true;
		}
		any |= p.ranges[i].length != 0;
	}
	if (!found)
		return -ENOENT;
	/* The last range gone: drop the process, so its other faults stop costing a lookup hit. */
	if (!any ? bpf_map_delete_elem(b->procs_fd, &tgid) < 0
		 : bpf_map_update_elem(b->procs_fd, &tgid, &p, BPF_ANY) < 0)
		return -errno;
	/* Its words are free once the program can no longer find the range; a track that reuses
	 * them zeroes them first. (A fault already past the lookup may still set one bit in them:
	 * one page of the next range seen as a re-access on its first fault, at worst.) */
	seen_free(b, tgid, start);
	return 0;
}

static int drain_map(struct tierd_bpf *b, int fd, uint32_t entries, tierd_bpf_sample_fn fn, void *ctx)
{
	LIBBPF_OPTS(bpf_map_batch_opts, opts);
	uint32_t token = 0, n = 0;
	bool first = true, done = false;

	/* Batches of whole hash buckets, each read and deleted under its bucket lock: a handful of
	 * syscalls per epoch, where a lookup-and-delete per entry cost two syscalls per page (tens
	 * of thousands per epoch under load). Loses at most a fault that races its entry's delete
	 * (the program already held the value's address): the ε of the tests. */
	while (!done && n < entries) {
		uint32_t count = entries - n;

		if (bpf_map_lookup_and_delete_batch(fd, first ? NULL : &token, &token,
						    b->keys + n, b->values + n, &count, &opts) < 0) {
			/* ENOENT: the last buckets, count says what they held. Anything else
			 * (ENOSPC: a bucket refilled meanwhile outgrew the room left) ends this
			 * drain; what was taken out is still handed over, the rest waits. */
			if (errno != ENOENT && n == 0)
				return -errno;
			done = true;
		}
		first = false;
		n += count;
	}
	for (uint32_t i = 0; i < n; i++)
		fn(ctx, b->keys[i].seg, b->keys[i].page, b->values[i]);
	return (int)n;
}

int tierd_bpf_drain(struct tierd_bpf *b, tierd_bpf_sample_fn fn, void *ctx)
{
	int n = 0;

	if (!b->pc_on)
		return drain_map(b, b->counts_fd, b->map_entries, fn, ctx);
	for (size_t i = 0; i < b->n_ext; i++) {
		int r = pc_scan(b, &b->ext[i], fn, ctx);

		if (r < 0)
			return n ? n : r;
		n += r;
	}
	return n;
}

int tierd_bpf_perf_drain(struct tierd_bpf *b, tierd_bpf_sample_fn fn, void *ctx)
{
	return drain_map(b, b->perf_counts_fd, b->perf_entries, fn, ctx);
}

int tierd_bpf_perf_cpus(const struct tierd_bpf *b)
{
	return b->n_perf;
}

/* kernel.perf_event_paranoid, or INT_MIN when unreadable. */
static int perf_paranoid(void)
{
	FILE *f = fopen("/proc/sys/kernel/perf_event_paranoid", "re");
	int v = INT_MIN;

	if (f) {
		if (fscanf(f, "%d", &v) != 1)
			v = INT_MIN;
		fclose(f);
	}
	return v;
}

/* Why perf_event_open said `err`, for people: which privilege, which sysctl. */
static void perf_why(int err, const struct perfsel *ev, char *why, size_t whylen)
{
	int par = perf_paranoid();

	if (err == -EACCES || err == -EPERM) {
		if (par >= 3)
			snprintf(why, whylen,
				 "perf_event_open(%s) refused: %s; kernel.perf_event_paranoid=%d needs "
				 "CAP_SYS_ADMIN (Debian's kernels), which tierd is not given; "
				 "sysctl kernel.perf_event_paranoid=2 lets CAP_PERFMON open it",
				 ev->desc, strerror(-err), par);
		else
			snprintf(why, whylen,
				 "perf_event_open(%s) refused: %s (system-wide events need CAP_PERFMON; "
				 "kernel.perf_event_paranoid=%d)",
				 ev->desc, strerror(-err), par);
	} else {
		snprintf(why, whylen, "perf_event_open(%s) failed: %s (event not supported here?)", ev->desc,
			 strerror(-err));
	}
}

/* Marks the CPUs a list file ("0-3,6,8-9") names, below n. Returns 0 or a negative errno. */
static int online_cpus(const char *path, bool *online, int n)
{
	char buf[1024], *p = buf;
	FILE *f = fopen(path, "re");

	if (!f)
		return -errno;
	if (!fgets(buf, sizeof(buf), f)) {
		fclose(f);
		return -EINVAL;
	}
	fclose(f);
	while (*p && *p != '\n') {
		char *end;
		long lo = strtol(p, &end, 10), hi = lo;

		if (end == p)
			return -EINVAL;
		if (*end == '-') {
			p = end + 1;
			hi = strtol(p, &end, 10);
			if (end == p)
				return -EINVAL;
		}
		for (long c = lo; c <= hi && c < n; c++)
			if (c >= 0)
				online[c] = true;
		p = *end == ',' ? end + 1 : end;
	}
	return 0;
}

int tierd_bpf_perf_start(struct tierd_bpf *b, const struct perfsel *ev, char *why, size_t whylen)
{
	struct perf_event_attr attr = {
		.size = sizeof(attr),
		.type = ev->type,
		.config = ev->config,
		.config1 = ev->config1,
		.sample_period = ev->sample_period,
		.sample_type = PERF_SAMPLE_ADDR,
		.precise_ip = ev->precise_ip,
		/* Kernel-mode accesses are tierd's own business, and excluding them keeps the
		 * event usable at perf_event_paranoid 2 for a process with CAP_PERFMON. */
		.exclude_kernel = 1,
		.exclude_hv = 1,
	};
	bool *online = NULL;
	int ncpus, r = 0;

	if (b->perf_entries <= 1 || b->n_perf) {
		snprintf(why, whylen, "the perf sampler was not sized at load, or is running");
		return -EINVAL;
	}
	ncpus = libbpf_num_possible_cpus();
	if (ncpus <= 0 || !(b->perf_links = calloc((size_t)ncpus, sizeof(*b->perf_links))) ||
	    !(b->perf_fds = calloc((size_t)ncpus, sizeof(*b->perf_fds)))) {
		snprintf(why, whylen, "out of memory");
		r = ncpus <= 0 ? -EINVAL : -ENOMEM;
		goto fail;
	}
	online = calloc((size_t)ncpus, sizeof(*online));
	r = online ? online_cpus("/sys/devices/system/cpu/online", online, ncpus) : -ENOMEM;
	if (r < 0) {
		snprintf(why, whylen, "cannot read the online CPUs: %s", strerror(-r));
		goto fail;
	}
	for (int cpu = 0; cpu < ncpus; cpu++) {
		int fd;

		if (!online[cpu])
			continue;
		fd = (int)syscall(SYS_perf_event_open, &attr, -1, cpu, -1, PERF_FLAG_FD_CLOEXEC);
		if (fd < 0) {
			r = -errno;
			perf_why(r, ev, why, whylen);
			goto fail;
		}
		b->perf_fds[b->n_perf] = fd;
		b->perf_links[b->n_perf] = bpf_program__attach_perf_event(b->skel->progs.perf_sample, fd);
		b->n_perf++;
		if (!b->perf_links[b->n_perf - 1]) {
			r = -errno;
			snprintf(why, whylen, "attaching the perf_event program on CPU %d failed: %s%s", cpu,
				 strerror(-r), perm_hint(r));
			goto fail;
		}
	}
	free(online);
	return 0;
fail:
	free(online);
	perf_close(b);
	return r;
}

static int stat_sum(const struct tierd_bpf *b, uint32_t idx, uint64_t *ret)
{
	uint64_t sum = 0;

	if (bpf_map_lookup_elem(b->stats_fd, &idx, b->percpu) < 0)
		return -errno;
	for (int i = 0; i < b->ncpus; i++)
		sum += b->percpu[i];
	*ret = sum;
	return 0;
}

int tierd_bpf_stats(const struct tierd_bpf *b, struct tierd_bpf_stats *ret)
{
	int r = stat_sum(b, TIERD_BPF_STAT_OVERFLOW, &ret->overflow);

	if (r == 0)
		r = stat_sum(b, TIERD_BPF_STAT_FIRST_TOUCH, &ret->first_touch);
	if (r == 0)
		r = stat_sum(b, TIERD_BPF_STAT_PERF_OVERFLOW, &ret->perf_overflow);
	if (r == 0)
		r = stat_sum(b, TIERD_BPF_STAT_PERF_OTHER, &ret->perf_other);
	return r;
}

int tierd_bpf_fault_runtime(const struct tierd_bpf *b, uint64_t *run_ns, uint64_t *runs)
{
	struct bpf_prog_info info;
	uint32_t len = sizeof(info);

	memset(&info, 0, sizeof(info));
	if (bpf_obj_get_info_by_fd(bpf_program__fd(b->skel->progs.page_fault_user), &info, &len) < 0)
		return -errno;
	*run_ns = info.run_time_ns;
	*runs = info.run_cnt;
	return 0;
}

/* ---- migration outcomes (bpf/migrate.bpf.c) ---------------------------------------------------- */

/* The reasons' names as this kernel numbers them: the enum has grown (MR_DEMOTION, MR_DAMON) and
 * may again. Read once, when a name is first asked for (parsing the kernel's BTF costs ~10 ms;
 * tierd asks only for reasons it has seen, and on one node it never migrates). Best effort: a name missing here is reported by number. */
static void reason_names(struct tierd_bpf *b)
{
	struct btf *btf;
	const struct btf_type *t;
	int id;

	b->reasons_read = true;
	btf = btf__load_vmlinux_btf();
	if (!btf)
		return;
	id = btf__find_by_name_kind(btf, "migrate_reason", BTF_KIND_ENUM);
	t = id > 0 ? btf__type_by_id(btf, (uint32_t)id) : NULL;
	for (int i = 0; t && i < btf_vlen(t); i++) {
		const struct btf_enum *e = btf_enum(t) + i;
		const char *name = btf__name_by_offset(btf, e->name_off);
		size_t k;

		/* MR_TYPES is the enum's count, not a reason. */
		if (!name || e->val < 0 || e->val >= TIERD_BPF_MIGRATE_REASONS - 1 || !strcmp(name, "MR_TYPES"))
			continue;
		if (!strncmp(name, "MR_", 3))
			name += 3;
		for (k = 0; name[k] && k + 1 < sizeof(b->reason[0]); k++)
			b->reason[e->val][k] = (char)(name[k] >= 'A' && name[k] <= 'Z' ? name[k] - 'A' + 'a'
									    : name[k]);
		b->reason[e->val][k] = '\0';
	}
	btf__free(btf);
}

const char *tierd_bpf_migrate_status(const struct tierd_bpf *b)
{
	return b->migrate_on ? NULL : b->migrate_why;
}

int tierd_bpf_migrate_read(struct tierd_bpf *b, struct tierd_kmig out[TIERD_BPF_MIGRATE_REASONS])
{
	memset(out, 0, TIERD_BPF_MIGRATE_REASONS * sizeof(*out));
	if (!b->migrate_on)
		return 0;
	for (uint32_t r = 0; r < TIERD_BPF_MIGRATE_REASONS; r++) {
		struct tierd_kmig *s = &out[r];

		if (bpf_map_lookup_elem(b->outcomes_fd, &r, b->mpercpu) < 0)
			return -errno;
		for (int c = 0; c < b->ncpus; c++) {
			const struct tierd_bpf_migrate *v = &b->mpercpu[c];

			s->calls += v->calls;
			s->succeeded += v->succeeded;
			s->failed += v->failed;
			s->thp_succeeded += v->thp_succeeded;
			s->thp_failed += v->thp_failed;
			s->thp_split += v->thp_split;
			s->large_folio_split += v->large_folio_split;
		}
	}
	return 0;
}

const char *tierd_bpf_migrate_reason(struct tierd_bpf *b, unsigned reason)
{
	if (!b->reasons_read)
		reason_names(b);
	return reason < TIERD_BPF_MIGRATE_REASONS && b->reason[reason][0] ? b->reason[reason] : NULL;
}
