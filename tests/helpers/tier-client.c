/* SPDX-License-Identifier: MIT */
/*
 * tier-client: a checksummed workload on a libtier segment, for the kernel tests.
 *
 * Every page is filled with a pattern derived from its index; word 0 is a per-page counter and
 * word 1 its check value. Threads (and forked child processes) own disjoint pages, increment
 * their counters and verify every access, uffd-stress style; at the end every word of every page
 * is verified. Exit: 0 ok, 1 data error, 2 usage/setup, 3 not tracked in time, 4 no re-attach,
 * 5 an access stalled longer than --max-stall-ms.
 *
 * --node N fills the pages on NUMA node N (MPOL_BIND while they are first written: the multi-node
 * guest's tests start a client on the slow node); the closing report then says where its pages
 * are after the final verification (where=NODE:PAGES,... and nonode=, pages that are on no node,
 * which must be 0), from move_pages(2) status queries on its own mapping.
 *
 * SIGUSR1 ends the run early, as if --ms had passed (every page is still verified): a test that
 * cannot know in advance how long its chaos lasts gives a long --ms and signals the end (to the
 * parent only: --fork children run their --ms).
 */
#include <errno.h>
#include <getopt.h>
#include <linux/mempolicy.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "tierd/tier.h"

#define MAGIC 0x5a17c0de5a17c0deull

static struct {
	const char *socket;
	enum tier_kind kind;
	size_t mib;
	unsigned threads, ms, hot_pct, forks, wait_ms, max_stall_ms, shift_ms, min_attaches;
	int node;
} o = { .kind = TIER_SHMEM, .mib = 16, .threads = 2, .ms = 1000, .hot_pct = 10, .wait_ms = 0,
	.node = -1 };

static uint8_t *base;
static size_t page_size, npages, nslots;
static atomic_ullong accesses, errors, max_stall_us;
/* When the longest stall ended (CLOCK_MONOTONIC, ms), to line it up with a test's own events. */
static atomic_ullong max_stall_end_ms;
static atomic_bool stop;
/* Set by SIGUSR1: the run ends now (the handler only stores; the main thread polls it). */
static volatile sig_atomic_t ended;

static inline uint64_t pattern(uint64_t page, uint64_t w)
{
	return (page * 0x9E3779B97F4A7C15ull) ^ (w * 0xBF58476D1CE4E5B9ull);
}

static inline uint64_t *word(uint64_t page, uint64_t w)
{
	return (uint64_t *)(base + page * page_size) + w;
}

struct worker {
	unsigned slot;
	uint64_t *expect; /* per owned page index / nslots */
	uint64_t rng;
	pthread_t th;
};

static uint64_t xs(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static bool check_page(uint64_t page, uint64_t expect, bool full)
{
	uint64_t words = page_size / 8;

	if (*word(page, 0) != expect || *word(page, 1) != (expect ^ MAGIC ^ page))
		return false;
	if (full) {
		for (uint64_t w = 2; w < words; w++)
			if (*word(page, w) != pattern(page, w))
				return false;
	} else if (*word(page, 2 + page % (words - 2)) != pattern(page, 2 + page % (words - 2))) {
		return false;
	}
	return true;
}

static uint64_t owned_pages(unsigned slot)
{
	return slot < npages ? (npages - slot + nslots - 1) / nslots : 0;
}

static void *work(void *arg)
{
	struct worker *wk = arg;
	uint64_t owned = owned_pages(wk->slot);
	uint64_t hot = owned * o.hot_pct / 100, t0 = mono_usec(), last = t0;

	if (owned == 0)
		return NULL; /* more threads than pages */
	if (hot == 0)
		hot = 1;
	while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
		uint64_t r = xs(&wk->rng), k, page, now, shift = 0;

		if (o.shift_ms)
			shift = ((mono_usec() - t0) / 1000 / o.shift_ms) * hot;
		k = (r % 10) ? (shift + (r >> 8) % hot) % owned : (r >> 8) % owned;
		page = k * nslots + wk->slot;
		if (!check_page(page, wk->expect[k], false)) {
			if (atomic_fetch_add(&errors, 1) < 5)
				fprintf(stderr, "tier-client: pid %d: page %llu corrupt (word0 %llx want %llx)\n",
					(int)getpid(), (unsigned long long)page,
					(unsigned long long)*word(page, 0),
					(unsigned long long)wk->expect[k]);
		}
		wk->expect[k]++;
		*word(page, 1) = wk->expect[k] ^ MAGIC ^ page;
		*word(page, 0) = wk->expect[k];
		atomic_fetch_add_explicit(&accesses, 1, memory_order_relaxed);
		now = mono_usec();
		if (now - last > atomic_load(&max_stall_us)) {
			/* A new longest stall past the bound is said when it ends, with the time
			 * (CLOCK_MONOTONIC, like mono_usec), so a test can tell which of its events
			 * it followed. */
			if (o.max_stall_ms && now - last > (uint64_t)o.max_stall_ms * 1000)
				fprintf(stderr, "tier-client: pid %d: an access stalled %.1f ms (ended "
						"at %llu ms)\n", (int)getpid(), (double)(now - last) / 1000.0,
					(unsigned long long)now / 1000);
			atomic_store(&max_stall_us, now - last);
			atomic_store(&max_stall_end_ms, now / 1000);
		}
		last = now;
	}
	return NULL;
}

/* Binds this thread's allocations to `node` (-1: back to the default policy). Raw system calls:
 * the helper does not link libnuma. */
static int bind_node(int node)
{
	unsigned long mask = node >= 0 ? 1ul << node : 0;

	if (node >= (int)(8 * sizeof(mask)))
		return -EINVAL;
	if (syscall(SYS_set_mempolicy, node >= 0 ? MPOL_BIND : MPOL_DEFAULT, node >= 0 ? &mask : NULL,
		    node >= 0 ? 8 * sizeof(mask) : 0) < 0)
		return -errno;
	return 0;
}

#define WHERE_NODES 64
#define WHERE_BATCH 1024

/* Counts where the pages of the memfd are, through a mapping of its own: the segment's mapping is
 * still registered with tierd's uffd, whose zaps (sampling windows, batches) would show pages
 * as not mapped (-ENOENT) although they are in the page cache. MADV_POPULATE_READ maps what is
 * there; a hole would be allocated (the final verification read every page just before, so a
 * lost page failed it already). move_pages with no target nodes only asks. Returns the pages on
 * no node (a negative status, the first one in *why), or -errno when the query failed. */
static long where(int fd, uint64_t counts[WHERE_NODES], int *why)
{
	size_t len = npages * page_size;
	void *addrs[WHERE_BATCH];
	int status[WHERE_BATCH];
	long nonode = 0, r = 0;
	uint8_t *obs;

	memset(counts, 0, WHERE_NODES * sizeof(counts[0]));
	*why = 0;
	obs = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
	if (obs == MAP_FAILED)
		return -errno;
	if (madvise(obs, len, 22 /* MADV_POPULATE_READ */) < 0)
		r = -errno;
	for (uint64_t off = 0; r == 0 && off < npages; off += WHERE_BATCH) {
		uint64_t k = npages - off < WHERE_BATCH ? npages - off : WHERE_BATCH;

		for (uint64_t i = 0; i < k; i++)
			addrs[i] = obs + (off + i) * page_size;
		if (syscall(SYS_move_pages, 0, (unsigned long)k, addrs, NULL, status, 0) < 0) {
			r = -errno;
			break;
		}
		for (uint64_t i = 0; i < k; i++) {
			if (status[i] >= 0 && status[i] < WHERE_NODES) {
				counts[status[i]]++;
			} else {
				*why = *why ? *why : status[i];
				nonode++;
			}
		}
	}
	munmap(obs, len);
	return r < 0 ? r : nonode;
}

static void on_usr1(int sig)
{
	(void)sig;
	ended = 1;
}

static int run_workers(unsigned proc_index)
{
	struct worker *w = calloc(o.threads, sizeof(*w));
	uint64_t t0 = mono_usec();

	atomic_store(&stop, false);
	for (unsigned t = 0; t < o.threads; t++) {
		uint64_t owned;

		w[t].slot = proc_index * o.threads + t;
		owned = owned_pages(w[t].slot);
		w[t].expect = calloc(owned + 1, sizeof(uint64_t));
		w[t].rng = 0x1234567ull + w[t].slot * 7919ull + (uint64_t)getpid();
		pthread_create(&w[t].th, NULL, work, &w[t]);
	}
	while (mono_usec() - t0 < (uint64_t)o.ms * 1000 && !ended)
		msleep(10);
	atomic_store(&stop, true);
	for (unsigned t = 0; t < o.threads; t++)
		pthread_join(w[t].th, NULL);
	/* Final full verification of every owned page. */
	for (unsigned t = 0; t < o.threads; t++) {
		uint64_t owned = owned_pages(w[t].slot);

		for (uint64_t k = 0; k < owned; k++)
			if (!check_page(k * nslots + w[t].slot, w[t].expect[k], true))
				atomic_fetch_add(&errors, 1);
		free(w[t].expect);
	}
	free(w);
	return atomic_load(&errors) ? 1 : 0;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "socket", 1, NULL, 's' }, { "kind", 1, NULL, 'k' },    { "mib", 1, NULL, 'm' },
		{ "threads", 1, NULL, 't' }, { "ms", 1, NULL, 'd' },     { "hot-pct", 1, NULL, 'H' },
		{ "fork", 1, NULL, 'f' },   { "wait-tracked", 1, NULL, 'w' },
		{ "max-stall-ms", 1, NULL, 'S' }, { "shift-ms", 1, NULL, 'x' },
		{ "min-attaches", 1, NULL, 'a' }, { "node", 1, NULL, 'n' }, {}
	};
	struct tier_options to = { .name = "tier-client" };
	struct tier_segment *seg;
	struct tier_info info;
	unsigned long long acc;
	char placed[256] = "";
	long nonode = 0;
	int c, r, rc = 0;

	while ((c = getopt_long(argc, argv, "", opts, NULL)) >= 0) {
		switch (c) {
		case 's': o.socket = optarg; break;
		case 'k': o.kind = strcmp(optarg, "hugetlb") == 0 ? TIER_HUGETLB : TIER_SHMEM; break;
		case 'm': o.mib = strtoul(optarg, NULL, 10); break;
		case 't': o.threads = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'd': o.ms = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'H': o.hot_pct = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'f': o.forks = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'w': o.wait_ms = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'S': o.max_stall_ms = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'x': o.shift_ms = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'a': o.min_attaches = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'n': o.node = (int)strtol(optarg, NULL, 10); break;
		default: return 2;
		}
	}
	if (o.threads == 0 || o.mib == 0 || o.hot_pct == 0 || o.hot_pct > 100)
		return 2;
	/* Installed first: a SIGUSR1 sent as soon as the test sees the client must not kill it. */
	if (sigaction(SIGUSR1, &(struct sigaction){ .sa_handler = on_usr1 }, NULL) < 0)
		return 2;
	to.kind = o.kind;
	to.size = o.mib << 20;
	to.socket_path = o.socket;
	r = tier_segment_create(&to, &seg);
	if (r < 0) {
		fprintf(stderr, "tier-client: creating the segment: %s\n", strerror(-r));
		return 2;
	}
	base = tier_segment_addr(seg);
	page_size = tier_segment_page_size(seg);
	npages = tier_segment_size(seg) / page_size;
	nslots = (size_t)(o.forks + 1) * o.threads;
	if (o.node >= 0 && (r = bind_node(o.node)) < 0) {
		fprintf(stderr, "tier-client: binding to node %d: %s\n", o.node, strerror(-r));
		tier_segment_destroy(seg);
		return 2;
	}
	for (uint64_t p = 0; p < npages; p++) {
		for (uint64_t w = 2; w < page_size / 8; w++)
			*word(p, w) = pattern(p, w);
		*word(p, 0) = 0;
		*word(p, 1) = MAGIC ^ p;
	}
	if (o.node >= 0)
		(void)bind_node(-1);
	if (o.wait_ms && tier_segment_wait_tracked(seg, o.wait_ms) < 0) {
		tier_segment_info(seg, &info);
		fprintf(stderr, "tier-client: not tracked after %u ms: %s\n", o.wait_ms, info.last_reason);
		tier_segment_destroy(seg);
		return 3;
	}

	pid_t *kids = calloc(o.forks + 1, sizeof(pid_t));
	for (unsigned i = 0; i < o.forks; i++) {
		kids[i] = fork();
		if (kids[i] == 0) {
			int crc = run_workers(i + 1);
			struct tier_info ci;

			tier_segment_info(seg, &ci);
			printf("tier-client: child pid=%d accesses=%llu errors=%llu attaches=%llu\n",
			       (int)getpid(), (unsigned long long)atomic_load(&accesses),
			       (unsigned long long)atomic_load(&errors), (unsigned long long)ci.attaches);
			fflush(stdout);
			_exit(crc);
		}
	}
	rc = run_workers(0);
	for (unsigned i = 0; i < o.forks; i++) {
		int st;

		if (waitpid(kids[i], &st, 0) != kids[i] || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
			fprintf(stderr, "tier-client: child %d failed (status 0x%x)\n", (int)kids[i], st);
			rc = rc ? rc : 1;
		}
	}
	free(kids);
	tier_segment_info(seg, &info);
	acc = atomic_load(&accesses);
	if (o.node >= 0) {
		uint64_t counts[WHERE_NODES];
		size_t len = 0;

		int why;

		nonode = where(tier_segment_memfd(seg), counts, &why);
		if (nonode != 0)
			fprintf(stderr, "tier-client: pid %d: %ld pages on no node (first status %d)\n",
				(int)getpid(), nonode, nonode < 0 ? (int)nonode : why);
		for (int n = 0; n < WHERE_NODES; n++)
			if (counts[n] && len < sizeof(placed))
				len += (size_t)snprintf(placed + len, sizeof(placed) - len, "%s%d:%llu",
							len ? "," : " where=", n,
							(unsigned long long)counts[n]);
		if (nonode != 0 && rc == 0)
			rc = 1; /* a page on no node after its data verified: lost to the next access */
	}
	printf("tier-client: pid=%d kind=%s accesses=%llu errors=%llu max_stall_ms=%.1f state=%d "
	       "attaches=%llu detaches=%llu guardian=%llu zaps=%llu max_stall_end_ms=%llu%s nonode=%ld\n",
	       (int)getpid(), o.kind == TIER_HUGETLB ? "hugetlb" : "shmem", acc,
	       (unsigned long long)atomic_load(&errors), atomic_load(&max_stall_us) / 1000.0,
	       info.state, (unsigned long long)info.attaches, (unsigned long long)info.detaches,
	       (unsigned long long)info.guardian_detaches, (unsigned long long)info.zaps,
	       (unsigned long long)atomic_load(&max_stall_end_ms), placed, nonode);
	if (rc == 0 && acc == 0)
		rc = 1;
	if (rc == 0 && o.min_attaches && info.attaches < o.min_attaches)
		rc = 4;
	if (rc == 0 && o.max_stall_ms && atomic_load(&max_stall_us) > (uint64_t)o.max_stall_ms * 1000)
		rc = 5;
	tier_segment_destroy(seg);
	return rc;
}
