/* SPDX-License-Identifier: MIT */
#include "harness.h"


#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tierd/tier.h"

static char dir[64];
/* Every tierd started, so harness_cleanup can stop those a failed test left running. */
static pid_t daemons[64];
static unsigned ndaemons;
static long old_nr_hugepages = -1;

const char *harness_bin(const char *name)
{
	static char path[4][512];
	static int slot;
	const char *b = getenv("BUILD");
	char *p = path[slot++ % 4];

	snprintf(p, 512, "%s/%s", b && *b ? b : "build", name);
	return p;
}

const char *harness_dir(void)
{
	if (!dir[0]) {
		snprintf(dir, sizeof(dir), "/tmp/tierd-test.XXXXXX");
		if (!mkdtemp(dir)) {
			perror("mkdtemp");
			abort();
		}
		chmod(dir, 0755);
	}
	return dir;
}

int harness_group_teardown(void **state)
{
	(void)state;
	hugepages_restore();
	harness_cleanup();
	return 0;
}

char harness_proc_state(pid_t pid)
{
	char path[64], buf[512], *p;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	if (read_text(path, buf, sizeof(buf)) <= 0 || !(p = strrchr(buf, ')')) || p[1] != ' ')
		return '?';
	return p[2];
}

bool harness_wait_stopped(pid_t pid)
{
	for (int i = 0; i < 400 && harness_proc_state(pid) != 'T'; i++)
		msleep(5);
	return harness_proc_state(pid) == 'T';
}

long harness_proc_syscall(pid_t tid)
{
	char path[64], buf[256];

	snprintf(path, sizeof(path), "/proc/%d/syscall", (int)tid);
	if (read_text(path, buf, sizeof(buf)) <= 0 || strncmp(buf, "running", 7) == 0)
		return -2;
	return strtol(buf, NULL, 10);
}

void harness_stop_daemons(void)
{
	for (unsigned i = 0; i < ndaemons; i++)
		if (daemons[i] > 0 && kill(daemons[i], 0) == 0 && waitpid(daemons[i], NULL, WNOHANG) == 0)
			daemon_stop(daemons[i]);
	ndaemons = 0;
}

void harness_cleanup(void)
{
	char cmd[128];

	harness_stop_daemons();

	if (dir[0]) {
		snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
		if (system(cmd) != 0)
			fprintf(stderr, "cleanup of %s failed\n", dir);
		dir[0] = '\0';
	}
}

uint64_t mono_usec(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

void msleep(unsigned ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* Serving and done starting, not merely listening: tierd binds its socket first and loads its
 * eBPF programs on a thread while it serves ("off: loading" in the status until then); a test
 * that counts its fds or times it must start from a tierd that has finished. And the one started:
 * a tierd left running by a failed test would answer on the socket while the new one exits
 * ("another tierd is serving"), and the next test would signal a process that is gone. */
static bool accepts(const char *sock, pid_t pid)
{
	static char js[65536];

	return status_fetch(sock, js, sizeof(js)) > 0 && json_int(js, NULL, "pid") == pid &&
	       !strstr(js, "off: loading\"");
}

static pid_t daemon_start_va(const char *sock, const char *out_path, va_list ap)
{
	char *argv[32];
	int argc = 0;
	pid_t pid;

	argv[argc++] = (char *)harness_bin("tierd");
	argv[argc++] = "--socket";
	argv[argc++] = (char *)sock;
	for (char *a; argc < 31 && (a = va_arg(ap, char *));)
		argv[argc++] = a;
	argv[argc] = NULL;
	pid = spawn_out(argv, out_path, NULL);
	if (pid < 0)
		return -1;
	for (int i = 0; i < 500; i++) {
		int st;

		if (accepts(sock, pid)) {
			if (ndaemons < sizeof(daemons) / sizeof(daemons[0]))
				daemons[ndaemons++] = pid;
			return pid;
		}
		if (waitpid(pid, &st, WNOHANG) == pid)
			return -1;
		msleep(10);
	}
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	return -1;
}

pid_t daemon_start(const char *sock, ...)
{
	va_list ap;
	pid_t pid;

	va_start(ap, sock);
	pid = daemon_start_va(sock, NULL, ap);
	va_end(ap);
	return pid;
}

pid_t daemon_start_out(const char *sock, const char *out_path, ...)
{
	va_list ap;
	pid_t pid;

	va_start(ap, out_path);
	pid = daemon_start_va(sock, out_path, ap);
	va_end(ap);
	return pid;
}

static struct {
	bool had_asan;
	char asan[400];
} fi_saved;

void harness_fi_env_begin(const char *const *vars)
{
	const char *asan = getenv("ASAN_OPTIONS");
	char opts[512];

	fi_saved.had_asan = asan != NULL;
	snprintf(fi_saved.asan, sizeof(fi_saved.asan), "%s", asan ? asan : "");
	/* An ASan tierd refuses a library loaded before its runtime unless told not to check. */
	snprintf(opts, sizeof(opts), "%s%sverify_asan_link_order=0", fi_saved.asan, asan ? ":" : "");
	setenv("ASAN_OPTIONS", opts, 1);
	setenv("LD_PRELOAD", harness_bin("tests/helpers/libfi.so"), 1);
	for (; vars[0] && vars[1]; vars += 2)
		setenv(vars[0], vars[1], 1);
}

void harness_fi_env_end(const char *const *vars)
{
	unsetenv("LD_PRELOAD");
	for (; vars[0] && vars[1]; vars += 2)
		unsetenv(vars[0]);
	if (fi_saved.had_asan)
		setenv("ASAN_OPTIONS", fi_saved.asan, 1);
	else
		unsetenv("ASAN_OPTIONS");
}

long long harness_fi_injected(const char *report, const char *point)
{
	char text[256];
	size_t l = strlen(point);

	if (read_text(report, text, sizeof(text)) <= 0)
		return -1;
	for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
		if (!strncmp(p, point, l) && p[l] == ' ')
			return strtoll(p + l + 1, NULL, 10);
	return -1;
}

long proc_status_kb(pid_t pid, const char *key)
{
	char path[64], text[4096];
	const char *p;
	size_t kl = strlen(key);

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	if (read_text(path, text, sizeof(text)) <= 0)
		return -1;
	for (p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
		if (strncmp(p, key, kl) == 0 && p[kl] == ':')
			return strtol(p + kl + 1, NULL, 10);
	return -1;
}

int daemon_stop(pid_t pid)
{
	int r;

	if (pid <= 0)
		return -1;
	kill(pid, SIGCONT);
	kill(pid, SIGTERM);
	r = wait_exit(pid, 3000);
	return r;
}

pid_t spawn(char *const argv[])
{
	return spawn_out(argv, NULL, NULL);
}

int wait_exit(pid_t pid, unsigned timeout_ms)
{
	uint64_t deadline = mono_usec() + (uint64_t)timeout_ms * 1000;
	int st;

	for (;;) {
		pid_t r = waitpid(pid, &st, WNOHANG);

		if (r == pid)
			return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
		if (r < 0)
			return -errno;
		if (mono_usec() > deadline) {
			kill(pid, SIGKILL);
			waitpid(pid, &st, 0);
			return -ETIMEDOUT;
		}
		msleep(5);
	}
}

static long read_long(const char *path)
{
	FILE *f = fopen(path, "re");
	long v = -1;

	if (f) {
		if (fscanf(f, "%ld", &v) != 1)
			v = -1;
		fclose(f);
	}
	return v;
}

static int write_long(const char *path, long v)
{
	FILE *f = fopen(path, "we");
	int r;

	if (!f)
		return -errno;
	r = fprintf(f, "%ld\n", v) < 0 ? -EIO : 0;
	if (fclose(f) != 0)
		r = -errno;
	return r;
}

int hugepages_reserve(long n)
{
	const char *nr = "/proc/sys/vm/nr_hugepages";
	const char *fr = "/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages";
	long cur = read_long(nr), free_now = read_long(fr);

	if (cur < 0 || free_now < 0)
		return -ENOENT;
	if (free_now >= n)
		return 0;
	if (old_nr_hugepages < 0)
		old_nr_hugepages = cur;
	if (write_long(nr, cur + (n - free_now)) < 0)
		return -EPERM;
	return read_long(fr) >= n ? 0 : -ENOMEM;
}

void hugepages_restore(void)
{
	if (old_nr_hugepages >= 0) {
		(void)write_long("/proc/sys/vm/nr_hugepages", old_nr_hugepages);
		old_nr_hugepages = -1;
	}
}

int status_fetch(const char *sock, char *buf, size_t len)
{
	return tier_status_json(sock, buf, len);
}

bool status_wait_no_segments(const char *sock, unsigned timeout_ms)
{
	uint64_t deadline = mono_usec() + (uint64_t)timeout_ms * 1000;
	char js[16384];

	do {
		if (status_fetch(sock, js, sizeof(js)) > 0 && !strstr(js, "\"kind\""))
			return true;
		msleep(20);
	} while (mono_usec() < deadline);
	return false;
}

long long json_int(const char *json, const char *after, const char *key)
{
	char pat[96];
	const char *p = json;

	if (after) {
		p = strstr(json, after);
		if (!p)
			return -1;
	}
	snprintf(pat, sizeof(pat), "\"%s\":", key);
	p = strstr(p, pat);
	if (!p)
		return -1;
	return strtoll(p + strlen(pat), NULL, 10);
}

pid_t spawn_out(char *const argv[], const char *out_path, const char *env)
{
	extern char **environ;
	static const char msg[] = "spawn: exec failed\n";
	size_t n = 0;
	char **envp;
	pid_t pid, parent;

	/* Everything the child needs is built before the fork: it runs only async-signal-safe calls
	 * (open, dup2, execve, _exit), because _Fork() skips the atfork handlers — so libtier
	 * segments of the test process do not start attaching in a child about to exec — and with
	 * them the resets that make malloc or stdio safe after fork. */
	while (environ[n])
		n++;
	envp = calloc(n + 2, sizeof(char *));
	if (!envp)
		return -1;
	memcpy(envp, environ, n * sizeof(char *));
	if (env)
		envp[n++] = (char *)env;
	parent = getpid();
	pid = _Fork();
	if (pid == 0) {
		int fd = out_path ? open(out_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644) : -1;

		/* A test killed outright (OOM, timeout) must not leave its tierd or clients behind:
		 * they would keep tests/run.sh's output pipe open and hang the run. */
		if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent)
			_exit(127);

		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		execve(argv[0], argv, envp);
		(void)!write(2, msg, sizeof(msg) - 1);
		_exit(127);
	}
	free(envp);
	return pid;
}

int read_text(const char *path, char *buf, size_t len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n, total = 0;

	if (fd < 0)
		return -errno;
	while ((size_t)total + 1 < len && (n = read(fd, buf + total, len - 1 - (size_t)total)) > 0)
		total += n;
	close(fd);
	buf[total] = '\0';
	return (int)total;
}

long long kv_int(const char *text, const char *key)
{
	char pat[64];
	const char *p;

	snprintf(pat, sizeof(pat), " %s=", key);
	p = strstr(text, pat);
	return p ? strtoll(p + strlen(pat), NULL, 10) : -1;
}

static void put_file(const char *root, const char *rel, const char *text)
{
	char path[512], parent[512], *slash;
	FILE *f;

	mkdir(root, 0755);
	snprintf(path, sizeof(path), "%s/%s", root, rel);
	snprintf(parent, sizeof(parent), "%s", path);
	for (char *p = parent + strlen(root) + 1; (slash = strchr(p, '/')); p = slash + 1) {
		*slash = '\0';
		mkdir(parent, 0755);
		*slash = '/';
	}
	f = fopen(path, "we");
	if (!f)
		return;
	fputs(text, f);
	fclose(f);
}

void harness_fake_two_nodes(const char *root)
{
	put_file(root, "devices/system/node/online", "0-1\n");
	put_file(root, "devices/system/node/node0/cpulist", "0-1\n");
	put_file(root, "devices/system/node/node0/meminfo",
		 "Node 0 MemTotal:       8388608 kB\nNode 0 MemFree:        4194304 kB\n");
	put_file(root, "devices/system/node/node0/distance", "10 20\n");
	put_file(root, "devices/system/node/node1/cpulist", "\n");
	put_file(root, "devices/system/node/node1/meminfo",
		 "Node 1 MemTotal:       8388608 kB\nNode 1 MemFree:        8388608 kB\n");
	put_file(root, "devices/system/node/node1/distance", "20 10\n");
}

double metrics_sample(const char *text, const char *series)
{
	size_t l = strlen(series);

	for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
		if (!strncmp(p, series, l) && p[l] == ' ')
			return strtod(p + l + 1, NULL);
	return -1;
}

int harness_tierctl(const char *sock, bool as_nobody, char *out, size_t len, ...)
{
	char *argv[40], path[512];
	int n = 0, rc;
	va_list ap;
	pid_t pid;

	if (as_nobody) {
		argv[n++] = (char *)"/usr/bin/setpriv";
		argv[n++] = (char *)"--reuid=65534";
		argv[n++] = (char *)"--regid=65534";
		argv[n++] = (char *)"--clear-groups";
	}
	argv[n++] = (char *)harness_bin("tierctl");
	argv[n++] = (char *)"--socket";
	argv[n++] = (char *)sock;
	va_start(ap, len);
	for (char *a; (a = va_arg(ap, char *)) && n < 39;)
		argv[n++] = a;
	va_end(ap);
	argv[n] = NULL;
	snprintf(path, sizeof(path), "%s/tierctl.out", harness_dir());
	unlink(path);
	pid = spawn_out(argv, path, NULL);
	if (pid <= 0)
		return -1;
	rc = wait_exit(pid, 15000);
	out[0] = '\0';
	read_text(path, out, len);
	return rc;
}

int harness_fd_count(pid_t pid)
{
	char path[64];
	struct dirent *e;
	DIR *d;
	int n = 0;

	snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
	d = opendir(path);
	if (!d)
		return -errno;
	while ((e = readdir(d)))
		n += e->d_name[0] != '.';
	closedir(d);
	return n;
}

int harness_wait_fds(pid_t pid, int want, unsigned timeout_ms)
{
	uint64_t deadline = mono_usec() + (uint64_t)timeout_ms * 1000u;
	int n;

	while ((n = harness_fd_count(pid)) != want && mono_usec() < deadline)
		msleep(5);
	return n;
}

int harness_settled_fds(pid_t pid, unsigned step_ms, unsigned max_ms)
{
	int last = -1, same = 0;

	for (unsigned i = 0; i < max_ms / step_ms && same < 5; i++) {
		int n = harness_fd_count(pid);

		same = n == last ? same + 1 : 0;
		last = n;
		msleep(step_ms);
	}
	return last;
}
