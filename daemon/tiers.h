/* SPDX-License-Identifier: MIT */
/*
 * NUMA tier discovery from sysfs. Pure: every call takes the sysfs root ("/sys" normally, a
 * fixture tree in tests), keeps no global state, returns negative errno and never logs (the
 * caller logs once, where it decides what to do about a failure).
 *
 * What is read, relative to the root:
 *   devices/system/node/online                      node ids, a list like "0-2,4"
 *   devices/system/node/nodeN/cpulist               non-empty → the node has CPUs
 *   devices/system/node/nodeN/meminfo               "Node N MemTotal: K kB", "... MemFree: ..."
 *   devices/system/node/nodeN/distance              one distance per *online* node, in id order
 *   devices/system/node/nodeN/hugepages/hugepages-{2048,1048576}kB/{nr,free}_hugepages (optional)
 *   devices/virtual/memory_tiering/memory_tierK/nodelist                                (optional)
 *
 * Tiers: when the kernel's memory_tiering puts the memory nodes in more than one tier, its tiers
 * are used (ascending K = faster first). Otherwise nodes with CPUs are tier 0 and each CPU-less
 * node is ranked by its distance from the nearest CPU node, each distinct distance one more tier.
 */
#ifndef TIERD_TIERS_H
#define TIERD_TIERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TIERS_MAX_NODES 64 /* online nodes (memoryless ones included); more → -E2BIG */
#define TIERS_MAX_TIERS 8  /* slower tiers beyond this are folded into the last one */

struct tier_node {
	int id;
	bool online, has_cpus;
	uint64_t total_bytes, free_bytes;     /* nodeN/meminfo MemTotal/MemFree */
	uint64_t huge_total_2m, huge_free_2m; /* pages, nodeN/hugepages/hugepages-2048kB/{nr,free}_hugepages */
	uint64_t huge_total_1g, huge_free_1g; /* pages, …/hugepages-1048576kB/…; 0 when absent */
	int tier;                             /* 0 = fastest */
	unsigned cpu_distance; /* SLIT distance from the nearest CPU node to this one (own local
				* distance for a CPU node; 0 when no online node has CPUs) */
	int memtier;           /* K of the kernel's memory_tierK holding this node, -1 if none */
};

struct tier_topology {
	unsigned nnodes;                                    /* online memory nodes found */
	struct tier_node nodes[TIERS_MAX_NODES];            /* indexed 0..nnodes-1 in id order, NOT by id */
	uint8_t distance[TIERS_MAX_NODES][TIERS_MAX_NODES]; /* by index: [from][to], nodeN/distance */
	unsigned ntiers;
	unsigned tier_size[TIERS_MAX_TIERS];
	int tier_nodes[TIERS_MAX_TIERS][TIERS_MAX_NODES]; /* node ids, per tier, ascending */
	bool from_memory_tiering; /* tiers came from /sys/devices/virtual/memory_tiering */
};

/*
 * Reads the topology under `sysfs_root`. `topo` is written only on success. Nodes whose
 * MemTotal is 0 (memoryless, CPU-only nodes) are left out of `nodes` but still count as CPU
 * nodes for the distance ranking. Returns 0, or:
 *   -ENOENT  a required file is missing (no NUMA sysfs, a node directory or meminfo gone —
 *            possibly a hot-remove race: retry), or no online node has memory;
 *   -EINVAL  a file does not parse: bad list, distance row with garbage, a value > 255 or the
 *            wrong number of entries (a row must have one entry per online node — a count
 *            mismatch can also be a hot-add race), meminfo without MemTotal/MemFree;
 *   -E2BIG   more than TIERS_MAX_NODES online nodes;
 *   -EFBIG   a file larger than any sysfs file read here should be;
 *   -ENAMETOOLONG, or another errno from open/read.
 */
int tiers_discover(const char *sysfs_root, struct tier_topology *topo);

/*
 * Re-reads MemTotal, MemFree and the huge page counts of the nodes already in `topo` (cheap,
 * every few epochs), and checks that the set of memory nodes is still the one `topo` holds.
 * All or nothing: on error `topo` is unchanged. Returns 0, or (the caller then discovers again):
 *   -ESTALE  the memory nodes changed: a known node's MemTotal fell to 0 (all its memory blocks
 *            offline: the node stays online with its files, but holds nothing and takes no
 *            pages), a known node is no longer online, or an online node not in `topo` now has
 *            memory (blocks onlined again, hot-add) or no files yet;
 *   -ENOENT  a known node's files are gone;
 *   -EINVAL/-EFBIG on an unparsable file, or another errno.
 */
int tiers_refresh(const char *sysfs_root, struct tier_topology *topo);

/* The node with this id, or NULL if it is not in the topology. */
const struct tier_node *tiers_node(const struct tier_topology *topo, int node_id);

/*
 * True when both topologies hold the same node ids, each in the same tier (so a hot-add or
 * hot-remove of a node, or the kernel re-tiering one, reads as a change). Capacities and free
 * counts are not compared.
 */
bool tiers_same_nodes(const struct tier_topology *a, const struct tier_topology *b);

/*
 * One line per tier, each ending in '\n', for logs and status:
 *   "tier 0: node 0 (cpus, 1024 MiB, 900 MiB free)"
 *   "tier 1: node 1 (no cpus, distance 20, 2048 MiB, 2048 MiB free, 2M pages 16/16 free)"
 * Several nodes in a tier are separated by ", ". Huge page pools are shown when non-empty.
 * Returns the length written (excluding the NUL), or -ENOBUFS when it did not fit (`buf` then
 * holds a NUL-terminated prefix), or -EINVAL for a zero-length buffer.
 */
int tiers_describe(const struct tier_topology *topo, char *buf, size_t len);

#endif
