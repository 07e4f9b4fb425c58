/* SPDX-License-Identifier: MIT */
/* The perf_event sampler's event choice (daemon/perfsel.c) against sysfs fixture trees: AMD IBS,
 * Intel PEBS mem-loads (plain and hybrid), the software fallback, and malformed format files. */
#include <errno.h>
#include <ftw.h>
#include <limits.h>
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

#include "fixture.h"
#include "perfsel.h"

#define PMU "sys/bus/event_source/devices"

struct fx {
	char root[64];
	char sys[96];
};

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	if (!f)
		return -1;
	snprintf(f->root, sizeof(f->root), "/tmp/test_perfsel.XXXXXX");
	if (!mkdtemp(f->root)) {
		free(f);
		return -1;
	}
	snprintf(f->sys, sizeof(f->sys), "%s/sys", f->root);
	fx_put(f->root, "", "sys/.keep");
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	int r = fx_rmtree(f->root);

	free(f);
	return r;
}

/* An Intel core PMU as the kernel lays it out (type 4, the formats of Skylake and later). */
static void put_intel(const struct fx *f, const char *pmu)
{
	fx_put(f->root, "4\n", PMU "/%s/type", pmu);
	fx_put(f->root, "event=0xcd,umask=0x1,ldlat=3\n", PMU "/%s/events/mem-loads", pmu);
	fx_put(f->root, "config:0-7\n", PMU "/%s/format/event", pmu);
	fx_put(f->root, "config:8-15\n", PMU "/%s/format/umask", pmu);
	fx_put(f->root, "config1:0-15\n", PMU "/%s/format/ldlat", pmu);
}

static void test_software_only(void **state)
{
	struct fx *f = *state;
	struct perfsel p;
	char why[256] = "";

	assert_int_equal(perfsel_probe(f->sys, false, 0, &p, why, sizeof(why)), -ENOENT);
	assert_int_equal(p.kind, PERFSEL_NONE);
	assert_non_null(strstr(why, "no PEBS"));
	assert_int_equal(perfsel_probe(f->sys, true, 0, &p, why, sizeof(why)), 0);
	assert_int_equal(p.kind, PERFSEL_SOFTWARE);
	assert_int_equal(p.type, 1);   /* PERF_TYPE_SOFTWARE */
	assert_int_equal(p.config, 2); /* PERF_COUNT_SW_PAGE_FAULTS */
	assert_int_equal(p.sample_period, PERFSEL_PERIOD_SOFTWARE);
	assert_int_equal(perfsel_probe(f->sys, true, 8, &p, why, sizeof(why)), 0);
	assert_int_equal(p.sample_period, 8);
	assert_string_equal(p.desc, "software page-faults, period 8");
}

static void test_intel_pebs(void **state)
{
	struct fx *f = *state;
	struct perfsel p;
	char why[256] = "";

	put_intel(f, "cpu");
	assert_int_equal(perfsel_probe(f->sys, true, 0, &p, why, sizeof(why)), 0);
	assert_int_equal(p.kind, PERFSEL_PEBS);
	assert_int_equal(p.type, 4);
	assert_int_equal(p.config, 0x1cd);
	assert_int_equal(p.config1, 3);
	assert_int_equal(p.precise_ip, 2);
	assert_int_equal(p.sample_period, PERFSEL_PERIOD_PEBS);
	assert_non_null(strstr(p.desc, "PEBS cpu/mem-loads/"));
}

static void test_intel_hybrid(void **state)
{
	struct fx *f = *state;
	struct perfsel p;
	char why[256] = "";

	put_intel(f, "cpu_core");
	assert_int_equal(perfsel_probe(f->sys, false, 20011, &p, why, sizeof(why)), 0);
	assert_int_equal(p.kind, PERFSEL_PEBS);
	assert_int_equal(p.sample_period, 20011);
	assert_non_null(strstr(p.desc, "cpu_core/mem-loads/"));
}

/* IBS is preferred where both appear (an AMD machine shows no mem-loads; the order is a choice). */
static void test_amd_ibs(void **state)
{
	struct fx *f = *state;
	struct perfsel p;
	char why[256] = "";

	put_intel(f, "cpu");
	fx_put(f->root, "11\n", PMU "/ibs_op/type");
	fx_put(f->root, "config:19\n", PMU "/ibs_op/format/cnt_ctl");
	assert_int_equal(perfsel_probe(f->sys, true, 0, &p, why, sizeof(why)), 0);
	assert_int_equal(p.kind, PERFSEL_IBS);
	assert_int_equal(p.type, 11);
	assert_int_equal(p.config, UINT64_C(1) << 19);
	assert_int_equal(p.precise_ip, 0);
	assert_int_equal(p.sample_period, PERFSEL_PERIOD_IBS);
	/* Without cnt_ctl (older IBS): cycles, config 0. */
	fx_del(f->root, PMU "/ibs_op/format/cnt_ctl");
	assert_int_equal(perfsel_probe(f->sys, true, 0, &p, why, sizeof(why)), 0);
	assert_int_equal(p.kind, PERFSEL_IBS);
	assert_int_equal(p.config, 0);
}

static void test_encode(void **state)
{
	struct fx *f = *state;
	char dir[160];
	uint64_t c, c1;

	snprintf(dir, sizeof(dir), "%s/" PMU "/cpu", f->root);
	put_intel(f, "cpu");
	fx_put(f->root, "config:0-7,32-35\n", PMU "/cpu/format/split");
	fx_put(f->root, "config:21\n", PMU "/cpu/format/bit");
	fx_put(f->root, "config2:0-7\n", PMU "/cpu/format/far");
	fx_put(f->root, "config:0-3\n", PMU "/cpu/format/small");
	assert_int_equal(perfsel_encode(dir, "split=0x1ff,bit", &c, &c1), 0);
	assert_int_equal(c, 0xffu | (UINT64_C(1) << 32) | (UINT64_C(1) << 21));
	assert_int_equal(c1, 0);
	assert_int_equal(perfsel_encode(dir, "nosuch=1", &c, &c1), -ENOENT);
	assert_int_equal(perfsel_encode(dir, "far=1", &c, &c1), -EINVAL);
	assert_int_equal(perfsel_encode(dir, "small=0x10", &c, &c1), -EINVAL); /* wider than 4 bits */
	assert_int_equal(perfsel_encode(dir, "event=zz", &c, &c1), -EINVAL);
	assert_int_equal(perfsel_encode(dir, "../x=1", &c, &c1), -EINVAL);
	/* A mem-loads that does not encode is an error, not a silent fallback to software. */
	fx_put(f->root, "event=0xcd,nosuch=1\n", PMU "/cpu/events/mem-loads");
	{
		struct perfsel p;
		char why[256] = "";

		assert_int_equal(perfsel_probe(f->sys, true, 0, &p, why, sizeof(why)), -EINVAL);
		assert_non_null(strstr(why, "mem-loads"));
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_software_only, setup, teardown),
		cmocka_unit_test_setup_teardown(test_intel_pebs, setup, teardown),
		cmocka_unit_test_setup_teardown(test_intel_hybrid, setup, teardown),
		cmocka_unit_test_setup_teardown(test_amd_ibs, setup, teardown),
		cmocka_unit_test_setup_teardown(test_encode, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
