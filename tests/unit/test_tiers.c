/* SPDX-License-Identifier: MIT */
/* Tier discovery against sysfs fixture trees written under a temp dir, plus one run on this
 * machine's real /sys. */
#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "fixture.h"

#include "tiers.h"

#define MiB (UINT64_C(1) << 20)

struct fixture {
	char root[64];
};


static void put_online(const struct fixture *fx, const char *list)
{
	fx_put(fx->root, list, "devices/system/node/online");
}

/* A node as the kernel shows it; sizes in MiB, huge page pools left out when both are 0. */
static void put_node(const struct fixture *fx, int id, const char *cpulist, uint64_t total_mib,
		     uint64_t free_mib, const char *distance)
{
	char buf[1024];

	snprintf(buf, sizeof(buf), "%s\n", cpulist);
	fx_put(fx->root, buf, "devices/system/node/node%d/cpulist", id);
	snprintf(buf, sizeof(buf),
		 "Node %d MemTotal:       %8llu kB\n"
		 "Node %d MemFree:        %8llu kB\n"
		 "Node %d MemUsed:        %8llu kB\n"
		 "Node %d Active(anon):      17824 kB\n"
		 "Node %d HugePages_Total:    0\n",
		 id, (unsigned long long)total_mib * 1024, id, (unsigned long long)free_mib * 1024, id,
		 (unsigned long long)(total_mib - free_mib) * 1024, id, id);
	fx_put(fx->root, buf, "devices/system/node/node%d/meminfo", id);
	snprintf(buf, sizeof(buf), "%s\n", distance);
	fx_put(fx->root, buf, "devices/system/node/node%d/distance", id);
}

static void put_huge(const struct fixture *fx, int id, unsigned size_kb, unsigned nr, unsigned nfree)
{
	char buf[32];

	snprintf(buf, sizeof(buf), "%u\n", nr);
	fx_put(fx->root, buf, "devices/system/node/node%d/hugepages/hugepages-%ukB/nr_hugepages", id, size_kb);
	snprintf(buf, sizeof(buf), "%u\n", nfree);
	fx_put(fx->root, buf, "devices/system/node/node%d/hugepages/hugepages-%ukB/free_hugepages", id, size_kb);
}

static void put_memtier(const struct fixture *fx, int k, const char *nodelist)
{
	char buf[64];

	snprintf(buf, sizeof(buf), "%s\n", nodelist);
	fx_put(fx->root, buf, "devices/virtual/memory_tiering/memory_tier%d/nodelist", k);
	/* The real directory also holds these; they must be ignored. */
	fx_put(fx->root, "", "devices/virtual/memory_tiering/memory_tier%d/uevent", k);
	fx_put(fx->root, "", "devices/virtual/memory_tiering/power/autosuspend_delay_ms");
}

static int setup(void **state)
{
	struct fixture *fx = calloc(1, sizeof(*fx));

	if (!fx)
		return -1;
	strcpy(fx->root, "/tmp/tierd-sysfs.XXXXXX");
	if (!mkdtemp(fx->root)) {
		free(fx);
		return -1;
	}
	*state = fx;
	return 0;
}


static int teardown(void **state)
{
	struct fixture *fx = *state;
	int r = fx_rmtree(fx->root);

	free(fx);
	return r;
}

/* Tier `t` holds exactly these node ids, in this order. */
static void assert_tier(const struct tier_topology *t, unsigned tier, unsigned n, const int *ids)
{
	assert_true(tier < t->ntiers);
	assert_int_equal(t->tier_size[tier], n);
	for (unsigned i = 0; i < n; i++) {
		assert_int_equal(t->tier_nodes[tier][i], ids[i]);
		assert_int_equal(tiers_node(t, ids[i])->tier, (int)tier);
	}
}

static void test_single_node(void **state)
{
	struct fixture *fx = *state;
	struct tier_topology t;
	const struct tier_node *n;

	put_online(fx, "0\n");
	put_node(fx, 0, "0-1", 1024, 900, "10");
	put_huge(fx, 0, 2048, 40, 38);
	put_huge(fx, 0, 1048576, 2, 1);
	assert_int_equal(tiers_discover(fx->root, &t), 0);
	assert_int_equal(t.nnodes, 1);
	assert_int_equal(t.ntiers, 1);
	assert_false(t.from_memory_tiering);
	n = &t.nodes[0];
	assert_int_equal(n->id, 0);
	assert_true(n->online && n->has_cpus);
	assert_int_equal(n->total_bytes, 1024 * MiB);
	assert_int_equal(n->free_bytes, 900 * MiB);
	assert_int_equal(n->huge_total_2m, 40);
	assert_int_equal(n->huge_free_2m, 38);
	assert_int_equal(n->huge_total_1g, 2);
	assert_int_equal(n->huge_free_1g, 1);
	assert_int_equal(n->tier, 0);
	assert_int_equal(n->cpu_distance, 10);
	assert_int_equal(n->memtier, -1);
	assert_int_equal(t.distance[0][0], 10);
	assert_tier(&t, 0, 1, (int[]){ 0 });
	assert_ptr_equal(tiers_node(&t, 0), n);
	assert_null(tiers_node(&t, 1));
	assert_null(tiers_node(&t, -1));
}

/* The 2-node guest: node 1 memory-only at distance 20, no huge page directories at all. */
static void test_two_node_guest(void **state)
{
	struct fixture *fx = *state;
	struct tier_topology t;

	put_online(fx, "0-1\n");
	put_node(fx, 0, "0-1", 2048, 1800, "10 20");
	put_node(fx, 1, "", 1024, 1024, "20 10");
	assert_int_equal(tiers_discover(fx->root, &t), 0);
	assert_int_equal(t.nnodes, 2);
	assert_int_equal(t.ntiers, 2);
	assert_true(t.nodes[0].has_cpus);
	assert_false(t.nodes[1].has_cpus);
	assert_int_equal(t.nodes[1].cpu_distance, 20);
	assert_int_equal(t.nodes[1].huge_total_2m, 0);
	assert_int_equal(t.nodes[1].huge_total_1g, 0);
	assert_int_equal(t.distance[0][1], 20);
	assert_int_equal(t.distance[1][0], 20);
	assert_int_equal(t.distance[1][1], 10);
	assert_tier(&t, 0, 1, (int[]){ 0 });
	assert_tier(&t, 1, 1, (int[]){ 1 });
}

/* The 3-node guest: 10/20/30 from node 0, one tier per distance. */
static void test_three_node_guest(void **state)
{
	struct fixture *fx = *state;
	struct tier_topology t;

	put_online(fx, "0-2\n");
	put_node(fx, 0, "0-1", 1024, 1000, "10 20 30");
	put_node(fx, 1, "", 1024, 1024, "20 10 20");
	put_node(fx, 2, "", 1024, 1024, "30 20 10");
	assert_int_equal(tiers_discover(fx->root, &t), 0);
	assert_int_equal(t.nnodes, 3);
	assert_int_equal(t.ntiers, 3);
	assert_tier(&t, 0, 1, (int[]){ 0 });
	assert_tier(&t, 1, 1, (int[]){ 1 });
	assert_tier(&t, 2, 1, (int[]){ 2 });
	assert_int_equal(tiers_node(&t, 2)->cpu_distance, 30);
	assert_int_equal(t.distance[0][2], 30);
	assert_int_equal(t.distance[2][1], 20);
}

/* Two sockets and a CXL-like memory-only node nearer to socket 1; the SLIT is asymmetric, and
 * the ranking uses the CPU node's row (initiator → target). */
static void test_two_sockets_cxl(void **state)
{
	struct fixture *fx = *state;
	struct tier_topology t;

	put_online(fx, "0-2\n");
	put_node(fx, 0, "0-15", 65536, 60000, "10 21 24");
	put_node(fx, 1, "16-31", 65536, 60000, "21 10 14");
	put_node(fx, 2, "", 131072, 131072, "50 50 10");
	assert_int_equal(tiers_discover(fx->root, &t), 0);
	assert_int_equal(t.nnodes, 3);
	assert_int_equal(t.ntiers, 2);
	assert_tier(&t, 0, 2, (int[]){ 0, 1 });
	assert_tier(&t, 1, 1, (int[]){ 2 });
	assert_int_equal(tiers_node(&t, 2)->cpu_distance, 14);
	assert_int_equal(tiers_node(&t, 0)->cpu_distance, 10);
	assert_int_equal(t.distance[2][0], 50);
	assert_int_equal(t.distance[1][2], 14);
}

/* memory_tiering separates the nodes: it wins over distances. Tier names sort differently as
 * text ("memory_tier22" < "memory_tier4") and as numbers: numbers rule. */
static void test_memory_tiering_separates(void **state)
{
	struct fixture *fx = *state;
	struct tier_topology t;

	put_online(fx, "0-2\n");
	put_node(fx, 0, "0-1", 1024, 1000, "10 20 30");
	put_node(fx, 1, "", 1024, 1024, "20 10 20");
	put_node(fx, 2, "", 1024, 1024, "30 20 10");
	put_memtier(fx, 4, "0-1");
	put_memtier(fx, 22, "2");
	put_memtier(fx, 30, "7"); /* a node we do not know: ignored, the tier is empty for us */
	assert_int_equal(tiers_discover(fx->root, &t), 0);
	assert_true(t.from_memory_tiering);
	assert_int_equal(t.ntiers, 2);
	assert_tier(&t, 0, 2, (int[]){ 0, 1 });
	assert_tier(&t, 1, 1, (int[]){ 2 });
	assert_int_equal(tiers_node(&t, 0)->memtier, 4);
	assert_int_equal(tiers_node(&t, 2)->memtier, 22);
	/* Distances are still read. */
	assert_int_equal(tiers_node(&t, 2)->cpu_distance, 30);
}

/* The 6.1 guest: memory_tiering present with every node in one tier → rank by distance. Also a
 * kernel tier that leaves a node out, and one that lists a node twice, fall back. */
static void test_memory_tiering_fallback(void **state)
{
	struct fixture *fx = *state;
	struct tier_topology t;

	put_online(fx, "0-2\n");
	put_node(fx, 0, "0-1", 1024, 1000, "10 20 30");
	put_node(fx, 1, "", 1024, 1024, "20 10 20");
	put_node(fx, 2, "", 1024, 1024, "30 20 10");
	put_memtier(fx, 4, "0-2");
	assert_int_equal(tiers_discover(fx->root, &t), 0);
	assert_false(t.from_memory_tiering);
	assert_int_equal(t.ntiers, 3);
	assert_tier(&t, 0, 1, (int[]){ 0 });
	assert_tier(&t, 1, 1, (int[]){ 1 });
	assert_tier(&t, 2, 1, (int[]){ 2 });
	assert_int_equal(tiers_node(&t, 1)->memtier, 4);

	put_memtier(fx, 4, "0-1");
	put_memtier(fx, 5, "1");
	assert_int_equal(tiers_discover(fx->root, &t), 0); /* node 1 twice, node 2 nowhere */
	assert_false(t.from_memory_tiering);
	assert_int_equal(t.ntiers, 3);

	put_memtier(fx, 4, "0");
	assert_int_equal(tiers_discover(fx->root, &t), 0); /* node 2 nowhere */
	assert_false(t.from_memory_tiering);

	/* Garbage in a nodelist is an error, not a silent fallback. */
	put_memtier(fx, 5, "1-x");
	assert_int_equal(tiers_discover(fx->root, &t), -EINVAL);
}

/* Gaps in the online list. A distance row has one entry per *online* node in id order, so with
 * online "0,2" node 0's row "10 20" means 0→0 = 10, 0→2 = 20 (no column for node 1). */
static void test_online_gaps(void **state)
{
	struct fixture *fx = *state;
	struct tier_topology t;

	put_online(fx, "0,2\n");
	put_node(fx, 0, "0-1", 1024, 1000, "10 20");
	put_node(fx, 2, "", 1024, 1024, "20 10");
	assert_int_equal(tiers_discover(fx->root, &t), 0);
	assert_int_equal(t.nnodes, 2);
	assert_int_equal(t.nodes[1].id, 2);
	assert_null(tiers_node(&t, 1));
	assert_int_equal(tiers_node(&t, 2)->tier, 1);
	assert_int_equal(tiers_node(&t, 2)->cpu_distance, 20);
	assert_int_equal(t.distance[0][1], 20);
	assert_tier(&t, 1, 1, (int[]){ 2 });

	/* Ranges and singles mixed: "0-2,4" with node 3 absent (its stale directory is not read). */
	put_online(fx, "0-2,4\n");
	put_node(fx, 0, "0-1", 1024, 1000, "10 20 30 40");
	put_node(fx, 1, "", 1024, 1024, "20 10 20 20");
	put_node(fx, 2, "", 1024, 1024, "30 20 10 20");
	put_node(fx, 3, "", 1024, 1024, "garbage");
	put_node(fx, 4, "", 1024, 1024, "40 20 20 10");
	assert_int_equal(tiers_discover(fx->root, &t), 0);
	assert_int_equal(t.nnodes, 4);
	assert_int_equal(t.ntiers, 4);
	assert_int_equal(t.nodes[3].id, 4);
	assert_null(tiers_node(&t, 3));
	assert_int_equal(tiers_node(&t, 4)->cpu_distance, 40);
	assert_int_equal(t.distance[0][3], 40);
	assert_tier(&t, 3, 1, (int[]){ 4 });

	/* A first online node other than 0: the kernel's row then starts with a space. */
	put_online(fx, "1-2\n");
	put_node(fx, 1, "0-1", 1024, 1024, " 10 20");
	put_node(fx, 2, "", 1024, 1024, " 20 10");
	assert_int_equal(tiers_discover(fx->root, &t), 0);
	assert_int_equal(t.nnodes, 2);
	assert_int_equal(t.nodes[0].id, 1);
	assert_int_equal(t.distance[0][1], 20);
	assert_int_equal(tiers_node(&t, 2)->tier, 1);
}

/* A memoryless CPU node (MemTotal 0) is skipped but still counts as the initiator. */
static void test_memoryless_cpu_node(void **state)
{
	struct fixture *fx = *state;
	struct tier_topology t;

	put_online(fx, "0-2\n");
	put_node(fx, 0, "0-3", 0, 0, "10 20 30");
	put_node(fx, 1, "", 4096, 4000, "20 10 20");
	put_node(fx, 2, "", 4096, 4096, "30 20 10");
	assert_int_equal(tiers_discover(fx->root, &t), 0);
	assert_int_equal(t.nnodes, 2);
	assert_null(tiers_node(&t, 0));
	assert_int_equal(t.nodes[0].id, 1);
	assert_int_equal(t.distance[0][1], 20); /* 1 → 2, by index */
	assert_int_equal(t.ntiers, 2);
	assert_tier(&t, 0, 1, (int[]){ 1 });
	assert_tier(&t, 1, 1, (int[]){ 2 });
	assert_int_equal(tiers_node(&t, 1)->cpu_distance, 20);
}

static void test_malformed(void **state)
{
	struct fixture *fx = *state;
	struct tier_topology t, before;

	assert_int_equal(tiers_discover(fx->root, &t), -ENOENT); /* no node directory at all */
	assert_int_equal(tiers_discover("/nonexistent-sysfs-root", &t), -ENOENT);

	put_online(fx, "0-1\n");
	put_node(fx, 0, "0-1", 1024, 1000, "10 20");
	put_node(fx, 1, "", 1024, 1024, "20 10");
	assert_int_equal(tiers_discover(fx->root, &before), 0);
	t = before;

	static const char *const bad_online[] = { "0-\n", "2-1\n", "1,0\n", "0,,1\n", "a\n",
						  "0-1 x\n", "-1\n", "99999\n" };
	for (size_t i = 0; i < sizeof(bad_online) / sizeof(bad_online[0]); i++) {
		put_online(fx, bad_online[i]);
		assert_int_equal(tiers_discover(fx->root, &t), -EINVAL);
	}
	put_online(fx, "0-64\n");
	assert_int_equal(tiers_discover(fx->root, &t), -E2BIG);
	put_online(fx, "\n");
	assert_int_equal(tiers_discover(fx->root, &t), -ENOENT);
	put_online(fx, "0-1\n");

	static const char *const bad_dist[] = { "10 abc", "10", "10 20 30", "10 300", "10,20",
						"10 -20", "" };
	for (size_t i = 0; i < sizeof(bad_dist) / sizeof(bad_dist[0]); i++) {
		char row[32];

		snprintf(row, sizeof(row), "%s\n", bad_dist[i]);
		fx_put(fx->root, row, "devices/system/node/node1/distance");
		assert_int_equal(tiers_discover(fx->root, &t), -EINVAL);
	}
	fx_put(fx->root, "20 10\n", "devices/system/node/node1/distance");

	/* meminfo: missing, a key missing, garbage value, wrong node, wrong unit. */
	fx_del(fx->root, "devices/system/node/node1/meminfo");
	assert_int_equal(tiers_discover(fx->root, &t), -ENOENT);
	fx_put(fx->root, "Node 1 MemTotal: 1048576 kB\n", "devices/system/node/node1/meminfo");
	assert_int_equal(tiers_discover(fx->root, &t), -EINVAL);
	fx_put(fx->root, "Node 1 MemTotal: lots kB\nNode 1 MemFree: 1 kB\n", "devices/system/node/node1/meminfo");
	assert_int_equal(tiers_discover(fx->root, &t), -EINVAL);
	fx_put(fx->root, "Node 0 MemTotal: 1 kB\nNode 0 MemFree: 1 kB\n", "devices/system/node/node1/meminfo");
	assert_int_equal(tiers_discover(fx->root, &t), -EINVAL);
	fx_put(fx->root, "Node 1 MemTotal: 1 MB\nNode 1 MemFree: 1 kB\n", "devices/system/node/node1/meminfo");
	assert_int_equal(tiers_discover(fx->root, &t), -EINVAL);
	fx_put(fx->root, "Node 1 MemTotal: 99999999999999999999 kB\nNode 1 MemFree: 1 kB\n",
	    "devices/system/node/node1/meminfo");
	assert_int_equal(tiers_discover(fx->root, &t), -EINVAL);
	fx_put(fx->root, "Node 1 MemTotal: 1024 kB\nNode 1 MemFree: 512 kB\n", "devices/system/node/node1/meminfo");
	assert_int_equal(tiers_discover(fx->root, &t), 0);
	assert_int_equal(tiers_node(&t, 1)->free_bytes, 512 * 1024);

	/* A node directory missing its cpulist; a huge page count with garbage. */
	fx_del(fx->root, "devices/system/node/node1/cpulist");
	assert_int_equal(tiers_discover(fx->root, &t), -ENOENT);
	fx_put(fx->root, "\n", "devices/system/node/node1/cpulist");
	put_huge(fx, 1, 2048, 4, 4);
	fx_put(fx->root, "4x\n", "devices/system/node/node1/hugepages/hugepages-2048kB/free_hugepages");
	assert_int_equal(tiers_discover(fx->root, &t), -EINVAL);
	fx_put(fx->root, "4\n", "devices/system/node/node1/hugepages/hugepages-2048kB/free_hugepages");
	assert_int_equal(tiers_discover(fx->root, &t), 0);
	assert_int_equal(tiers_node(&t, 1)->huge_free_2m, 4);

	/* An online node with no directory at all (hot-remove race). */
	put_online(fx, "0-2\n");
	assert_int_equal(tiers_discover(fx->root, &t), -ENOENT);

	/* Only memoryless nodes: nothing to tier. */
	put_online(fx, "0\n");
	put_node(fx, 0, "0-1", 0, 0, "10");
	assert_int_equal(tiers_discover(fx->root, &t), -ENOENT);

	/* On failure the caller's topology is left as it was. */
	t = before;
	assert_int_equal(tiers_discover(fx->root, &t), -ENOENT);
	assert_memory_equal(&t, &before, sizeof(t));
}

static void test_refresh(void **state)
{
	struct fixture *fx = *state;
	struct tier_topology t, saved;

	put_online(fx, "0-1\n");
	put_node(fx, 0, "0-1", 1024, 1000, "10 20");
	put_node(fx, 1, "", 2048, 2048, "20 10");
	put_huge(fx, 1, 2048, 16, 16);
	assert_int_equal(tiers_discover(fx->root, &t), 0);
	assert_int_equal(tiers_node(&t, 1)->huge_free_2m, 16);

	put_node(fx, 0, "0-1", 1024, 100, "10 20");
	put_node(fx, 1, "", 2048, 1500, "20 10");
	put_huge(fx, 1, 2048, 16, 3);
	put_huge(fx, 1, 1048576, 1, 1);
	assert_int_equal(tiers_refresh(fx->root, &t), 0);
	assert_int_equal(tiers_node(&t, 0)->free_bytes, 100 * MiB);
	assert_int_equal(tiers_node(&t, 1)->free_bytes, 1500 * MiB);
	assert_int_equal(tiers_node(&t, 1)->huge_free_2m, 3);
	assert_int_equal(tiers_node(&t, 1)->huge_total_1g, 1);
	assert_int_equal(tiers_node(&t, 1)->tier, 1); /* tiers untouched */
	assert_int_equal(t.ntiers, 2);

	/* A node whose files vanished: error, nothing changed (not even the nodes read before it). */
	put_node(fx, 0, "0-1", 1024, 50, "10 20");
	fx_del(fx->root, "devices/system/node/node1/meminfo");
	saved = t;
	assert_int_equal(tiers_refresh(fx->root, &t), -ENOENT);
	assert_memory_equal(&t, &saved, sizeof(t));
}

/*
 * Memory offlined and onlined again under a node that stays online (what a memory hot-remove
 * from inside a guest looks like): the node's files stay, only MemTotal changes, and the online
 * list does not. Refresh must report the change so the caller discovers again.
 */
static void test_refresh_memory_offline(void **state)
{
	struct fixture *fx = *state;
	struct tier_topology t, saved;

	put_online(fx, "0-2\n");
	put_node(fx, 0, "0-1", 1024, 1000, "10 20 30");
	put_node(fx, 1, "", 1024, 1024, "20 10 20");
	put_node(fx, 2, "", 1024, 1024, "30 20 10");
	assert_int_equal(tiers_discover(fx->root, &t), 0);
	assert_int_equal(t.ntiers, 3);

	/* Part of node 1's blocks offline: still a node to place pages on. */
	put_node(fx, 1, "", 512, 500, "20 10 20");
	assert_int_equal(tiers_refresh(fx->root, &t), 0);
	assert_int_equal(tiers_node(&t, 1)->total_bytes, 512 * MiB);

	/* All of them: the node has nothing left, it must not stay a target. */
	put_node(fx, 1, "", 0, 0, "20 10 20");
	saved = t;
	assert_int_equal(tiers_refresh(fx->root, &t), -ESTALE);
	assert_memory_equal(&t, &saved, sizeof(t));
	assert_int_equal(tiers_discover(fx->root, &t), 0);
	assert_int_equal(t.nnodes, 2);
	assert_null(tiers_node(&t, 1));
	assert_tier(&t, 1, 1, (int[]){ 2 }); /* node 2 is the first slow tier now */
	assert_int_equal(t.ntiers, 2);

	/* Still memoryless: nothing changed, and free memory is refreshed as usual. */
	put_node(fx, 2, "", 1024, 800, "30 20 10");
	assert_int_equal(tiers_refresh(fx->root, &t), 0);
	assert_int_equal(tiers_node(&t, 2)->free_bytes, 800 * MiB);

	/* Onlined again: the online list is the same, node 1's MemTotal is not 0 any more. */
	put_node(fx, 1, "", 1024, 1024, "20 10 20");
	saved = t;
	assert_int_equal(tiers_refresh(fx->root, &t), -ESTALE);
	assert_memory_equal(&t, &saved, sizeof(t));
	assert_int_equal(tiers_discover(fx->root, &t), 0);
	assert_int_equal(t.nnodes, 3);
	assert_tier(&t, 1, 1, (int[]){ 1 });

	/* A memoryless CPU node stays out of the topology without being reported every time. */
	put_online(fx, "0-3\n");
	put_node(fx, 0, "0-1", 1024, 1000, "10 20 30 15");
	put_node(fx, 1, "", 1024, 1024, "20 10 20 25");
	put_node(fx, 2, "", 1024, 1024, "30 20 10 35");
	put_node(fx, 3, "2-3", 0, 0, "15 25 35 10");
	assert_int_equal(tiers_discover(fx->root, &t), 0);
	assert_int_equal(t.nnodes, 3);
	assert_int_equal(tiers_refresh(fx->root, &t), 0);

	/* A node that came online with memory (hot-add), and one whose files are not there yet. */
	put_online(fx, "0-4\n");
	assert_int_equal(tiers_refresh(fx->root, &t), -ESTALE);
	put_node(fx, 4, "", 0, 0, "30 20 10 35 10");
	assert_int_equal(tiers_refresh(fx->root, &t), 0); /* memoryless: not a change */
	put_node(fx, 4, "", 2048, 2048, "30 20 10 35 10");
	assert_int_equal(tiers_refresh(fx->root, &t), -ESTALE);

	/* A known node no longer in the online list although its files linger. */
	put_online(fx, "0,2-3\n");
	assert_int_equal(tiers_refresh(fx->root, &t), -ESTALE);

	/* An online list that does not parse is an error, not a change. */
	put_online(fx, "0-\n");
	assert_int_equal(tiers_refresh(fx->root, &t), -EINVAL);
}

static void test_same_nodes(void **state)
{
	struct fixture *fx = *state;
	struct tier_topology a, b;

	put_online(fx, "0-1\n");
	put_node(fx, 0, "0-1", 1024, 1000, "10 20");
	put_node(fx, 1, "", 1024, 1024, "20 10");
	assert_int_equal(tiers_discover(fx->root, &a), 0);
	put_node(fx, 1, "", 1024, 10, "20 10"); /* free memory changes do not count */
	assert_int_equal(tiers_discover(fx->root, &b), 0);
	assert_true(tiers_same_nodes(&a, &b));

	/* Hot-add of node 2. */
	put_online(fx, "0-2\n");
	put_node(fx, 0, "0-1", 1024, 1000, "10 20 30");
	put_node(fx, 1, "", 1024, 1024, "20 10 20");
	put_node(fx, 2, "", 1024, 1024, "30 20 10");
	assert_int_equal(tiers_discover(fx->root, &b), 0);
	assert_false(tiers_same_nodes(&a, &b));
	assert_false(tiers_same_nodes(&b, &a));

	/* Hot-remove of node 1: same count as before, different ids. */
	put_online(fx, "0,2\n");
	put_node(fx, 0, "0-1", 1024, 1000, "10 20");
	put_node(fx, 2, "", 1024, 1024, "20 10");
	assert_int_equal(tiers_discover(fx->root, &b), 0);
	assert_int_equal(b.nnodes, a.nnodes);
	assert_false(tiers_same_nodes(&a, &b));

	/* Same ids, but the kernel now tiers them differently. */
	put_online(fx, "0-1\n");
	put_node(fx, 0, "0-1", 1024, 1000, "10 10");
	put_node(fx, 1, "0-1", 1024, 1024, "10 10");
	assert_int_equal(tiers_discover(fx->root, &b), 0);
	assert_false(tiers_same_nodes(&a, &b));
	assert_true(tiers_same_nodes(&b, &b));
}

static void test_describe(void **state)
{
	struct fixture *fx = *state;
	struct tier_topology t;
	char buf[512], small[20];
	int n;

	put_online(fx, "0-2\n");
	put_node(fx, 0, "0-15", 1024, 900, "10 21 24");
	put_node(fx, 1, "16-31", 1024, 1000, "21 10 14");
	put_node(fx, 2, "", 2048, 2048, "24 14 10");
	put_huge(fx, 2, 2048, 16, 12);
	assert_int_equal(tiers_discover(fx->root, &t), 0);
	n = tiers_describe(&t, buf, sizeof(buf));
	assert_int_equal(n, (int)strlen(buf));
	assert_string_equal(buf,
			    "tier 0: node 0 (cpus, 1024 MiB, 900 MiB free), node 1 (cpus, 1024 MiB, "
			    "1000 MiB free)\n"
			    "tier 1: node 2 (no cpus, distance 14, 2048 MiB, 2048 MiB free, "
			    "2M pages 12/16 free)\n");

	assert_int_equal(tiers_describe(&t, small, sizeof(small)), -ENOBUFS);
	assert_int_equal(strlen(small), sizeof(small) - 1);
	assert_memory_equal(small, buf, sizeof(small) - 1);
	assert_int_equal(tiers_describe(&t, buf, (size_t)n), -ENOBUFS); /* no room for the NUL */
	assert_int_equal(tiers_describe(&t, buf, (size_t)n + 1), n);
	assert_int_equal(tiers_describe(&t, buf, 0), -EINVAL);
}

/* This machine: whatever it has, discovery must work and the CPU nodes must be tier 0. */
static void test_real_sysfs(void **state)
{
	struct tier_topology t, again;
	const struct tier_node *n0;
	char buf[4096];
	int r;

	(void)state;
	if (access("/sys/devices/system/node/online", R_OK) != 0)
		skip(); /* kernel without NUMA sysfs */
	r = tiers_discover("/sys", &t);
	assert_int_equal(r, 0);
	assert_true(t.nnodes >= 1);
	assert_true(t.ntiers >= 1);
	n0 = tiers_node(&t, 0);
	assert_non_null(n0);
	assert_int_equal(n0->tier, 0);
	for (unsigned i = 0; i < t.nnodes; i++) {
		assert_true(t.nodes[i].total_bytes > 0);
		assert_true(t.nodes[i].free_bytes <= t.nodes[i].total_bytes);
		if (t.nodes[i].has_cpus && !t.from_memory_tiering)
			assert_int_equal(t.nodes[i].tier, 0);
	}
	assert_int_equal(tiers_refresh("/sys", &t), 0);
	assert_int_equal(tiers_discover("/sys", &again), 0);
	assert_true(tiers_same_nodes(&t, &again));
	assert_true(tiers_describe(&t, buf, sizeof(buf)) > 0);
	print_message("this machine (%s):\n%s", t.from_memory_tiering ? "memory_tiering" : "distances",
		      buf);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(test_single_node),
		T(test_two_node_guest),
		T(test_three_node_guest),
		T(test_two_sockets_cxl),
		T(test_memory_tiering_separates),
		T(test_memory_tiering_fallback),
		T(test_online_gaps),
		T(test_memoryless_cpu_node),
		T(test_malformed),
		T(test_refresh),
		T(test_refresh_memory_offline),
		T(test_same_nodes),
		T(test_describe),
		cmocka_unit_test(test_real_sysfs),
	};
#undef T

	return cmocka_run_group_tests_name("NUMA tier discovery", tests, NULL, NULL);
}
