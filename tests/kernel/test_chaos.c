/* SPDX-License-Identifier: MIT */
/*
 * The chaos loop (docs/chaos.md): checksummed clients on a shmem and a hugetlbfs segment run
 * without a break while tierd is killed and restarted on the same socket, cycle after cycle:
 *   - SIGKILL at a random moment (clients fault all the time: a kill is nearly always mid-fault),
 *     right after a migration batch started (a fixture node 1 that refuses every move, a 1 MiB
 *     fast budget and a pass every 20 ms epoch: tierd zaps and holds batches constantly), right
 *     after SIGHUP (mid-reload, the policy switching), and before the clients re-attached;
 *   - SIGSTOP for longer than the clients' hang timeout, then SIGCONT or SIGKILL.
 * Pass: every client verifies every page and exits 0, no access stalled past the hang timeout
 * plus a margin, the clients re-attached after every restart they were given time for, and the
 * last tierd is back to its idle fd count once they leave.
 *
 * CHAOS_SEED replays a schedule (printed at the start and in every failure); CHAOS_CYCLES and
 * CHAOS_STOP_CYCLES set the number of cycles (make check: 10 and 0; make chaos: 100 and 20).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "chaos.h"
#include "harness.h"

/* make check's defaults: 10 kills take 3-6 s on a 2-CPU machine (4-10 s under ASan). The SIGSTOP
 * loop runs in make chaos only: in about 80 stops here, one fault stayed blocked from 1 s into a
 * stop until SIGCONT although the guardian had let go (docs/chaos.md, open) — a stall that
 * could pass the bound when it starts earlier; make check must not be red by chance. */
#define DEFAULT_KILL_CYCLES 10u
#define DEFAULT_STOP_CYCLES 0u
/* Hang timeout of the clients in the kill loop: tierd never hangs there, so this only bounds
 * how long a fault left blocked by a bug could go unnoticed by the guardian. */
#define KILL_HANG_MS 1000u
/* And in the SIGSTOP loop: short, so that each stop outlasts it quickly. */
#define STOP_HANG_MS 400u
/* A client's longest single access may exceed its hang timeout by this much: the guardian checks
 * once per heartbeat (250 ms), and a loaded CI box or a sanitizer build delays threads by
 * hundreds of ms. A fault that stays blocked is caught at the end all the same (the client
 * hangs). */
#define STALL_MARGIN_MS 1500u
/* A stop outlasts the stall bound (hang timeout + margin) by this much, plus up to STOP_EXTRA_MS
 * at random: a fault the guardian failed to release would stall through the whole stop and show
 * as a stall past the bound; and the guardian must have fired however late its thread ran. */
#define STOP_BEYOND_BOUND_MS 600u
#define STOP_EXTRA_MS 500u
/* Bounded waits: far beyond what a healthy run needs (client back-off tops at 2 s), short
 * enough that a broken run fails instead of reaching tests/run.sh's deadline. */
#define ATTACH_WAIT_MS 15000u
#define BATCH_WAIT_MS 10000u
#define EXIT_WAIT_MS 30000u
#define SETTLE_MS 5000u

enum kill_kind { KILL_RANDOM, KILL_BATCH, KILL_RELOAD, KILL_EARLY, NKINDS };
static const char *const kind_name[NKINDS] = {
	[KILL_RANDOM] = "at random, mid-fault",
	[KILL_BATCH] = "right after a migration batch started",
	[KILL_RELOAD] = "right after SIGHUP (mid-reload)",
	[KILL_EARLY] = "before the clients re-attached",
};

/* What only the host's loop has; the rest is the shared `chaos` (tests/lib/chaos.h). */
static struct {
	char conf[256], sysfs[256];
	bool have_huge;
	int fd_baseline;
	unsigned reloads;
} g;

/* ---- tierd --------------------------------------------------------------------------------- */

static void write_conf(const char *policy)
{
	char tmp[300];
	FILE *f;

	/* Whole files only (rename), as a config manager writes them: a reload never sees half. */
	snprintf(tmp, sizeof(tmp), "%s.tmp", g.conf);
	f = fopen(tmp, "we");
	assert_non_null(f);
	fprintf(f, "[policy]\nname = %s\n", policy);
	assert_int_equal(fclose(f), 0);
	assert_int_equal(rename(tmp, g.conf), 0);
}

/* The fixture's node 1 refuses every move and the 1 MiB budget is always exceeded: with a pass
 * every 20 ms epoch, tierd keeps planning demotions and zapping batches (holding the faults on
 * them) that then move nothing — the zap/hold/release path runs all the time on one node. */
static pid_t start_tierd(void)
{
	pid_t d = daemon_start(chaos.sock, "--config", g.conf, "--sysfs-root", g.sysfs, "--epoch-ms",
			       "20", "--migrate-every", "1", "--fast-budget-mib", "1", "--reserve-mib",
			       "0", "--max-windows", "64", NULL);

	if (d <= 0)
		chaos_fail("tierd did not start on %s", chaos.sock);
	return d;
}

/* ---- clients ------------------------------------------------------------------------------- */

static void start_clients(unsigned hang_ms, unsigned min_attaches)
{
	static const char *const shmem[] = { "--threads", "2", "--mib", "16", "--hot-pct", "30", NULL };
	static const char *const huge[] = { "--threads", "2", "--mib", "32", "--hot-pct", "30", NULL };

	chaos.nc = 0;
	chaos_start_client("shmem", hang_ms, hang_ms + STALL_MARGIN_MS, min_attaches, shmem);
	if (g.have_huge)
		chaos_start_client("hugetlb", hang_ms, hang_ms + STALL_MARGIN_MS, min_attaches, huge);
}

/* With the clients gone, the last tierd holds what it held before any client came. */
static void check_tierd_idle(void)
{
	uint64_t deadline = mono_usec() + (uint64_t)SETTLE_MS * 1000;
	int n;

	if (!status_wait_no_segments(chaos.sock, SETTLE_MS))
		chaos_fail("tierd still lists segments %u ms after the clients left", SETTLE_MS);
	/* What is left of the same SETTLE_MS. */
	n = harness_wait_fds(chaos.tierd, g.fd_baseline,
			     mono_usec() < deadline ? (unsigned)((deadline - mono_usec()) / 1000) : 0);
	if (n != g.fd_baseline)
		chaos_fail("tierd holds %d fds after the clients left, %d before they came", n,
			   g.fd_baseline);
	assert_int_equal(daemon_stop(chaos.tierd), 0);
	chaos.tierd = -1;
}

/* ---- setup --------------------------------------------------------------------------------- */

static int group_setup(void **state)
{
	(void)state;
	snprintf(chaos.sock, sizeof(chaos.sock), "%s/tierd.sock", harness_dir());
	snprintf(g.conf, sizeof(g.conf), "%s/tierd.conf", harness_dir());
	snprintf(g.sysfs, sizeof(g.sysfs), "%s/sysfs", harness_dir());
	harness_fake_two_nodes(g.sysfs);
	/* 32 MiB of hugetlb client, and room for a few pages held while a killed client's segment
	 * is released. */
	g.have_huge = hugepages_reserve(24) == 0;
	if (!g.have_huge)
		fprintf(stderr, "chaos: no 2 MiB huge pages to reserve: shmem client only\n");
	chaos.tierd = -1;
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	hugepages_restore();
	harness_cleanup();
	return 0;
}

/* Seeds the schedule, starts the first tierd and takes its idle fd count. */
static int case_setup(void **state)
{
	(void)state;
	chaos_seed();
	chaos.nc = 0;
	g.reloads = 0; /* the first reload switches hotness to lru */
	write_conf("hotness");
	chaos.tierd = start_tierd();
	/* The count once it has held still for 100 ms (start-up and status queries come and go). */
	g.fd_baseline = harness_settled_fds(chaos.tierd, 20, SETTLE_MS);
	return g.fd_baseline > 0 ? 0 : -1;
}

/* A failed case leaves no client or tierd behind for the next one. */
static int case_teardown(void **state)
{
	(void)state;
	chaos_kill_all();
	return 0;
}

/* ---- the kill loop ------------------------------------------------------------------------- */

static void test_kill_loop(void **state)
{
	unsigned cycles = chaos_env_unsigned("CHAOS_CYCLES", DEFAULT_KILL_CYCLES), waited = 0;
	unsigned count[NKINDS] = { 0 };
	unsigned *sched;
	uint64_t t0 = mono_usec();

	(void)state;
	if (cycles == 0) {
		print_message("CHAOS_CYCLES=0: no kill loop\n");
		skip();
	}
	chaos.ncycles = cycles;
	/* The schedule first: --min-attaches must be known when the clients start. The first
	 * NKINDS cycles are every kind in a random order, so even a short run covers them all. */
	sched = chaos_schedule(cycles, NKINDS);
	/* tierd number i (0: the first) is given time for the clients to attach unless the next
	 * cycle kills it before they can; each such one adds an attach the clients must count. */
	for (unsigned i = 0; i <= cycles; i++)
		waited += i == cycles || sched[i + 1] != KILL_EARLY;

	start_clients(KILL_HANG_MS, waited);
	if (sched[1] != KILL_EARLY)
		chaos_wait_attached(false, ATTACH_WAIT_MS);
	for (chaos.cycle = 1; chaos.cycle <= cycles; chaos.cycle++) {
		enum kill_kind k = (enum kill_kind)sched[chaos.cycle];
		unsigned delay_ms = 0;

		/* Some work under this tierd first (not before an early kill: the clients would
		 * have re-attached): faults, windows, the pass back-off in different states. */
		if (k != KILL_EARLY)
			msleep(chaos_rnd(200));
		switch (k) {
		case KILL_RANDOM:
			delay_ms = chaos_rnd(400);
			msleep(delay_ms);
			break;
		case KILL_BATCH:
			chaos_wait_batch_start(BATCH_WAIT_MS);
			delay_ms = chaos_rnd(3);
			msleep(delay_ms);
			break;
		case KILL_RELOAD:
			/* Each reload switches the policy: the reload does real work. */
			write_conf(++g.reloads % 2 ? "lru" : "hotness");
			kill(chaos.tierd, SIGHUP);
			delay_ms = chaos_rnd(20);
			msleep(delay_ms);
			break;
		case KILL_EARLY:
			delay_ms = chaos_rnd(50);
			msleep(delay_ms);
			break;
		case NKINDS:
			break;
		}
		count[k]++;
		print_message("cycle %u/%u at %llu ms: SIGKILL %s (+%u ms)\n", chaos.cycle, cycles,
			      (unsigned long long)mono_usec() / 1000, kind_name[k], delay_ms);
		chaos_kill_tierd();
		chaos_check_clients_alive();
		chaos.tierd = start_tierd();
		if (chaos.cycle == cycles || sched[chaos.cycle + 1] != KILL_EARLY)
			chaos_wait_attached(false, ATTACH_WAIT_MS);
	}
	print_message("%u cycles in %.1f s (random %u, batch %u, reload %u, early %u); the clients "
		      "must count >= %u attaches\n", cycles, (double)(mono_usec() - t0) / 1e6,
		      count[KILL_RANDOM], count[KILL_BATCH], count[KILL_RELOAD], count[KILL_EARLY],
		      waited);
	free(sched);
	chaos_finish_clients(waited, 0, EXIT_WAIT_MS);
	check_tierd_idle();
}

/* ---- the SIGSTOP loop ---------------------------------------------------------------------- */

static void test_stop_loop(void **state)
{
	unsigned cycles = chaos_env_unsigned("CHAOS_STOP_CYCLES", DEFAULT_STOP_CYCLES), killed = 0;
	uint64_t t0 = mono_usec();

	(void)state;
	if (cycles == 0) {
		print_message("CHAOS_STOP_CYCLES=0: the SIGSTOP loop runs in make chaos\n");
		skip();
	}
	chaos.ncycles = cycles;
	/* Every cycle ends with the clients attached again: cycles + 1 attaches, and one guardian
	 * release per stop (each outlasts the hang timeout by more than STALL_MARGIN_MS). */
	start_clients(STOP_HANG_MS, cycles + 1);
	chaos_wait_attached(false, ATTACH_WAIT_MS);
	for (chaos.cycle = 1; chaos.cycle <= cycles; chaos.cycle++) {
		unsigned run_ms = 50 + chaos_rnd(300);
		unsigned stop_ms = STOP_HANG_MS + STALL_MARGIN_MS + STOP_BEYOND_BOUND_MS +
				   chaos_rnd(STOP_EXTRA_MS);
		bool kill_it = chaos_rnd(3) == 0;

		msleep(run_ms);
		print_message("cycle %u/%u at %llu ms: SIGSTOP for %u ms, then %s\n", chaos.cycle, cycles,
			      (unsigned long long)mono_usec() / 1000, stop_ms,
			      kill_it ? "SIGKILL and a new tierd" : "SIGCONT");
		kill(chaos.tierd, SIGSTOP);
		msleep(stop_ms);
		chaos_check_clients_alive();
		if (kill_it) {
			killed++;
			chaos_kill_tierd();
			chaos.tierd = start_tierd();
		} else {
			kill(chaos.tierd, SIGCONT);
		}
		/* A new tierd numbers its connections from 1 again: any attachment there is new. */
		chaos_wait_attached(!kill_it, ATTACH_WAIT_MS);
	}
	print_message("%u stops in %.1f s (%u ended by SIGKILL)\n", cycles,
		      (double)(mono_usec() - t0) / 1e6, killed);
	chaos_finish_clients(cycles + 1, cycles, EXIT_WAIT_MS);
	check_tierd_idle();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_kill_loop, case_setup, case_teardown),
		cmocka_unit_test_setup_teardown(test_stop_loop, case_setup, case_teardown),
	};

	if (geteuid() != 0) {
		fprintf(stderr, "kernel tests need root\n");
		return 77;
	}
	return cmocka_run_group_tests_name("chaos", tests, group_setup, group_teardown);
}
