/* SPDX-License-Identifier: MIT */
/*
 * The placement policy in the running daemon: switching at run time with tierctl (and the
 * refusals: unknown policy, bad parameter, not root), a module that crashes in decide() (tierd
 * falls back to `none`, says why, and the application never notices), and recording the
 * policy's input with tierctl record / stop.
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
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"
#include "trace.h"

/* harness_tierctl, said in the test's output. */
#define tierctl(sock, nobody, out, len, ...)                                                     \
	({                                                                                       \
		int rc_ = harness_tierctl(sock, nobody, out, len, __VA_ARGS__);                  \
		print_message("tierctl%s -> %d: %s", (nobody) ? " (nobody)" : "", rc_, out);     \
		rc_;                                                                             \
	})

static void policy_of(const char *sock, char *name, size_t len)
{
	char js[65536], *p, *e;

	assert_true(status_fetch(sock, js, sizeof(js)) > 0);
	p = strstr(js, "\"policy\":{\"name\":\"");
	assert_non_null(p);
	p += strlen("\"policy\":{\"name\":\"");
	e = strchr(p, '"');
	snprintf(name, len, "%.*s", (int)(e - p), p);
}

static pid_t client(const char *sock, const char *out, const char *ms)
{
	char *argv[] = { (char *)harness_bin("tests/helpers/tier-client"), "--socket", (char *)sock,
			 "--kind", "shmem", "--threads", "2", "--mib", "16", "--ms", (char *)ms,
			 "--wait-tracked", "3000", NULL };

	return spawn_out(argv, out, NULL);
}

static void test_switch_at_run_time(void **state)
{
	char sock[256], out[4096], name[64], cout[256], text[4096];
	pid_t d, c;

	(void)state;
	snprintf(sock, sizeof(sock), "%s/switch.sock", harness_dir());
	snprintf(cout, sizeof(cout), "%s/switch.client", harness_dir());
	d = daemon_start(sock, "--epoch-ms", "50", NULL);
	assert_true(d > 0);
	c = client(sock, cout, "2500");
	msleep(500);
	policy_of(sock, name, sizeof(name));
	assert_string_equal(name, "hotness");

	assert_int_equal(tierctl(sock, false, out, sizeof(out), "policy", "set", "none", NULL), 0);
	assert_non_null(strstr(out, "policy none running"));
	policy_of(sock, name, sizeof(name));
	assert_string_equal(name, "none");

	/* Refusals leave the running policy in place and say why. */
	assert_int_equal(tierctl(sock, false, out, sizeof(out), "policy", "set", "nonesuch", NULL), 1);
	assert_non_null(strstr(out, "nonesuch"));
	assert_int_equal(tierctl(sock, false, out, sizeof(out), "policy", "set", "hotness",
				 "min_score=2", NULL),
			 1);
	assert_non_null(strstr(out, "parameter min_score=\"2\": expected a number"));
	assert_int_equal(tierctl(sock, false, out, sizeof(out), "policy", "set", "hotness", "oops",
				 NULL),
			 1);
	assert_non_null(strstr(out, "not key=value"));
	if (access("/usr/bin/setpriv", X_OK) == 0) {
		/* Let nobody reach the socket: the refusal must come from tierd. */
		assert_int_equal(chmod(harness_dir(), 0755), 0);
		assert_int_equal(chmod(sock, 0666), 0);
		assert_int_equal(tierctl(sock, true, out, sizeof(out), "policy", "set", "hotness", NULL), 1);
		assert_non_null(strstr(out, "only root may change what tierd does"));
		/* Reading is not changing. */
		assert_int_equal(tierctl(sock, true, out, sizeof(out), "policy", NULL), 0);
		assert_int_equal(chmod(harness_dir(), 0700), 0);
	}
	policy_of(sock, name, sizeof(name));
	assert_string_equal(name, "none");

	assert_int_equal(tierctl(sock, false, out, sizeof(out), "policy", "set", "hotness",
				 "min_score=0.5", NULL),
			 0);
	assert_int_equal(tierctl(sock, false, out, sizeof(out), "--json", "policy", NULL), 0);
	assert_non_null(strstr(out, "\"name\":\"hotness\""));
	assert_non_null(strstr(out, "\"failed\":null"));

	/* The application saw nothing of it; its segment stayed attached throughout. */
	assert_int_equal(wait_exit(c, 30000), 0);
	read_text(cout, text, sizeof(text));
	assert_int_equal(kv_int(text, "errors"), 0);
	assert_int_equal(kv_int(text, "attaches"), 1);
	daemon_stop(d);
}

/* A module whose decide() dereferences NULL, in a root-owned directory: tierd survives it. */
static void test_crashing_module(void **state)
{
	char sock[256], out[4096], dir[64], cmd[1024], js[65536], cout[256], text[4096], name[64];
	pid_t d, c;

	(void)state;
	if (geteuid() != 0)
		skip();
	snprintf(dir, sizeof(dir), "/run/tierd-policyd-test.XXXXXX");
	assert_non_null(mkdtemp(dir));
	chmod(dir, 0755);
	snprintf(cmd, sizeof(cmd), "install -m 0644 %s '%s/hostile.so' && install -m 0644 %s '%s/'",
		 harness_bin("tests/policy/hostile.so"), dir, harness_bin("examples/recency.so"), dir);
	assert_int_equal(system(cmd), 0);
	snprintf(sock, sizeof(sock), "%s/crash.sock", harness_dir());
	snprintf(cout, sizeof(cout), "%s/crash.client", harness_dir());
	d = daemon_start(sock, "--epoch-ms", "50", "--policy-dir", dir, "--policy", "hostile", NULL);
	assert_true(d > 0);
	c = client(sock, cout, "2000");
	msleep(300);
	policy_of(sock, name, sizeof(name));
	assert_string_equal(name, "hostile");

	assert_int_equal(tierctl(sock, false, out, sizeof(out), "policy", "set", "hostile",
				 "mode=crash", NULL),
			 0);
	msleep(300); /* a few epochs: decide() runs each */
	assert_int_equal(waitpid(d, NULL, WNOHANG), 0); /* tierd is alive */
	assert_true(status_fetch(sock, js, sizeof(js)) > 0);
	assert_non_null(strstr(js, "\"name\":\"none\""));
	assert_non_null(strstr(js, "hostile: decide() crashed with SIGSEGV"));

	/* Setting a policy again clears the failure: here the example module, built outside the
	 * tree against <tierd/policy.h> alone, with a parameter. */
	assert_int_equal(tierctl(sock, false, out, sizeof(out), "policy", "set", "recency", "bogus=1",
				 NULL),
			 1);
	assert_int_equal(tierctl(sock, false, out, sizeof(out), "policy", "set", "recency",
				 "window_epochs=4", NULL),
			 0);
	assert_true(status_fetch(sock, js, sizeof(js)) > 0);
	assert_non_null(strstr(js, "\"failed\":null"));
	assert_non_null(strstr(js, "\"name\":\"recency\""));
	msleep(200); /* it decides a few epochs */
	assert_true(status_fetch(sock, js, sizeof(js)) > 0);
	assert_non_null(strstr(js, "\"failed\":null"));

	assert_int_equal(wait_exit(c, 30000), 0);
	read_text(cout, text, sizeof(text));
	assert_int_equal(kv_int(text, "errors"), 0);
	assert_int_equal(kv_int(text, "attaches"), 1);
	daemon_stop(d);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	assert_int_equal(system(cmd), 0);
}

/* tierctl record / stop: the trace holds the segment, fault events, and per epoch a view that
 * ends in DECIDE; with the two-node fixture topology, page nodes too. */
static void test_record(void **state)
{
	char sock[256], out[4096], root[256], trace[256], cout[256], why[256];
	uint64_t nseg = 0, nfault = 0, nepoch = 0, ndecide = 0, nnodes = 0, nregion = 0;
	struct trace_reader *r;
	struct trace_rec rec;
	bool in_view = false;
	pid_t d, c;
	int k;

	(void)state;
	snprintf(root, sizeof(root), "%s/sysfs-rec", harness_dir());
	harness_fake_two_nodes(root);
	snprintf(sock, sizeof(sock), "%s/rec.sock", harness_dir());
	snprintf(trace, sizeof(trace), "%s/rec.trc", harness_dir());
	snprintf(cout, sizeof(cout), "%s/rec.client", harness_dir());
	d = daemon_start(sock, "--epoch-ms", "50", "--sysfs-root", root, "--migrate-every", "2",
			 "--fast-budget-mib", "1", "--reserve-mib", "0", NULL);
	assert_true(d > 0);
	c = client(sock, cout, "2000");
	msleep(200);
	assert_int_equal(tierctl(sock, false, out, sizeof(out), "record", trace, "--max-mib", "16",
				 NULL),
			 0);
	/* One recording at a time; and tierctl never overwrites a file. */
	snprintf(why, sizeof(why), "%s/rec2.trc", harness_dir());
	assert_int_equal(tierctl(sock, false, out, sizeof(out), "record", why, NULL), 1);
	assert_non_null(strstr(out, "already recording"));
	assert_int_equal(tierctl(sock, false, out, sizeof(out), "record", trace, NULL), 1);
	assert_non_null(strstr(out, "File exists"));
	msleep(1000);
	assert_int_equal(tierctl(sock, false, out, sizeof(out), "stop", NULL), 0);
	assert_int_equal(tierctl(sock, false, out, sizeof(out), "stop", NULL), 1);
	assert_non_null(strstr(out, "not recording"));
	assert_int_equal(wait_exit(c, 30000), 0);
	daemon_stop(d);

	assert_int_equal(trace_reader_open(trace, &r, why, sizeof(why)), 0);
	assert_int_equal(trace_reader_header(r)->flavour, TRACE_SAMPLED);
	while ((k = trace_read(r, &rec, why, sizeof(why))) == 1) {
		switch (rec.type) {
		case TREC_SEG:
			nseg++;
			assert_int_equal(rec.b, 4096);
			break;
		case TREC_EVENT:
			assert_false(in_view);
			nfault += rec.u8 == 1; /* TIERD_EV_FAULT */
			break;
		case TREC_EPOCH:
			assert_false(in_view);
			in_view = true;
			nepoch++;
			break;
		case TREC_NODES:
			assert_true(in_view);
			nnodes += rec.b;
			break;
		case TREC_REGION:
			assert_true(in_view);
			nregion++;
			break;
		case TREC_DECIDE:
			assert_true(in_view);
			in_view = false;
			ndecide++;
			break;
		}
	}
	if (k < 0)
		fail_msg("reading the trace: %s", why);
	trace_reader_close(r);
	print_message("trace: %llu segments, %llu faults, %llu epochs, %llu decides, %llu page nodes, "
		      "%llu regions\n", (unsigned long long)nseg, (unsigned long long)nfault,
		      (unsigned long long)nepoch, (unsigned long long)ndecide,
		      (unsigned long long)nnodes, (unsigned long long)nregion);
	assert_int_equal(nseg, 1);
	assert_true(nfault > 0);
	assert_true(nepoch >= 10); /* 1 s of 50 ms epochs, with slack for a busy machine */
	assert_int_equal(nepoch, ndecide);
	assert_true(nnodes > 0);
	assert_true(nregion >= nepoch);
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "we");

	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

/* The policy from the configuration file, its parameters checked by --check-config, and a
 * SIGHUP that changes it (a policy that does not start leaves the running one in place). */
static void test_config_and_reload(void **state)
{
	char sock[256], conf[256], name[64], cmd[1024], out[4096];
	pid_t d;

	(void)state;
	snprintf(sock, sizeof(sock), "%s/conf.sock", harness_dir());
	snprintf(conf, sizeof(conf), "%s/tierd.conf", harness_dir());
	write_file(conf, "[policy]\nname = hotness\n\n[policy.hotness]\nmin_score = 7\n");
	snprintf(cmd, sizeof(cmd), "%s --config %s --check-config >%s/check.out 2>&1", harness_bin("tierd"),
		 conf, harness_dir());
	assert_int_equal(WEXITSTATUS(system(cmd)), 2);
	snprintf(cmd, sizeof(cmd), "%s/check.out", harness_dir());
	read_text(cmd, out, sizeof(out));
	print_message("%s", out);
	assert_non_null(strstr(out, "parameter min_score=\"7\": expected a number"));

	write_file(conf, "[policy]\nname = none\n");
	d = daemon_start(sock, "--config", conf, "--epoch-ms", "50", NULL);
	assert_true(d > 0);
	policy_of(sock, name, sizeof(name));
	assert_string_equal(name, "none");

	write_file(conf, "[policy]\nname = hotness\n\n[policy.hotness]\nmin_score = 0.5\n");
	assert_int_equal(kill(d, SIGHUP), 0);
	msleep(300);
	policy_of(sock, name, sizeof(name));
	assert_string_equal(name, "hotness");

	/* A parameter the policy refuses: the file parses, the policy does not start. */
	write_file(conf, "[policy]\nname = none\n\n[policy.none]\nsurprise = 1\n");
	assert_int_equal(kill(d, SIGHUP), 0);
	msleep(300);
	policy_of(sock, name, sizeof(name));
	assert_string_equal(name, "hotness");
	assert_int_equal(waitpid(d, NULL, WNOHANG), 0);
	daemon_stop(d);
}

/* tierctl events says what was decided, what moved and why not; modes advise and observe stop
 * the moves and say so; release --all lets every client go, and they come back. */
static void test_events_and_modes(void **state)
{
	char sock[256], root[256], cout[256], text[4096], js[65536];
	static char out[1 << 19];
	pid_t d, c;
	/* The client must outlive the seven tierctl runs before release --all and attach again
	 * after it: under ASan on a loaded box those runs took 5.3 s (a 3.5 s client was gone). */
	char *argv[] = { (char *)harness_bin("tests/helpers/tier-client"), "--socket", sock, "--kind",
			 "shmem", "--threads", "2", "--mib", "16", "--ms", "8000", "--wait-tracked",
			 "3000", "--min-attaches", "2", NULL };

	(void)state;
	snprintf(root, sizeof(root), "%s/sysfs-ev", harness_dir());
	harness_fake_two_nodes(root);
	snprintf(sock, sizeof(sock), "%s/ev.sock", harness_dir());
	snprintf(cout, sizeof(cout), "%s/ev.client", harness_dir());
	d = daemon_start(sock, "--epoch-ms", "50", "--sysfs-root", root, "--migrate-every", "2",
			 "--fast-budget-mib", "1", "--reserve-mib", "0", NULL);
	assert_true(d > 0);
	c = spawn_out(argv, cout, NULL);
	msleep(800);
	/* Over its 1 MiB budget, hotness demotes to node 1, which the kernel does not have. */
	assert_int_equal(tierctl(sock, false, out, sizeof(out), "--json", "events", "--count=1000",
				 NULL),
			 0);
	assert_non_null(strstr(out, "\"kind\":\"decided\",\"policy\":\"hotness\""));
	assert_non_null(strstr(out, "\"from\":0,\"to\":1"));
	assert_non_null(strstr(out, "\"kind\":\"moved\""));
	assert_non_null(strstr(out, "move_pages(2) to node 1 failed: No such device"));

	assert_int_equal(tierctl(sock, false, out, sizeof(out), "pause", NULL), 0);
	assert_non_null(strstr(out, "mode advise"));
	msleep(300);
	assert_true(status_fetch(sock, js, sizeof(js)) > 0);
	assert_non_null(strstr(js, "\"mode\":\"advise\""));
	assert_int_equal(tierctl(sock, false, out, sizeof(out), "mode", "observe", NULL), 0);
	msleep(600);
	assert_int_equal(tierctl(sock, false, out, sizeof(out), "--json", "events", "--count=3", NULL), 0);
	assert_non_null(strstr(out, "mode observe: tracking only"));
	assert_int_equal(tierctl(sock, false, out, sizeof(out), "mode", "sideways", NULL), 1);
	assert_non_null(strstr(out, "not enforce, advise or observe"));
	assert_int_equal(tierctl(sock, false, out, sizeof(out), "resume", NULL), 0);
	assert_non_null(strstr(out, "mode enforce"));

	/* Fail open on purpose: the client lets go and attaches again. */
	assert_int_equal(tierctl(sock, false, out, sizeof(out), "release", "--all", NULL), 0);
	assert_non_null(strstr(out, "released 1 client(s)"));
	assert_int_equal(tierctl(sock, false, out, sizeof(out), "release", NULL), 2);
	assert_int_equal(wait_exit(c, 30000), 0);
	read_text(cout, text, sizeof(text));
	print_message("%s", text);
	assert_int_equal(kv_int(text, "errors"), 0);
	assert_true(kv_int(text, "attaches") >= 2);

	/* The table view and the diagnosis bundle. */
	assert_int_equal(tierctl(sock, false, out, sizeof(out), "events", NULL), 0);
	assert_non_null(strstr(out, "DETAIL"));
	assert_int_equal(tierctl(sock, false, out, sizeof(out), "migrations", NULL), 0);
	assert_non_null(strstr(out, "kernel (/proc/vmstat)"));
	assert_int_equal(tierctl(sock, false, out, sizeof(out), "diagnose", NULL), 0);
	assert_non_null(strstr(out, "\"diagnose_version\": 1"));
	assert_non_null(strstr(out, "\"events\": ["));
	daemon_stop(d);
}

/* The same policy object, the same inputs, the same plan: tierd records its policy's input from
 * the start and logs its decisions; tierd-sim replays the trace through the same built-in and
 * must write a byte-identical decision log — with real decisions in it (the fixture topology
 * and a 1 MiB budget make the policy demote every epoch it may). */
static void agree(const char *policy)
{
	char sock[256], root[256], trace[256], dlog[256], slog[256], out[256], cmd[2048];
	char *client[] = { (char *)harness_bin("tests/helpers/tier-client"), "--socket", sock, "--kind",
			   "shmem", "--threads", "2", "--mib", "8", "--ms", "1500", "--wait-tracked",
			   "3000", NULL };
	static char a[1 << 20], b[1 << 20];
	int na, nb, moves = 0;
	pid_t d;

	snprintf(root, sizeof(root), "%s/sysfs-agree", harness_dir());
	harness_fake_two_nodes(root);
	snprintf(sock, sizeof(sock), "%s/agree-%s.sock", harness_dir(), policy);
	snprintf(trace, sizeof(trace), "%s/agree-%s.trc", harness_dir(), policy);
	snprintf(dlog, sizeof(dlog), "%s/agree-%s.tierd", harness_dir(), policy);
	snprintf(slog, sizeof(slog), "%s/agree-%s.sim", harness_dir(), policy);
	snprintf(out, sizeof(out), "%s/agree-%s.out", harness_dir(), policy);
	d = daemon_start(sock, "--epoch-ms", "50", "--sysfs-root", root, "--migrate-every", "2",
			 "--fast-budget-mib", "1", "--reserve-mib", "0", "--policy", policy, "--record",
			 trace, "--decision-log", dlog, NULL);
	assert_true(d > 0);
	assert_int_equal(wait_exit(spawn_out(client, out, NULL), 30000), 0);
	daemon_stop(d); /* closes the trace and the log */

	snprintf(cmd, sizeof(cmd), "%s --trace %s --policy %s --decision-log %s >%s 2>&1",
		 harness_bin("tierd-sim"), trace, policy, slog, out);
	assert_int_equal(WEXITSTATUS(system(cmd)), 0);
	na = read_text(dlog, a, sizeof(a));
	nb = read_text(slog, b, sizeof(b));
	assert_true(na > 0 && na < (int)sizeof(a) - 1);
	for (const char *p = a; (p = strstr(p, "\n- ")); p++)
		moves++;
	print_message("%s: decision logs of %d bytes, %d demotions planned\n", policy, na, moves);
	assert_true(moves > 0);
	assert_int_equal(na, nb);
	assert_memory_equal(a, b, (size_t)na);
}

static void test_daemon_and_sim_agree(void **state)
{
	(void)state;
	agree("hotness");
	agree("lru");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_daemon_and_sim_agree),
		cmocka_unit_test(test_events_and_modes),
		cmocka_unit_test(test_config_and_reload),
		cmocka_unit_test(test_switch_at_run_time),
		cmocka_unit_test(test_crashing_module),
		cmocka_unit_test(test_record),
	};

	return cmocka_run_group_tests(tests, NULL, harness_group_teardown);
}
