/* SPDX-License-Identifier: MIT */
/*
 * A node that goes away and comes back (multi-node guest of tests/vm/): while tierd runs with a
 * segment's pages on a slow node R and demotes to it, the test takes every memory block of R
 * offline from inside the guest (the kernel migrates R's pages elsewhere; R stays an online
 * node with MemTotal 0). tierd must notice (its status stops listing R), demote to the slow node
 * that is left instead, and keep the fast tier within its budget; the application keeps
 * reading and writing its hot set and loses nothing. Then R's blocks come back online: tierd
 * must list R again and demote to it again.
 *
 * Needs a memory-only node all of whose blocks are in ZONE_MOVABLE: boot memory cannot be
 * emptied (the node's memmap and per-node kernel data live in it), so make check-vm boots the
 * 3-node guest with tests/vm/run-vm.sh --hotplug-last, whose last node is a hot-plugged DIMM.
 * Also needs another memory-only node to be left: see skip_reason(). Skips otherwise.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <numa.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"
#include "tierd/tier.h"
#include "vmlib.h"

#define MiB (UINT64_C(1) << 20)
#define BUDGET_MIB 6     /* fast-tier budget: room for ~1.5 hot sets, so hot set moves demote */
#define MAX_BLOCKS 256
#define BLOCK_WRITE_S 60 /* one block's offline/online write; the kernel retries until a signal */
#define BLOCK_TRIES_MS 120000u
#define NOTICE_MS 30000u   /* tierd re-reads the topology every migration pass (~0.1 s) */
#define CONVERGE_MS 90000u /* TCG is slow and the host noisy: generous, the actual time is shown */

static char sock[128];
static pid_t tierd = -1;
static int gone = -1, other = -1; /* R, and the slow node left while R is away */
static int blocks[MAX_BLOCKS];
static unsigned nblocks;
static bool offlined; /* some of R's blocks may be offline: put them back in teardown */
static const char *skip_why;

static void on_alarm(int sig)
{
	(void)sig; /* only there to interrupt the sysfs write */
}

static bool read_block_file(int block, const char *file, char *buf, size_t len)
{
	char path[96];

	snprintf(path, sizeof(path), "/sys/devices/system/memory/memory%d/%s", block, file);
	return read_text(path, buf, len) > 0;
}

/* R's memory blocks, from the memoryN links in its node directory; true when there is at least
 * one and all are online in ZONE_MOVABLE (then nothing unmovable can keep them from going). */
static bool movable_blocks(int node)
{
	char path[64], buf[64];
	struct dirent *de;
	bool ok = true;
	DIR *d;

	snprintf(path, sizeof(path), "/sys/devices/system/node/node%d", node);
	d = opendir(path);
	if (!d)
		return false;
	nblocks = 0;
	while ((de = readdir(d))) {
		int id;
		char end;

		if (sscanf(de->d_name, "memory%d%c", &id, &end) != 1)
			continue;
		if (nblocks == MAX_BLOCKS ||
		    !read_block_file(id, "state", buf, sizeof(buf)) || strcmp(buf, "online\n") != 0 ||
		    !read_block_file(id, "valid_zones", buf, sizeof(buf)) || strcmp(buf, "Movable\n") != 0)
			ok = false;
		else
			blocks[nblocks++] = id;
	}
	closedir(d);
	return ok && nblocks > 0;
}

/* Writes `state` ("offline", "online_movable") to one block, retrying while the kernel says
 * the block is busy (pages being migrated by tierd or pinned for a moment). A block already
 * there is left alone: the kernel refuses (-EINVAL) to online an online block. */
static int set_block(int block, const char *state)
{
	char path[96], now[32];
	uint64_t t0 = mono_usec();
	int err;

	if (read_block_file(block, "state", now, sizeof(now)) &&
	    strcmp(now, strncmp(state, "online", 6) == 0 ? "online\n" : "offline\n") == 0)
		return 0;
	snprintf(path, sizeof(path), "/sys/devices/system/memory/memory%d/state", block);
	for (;;) {
		int fd = open(path, O_WRONLY | O_CLOEXEC);
		ssize_t n;

		if (fd < 0)
			return -errno;
		/* offline_pages() loops until it succeeds or a signal comes: bound it. */
		alarm(BLOCK_WRITE_S);
		n = write(fd, state, strlen(state));
		err = n < 0 ? errno : 0;
		alarm(0);
		close(fd);
		if (!err)
			return 0;
		if ((err != EBUSY && err != EAGAIN) || mono_usec() - t0 > (uint64_t)BLOCK_TRIES_MS * 1000)
			return -err;
		msleep(100);
	}
}

static int set_node_blocks(const char *state, double *secs)
{
	uint64_t t0 = mono_usec();

	for (unsigned i = 0; i < nblocks; i++) {
		int r = set_block(blocks[i], state);

		if (r < 0) {
			print_message("memory%d → %s: %s\n", blocks[i], state, strerror(-r));
			return r;
		}
	}
	*secs = (double)(mono_usec() - t0) / 1e6;
	return 0;
}

/* The reason this guest cannot run the test, or NULL (and gone/other set). */
static const char *skip_reason(void)
{
	int nslow = 0;

	if (numa_available() < 0 || numa_num_configured_nodes() < 2)
		return "one NUMA node";
	for (int n = 1; n <= numa_max_node(); n++) {
		if (vm_node_has_cpus(n) || vm_node_meminfo(n, "MemTotal") <= 0)
			continue;
		nslow++;
		if (gone < 0 && movable_blocks(n))
			gone = n;
	}
	if (gone < 0)
		return "no memory-only node has only ZONE_MOVABLE blocks (tests/vm/run-vm.sh "
		       "--hotplug-last makes one)";
	/*
	 * With R gone the only slow node, tierd is down to one tier and track-only, and
	 * manager_placement() (daemon/placement.c) returns before it re-reads the topology when
	 * there is one tier: it would never see R come back. Needs another slow node until that
	 * changes.
	 */
	if (nslow < 2)
		return "no second memory-only node: with one tier left tierd stops re-reading the "
		       "topology (placement.c), so it could not see the node return";
	for (int n = 1; n <= numa_max_node(); n++)
		if (n != gone && !vm_node_has_cpus(n) && vm_node_meminfo(n, "MemTotal") > 0 &&
		    (other < 0 || numa_distance(0, n) < numa_distance(0, other)))
			other = n;
	return NULL;
}

static int group_setup(void **state)
{
	struct sigaction sa = { .sa_handler = on_alarm }; /* no SA_RESTART: the write fails EINTR */

	(void)state;
	skip_why = skip_reason();
	if (skip_why)
		return 0;
	sigaction(SIGALRM, &sa, NULL);
	snprintf(sock, sizeof(sock), "%s/tierd.sock", harness_dir());
	tierd = daemon_start(sock, "--epoch-ms", "50", "--migrate-every", "2", "--fast-budget-mib",
			     "6", "--reserve-mib", "16", NULL);
	return tierd > 0 ? 0 : -1;
}

static int group_teardown(void **state)
{
	double secs;

	(void)state;
	if (offlined && set_node_blocks("online_movable", &secs) < 0)
		fprintf(stderr, "node %d: could not online its memory again\n", gone);
	if (tierd > 0)
		daemon_stop(tierd);
	harness_cleanup();
	return 0;
}

/* tierd's view: memory nodes, tiers, and whether the first segment's pages_on_node lists
 * `node`. False when the status cannot be read or lists no segment (the client lets go of the
 * segment and attaches again when tierd is slow to answer: then there is nothing to look at). */
static bool tierd_view(int node, long long *nnodes, long long *ntiers, bool *lists)
{
	char js[16384], key[16];
	const char *p, *end;

	if (status_fetch(sock, js, sizeof(js)) <= 0)
		return false;
	*nnodes = json_int(js, NULL, "numa_nodes");
	*ntiers = json_int(js, NULL, "tiers");
	p = strstr(js, "\"pages_on_node\":{");
	end = p ? strchr(p, '}') : NULL;
	if (!end)
		return false;
	snprintf(key, sizeof(key), "\"%d\":", node);
	*lists = (p = strstr(p, key)) && p < end;
	return true;
}

/* Waits until tierd reports `want` memory nodes and (not) lists `node`; returns seconds taken
 * (-1 on timeout) and what tierd reported last in *nnodes, *ntiers. */
static double wait_tierd(int node, long long want, bool listed, long long *nnodes, long long *ntiers)
{
	uint64_t t0 = mono_usec();
	bool lists = !listed;

	*nnodes = *ntiers = -1;
	do {
		if (tierd_view(node, nnodes, ntiers, &lists) && *nnodes == want && lists == listed)
			return (double)(mono_usec() - t0) / 1e6;
		msleep(50);
	} while (mono_usec() - t0 < (uint64_t)NOTICE_MS * 1000);
	print_message("tierd still reports %lld nodes, node %d %slisted\n", *nnodes, node,
		      lists ? "" : "not ");
	return -1;
}

/* Waits until the tracked memory on node 0 is within the budget; returns its share of it. */
static double wait_within_budget(struct vm_work *w)
{
	uint64_t t0 = mono_usec(), budget = BUDGET_MIB * MiB, used;

	for (;;) {
		used = (uint64_t)(vm_share_on(w->fd, w->page_size, 0, w->npages, 0) *
				  (double)(w->npages * w->page_size));
		if (used <= budget + budget / 100 || mono_usec() - t0 > (uint64_t)CONVERGE_MS * 1000)
			break;
		msleep(200);
	}
	print_message("tracked memory on node 0: %.1f MiB (budget %d MiB) after %.1f s\n",
		      (double)used / (double)MiB, BUDGET_MIB, (double)(mono_usec() - t0) / 1e6);
	return (double)used / (double)budget;
}

/* Where the pages of an old hot set [lo, lo + n) went once it went cold, against `before`
 * (counts taken while it was hot): *moved gets the share of it that left node 0, the result is
 * the share of those that arrived on `node` (1 when none left). */
static double demoted_to(const struct vm_work *w, uint64_t lo, uint64_t n,
			 const uint64_t before[VM_MAX_NODES], int node, double *moved)
{
	uint64_t after[VM_MAX_NODES], left, arrived;

	assert_true(vm_where(w->fd, w->page_size, lo, lo + n, after) >= 0);
	left = before[0] > after[0] ? before[0] - after[0] : 0;
	arrived = after[node] > before[node] ? after[node] - before[node] : 0;
	*moved = (double)left / (double)n;
	return left ? (double)arrived / (double)left : 1.0;
}

static void print_where(const struct vm_work *w, const char *when)
{
	uint64_t counts[VM_MAX_NODES];
	long unknown = vm_where(w->fd, w->page_size, 0, w->npages, counts);

	print_message("segment pages %s: node 0 %llu, node %d %llu, node %d %llu, no node %ld\n", when,
		      (unsigned long long)counts[0], gone, (unsigned long long)counts[gone], other,
		      (unsigned long long)counts[other], unknown);
}

static void test_node_goes_and_returns(void **state)
{
	struct tier_options o = { .kind = TIER_SHMEM, .size = 32 * MiB, .socket_path = sock,
				  .name = "offline" };
	struct tier_segment *seg;
	struct vm_work w;
	uint64_t a, b, c, hot, before[VM_MAX_NODES];
	long long nnodes, nnodes_now, ntiers, ntiers_gone, ntiers_back;
	bool lists;
	double off_s, on_s, seen_gone, seen_back, share_a, share_b, share_c, a_moved, a_to_other,
		b_moved, b_to_gone, budget_share;
	char js[16384];

	(void)state;
	if (skip_why) {
		print_message("skipped: %s\n", skip_why);
		skip();
	}
	assert_int_equal(tier_segment_create(&o, &seg), 0);
	vm_work_place(&w, tier_segment_addr(seg), tier_segment_memfd(seg), tier_segment_page_size(seg),
		      tier_segment_size(seg) / tier_segment_page_size(seg), gone);
	assert_int_equal(tier_segment_wait_tracked(seg, 10000), 0);
	hot = 4 * MiB / w.page_size;
	a = w.npages / 5;
	b = w.npages * 3 / 5;
	c = w.npages * 4 / 5;

	/* Phase 1: R is there; the hot set A is promoted from it. */
	assert_true(tierd_view(gone, &nnodes, &ntiers, &lists));
	vm_work_hot(&w, a, a + hot);
	share_a = vm_wait_share(&w, a, a + hot, 0, 0.95, CONVERGE_MS, NULL);
	print_message("node %d of %lld memory nodes in %lld tiers has %u blocks; the other slow "
		      "node is %d\n", gone, nnodes, ntiers, nblocks, other);
	print_where(&w, "before");

	/* Phase 2: every block of R goes offline, while the app keeps working. */
	offlined = true;
	assert_int_equal(set_node_blocks("offline", &off_s), 0);
	print_message("node %d offline in %.1f s: MemTotal %lld\n", gone, off_s,
		      (long long)vm_node_meminfo(gone, "MemTotal"));
	assert_int_equal(vm_node_meminfo(gone, "MemTotal"), 0);
	print_where(&w, "after offlining");
	seen_gone = wait_tierd(gone, nnodes - 1, false, &nnodes_now, &ntiers_gone);
	print_message("tierd noticed in %.1f s: %lld nodes, %lld tiers\n", seen_gone, nnodes_now,
		      ntiers_gone);
	assert_true(seen_gone >= 0);

	/* The hot set moves to B: making room means demoting A, and the only slow node left
	 * is the other one. */
	assert_true(vm_where(w.fd, w.page_size, a, a + hot, before) >= 0);
	vm_work_hot(&w, b, b + hot);
	share_b = vm_wait_share(&w, b, b + hot, 0, 0.95, CONVERGE_MS, NULL);
	budget_share = wait_within_budget(&w);
	a_to_other = demoted_to(&w, a, hot, before, other, &a_moved);
	print_message("old hot set: %.3f left node 0, %.3f of that to node %d\n", a_moved, a_to_other,
		      other);
	print_where(&w, "with the node gone");
	assert_true(share_a >= 0.95);
	assert_true(share_b >= 0.95);
	assert_true(budget_share <= 1.01);
	/* B fills ~2/3 of the budget: over half of A had to go, and to the node that is left. */
	assert_true(a_moved >= 0.4);
	assert_true(a_to_other >= 0.9);

	/* Phase 3: R comes back; tierd must list it again and demote to it again. */
	assert_int_equal(set_node_blocks("online_movable", &on_s), 0);
	offlined = false;
	print_message("node %d online again in %.1f s: MemTotal %lld MiB\n", gone, on_s,
		      (long long)(vm_node_meminfo(gone, "MemTotal") / (int64_t)MiB));
	seen_back = wait_tierd(gone, nnodes, true, &nnodes_now, &ntiers_back);
	print_message("tierd noticed in %.1f s: %lld nodes, %lld tiers\n", seen_back, nnodes_now,
		      ntiers_back);
	assert_true(seen_back >= 0);
	assert_int_equal(ntiers_back, ntiers);

	/* B goes cold and makes room for C: demoted to R, the nearest slow tier again (R came
	 * back empty, so whatever of B is there, tierd put there). */
	assert_true(vm_where(w.fd, w.page_size, b, b + hot, before) >= 0);
	vm_work_hot(&w, c, c + hot);
	share_c = vm_wait_share(&w, c, c + hot, 0, 0.95, CONVERGE_MS, NULL);
	budget_share = wait_within_budget(&w);
	b_to_gone = demoted_to(&w, b, hot, before, gone, &b_moved);
	print_message("old hot set: %.3f left node 0, %.3f of that to node %d\n", b_moved, b_to_gone,
		      gone);
	print_where(&w, "with the node back");
	assert_int_equal(vm_work_stop(&w), 0);
	assert_true(status_fetch(sock, js, sizeof(js)) > 0);
	print_message("tierd: promoted %lld, demoted %lld; not moved: nomem %lld, busy %lld, "
		      "other %lld; app passes %llu\n",
		      json_int(js, "\"migration\"", "promoted"), json_int(js, "\"migration\"", "demoted"),
		      json_int(js, "\"migration\"", "failed_nomem"),
		      json_int(js, "\"migration\"", "failed_busy"),
		      json_int(js, "\"migration\"", "failed_other"),
		      (unsigned long long)atomic_load(&w.passes));
	assert_true(share_c >= 0.95);
	assert_true(budget_share <= 1.01);
	assert_true(b_moved >= 0.4);
	assert_true(b_to_gone >= 0.9);
	vm_work_verify(&w);
	vm_work_free(&w);
	tier_segment_destroy(seg);
	assert_true(status_wait_no_segments(sock, 10000));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_node_goes_and_returns),
	};

	return cmocka_run_group_tests_name("a node that goes away", tests, group_setup, group_teardown);
}
