/* SPDX-License-Identifier: MIT */
/*
 * tierctl in both output modes against a running tierd with a client: every --json output is
 * valid JSON with the documented fields (JSON Lines for top), the human tables carry the same
 * facts, and the exit statuses are the documented ones (0 done, 1 tierd unreachable or refusing,
 * 2 usage).
 */
#include <errno.h>
#include <json-c/json.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"

static char sock[256];
static char out[70000];

/* tierctl with up to four arguments (NULL ends them early). */
static int tierctl(const char *a, const char *b, const char *c, const char *d)
{
	return harness_tierctl(sock, false, out, sizeof(out), a, b, c, d, NULL);
}

static struct json_object *parsed(void)
{
	struct json_object *o = json_tokener_parse(out);

	if (!o)
		fail_msg("not JSON: %s", out);
	return o;
}

static struct json_object *get(struct json_object *o, const char *key)
{
	struct json_object *v = NULL;

	if (!json_object_object_get_ex(o, key, &v))
		fail_msg("no \"%s\" in %s", key, json_object_to_json_string(o));
	return v;
}

static void test_tierctl(void **state)
{
	char cout[256];
	char *argv[] = { (char *)harness_bin("tests/helpers/tier-client"), "--socket", sock, "--kind",
			 "shmem", "--threads", "1", "--mib", "8", "--ms", "60000", "--wait-tracked",
			 "3000", NULL };
	struct json_object *o, *a;
	pid_t d, c;

	(void)state;
	snprintf(sock, sizeof(sock), "%s/ctl.sock", harness_dir());
	snprintf(cout, sizeof(cout), "%s/ctl.client", harness_dir());
	d = daemon_start(sock, "--epoch-ms", "50", NULL);
	assert_true(d > 0);
	c = spawn_out(argv, cout, NULL);
	msleep(800);

	assert_int_equal(tierctl("--json", "status", NULL, NULL), 0);
	o = parsed();
	assert_true(json_object_get_int64(get(get(o, "stats"), "faults")) > 0);
	assert_string_equal(json_object_get_string(get(get(o, "policy"), "name")), "hotness");
	json_object_put(o);

	assert_int_equal(tierctl("tiers", "--json", NULL, NULL), 0);
	o = parsed();
	assert_true(json_object_is_type(o, json_type_array) && json_object_array_length(o) >= 1);
	a = get(json_object_array_get_idx(o, 0), "nodes");
	assert_true(json_object_get_int64(get(json_object_array_get_idx(a, 0), "total_bytes")) > 0);
	json_object_put(o);

	assert_int_equal(tierctl("--json", "segments", NULL, NULL), 0);
	o = parsed();
	assert_int_equal(json_object_array_length(o), 1);
	assert_int_equal(json_object_get_int64(get(json_object_array_get_idx(o, 0), "size_bytes")),
			 8 << 20);
	assert_string_equal(json_object_get_string(get(json_object_array_get_idx(o, 0), "kind")),
			    "shmem");
	json_object_put(o);

	assert_int_equal(tierctl("--json", "clients", NULL, NULL), 0);
	o = parsed();
	{
		bool found = false;

		for (size_t i = 0; i < json_object_array_length(o); i++)
			found |= json_object_get_int64(get(json_object_array_get_idx(o, i), "pid")) == c;
		assert_true(found);
	}
	json_object_put(o);

	/* top: one JSON line per refresh. */
	assert_int_equal(tierctl("--json", "top", "--interval=0.3", "--count=2"), 0);
	{
		char *nl = strchr(out, '\n');

		assert_non_null(nl);
		*nl = '\0';
		o = parsed();
		assert_true(json_object_get_double(
				    get(json_object_array_get_idx(get(o, "segments"), 0), "faults_per_s")) > 0);
		json_object_put(o);
		memmove(out, nl + 1, strlen(nl + 1) + 1);
		o = parsed();
		json_object_put(o);
	}

	/* heatmap: JSON Lines of 64 shares, an SVG, and the terminal view. */
	{
		char svg[512], idbuf[32];
		const char *segid;

		assert_int_equal(tierctl("--json", "segments", NULL, NULL), 0);
		o = parsed();
		snprintf(idbuf, sizeof(idbuf), "%lld",
			 (long long)json_object_get_int64(get(json_object_array_get_idx(o, 0), "id")));
		json_object_put(o);
		segid = idbuf;
		assert_int_equal(tierctl("--json", "heatmap", segid, "--count=1"), 0);
		o = parsed();
		assert_int_equal(json_object_array_length(get(o, "hot_share")), 64);
		assert_int_equal(json_object_get_int64(get(o, "pages")), 2048);
		json_object_put(o);
		snprintf(svg, sizeof(svg), "--svg=%s/heat.svg", harness_dir());
		assert_int_equal(tierctl("heatmap", segid, "--count=2", svg), 0);
		read_text(svg + 6, out, sizeof(out));
		assert_true(!strncmp(out, "<svg", 4) && strstr(out, "<rect") && strstr(out, "</svg>"));
		assert_int_equal(tierctl("heatmap", segid, "--count=2", "--interval=0.1"), 0);
		assert_non_null(strstr(out, "2048 pages; each column 32 pages"));
		assert_int_equal(tierctl("heatmap", "999999", "--count=1", NULL), 1);
		assert_non_null(strstr(out, "tracks no segment 999999"));
	}

	/* The human views say the same things. */
	assert_int_equal(tierctl("status", NULL, NULL, NULL), 0);
	assert_non_null(strstr(out, "policy hotness"));
	/* A slow (sanitizer) tierd can make the client let go for a moment (its guardian), and it
	 * re-attaches after a backoff: look until it is back, 10 s at most. */
	{
		char pid[32];
		bool seg = false, cl = false;

		snprintf(pid, sizeof(pid), " %d ", (int)c);
		for (int i = 0; i < 50 && !(seg && cl); i++) {
			if (i)
				msleep(200);
			seg = tierctl("segments", NULL, NULL, NULL) == 0 && strstr(out, "shmem");
			cl = tierctl("clients", NULL, NULL, NULL) == 0 && strstr(out, pid);
		}
		assert_true(seg);
		if (!cl)
			fail_msg("pid %d not in:\n%s", (int)c, out);
	}
	assert_int_equal(tierctl("tiers", NULL, NULL, NULL), 0);
	assert_non_null(strstr(out, "TRACKED_MIB"));

	/* Exit statuses. */
	assert_int_equal(tierctl("frobnicate", NULL, NULL, NULL), 2);
	assert_int_equal(tierctl("status", "extra", NULL, NULL), 2);
	/* The client only had to be there (sanitizer builds are slow: it runs until killed). */
	kill(c, SIGKILL);
	waitpid(c, NULL, 0);
	daemon_stop(d);
	assert_int_equal(tierctl("status", NULL, NULL, NULL), 1);
	assert_non_null(strstr(out, "cannot reach tierd"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_tierctl),
	};

	return cmocka_run_group_tests(tests, NULL, harness_group_teardown);
}
