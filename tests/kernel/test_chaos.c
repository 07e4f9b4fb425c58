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

#define MAX_CLIENTS 2

struct client {
	pid_t pid;
	const char *kind;
	char out[256];
	unsigned listed_id; /* tierd's id of its connection when last seen attached */
};

static struct {
	char sock[128], conf[256], sysfs[256];
	bool have_huge;
	unsigned seed, cycle, ncycles;
	uint64_t rng;
	struct client c[MAX_CLIENTS];
	unsigned nc;
	pid_t tierd;
	int fd_baseline;
	unsigned reloads;
} g;

#define chaos_fail(fmt, ...)                                                                   \
	fail_msg("seed %u (CHAOS_SEED=%u replays), %s: " fmt, g.seed, g.seed, where(), ##__VA_ARGS__)

/* "cycle 3/10", or the phase around the cycles, for failure messages. */
static const char *where(void)
{
	static char buf[48];

	if (g.cycle == 0)
		return "before the first cycle";
	if (g.cycle > g.ncycles)
		snprintf(buf, sizeof(buf), "after the last of %u cycles", g.ncycles);
	else
		snprintf(buf, sizeof(buf), "cycle %u/%u", g.cycle, g.ncycles);
	return buf;
}

static unsigned env_unsigned(const char *name, unsigned def)
{
	const char *v = getenv(name);

	return v && *v ? (unsigned)strtoul(v, NULL, 0) : def;
}

static unsigned rnd(unsigned n)
{
	g.rng ^= g.rng << 13;
	g.rng ^= g.rng >> 7;
	g.rng ^= g.rng << 17;
	return n ? (unsigned)(g.rng % n) : 0;
}

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
	pid_t d = daemon_start(g.sock, "--config", g.conf, "--sysfs-root", g.sysfs, "--epoch-ms",
			       "20", "--migrate-every", "1", "--fast-budget-mib", "1", "--reserve-mib",
			       "0", "--max-windows", "64", NULL);

	if (d <= 0)
		chaos_fail("tierd did not start on %s", g.sock);
	return d;
}

static void kill_tierd(void)
{
	int rc;

	kill(g.tierd, SIGKILL); /* a stopped tierd dies of it too */
	rc = wait_exit(g.tierd, 5000);
	if (rc != 128 + SIGKILL)
		chaos_fail("tierd %d ended with status %d, not of our SIGKILL: did it die on its own?",
			   (int)g.tierd, rc);
	g.tierd = -1;
}

/* ---- clients ------------------------------------------------------------------------------- */

static void start_client(const char *kind, unsigned hang_ms, unsigned min_attaches)
{
	static char env[64], stall[16], att[16];
	struct client *c = &g.c[g.nc];
	/* --ms: longer than any run; the test ends it with SIGUSR1 once its cycles are done. */
	char *argv[] = { (char *)harness_bin("tests/helpers/tier-client"), "--socket", g.sock,
			 "--kind", (char *)kind, "--threads", "2", "--mib",
			 strcmp(kind, "hugetlb") ? "16" : "32", "--hot-pct", "30", "--ms", "3600000",
			 "--max-stall-ms", stall, "--min-attaches", att, NULL };

	snprintf(env, sizeof(env), "TIERD_HANG_TIMEOUT_MS=%u", hang_ms);
	snprintf(stall, sizeof(stall), "%u", hang_ms + STALL_MARGIN_MS);
	snprintf(att, sizeof(att), "%u", min_attaches);
	c->kind = kind;
	c->listed_id = 0;
	snprintf(c->out, sizeof(c->out), "%s/chaos.%s.out", harness_dir(), kind);
	unlink(c->out);
	c->pid = spawn_out(argv, c->out, env);
	if (c->pid <= 0)
		chaos_fail("cannot start the %s client", kind);
	g.nc++;
}

static void start_clients(unsigned hang_ms, unsigned min_attaches)
{
	g.nc = 0;
	start_client("shmem", hang_ms, min_attaches);
	if (g.have_huge)
		start_client("hugetlb", hang_ms, min_attaches);
}

/* The last len-1 bytes of a client's output: libtier says something at every restart, so a long
 * run writes tens of KB before tier-client's closing report. Returns the length read. */
static int read_tail(const char *path, char *buf, size_t len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n, total = 0;
	off_t size;

	buf[0] = '\0';
	if (fd < 0)
		return -errno;
	size = lseek(fd, 0, SEEK_END);
	(void)lseek(fd, size > (off_t)len - 1 ? size - ((off_t)len - 1) : 0, SEEK_SET);
	while ((size_t)total + 1 < len && (n = read(fd, buf + total, len - 1 - (size_t)total)) > 0)
		total += n;
	close(fd);
	buf[total] = '\0';
	return (int)total;
}

/* What a client said last (libtier's notices, tier-client's stall reports): the story of a client
 * that did not come back. Printed whole: print_message() cuts at 1 KiB. */
static void dump_client(const struct client *c)
{
	char text[4096];

	read_tail(c->out, text, sizeof(text));
	printf("---- the %s client (pid %d), the end of its output:\n%s----\n", c->kind, (int)c->pid,
	       text);
	fflush(stdout);
}

static void dump_clients(void)
{
	for (unsigned i = 0; i < g.nc; i++)
		dump_client(&g.c[i]);
}

/* A client that exited before the end lost its workload: say why, with its own words. */
static void check_clients_alive(void)
{
	for (unsigned i = 0; i < g.nc; i++) {
		int st;

		if (waitpid(g.c[i].pid, &st, WNOHANG) == g.c[i].pid) {
			dump_client(&g.c[i]);
			g.c[i].pid = -1;
			chaos_fail("the %s client exited early (status 0x%x; its output above)",
				   g.c[i].kind, st);
		}
	}
}

/* Looks for the client in tierd's client_list: its connection id when it has an attachment
 * there whose id differs from `not_id`, 0 otherwise. */
static unsigned listed_attached(const char *js, pid_t pid, unsigned not_id)
{
	const char *p = strstr(js, "\"client_list\":[");

	for (p = p ? strstr(p, "{\"id\":") : NULL; p; p = strstr(p + 1, "{\"id\":")) {
		unsigned id, uid, natt;
		int cpid;

		if (sscanf(p, "{\"id\":%u,\"pid\":%d,\"uid\":%u,\"attachments\":%u", &id, &cpid, &uid,
			   &natt) == 4 &&
		    cpid == pid && natt >= 1 && id != not_id)
			return id;
	}
	return 0;
}

/* Polls tierd's status until every client is attached; with `fresh`, through a connection other
 * than the one it had (tierd's connection ids only grow): a continued tierd may still list the
 * old connection until it has read its hang-up. */
static void wait_attached(bool fresh)
{
	uint64_t t0 = mono_usec(), deadline = t0 + (uint64_t)ATTACH_WAIT_MS * 1000;
	static char js[65536];
	unsigned done = 0;

	while (done != g.nc) {
		done = 0;
		check_clients_alive();
		if (status_fetch(g.sock, js, sizeof(js)) > 0) {
			for (unsigned i = 0; i < g.nc; i++)
				done += listed_attached(js, g.c[i].pid,
							fresh ? g.c[i].listed_id : 0) != 0;
		}
		if (done == g.nc)
			break;
		if (mono_usec() > deadline) {
			dump_clients();
			chaos_fail("%u of %u clients re-attached within %u ms (their output above)",
				   done, g.nc, ATTACH_WAIT_MS);
		}
		msleep(10);
	}
	/* Remember the connections now listed, for the next `fresh` wait. */
	for (unsigned i = 0; i < g.nc; i++)
		g.c[i].listed_id = listed_attached(js, g.c[i].pid, fresh ? g.c[i].listed_id : 0);
	print_message("  clients attached after %.0f ms (at %llu ms)\n",
		      (double)(mono_usec() - t0) / 1000.0, (unsigned long long)mono_usec() / 1000);
}

/* Ends the workloads (SIGUSR1), waits for each to verify its pages and checks its report. */
static void finish_clients(unsigned min_attaches, unsigned min_guardian)
{
	static char text[1 << 16];

	for (unsigned i = 0; i < g.nc; i++)
		kill(g.c[i].pid, SIGUSR1);
	for (unsigned i = 0; i < g.nc; i++) {
		struct client *c = &g.c[i];
		int rc = wait_exit(c->pid, EXIT_WAIT_MS);
		const char *report;

		read_tail(c->out, text, sizeof(text));
		report = strstr(text, "tier-client: pid=");
		if (rc != 0 || !report)
			dump_client(c);
		c->pid = -1;
		if (rc == -ETIMEDOUT)
			chaos_fail("the %s client hung: not done %u ms after SIGUSR1", c->kind,
				   EXIT_WAIT_MS);
		if (rc != 0)
			chaos_fail("the %s client exited %d (1 data error, 4 too few attaches, 5 stalled "
				   "past the bound; its output above)", c->kind, rc);
		if (!report)
			chaos_fail("the %s client exited 0 without its report", c->kind);
		print_message("%s client: %s", c->kind, report);
		if (kv_int(report, "errors") != 0)
			chaos_fail("the %s client saw data errors", c->kind);
		if (kv_int(report, "attaches") < (long long)min_attaches)
			chaos_fail("the %s client attached %lld times, want >= %u", c->kind,
				   kv_int(report, "attaches"), min_attaches);
		if (kv_int(report, "guardian") < (long long)min_guardian)
			chaos_fail("the %s client's guardian let go %lld times, want >= %u", c->kind,
				   kv_int(report, "guardian"), min_guardian);
	}
	g.nc = 0;
}

/* With the clients gone, the last tierd holds what it held before any client came. */
static void check_tierd_idle(void)
{
	uint64_t deadline = mono_usec() + (uint64_t)SETTLE_MS * 1000;
	int n;

	if (!status_wait_no_segments(g.sock, SETTLE_MS))
		chaos_fail("tierd still lists segments %u ms after the clients left", SETTLE_MS);
	/* What is left of the same SETTLE_MS. */
	n = harness_wait_fds(g.tierd, g.fd_baseline,
			     mono_usec() < deadline ? (unsigned)((deadline - mono_usec()) / 1000) : 0);
	if (n != g.fd_baseline)
		chaos_fail("tierd holds %d fds after the clients left, %d before they came", n,
			   g.fd_baseline);
	assert_int_equal(daemon_stop(g.tierd), 0);
	g.tierd = -1;
}

/* ---- setup --------------------------------------------------------------------------------- */

static int group_setup(void **state)
{
	(void)state;
	snprintf(g.sock, sizeof(g.sock), "%s/tierd.sock", harness_dir());
	snprintf(g.conf, sizeof(g.conf), "%s/tierd.conf", harness_dir());
	snprintf(g.sysfs, sizeof(g.sysfs), "%s/sysfs", harness_dir());
	harness_fake_two_nodes(g.sysfs);
	/* 32 MiB of hugetlb client, and room for a few pages held while a killed client's segment
	 * is released. */
	g.have_huge = hugepages_reserve(24) == 0;
	if (!g.have_huge)
		fprintf(stderr, "chaos: no 2 MiB huge pages to reserve: shmem client only\n");
	g.tierd = -1;
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
	const char *s = getenv("CHAOS_SEED");

	(void)state;
	g.seed = s && *s ? (unsigned)strtoul(s, NULL, 0)
			 : (unsigned)(mono_usec() ^ (uint64_t)getpid() << 16 ^ (uint64_t)time(NULL));
	g.rng = (uint64_t)g.seed * 0x9E3779B97F4A7C15ull | 1;
	g.cycle = 0;
	g.nc = 0;
	g.reloads = 0; /* the first reload switches hotness to lru */
	fprintf(stderr, "chaos: seed %u (replay with CHAOS_SEED=%u)\n", g.seed, g.seed);
	write_conf("hotness");
	g.tierd = start_tierd();
	/* The count once it has held still for 100 ms (start-up and status queries come and go). */
	g.fd_baseline = harness_settled_fds(g.tierd, 20, SETTLE_MS);
	return g.fd_baseline > 0 ? 0 : -1;
}

/* A failed case leaves no client or tierd behind for the next one. */
static int case_teardown(void **state)
{
	(void)state;
	for (unsigned i = 0; i < g.nc; i++)
		if (g.c[i].pid > 0) {
			kill(g.c[i].pid, SIGKILL);
			waitpid(g.c[i].pid, NULL, 0);
		}
	g.nc = 0;
	if (g.tierd > 0)
		daemon_stop(g.tierd);
	g.tierd = -1;
	return 0;
}

/* ---- the kill loop ------------------------------------------------------------------------- */

static long long status_int(const char *after, const char *key)
{
	static char js[65536];

	return status_fetch(g.sock, js, sizeof(js)) > 0 ? json_int(js, after, key) : -1;
}

/* Returns once a migration batch started after this call (a pass zapped pages). */
static void wait_batch_start(void)
{
	uint64_t deadline = mono_usec() + (uint64_t)BATCH_WAIT_MS * 1000;
	long long b0 = status_int("\"migration\"", "batches"), b;

	while ((b = status_int("\"migration\"", "batches")) <= b0) {
		if (mono_usec() > deadline)
			chaos_fail("no migration batch started within %u ms (batches %lld)",
				   BATCH_WAIT_MS, b);
		/* No sleep: the kill should land while the batch is out (it waits up to
		 * batch_wait_ms for the zaps), and each status query already takes a round trip. */
	}
}

static void test_kill_loop(void **state)
{
	unsigned cycles = env_unsigned("CHAOS_CYCLES", DEFAULT_KILL_CYCLES), waited = 0;
	unsigned count[NKINDS] = { 0 };
	enum kill_kind *sched;
	uint64_t t0 = mono_usec();

	(void)state;
	if (cycles == 0) {
		print_message("CHAOS_CYCLES=0: no kill loop\n");
		skip();
	}
	g.ncycles = cycles;
	/* The schedule first: --min-attaches must be known when the clients start. The first
	 * NKINDS cycles are every kind in a random order, so even a short run covers them all. */
	sched = calloc(cycles + 2, sizeof(*sched));
	assert_non_null(sched);
	for (unsigned i = 1; i <= cycles; i++)
		sched[i] = (enum kill_kind)(i <= NKINDS ? i - 1 : rnd(NKINDS));
	for (unsigned i = NKINDS < cycles ? NKINDS : cycles; i > 1; i--) {
		unsigned j = 1 + rnd(i);
		enum kill_kind t = sched[i];

		sched[i] = sched[j];
		sched[j] = t;
	}
	/* tierd number i (0: the first) is given time for the clients to attach unless the next
	 * cycle kills it before they can; each such one adds an attach the clients must count. */
	for (unsigned i = 0; i <= cycles; i++)
		waited += i == cycles || sched[i + 1] != KILL_EARLY;

	start_clients(KILL_HANG_MS, waited);
	if (sched[1] != KILL_EARLY)
		wait_attached(false);
	for (g.cycle = 1; g.cycle <= cycles; g.cycle++) {
		enum kill_kind k = sched[g.cycle];
		unsigned delay_ms = 0;

		/* Some work under this tierd first (not before an early kill: the clients would
		 * have re-attached): faults, windows, the pass back-off in different states. */
		if (k != KILL_EARLY)
			msleep(rnd(200));
		switch (k) {
		case KILL_RANDOM:
			delay_ms = rnd(400);
			msleep(delay_ms);
			break;
		case KILL_BATCH:
			wait_batch_start();
			delay_ms = rnd(3);
			msleep(delay_ms);
			break;
		case KILL_RELOAD:
			/* Each reload switches the policy: the reload does real work. */
			write_conf(++g.reloads % 2 ? "lru" : "hotness");
			kill(g.tierd, SIGHUP);
			delay_ms = rnd(20);
			msleep(delay_ms);
			break;
		case KILL_EARLY:
			delay_ms = rnd(50);
			msleep(delay_ms);
			break;
		case NKINDS:
			break;
		}
		count[k]++;
		print_message("cycle %u/%u at %llu ms: SIGKILL %s (+%u ms)\n", g.cycle, cycles,
			      (unsigned long long)mono_usec() / 1000, kind_name[k], delay_ms);
		kill_tierd();
		check_clients_alive();
		g.tierd = start_tierd();
		if (g.cycle == cycles || sched[g.cycle + 1] != KILL_EARLY)
			wait_attached(false);
	}
	print_message("%u cycles in %.1f s (random %u, batch %u, reload %u, early %u); the clients "
		      "must count >= %u attaches\n", cycles, (double)(mono_usec() - t0) / 1e6,
		      count[KILL_RANDOM], count[KILL_BATCH], count[KILL_RELOAD], count[KILL_EARLY],
		      waited);
	free(sched);
	finish_clients(waited, 0);
	check_tierd_idle();
}

/* ---- the SIGSTOP loop ---------------------------------------------------------------------- */

static void test_stop_loop(void **state)
{
	unsigned cycles = env_unsigned("CHAOS_STOP_CYCLES", DEFAULT_STOP_CYCLES), killed = 0;
	uint64_t t0 = mono_usec();

	(void)state;
	if (cycles == 0) {
		print_message("CHAOS_STOP_CYCLES=0: the SIGSTOP loop runs in make chaos\n");
		skip();
	}
	g.ncycles = cycles;
	/* Every cycle ends with the clients attached again: cycles + 1 attaches, and one guardian
	 * release per stop (each outlasts the hang timeout by more than STALL_MARGIN_MS). */
	start_clients(STOP_HANG_MS, cycles + 1);
	wait_attached(false);
	for (g.cycle = 1; g.cycle <= cycles; g.cycle++) {
		unsigned run_ms = 50 + rnd(300);
		unsigned stop_ms = STOP_HANG_MS + STALL_MARGIN_MS + STOP_BEYOND_BOUND_MS +
				   rnd(STOP_EXTRA_MS);
		bool kill_it = rnd(3) == 0;

		msleep(run_ms);
		print_message("cycle %u/%u at %llu ms: SIGSTOP for %u ms, then %s\n", g.cycle, cycles,
			      (unsigned long long)mono_usec() / 1000, stop_ms,
			      kill_it ? "SIGKILL and a new tierd" : "SIGCONT");
		kill(g.tierd, SIGSTOP);
		msleep(stop_ms);
		check_clients_alive();
		if (kill_it) {
			killed++;
			kill_tierd();
			g.tierd = start_tierd();
		} else {
			kill(g.tierd, SIGCONT);
		}
		/* A new tierd numbers its connections from 1 again: any attachment there is new. */
		wait_attached(!kill_it);
	}
	print_message("%u stops in %.1f s (%u ended by SIGKILL)\n", cycles,
		      (double)(mono_usec() - t0) / 1e6, killed);
	finish_clients(cycles + 1, cycles);
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
