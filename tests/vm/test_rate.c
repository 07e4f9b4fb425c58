/* SPDX-License-Identifier: MIT */
/*
 * Migration rate limit compliance (issue 8): with a demand far above the limit (a hot set that
 * keeps moving across a segment whose pages start on the slow node, a fast-tier budget below the
 * hot set), the bytes tierd moves in any one-second window stay within 1.05 x
 * --rate-limit-mbps. The moves are read from tierd's own records (tierctl events: every
 * move_pages(2) call's pages moved, page size and time), polled often enough that the ring of
 * 1024 events never wraps between two polls, and the sliding one-second maximum is taken over
 * them. The test also prints the mean rate, to show the limit is used, not just obeyed.
 * Skips on a machine with one node.
 */
#include <numa.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"
#include "tierd/proto.h"
#include "tierd/tier.h"
#include "vmlib.h"

#define RATE_MBPS 4u          /* low: the TCG guest moves a few thousand pages a second at best */
#define RUN_MS 8000u
#define SHIFT_MS 1000u        /* the hot set moves on this often */
#define POLL_MS 100u          /* events polled this often: two passes, a few dozen events */
#define MAX_MOVES 4096

static char sock[128];
static int slow_node = -1;

struct move {
	long long ms; /* tierd's t_s, in ms */
	uint64_t bytes;
	char key[160];
};

static struct move moves[MAX_MOVES];
static size_t nmoves;

static int by_time(const void *a, const void *b)
{
	const struct move *x = a, *y = b;

	return x->ms < y->ms ? -1 : x->ms > y->ms;
}

/* Adds the "moved" events of a JSON Lines dump not seen before. */
static void collect(char *text)
{
	for (char *l = strtok(text, "\n"); l; l = strtok(NULL, "\n")) {
		const char *k = strstr(l, "\"kind\":\"moved\"");
		double t;
		long long moved = json_int(l, NULL, "moved"), ps = json_int(l, NULL, "page_size");
		bool seen = false;

		if (!k || sscanf(l, "{\"t_s\":%lf", &t) != 1 || moved <= 0 || ps <= 0)
			continue;
		for (size_t i = nmoves; i-- > 0 && !seen;)
			seen = strncmp(moves[i].key, l, sizeof(moves[i].key) - 1) == 0;
		if (seen || nmoves == MAX_MOVES)
			continue;
		moves[nmoves] = (struct move){ .ms = (long long)(t * 1000.0 + 0.5),
					       .bytes = (uint64_t)(moved * ps) };
		snprintf(moves[nmoves].key, sizeof(moves[nmoves].key), "%s", l);
		nmoves++;
	}
}

static void test_rate_window(void **state)
{
	struct tier_options o = { .kind = TIER_SHMEM, .size = 32u << 20, .socket_path = sock,
				  .name = "rate" };
	static char text[1 << 20];
	const char *args[] = { NULL };
	uint64_t limit = (uint64_t)RATE_MBPS * 1000000u, worst = 0, total = 0, t0;
	struct tier_segment *seg;
	struct vm_work w;
	char rate[16];
	size_t j = 0;
	pid_t d;

	(void)state;
	if (slow_node < 0)
		skip();
	snprintf(rate, sizeof(rate), "%u", RATE_MBPS);
	d = daemon_start(sock, "--epoch-ms", "50", "--migrate-every", "2", "--fast-budget-mib", "6",
			 "--reserve-mib", "16", "--rate-limit-mbps", rate, NULL);
	assert_true(d > 0);
	assert_int_equal(tier_segment_create(&o, &seg), 0);
	vm_work_place(&w, tier_segment_addr(seg), tier_segment_memfd(seg), tier_segment_page_size(seg),
		      tier_segment_size(seg) / tier_segment_page_size(seg), slow_node);
	assert_int_equal(tier_segment_wait_tracked(seg, 10000), 0);
	t0 = mono_usec();
	for (unsigned shift = 0; mono_usec() - t0 < RUN_MS * 1000ull; shift++) {
		/* A quarter of the segment, somewhere else every SHIFT_MS. */
		uint64_t q = w.npages / 4, lo = (shift % 4) * q;

		vm_work_hot(&w, lo, lo + q);
		for (uint64_t s0 = mono_usec(); mono_usec() - s0 < SHIFT_MS * 1000ull;) {
			msleep(POLL_MS);
			assert_true(tier_control(sock, TIERD_CTL_EVENTS, 200, args, 0, -1, text,
						 sizeof(text)) >= 0);
			collect(text);
		}
	}
	assert_int_equal(vm_work_stop(&w), 0);
	vm_work_verify(&w);

	qsort(moves, nmoves, sizeof(moves[0]), by_time);
	for (size_t i = 0; i < nmoves; i++) {
		uint64_t sum = 0;

		total += moves[i].bytes;
		/* The window [t_i, t_i + 1 s): every window's maximum is reached at a move. */
		for (j = i; j < nmoves && moves[j].ms < moves[i].ms + 1000; j++)
			sum += moves[j].bytes;
		worst = sum > worst ? sum : worst;
	}
	print_message("  %zu moves, %.1f MB in %.1f s (mean %.2f MB/s); worst 1 s window %.2f MB "
		      "(limit %u MB/s, bound %.2f MB)\n", nmoves, (double)total / 1e6,
		      nmoves ? (double)(moves[nmoves - 1].ms - moves[0].ms) / 1000.0 : 0.0,
		      nmoves > 1 ? (double)total / 1e3 / (double)(moves[nmoves - 1].ms - moves[0].ms) : 0.0,
		      (double)worst / 1e6, RATE_MBPS, 1.05 * (double)limit / 1e6);
	assert_true(nmoves > 0);
	assert_true((double)worst <= 1.05 * (double)limit);
	vm_work_free(&w);
	tier_segment_destroy(seg);
	assert_int_equal(daemon_stop(d), 0);
}

static int group_setup(void **state)
{
	(void)state;
	if (numa_available() < 0 || numa_num_configured_nodes() < 2)
		return 0;
	slow_node = numa_max_node();
	snprintf(sock, sizeof(sock), "%s/tierd.sock", harness_dir());
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = { cmocka_unit_test(test_rate_window) };

	return cmocka_run_group_tests_name("migration rate limit", tests, group_setup,
					   harness_group_teardown);
}
