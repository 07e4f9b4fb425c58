/* SPDX-License-Identifier: MIT */
/*
 * The migration-outcome counter (bpf/migrate.bpf.c through daemon/bpf.c) where pages really move
 * (the multi-node guest of tests/vm/; on one node move_pages(2) to the node a page is on never
 * calls migrate_pages(), so the tracepoint does not fire at all): this process loads it, as tierd
 * does, and counts only its own migrations — N pages moved by move_pages(2) are N succeeded under
 * reason "syscall", an mbind(2) MPOL_MF_MOVE under "mempolicy_mbind", and a child process's
 * moves are not counted. Skips on one node, without root or kernel BTF.
 */
#include <errno.h>
#include <numa.h>
#include <numaif.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "bpf.h"
#include "harness.h"
#include "log.h"

#define PAGE 4096u
#define NPAGES 64u

static int reason_index(struct tierd_bpf *mg, const char *name)
{
	for (unsigned r = 0; r < TIERD_BPF_MIGRATE_REASONS; r++) {
		const char *n = tierd_bpf_migrate_reason(mg, r);

		if (n && !strcmp(n, name))
			return (int)r;
	}
	return -1;
}

static struct tierd_kmig sum(const struct tierd_kmig k[TIERD_BPF_MIGRATE_REASONS])
{
	struct tierd_kmig t = { 0 };

	for (unsigned r = 0; r < TIERD_BPF_MIGRATE_REASONS; r++) {
		t.calls += k[r].calls;
		t.succeeded += k[r].succeeded;
		t.failed += k[r].failed;
	}
	return t;
}

/* Anonymous pages, written (so they exist) on `node`; NOHUGEPAGE: THP is on in the guest. */
static uint8_t *pages_on(int node)
{
	unsigned long mask = 1ul << node;
	uint8_t *m = mmap(NULL, NPAGES * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	assert_true(m != MAP_FAILED);
	assert_int_equal(madvise(m, NPAGES * PAGE, MADV_NOHUGEPAGE), 0);
	assert_int_equal(mbind(m, NPAGES * PAGE, MPOL_BIND, &mask, sizeof(mask) * 8, 0), 0);
	memset(m, 0x5a, NPAGES * PAGE);
	return m;
}

/* move_pages(2) of all NPAGES to `node`; returns how many report that node. */
static unsigned move_all(uint8_t *m, int node)
{
	void *pages[NPAGES];
	int nodes[NPAGES], status[NPAGES];
	unsigned ok = 0;

	for (unsigned i = 0; i < NPAGES; i++) {
		pages[i] = m + i * PAGE;
		nodes[i] = node;
	}
	assert_int_equal(move_pages(0, NPAGES, pages, nodes, status, MPOL_MF_MOVE), 0);
	for (unsigned i = 0; i < NPAGES; i++)
		ok += status[i] == node;
	return ok;
}

static void test_own_moves_counted(void **state)
{
	struct tierd_kmig k[TIERD_BPF_MIGRATE_REASONS], t;
	struct tierd_bpf_opts o = { .map_entries = 64, .max_procs = 16 };
	struct tierd_bpf *mg = NULL;
	int sys, mb, to, st;
	unsigned moved;
	char why[256];
	uint8_t *m;
	pid_t kid;

	(void)state;
	if (geteuid() != 0 || access("/sys/kernel/btf/vmlinux", R_OK) < 0) {
		print_message("skipped: needs root and kernel BTF\n");
		skip();
	}
	if (numa_available() < 0 || numa_num_configured_nodes() < 2) {
		print_message("skipped: one NUMA node: move_pages to the same node migrates nothing\n");
		skip();
	}
	to = numa_max_node();
	if (tierd_bpf_new(&o, &mg, why, sizeof(why)) < 0)
		fail_msg("tierd_bpf_new: %s", why);
	if (tierd_bpf_migrate_status(mg))
		fail_msg("migration counter off: %s", tierd_bpf_migrate_status(mg));
	sys = reason_index(mg, "syscall");
	mb = reason_index(mg, "mempolicy_mbind");
	assert_true(sys >= 0 && mb >= 0);

	/* A child's moves (another tgid) are not counted. */
	kid = fork();
	assert_true(kid >= 0);
	if (kid == 0) {
		uint8_t *c = pages_on(0);

		_exit(move_all(c, to) == NPAGES ? 0 : 1);
	}
	assert_int_equal(waitpid(kid, &st, 0), kid);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	assert_int_equal(tierd_bpf_migrate_read(mg, k), 0);
	t = sum(k);
	print_message("child moved %u pages: counted %llu calls\n", NPAGES, (unsigned long long)t.calls);
	assert_int_equal(t.calls, 0);

	/* Our own: NPAGES moved by move_pages(2), reason syscall. */
	m = pages_on(0);
	moved = move_all(m, to);
	assert_int_equal(tierd_bpf_migrate_read(mg, k), 0);
	print_message("moved %u of %u pages to node %d: syscall calls %llu succeeded %llu failed %llu\n",
		      moved, NPAGES, to, (unsigned long long)k[sys].calls,
		      (unsigned long long)k[sys].succeeded, (unsigned long long)k[sys].failed);
	assert_int_equal(moved, NPAGES);
	assert_true(k[sys].calls >= 1);
	assert_int_equal(k[sys].succeeded, NPAGES);
	assert_int_equal(k[sys].failed, 0);

	/* And back with mbind(MPOL_MF_MOVE): reason mempolicy_mbind. */
	{
		unsigned long mask = 1ul;

		assert_int_equal(mbind(m, NPAGES * PAGE, MPOL_BIND, &mask, sizeof(mask) * 8, MPOL_MF_MOVE), 0);
	}
	assert_int_equal(tierd_bpf_migrate_read(mg, k), 0);
	print_message("mbind back to node 0: mempolicy_mbind calls %llu succeeded %llu failed %llu\n",
		      (unsigned long long)k[mb].calls, (unsigned long long)k[mb].succeeded,
		      (unsigned long long)k[mb].failed);
	assert_true(k[mb].calls >= 1);
	assert_int_equal(k[mb].succeeded, NPAGES);
	assert_int_equal(k[sys].succeeded, NPAGES); /* unchanged */
	munmap(m, NPAGES * PAGE);
	tierd_bpf_free(mg);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_own_moves_counted),
	};

	log_set_max_level(LOG_WARNING);
	return cmocka_run_group_tests(tests, NULL, harness_group_teardown);
}
