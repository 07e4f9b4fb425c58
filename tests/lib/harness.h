/* SPDX-License-Identifier: MIT */
/*
 * Test harness for kernel tests: start/stop a real tierd, reserve huge pages (restoring the old
 * value), run helper processes with deadlines, and read tierd's status document.
 */
#ifndef TIERD_TEST_HARNESS_H
#define TIERD_TEST_HARNESS_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

/* $BUILD/<name> (BUILD defaults to "build"). */
const char *harness_bin(const char *name);
/* A fresh directory under /tmp, removed by harness_cleanup(). */
const char *harness_dir(void);
void harness_cleanup(void);
/* hugepages_restore() and harness_cleanup() as a cmocka group teardown. */
int harness_group_teardown(void **state);

/* Starts tierd on `sock` with extra args (NULL-terminated). Waits until it answers a status
 * request (fully started). -1 on failure. */
pid_t daemon_start(const char *sock, ...) __attribute__((sentinel));
/* The same with tierd's stdout and stderr appended to out_path (its log, for a test to read). */
pid_t daemon_start_out(const char *sock, const char *out_path, ...) __attribute__((sentinel));
/* The environment of the next daemon_start() for fault injection: LD_PRELOAD of
 * tests/helpers/libfi.so (ASan told to accept it) and `vars`, NAME, VALUE pairs ending in NULL
 * (TIERD_FI, TIERD_FI_REPORT, TIERD_FI_SEALS_DELAY_MS: fi-preload.c). harness_fi_env_end(vars)
 * takes them all out again once the daemon started. */
void harness_fi_env_begin(const char *const *vars);
void harness_fi_env_end(const char *const *vars);
/* What libfi injected at fault point `point` ("continue", "move", ...) as its report file says
 * after tierd's exit (TIERD_FI_REPORT); -1 when absent. */
long long harness_fi_injected(const char *report, const char *point);
/* A "Key:   N kB" line of /proc/PID/status (VmRSS, RssAnon, ...), in kB; -1 when absent. */
long proc_status_kb(pid_t pid, const char *key);
/* Stops every tierd daemon_start() started that still runs (a failed case may leave its own: the
 * next case's tierd would find the socket served). harness_cleanup() does it too. */
void harness_stop_daemons(void);
/* SIGTERM, then SIGKILL after 3 s. Returns the exit status as from waitpid. */
int daemon_stop(pid_t pid);

/* Ensures at least n free 2 MiB huge pages; the old nr_hugepages is restored by hugepages_restore. */
int hugepages_reserve(long n);
void hugepages_restore(void);

/* Forks and execs argv; returns the pid. */
pid_t spawn(char *const argv[]);
/* Waits for pid up to timeout_ms; returns exit status (>= 0), 128+sig when killed, -ETIMEDOUT
 * (after SIGKILLing it) on timeout. */
int wait_exit(pid_t pid, unsigned timeout_ms);

/* Fetches tierd's status JSON; returns its length or a negative errno. */
int status_fetch(const char *sock, char *buf, size_t len);
/* The first integer value of "key": in json after the first occurrence of `after` (or from the
 * start when NULL). -1 when absent. */
long long json_int(const char *json, const char *after, const char *key);

/* Polls tierd's status until it lists no segment (every client's memory released); true when it
 * did within timeout_ms. */
bool status_wait_no_segments(const char *sock, unsigned timeout_ms);

/* A sysfs tree under `root` (for tierd --sysfs-root): node 0 as this machine has it, plus a
 * memory-only node 1 that does not exist (every move to it fails). */
void harness_fake_two_nodes(const char *root);

/* Runs $BUILD/tierctl --socket sock ARGS... (NULL-terminated), as nobody (setpriv) when asked;
 * its stdout and stderr go to out. Returns its exit status, or -1. */
int harness_tierctl(const char *sock, bool as_nobody, char *out, size_t len, ...)
	__attribute__((sentinel));

/* In Prometheus text (tierctl metrics), the value of the sample whose name and labels are exactly
 * `series`; -1 when absent. */
double metrics_sample(const char *text, const char *series);

/* Open fds of process pid (its /proc/PID/fd), or a negative errno. */
int harness_fd_count(pid_t pid);
/* Polls until pid holds `want` fds or timeout_ms passes; returns the last count seen. */
int harness_wait_fds(pid_t pid, int want, unsigned timeout_ms);
/* The fd count once it held still for 5 looks step_ms apart (start-up probes and short queries
 * come and go), looking for max_ms at most. */
int harness_settled_fds(pid_t pid, unsigned step_ms, unsigned max_ms);

/* /proc/PID/stat's state letter of a process or thread (a tid is a pid there); '?' when gone. */
char harness_proc_state(pid_t pid);
/* Polls (2 s at most) until pid is stopped (state T); true when it is. */
bool harness_wait_stopped(pid_t pid);
/* The syscall a thread is in (/proc/TID/syscall): its number, -1 when it is blocked outside any
 * syscall (in a page fault, say), -2 when it is running or gone. */
long harness_proc_syscall(pid_t tid);

uint64_t mono_usec(void);
void msleep(unsigned ms);

#endif

#ifndef TIERD_TEST_HARNESS_SPAWN_OUT
#define TIERD_TEST_HARNESS_SPAWN_OUT
/* Like spawn(), with stdout+stderr appended to out_path and extra environment "K=V" (or NULL). */
pid_t spawn_out(char *const argv[], const char *out_path, const char *env);
/* Reads a whole small file into buf (NUL-terminated); returns length or negative errno. */
int read_text(const char *path, char *buf, size_t len);
/* The integer after "key=" in text, -1 when absent. */
long long kv_int(const char *text, const char *key);
#endif
