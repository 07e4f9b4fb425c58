/* SPDX-License-Identifier: MIT */
/*
 * A client confined by its cpuset (multi-node guest of tests/vm/): tierd moves pages through its
 * own mapping of the memfd, so the kernel checks only tierd's cpuset; a client whose cpuset.mems
 * leaves out the fast node must still never find its memory there. The test process puts itself
 * in a cgroup v2 cpuset whose mems are the slow node only, creates a segment there and works on a
 * hot set that tierd (outside the cpuset) would promote: the hot set must stay on the slow node
 * while tierd counts the held moves (migration.held_mems) and says why (tierctl events). Then the
 * process leaves the cpuset, and the same hot set must reach the fast node (tierd reads the mems
 * again before it moves). Not a byte may be lost. Skips with one node or without the cpuset
 * controller.
 */
#include <errno.h>
#include <fcntl.h>
#include <numa.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"
#include "tierd/tier.h"
#include "vmlib.h"

#define CG_ROOT "/sys/fs/cgroup"
#define CG CG_ROOT "/tierd-test-slow"
#define HOT_PAGES 512u       /* 2 MiB of the 16 MiB segment */
#define HELD_MS 60000u       /* tierd seeing the hot set and holding its promotion (TCG) */
#define HOLD_MS 2000u        /* then the hot set must stay put through ~20 more passes */
#define CONVERGE_MS 90000u

static char sock[128];
static pid_t tierd = -1;
static int slow_node = -1;
static bool mounted, made;

static int write_file(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC), r = 0;

	if (fd < 0)
		return -errno;
	if (write(fd, text, strlen(text)) < 0)
		r = -errno;
	close(fd);
	return r;
}

static bool have_cgroup2(void)
{
	char text[65536];

	return read_text("/proc/self/mountinfo", text, sizeof(text)) > 0 &&
	       strstr(text, " " CG_ROOT " ") && strstr(text, " - cgroup2 ");
}

static int group_setup(void **state)
{
	char text[256];

	(void)state;
	if (numa_available() < 0 || numa_num_configured_nodes() < 2)
		return 0; /* the test skips */
	if (!have_cgroup2()) {
		if (mount("cgroup2", CG_ROOT, "cgroup2", 0, NULL) < 0)
			return 0; /* skips: no cgroup v2 here */
		mounted = true;
	}
	if (read_text(CG_ROOT "/cgroup.controllers", text, sizeof(text)) <= 0 ||
	    !strstr(text, "cpuset") || write_file(CG_ROOT "/cgroup.subtree_control", "+cpuset") < 0)
		return 0;
	if (mkdir(CG, 0755) < 0 && errno != EEXIST)
		return 0;
	made = true;
	slow_node = numa_max_node();
	snprintf(text, sizeof(text), "%d", slow_node);
	if (write_file(CG "/cpuset.mems", text) < 0)
		return -1;
	/* tierd outside the cpuset: it could put the pages anywhere. */
	snprintf(sock, sizeof(sock), "%s/tierd.sock", harness_dir());
	tierd = daemon_start(sock, "--epoch-ms", "50", "--migrate-every", "2", "--reserve-mib", "16",
			     NULL);
	return tierd > 0 ? 0 : -1;
}

static int group_teardown(void **state)
{
	char pid[32];

	(void)state;
	snprintf(pid, sizeof(pid), "%d", (int)getpid());
	(void)write_file(CG_ROOT "/cgroup.procs", pid);
	if (tierd > 0)
		daemon_stop(tierd);
	if (made)
		(void)rmdir(CG);
	if (mounted)
		(void)umount(CG_ROOT);
	harness_cleanup();
	return 0;
}

/* Moves this process into cgroup `dir` and returns its Mems_allowed_list afterwards. */
static void enter(const char *dir, char *mems, size_t len)
{
	char path[128], pid[32], text[4096];
	const char *p;

	snprintf(path, sizeof(path), "%s/cgroup.procs", dir);
	snprintf(pid, sizeof(pid), "%d", (int)getpid());
	assert_int_equal(write_file(path, pid), 0);
	assert_true(read_text("/proc/self/status", text, sizeof(text)) > 0);
	p = strstr(text, "Mems_allowed_list:");
	assert_non_null(p);
	snprintf(mems, len, "%.*s", (int)strcspn(p + 19, "\n"), p + 19);
}

static void test_cpuset_bounds_promotion(void **state)
{
	struct tier_options o = { .kind = TIER_SHMEM, .size = 16u << 20, .socket_path = sock,
				  .name = "cpuset" };
	struct tier_segment *seg;
	struct vm_work w;
	char js[65536], out[65536], mems[64], want[96];
	long long held = 0;
	double share, secs;
	uint64_t lo;

	(void)state;
	if (tierd <= 0) {
		print_message("skipped: needs two nodes and the cgroup v2 cpuset controller\n");
		skip();
	}
	enter(CG, mems, sizeof(mems));
	print_message("in %s: Mems_allowed_list %s\n", CG, mems);
	assert_int_equal(atoi(mems), slow_node);

	assert_int_equal(tier_segment_create(&o, &seg), 0);
	vm_work_place_seg(&w, seg, slow_node);
	lo = w.npages / 4;
	vm_work_hot(&w, lo, lo + HOT_PAGES);

	/* tierd wants the hot set on node 0 and holds the moves back. */
	for (unsigned t = 0; t < HELD_MS && held <= 0; t += 100) {
		msleep(100);
		assert_true(status_fetch(sock, js, sizeof(js)) > 0);
		held = json_int(js, "\"migration\"", "held_mems");
	}
	print_message("held_mems %lld\n", held);
	assert_true(held > 0);
	msleep(HOLD_MS);
	share = vm_share_on(w.fd, w.page_size, lo, lo + HOT_PAGES, 0);
	assert_true(status_fetch(sock, js, sizeof(js)) > 0);
	print_message("hot set on node 0 while confined: %.3f (held_mems %lld, promoted %lld)\n", share,
		      json_int(js, "\"migration\"", "held_mems"),
		      json_int(js, "\"migration\"", "promoted"));
	assert_true(share == 0.0);
	assert_true(vm_share_on(w.fd, w.page_size, 0, w.npages, 0) == 0.0);
	assert_int_equal(harness_tierctl(sock, false, out, sizeof(out), "events", NULL), 0);
	snprintf(want, sizeof(want), "held: node 0 not in the cpuset mems of pid %d (seg ",
		 (int)getpid());
	print_message("%s", strstr(out, "held: ") ? strstr(out, "held: ") : out);
	assert_non_null(strstr(out, want));
	snprintf(want, sizeof(want), ": nodes %d)", slow_node);
	assert_non_null(strstr(out, want));
	assert_int_equal(harness_tierctl(sock, false, out, sizeof(out), "status", NULL), 0);
	assert_non_null(strstr(out, "moves held back by cpusets: "));

	/* Out of the cpuset: the same hot set goes to node 0. */
	enter(CG_ROOT, mems, sizeof(mems));
	print_message("back in %s: Mems_allowed_list %s\n", CG_ROOT, mems);
	share = vm_wait_share(&w, lo, lo + HOT_PAGES, 0, 0.95, CONVERGE_MS, &secs);
	assert_true(share >= 0.95);
	assert_int_equal(vm_work_stop(&w), 0);
	vm_work_verify(&w);
	vm_work_free(&w);
	tier_segment_destroy(seg);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cpuset_bounds_promotion),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
