/* SPDX-License-Identifier: MIT */
/*
 * The configuration file in a running tierd: read at start, overridden by the command line, read
 * again on SIGHUP (all or nothing: a broken file leaves the running configuration in force and
 * tierd serving), and checked by --check-config.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"

static char conf[256], sock[256];

static void write_conf(const char *text)
{
	char tmp[300];
	FILE *f;

	/* Whole files only, as an editor or a config manager writes them. */
	snprintf(tmp, sizeof(tmp), "%s.tmp", conf);
	f = fopen(tmp, "we");
	assert_non_null(f);
	fputs(text, f);
	assert_int_equal(fclose(f), 0);
	assert_int_equal(rename(tmp, conf), 0);
}

static long long config_value(const char *key)
{
	char js[16384];

	assert_true(status_fetch(sock, js, sizeof(js)) > 0);
	return json_int(js, "\"config\"", key);
}

/* Waits up to 5 s for config.key to become want. */
static long long wait_value(const char *key, long long want)
{
	long long v = -1;

	for (int i = 0; i < 100 && (v = config_value(key)) != want; i++)
		msleep(50);
	return v;
}

static void test_reload(void **state)
{
	pid_t d;

	(void)state;
	snprintf(conf, sizeof(conf), "%s/tierd.conf", harness_dir());
	snprintf(sock, sizeof(sock), "%s/reload.sock", harness_dir());
	write_conf("[sampling]\nepoch_ms = 100\n[migration]\nrate_limit_mbps = 100\n");
	d = daemon_start(sock, "--config", conf, "--max-windows", "16", NULL);
	assert_true(d > 0);
	assert_int_equal(config_value("epoch_ms"), 100);
	assert_int_equal(config_value("rate_limit_mbps"), 100);
	assert_int_equal(config_value("max_windows"), 16);

	/* A change applies on SIGHUP; the command line still wins over the file. */
	write_conf("[sampling]\nepoch_ms = 40\nmax_windows = 8\n[migration]\nrate_limit_mbps = 200\n");
	assert_int_equal(kill(d, SIGHUP), 0);
	assert_int_equal(wait_value("epoch_ms", 40), 40);
	assert_int_equal(config_value("rate_limit_mbps"), 200);
	assert_int_equal(config_value("max_windows"), 16);

	/* A broken file changes nothing, and tierd goes on serving. */
	write_conf("[sampling]\nepoch_ms = 10\n[migration]\nrate_limit_mbps = fast\n");
	assert_int_equal(kill(d, SIGHUP), 0);
	msleep(500);
	assert_int_equal(config_value("epoch_ms"), 40);
	assert_int_equal(config_value("rate_limit_mbps"), 200);
	assert_int_equal(waitpid(d, NULL, WNOHANG), 0);

	/* Mended, it applies again. */
	write_conf("[sampling]\nepoch_ms = 60\n");
	assert_int_equal(kill(d, SIGHUP), 0);
	assert_int_equal(wait_value("epoch_ms", 60), 60);
	assert_int_equal(config_value("rate_limit_mbps"), 512); /* back to the default */
	assert_int_equal(daemon_stop(d), 0);
}

static void test_check_config(void **state)
{
	char out[256], text[4096];
	char *argv[] = { (char *)harness_bin("tierd"), "--config", conf, "--check-config", NULL };
	pid_t p;

	(void)state;
	snprintf(conf, sizeof(conf), "%s/check.conf", harness_dir());
	snprintf(out, sizeof(out), "%s/check.out", harness_dir());
	write_conf("[migration]\nmode = mapped\n");
	p = spawn_out(argv, out, NULL);
	assert_int_equal(wait_exit(p, 10000), 0);
	assert_true(read_text(out, text, sizeof(text)) > 0);
	assert_non_null(strstr(text, "mode = mapped"));
	assert_non_null(strstr(text, "epoch_ms = 100"));

	unlink(out);
	write_conf("[migration]\n\nmode = fast\n");
	p = spawn_out(argv, out, NULL);
	assert_int_equal(wait_exit(p, 10000), 2);
	assert_true(read_text(out, text, sizeof(text)) > 0);
	print_message("%s", text);
	assert_non_null(strstr(text, "check.conf:3: migration.mode: 'fast' is not zap or mapped"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_reload),
		cmocka_unit_test(test_check_config),
	};

	return cmocka_run_group_tests_name("configuration in a running tierd", tests, NULL, harness_group_teardown);
}
