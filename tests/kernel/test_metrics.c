/* SPDX-License-Identifier: MIT */
/*
 * Metrics: `tierctl metrics` from a running tierd with a client, checked as Prometheus' text
 * format (every sample belongs to the family whose HELP and TYPE precede it, no series twice,
 * histogram buckets cumulative and ending in +Inf = _count), with values that follow what the
 * client did; readable by a user who is not root; and the textfile, rewritten atomically.
 */
#include <ctype.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"

/* Checks the exposition format line by line; returns the number of samples. */
static int check_format(const char *text)
{
	char family[128] = "", seen[512][160];
	int nseen = 0, samples = 0;
	bool typed = false;

	for (const char *p = text; *p;) {
		const char *e = strchr(p, '\n');
		char line[512], name[160];
		size_t l;

		assert_non_null(e); /* every line ends in a newline */
		l = (size_t)(e - p);
		assert_true(l < sizeof(line));
		memcpy(line, p, l);
		line[l] = '\0';
		p = e + 1;
		if (!strncmp(line, "# HELP ", 7)) {
			assert_int_equal(sscanf(line + 7, "%127s", family), 1);
			typed = false;
			continue;
		}
		if (!strncmp(line, "# TYPE ", 7)) {
			char fam[128], type[32];

			assert_int_equal(sscanf(line + 7, "%127s %31s", fam, type), 2);
			assert_string_equal(fam, family);
			assert_true(!strcmp(type, "counter") || !strcmp(type, "gauge") ||
				    !strcmp(type, "histogram"));
			typed = true;
			continue;
		}
		/* A sample: name[{labels}] value */
		assert_true(typed);
		assert_true(isalpha((unsigned char)line[0]));
		l = strcspn(line, " ");
		assert_true(l < sizeof(name));
		memcpy(name, line, l);
		name[l] = '\0';
		if (strncmp(name, family, strlen(family)))
			fail_msg("sample %s outside its family %s", name, family);
		for (int i = 0; i < nseen; i++)
			if (!strcmp(seen[i], name))
				fail_msg("series %s twice", name);
		if (nseen < 512)
			snprintf(seen[nseen++], sizeof(seen[0]), "%s", name);
		{
			char *end;

			strtod(line + l + 1, &end);
			assert_true(end != line + l + 1 && *end == '\0');
		}
		samples++;
	}
	return samples;
}

static void test_metrics(void **state)
{
	char sock[256], out[256], cout[256], prom[256], js[16384], cmd[600];
	static char text[70000];
	char *argv[] = { (char *)harness_bin("tests/helpers/tier-client"), "--socket", sock, "--kind",
			 "shmem", "--threads", "2", "--mib", "16", "--ms", "1500", "--wait-tracked",
			 "3000", NULL };
	double prev = -1, count;
	struct stat st;
	pid_t d, c;
	FILE *f;

	(void)state;
	snprintf(sock, sizeof(sock), "%s/metrics.sock", harness_dir());
	snprintf(out, sizeof(out), "%s/metrics.out", harness_dir());
	snprintf(cout, sizeof(cout), "%s/metrics.client", harness_dir());
	snprintf(prom, sizeof(prom), "%s/tierd.prom", harness_dir());
	snprintf(cmd, sizeof(cmd), "%s/metrics.conf", harness_dir());
	f = fopen(cmd, "we");
	assert_non_null(f);
	fprintf(f, "[metrics]\ntextfile = %s\ninterval_ms = 1000\n", prom);
	fclose(f);
	d = daemon_start(sock, "--config", cmd, "--epoch-ms", "50", NULL);
	assert_true(d > 0);
	c = spawn_out(argv, cout, NULL);
	msleep(1000);

	assert_int_equal(harness_tierctl(sock, false, text, sizeof(text), "metrics", NULL), 0);
	print_message("%d samples\n", check_format(text));
	assert_true(metrics_sample(text, "tierd_faults_total") > 0);
	assert_int_equal(metrics_sample(text, "tierd_segments{page_size=\"4096\"}"), 1);
	assert_int_equal(metrics_sample(text, "tierd_segment_bytes{page_size=\"4096\"}"), 16 << 20);
	assert_int_equal(metrics_sample(text, "tierd_policy_info{name=\"hotness\"}"), 1);
	assert_true(metrics_sample(text, "tierd_start_time_seconds") > 1.7e9); /* wall clock, not uptime */
	/* The histogram: cumulative buckets, +Inf equal to _count, every fault resolved in it. */
	count = metrics_sample(text, "tierd_fault_latency_seconds_count");
	assert_true(count > 0);
	for (const char *p = strstr(text, "tierd_fault_latency_seconds_bucket"); p;
	     p = strstr(p + 1, "tierd_fault_latency_seconds_bucket")) {
		double v = strtod(strchr(p, ' ') + 1, NULL);

		assert_true(v >= prev);
		prev = v;
	}
	assert_true(prev == count);
	assert_true(metrics_sample(text, "tierd_fault_latency_seconds_bucket{le=\"+Inf\"}") == count);
	assert_true(metrics_sample(text, "tierd_fault_latency_seconds_sum") > 0);
	assert_true(status_fetch(sock, js, sizeof(js)) > 0);
	/* Same source as status: faults resolved there are the histogram's (none held here: one
	 * node, nothing migrates). */
	assert_true(count <= json_int(js, NULL, "faults"));

	/* Readable without privilege: metrics change nothing. */
	if (access("/usr/bin/setpriv", X_OK) == 0) {
		assert_int_equal(chmod(harness_dir(), 0755), 0);
		assert_int_equal(chmod(sock, 0666), 0);
		assert_int_equal(harness_tierctl(sock, true, text, sizeof(text), "metrics", NULL), 0);
		assert_true(metrics_sample(text, "tierd_faults_total") > 0);
		assert_int_equal(chmod(harness_dir(), 0700), 0);
	}

	/* The textfile: written within its interval, whole, and no temporary left beside it. */
	assert_int_equal(stat(prom, &st), 0);
	read_text(prom, text, sizeof(text));
	check_format(text);
	assert_true(metrics_sample(text, "tierd_epochs_total") > 0);
	snprintf(cmd, sizeof(cmd), "%s.tmp", prom);
	assert_int_equal(access(cmd, F_OK), -1);

	assert_int_equal(wait_exit(c, 30000), 0);
	daemon_stop(d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_metrics),
	};

	return cmocka_run_group_tests(tests, NULL, harness_group_teardown);
}
