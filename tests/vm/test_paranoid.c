/* SPDX-License-Identifier: MIT */
/*
 * The perf_event sampler at kernel.perf_event_paranoid=3, where a kernel carries Debian's patch
 * for that level (the 6.1 guest of tests/vm/ does; upstream kernels, like this project's host,
 * treat 3 as 2): perf_event_open needs CAP_SYS_ADMIN there even with CAP_PERFMON. tierd is run
 * as the systemd unit runs it, without CAP_SYS_ADMIN (setpriv drops it from the bounding set), on
 * the software page-fault event (sampling.perf_software = yes), and must
 *   - keep the page-fault counter on (it needs only CAP_BPF and CAP_PERFMON),
 *   - report the perf sampler off, naming the sysctl level, CAP_SYS_ADMIN and the sysctl that
 *     would let it run, and log that once,
 *   - start the perf sampler with the same capabilities once the level is 2 (so the refusal was
 *     the level's, not something else).
 * Skips without root, setpriv or kernel BTF, and on kernels without the level-3 restriction
 * (checked first with perf_event_open itself).
 */
#include <errno.h>
#include <linux/capability.h>
#include <linux/perf_event.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"

#define PARANOID "/proc/sys/kernel/perf_event_paranoid"

static char old_level[16];

static int set_level(const char *v)
{
	FILE *f = fopen(PARANOID, "we");
	int r;

	if (!f)
		return -errno;
	r = fputs(v, f) < 0 ? -EIO : 0;
	if (fclose(f) != 0 && r == 0)
		r = -errno;
	return r;
}

/* True when a root process without CAP_SYS_ADMIN (CAP_PERFMON kept) cannot open a system-wide
 * software event at the current level: the kernel enforces level 3. */
static bool sys_admin_needed(void)
{
	pid_t p = fork();
	int st;

	if (p == 0) {
		struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3 };
		struct __user_cap_data_struct d[2];
		struct perf_event_attr a = { .type = PERF_TYPE_SOFTWARE, .size = sizeof(a),
					     .config = PERF_COUNT_SW_PAGE_FAULTS, .sample_period = 1 };
		long fd;

		if (syscall(SYS_capget, &h, d) < 0)
			_exit(2);
		d[0].effective &= ~(1u << CAP_SYS_ADMIN);
		d[0].permitted &= ~(1u << CAP_SYS_ADMIN);
		if (syscall(SYS_capset, &h, d) < 0)
			_exit(2);
		fd = syscall(SYS_perf_event_open, &a, -1, 0, -1, 0);
		_exit(fd >= 0 ? 0 : errno == EACCES || errno == EPERM ? 1 : 2);
	}
	assert_true(p > 0);
	assert_int_equal(waitpid(p, &st, 0), p);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) != 2);
	return WEXITSTATUS(st) == 1;
}

static const char *conf(void)
{
	static char path[256];
	FILE *f;

	snprintf(path, sizeof(path), "%s/paranoid.conf", harness_dir());
	f = fopen(path, "we");
	assert_non_null(f);
	fprintf(f, "[sampling]\nbpf = yes\nperf_software = yes\nperf_period = 1\n");
	fclose(f);
	return path;
}

/* tierd without CAP_SYS_ADMIN; returns its status once the programs are loaded, in js. */
static pid_t start_unprivileged(const char *sock, const char *out, char *js, size_t len)
{
	char *argv[] = { "/usr/bin/setpriv", "--inh-caps=-all", "--bounding-set=-sys_admin",
			 (char *)harness_bin("tierd"), "--socket", (char *)sock, "--config",
			 (char *)conf(), NULL };
	pid_t d;
	int r = -1;

	unlink(sock);
	d = spawn_out(argv, out, NULL);
	assert_true(d > 0);
	for (int i = 0; i < 500 && (r <= 0 || strstr(js, "off: loading")); i++) {
		msleep(20);
		r = status_fetch(sock, js, len);
	}
	assert_true(r > 0);
	assert_null(strstr(js, "off: loading"));
	return d;
}

static int setup(void **state)
{
	FILE *f = fopen(PARANOID, "re");

	(void)state;
	if (!f || !fgets(old_level, sizeof(old_level), f))
		old_level[0] = '\0';
	if (f)
		fclose(f);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	if (old_level[0])
		(void)set_level(old_level);
	harness_cleanup();
	return 0;
}

static void test_paranoid3(void **state)
{
	static char js[65536], text[16384];
	char sock[256], out[256];
	const char *perf, *pf;
	pid_t d;

	(void)state;
	if (geteuid() != 0 || access("/sys/kernel/btf/vmlinux", R_OK) < 0 ||
	    access("/usr/bin/setpriv", X_OK) < 0 || !old_level[0]) {
		print_message("skipped: needs root, kernel BTF, setpriv and %s\n", PARANOID);
		skip();
	}
	assert_int_equal(set_level("3"), 0);
	if (!sys_admin_needed()) {
		print_message("skipped: this kernel (upstream) treats perf_event_paranoid=3 as 2\n");
		skip();
	}
	snprintf(sock, sizeof(sock), "%s/paranoid.sock", harness_dir());
	snprintf(out, sizeof(out), "%s/paranoid3.out", harness_dir());
	d = start_unprivileged(sock, out, js, sizeof(js));
	pf = strstr(js, "\"page_fault\":\"");
	perf = strstr(js, "\"perf\":\"");
	assert_non_null(pf);
	assert_non_null(perf);
	print_message("level 3: %.60s\n", pf);
	print_message("level 3: %.250s\n", perf);
	assert_non_null(strstr(pf, "\"page_fault\":\"on"));
	assert_true(strncmp(perf, "\"perf\":\"off: perf_event_open(", 28) == 0);
	assert_non_null(strstr(perf, "kernel.perf_event_paranoid=3 needs CAP_SYS_ADMIN"));
	assert_non_null(strstr(perf, "sysctl kernel.perf_event_paranoid=2"));
	assert_int_equal(daemon_stop(d), 0);
	/* Said once in the log, at start. */
	assert_true(read_text(out, text, sizeof(text)) > 0);
	pf = strstr(text, "eBPF sampler perf is off: perf_event_open(");
	assert_non_null(pf);
	assert_null(strstr(pf + 1, "eBPF sampler perf is off"));

	/* Level 2, the same capabilities: the perf sampler runs. */
	assert_int_equal(set_level("2"), 0);
	snprintf(out, sizeof(out), "%s/paranoid2.out", harness_dir());
	d = start_unprivileged(sock, out, js, sizeof(js));
	perf = strstr(js, "\"perf\":\"");
	assert_non_null(perf);
	print_message("level 2: %.80s\n", perf);
	assert_non_null(strstr(perf, "\"perf\":\"on: software page-faults"));
	assert_int_equal(daemon_stop(d), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_paranoid3),
	};

	return cmocka_run_group_tests_name("perf_event_paranoid", tests, setup, teardown);
}
