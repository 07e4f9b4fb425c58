/* SPDX-License-Identifier: MIT */
/*
 * Fail-open on the real kernel: whatever happens to tierd, applications keep running with their
 * data intact. tier-client runs a checksummed multi-threaded workload (every access verified,
 * every page verified at the end) and reports its longest single stall.
 *   - tierd killed with SIGKILL while clients fault: they resume, then re-attach to a new tierd;
 *   - tierd SIGSTOPped (hung): the control thread notices missed heartbeats, detaches on its own
 *     side and releases blocked faults; it re-attaches once tierd runs again;
 *   - a client killed mid-fault: tierd keeps serving the others and releases the dead one.
 */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"

static char sock[128];
static bool have_huge;

static int group_setup(void **state)
{
	(void)state;
	snprintf(sock, sizeof(sock), "%s/tierd.sock", harness_dir());
	have_huge = hugepages_reserve(40) == 0;
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	hugepages_restore();
	harness_cleanup();
	return 0;
}

/* Fast epochs and many windows: at any moment many pages are zapped and faults are in flight. */
static pid_t start_tierd(void)
{
	pid_t d;

	/* A case that failed left its tierd on the socket: one failure must not fail the rest. */
	harness_stop_daemons();
	d = daemon_start(sock, "--epoch-ms", "20", "--max-windows", "256", NULL);

	assert_true(d > 0);
	return d;
}

static pid_t start_client(const char *kind, unsigned ms, const char *stall_ms, const char *min_att,
			  const char *out, const char *env)
{
	char msbuf[16];
	char *argv[] = { (char *)harness_bin("tests/helpers/tier-client"), "--socket", sock, "--kind",
			 (char *)kind, "--threads", "4", "--mib", "16", "--hot-pct", "30", "--ms", msbuf,
			 "--wait-tracked", "3000", "--max-stall-ms", (char *)stall_ms, "--min-attaches",
			 (char *)min_att, NULL };

	snprintf(msbuf, sizeof(msbuf), "%u", ms);
	return spawn_out(argv, out, env);
}

static int finish(pid_t pid, const char *out, char *text, size_t len)
{
	int rc = wait_exit(pid, 30000);

	read_text(out, text, len);
	print_message("client exit %d: %s", rc, text);
	return rc;
}

static void kill9_case(const char *kind)
{
	char out[256], text[4096];
	pid_t d = start_tierd(), c;

	snprintf(out, sizeof(out), "%s/kill9.%s.out", harness_dir(), kind);
	unlink(out);
	/* A stall of a second would mean a fault stayed blocked on the dead tierd. */
	c = start_client(kind, 3000, "1000", "2", out, NULL);
	msleep(1000);
	kill(d, SIGKILL);
	waitpid(d, NULL, 0);
	msleep(300);
	d = start_tierd(); /* clients come back on their own */
	assert_int_equal(finish(c, out, text, sizeof(text)), 0);
	assert_int_equal(kv_int(text, "errors"), 0);
	assert_true(kv_int(text, "attaches") >= 2);
	assert_int_equal(kv_int(text, "state"), 1);
	daemon_stop(d);
}

static void test_kill9_shmem(void **state)
{
	(void)state;
	kill9_case("shmem");
}

static void test_kill9_hugetlb(void **state)
{
	(void)state;
	if (!have_huge)
		skip();
	kill9_case("hugetlb");
}

static void sigstop_case(const char *kind)
{
	char out[256], text[4096];
	pid_t d = start_tierd(), c;

	snprintf(out, sizeof(out), "%s/stop.%s.out", harness_dir(), kind);
	unlink(out);
	/* Hang timeout 400 ms: a fault blocked on the stopped tierd is released within about
	 * 400 ms + one heartbeat; allow generous slack for this noisy machine. */
	c = start_client(kind, 3500, "1500", "2", out, "TIERD_HANG_TIMEOUT_MS=400");
	msleep(1000);
	kill(d, SIGSTOP);
	msleep(1500);
	kill(d, SIGCONT);
	assert_int_equal(finish(c, out, text, sizeof(text)), 0);
	assert_int_equal(kv_int(text, "errors"), 0);
	assert_true(kv_int(text, "guardian") >= 1);
	assert_true(kv_int(text, "attaches") >= 2); /* re-attached after SIGCONT */
	daemon_stop(d);
}

static void test_sigstop_shmem(void **state)
{
	(void)state;
	sigstop_case("shmem");
}

static void test_sigstop_hugetlb(void **state)
{
	(void)state;
	if (!have_huge)
		skip();
	sigstop_case("hugetlb");
}

static void test_tierd_gone_for_good(void **state)
{
	char out[256], text[4096];
	pid_t d = start_tierd(), c;

	(void)state;
	snprintf(out, sizeof(out), "%s/gone.out", harness_dir());
	unlink(out);
	c = start_client("shmem", 2000, "1000", "1", out, NULL);
	msleep(700);
	kill(d, SIGKILL);
	waitpid(d, NULL, 0);
	assert_int_equal(finish(c, out, text, sizeof(text)), 0);
	assert_int_equal(kv_int(text, "state"), 0); /* untracked, still running */
	assert_int_equal(kv_int(text, "errors"), 0);
}

static void test_client_killed_mid_fault(void **state)
{
	char out[256], vout[256], text[4096], js[8192];
	pid_t d = start_tierd(), c, victims[4];

	(void)state;
	snprintf(out, sizeof(out), "%s/survivor.out", harness_dir());
	snprintf(vout, sizeof(vout), "%s/victim.out", harness_dir());
	unlink(out);
	c = start_client("shmem", 2500, "1000", "1", out, NULL);
	for (int i = 0; i < 4; i++)
		victims[i] = start_client(i % 2 && have_huge ? "hugetlb" : "shmem", 5000, "5000", "1",
					  vout, NULL);
	msleep(800);
	for (int i = 0; i < 4; i++) {
		kill(victims[i], SIGKILL);
		waitpid(victims[i], NULL, 0);
	}
	assert_int_equal(finish(c, out, text, sizeof(text)), 0);
	assert_int_equal(kv_int(text, "attaches"), 1); /* never disturbed */
	/* tierd is alive and holds nothing of the dead clients. */
	assert_int_equal(waitpid(d, NULL, WNOHANG), 0);
	assert_true(status_fetch(sock, js, sizeof(js)) > 0);
	/* tierd sees the deaths as hang-ups, in its own time. */
	assert_true(status_wait_no_segments(sock, 5000));
	daemon_stop(d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_kill9_shmem),       cmocka_unit_test(test_kill9_hugetlb),
		cmocka_unit_test(test_sigstop_shmem),     cmocka_unit_test(test_sigstop_hugetlb),
		cmocka_unit_test(test_tierd_gone_for_good), cmocka_unit_test(test_client_killed_mid_fault),
	};

	if (geteuid() != 0) {
		fprintf(stderr, "kernel tests need root\n");
		return 77;
	}
	return cmocka_run_group_tests_name("fail-open", tests, group_setup, group_teardown);
}
