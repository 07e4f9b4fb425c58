/* SPDX-License-Identifier: MIT */
/*
 * The pieces of a chaos loop shared by tests/kernel/test_chaos.c (the host, a fixture topology)
 * and tests/vm/test_chaos_vm.c (the multi-node guest, real moves): a seeded schedule, the
 * tier-client processes (checksummed, each access verified, stalls bounded) and their reports,
 * tierd killed with SIGKILL and the clients' re-attachment polled in tierd's status. One run at a
 * time per process: the state is the global `chaos`, as a cmocka test's state would be.
 */
#ifndef TIERD_TEST_CHAOS_H
#define TIERD_TEST_CHAOS_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#define CHAOS_MAX_CLIENTS 4

struct chaos_client {
	pid_t pid;
	const char *kind;
	char out[256];
	unsigned listed_id;  /* tierd's id of its connection when last seen attached */
	char report[512];    /* tier-client's closing line, once it exited 0 */
};

struct chaos {
	char sock[128];
	unsigned seed, cycle, ncycles;
	uint64_t rng;
	struct chaos_client c[CHAOS_MAX_CLIENTS];
	unsigned nc;
	pid_t tierd;
};

extern struct chaos chaos;

/* "cycle 3/10", or the phase around the cycles, for failure messages. */
const char *chaos_where(void);

#define chaos_fail(fmt, ...)                                                                   \
	fail_msg("seed %u (CHAOS_SEED=%u replays), %s: " fmt, chaos.seed, chaos.seed,          \
		 chaos_where(), ##__VA_ARGS__)

/* The unsigned value of environment variable `name`, `def` when unset or empty. */
unsigned chaos_env_unsigned(const char *name, unsigned def);
/* Seeds the schedule from CHAOS_SEED, or from the clock, and says which (replayable). */
void chaos_seed(void);
/* 0 .. n-1 from the seeded schedule (0 when n is 0). */
unsigned chaos_rnd(unsigned n);

/* A schedule of `cycles` kinds of kill (or stop) in [0, nkinds), at [1 .. cycles] of the array
 * returned (calloc'd with room for cycles + 2; the caller frees it): the first nkinds cycles are
 * every kind in a random order, so even a short run covers them all; the rest at random. */
unsigned *chaos_schedule(unsigned cycles, unsigned nkinds);

/* SIGKILLs chaos.tierd (stopped or not) and checks it died of it. */
void chaos_kill_tierd(void);

/*
 * Starts a tier-client of `kind` on chaos.sock with TIERD_HANG_TIMEOUT_MS=hang_ms,
 * --max-stall-ms stall_ms, --min-attaches min_attaches and an --ms longer than any run (it is
 * ended by chaos_finish_clients), plus the NULL-terminated `extra` arguments.
 */
void chaos_start_client(const char *kind, unsigned hang_ms, unsigned stall_ms,
			unsigned min_attaches, const char *const extra[]);
/* Fails, with what it said, when a client exited before its end. */
void chaos_check_clients_alive(void);
/* Prints the end of every client's output (the story of one that did not come back). */
void chaos_dump_clients(void);
/* Polls tierd's status (at most timeout_ms) until every client is attached; with `fresh`,
 * through another connection than when last seen. Returns the time it took, in ms. */
double chaos_wait_attached(bool fresh, unsigned timeout_ms);
/* Ends the workloads (SIGUSR1), waits exit_wait_ms at most for each to verify its pages, and
 * checks its report: exit 0, no data error, attaches and guardian releases at least as given.
 * Each client's report is kept in chaos.c[i].report. */
void chaos_finish_clients(unsigned min_attaches, unsigned min_guardian, unsigned exit_wait_ms);
/* A client's report value "key=V" as a double, -1 when absent. */
double chaos_report_value(const struct chaos_client *c, const char *key);
/* Kills what a failed case left behind: clients and tierd. */
void chaos_kill_all(void);

/* An integer of tierd's status (json_int(after, key)), -1 when it did not answer. */
long long chaos_status_int(const char *after, const char *key);
/* Returns once tierd's status counts a migration batch started after the call, polling
 * without a pause (the caller wants to land in the batch); fails after timeout_ms. */
void chaos_wait_batch_start(unsigned timeout_ms);

#endif
