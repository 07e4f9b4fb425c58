/* SPDX-License-Identifier: MIT */
/*
 * The chaos loop with migrations in flight (issue 8, docs/chaos.md "In the multi-node guest"):
 * on the host every move fails (a fixture node), so tierd never dies with real move_pages(2)
 * batches out; here it does. Checksummed tier-client processes on shmem and (when the slow
 * node's pool can be grown) hugetlbfs start with every page on the slow node; their hot sets
 * shift every second and the fast-tier budget is below them, so tierd keeps promoting and
 * demoting. tierd is SIGKILLed, cycle after cycle, at moments chosen to land in a batch:
 *   - batch: right after its status counts a new batch (its zaps out, faults held);
 *   - logged: 0-20 ms after its log says "batch out" (the zap wait or the move itself);
 *   - move: when /proc/PID/syscall shows it inside move_pages (seen only while it sleeps or is
 *     preempted there: tried for a while, then it is killed anyway);
 *   - random: 0-400 ms, mid-fault;
 * and restarted on the same socket. Whether a batch was out when tierd died is read afterwards
 * from its own log (--verbose: "batch out" without its "batch in"), not assumed from the kind.
 * Pass: every client exits 0 with every page verified and on a node (tier-client --node: where=,
 * nonode=0), no access stalled past the bound, the clients re-attached after every restart, at
 * least a quarter of the kills (and one at least) landed with a batch out, and pages moved.
 * CHAOS_VM_CYCLES sets the number of cycles (20 by default); CHAOS_SEED replays a schedule.
 * Skips on a machine with one node.
 */
#include <errno.h>
#include <numa.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cmocka.h>

#include "chaos.h"
#include "harness.h"
#include "vmlib.h"

#define DEFAULT_CYCLES 20u
/* The clients' hang timeout: tierd never hangs here; a held fault lasts a batch's zap wait
 * (200 ms) plus its move (50 ms budget), both slowed by emulation. */
#define HANG_MS 2000u
/* An access may take this much past the hang timeout: the guest is emulated (TCG) on a shared
 * host, where a thread can wait a second for its vCPU. A fault that stays blocked is caught all
 * the same: the client does not finish. */
#define STALL_MARGIN_MS 3000u
#define ATTACH_WAIT_MS 30000u
#define BATCH_WAIT_MS 15000u
#define MOVE_SPIN_MS 3000u
#define EXIT_WAIT_MS 60000u
#define CONVERGE_MS 3000u
#define BUDGET_MIB "4" /* below the hot sets (about 5 MiB of shmem and 4 MiB of huge pages) */
#define HUGE_MIB 16
#define SHIFT_MS "1000"

enum kill_kind { KILL_BATCH, KILL_LOGGED, KILL_MOVE, KILL_RANDOM, NKINDS };
static const char *const kind_name[NKINDS] = {
	[KILL_BATCH] = "after the status counted a new batch",
	[KILL_LOGGED] = "after the log said batch out",
	[KILL_MOVE] = "inside move_pages",
	[KILL_RANDOM] = "at random",
};

static struct {
	int slow_node;
	bool have_huge;
	char conf[256];    /* tierd's config: no eBPF */
	char log[256];     /* the current tierd's log */
	size_t log_seen;   /* bytes of it already looked at (KILL_LOGGED) */
	unsigned ntierd;   /* tierds started */
	long long moved;   /* pages moved, from every tierd's "batch in" lines */
} g = { .slow_node = -1 };

static void start_tierd(void)
{
	snprintf(g.log, sizeof(g.log), "%s/tierd.%u.log", harness_dir(), g.ntierd++);
	unlink(g.log);
	g.log_seen = 0;
	chaos.tierd = daemon_start_out(chaos.sock, g.log, "--config", g.conf, "--verbose", "--epoch-ms", "50",
				       "--migrate-every", "1", "--fast-budget-mib", BUDGET_MIB,
				       "--reserve-mib", "16", NULL);
	if (chaos.tierd <= 0)
		chaos_fail("tierd did not start on %s", chaos.sock);
}

static char logtext[1 << 22];

/* Counts lines containing `what` in text. */
static unsigned count_lines(const char *text, const char *what)
{
	unsigned n = 0;

	for (const char *p = strstr(text, what); p; p = strstr(p + 1, what))
		n++;
	return n;
}

/* Adds up the pages "batch in" lines say moved ("promoted N ... demoted M"). */
static long long moved_in_log(const char *text)
{
	long long sum = 0;

	for (const char *p = strstr(text, "batch in:"); p; p = strstr(p + 1, "batch in:")) {
		const char *u = strstr(p, "promoted "), *d = strstr(p, "demoted ");

		if (u && d) /* both on this line: the next "batch in" comes after them */
			sum += strtoll(u + 9, NULL, 10) + strtoll(d + 8, NULL, 10);
	}
	return sum;
}

/* Reads what the dead tierd logged: whether a batch was out when it died (more "batch out"
 * lines than "batch in" ones), and the pages it moved. */
static bool post_mortem(unsigned *out, unsigned *in, long long *moved)
{
	if (read_text(g.log, logtext, sizeof(logtext)) < 0)
		logtext[0] = '\0';
	*out = count_lines(logtext, "batch out:");
	*in = count_lines(logtext, "batch in:");
	*moved = moved_in_log(logtext);
	return *out > *in;
}

/* Waits until the log shows a "batch out" line it had not shown before. */
static void wait_logged_batch(void)
{
	uint64_t deadline = mono_usec() + (uint64_t)BATCH_WAIT_MS * 1000;

	for (;;) {
		int n = read_text(g.log, logtext, sizeof(logtext));

		if (n > 0 && (size_t)n > g.log_seen) {
			bool found = strstr(logtext + g.log_seen, "batch out:") != NULL;

			/* Keep the last line's start: it may be half written. */
			g.log_seen = (size_t)n > 200 ? (size_t)n - 200 : g.log_seen;
			if (found)
				return;
		}
		if (mono_usec() > deadline)
			chaos_fail("tierd logged no new batch within %u ms", BATCH_WAIT_MS);
		msleep(1);
	}
}

/* Spins until tierd's main thread is seen inside a move_pages call that moves (a target node
 * array: the 4th argument; tierd also asks where pages are, with none), MOVE_SPIN_MS at most.
 * /proc/PID/syscall shows it only while the thread sleeps or waits for a CPU there. */
static bool wait_in_move(void)
{
	uint64_t deadline = mono_usec() + (uint64_t)MOVE_SPIN_MS * 1000;
	char path[64], text[256];

	snprintf(path, sizeof(path), "/proc/%d/syscall", (int)chaos.tierd);
	while (mono_usec() < deadline) {
		unsigned long nr, a[4];

		if (read_text(path, text, sizeof(text)) > 0 &&
		    sscanf(text, "%lu %lx %lx %lx %lx", &nr, &a[0], &a[1], &a[2], &a[3]) == 5 &&
		    nr == SYS_move_pages && a[3] != 0)
			return true;
	}
	return false;
}

static void start_clients(unsigned min_attaches)
{
	static char node[16];
	const char *shmem[] = { "--threads", "2", "--mib", "16", "--hot-pct", "30", "--shift-ms",
				SHIFT_MS, "--node", node, NULL };
	const char *huge[] = { "--threads", "1", "--mib", "16", "--hot-pct", "25", "--shift-ms",
			       SHIFT_MS, "--node", node, NULL };

	snprintf(node, sizeof(node), "%d", g.slow_node);
	chaos.nc = 0;
	chaos_start_client("shmem", HANG_MS, HANG_MS + STALL_MARGIN_MS, min_attaches, shmem);
	if (g.have_huge)
		chaos_start_client("hugetlb", HANG_MS, HANG_MS + STALL_MARGIN_MS, min_attaches, huge);
}

/* Every page of a client verified and on some node: where=N:P,... adds up to its pages. */
static void check_placement(const struct chaos_client *c)
{
	const char *w = strstr(c->report, " where=");
	long long pages = 0, npages = (long long)(strcmp(c->kind, "hugetlb") ? 16 * 256 : HUGE_MIB / 2);

	if (!w || chaos_report_value(c, "nonode") != 0)
		chaos_fail("the %s client did not say where its pages are, or some are on no node",
			   c->kind);
	for (const char *p = w + 7; *p && *p != ' ';) {
		char *end;

		(void)strtol(p, &end, 10); /* the node */
		if (*end != ':')
			break;
		pages += strtoll(end + 1, &end, 10);
		p = *end == ',' ? end + 1 : end;
	}
	if (pages != npages)
		chaos_fail("the %s client's pages: %lld on nodes, %lld in the segment", c->kind, pages,
			   npages);
}

static void test_kill_mid_migration(void **state)
{
	unsigned cycles = chaos_env_unsigned("CHAOS_VM_CYCLES", DEFAULT_CYCLES), count[NKINDS] = { 0 };
	unsigned mid_batch = 0, in_move = 0, out, in;
	double stall = 0, attach_max = 0, ms;
	long long moved, final_moved;
	unsigned *sched;
	uint64_t t0 = mono_usec(), up;

	(void)state;
	if (g.slow_node < 0)
		skip();
	assert_true(cycles > 0);
	chaos_seed();
	chaos.ncycles = cycles;
	g.moved = 0;
	/* The first NKINDS cycles are every kind, in a random order; then the batch-seeking kinds
	 * three times in four. */
	sched = chaos_schedule(cycles, NKINDS);

	start_tierd();
	start_clients(cycles + 1);
	chaos_wait_attached(false, ATTACH_WAIT_MS);
	for (chaos.cycle = 1; chaos.cycle <= cycles; chaos.cycle++) {
		enum kill_kind k = (enum kill_kind)sched[chaos.cycle];
		unsigned delay_ms = 0;
		bool moving = false, out_now;

		msleep(chaos_rnd(200)); /* some work, and passes, under this tierd first */
		switch (k) {
		case KILL_BATCH:
			chaos_wait_batch_start(BATCH_WAIT_MS);
			delay_ms = chaos_rnd(3);
			break;
		case KILL_LOGGED:
			g.log_seen = (size_t)(read_text(g.log, logtext, sizeof(logtext)) > 0
						      ? strlen(logtext) : 0);
			wait_logged_batch();
			delay_ms = chaos_rnd(21);
			break;
		case KILL_MOVE:
			moving = wait_in_move();
			break;
		case KILL_RANDOM:
			delay_ms = chaos_rnd(400);
			break;
		case NKINDS:
			break;
		}
		msleep(delay_ms);
		chaos_kill_tierd();
		count[k]++;
		out_now = post_mortem(&out, &in, &moved);
		mid_batch += out_now;
		in_move += moving;
		g.moved += moved;
		chaos_check_clients_alive();
		up = mono_usec();
		start_tierd();
		up = mono_usec() - up;
		ms = chaos_wait_attached(false, ATTACH_WAIT_MS);
		attach_max = ms > attach_max ? ms : attach_max;
		print_message("cycle %u/%u: SIGKILL %s (+%u ms)%s: %s (%u out, %u in), %lld pages "
			      "moved by it; new tierd up in %llu ms, clients back in %.0f ms\n", chaos.cycle, cycles,
			      kind_name[k], delay_ms, k == KILL_MOVE && !moving ? " (not seen in it)" : "",
			      out_now ? "a batch was out" : "no batch out", out, in, moved,
			      (unsigned long long)up / 1000, ms);
	}
	free(sched);

	/* The last tierd converges: its passes go on while the clients run, then they verify. */
	msleep(CONVERGE_MS);
	final_moved = chaos_status_int("\"migration\"", "promoted") +
		      chaos_status_int("\"migration\"", "demoted");
	chaos_finish_clients(cycles + 1, 0, EXIT_WAIT_MS);
	/* The clients' reports are kept until the next start. */
	for (unsigned i = 0; i < (g.have_huge ? 2u : 1u); i++) {
		double s = chaos_report_value(&chaos.c[i], "max_stall_ms");

		check_placement(&chaos.c[i]);
		stall = s > stall ? s : stall;
	}
	if (!status_wait_no_segments(chaos.sock, 10000))
		chaos_fail("the last tierd still lists segments after the clients left");
	assert_int_equal(daemon_stop(chaos.tierd), 0);
	chaos.tierd = -1;
	(void)post_mortem(&out, &in, &moved);
	g.moved += moved;

	print_message("summary: %u kills in %.1f s (batch %u, logged %u, move %u, random %u); %u with "
		      "a batch out (%u seen inside move_pages); longest stall %.1f ms (bound %u); "
		      "longest re-attach %.0f ms; pages moved %lld in all, %lld by the last tierd\n",
		      cycles, (double)(mono_usec() - t0) / 1e6, count[KILL_BATCH], count[KILL_LOGGED],
		      count[KILL_MOVE], count[KILL_RANDOM], mid_batch, in_move, stall,
		      HANG_MS + STALL_MARGIN_MS, attach_max, g.moved, final_moved);
	if (mid_batch == 0 || mid_batch < cycles / 4)
		chaos_fail("only %u of %u kills landed with a migration batch out: the run did not "
			   "test what it is for", mid_batch, cycles);
	if (g.moved <= 0 || final_moved <= 0)
		chaos_fail("no pages moved (%lld in all, %lld by the last tierd)", g.moved,
			   final_moved);
}

static int group_setup(void **state)
{
	FILE *f;

	(void)state;
	if (numa_available() < 0 || numa_num_configured_nodes() < 2)
		return 0; /* the test skips */
	g.slow_node = numa_max_node();
	snprintf(chaos.sock, sizeof(chaos.sock), "%s/tierd.sock", harness_dir());
	/* No eBPF samplers: loading them took tierd 1-7 s per start in the emulated guest, and the
	 * uffd windows see the accesses that drive the moves. */
	snprintf(g.conf, sizeof(g.conf), "%s/tierd.conf", harness_dir());
	f = fopen(g.conf, "we");
	assert_non_null(f);
	fprintf(f, "[sampling]\nbpf = no\nperf = no\n");
	assert_int_equal(fclose(f), 0);
	/* The huge page client's pages come from the slow node's pool; moving them needs free
	 * memory on node 0, not pool pages there (TESTBED.md). Both pools are put back. */
	vm_pool_save(0);
	g.have_huge = vm_pool_reserve(g.slow_node, HUGE_MIB / 2 + 4) == 0;
	fprintf(stderr, "chaos-vm: slow node %d; %s\n", g.slow_node,
		g.have_huge ? "a shmem and a hugetlb client"
			    : "no 2 MiB pages on it: a shmem client only");
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	chaos_kill_all();
	vm_pools_restore();
	harness_cleanup();
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = { cmocka_unit_test(test_kill_mid_migration) };

	return cmocka_run_group_tests_name("chaos with migrations in flight", tests, group_setup,
					   group_teardown);
}
