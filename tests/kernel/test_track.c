/* SPDX-License-Identifier: MIT */
/*
 * Tracking on the real kernel: a real tierd, real userfaultfd minor faults on shmem and hugetlbfs
 * segments, heat that finds the true hot set, multi-threaded and forked clients, many clients,
 * an unprivileged client (uffd through /dev/userfaultfd), attach-later when tierd starts after
 * the application, and memory released when the application exits.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"
#include "tierd/tier.h"

static char sock[128];
static pid_t tierd = -1;
static bool have_huge;

static int group_setup(void **state)
{
	(void)state;
	snprintf(sock, sizeof(sock), "%s/tierd.sock", harness_dir());
	have_huge = hugepages_reserve(48) == 0;
	/* Short epochs so a test sees many sampling rounds in a second or two. */
	tierd = daemon_start(sock, "--epoch-ms", "50", NULL);
	if (tierd < 0)
		return -1;
	chmod(sock, 0777); /* the unprivileged test connects as nobody */
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	daemon_stop(tierd);
	hugepages_restore();
	harness_cleanup();
	return 0;
}

struct toucher {
	volatile uint8_t *base;
	size_t page_size;
	uint64_t lo, hi; /* hot pages [lo, hi) */
	atomic_bool stop;
	pthread_t th;
};

static void *touch_loop(void *arg)
{
	struct toucher *t = arg;

	while (!atomic_load(&t->stop))
		for (uint64_t p = t->lo; p < t->hi; p++)
			t->base[p * t->page_size + (p % 7) * 64] += 1;
	return NULL;
}

/* Runs a hot set in a thread, then compares tierd's hot pages with it. */
static void check_hot_set(enum tier_kind kind, size_t size, uint64_t lo, uint64_t hi, unsigned ms)
{
	struct tier_options o = { .kind = kind, .size = size, .socket_path = sock, .name = "hot" };
	struct toucher t = { 0 };
	struct tier_segment *seg;
	uint64_t npages, tp = 0, fp = 0, fn = 0, faults = 0;
	uint8_t *bits;
	char js[8192];

	assert_int_equal(tier_segment_create(&o, &seg), 0);
	npages = tier_segment_size(seg) / tier_segment_page_size(seg);
	memset(tier_segment_addr(seg), 0x5a, tier_segment_size(seg));
	assert_int_equal(tier_segment_wait_tracked(seg, 3000), 0);

	t.base = tier_segment_addr(seg);
	t.page_size = tier_segment_page_size(seg);
	t.lo = lo;
	t.hi = hi;
	pthread_create(&t.th, NULL, touch_loop, &t);
	msleep(ms);

	/* The estimate is sampled: regions split and merge as evidence comes, and one straddling
	 * the hot set's edge can score hot for a while. Ask again (up to 5 s more) until it meets
	 * the bounds below; the last answer is what is judged. */
	bits = calloc((npages + 7) / 8, 1);
	assert_non_null(bits);
	for (int tries = 0;; tries++) {
		memset(bits, 0, (npages + 7) / 8);
		assert_int_equal(tier_segment_heat(seg, bits, npages, &faults), 0);
		tp = fp = fn = 0;
		for (uint64_t p = 0; p < npages; p++) {
			bool hot = bits[p / 8] & (1u << (p % 8)), truth = p >= lo && p < hi;

			tp += hot && truth;
			fp += hot && !truth;
			fn += !hot && truth;
		}
		if ((tp >= (hi - lo) * 8 / 10 && fp <= (hi - lo) * 3 / 10 + 1) || tries == 10)
			break;
		msleep(500);
	}
	atomic_store(&t.stop, true);
	pthread_join(t.th, NULL);
	print_message("%s: %llu pages, true hot %llu: found %llu right, %llu wrong, %llu missed; "
		      "%llu faults\n",
		      kind == TIER_HUGETLB ? "hugetlb" : "shmem", (unsigned long long)npages,
		      (unsigned long long)(hi - lo), (unsigned long long)tp, (unsigned long long)fp,
		      (unsigned long long)fn, (unsigned long long)faults);
	assert_true(faults > 0);
	/* Recall and precision of the sampled estimate after a second or two of sampling. */
	assert_true(tp >= (hi - lo) * 8 / 10);
	assert_true(fp <= (hi - lo) * 3 / 10 + 1);

	assert_true(status_fetch(sock, js, sizeof(js)) > 0);
	assert_true(json_int(js, "\"segments\"", "faults") > 0);
	for (uint64_t p = 0; p < npages; p++) /* data intact: every page holds 0x5a + touches */
		if (p < lo || p >= hi)
			assert_int_equal(t.base[p * t.page_size + (p % 7) * 64], 0x5a);
	free(bits);
	tier_segment_destroy(seg);
}

static void test_shmem_hot_set(void **state)
{
	(void)state;
	/* 16 MiB of 4K pages, a 10% hot set in the middle. */
	check_hot_set(TIER_SHMEM, 16 << 20, 1600, 2000, 2500);
}

static void test_hugetlb_hot_set(void **state)
{
	(void)state;
	if (!have_huge)
		skip();
	/* 32 huge pages, 6 hot. */
	check_hot_set(TIER_HUGETLB, 64 << 20, 10, 16, 2000);
}

static int run_client(const char *kind, const char *extra1, const char *extra2, unsigned timeout_ms,
		      char *out, size_t outlen)
{
	char path[256];
	char *argv[20] = { (char *)harness_bin("tests/helpers/tier-client"), "--socket", sock,
			   "--kind", (char *)kind, "--threads", "4", "--mib", "8", "--ms", "1200",
			   "--wait-tracked", "3000" };
	int argc = 13, rc;
	pid_t pid;

	if (extra1)
		argv[argc++] = (char *)extra1;
	if (extra2)
		argv[argc++] = (char *)extra2;
	snprintf(path, sizeof(path), "%s/client.%d.out", harness_dir(), rand());
	pid = spawn_out(argv, path, NULL);
	rc = wait_exit(pid, timeout_ms);
	read_text(path, out, outlen);
	unlink(path);
	if (rc != 0)
		print_message("tier-client %s exited %d:\n%s\n", kind, rc, out);
	return rc;
}

static void test_checksummed_threads(void **state)
{
	char out[4096];

	(void)state;
	assert_int_equal(run_client("shmem", NULL, NULL, 20000, out, sizeof(out)), 0);
	assert_true(kv_int(out, "zaps") > 0);
	assert_int_equal(kv_int(out, "errors"), 0);
	if (have_huge) {
		assert_int_equal(run_client("hugetlb", NULL, NULL, 20000, out, sizeof(out)), 0);
		assert_true(kv_int(out, "zaps") > 0);
	}
}

static void test_forked_children(void **state)
{
	char out[8192];

	(void)state;
	/* Three children fork after the segment is tracked; each must attach on its own. */
	assert_int_equal(run_client("shmem", "--fork", "3", 20000, out, sizeof(out)), 0);
	{
		int children = 0;

		for (const char *p = out; (p = strstr(p, "child pid=")); p++) {
			children++;
			assert_true(kv_int(p - 1, "attaches") >= 1);
		}
		assert_int_equal(children, 3);
	}
	if (have_huge)
		assert_int_equal(run_client("hugetlb", "--fork", "2", 20000, out, sizeof(out)), 0);
	/* The children's first touches are first-touch faults, not heat: tierd counts them apart. */
}

static void test_many_clients(void **state)
{
	enum { N = 24 };
	char *argv[] = { (char *)harness_bin("tests/helpers/tier-client"), "--socket", sock, "--kind",
			 "shmem", "--threads", "1", "--mib", "2", "--ms", "1500", "--wait-tracked",
			 "5000", NULL };
	char path[256], js[16384];
	pid_t pids[N];
	long long clients_seen = 0;

	(void)state;
	snprintf(path, sizeof(path), "%s/many.out", harness_dir());
	for (int i = 0; i < N; i++)
		pids[i] = spawn_out(argv, path, NULL);
	for (int i = 0; i < 20; i++) {
		long long c;

		msleep(50);
		assert_true(status_fetch(sock, js, sizeof(js)) > 0);
		c = json_int(js, NULL, "clients");
		clients_seen = c > clients_seen ? c : clients_seen;
	}
	for (int i = 0; i < N; i++)
		assert_int_equal(wait_exit(pids[i], 30000), 0);
	print_message("at most %lld clients at once\n", clients_seen);
	assert_true(clients_seen >= N / 2);
	/* Everyone left: no segment remains, and only the status query itself is a client. */
	assert_true(status_wait_no_segments(sock, 5000));
	assert_true(status_fetch(sock, js, sizeof(js)) > 0);
	assert_int_equal(json_int(js, NULL, "clients"), 1);
	unlink(path);
}

static void test_unprivileged_client(void **state)
{
	char out[4096], path[256];
	char *argv[] = { "/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
			 (char *)harness_bin("tests/helpers/tier-client"), "--socket", sock, "--kind",
			 "shmem", "--mib", "4", "--ms", "800", "--wait-tracked", "3000", NULL };
	FILE *f = fopen("/proc/sys/vm/unprivileged_userfaultfd", "re");
	int v = -1, rc;

	(void)state;
	if (f) {
		if (fscanf(f, "%d", &v) != 1)
			v = -1;
		fclose(f);
	}
	if (access("/usr/bin/setpriv", X_OK) != 0 || access("/dev/userfaultfd", F_OK) != 0)
		skip();
	snprintf(path, sizeof(path), "%s/nobody.out", harness_dir());
	rc = wait_exit(spawn_out(argv, path, NULL), 20000);
	read_text(path, out, sizeof(out));
	print_message("as nobody (vm.unprivileged_userfaultfd=%d): %s", v, out);
	assert_int_equal(rc, 0);
	assert_int_equal(kv_int(out, "state"), 1);
	assert_true(kv_int(out, "zaps") > 0);
}

static void test_attach_when_tierd_arrives(void **state)
{
	char late[160];
	struct tier_options o = { .kind = TIER_SHMEM, .size = 1 << 20, .socket_path = late };
	struct tier_segment *seg;
	struct tier_info info;
	pid_t d;

	(void)state;
	snprintf(late, sizeof(late), "%s/late.sock", harness_dir());
	assert_int_equal(tier_segment_create(&o, &seg), 0);
	/* No tierd: the memory works, untracked. */
	memset(tier_segment_addr(seg), 1, 1 << 20);
	assert_int_equal(tier_segment_wait_tracked(seg, 200), -ETIMEDOUT);
	tier_segment_info(seg, &info);
	assert_int_equal(info.state, TIER_STATE_UNTRACKED);
	assert_true(info.last_error < 0);
	assert_non_null(strstr(info.last_reason, "cannot connect"));
	/* tierd starts: the segment attaches without the application doing anything. */
	d = daemon_start(late, NULL);
	assert_true(d > 0);
	assert_int_equal(tier_segment_wait_tracked(seg, 5000), 0);
	tier_segment_info(seg, &info);
	assert_int_equal(info.attaches, 1);
	tier_segment_destroy(seg);
	daemon_stop(d);
}

static void test_socket_activation(void **state)
{
	char act[160], log[192], text[4096];
	char *argv[] = { "/usr/bin/systemd-socket-activate", "--seqpacket", "--listen", act,
			 (char *)harness_bin("tierd"), NULL };
	struct tier_options o = { .kind = TIER_SHMEM, .size = 1 << 20, .socket_path = act };
	struct tier_segment *seg;
	pid_t pid;

	(void)state;
	if (access(argv[0], X_OK) != 0)
		skip();
	snprintf(act, sizeof(act), "%s/activated.sock", harness_dir());
	snprintf(log, sizeof(log), "%s/activated.log", harness_dir());
	/* systemd's activation protocol (LISTEN_FDS/LISTEN_PID): tierd starts on the first
	 * connection and serves the socket it was passed instead of binding its own. */
	pid = spawn_out(argv, log, NULL);
	for (int i = 0; i < 200 && access(act, F_OK) != 0; i++)
		msleep(10);
	assert_int_equal(tier_segment_create(&o, &seg), 0);
	assert_int_equal(tier_segment_wait_tracked(seg, 5000), 0);
	tier_segment_destroy(seg);
	kill(pid, SIGTERM);
	assert_true(wait_exit(pid, 5000) >= 0);
	read_text(log, text, sizeof(text));
	assert_non_null(strstr(text, "Using the socket passed by systemd"));
	assert_non_null(strstr(text, "attached shmem segment"));
}

static long free_hugepages(void)
{
	char buf[64];

	if (read_text("/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages", buf, sizeof(buf)) < 0)
		return -1;
	return strtol(buf, NULL, 10);
}

static void test_exit_releases_memory(void **state)
{
	char out[4096];
	long before, after = -1;

	(void)state;
	if (!have_huge)
		skip();
	/* If tierd kept the memfd or its alias after the client left, the huge pages would stay
	 * allocated; they must all come back. */
	before = free_hugepages();
	assert_int_equal(run_client("hugetlb", NULL, NULL, 20000, out, sizeof(out)), 0);
	for (int i = 0; i < 100 && after != before; i++) {
		msleep(20);
		after = free_hugepages();
	}
	assert_int_equal(after, before);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_shmem_hot_set),
		cmocka_unit_test(test_hugetlb_hot_set),
		cmocka_unit_test(test_checksummed_threads),
		cmocka_unit_test(test_forked_children),
		cmocka_unit_test(test_many_clients),
		cmocka_unit_test(test_unprivileged_client),
		cmocka_unit_test(test_attach_when_tierd_arrives),
		cmocka_unit_test(test_exit_releases_memory),
		cmocka_unit_test(test_socket_activation),
	};

	if (geteuid() != 0) {
		fprintf(stderr, "kernel tests need root (huge pages, setpriv, /dev/userfaultfd)\n");
		return 77;
	}
	return cmocka_run_group_tests_name("tracking on the real kernel", tests, group_setup,
					   group_teardown);
}
