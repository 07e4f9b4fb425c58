/* SPDX-License-Identifier: MIT */
/* The --check-system verdicts against /proc, /sys and /dev fixture trees written under a temp dir,
 * plus one run on this machine. */
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

#include "../lib/uffd.h"
#include "syscheck.h"

struct fixture {
	char root[64];
	struct syscheck *sc;
	struct syscheck_uffd_probe probe;
};


static void put_huge(const struct fixture *fx, int node, unsigned size_kb, unsigned nr, unsigned nfree)
{
	char buf[32];

	snprintf(buf, sizeof(buf), "%u\n", nr);
	fx_put(fx->root, buf, "sys/devices/system/node/node%d/hugepages/hugepages-%ukB/nr_hugepages", node,
	    size_kb);
	snprintf(buf, sizeof(buf), "%u\n", nfree);
	fx_put(fx->root, buf, "sys/devices/system/node/node%d/hugepages/hugepages-%ukB/free_hugepages", node,
	    size_kb);
}

static void put_node(const struct fixture *fx, int id, const char *cpulist, unsigned mib,
		     const char *distance)
{
	char buf[512];

	snprintf(buf, sizeof(buf), "%s\n", cpulist);
	fx_put(fx->root, buf, "sys/devices/system/node/node%d/cpulist", id);
	snprintf(buf, sizeof(buf), "Node %d MemTotal: %u kB\nNode %d MemFree: %u kB\n", id, mib * 1024,
		 id, mib * 512);
	fx_put(fx->root, buf, "sys/devices/system/node/node%d/meminfo", id);
	snprintf(buf, sizeof(buf), "%s\n", distance);
	fx_put(fx->root, buf, "sys/devices/system/node/node%d/distance", id);
}

/* A healthy two-tier machine: node 0 with CPUs, node 1 CPU-less and farther, 2 MiB pools on
 * both, nothing fighting tierd, a PMU, BTF, root with every capability. */
static void put_good_machine(struct fixture *fx)
{
	fx_put(fx->root, "6.18.0-test\n", "proc/sys/kernel/osrelease");
	fx_put(fx->root, "0\n", "proc/sys/vm/unprivileged_userfaultfd");
	fx_put(fx->root, "0\n", "proc/sys/vm/nr_overcommit_hugepages");
	fx_put(fx->root, "0\n", "proc/sys/kernel/numa_balancing");
	fx_put(fx->root, "2\n", "proc/sys/kernel/perf_event_paranoid");
	fx_put(fx->root, "40\n", "proc/sys/kernel/cap_last_cap");
	fx_put(fx->root,
	    "Name:\ttierd\nUid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\nGroups:\t0 \n"
	    "CapEff:\t000001ffffffffff\n",
	    "proc/self/status");
	fx_put(fx->root, "bash\n", "proc/1/comm");
	fx_put(fx->root, "tierd\n", "proc/42/comm");
	fx_put(fx->root, "0-1\n", "sys/devices/system/node/online");
	put_node(fx, 0, "0-3", 4096, "10 20");
	put_node(fx, 1, "", 8192, "20 10");
	put_huge(fx, 0, 2048, 64, 60);
	put_huge(fx, 0, 1048576, 0, 0);
	put_huge(fx, 1, 2048, 32, 32);
	put_huge(fx, 1, 1048576, 0, 0);
	fx_put(fx->root, "false\n", "sys/kernel/mm/numa/demotion_enabled");
	fx_put(fx->root, "1\n", "sys/kernel/mm/damon/admin/kdamonds/nr_kdamonds");
	fx_put(fx->root, "off\n", "sys/kernel/mm/damon/admin/kdamonds/0/state");
	fx_put(fx->root, "", "sys/kernel/btf/vmlinux");
	fx_put(fx->root, "4\n", "sys/bus/event_source/devices/cpu/type");
	fx_put(fx->root, "skylake\n", "sys/bus/event_source/devices/cpu/caps/pmu_name");
	fx_put(fx->root, "[none] integrity confidentiality\n", "sys/kernel/security/lockdown");
	/* A character device the test may create without privilege: mode 0666. */
	fx_put(fx->root, "", "dev/.keep");
	{
		char path[PATH_MAX];

		snprintf(path, sizeof(path), "%s/dev/userfaultfd", fx->root);
		assert_int_equal(symlink("/dev/null", path), 0);
	}
}

static int setup(void **state)
{
	struct fixture *fx = calloc(1, sizeof(*fx));

	if (!fx)
		return -1;
	strcpy(fx->root, "/tmp/tierd-syscheck.XXXXXX");
	if (!mkdtemp(fx->root) || syscheck_new(&fx->sc) < 0) {
		free(fx);
		return -1;
	}
	fx->probe = (struct syscheck_uffd_probe){ .offered = 0x1ffff, .second_call_refused = true };
	put_good_machine(fx);
	*state = fx;
	return 0;
}


static int teardown(void **state)
{
	struct fixture *fx = *state;
	int r = fx_rmtree(fx->root);

	syscheck_free(fx->sc);
	free(fx);
	return r;
}

/* Runs the checks on the fixture (a fresh report each time). */
static void run(struct fixture *fx)
{
	fx->sc = syscheck_free(fx->sc);
	assert_int_equal(syscheck_new(&fx->sc), 0);
	assert_int_equal(syscheck_run(fx->sc, fx->root, &fx->probe), 0);
}

static const struct syscheck_item *item(const struct fixture *fx, const char *name)
{
	const struct syscheck_item *it = syscheck_find(fx->sc, name);

	if (!it)
		fail_msg("no item %s", name);
	return it;
}

/* The item's verdict, and that `found` and `fix` hold the given words (NULL: don't care). */
static void expect(const struct fixture *fx, const char *name, enum syscheck_verdict v,
		   const char *in_found, const char *in_fix)
{
	const struct syscheck_item *it = item(fx, name);

	if (it->verdict != v)
		fail_msg("%s: verdict %d, want %d: %s -- %s", name, it->verdict, v, it->found, it->fix);
	if (in_found && !strstr(it->found, in_found))
		fail_msg("%s: '%s' not in '%s'", name, in_found, it->found);
	if (in_fix && !strstr(it->fix, in_fix))
		fail_msg("%s: '%s' not in fix '%s'", name, in_fix, it->fix);
	/* Every WARN and FAIL says what to do; an OK carries no fix. */
	if (v == SYSCHECK_OK)
		assert_string_equal(it->fix, "");
	else
		assert_true(it->fix[0] != '\0');
}

static void test_good_machine(void **state)
{
	struct fixture *fx = *state;

	run(fx);
	for (unsigned i = 0; i < fx->sc->n; i++)
		if (fx->sc->items[i].verdict != SYSCHECK_OK)
			fail_msg("%s: %s -- %s", fx->sc->items[i].name, fx->sc->items[i].found,
				 fx->sc->items[i].fix);
	expect(fx, "uffd.api", SYSCHECK_OK, "MINOR_SHMEM", NULL);
	expect(fx, "uffd.dev", SYSCHECK_OK, "mode 0666", NULL);
	expect(fx, "numa.tiers", SYSCHECK_OK, "2 tiers over 2 nodes", NULL);
	expect(fx, "numa.tier0", SYSCHECK_OK, "node 0 (cpus, 4096 MiB", NULL);
	expect(fx, "numa.tier1", SYSCHECK_OK, "node 1 (no cpus", NULL);
	expect(fx, "hugepages.node0", SYSCHECK_OK, "2048kB 64 (60 free), 1048576kB 0", NULL);
	expect(fx, "hugepages.node1", SYSCHECK_OK, "tier 1: 2048kB 32 (32 free)", NULL);
	expect(fx, "hugepages.2M", SYSCHECK_OK, "96 pages", NULL);
	expect(fx, "hugepages.demote.2048kB", SYSCHECK_OK, NULL, NULL);
	/* No 1 GiB pages on the fast tier: nothing of that size to demote, no item. */
	assert_null(syscheck_find(fx->sc, "hugepages.demote.1048576kB"));
	expect(fx, "perf.pmu", SYSCHECK_OK, "cpu (skylake)", NULL);
	expect(fx, "kernel.lockdown", SYSCHECK_OK, "lockdown=none", NULL);
	assert_int_equal(syscheck_worst(fx->sc), SYSCHECK_OK);
}

static void test_uffd(void **state)
{
	struct fixture *fx = *state;

	/* Linux 5.13: hugetlbfs minor faults, not yet shmem. */
	fx_put(fx->root, "5.13.0\n", "proc/sys/kernel/osrelease");
	fx->probe.offered = 0x1fff & ~(uint64_t)UFFD_FEATURE_MINOR_SHMEM;
	run(fx);
	expect(fx, "uffd.minor_shmem", SYSCHECK_FAIL, "kernel 5.13.0 lacks UFFD_FEATURE_MINOR_SHMEM",
	       "Linux >= 5.14");
	expect(fx, "uffd.minor_hugetlbfs", SYSCHECK_OK, NULL, NULL);
	assert_int_equal(syscheck_worst(fx->sc), SYSCHECK_FAIL);

	/* No userfaultfd at all: one FAIL, no per-feature lines. */
	fx->probe = (struct syscheck_uffd_probe){ .err = -ENOSYS };
	run(fx);
	expect(fx, "uffd.api", SYSCHECK_FAIL, "no userfaultfd", "CONFIG_USERFAULTFD");
	assert_null(syscheck_find(fx->sc, "uffd.minor_shmem"));
	fx->probe = (struct syscheck_uffd_probe){ .err = -EPERM };
	run(fx);
	expect(fx, "uffd.api", SYSCHECK_FAIL, NULL, "root");
}

static void test_uffd_dev(void **state)
{
	struct fixture *fx = *state;

	/* Absent while unprivileged userfaultfd is off: unprivileged clients cannot be tracked. */
	fx_del(fx->root, "dev/userfaultfd");
	run(fx);
	expect(fx, "uffd.unprivileged", SYSCHECK_OK, "vm.unprivileged_userfaultfd=0", NULL);
	expect(fx, "uffd.dev", SYSCHECK_WARN, "absent", "vm.unprivileged_userfaultfd=1");
	/* ... and not needed when it is on. */
	fx_put(fx->root, "1\n", "proc/sys/vm/unprivileged_userfaultfd");
	run(fx);
	expect(fx, "uffd.dev", SYSCHECK_OK, "not needed", NULL);
	expect(fx, "uffd.unprivileged", SYSCHECK_OK, "=1", NULL);

	/* Not a device node. */
	fx_put(fx->root, "0\n", "proc/sys/vm/unprivileged_userfaultfd");
	fx_put(fx->root, "", "dev/userfaultfd");
	run(fx);
	expect(fx, "uffd.dev", SYSCHECK_WARN, "not a character device", "devtmpfs");
}

static void test_numa(void **state)
{
	struct fixture *fx = *state;

	/* One node: tracking only. */
	fx_put(fx->root, "0\n", "sys/devices/system/node/online");
	put_node(fx, 0, "0-3", 4096, "10");
	run(fx);
	expect(fx, "numa.tiers", SYSCHECK_WARN, "nothing to migrate: tracking only", "slower memory node");
	assert_null(syscheck_find(fx->sc, "hugepages.demote.2048kB"));

	/* No NUMA sysfs at all. */
	fx_del(fx->root, "sys/devices/system/node/online");
	run(fx);
	expect(fx, "numa.tiers", SYSCHECK_WARN, "tracking only", "CONFIG_NUMA");
}

static void test_hugepages(void **state)
{
	struct fixture *fx = *state;

	/* The slow node has no 2 MiB pool: demotion depends on a fresh allocation there. */
	put_huge(fx, 1, 2048, 0, 0);
	run(fx);
	expect(fx, "hugepages.demote.2048kB", SYSCHECK_WARN, "no pool on tier 1 (node 1)",
	       "/sys/devices/system/node/node1/hugepages/hugepages-2048kB/nr_hugepages");
	expect(fx, "hugepages.2M", SYSCHECK_OK, "64 pages", NULL);

	/* 1 GiB pages on the fast tier, none free on the slow one: they cannot move at all. */
	put_huge(fx, 0, 1048576, 2, 2);
	put_huge(fx, 1, 1048576, 1, 0);
	run(fx);
	expect(fx, "hugepages.demote.1048576kB", SYSCHECK_WARN, "cannot be demoted", "node1");

	/* No 2 MiB pool anywhere: hugetlbfs segments cannot be created. */
	put_huge(fx, 0, 2048, 0, 0);
	run(fx);
	expect(fx, "hugepages.2M", SYSCHECK_WARN, "cannot be created", "vm.nr_hugepages");
	assert_null(syscheck_find(fx->sc, "hugepages.demote.2048kB"));
	/* ... unless surplus pages may be allocated on demand. */
	fx_put(fx->root, "16\n", "proc/sys/vm/nr_overcommit_hugepages");
	run(fx);
	expect(fx, "hugepages.2M", SYSCHECK_OK, "nr_overcommit_hugepages=16", NULL);
}

static void test_numa_balancing(void **state)
{
	struct fixture *fx = *state;

	fx_put(fx->root, "1\n", "proc/sys/kernel/numa_balancing");
	run(fx);
	expect(fx, "conflict.numa_balancing", SYSCHECK_WARN, "toward the CPUs",
	       "sysctl -w kernel.numa_balancing=0");
	fx_put(fx->root, "2\n", "proc/sys/kernel/numa_balancing");
	run(fx);
	expect(fx, "conflict.numa_balancing", SYSCHECK_WARN, "promotes", "kernel.numa_balancing=0");
	assert_null(strstr(item(fx, "conflict.numa_balancing")->found, "toward the CPUs"));
	fx_put(fx->root, "3\n", "proc/sys/kernel/numa_balancing");
	run(fx);
	expect(fx, "conflict.numa_balancing", SYSCHECK_WARN, "toward the CPUs", NULL);
	expect(fx, "conflict.numa_balancing", SYSCHECK_WARN, "promotes", NULL);
	fx_del(fx->root, "proc/sys/kernel/numa_balancing");
	run(fx);
	expect(fx, "conflict.numa_balancing", SYSCHECK_OK, "absent", NULL);
}

static void test_numad(void **state)
{
	struct fixture *fx = *state;

	fx_put(fx->root, "numad\n", "proc/777/comm");
	run(fx);
	expect(fx, "conflict.numad", SYSCHECK_WARN, "pid 777", "numad");
}

static void test_damon(void **state)
{
	struct fixture *fx = *state;
	const char *s = "sys/kernel/mm/damon/admin/kdamonds/0/contexts/0/schemes";

	fx_put(fx->root, "pageout\n", "%s/0/action", s);
	fx_put(fx->root, "migrate_cold\n", "%s/1/action", s);
	fx_put(fx->root, "1\n", "%s/1/target_nid", s);
	run(fx);
	/* Off: configured, harmless for now. */
	expect(fx, "conflict.damon", SYSCHECK_OK, "kdamonds are off", NULL);

	fx_put(fx->root, "on\n", "sys/kernel/mm/damon/admin/kdamonds/0/state");
	run(fx);
	expect(fx, "conflict.damon", SYSCHECK_WARN, "scheme 1 migrate_cold to node 1",
	       "echo off > /sys/kernel/mm/damon/admin/kdamonds/0/state");
	assert_null(strstr(item(fx, "conflict.damon")->found, "pageout"));
}

static void test_demotion(void **state)
{
	struct fixture *fx = *state;

	fx_put(fx->root, "true\n", "sys/kernel/mm/numa/demotion_enabled");
	run(fx);
	/* Informative only. */
	expect(fx, "conflict.demotion", SYSCHECK_OK, "tierd's included", NULL);
}

static void test_bpf_perf(void **state)
{
	struct fixture *fx = *state;

	fx_put(fx->root, "3\n", "proc/sys/kernel/perf_event_paranoid");
	fx_del(fx->root, "sys/kernel/btf/vmlinux");
	fx_del(fx->root, "sys/bus/event_source/devices/cpu/type");
	fx_put(fx->root, "[confidentiality]\n", "sys/kernel/security/lockdown");
	run(fx);
	expect(fx, "perf.paranoid", SYSCHECK_WARN, "CAP_SYS_ADMIN", "kernel.perf_event_paranoid=2");
	expect(fx, "bpf.btf", SYSCHECK_WARN, "absent", "CONFIG_DEBUG_INFO_BTF");
	expect(fx, "perf.pmu", SYSCHECK_WARN, "no hardware PMU: software page-fault sampling only", NULL);
	expect(fx, "kernel.lockdown", SYSCHECK_WARN, "confidentiality", "lockdown=integrity");

	/* Hybrid Intel: cpu_core and cpu_atom instead of cpu. */
	fx_put(fx->root, "8\n", "sys/bus/event_source/devices/cpu_core/type");
	fx_del(fx->root, "sys/kernel/security/lockdown");
	run(fx);
	expect(fx, "perf.pmu", SYSCHECK_OK, "cpu_core", NULL);
	expect(fx, "kernel.lockdown", SYSCHECK_OK, "unknown", NULL);
}

static void test_caps(void **state)
{
	struct fixture *fx = *state;

	/* A non-root user with CAP_BPF only (bit 39). */
	fx_put(fx->root,
	    "Name:\ttierd\nUid:\t1000\t1000\t1000\t1000\nGid:\t1000\t1000\t1000\t1000\n"
	    "Groups:\t1000 \nCapEff:\t0000008000000000\n",
	    "proc/self/status");
	run(fx);
	expect(fx, "cap.sys_nice", SYSCHECK_WARN, "--migrate-mode mapped", "CAP_SYS_NICE");
	expect(fx, "cap.perfmon", SYSCHECK_WARN, "lacks CAP_PERFMON", "CAP_PERFMON");
	expect(fx, "cap.sys_ptrace", SYSCHECK_WARN, "other users", "CAP_SYS_PTRACE");
	expect(fx, "cap.bpf", SYSCHECK_OK, NULL, NULL);

	/* The device node is 0666 here (/dev/null): still usable. A root-only one is not: this
	 * machine's own /dev/userfaultfd is 0600 root. */
	fx_del(fx->root, "dev/userfaultfd");
	{
		char path[PATH_MAX];
		struct stat st;

		snprintf(path, sizeof(path), "%s/dev/userfaultfd", fx->root);
		if (stat("/dev/userfaultfd", &st) == 0 && S_ISCHR(st.st_mode) && (st.st_mode & 06) == 0 &&
		    st.st_uid != 1000 && st.st_gid != 1000) {
			assert_int_equal(symlink("/dev/userfaultfd", path), 0);
			run(fx);
			expect(fx, "uffd.dev", SYSCHECK_WARN, "uid 1000", "udev");
		} else {
			print_message("no root-only /dev/userfaultfd here: access refusal not tested\n");
		}
	}

	/* A kernel before 5.8 has no CAP_BPF: CAP_SYS_ADMIN stands in. */
	fx_put(fx->root, "37\n", "proc/sys/kernel/cap_last_cap");
	fx_put(fx->root, "Uid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\nCapEff:\t0000000000200000\n", "proc/self/status");
	run(fx);
	expect(fx, "cap.bpf", SYSCHECK_OK, "CAP_SYS_ADMIN held", NULL);
	expect(fx, "cap.sys_nice", SYSCHECK_WARN, NULL, NULL);
}

static void test_print(void **state)
{
	struct fixture *fx = *state;
	char *out = NULL;
	size_t len = 0;
	FILE *f;

	fx_put(fx->root, "1\n", "proc/sys/kernel/numa_balancing");
	run(fx);
	f = open_memstream(&out, &len);
	assert_non_null(f);
	assert_int_equal(syscheck_print(fx->sc, f), 0);
	assert_int_equal(fclose(f), 0);
	/* One line per item, verdict first, the fix after the finding. */
	{
		unsigned lines = 0;

		for (const char *p = out; (p = strchr(p, '\n')); p++)
			lines++;
		assert_int_equal(lines, fx->sc->n);
	}
	assert_non_null(strstr(out, "\nWARN conflict.numa_balancing  kernel.numa_balancing=1:"));
	assert_non_null(strstr(out, " -- fix: sysctl -w kernel.numa_balancing=0"));
	assert_non_null(strstr(out, "\nOK   conflict.numad"));
	free(out);
}

/* This machine: the run completes and every item has a verdict; the report is printed. */
static void test_real_machine(void **state)
{
	struct syscheck_uffd_probe probe = { .offered = 0x1ffff };
	struct syscheck *sc;

	(void)state;
	assert_int_equal(syscheck_new(&sc), 0);
	assert_int_equal(syscheck_run(sc, "", &probe), 0);
	assert_non_null(syscheck_find(sc, "numa.tiers"));
	assert_non_null(syscheck_find(sc, "conflict.numa_balancing"));
	assert_non_null(syscheck_find(sc, "cap.sys_nice"));
	syscheck_free(sc);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(test_good_machine),
		T(test_uffd),
		T(test_uffd_dev),
		T(test_numa),
		T(test_hugepages),
		T(test_numa_balancing),
		T(test_numad),
		T(test_damon),
		T(test_demotion),
		T(test_bpf_perf),
		T(test_caps),
		T(test_print),
		cmocka_unit_test(test_real_machine),
	};
#undef T

	return cmocka_run_group_tests_name("check-system report", tests, NULL, NULL);
}
