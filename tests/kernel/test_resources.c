/* SPDX-License-Identifier: MIT */
/*
 * Resource faults in tierd that must never reach an application (issue 8), each visible in the
 * status document and the metrics:
 *   - tierd under a low RLIMIT_AS (as a MemoryMax= or a crowded host would leave it): a client
 *     whose segment tierd cannot map (ENOMEM on the alias mapping) is refused with the reason and
 *     runs on untracked, its data intact; tierd keeps serving the client it has; once memory is
 *     back the refused client attaches on its own;
 *   - the eBPF sampler's map full (sampling.bpf_map_entries = 16): the faults beyond it are
 *     counted as overflow, and the client does not notice;
 *   - tierd in a memory cgroup whose limit (MemoryMax=) has no room for loading the eBPF
 *     programs: it leaves them off and says why instead of being OOM-killed, and serves.
 * The fd limit is tests/kernel/test_scale.c's.
 */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"
#include "tierd/proto.h"
#include "tierd/tier.h"

/* The refused client's segment: far beyond the address space left to tierd. */
#define BIG_BYTES (512ull << 20)
/* Address space tierd gets beyond what it has mapped when the limit is set. */
#define AS_HEADROOM_KB (32 * 1024)

static char sock[128];

static long long metric(const char *text, const char *name)
{
	char pat[128];
	const char *p;

	snprintf(pat, sizeof(pat), "\n%s ", name);
	p = strstr(text, pat);
	return p ? strtoll(p + strlen(pat), NULL, 10) : -1;
}

static void fetch_metrics(const char *s, char *buf, size_t len)
{
	assert_int_equal(tier_control(s, TIERD_CTL_METRICS, 0, NULL, 0, -1, buf, len), 0);
}

static void test_rlimit_as(void **state)
{
	struct tier_options small = { .kind = TIER_SHMEM, .size = 1u << 20, .name = "small",
				      .socket_path = sock },
			    big = { .kind = TIER_SHMEM, .size = BIG_BYTES, .name = "big",
				    .socket_path = sock };
	struct tier_segment *a, *b;
	struct tier_info ia, ib;
	struct rlimit old, low;
	char js[65536], text[65536];
	long vm_kb;
	uint8_t *p;
	pid_t d;

	(void)state;
	snprintf(sock, sizeof(sock), "%s/as.sock", harness_dir());
	d = daemon_start(sock, NULL);
	assert_true(d > 0);
	assert_int_equal(tier_segment_create(&small, &a), 0);
	assert_int_equal(tier_segment_wait_tracked(a, 5000), 0);
	/* Only the soft limit comes down: raising it again needs no privilege. */
	vm_kb = proc_status_kb(d, "VmSize");
	assert_true(vm_kb > 0);
	assert_int_equal(prlimit(d, RLIMIT_AS, NULL, &old), 0);
	low = (struct rlimit){ (rlim_t)(vm_kb + AS_HEADROOM_KB) * 1024, old.rlim_max };
	assert_int_equal(prlimit(d, RLIMIT_AS, &low, NULL), 0);

	/* The application's side works whatever tierd can do. */
	assert_int_equal(tier_segment_create(&big, &b), 0);
	p = tier_segment_addr(b);
	for (size_t off = 0; off < BIG_BYTES; off += 1u << 16)
		p[off] = (uint8_t)(off >> 16);
	msleep(1500); /* a few refused attempts (libtier backs off from 50 ms) */
	tier_segment_info(b, &ib);
	print_message("  big segment under RLIMIT_AS VmSize+%u MiB: state %d, attaches %llu, last "
		      "error %d: %s\n", AS_HEADROOM_KB / 1024, ib.state,
		      (unsigned long long)ib.attaches, ib.last_error, ib.last_reason);
	assert_int_equal(ib.state, TIER_STATE_UNTRACKED);
	assert_int_equal(ib.last_error, -ENOMEM);
	assert_non_null(strstr(ib.last_reason, "Cannot allocate memory"));
	assert_true(status_fetch(sock, js, sizeof(js)) > 0);
	assert_true(json_int(js, "\"resources\"", "attach_nomem") >= 1);
	fetch_metrics(sock, text, sizeof(text));
	assert_true(metric(text, "tierd_attach_nomem_total") >= 1);
	/* The client tierd has is served all along. */
	tier_segment_info(a, &ia);
	assert_int_equal(ia.state, TIER_STATE_TRACKED);
	assert_int_equal(ia.attaches, 1);

	/* Memory back: the refused client attaches on its own (libtier's back-off tops at 2 s). */
	assert_int_equal(prlimit(d, RLIMIT_AS, &old, NULL), 0);
	assert_int_equal(tier_segment_wait_tracked(b, 10000), 0);
	for (size_t off = 0; off < BIG_BYTES; off += 1u << 16)
		assert_int_equal(p[off], (uint8_t)(off >> 16));
	tier_segment_destroy(b);
	tier_segment_destroy(a);
	assert_int_equal(daemon_stop(d), 0);
}

static void test_bpf_map_full(void **state)
{
	char conf[256], cout[256], js[65536], text[65536];
	char *argv[] = { (char *)harness_bin("tests/helpers/tier-client"), "--socket", sock, "--kind",
			 "shmem", "--threads", "2", "--mib", "16", "--ms", "1500", "--wait-tracked",
			 "3000", NULL };
	long long overflow;
	FILE *f;
	pid_t d, c;

	(void)state;
	if (access("/sys/kernel/btf/vmlinux", R_OK) < 0) {
		print_message("skipped: no kernel BTF, no eBPF sampler\n");
		skip();
	}
	snprintf(sock, sizeof(sock), "%s/bpf.sock", harness_dir());
	snprintf(conf, sizeof(conf), "%s/bpf.conf", harness_dir());
	snprintf(cout, sizeof(cout), "%s/bpf.client", harness_dir());
	f = fopen(conf, "we");
	assert_non_null(f);
	fputs("[sampling]\nbpf = yes\nbpf_map_entries = 16\n", f);
	fclose(f);
	d = daemon_start(sock, "--config", conf, "--epoch-ms", "50", NULL);
	assert_true(d > 0);
	assert_true(status_fetch(sock, js, sizeof(js)) > 0);
	if (!strstr(js, "\"page_fault\":\"on\"")) {
		daemon_stop(d);
		print_message("skipped: the eBPF sampler is off here\n");
		skip();
	}
	c = spawn_out(argv, cout, NULL);
	/* The client verifies every access and page: 0 is "no error reached it". */
	assert_int_equal(wait_exit(c, 30000), 0);
	msleep(200);
	assert_true(status_fetch(sock, js, sizeof(js)) > 0);
	overflow = json_int(js, "\"samplers\"", "overflow");
	fetch_metrics(sock, text, sizeof(text));
	print_message("  16-entry map: %lld samples, overflow %lld (metric %lld)\n",
		      json_int(js, "\"samplers\"", "samples"), overflow,
		      metric(text, "tierd_bpf_overflow_total"));
	assert_true(overflow > 0);
	assert_int_equal(metric(text, "tierd_bpf_overflow_total"), overflow);
	assert_int_equal(daemon_stop(d), 0);
}

/* A failed case leaves its cgroup: remove it once its tierd is gone (group teardown). */
static char memcg_left[160];

/* The memory cgroup hierarchy here: v1's memory controller, or v2 with it enabled. */
struct memcg {
	char root[64], dir[160], back[512];
	const char *limit_file, *events_file, *events_key;
};

static bool memcg_find(struct memcg *cg)
{
	char buf[256];

	if (access("/sys/fs/cgroup/memory/cgroup.procs", W_OK) == 0) {
		snprintf(cg->root, sizeof(cg->root), "/sys/fs/cgroup/memory");
		cg->limit_file = "memory.limit_in_bytes";
		cg->events_file = "memory.oom_control";
	} else if (read_text("/sys/fs/cgroup/cgroup.subtree_control", buf, sizeof(buf)) >= 0 &&
		   strstr(buf, "memory")) {
		snprintf(cg->root, sizeof(cg->root), "/sys/fs/cgroup");
		cg->limit_file = "memory.max";
		cg->events_file = "memory.events";
	} else {
		return false;
	}
	cg->events_key = "oom_kill";
	snprintf(cg->dir, sizeof(cg->dir), "%s/tierd-test.%d", cg->root, (int)getpid());
	return true;
}

static void put(const char *dir, const char *name, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void put(const char *dir, const char *name, const char *fmt, ...)
{
	char path[320];
	va_list ap;
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "we");
	assert_non_null(f);
	va_start(ap, fmt);
	vfprintf(f, fmt, ap);
	va_end(ap);
	assert_int_equal(fclose(f), 0);
}

/* This process's cgroup directory in cg's hierarchy, to come back to. */
static void memcg_here(struct memcg *cg)
{
	char text[4096], *l;
	bool v1 = strcmp(cg->root, "/sys/fs/cgroup") != 0;

	assert_true(read_text("/proc/self/cgroup", text, sizeof(text)) > 0);
	for (l = strtok(text, "\n"); l; l = strtok(NULL, "\n"))
		if (v1 ? strstr(l, ":memory:") != NULL : strncmp(l, "0::", 3) == 0)
			break;
	assert_non_null(l);
	snprintf(cg->back, sizeof(cg->back), "%s%s", cg->root, strrchr(l, ':') + 1);
}

/* tierd started inside a fresh memory cgroup limited to `mib` MiB (the test process joins it for
 * the fork only). Returns tierd's pid; its status is in js. */
static pid_t start_limited(struct memcg *cg, unsigned mib, char *js, size_t len)
{
	pid_t d;

	assert_int_equal(mkdir(cg->dir, 0755), 0);
	snprintf(memcg_left, sizeof(memcg_left), "%s", cg->dir);
	put(cg->dir, cg->limit_file, "%llu\n", (unsigned long long)mib << 20);
	memcg_here(cg);
	put(cg->dir, "cgroup.procs", "%d\n", (int)getpid());
	d = daemon_start(sock, "--epoch-ms", "100", NULL);
	put(cg->back, "cgroup.procs", "%d\n", (int)getpid());
	assert_true(d > 0);
	assert_true(status_fetch(sock, js, len) > 0);
	return d;
}

static long long oom_kills(const struct memcg *cg)
{
	char path[320], text[4096];

	const char *p;

	snprintf(path, sizeof(path), "%s/%s", cg->dir, cg->events_file);
	assert_true(read_text(path, text, sizeof(text)) > 0);
	/* "oom_kill N" on a line of its own (v1 memory.oom_control, v2 memory.events). */
	for (p = text; p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
		if (!strncmp(p, cg->events_key, strlen(cg->events_key)) && p[strlen(cg->events_key)] == ' ')
			return strtoll(p + strlen(cg->events_key) + 1, NULL, 10);
	return -1;
}

static int teardown(void **state)
{
	int r = harness_group_teardown(state);

	if (memcg_left[0])
		(void)rmdir(memcg_left);
	return r;
}

static void test_memory_limit(void **state)
{
	static char js[65536];
	char cout[256];
	char *argv[] = { (char *)harness_bin("tests/helpers/tier-client"), "--socket", sock, "--kind",
			 "shmem", "--threads", "2", "--mib", "64", "--ms", "1000", "--wait-tracked",
			 "3000", NULL };
	const char *pf;
	struct memcg cg;
	pid_t d, c;

	(void)state;
#if defined(__SANITIZE_ADDRESS__)
	/* An ASan tierd's runtime alone takes more than these limits: the plain build's test. */
	print_message("skipped: sanitizer build\n");
	skip();
#endif
	if (access("/sys/kernel/btf/vmlinux", R_OK) < 0 || !memcg_find(&cg)) {
		print_message("skipped: needs kernel BTF and a writable memory cgroup hierarchy\n");
		skip();
	}
	snprintf(sock, sizeof(sock), "%s/memcg.sock", harness_dir());
	snprintf(cout, sizeof(cout), "%s/memcg.client", harness_dir());

	/* 8 MiB: tierd needs under 1 MiB itself, loading the programs ~16 MiB more at its peak
	 * (measured here; a load into this limit was OOM-killed). */
	d = start_limited(&cg, 8, js, sizeof(js));
	pf = strstr(js, "\"page_fault\":\"");
	assert_non_null(pf);
	print_message("8 MiB: %.200s\n", pf);
	assert_non_null(strstr(pf, "\"page_fault\":\"off: tierd's memory limit leaves"));
	assert_non_null(strstr(pf, "MemoryMax="));
	/* It serves: a client is tracked and sees every byte it wrote. */
	c = spawn_out(argv, cout, NULL);
	assert_int_equal(wait_exit(c, 30000), 0);
	assert_int_equal(kill(d, 0), 0);
	assert_int_equal(oom_kills(&cg), 0);
	assert_int_equal(daemon_stop(d), 0);
	assert_int_equal(rmdir(cg.dir), 0);

	/* Room enough: the programs load. */
	d = start_limited(&cg, 64, js, sizeof(js));
	assert_non_null(strstr(js, "\"page_fault\":\"on\""));
	assert_int_equal(daemon_stop(d), 0);
	assert_int_equal(oom_kills(&cg), 0);
	assert_int_equal(rmdir(cg.dir), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rlimit_as),
		cmocka_unit_test(test_bpf_map_full),
		cmocka_unit_test(test_memory_limit),
	};

	if (geteuid() != 0) {
		fprintf(stderr, "kernel tests need root\n");
		return 77;
	}
	setenv("TIERD_QUIET", "1", 1);
	return cmocka_run_group_tests_name("resource faults", tests, NULL, teardown);
}
