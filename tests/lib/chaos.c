/* SPDX-License-Identifier: MIT */
#include "chaos.h"

#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"

struct chaos chaos = { .tierd = -1 };

const char *chaos_where(void)
{
	static char buf[48];

	if (chaos.cycle == 0)
		return "before the first cycle";
	if (chaos.cycle > chaos.ncycles)
		snprintf(buf, sizeof(buf), "after the last of %u cycles", chaos.ncycles);
	else
		snprintf(buf, sizeof(buf), "cycle %u/%u", chaos.cycle, chaos.ncycles);
	return buf;
}

unsigned chaos_env_unsigned(const char *name, unsigned def)
{
	const char *v = getenv(name);

	return v && *v ? (unsigned)strtoul(v, NULL, 0) : def;
}

void chaos_seed(void)
{
	const char *s = getenv("CHAOS_SEED");

	chaos.seed = s && *s ? (unsigned)strtoul(s, NULL, 0)
			     : (unsigned)(mono_usec() ^ (uint64_t)getpid() << 16 ^ (uint64_t)time(NULL));
	chaos.rng = (uint64_t)chaos.seed * 0x9E3779B97F4A7C15ull | 1;
	chaos.cycle = 0;
	fprintf(stderr, "chaos: seed %u (replay with CHAOS_SEED=%u)\n", chaos.seed, chaos.seed);
}

unsigned chaos_rnd(unsigned n)
{
	chaos.rng ^= chaos.rng << 13;
	chaos.rng ^= chaos.rng >> 7;
	chaos.rng ^= chaos.rng << 17;
	return n ? (unsigned)(chaos.rng % n) : 0;
}

unsigned *chaos_schedule(unsigned cycles, unsigned nkinds)
{
	unsigned *sched = calloc(cycles + 2, sizeof(*sched));

	assert_non_null(sched);
	for (unsigned i = 1; i <= cycles; i++)
		sched[i] = i <= nkinds ? i - 1 : chaos_rnd(nkinds);
	for (unsigned i = nkinds < cycles ? nkinds : cycles; i > 1; i--) {
		unsigned j = 1 + chaos_rnd(i), t = sched[i];

		sched[i] = sched[j];
		sched[j] = t;
	}
	return sched;
}

void chaos_kill_tierd(void)
{
	int rc;

	kill(chaos.tierd, SIGKILL); /* a stopped tierd dies of it too */
	rc = wait_exit(chaos.tierd, 5000);
	if (rc != 128 + SIGKILL)
		chaos_fail("tierd %d ended with status %d, not of our SIGKILL: did it die on its own?",
			   (int)chaos.tierd, rc);
	chaos.tierd = -1;
}

/* ---- clients ------------------------------------------------------------------------------- */

#define MAX_ARGS 48

void chaos_start_client(const char *kind, unsigned hang_ms, unsigned stall_ms,
			unsigned min_attaches, const char *const extra[])
{
	static char env[64], stall[16], att[16];
	struct chaos_client *c = &chaos.c[chaos.nc];
	/* --ms: longer than any run; chaos_finish_clients ends it with SIGUSR1. */
	const char *argv[MAX_ARGS] = { harness_bin("tests/helpers/tier-client"), "--socket", chaos.sock,
				       "--kind", kind, "--ms", "3600000", "--max-stall-ms", stall,
				       "--min-attaches", att };
	unsigned n = 11;

	assert_true(chaos.nc < CHAOS_MAX_CLIENTS);
	for (unsigned i = 0; extra && extra[i]; i++) {
		assert_true(n + 1 < MAX_ARGS);
		argv[n++] = extra[i];
	}
	argv[n] = NULL;
	snprintf(env, sizeof(env), "TIERD_HANG_TIMEOUT_MS=%u", hang_ms);
	snprintf(stall, sizeof(stall), "%u", stall_ms);
	snprintf(att, sizeof(att), "%u", min_attaches);
	c->kind = kind;
	c->listed_id = 0;
	c->report[0] = '\0';
	snprintf(c->out, sizeof(c->out), "%s/chaos.%s.%u.out", harness_dir(), kind, chaos.nc);
	unlink(c->out);
	c->pid = spawn_out((char *const *)argv, c->out, env);
	if (c->pid <= 0)
		chaos_fail("cannot start the %s client", kind);
	chaos.nc++;
}

/* The last len-1 bytes of a client's output: libtier says something at every restart, so a long
 * run writes tens of KB before tier-client's closing report. Returns the length read. */
static int read_tail(const char *path, char *buf, size_t len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n, total = 0;
	off_t size;

	buf[0] = '\0';
	if (fd < 0)
		return -errno;
	size = lseek(fd, 0, SEEK_END);
	(void)lseek(fd, size > (off_t)len - 1 ? size - ((off_t)len - 1) : 0, SEEK_SET);
	while ((size_t)total + 1 < len && (n = read(fd, buf + total, len - 1 - (size_t)total)) > 0)
		total += n;
	close(fd);
	buf[total] = '\0';
	return (int)total;
}

/* Printed whole: print_message() cuts at 1 KiB. */
static void dump_client(const struct chaos_client *c)
{
	char text[4096];

	read_tail(c->out, text, sizeof(text));
	printf("---- the %s client (pid %d), the end of its output:\n%s----\n", c->kind, (int)c->pid,
	       text);
	fflush(stdout);
}

void chaos_dump_clients(void)
{
	for (unsigned i = 0; i < chaos.nc; i++)
		dump_client(&chaos.c[i]);
}

void chaos_check_clients_alive(void)
{
	for (unsigned i = 0; i < chaos.nc; i++) {
		int st;

		if (waitpid(chaos.c[i].pid, &st, WNOHANG) == chaos.c[i].pid) {
			dump_client(&chaos.c[i]);
			chaos.c[i].pid = -1;
			chaos_fail("the %s client exited early (status 0x%x; its output above)",
				   chaos.c[i].kind, st);
		}
	}
}

/* Looks for the client in tierd's client_list: its connection id when it has an attachment
 * there whose id differs from `not_id`, 0 otherwise. */
static unsigned listed_attached(const char *js, pid_t pid, unsigned not_id)
{
	const char *p = strstr(js, "\"client_list\":[");

	for (p = p ? strstr(p, "{\"id\":") : NULL; p; p = strstr(p + 1, "{\"id\":")) {
		unsigned id, uid, natt;
		int cpid;

		if (sscanf(p, "{\"id\":%u,\"pid\":%d,\"uid\":%u,\"attachments\":%u", &id, &cpid, &uid,
			   &natt) == 4 &&
		    cpid == pid && natt >= 1 && id != not_id)
			return id;
	}
	return 0;
}

/* With `fresh`, a connection other than the one it had (tierd's connection ids only grow): a
 * continued tierd may still list the old connection until it has read its hang-up. */
double chaos_wait_attached(bool fresh, unsigned timeout_ms)
{
	uint64_t t0 = mono_usec(), deadline = t0 + (uint64_t)timeout_ms * 1000;
	static char js[65536];
	unsigned done = 0;
	double ms;

	while (done != chaos.nc) {
		done = 0;
		chaos_check_clients_alive();
		if (status_fetch(chaos.sock, js, sizeof(js)) > 0) {
			for (unsigned i = 0; i < chaos.nc; i++)
				done += listed_attached(js, chaos.c[i].pid,
							fresh ? chaos.c[i].listed_id : 0) != 0;
		}
		if (done == chaos.nc)
			break;
		if (mono_usec() > deadline) {
			chaos_dump_clients();
			chaos_fail("%u of %u clients re-attached within %u ms (their output above)",
				   done, chaos.nc, timeout_ms);
		}
		msleep(10);
	}
	/* Remember the connections now listed, for the next `fresh` wait. */
	for (unsigned i = 0; i < chaos.nc; i++)
		chaos.c[i].listed_id =
			listed_attached(js, chaos.c[i].pid, fresh ? chaos.c[i].listed_id : 0);
	ms = (double)(mono_usec() - t0) / 1000.0;
	print_message("  clients attached after %.0f ms (at %llu ms)\n", ms,
		      (unsigned long long)mono_usec() / 1000);
	return ms;
}

void chaos_finish_clients(unsigned min_attaches, unsigned min_guardian, unsigned exit_wait_ms)
{
	static char text[1 << 16];

	for (unsigned i = 0; i < chaos.nc; i++)
		kill(chaos.c[i].pid, SIGUSR1);
	for (unsigned i = 0; i < chaos.nc; i++) {
		struct chaos_client *c = &chaos.c[i];
		int rc = wait_exit(c->pid, exit_wait_ms);
		const char *report;

		read_tail(c->out, text, sizeof(text));
		report = strstr(text, "tier-client: pid=");
		if (rc != 0 || !report)
			dump_client(c);
		c->pid = -1;
		if (rc == -ETIMEDOUT)
			chaos_fail("the %s client hung: not done %u ms after SIGUSR1", c->kind,
				   exit_wait_ms);
		if (rc != 0)
			chaos_fail("the %s client exited %d (1 data error, 4 too few attaches, 5 stalled "
				   "past the bound; its output above)", c->kind, rc);
		if (!report)
			chaos_fail("the %s client exited 0 without its report", c->kind);
		snprintf(c->report, sizeof(c->report), "%s", report);
		print_message("%s client: %s", c->kind, report);
		if (kv_int(report, "errors") != 0)
			chaos_fail("the %s client saw data errors", c->kind);
		if (kv_int(report, "attaches") < (long long)min_attaches)
			chaos_fail("the %s client attached %lld times, want >= %u", c->kind,
				   kv_int(report, "attaches"), min_attaches);
		if (kv_int(report, "guardian") < (long long)min_guardian)
			chaos_fail("the %s client's guardian let go %lld times, want >= %u", c->kind,
				   kv_int(report, "guardian"), min_guardian);
	}
	chaos.nc = 0;
}

double chaos_report_value(const struct chaos_client *c, const char *key)
{
	char pat[64];
	const char *p;

	snprintf(pat, sizeof(pat), " %s=", key);
	p = strstr(c->report, pat);
	return p ? strtod(p + strlen(pat), NULL) : -1;
}

void chaos_kill_all(void)
{
	for (unsigned i = 0; i < chaos.nc; i++)
		if (chaos.c[i].pid > 0) {
			kill(chaos.c[i].pid, SIGKILL);
			waitpid(chaos.c[i].pid, NULL, 0);
		}
	chaos.nc = 0;
	if (chaos.tierd > 0)
		daemon_stop(chaos.tierd);
	chaos.tierd = -1;
}

/* ---- tierd's status ------------------------------------------------------------------------ */

long long chaos_status_int(const char *after, const char *key)
{
	static char js[65536];

	return status_fetch(chaos.sock, js, sizeof(js)) > 0 ? json_int(js, after, key) : -1;
}

void chaos_wait_batch_start(unsigned timeout_ms)
{
	uint64_t deadline = mono_usec() + (uint64_t)timeout_ms * 1000;
	long long b0 = chaos_status_int("\"migration\"", "batches"), b;

	while ((b = chaos_status_int("\"migration\"", "batches")) <= b0) {
		if (mono_usec() > deadline)
			chaos_fail("no migration batch started within %u ms (batches %lld)",
				   timeout_ms, b);
		/* No sleep: the kill should land while the batch is out (it waits up to
		 * batch_wait_ms for the zaps), and each status query already takes a round trip. */
	}
}
