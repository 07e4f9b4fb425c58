/* SPDX-License-Identifier: MIT */
/*
 * Fail-open on the real kernel: whatever happens to tierd, applications keep running with their
 * data intact. tier-client runs a checksummed multi-threaded workload (every access verified,
 * every page verified at the end) and reports its longest single stall.
 *   - tierd killed with SIGKILL while clients fault: they resume, then re-attach to a new tierd;
 *   - tierd SIGSTOPped (hung): the control thread notices missed heartbeats, detaches on its own
 *     side and releases blocked faults; it re-attaches once tierd runs again;
 *   - a client killed mid-fault: tierd keeps serving the others and releases the dead one;
 *   - no tierd at all while the application forks: libtier's retrying control thread never
 *     leaves a child holding a C library lock that fork(2) does not reset;
 *   - UFFDIO_CONTINUE failing in tierd (injected: tests/helpers/fi-preload.c), now and then or
 *     always: clients keep running, their data intact; tierd lets go of a client whose faults it
 *     cannot resolve at all.
 */
#include <errno.h>
#include <libintl.h>
#include <locale.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"
#include "tierd/tier.h"

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

/* tierd with UFFDIO_CONTINUE failing as `spec` says (TIERD_FI); the injected count goes to
 * `report` when it exits. */
static pid_t start_tierd_fi(const char *spec, const char *report)
{
	const char *const vars[] = { "TIERD_FI", spec, "TIERD_FI_REPORT", report, NULL };
	pid_t d;

	harness_fi_env_begin(vars);
	d = start_tierd();
	harness_fi_env_end(vars);
	return d;
}

/* A client of `kind` for 2 s against a tierd whose UFFDIO_CONTINUEs fail as `spec` says: it must
 * exit 0 with no error. Leaves its summary in text, tierd's status in js and the injected count's
 * report in rep; returns tierd's pid. */
static pid_t fi_run(const char *name, const char *spec, const char *kind, char *text, size_t textlen,
		    char *js, size_t jslen, char *rep, size_t replen)
{
	char out[256];
	pid_t d, c;

	snprintf(out, sizeof(out), "%s/fi-%s.out", harness_dir(), name);
	snprintf(rep, replen, "%s/fi-%s.report", harness_dir(), name);
	unlink(out);
	d = start_tierd_fi(spec, rep);
	/* A stall of a second would mean a thread was held. */
	c = start_client(kind, 2000, "1000", "1", out, NULL);
	assert_int_equal(finish(c, out, text, textlen), 0);
	assert_int_equal(kv_int(text, "errors"), 0);
	assert_true(status_fetch(sock, js, jslen) > 0);
	print_message("continue_failed %lld, continue_drops %lld\n",
		      json_int(js, "\"stats\"", "continue_failed"), json_int(js, "\"stats\"", "continue_drops"));
	return d;
}

/* Every 3rd UFFDIO_CONTINUE fails with ENOMEM: the thread is woken, faults again, and the next
 * one maps the page. Nothing reaches the client and tierd keeps it. */
static void test_continue_fails_sometimes(void **state)
{
	char rep[256], text[4096], js[65536];
	pid_t d;

	(void)state;
	d = fi_run("some", "continue:ENOMEM:3", "shmem", text, sizeof(text), js, sizeof(js), rep, sizeof(rep));
	assert_int_equal(kv_int(text, "attaches"), 1);
	assert_int_equal(kv_int(text, "detaches"), 0);
	assert_true(json_int(js, "\"stats\"", "continue_failed") > 0);
	assert_int_equal(json_int(js, "\"stats\"", "continue_drops"), 0);
	assert_int_equal(daemon_stop(d), 0);
	print_message("injected: %lld failed UFFDIO_CONTINUEs\n",
		      harness_fi_injected(rep, "continue"));
	assert_true(harness_fi_injected(rep, "continue") > 0);
}

/* Every UFFDIO_CONTINUE fails: no fault of the client can be resolved. A hugetlb mapping is
 * registered whole, so a closing window maps its zapped pages back with UFFDIO_CONTINUE too, and
 * nothing ever unregisters them: before, a thread that touched one was woken, faulted again and
 * again, forever. tierd now lets go of the client after CONTINUE_MAX_FAILURES in a row; it runs
 * on untracked (and tries again). (Per-window shmem heals by itself when the window closes.) */
static void test_continue_fails_always(void **state)
{
	char rep[256], text[4096], js[65536];
	pid_t d;

	(void)state;
	if (!have_huge)
		skip();
	/* The client may end untracked. */
	d = fi_run("all", "continue:ENOMEM:1", "hugetlb", text, sizeof(text), js, sizeof(js), rep, sizeof(rep));
	assert_true(kv_int(text, "detaches") >= 1);
	assert_true(json_int(js, "\"stats\"", "continue_drops") >= 1);
	assert_int_equal(daemon_stop(d), 0);
	assert_true(harness_fi_injected(rep, "continue") >= 64);
}

/*
 * Each fork below lands while the child's new control thread makes its first attach attempt and
 * fails (connect refused by a socket nobody listens on). The grandchild then does what a
 * PostgreSQL backend does early: bind_textdomain_codeset and setlocale, which take glibc's
 * gettext and locale locks as writers. With strerror(3) in that error path (CI, 2026-11-26: a
 * PostgreSQL child stuck, the server never shut down) 3 % of the grandchildren blocked forever.
 * Returns the number of stuck grandchildren (the first one stops the run).
 */
static int fork_storm(const char *stale, int iters)
{
	struct tier_options o = { .kind = TIER_SHMEM, .size = 1 << 20, .socket_path = stale };
	struct tier_segment *seg;

	setenv("TIERD_CHILD_ATTACH_DELAY_MS", "0", 1);
	setenv("TIERD_QUIET", "1", 1);
	setlocale(LC_ALL, "C.UTF-8");
	if (tier_segment_create(&o, &seg) < 0)
		return -1;
	for (int i = 0; i < iters; i++) {
		pid_t c = fork();
		int st;

		if (c == 0) {
			pid_t g;

			usleep((unsigned)(i % 64)); /* spread the fork over the thread's first steps */
			g = fork();
			if (g == 0) {
				bind_textdomain_codeset("tierd-test", "UTF-8");
				setlocale(LC_COLLATE, "C.UTF-8");
				_exit(0);
			}
			_exit(g > 0 && wait_exit(g, 10000) == 0 ? 0 : 1); /* a deadlock is forever */
		}
		if (c < 0 || waitpid(c, &st, 0) != c || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
			return 1;
	}
	return 0;
}

static void test_fork_while_retrying(void **state)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int s = socket(AF_UNIX, SOCK_SEQPACKET, 0);
	pid_t p;

	(void)state;
	harness_stop_daemons();
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/stale.sock", harness_dir());
	unlink(sa.sun_path);
	assert_true(s >= 0);
	assert_int_equal(bind(s, (struct sockaddr *)&sa, sizeof(sa)), 0);
	close(s); /* the file stays, connect() is refused: a tierd that died */
	p = fork();
	if (p == 0)
		_exit(fork_storm(sa.sun_path, 300) == 0 ? 0 : 1);
	/* wait_exit: the exit code, or negative when it did not end in time. */
	assert_int_equal(wait_exit(p, 60000), 0);
}

/* The same rule, checked on the binaries: neither library imports a function that translates
 * through gettext or takes the locale lock. (printf's %m does too; lib/ does not use it.) */
static void test_fork_safe_imports(void **state)
{
	static const char *const banned[] = { "strerror",  "strerror_r", "strerror_l", "__xpg_strerror_r",
					      "perror",    "strsignal",  "psignal",    "setlocale",
					      "newlocale", "gettext",    "dgettext",   "dcgettext",
					      "gai_strerror", "syslog",  "vsyslog" };
	const char *libs[] = { "libtier.so.1", "libtier-preload.so" };

	(void)state;
	for (size_t l = 0; l < sizeof(libs) / sizeof(libs[0]); l++) {
		char cmd[600], line[256];
		int n = 0;
		FILE *f;

		snprintf(cmd, sizeof(cmd), "nm -D --undefined-only '%s'", harness_bin(libs[l]));
		f = popen(cmd, "r");
		assert_non_null(f);
		while (fgets(line, sizeof(line), f)) {
			char *name = strrchr(line, ' ');

			name = name ? name + 1 : line;
			name[strcspn(name, "@\n")] = '\0';
			n++;
			for (size_t b = 0; b < sizeof(banned) / sizeof(banned[0]); b++)
				if (strcmp(name, banned[b]) == 0)
					fail_msg("%s imports %s", libs[l], name);
		}
		assert_int_equal(pclose(f), 0);
		assert_true(n > 10); /* nm did list the imports */
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_kill9_shmem),       cmocka_unit_test(test_kill9_hugetlb),
		cmocka_unit_test(test_sigstop_shmem),     cmocka_unit_test(test_sigstop_hugetlb),
		cmocka_unit_test(test_tierd_gone_for_good), cmocka_unit_test(test_client_killed_mid_fault),
		cmocka_unit_test(test_fork_while_retrying), cmocka_unit_test(test_fork_safe_imports),
		cmocka_unit_test(test_continue_fails_sometimes), cmocka_unit_test(test_continue_fails_always),
	};

	if (geteuid() != 0) {
		fprintf(stderr, "kernel tests need root\n");
		return 77;
	}
	return cmocka_run_group_tests_name("fail-open", tests, group_setup, group_teardown);
}
