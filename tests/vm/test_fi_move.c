/* SPDX-License-Identifier: MIT */
/*
 * move_pages(2) failing page by page (multi-node guest of tests/vm/): tierd runs with
 * tests/helpers/libfi.so preloaded and TIERD_FI="move:ERR:3", so every 3rd page of each of its
 * moves stays where it is and comes back with -ERR (the other pages really move). A workload's
 * hot set starts on the slowest node and must still reach node 0 (pages that failed are planned
 * again on later passes), the application must see no error and lose nothing, and tierd must
 * count what was injected, per reason, in its status and its metrics, and keep serving:
 *
 *   EBUSY   migration.failed_busy   tierd_migration_failures_total{reason="busy"}
 *   ENOMEM  migration.failed_nomem  tierd_migration_failures_total{reason="nomem"}
 *   EACCES  migration.move_all_fallback  tierd_migration_move_all_fallback_total: in zap mode
 *           (the default) a page still mapped somewhere is retried at once with
 *           MPOL_MF_MOVE_ALL, which is never injected, so it moves and failed_access stays at
 *           what the kernel itself refused.
 *
 * Each counter rises by at least what libfi reports it injected: by exactly that plus the
 * kernel's own failures of that kind (none expected here). Skips on a machine with one node.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"
#include "tierd/tier.h"
#include "vmlib.h"

#define SEG_MIB 8u
#define HOT_PAGES 512u      /* 2 MiB of 4 KiB pages */
#define CONVERGE_MS 60000u  /* TCG on a loaded host: generous, the test prints the actual time */
/* Without retries a hot set with every 3rd page failing would stop at 2/3 on node 0. */
#define WANT_SHARE 0.95

static int slow_node = -1;

static int group_setup(void **state)
{
	(void)state;
	slow_node = vm_slowest_node(); /* -1: the tests skip */
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	harness_cleanup();
	return 0;
}

/* One injected error and the status key and metric series that must count it. */
struct fi_case {
	const char *err;
	const char *status_key;
	const char *series;
};

static void run_case(const struct fi_case *c)
{
	char sock[160], rep[160], spec[32], js[65536];
	static char metrics[1 << 17];
	const char *const vars[] = { "TIERD_FI", spec, "TIERD_FI_REPORT", rep, NULL };
	struct tier_options o = { .kind = TIER_SHMEM, .size = SEG_MIB << 20, .socket_path = sock,
				  .name = "fi-move" };
	struct tier_segment *seg, *seg2;
	long long counted, series, access, fallback, busy, nomem, injected;
	struct vm_work w;
	double share, secs;
	uint64_t a, t0 = mono_usec();
	pid_t d;

	if (slow_node < 0)
		skip();
	snprintf(sock, sizeof(sock), "%s/fi-%s.sock", harness_dir(), c->err);
	snprintf(rep, sizeof(rep), "%s/fi-%s.report", harness_dir(), c->err);
	snprintf(spec, sizeof(spec), "move:%s:3", c->err);
	unlink(rep);
	harness_fi_env_begin(vars);
	d = daemon_start(sock, "--epoch-ms", "50", "--migrate-every", "2", "--fast-budget-mib", "64",
			 "--reserve-mib", "16", NULL);
	harness_fi_env_end(vars);
	assert_true(d > 0);

	assert_int_equal(tier_segment_create(&o, &seg), 0);
	vm_work_place_seg(&w, seg, slow_node);
	a = w.npages / 4;
	vm_work_hot(&w, a, a + HOT_PAGES);
	share = vm_wait_share(&w, a, a + HOT_PAGES, 0, WANT_SHARE, CONVERGE_MS, &secs);
	assert_int_equal(vm_work_stop(&w), 0); /* the hot loop saw no bad data */
	vm_work_verify(&w);
	vm_work_free(&w);
	tier_segment_destroy(seg);

	/* Once tierd has dropped the segment nothing moves any more: its counters and libfi's
	 * count cover the same calls. */
	assert_true(status_wait_no_segments(sock, 10000));
	/* Still serving: a new client is tracked. */
	o.name = "fi-move-after";
	assert_int_equal(tier_segment_create(&o, &seg2), 0);
	assert_int_equal(tier_segment_wait_tracked(seg2, 10000), 0);
	tier_segment_destroy(seg2);
	assert_true(status_wait_no_segments(sock, 10000));
	assert_int_equal(waitpid(d, NULL, WNOHANG), 0);
	assert_true(status_fetch(sock, js, sizeof(js)) > 0);
	assert_int_equal(harness_tierctl(sock, false, metrics, sizeof(metrics), "metrics", NULL), 0);
	daemon_stop(d);
	injected = harness_fi_injected(rep, "move");
	print_message("%s: the case took %.1f s\n", c->err, (double)(mono_usec() - t0) / 1e6);

	counted = json_int(js, "\"migration\"", c->status_key);
	series = (long long)metrics_sample(metrics, c->series);
	busy = json_int(js, "\"migration\"", "failed_busy");
	nomem = json_int(js, "\"migration\"", "failed_nomem");
	access = json_int(js, "\"migration\"", "failed_access");
	fallback = json_int(js, "\"migration\"", "move_all_fallback");
	print_message("%s: hot set %.3f on node 0 after %.1f s; injected %lld pages; %s %lld, "
		      "metric %lld; promoted %lld, demoted %lld, move_calls %lld, batch_timeouts %lld; "
		      "failed busy %lld nomem %lld access %lld noent %lld other %lld, move_all_fallback "
		      "%lld\n",
		      c->err, share, secs, injected, c->status_key, counted, series,
		      json_int(js, "\"migration\"", "promoted"), json_int(js, "\"migration\"", "demoted"),
		      json_int(js, "\"migration\"", "move_calls"),
		      json_int(js, "\"migration\"", "batch_timeouts"), busy, nomem, access,
		      json_int(js, "\"migration\"", "failed_noent"),
		      json_int(js, "\"migration\"", "failed_other"), fallback);
	assert_true(share >= WANT_SHARE); /* the failed pages were moved on later passes */
	assert_true(injected > 0);
	assert_true(counted >= injected);
	assert_true(series == counted);
	if (!strcmp(c->err, "EACCES")) {
		/* Every refused page went to the fallback and moved there: none stays failed. */
		assert_int_equal(access, 0);
		assert_true(metrics_sample(metrics, "tierd_migration_failures_total{reason=\"mapped\"}") == 0);
	}
}

static void test_move_ebusy(void **state)
{
	static const struct fi_case c = { "EBUSY", "failed_busy",
					  "tierd_migration_failures_total{reason=\"busy\"}" };

	(void)state;
	run_case(&c);
}

static void test_move_enomem(void **state)
{
	static const struct fi_case c = { "ENOMEM", "failed_nomem",
					  "tierd_migration_failures_total{reason=\"nomem\"}" };

	(void)state;
	run_case(&c);
}

static void test_move_eacces_fallback(void **state)
{
	static const struct fi_case c = { "EACCES", "move_all_fallback",
					  "tierd_migration_move_all_fallback_total" };

	(void)state;
	run_case(&c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_move_ebusy),
		cmocka_unit_test(test_move_enomem),
		cmocka_unit_test(test_move_eacces_fallback),
	};

	return cmocka_run_group_tests_name("move_pages failing page by page (fault injection)", tests,
					   group_setup, group_teardown);
}
