/* SPDX-License-Identifier: MIT */
/* The configuration reader: keys, ranges, drop-ins, errors with file:line, all-or-nothing. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"

static char dir[64];

static void put(const char *rel, const char *text)
{
	char path[160];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, rel);
	f = fopen(path, "we");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static char *dump(const struct tierd_config *cfg)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	assert_non_null(f);
	config_dump(cfg, f);
	fclose(f);
	return buf;
}

/* Loads dir/rel over the defaults; returns config_load's result, the error in err. */
static int load(const char *rel, struct tierd_config *cfg, char *err, size_t len)
{
	char path[160];

	snprintf(path, sizeof(path), "%s/%s", dir, rel);
	tierd_config_defaults(cfg);
	err[0] = '\0';
	return config_load(path, true, cfg, err, len);
}

/* The shipped example documents every key at its default: it must stay in sync. */
static void test_example_is_the_defaults(void **state)
{
	struct tierd_config d, e;
	char err[512], *a, *b;

	(void)state;
	tierd_config_defaults(&d);
	e = d;
	assert_int_equal(config_load("config/tierd.conf", true, &e, err, sizeof(err)), 0);
	a = dump(&d);
	b = dump(&e);
	assert_string_equal(a, b);
	free(a);
	free(b);
}

static void test_values_and_dropins(void **state)
{
	struct tierd_config c;
	char err[512], *text, *again;

	(void)state;
	put("a.conf", "[sampling]\nepoch_ms = 50 ; inline comment\nhot_threshold = 0.5\n"
		      "[migration]\nmode = mapped\nrate_limit_mbps = 100\nenabled = off\n"
		      "[tiers]\nfast_budget_mib = 6\n[clients]\nallow_users = 0, 4243\n");
	{
		char d2[160];

		snprintf(d2, sizeof(d2), "%s/a.conf.d", dir);
		assert_int_equal(mkdir(d2, 0755), 0);
	}
	put("a.conf.d/20-later.conf", "[migration]\nrate_limit_mbps = 300\n");
	put("a.conf.d/10-first.conf", "[migration]\nrate_limit_mbps = 200\n[tiers]\nreserve_mib = 8\n");
	put("a.conf.d/README", "not a config\n");
	assert_int_equal(load("a.conf", &c, err, sizeof(err)), 0);
	assert_int_equal(c.epoch_ms, 50);
	assert_true(c.hot_threshold == 0.5f);
	assert_int_equal(c.migrate_how, MIGRATE_MAPPED);
	assert_int_equal(c.rate_limit_mbps, 300); /* the later drop-in wins */
	assert_int_equal(c.reserve_bytes, 8ull << 20);
	assert_int_equal(c.fast_budget_bytes, 6ull << 20);
	assert_false(c.migrate);
	assert_int_equal(c.n_allow_uids, 2);
	assert_int_equal(c.allow_uids[1], 4243);
	/* What --check-config prints reads back to the same configuration. */
	text = dump(&c);
	put("b.conf", text);
	assert_int_equal(load("b.conf", &c, err, sizeof(err)), 0);
	again = dump(&c);
	assert_string_equal(text, again);
	free(text);
	free(again);
}

static void expect_error(const char *text, const char *want)
{
	struct tierd_config c, before;
	char err[512];

	put("bad.conf", text);
	tierd_config_defaults(&c);
	c.epoch_ms = 77; /* not a default: must survive the failed load */
	before = c;
	{
		char path[160];

		snprintf(path, sizeof(path), "%s/bad.conf", dir);
		assert_true(config_load(path, true, &c, err, sizeof(err)) < 0);
	}
	print_message("%s\n", err);
	assert_non_null(strstr(err, want));
	assert_memory_equal(&c, &before, sizeof(c)); /* nothing applied */
}

static void test_errors_name_file_line_and_key(void **state)
{
	char longline[400];

	(void)state;
	expect_error("[sampling]\nepoch_ms = 50\nepochs = 3\n", "bad.conf:3: sampling.epochs: unknown key");
	expect_error("[sampling]\n\nepoch_ms = fast\n", "bad.conf:3: sampling.epoch_ms: 'fast' is not a whole number");
	expect_error("[sampling]\nepoch_ms = 0\n", "bad.conf:2: sampling.epoch_ms: '0' is out of range");
	expect_error("[sampling]\nepoch_ms = 1.5\n", "not a whole number");
	expect_error("[sampling]\nhot_threshold = 2\n", "out of range");
	expect_error("[migration]\nmode = fast\n", "'fast' is not zap or mapped");
	expect_error("[migration]\nenabled = maybe\n", "'maybe' is not yes or no");
	expect_error("[migration]\nrate_limit_mbps = 5\nrate_limit_mbps = 6\n",
		     "bad.conf:3: migration.rate_limit_mbps: set twice");
	expect_error("[tiers]\nlow_watermark = 0.9\nhigh_watermark = 0.8\n", "must be below");
	expect_error("[daemon]\nsocket = relative.sock\n", "not an absolute path");
	expect_error("[daemon]\nsocket_mode = 0680\n", "'0680' is not an octal mode from 0 to 0777");
	expect_error("[daemon]\nsocket_mode = 01777\n", "not an octal mode");
	expect_error("[daemon]\nsocket_mode = -660\n", "not an octal mode");
	expect_error("[daemon]\nsocket_group = no-such-group-here\n", "no group 'no-such-group-here'");
	expect_error("[daemon]\nsocket_group = root, 1\n", "'root, 1' is not one group");
	expect_error("[clients]\nallow_users = root, no-such-user-here\n", "no user 'no-such-user-here'");
	expect_error("[sampling]\nepoch_ms\n", "bad.conf:2: not a [section]");
	expect_error("epoch_ms = 5\n", "bad.conf:1: .epoch_ms: unknown key");
	memset(longline, 'x', sizeof(longline) - 1);
	longline[sizeof(longline) - 1] = '\0';
	{
		char text[512];

		snprintf(text, sizeof(text), "[sampling]\n# %s\nepoch_ms = 5\n", longline);
		expect_error(text, "bad.conf:2: line longer than");
	}
}

/* A [section] header given twice in one file is an error at the second one; a drop-in repeating
 * the main file's sections is what drop-ins are for. */
static void test_duplicate_sections(void **state)
{
	struct tierd_config c;
	char err[512], d2[160];

	(void)state;
	expect_error("[migration]\nrate_limit_mbps = 100\n[sampling]\nepoch_ms = 10\n[migration]\n"
		     "reserve_mib = 1\n",
		     "bad.conf:5: [migration] appears twice in this file (first at line 1)");
	/* Empty, back to back, or with only comments between: the same mistake. */
	expect_error("[migration]\n[migration]\n", "bad.conf:2: [migration] appears twice");
	expect_error("[policy.hotness]\nmin_score = 0.2\n; more\n\n[policy.hotness]  ; again\n",
		     "bad.conf:5: [policy.hotness] appears twice");
	/* libinih's names are exact: these are different sections (and the second is unknown). */
	expect_error("[sampling]\nepoch_ms = 10\n[sampling ]\nmax_windows = 3\n",
		     "bad.conf:4: sampling .max_windows: unknown key");
	/* An indented "[sampling]" after a key is a continuation of its value, not a header. */
	expect_error("[sampling]\nepoch_ms = 10\n  [sampling]\n", "bad.conf:3: sampling.epoch_ms: an "
		     "indented line continues the value above");

	put("dup.conf", "[migration]\nrate_limit_mbps = 100\n[sampling]\nepoch_ms = 10\n");
	snprintf(d2, sizeof(d2), "%s/dup.conf.d", dir);
	assert_int_equal(mkdir(d2, 0755), 0);
	put("dup.conf.d/10-a.conf", "[migration]\nrate_limit_mbps = 200\n[sampling]\nepoch_ms = 20\n");
	put("dup.conf.d/20-b.conf", "[migration]\nrate_limit_mbps = 300\n");
	assert_int_equal(load("dup.conf", &c, err, sizeof(err)), 0);
	assert_int_equal(c.rate_limit_mbps, 300);
	assert_int_equal(c.epoch_ms, 20);
	/* In a drop-in, the same rule: named by the drop-in's path and line. */
	put("dup.conf.d/30-c.conf", "[sampling]\n[migration]\n[sampling]\n");
	assert_true(load("dup.conf", &c, err, sizeof(err)) < 0);
	assert_non_null(strstr(err, "dup.conf.d/30-c.conf:3: [sampling] appears twice in this file"));
}

/* What the fuzzer (tests/fuzz/fuzz_config.c) and its review found; each input is also in
 * tests/fuzz/corpus/config/. */
static void test_parser_regressions(void **state)
{
	static const char nul_text[] = "[sampling]\nepoch_ms = 5\0 ignored\nmax_windows = 3\n";
	struct tierd_config c, before;
	char err[512], *a, *b;

	(void)state;
	/* The first error is reported, not the last (libinih goes on after a handler's error). */
	expect_error("[sampling]\nepoch_ms = fast\nfoo = 1\n", "bad.conf:2: sampling.epoch_ms: 'fast'");
	expect_error("[sampling]\nepoch_ms\nfoo = 1\n", "bad.conf:2: not a [section]");
	/* Distinct long keys were once compared cut to 63 bytes: "set twice". */
	put("long.conf", "[policy.aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa]\nk123456789abcdefX = 1\n"
			 "k123456789abcdefY = 2\n");
	assert_int_equal(load("long.conf", &c, err, sizeof(err)), 0);
	assert_int_equal(c.n_policy_params, 2);
	/* libinih cuts a section name at 49 bytes: the keys would go to another policy. */
	expect_error("[policy.aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa]\nk = 1\n",
		     "bad.conf:1: [policy.aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa...] section name longer");
	/* libinih passes an indented line on as a second value of the key above. */
	expect_error("[sampling]\nepoch_ms = 5\n  6\n", "bad.conf:3: sampling.epoch_ms: an indented line");
	/* A NUL ended the line for libinih, which dropped the rest of it unseen. */
	tierd_config_defaults(&c);
	before = c;
	assert_int_equal(config_parse("nul.conf", nul_text, sizeof(nul_text) - 1, &c, err, sizeof(err)),
			 -EINVAL);
	assert_string_equal(err, "nul.conf:2: NUL byte in the line");
	assert_memory_equal(&c, &before, sizeof(c));
	/* Values config_dump() could not print so that they read back. */
	expect_error("[policy.hotness]\n= 5\n", "bad.conf:2: policy.hotness.: a policy parameter needs a name");
	expect_error("[policy]\nname =;x\n", "bad.conf:2: policy.name: ';x' starts with ';'");
	{
		/* "textfile=/aaa…" of 198 bytes, the longest line: printed "textfile = /aaa…", 200. */
		char text[256];
		int n = snprintf(text, sizeof(text), "[metrics]\ntextfile=/");

		memset(text + n, 'a', 198 - strlen("textfile=/"));
		snprintf(text + n + 198 - strlen("textfile=/"), 3, "\n");
		expect_error(text, "bad.conf:2: metrics.textfile: '/aaaa");
	}
	expect_error("[clients]\nallow_users=1000,1001,1002,1003,1004,1005,1006,1007,1008,1009,1010,"
		     "1011,1012,1013,1014,1015,1016,1017,1018,1019,1020,1021,1022,1023,1024,1025,1026,"
		     "1027,1028,1029,1030,1031\n", "bad.conf:2: clients.allow_users: the list prints as");
	/* Watermarks that differ in the 7th digit once printed as equal ("0.85"), and the printed
	 * configuration failed config_validate(). */
	put("wm.conf", "[tiers]\nlow_watermark = 0.8499999\nhigh_watermark = 0.85\n");
	assert_int_equal(load("wm.conf", &c, err, sizeof(err)), 0);
	a = dump(&c);
	put("wm2.conf", a);
	assert_int_equal(load("wm2.conf", &c, err, sizeof(err)), 0);
	b = dump(&c);
	assert_string_equal(a, b);
	assert_non_null(strstr(a, "low_watermark = 0.8499999\n"));
	assert_non_null(strstr(a, "high_watermark = 0.85\n"));
	free(a);
	free(b);
}

static void test_missing_files(void **state)
{
	struct tierd_config c;
	char err[512], path[160];

	(void)state;
	snprintf(path, sizeof(path), "%s/none.conf", dir);
	tierd_config_defaults(&c);
	assert_int_equal(config_load(path, false, &c, err, sizeof(err)), 0); /* the default path */
	assert_int_equal(config_load(path, true, &c, err, sizeof(err)), -ENOENT); /* --config PATH */
	assert_non_null(strstr(err, "none.conf: No such file"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_example_is_the_defaults),
		cmocka_unit_test(test_values_and_dropins),
		cmocka_unit_test(test_errors_name_file_line_and_key),
		cmocka_unit_test(test_duplicate_sections),
		cmocka_unit_test(test_parser_regressions),
		cmocka_unit_test(test_missing_files),
	};
	int r;

	snprintf(dir, sizeof(dir), "/tmp/tierd-config-test.XXXXXX");
	if (!mkdtemp(dir))
		return 1;
	r = cmocka_run_group_tests_name("configuration", tests, NULL, NULL);
	{
		char cmd[128];

		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
		if (system(cmd) != 0)
			r = r ? r : 1;
	}
	return r;
}
