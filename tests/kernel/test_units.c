/* SPDX-License-Identifier: MIT */
/*
 * The systemd units, checked by systemd itself: `systemd-analyze verify` must have nothing to say
 * (it exits 0 even on unknown keys, so any output fails), and the service's offline security
 * exposure must stay at or under THRESHOLD. tests/systemd/run-nspawn.sh runs them under a real
 * systemd.
 */
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"

/* systemd-analyze's ×10 scale: 20 = exposure 2.0 ("OK" is below 4). Measured: 1.5 (1.2 before
 * CAP_SYS_PTRACE, which reading clients' /proc/PID/maps needs). */
#define THRESHOLD "20"

static char dir[PATH_MAX];

/* The units as `make install` writes them, with ExecStart= at this build's tierd (verify wants
 * the binary to exist). */
static void units(void)
{
	char bin[PATH_MAX], in[PATH_MAX + 32], out[PATH_MAX + 32], line[1024];
	FILE *f, *g;

	if (access("/usr/bin/systemd-analyze", X_OK) != 0)
		skip(); /* the systemd package is not installed */
	assert_non_null(realpath(harness_bin("tierd"), bin));
	snprintf(dir, sizeof(dir), "%s", harness_dir());
	f = fopen("systemd/tierd.service.in", "re");
	snprintf(out, sizeof(out), "%s/tierd.service", dir);
	g = fopen(out, "we");
	assert_non_null(f);
	assert_non_null(g);
	while (fgets(line, sizeof(line), f)) {
		char *at = strstr(line, "@SBINDIR@/tierd");

		if (at) {
			*at = '\0';
			fprintf(g, "%s%s%s", line, bin, at + strlen("@SBINDIR@/tierd"));
		} else {
			fputs(line, g);
		}
	}
	fclose(f);
	assert_int_equal(fclose(g), 0);
	snprintf(in, sizeof(in), "cp systemd/tierd.socket '%s/'", dir);
	assert_int_equal(system(in), 0);
}

static int run(char *const argv[], char *text, size_t len)
{
	char out[PATH_MAX + 16];
	pid_t p;
	int rc;

	snprintf(out, sizeof(out), "%s/analyze.out", dir);
	unlink(out);
	p = spawn_out(argv, out, NULL);
	assert_true(p > 0);
	rc = wait_exit(p, 60000);
	text[0] = '\0';
	(void)read_text(out, text, len);
	return rc;
}

static void test_verify_is_silent(void **state)
{
	char sock[PATH_MAX + 16], svc[PATH_MAX + 16], text[8192];
	char *argv[] = { "/usr/bin/systemd-analyze", "verify", "--man=no", sock, svc, NULL };

	(void)state;
	units();
	snprintf(sock, sizeof(sock), "%s/tierd.socket", dir);
	snprintf(svc, sizeof(svc), "%s/tierd.service", dir);
	assert_int_equal(run(argv, text, sizeof(text)), 0);
	if (text[0])
		fail_msg("systemd-analyze verify said:\n%s", text);
}

static void test_security_exposure(void **state)
{
	char svc[PATH_MAX + 16], text[65536];
	char *argv[] = { "/usr/bin/systemd-analyze", "security", "--offline=yes",
			 "--threshold=" THRESHOLD, svc, NULL };
	const char *overall;

	(void)state;
	units();
	snprintf(svc, sizeof(svc), "%s/tierd.service", dir);
	assert_int_equal(run(argv, text, sizeof(text)), 0); /* non-zero above the threshold */
	overall = strstr(text, "Overall exposure level");
	assert_non_null(overall);
	print_message("%.*s\n", (int)strcspn(overall, "\n"), overall);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_verify_is_silent),
		cmocka_unit_test(test_security_exposure),
	};

	return cmocka_run_group_tests_name("systemd units", tests, NULL, harness_group_teardown);
}
