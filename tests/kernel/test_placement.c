/* SPDX-License-Identifier: MIT */
/*
 * Placement on this one-node machine: tierd stays track-only on the real topology, and a node
 * that refuses every migration (a fixture topology naming a node 1 the kernel does not have) is
 * handled without errors reaching the application: its checksummed workload runs clean, tierd
 * keeps serving and counts nothing as moved. The real cross-node behaviour is tested in the QEMU
 * guest (tests/vm/test_migrate.c).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"

/* Every move fails; the clients must never notice. `mode` is tierd's --migrate-mode. */
static void refusing_node(const char *mode)
{
	char root[256], sock[256], out[256], text[4096], js[16384];
	char *argv[] = { (char *)harness_bin("tests/helpers/tier-client"), "--socket", sock, "--kind",
			 "shmem", "--threads", "2", "--mib", "16", "--ms", "2500", "--wait-tracked",
			 "3000", NULL };
	pid_t d, c;

	snprintf(root, sizeof(root), "%s/sysfs", harness_dir());
	snprintf(sock, sizeof(sock), "%s/refuse.sock", harness_dir());
	snprintf(out, sizeof(out), "%s/refuse.out", harness_dir());
	harness_fake_two_nodes(root);
	/* A 1 MiB budget: everything tierd tracks is over it, so it keeps trying to demote to a
	 * node 1 that move_pages(2) refuses. */
	d = daemon_start(sock, "--sysfs-root", root, "--epoch-ms", "50", "--migrate-every", "2",
			 "--fast-budget-mib", "1", "--reserve-mib", "0", "--migrate-mode", mode, NULL);
	assert_true(d > 0);
	c = spawn_out(argv, out, NULL);
	assert_int_equal(wait_exit(c, 30000), 0);
	read_text(out, text, sizeof(text));
	print_message("%s", text);
	assert_int_equal(kv_int(text, "errors"), 0);
	assert_int_equal(kv_int(text, "attaches"), 1); /* never dropped */
	assert_int_equal(waitpid(d, NULL, WNOHANG), 0);
	assert_true(status_fetch(sock, js, sizeof(js)) > 0);
	assert_int_equal(json_int(js, NULL, "tiers"), 2);
	assert_int_equal(json_int(js, "\"migration\"", "demoted"), 0);
	assert_int_equal(json_int(js, "\"migration\"", "promoted"), 0);
	if (strcmp(mode, "zap") == 0) {
		/* The zap-then-move path ran: batches zapped the clients' pages (faults on them
		 * were held), moved nothing and let every fault go. */
		assert_true(json_int(js, "\"migration\"", "batches") > 0);
		print_message("batches %lld, faults held %lld\n",
			      json_int(js, "\"migration\"", "batches"),
			      json_int(js, "\"migration\"", "faults_held"));
	}
	daemon_stop(d);
}

static void test_refusing_node_zap(void **state)
{
	(void)state;
	refusing_node("zap");
}

static void test_refusing_node_mapped(void **state)
{
	(void)state;
	refusing_node("mapped");
}

static void test_one_node_track_only(void **state)
{
	char sock[256], js[16384];
	pid_t d;

	(void)state;
	snprintf(sock, sizeof(sock), "%s/one.sock", harness_dir());
	d = daemon_start(sock, NULL);
	assert_true(d > 0);
	assert_true(status_fetch(sock, js, sizeof(js)) > 0);
	if (json_int(js, NULL, "numa_nodes") > 1)
		skip(); /* not a one-node machine */
	assert_int_equal(json_int(js, NULL, "tiers"), 1);
	assert_non_null(strstr(js, "\"enabled\":false"));
	daemon_stop(d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_one_node_track_only),
		cmocka_unit_test(test_refusing_node_zap),
		cmocka_unit_test(test_refusing_node_mapped),
	};

	if (geteuid() != 0) {
		fprintf(stderr, "kernel tests need root\n");
		return 77;
	}
	return cmocka_run_group_tests_name("placement on the host", tests, NULL, harness_group_teardown);
}
