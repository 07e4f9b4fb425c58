/* SPDX-License-Identifier: MIT */
/*
 * Helpers shared by the multi-node guest tests (tests/vm/test_*.c): where pages are, node memory
 * counters, and a workload on a tier segment that reads and writes its hot set while the test
 * moves things around underneath, with checks that no byte and no write was lost.
 */
#ifndef TIERD_TEST_VMLIB_H
#define TIERD_TEST_VMLIB_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VM_MAX_NODES 64

/*
 * Counts, per node, where pages [lo, hi) of the memfd (pages of page_size bytes) are. Maps the
 * range read-only, populates the mapping (MADV_POPULATE_READ: it maps the existing page cache
 * pages, and holes would be allocated — the callers only ask about written pages), asks
 * move_pages(nodes=NULL) and unmaps again. No mapping outlives the call: MPOL_MF_MOVE refuses
 * (-EACCES) pages that another process maps, so a standing observer mapping would keep tierd
 * from moving pages while clients have them zapped. counts[VM_MAX_NODES] gets pages per node;
 * returns how many pages had no node (negative status), or -errno when the query failed.
 */
long vm_where(int fd, size_t page_size, uint64_t lo, uint64_t hi, uint64_t counts[VM_MAX_NODES]);
/* Share of pages [lo, hi) on `node` (0 when the query failed). */
double vm_share_on(int fd, size_t page_size, uint64_t lo, uint64_t hi, int node);

/* "Node N <key>: V kB" of /sys/devices/system/node/nodeN/meminfo in bytes; -1 when absent. */
int64_t vm_node_meminfo(int node, const char *key);
/* True when the node has CPUs. */
bool vm_node_has_cpus(int node);
/* The slowest node: the memory-only node farthest from node 0 (the CPU node); -1 when there is
 * none (one node, or no NUMA). */
int vm_slowest_node(void);
/* The node's per-node pool of 2 MiB pages: nr_hugepages (or free_hugepages); -1 when absent. */
long vm_node_hugepages(int node, bool free_only);
/* Remembers the node's nr_hugepages (once) for vm_pools_restore(). */
void vm_pool_save(int node);
/* Grows the node's pool until it has nfree free 2 MiB pages (saving the old size first);
 * 0, or a negative errno (-ENOMEM when the node could not supply them). */
int vm_pool_reserve(int node, long nfree);
/* Puts every saved pool back to its old size. Huge page migration moves pool pages between
 * nodes (the source pool shrinks, the target's grows), so the fast node's pool is saved too. */
void vm_pools_restore(void);

/*
 * A segment's memory as the application sees it. Each page holds a pattern word per cache line,
 * except word 1, a counter the hot loop increments; the expected count of every page is kept in
 * private memory (writes[]), so a lost or stale write shows up as well as a corrupt byte.
 */
struct vm_work {
	uint8_t *base;
	int fd;
	size_t page_size;
	uint64_t npages;
	uint64_t *writes;           /* expected counter per page */
	_Atomic uint64_t lo, hi;    /* the hot set [lo, hi) */
	_Atomic uint64_t passes;    /* completed passes over the hot set */
	_Atomic uint64_t bad;       /* mismatches seen by the hot loop */
	atomic_bool stop;
	bool running;
	pthread_t th;
};

/* Sets up w for a segment mapped at base (memfd fd) and fills every page, allocating it on
 * `node` (MPOL_BIND for the writes); asserts the pages landed there. */
void vm_work_place(struct vm_work *w, void *base, int fd, size_t page_size, uint64_t npages,
		   int node);
struct tier_segment;
/* vm_work_place over the whole of a tier segment, then waits (up to 10 s) until tierd tracks it;
 * a cmocka failure when it does not. */
void vm_work_place_seg(struct vm_work *w, struct tier_segment *seg, int node);
/* Starts (or retargets) the hot loop on [lo, hi). The thread blocks every signal, so a test's
 * alarm() interrupts the test's own system call. */
void vm_work_hot(struct vm_work *w, uint64_t lo, uint64_t hi);
/* Stops the hot loop; returns the mismatches it saw. */
uint64_t vm_work_stop(struct vm_work *w);
/* Checks every pattern word and counter (cmocka failure on the first bad one). */
void vm_work_verify(const struct vm_work *w);
void vm_work_free(struct vm_work *w);

/* Polls until at least `want` of the hot set [lo, hi) is on `node` or timeout_ms passed; prints
 * and returns the last share, and the time taken in *secs (may be NULL). */
double vm_wait_share(struct vm_work *w, uint64_t lo, uint64_t hi, int node, double want,
		     unsigned timeout_ms, double *secs);

#endif
