/* SPDX-License-Identifier: MIT */
/*
 * The LD_PRELOAD shim (lib/preload.c) on the real kernel, with a real tierd: an unmodified program
 * (tests/helpers/preload-app.c) maps shared anonymous memory the way PostgreSQL does; the shim
 * turns it into a memfd that tierd tracks in the parent and in every forked child, lets go of it
 * on munmap/mremap/MAP_FIXED, and changes nothing the program can see when it cannot help
 * (no tierd, no huge pages, below the size threshold, TIERD_PRELOAD=0).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <dirent.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"

static char sock[128];
static pid_t tierd = -1;
static bool have_huge;
static pid_t live_app; /* a preload-app a failed case left behind: killed by the next start */

struct app {
	pid_t pid;
	int in, out; /* its stdin (we write), its stdout (we read) */
	char buf[4096];
	size_t len;
};

static int copy_file(const char *from, const char *to)
{
	char cmd[1024];

	snprintf(cmd, sizeof(cmd), "install -m 0755 '%s' '%s'", from, to);
	return system(cmd) == 0 ? 0 : -1;
}

static int group_setup(void **state)
{
	char to[256];

	(void)state;
	snprintf(sock, sizeof(sock), "%s/tierd.sock", harness_dir());
	snprintf(to, sizeof(to), "%s/libtier-preload.so", harness_dir());
	if (copy_file(harness_bin("libtier-preload.so"), to) < 0)
		return -1;
	snprintf(to, sizeof(to), "%s/preload-app", harness_dir());
	if (copy_file(harness_bin("tests/helpers/preload-app"), to) < 0)
		return -1;
	have_huge = hugepages_reserve(40) == 0;
	tierd = daemon_start(sock, "--epoch-ms", "50", NULL);
	if (tierd < 0)
		return -1;
	chmod(sock, 0777); /* the unprivileged run connects as nobody */
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	if (live_app > 0)
		kill(live_app, SIGKILL);
	daemon_stop(tierd);
	hugepages_restore();
	harness_cleanup();
	return 0;
}

/* Starts preload-app with the shim preloaded; extra "K=V" environment entries, NULL-terminated
 * (first the argv, then NULL, then the environment, then NULL). as_nobody runs it through setpriv. */
static void app_start(struct app *a, bool as_nobody, const char *const *argv, const char *const *env)
{
	extern char **environ;
	char preload[512], socket_env[200], *args[16], *envp[64], app_path[256];
	int in[2], out[2], n = 0, e = 0;
	posix_spawn_file_actions_t fa;

	if (live_app > 0) {
		kill(live_app, SIGKILL);
		waitpid(live_app, NULL, 0);
		live_app = 0;
	}
	/* The shim and the program where nobody can surely read them (the build tree may be in a
	 * private home). */
	snprintf(preload, sizeof(preload), "LD_PRELOAD=%s/libtier-preload.so", harness_dir());
	snprintf(socket_env, sizeof(socket_env), "TIERD_SOCKET=%s", sock);
	snprintf(app_path, sizeof(app_path), "%s/preload-app", harness_dir());
	if (as_nobody) {
		static char *const nobody[] = { "/usr/bin/setpriv", "--reuid=nobody", "--regid=nogroup",
						"--clear-groups", "--" };
		for (size_t i = 0; i < sizeof(nobody) / sizeof(nobody[0]); i++)
			args[n++] = nobody[i];
	}
	args[n++] = app_path;
	for (; *argv && n < 15; argv++)
		args[n++] = (char *)*argv;
	args[n] = NULL;
	/* The test's own environment minus anything that would confuse the helper. */
	for (char **p = environ; *p && e < 48; p++)
		if (strncmp(*p, "LD_PRELOAD=", 11) && strncmp(*p, "TIERD_", 6))
			envp[e++] = *p;
	/* The case's own entries first: getenv() finds the first of a name. */
	for (; env && *env && e < 59; env++)
		envp[e++] = (char *)*env;
	envp[e++] = preload;
	envp[e++] = socket_env;
	envp[e++] = "TIERD_MIN_BYTES=8M";
	envp[e++] = "TIERD_QUIET=1";
	envp[e++] = "TIERD_PRELOAD_KINDS=all"; /* 4 KiB cases too (the default is hugetlb) */
	envp[e] = NULL;

	assert_int_equal(pipe2(in, O_CLOEXEC), 0);
	assert_int_equal(pipe2(out, O_CLOEXEC), 0);
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, in[0], 0);
	posix_spawn_file_actions_adddup2(&fa, out[1], 1);
	/* posix_spawn runs no atfork handlers: the test's own state stays out of the child. */
	assert_int_equal(posix_spawn(&a->pid, args[0], &fa, NULL, args, envp), 0);
	live_app = a->pid;
	posix_spawn_file_actions_destroy(&fa);
	close(in[0]);
	close(out[1]);
	a->in = in[1];
	a->out = out[0];
	a->len = 0;
}

/* The next line the app prints (without '\n'), waiting up to timeout_ms; NULL on EOF/timeout. */
static const char *app_line(struct app *a, unsigned timeout_ms)
{
	static char line[512];
	uint64_t deadline = mono_usec() + timeout_ms * 1000ull;

	for (;;) {
		char *nl = memchr(a->buf, '\n', a->len);
		struct pollfd p = { .fd = a->out, .events = POLLIN };
		ssize_t n;
		int64_t left;

		if (nl) {
			size_t l = (size_t)(nl - a->buf);

			snprintf(line, sizeof(line), "%.*s", (int)l, a->buf);
			memmove(a->buf, nl + 1, a->len - l - 1);
			a->len -= l + 1;
			return line;
		}
		left = (int64_t)(deadline - mono_usec()) / 1000;
		if (left <= 0 || poll(&p, 1, (int)left) <= 0)
			return NULL;
		n = read(a->out, a->buf + a->len, sizeof(a->buf) - a->len - 1);
		if (n <= 0)
			return NULL;
		a->len += (size_t)n;
	}
}

static void app_expect(struct app *a, const char *prefix, char *rest, size_t restlen)
{
	const char *l = app_line(a, 10000);

	if (!l)
		fail_msg("preload-app: no \"%s\" line", prefix);
	if (strncmp(l, prefix, strlen(prefix)) != 0)
		fail_msg("preload-app said \"%s\", expected \"%s...\"", l, prefix);
	if (rest)
		snprintf(rest, restlen, "%s", l + strlen(prefix));
}

static void app_say(struct app *a)
{
	assert_int_equal(write(a->in, "go\n", 3), 3);
}

static int app_finish(struct app *a)
{
	close(a->in);
	close(a->out);
	live_app = 0;
	return wait_exit(a->pid, 10000);
}

static int count_segments(const char *js)
{
	int n = 0;

	for (const char *p = js; (p = strstr(p, "\"page_size\":")); p++)
		n++;
	return n;
}

/* Polls tierd's status until it tracks exactly one segment, not not_id, with `attachments` (and
 * faults when asked); returns that segment's id, or -1. */
static long long wait_segment(long long attachments, bool faults, long long not_id, unsigned timeout_ms)
{
	uint64_t deadline = mono_usec() + timeout_ms * 1000ull;
	char js[16384];

	do {
		if (status_fetch(sock, js, sizeof(js)) > 0 && count_segments(js) == 1 &&
		    json_int(js, "\"segments\"", "attachments") == attachments &&
		    (!faults || json_int(js, "\"segments\"", "faults") > 0) &&
		    json_int(js, "\"segments\"", "id") != not_id)
			return json_int(js, "\"segments\"", "id");
		msleep(20);
	} while (mono_usec() < deadline);
	if (status_fetch(sock, js, sizeof(js)) > 0)
		print_message("status: %s\n", js);
	return -1;
}

/* The non-main threads of pid block the signals applications use. */
static void check_threads_block_signals(pid_t pid)
{
	char path[64], text[4096];
	struct dirent *d;
	DIR *dir;
	int others = 0;

	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	dir = opendir(path);
	assert_non_null(dir);
	while ((d = readdir(dir))) {
		char p2[384];
		const char *b;
		unsigned long long blk;

		if (d->d_name[0] == '.' || atoi(d->d_name) == pid)
			continue;
		snprintf(p2, sizeof(p2), "%s/%s/status", path, d->d_name);
		if (read_text(p2, text, sizeof(text)) < 0 || !(b = strstr(text, "SigBlk:")))
			continue;
		blk = strtoull(b + 7, NULL, 16);
		others++;
		for (int sig = 1; sig < 32; sig++)
			if (sig != SIGKILL && sig != SIGSTOP && !(blk & (1ull << (sig - 1))))
				fail_msg("thread %s of pid %d does not block signal %d (SigBlk %llx)",
					 d->d_name, (int)pid, sig, blk);
	}
	closedir(dir);
	assert_true(others >= 1);
}

/* No fd of pid is /dev/userfaultfd. */
static void check_no_uffd_dev(pid_t pid)
{
	char path[64], link[384], target[256];
	struct dirent *d;
	DIR *dir;

	snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
	dir = opendir(path);
	assert_non_null(dir);
	while ((d = readdir(dir))) {
		ssize_t n;

		snprintf(link, sizeof(link), "%s/%s", path, d->d_name);
		n = readlink(link, target, sizeof(target) - 1);
		if (n <= 0)
			continue;
		target[n] = '\0';
		if (strcmp(target, "/dev/userfaultfd") == 0)
			fail_msg("pid %d keeps /dev/userfaultfd open as fd %s", (int)pid, d->d_name);
	}
	closedir(dir);
}

static void children_of(pid_t pid, pid_t *kids, int max, int *n)
{
	char path[96], text[1024];

	*n = 0;
	snprintf(path, sizeof(path), "/proc/%d/task/%d/children", (int)pid, (int)pid);
	if (read_text(path, text, sizeof(text)) < 0)
		return;
	for (char *s = text, *end; *n < max; s = end) {
		long v = strtol(s, &end, 10);

		if (end == s)
			break;
		kids[(*n)++] = (pid_t)v;
	}
}

/* Parent + nchild forked children all tracked on one segment, then munmap and a new mapping. */
static void track_case(const char *kind, const char *mib, int nchild, bool as_nobody)
{
	const char *argv[] = { "track", kind, mib, NULL, NULL };
	char nchild_s[8], rest[256];
	long long id, id2;
	struct app a;

	snprintf(nchild_s, sizeof(nchild_s), "%d", nchild);
	argv[3] = nchild_s;
	app_start(&a, as_nobody, argv, NULL);
	app_expect(&a, "MAPPED ", rest, sizeof(rest));
	if (!strstr(rest, "memfd:tierd-preload"))
		fail_msg("the mapping was not replaced: maps says \"%s\"", rest);
	app_expect(&a, "READY", NULL, 0);
	/* Every process attaches: the parent at mmap, each child from its atfork handler. */
	id = wait_segment(nchild + 1, true, -1, 15000);
	assert_true(id > 0);
	/* The parent waits on stdin and never touches the mapping: tierd rests its windows. */
	{
		uint64_t deadline = mono_usec() + 10000000;
		char js[16384];
		long long rested = 0;

		while (rested <= 0 && mono_usec() < deadline) {
			msleep(50);
			if (status_fetch(sock, js, sizeof(js)) > 0)
				rested = json_int(js, NULL, "zaps_rested");
		}
		assert_true(rested > 0);
	}
	check_threads_block_signals(a.pid);
	if (as_nobody) {
		pid_t kids[64];
		int n;

		check_no_uffd_dev(a.pid);
		children_of(a.pid, kids, 64, &n);
		assert_int_equal(n, nchild);
		for (int i = 0; i < n; i++)
			check_no_uffd_dev(kids[i]);
	}
	app_say(&a);
	app_expect(&a, "CHILDREN ", rest, sizeof(rest));
	assert_int_equal(atoi(rest), nchild); /* every child verified its data */
	app_expect(&a, "UNMAPPED", NULL, 0);
	app_expect(&a, "REMAPPED ", rest, sizeof(rest));
	assert_non_null(strstr(rest, "memfd:tierd-preload"));
	/* The old segment is gone, the new one tracked (a PostgreSQL crash restart). */
	id2 = wait_segment(1, false, id, 10000);
	assert_true(id2 > 0);
	assert_true(id2 != id);
	app_say(&a);
	assert_int_equal(app_finish(&a), 0);
	assert_true(status_wait_no_segments(sock, 10000));
}

static void test_shmem_fork_track(void **state)
{
	(void)state;
	track_case("shmem", "32", 3, false);
}

static void test_hugetlb_fork_track(void **state)
{
	(void)state;
	if (!have_huge)
		skip();
	track_case("hugetlb", "32", 2, false);
}

/* vm.unprivileged_userfaultfd=0: tierd hands out /dev/userfaultfd, and no process keeps it. */
static void test_unprivileged(void **state)
{
	char text[64];

	(void)state;
	if (read_text("/proc/sys/vm/unprivileged_userfaultfd", text, sizeof(text)) < 0 ||
	    atoi(text) != 0 || access("/dev/userfaultfd", F_OK) != 0)
		skip();
	track_case("shmem", "16", 2, true);
}

/* Without tierd the program runs as before: replaced mapping, data intact, exit 0. */
static void test_no_tierd(void **state)
{
	const char *argv[] = { "track", "shmem", "16", "1", NULL };
	const char *env[] = { "TIERD_SOCKET=/nonexistent/tierd.sock", NULL };
	char rest[256];
	struct app a;

	(void)state;
	app_start(&a, false, argv, env);
	app_expect(&a, "MAPPED ", rest, sizeof(rest));
	app_expect(&a, "READY", NULL, 0);
	msleep(200);
	app_say(&a);
	app_expect(&a, "CHILDREN 1/1", NULL, 0);
	app_expect(&a, "UNMAPPED", NULL, 0);
	app_expect(&a, "REMAPPED ", NULL, 0);
	{
		char js[4096];

		/* tierd never heard of it. */
		assert_true(status_fetch(sock, js, sizeof(js)) > 0);
		assert_int_equal(json_int(js, "\"segments\"", "id"), -1);
	}
	app_say(&a);
	assert_int_equal(app_finish(&a), 0);
}

/* What the program sees when the huge page pool cannot hold the mapping: the same errno as
 * without the shim (PostgreSQL's huge_pages=try falls back on it). */
static void test_errno_unchanged(void **state)
{
	const char *argv[] = { "errno", "hugetlb", "65536", NULL };
	const char *off[] = { "TIERD_PRELOAD=0", NULL };
	char with[64], without[64];
	struct app a;

	(void)state;
	if (!have_huge)
		skip(); /* a kernel without hugetlb says EINVAL, not ENOMEM */
	app_start(&a, false, argv, off);
	app_expect(&a, "ERRNO ", without, sizeof(without));
	assert_int_equal(app_finish(&a), 0);
	app_start(&a, false, argv, NULL);
	app_expect(&a, "ERRNO ", with, sizeof(with));
	assert_int_equal(app_finish(&a), 0);
	assert_string_equal(with, without);
	assert_int_equal(atoi(with), ENOMEM);
}

/* mremap and MAP_FIXED over a tracked replaced mapping: the memory keeps working (the helper
 * checks its data), and tierd lets go of the segment each time. */
static void test_remap_and_fixed(void **state)
{
	const char *argv[] = { "remap", "16", NULL };
	char rest[256];
	long long id;
	struct app a;

	(void)state;
	app_start(&a, false, argv, NULL);
	app_expect(&a, "MAPPED ", rest, sizeof(rest));
	assert_non_null(strstr(rest, "memfd:tierd-preload"));
	id = wait_segment(1, false, -1, 10000);
	assert_true(id > 0);
	app_say(&a);
	app_expect(&a, "REMAPPED ", NULL, 0);
	assert_true(status_wait_no_segments(sock, 10000));
	app_say(&a);
	app_expect(&a, "MAPPED2 ", rest, sizeof(rest));
	assert_non_null(strstr(rest, "memfd:tierd-preload"));
	assert_true(wait_segment(1, false, id, 10000) > 0);
	app_say(&a);
	app_expect(&a, "FIXED", NULL, 0);
	assert_true(status_wait_no_segments(sock, 10000));
	app_say(&a);
	assert_int_equal(app_finish(&a), 0);
}

/* A program that closed stderr and runs threads on small stacks: the memfd never takes fd 2 (where
 * libtier's "untracked" line would land in shared memory), and the shim adds no thread-local
 * storage to every thread's stack. */
static void test_hygiene(void **state)
{
	const char *argv[] = { "hygiene", "16", NULL };
	const char *env[] = { "TIERD_SOCKET=/nonexistent/tierd.sock", "TIERD_QUIET=0", NULL };
	char rest[256];
	struct app a;

	(void)state;
	app_start(&a, false, argv, env);
	app_expect(&a, "OK", rest, sizeof(rest));
	assert_int_equal(app_finish(&a), 0);
}

/* Private mappings, small shared ones, TIERD_PRELOAD=0 and 4 KiB ones by default are left alone. */
static void test_left_alone(void **state)
{
	const char *skip_argv[] = { "skip", "64", NULL };
	const char *errno_argv[] = { "errno", "shmem", "64", NULL };
	const char *off[] = { "TIERD_PRELOAD=0", NULL };
	const char *huge_only[] = { "TIERD_PRELOAD_KINDS=hugetlb", NULL };
	char rest[256];
	struct app a;

	(void)state;
	app_start(&a, false, skip_argv, NULL);
	app_expect(&a, "PRIVATE ", rest, sizeof(rest));
	assert_null(strstr(rest, "memfd:"));
	app_expect(&a, "SMALL ", rest, sizeof(rest));
	assert_non_null(strstr(rest, "/dev/zero"));
	assert_int_equal(app_finish(&a), 0);

	app_start(&a, false, errno_argv, off);
	app_expect(&a, "OK ", rest, sizeof(rest));
	assert_non_null(strstr(rest, "/dev/zero"));
	assert_int_equal(app_finish(&a), 0);

	/* The default kinds: huge pages only. */
	app_start(&a, false, errno_argv, huge_only);
	app_expect(&a, "OK ", rest, sizeof(rest));
	assert_non_null(strstr(rest, "/dev/zero"));
	assert_int_equal(app_finish(&a), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_shmem_fork_track),
		cmocka_unit_test(test_hugetlb_fork_track),
		cmocka_unit_test(test_unprivileged),
		cmocka_unit_test(test_no_tierd),
		cmocka_unit_test(test_errno_unchanged),
		cmocka_unit_test(test_remap_and_fixed),
		cmocka_unit_test(test_left_alone),
		cmocka_unit_test(test_hygiene),
	};

	if (geteuid() != 0) {
		fprintf(stderr, "test_preload: needs root (tierd, huge pages)\n");
		return 77;
	}
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
