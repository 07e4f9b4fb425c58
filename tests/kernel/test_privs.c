/* SPDX-License-Identifier: MIT */
/*
 * What tierd keeps of its privileges once it serves (daemon/privs.c), and who may connect to the
 * socket it binds itself (daemon.socket_mode, socket_group).
 *
 * Read from the kernel, not from tierd: /proc/PID/status of every thread (CapPrm, CapEff, CapBnd,
 * CapInh, CapAmb, NoNewPrivs). tierd started as root keeps CAP_SYS_PTRACE, CAP_SYS_NICE,
 * CAP_PERFMON and CAP_BPF and nothing else, in every set; started the way its systemd unit starts
 * it (a bounding set without CAP_SETPCAP) it drops the same; started with less, it keeps what it
 * was given of those four, and says what the missing ones switch off. A root tierd without
 * CAP_DAC_OVERRIDE cannot write where only another user may: the drop has an effect, and the
 * error it gives names the file.
 */
#include <errno.h>
#include <grp.h>
#include <inttypes.h>
#include <linux/capability.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <dirent.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"

#define BIT(c) (UINT64_C(1) << (c))

static char sock[256];
static pid_t tierd; /* the one a test started, stopped by the teardown if the test failed */

/* Every case starts tierds as root (what they drop is the point) on one socket path. */
static int setup(void **state)
{
	(void)state;
	if (geteuid() != 0) {
		print_message("skipped: needs root\n");
		skip();
	}
	snprintf(sock, sizeof(sock), "%s/privs.sock", harness_dir());
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	if (tierd > 0)
		daemon_stop(tierd);
	tierd = 0;
	return 0;
}

/* This process's permitted set: what a tierd it starts begins with. */
static uint64_t own_caps(void)
{
	char text[4096];
	const char *p;

	assert_true(read_text("/proc/self/status", text, sizeof(text)) > 0);
	p = strstr(text, "CapPrm:");
	assert_non_null(p);
	return strtoull(p + 7, NULL, 16);
}

/* The capabilities the running kernel knows, as a mask. */
static uint64_t kernel_caps(void)
{
	char text[32] = "";
	long last;

	assert_true(read_text("/proc/sys/kernel/cap_last_cap", text, sizeof(text)) > 0);
	last = strtol(text, NULL, 10);
	return last >= 63 ? UINT64_MAX : BIT(last + 1) - 1;
}

static uint64_t status_hex(const char *text, const char *key)
{
	const char *p = strstr(text, key);

	assert_non_null(p);
	return strtoull(p + strlen(key), NULL, 16);
}

/* Checks every thread of `pid`: permitted = effective = `want`, bounding = `bounding`, nothing
 * inheritable or ambient, no_new_privs set. Returns how many threads it checked. */
static int check_threads(pid_t pid, uint64_t want, uint64_t bounding)
{
	char dir[64], path[400], text[4096];
	struct dirent *e;
	int n = 0;
	DIR *d;

	snprintf(dir, sizeof(dir), "/proc/%d/task", (int)pid);
	d = opendir(dir);
	assert_non_null(d);
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s/status", dir, e->d_name);
		if (read_text(path, text, sizeof(text)) <= 0)
			continue; /* a thread that just ended */
		print_message("tid %s: CapPrm %016" PRIx64 " CapEff %016" PRIx64 " CapBnd %016" PRIx64
			      "\n", e->d_name, status_hex(text, "CapPrm:"), status_hex(text, "CapEff:"),
			      status_hex(text, "CapBnd:"));
		assert_true(status_hex(text, "CapPrm:") == want);
		assert_true(status_hex(text, "CapEff:") == want);
		assert_true(status_hex(text, "CapBnd:") == bounding);
		assert_true(status_hex(text, "CapInh:") == 0);
		assert_true(status_hex(text, "CapAmb:") == 0);
		assert_non_null(strstr(text, "NoNewPrivs:\t1"));
		n++;
	}
	closedir(d);
	return n;
}

/* Starts tierd through setpriv(1) with `bounding` as its bounding set (setpriv's syntax), and
 * waits until it serves. */
static pid_t start_bounded(const char *bounding, const char *out)
{
	char arg[128], js[65536];
	char *argv[] = { "/usr/bin/setpriv", arg, "--inh-caps=-all", "--",
			 (char *)harness_bin("tierd"), "--socket", sock, NULL };
	pid_t pid;

	snprintf(arg, sizeof(arg), "--bounding-set=-all,%s", bounding);
	pid = spawn_out(argv, out, NULL);
	assert_true(pid > 0);
	tierd = pid;
	for (int i = 0; i < 500; i++) {
		if (status_fetch(sock, js, sizeof(js)) > 0 && json_int(js, NULL, "pid") == pid &&
		    !strstr(js, "off: loading\""))
			return pid;
		msleep(10);
	}
	read_text(out, js, sizeof(js));
	fail_msg("tierd under setpriv %s did not serve within 5 s; its output:\n%s", arg, js);
	return -1;
}

static void need_setpriv(void)
{
	if (access("/usr/bin/setpriv", X_OK) < 0) {
		print_message("skipped: no /usr/bin/setpriv (util-linux)\n");
		skip();
	}
}

static const uint64_t kept = BIT(CAP_SYS_PTRACE) | BIT(CAP_SYS_NICE) | BIT(CAP_PERFMON) | BIT(CAP_BPF);

/* As root, with every capability: it keeps four, in every set, in every thread. */
static void test_root_keeps_four(void **state)
{
	uint64_t want = kept & kernel_caps() & own_caps();
	char js[65536], out[4096];
	pid_t d;

	(void)state;
	tierd = d = daemon_start(sock, NULL);
	assert_true(d > 0);
	assert_true(check_threads(d, want, want) >= 1);
	assert_true(status_fetch(sock, js, sizeof(js)) > 0);
	print_message("%s\n", strstr(js, "\"privileges\""));
	assert_non_null(strstr(js, "\"capabilities\":\"sys_ptrace, sys_nice, perfmon, bpf\""));
	assert_non_null(strstr(js, "\"bounding_set\":true,\"no_new_privs\":true"));
	assert_int_equal(json_int(js, "\"privileges\"", "dropped"),
			 __builtin_popcountll(own_caps()) - __builtin_popcountll(want));
	/* The eBPF samplers loaded with what was kept. */
	if (access("/sys/kernel/btf/vmlinux", R_OK) == 0)
		assert_non_null(strstr(js, "\"page_fault\":\"on\""));
	assert_int_equal(harness_tierctl(sock, false, out, sizeof(out), "status", NULL), 0);
	assert_non_null(strstr(out, "privileges: uid 0, capabilities sys_ptrace, sys_nice, perfmon, "
				    "bpf, no_new_privs"));
	assert_int_equal(daemon_stop(d), 0);
	tierd = 0;
}

/* As systemd's unit starts it: CapabilityBoundingSet= leaves no CAP_SETPCAP, so the bounding set
 * stays as given (already the four); the rest is dropped the same. */
static void test_unit_bounding_set(void **state)
{
	uint64_t want = kept & kernel_caps() & own_caps();
	char js[65536], out[256];
	pid_t d;

	(void)state;
	need_setpriv();
	snprintf(out, sizeof(out), "%s/privs-unit.log", harness_dir());
	d = start_bounded("+sys_ptrace,+sys_nice,+perfmon,+bpf", out);
	assert_true(check_threads(d, want, want) >= 1);
	assert_true(status_fetch(sock, js, sizeof(js)) > 0);
	assert_non_null(strstr(js, "\"bounding_set\":false,\"no_new_privs\":true"));
	assert_int_equal(daemon_stop(d), 0);
	tierd = 0;
}

/* Given only CAP_SYS_PTRACE, it keeps that, and the eBPF samplers are off with the reason. */
static void test_given_less(void **state)
{
	char js[65536], out[256];
	pid_t d;

	(void)state;
	need_setpriv();
	snprintf(out, sizeof(out), "%s/privs-less.log", harness_dir());
	d = start_bounded("+sys_ptrace", out);
	assert_true(check_threads(d, BIT(CAP_SYS_PTRACE), BIT(CAP_SYS_PTRACE)) >= 1);
	assert_true(status_fetch(sock, js, sizeof(js)) > 0);
	assert_non_null(strstr(js, "\"capabilities\":\"sys_ptrace\""));
	if (access("/sys/kernel/btf/vmlinux", R_OK) == 0)
		assert_non_null(strstr(js, "needs CAP_BPF and CAP_PERFMON"));
	assert_int_equal(daemon_stop(d), 0);
	tierd = 0;
}

/* Root without CAP_DAC_OVERRIDE: a metrics textfile in a directory only uid 65534 may write to is
 * refused (with every capability, root would write it), and the log names the file. */
static void test_dropped_means_dropped(void **state)
{
	char dir[256], conf[256], prom[300], log[256], text[16384];
	FILE *f;
	pid_t d;

	(void)state;
	snprintf(dir, sizeof(dir), "%s/nobodys", harness_dir());
	snprintf(conf, sizeof(conf), "%s/privs.conf", harness_dir());
	snprintf(prom, sizeof(prom), "%s/tierd.prom", dir);
	snprintf(log, sizeof(log), "%s/privs-dac.log", harness_dir());
	assert_int_equal(mkdir(dir, 0755), 0);
	assert_int_equal(chown(dir, 65534, 65534), 0);
	f = fopen(conf, "we");
	assert_non_null(f);
	fprintf(f, "[metrics]\ntextfile = %s\ninterval_ms = 1000\n", prom);
	fclose(f);
	tierd = d = daemon_start_out(sock, log, "--config", conf, NULL);
	assert_true(d > 0);
	msleep(2500);
	assert_int_equal(daemon_stop(d), 0);
	tierd = 0;
	read_text(log, text, sizeof(text));
	assert_int_equal(access(prom, F_OK), -1);
	assert_non_null(strstr(text, "tierd.prom.tmp: Permission denied"));
}

/* The socket tierd binds: daemon.socket_mode whatever the umask (0 here), its group from
 * daemon.socket_group, and connecting needs what the mode says. */
static void test_socket_mode(void **state)
{
	char conf[256], out[4096];
	struct group *nog = getgrgid(65534);
	struct stat st;
	mode_t old;
	FILE *f;
	pid_t d;

	(void)state;
	need_setpriv();
	snprintf(conf, sizeof(conf), "%s/privs-sock.conf", harness_dir());
	assert_int_equal(chmod(harness_dir(), 0755), 0); /* uid 65534 must reach the socket */

	old = umask(0);
	tierd = d = daemon_start(sock, NULL);
	umask(old);
	assert_true(d > 0);
	assert_int_equal(stat(sock, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0660);
	assert_int_equal(st.st_gid, getgid());
	assert_int_not_equal(harness_tierctl(sock, true, out, sizeof(out), "status", NULL), 0);
	print_message("uid 65534, mode 0660 root's group: %s", out);
	assert_non_null(strstr(out, "Permission denied"));
	assert_int_equal(daemon_stop(d), 0);
	tierd = 0;

	/* Its group: uid 65534 (gid 65534) may connect. */
	f = fopen(conf, "we");
	assert_non_null(f);
	fprintf(f, "[daemon]\nsocket_mode = 0660\nsocket_group = %s\n", nog ? nog->gr_name : "65534");
	fclose(f);
	tierd = d = daemon_start(sock, "--config", conf, NULL);
	assert_true(d > 0);
	assert_int_equal(stat(sock, &st), 0);
	assert_int_equal(st.st_gid, 65534);
	assert_int_equal(harness_tierctl(sock, true, out, sizeof(out), "status", NULL), 0);
	assert_non_null(strstr(out, "tierd pid"));
	assert_int_equal(daemon_stop(d), 0);
	tierd = 0;
	assert_int_equal(chmod(harness_dir(), 0700), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_root_keeps_four, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unit_bounding_set, setup, teardown),
		cmocka_unit_test_setup_teardown(test_given_less, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dropped_means_dropped, setup, teardown),
		cmocka_unit_test_setup_teardown(test_socket_mode, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, harness_group_teardown);
}
