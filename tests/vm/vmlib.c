/* SPDX-License-Identifier: MIT */
#include "vmlib.h"

#include <errno.h>
#include <numa.h>
#include <numaif.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"
#include "tierd/tier.h"

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#endif

#define QUERY_BATCH 4096

long vm_where(int fd, size_t page_size, uint64_t lo, uint64_t hi, uint64_t counts[VM_MAX_NODES])
{
	size_t n = hi - lo, len = n * page_size;
	void *addrs[QUERY_BATCH];
	int status[QUERY_BATCH];
	long unknown = 0;
	uint8_t *obs;

	memset(counts, 0, VM_MAX_NODES * sizeof(counts[0]));
	obs = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, (off_t)(lo * page_size));
	if (obs == MAP_FAILED)
		return -errno;
	if (madvise(obs, len, MADV_POPULATE_READ) < 0) {
		long r = -errno;

		munmap(obs, len);
		return r;
	}
	for (size_t off = 0; off < n; off += QUERY_BATCH) {
		size_t k = n - off < QUERY_BATCH ? n - off : QUERY_BATCH;

		for (size_t i = 0; i < k; i++)
			addrs[i] = obs + (off + i) * page_size;
		if (move_pages(0, k, addrs, NULL, status, 0) < 0) {
			long r = -errno;

			munmap(obs, len);
			return r;
		}
		for (size_t i = 0; i < k; i++) {
			if (status[i] >= 0 && status[i] < VM_MAX_NODES)
				counts[status[i]]++;
			else
				unknown++;
		}
	}
	munmap(obs, len);
	return unknown;
}

double vm_share_on(int fd, size_t page_size, uint64_t lo, uint64_t hi, int node)
{
	uint64_t counts[VM_MAX_NODES];

	if (hi <= lo || vm_where(fd, page_size, lo, hi, counts) < 0)
		return 0;
	return (double)counts[node] / (double)(hi - lo);
}

int64_t vm_node_meminfo(int node, const char *key)
{
	char path[96], text[4096], pat[64];
	const char *p;

	snprintf(path, sizeof(path), "/sys/devices/system/node/node%d/meminfo", node);
	if (read_text(path, text, sizeof(text)) < 0)
		return -1;
	snprintf(pat, sizeof(pat), " %s:", key);
	p = strstr(text, pat);
	if (!p)
		return -1;
	return strtoll(p + strlen(pat), NULL, 10) * 1024;
}

bool vm_node_has_cpus(int node)
{
	char path[96], text[256];
	const char *p = text;

	snprintf(path, sizeof(path), "/sys/devices/system/node/node%d/cpulist", node);
	if (read_text(path, text, sizeof(text)) < 0)
		return false;
	while (*p == ' ' || *p == '\n')
		p++;
	return *p != '\0';
}

int vm_slowest_node(void)
{
	int slow = -1;

	if (numa_available() < 0 || numa_num_configured_nodes() < 2)
		return -1;
	for (int n = 1; n <= numa_max_node(); n++)
		if (!vm_node_has_cpus(n) && vm_node_meminfo(n, "MemTotal") > 0 &&
		    (slow < 0 || numa_distance(0, n) > numa_distance(0, slow)))
			slow = n;
	return slow;
}

static void node_huge_path(char *path, size_t len, int node, const char *file)
{
	snprintf(path, len, "/sys/devices/system/node/node%d/hugepages/hugepages-2048kB/%s", node, file);
}

long vm_node_hugepages(int node, bool free_only)
{
	char path[128], text[64];

	node_huge_path(path, sizeof(path), node, free_only ? "free_hugepages" : "nr_hugepages");
	if (read_text(path, text, sizeof(text)) < 0)
		return -1;
	return strtol(text, NULL, 10);
}

static int set_node_hugepages(int node, long nr)
{
	char path[128];
	FILE *f;
	int r;

	node_huge_path(path, sizeof(path), node, "nr_hugepages");
	f = fopen(path, "we");
	if (!f)
		return -errno;
	r = fprintf(f, "%ld\n", nr) < 0 ? -EIO : 0;
	if (fclose(f) != 0)
		r = -errno;
	return r;
}

static long saved_pool[VM_MAX_NODES];
static bool pool_saved[VM_MAX_NODES];

void vm_pool_save(int node)
{
	if (node < 0 || node >= VM_MAX_NODES || pool_saved[node])
		return;
	saved_pool[node] = vm_node_hugepages(node, false);
	pool_saved[node] = saved_pool[node] >= 0;
}

int vm_pool_reserve(int node, long nfree)
{
	long nr = vm_node_hugepages(node, false), fr = vm_node_hugepages(node, true);
	int r;

	if (nr < 0 || fr < 0)
		return -ENOENT;
	vm_pool_save(node);
	if (fr >= nfree)
		return 0;
	r = set_node_hugepages(node, nr + nfree - fr);
	if (r < 0)
		return r;
	return vm_node_hugepages(node, true) >= nfree ? 0 : -ENOMEM;
}

void vm_pools_restore(void)
{
	for (int n = 0; n < VM_MAX_NODES; n++)
		if (pool_saved[n]) {
			(void)set_node_hugepages(n, saved_pool[n]);
			pool_saved[n] = false;
		}
}

static uint64_t pattern(uint64_t page, uint64_t word)
{
	return (page + 1) * 0x9E3779B97F4A7C15ull ^ word;
}

static uint64_t *word(const struct vm_work *w, uint64_t page, uint64_t k)
{
	return (uint64_t *)(w->base + page * w->page_size) + k;
}

void vm_work_place(struct vm_work *w, void *base, int fd, size_t page_size, uint64_t npages,
		   int node)
{
	struct bitmask *bm = numa_allocate_nodemask();

	memset(w, 0, sizeof(*w));
	w->base = base;
	w->fd = fd;
	w->page_size = page_size;
	w->npages = npages;
	w->writes = calloc(npages, sizeof(*w->writes));
	assert_non_null(w->writes);

	numa_bitmask_setbit(bm, (unsigned)node);
	assert_int_equal(set_mempolicy(MPOL_BIND, bm->maskp, bm->size + 1), 0);
	for (uint64_t p = 0; p < npages; p++) {
		for (uint64_t k = 0; k < page_size / 8; k += 8) /* one word per cache line */
			*word(w, p, k) = pattern(p, k);
		*word(w, p, 1) = 0;
	}
	assert_int_equal(set_mempolicy(MPOL_DEFAULT, NULL, 0), 0);
	numa_free_nodemask(bm);
	assert_true(vm_share_on(fd, page_size, 0, npages, node) > 0.99);
}

void vm_work_place_seg(struct vm_work *w, struct tier_segment *seg, int node)
{
	vm_work_place(w, tier_segment_addr(seg), tier_segment_memfd(seg), tier_segment_page_size(seg),
		      tier_segment_size(seg) / tier_segment_page_size(seg), node);
	assert_int_equal(tier_segment_wait_tracked(seg, 10000), 0);
}

/* Checks the hot pages and bumps their counters, over and over. Only this thread writes the
 * counters while it runs, so each must read back exactly as last written. */
static void *hot_loop(void *arg)
{
	struct vm_work *w = arg;

	while (!atomic_load(&w->stop)) {
		uint64_t lo = atomic_load(&w->lo), hi = atomic_load(&w->hi), bad = 0;

		for (uint64_t p = lo; p < hi && p < w->npages; p++) {
			volatile uint64_t *c = word(w, p, 1);

			bad += *(volatile uint64_t *)word(w, p, 8) != pattern(p, 8);
			bad += *c != w->writes[p];
			*c = ++w->writes[p];
		}
		if (bad)
			atomic_fetch_add(&w->bad, bad);
		atomic_fetch_add(&w->passes, 1);
		/* Still hot (every page touched each millisecond or two, tierd's epoch is 50 ms),
		 * but not a busy loop: the guest has two emulated CPUs, and tierd, the test and
		 * the kernel's own work must keep running (tierd answering a client's ping late
		 * makes the client let go of the segment). */
		usleep(1000);
	}
	return NULL;
}

void vm_work_hot(struct vm_work *w, uint64_t lo, uint64_t hi)
{
	sigset_t all, old;

	atomic_store(&w->lo, lo);
	atomic_store(&w->hi, hi);
	if (w->running)
		return;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	assert_int_equal(pthread_create(&w->th, NULL, hot_loop, w), 0);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	w->running = true;
}

uint64_t vm_work_stop(struct vm_work *w)
{
	if (w->running) {
		atomic_store(&w->stop, true);
		pthread_join(w->th, NULL);
		w->running = false;
	}
	return atomic_load(&w->bad);
}

void vm_work_verify(const struct vm_work *w)
{
	for (uint64_t p = 0; p < w->npages; p++) {
		for (uint64_t k = 0; k < w->page_size / 8; k += 8)
			if (*word(w, p, k) != pattern(p, k))
				fail_msg("page %llu word %llu corrupt", (unsigned long long)p,
					 (unsigned long long)k);
		if (*word(w, p, 1) != w->writes[p])
			fail_msg("page %llu: counter %llu, %llu writes made", (unsigned long long)p,
				 (unsigned long long)*word(w, p, 1), (unsigned long long)w->writes[p]);
	}
}

void vm_work_free(struct vm_work *w)
{
	vm_work_stop(w);
	free(w->writes);
	w->writes = NULL;
}

double vm_wait_share(struct vm_work *w, uint64_t lo, uint64_t hi, int node, double want,
		     unsigned timeout_ms, double *secs)
{
	uint64_t t0 = mono_usec();
	double share = 0;

	for (;;) {
		share = vm_share_on(w->fd, w->page_size, lo, hi, node);
		if (share >= want || mono_usec() - t0 > (uint64_t)timeout_ms * 1000)
			break;
		msleep(200);
	}
	if (secs)
		*secs = (double)(mono_usec() - t0) / 1e6;
	print_message("pages [%llu, %llu) on node %d: %.3f after %.1f s\n", (unsigned long long)lo,
		      (unsigned long long)hi, node, share, (double)(mono_usec() - t0) / 1e6);
	return share;
}
