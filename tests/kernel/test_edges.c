/* SPDX-License-Identifier: MIT */
/*
 * Releasing a uffd while the kernel itself waits on a tracked page (issue 8, kernel edge cases).
 * A client (this binary run again, --edge-client) has its whole mapping registered by tierd
 * (--shmem-registration whole, no windows of tierd's own), zaps it, and tierd is stopped. Then
 * the kernel touches the zapped pages on the client's behalf, inside a syscall:
 *   - mlockall(MCL_CURRENT | MCL_FUTURE) populating the locked mapping (GUP, the client's mm);
 *   - read(2) from an O_DIRECT file on a real filesystem (/var/tmp; tmpfs has no O_DIRECT) into
 *     the tracked range (the block layer pins the destination pages);
 *   - process_vm_readv(2) of the range by another process (remote GUP on the client's mm).
 * Each is seen blocked inside its syscall (/proc/TID/syscall names it; the state is D), then
 *   - kill: tierd is SIGKILLed; the client's control thread sees the hang-up, unregisters, wakes
 *     and closes its uffd copy (the last reference);
 *   - hang: tierd stays stopped; the guardian (hang timeout 1500 ms) unregisters and wakes while
 *     tierd still holds its copy — UFFDIO_UNREGISTER needs the client's mmap lock, which a
 *     waiting GUP must not keep.
 * Pass: the syscall completes within EDGE_DEADLINE_MS with the right result,
 * and every page holds what it should (the file's bytes where read(2) wrote, the pattern
 * elsewhere). A kernel that hangs here fails the test by its deadline (the blocked process is then
 * SIGKILLed; one in D state stays, which is the finding).
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"
#include "tierd/tier.h"

#define SEG_BYTES (2u << 20)
#define FILE_BYTES (1u << 20) /* read(2) fills the first half of the segment */
#define FILE_BYTE 0xa5
/* The syscall must be seen blocked after this long, and be done this long after the kill. */
#define BLOCKED_CHECK_MS 300u
#define EDGE_DEADLINE_MS 10000u
#define READY_MS 15000u

enum edge { EDGE_MLOCK, EDGE_ODIRECT, EDGE_VMREAD };
static const char *const edge_name[] = { "mlock", "odirect", "vmread" };

static char sock[128];

static uint8_t pattern(size_t off)
{
	return (uint8_t)(off / 4096 * 7 + 1);
}

/* ---- the client and the reader (this binary run again) ----------------------------------------- */

static int verify(const uint8_t *p, size_t len, bool file_part)
{
	for (size_t off = 0; off < len; off += 512) {
		uint8_t want = file_part && off < FILE_BYTES ? FILE_BYTE : pattern(off);

		if (p[off] != want) {
			fprintf(stderr, "edge: byte %zu is 0x%02x, want 0x%02x\n", off, p[off], want);
			return 1;
		}
	}
	return 0;
}

static int edge_client(enum edge e, const char *sockpath, const char *file, unsigned hang_ms)
{
	struct tier_options o = { .kind = TIER_SHMEM, .size = SEG_BYTES, .name = "edge",
				  .socket_path = sockpath, .hang_timeout_ms = hang_ms };
	struct tier_segment *seg;
	uint8_t *base;
	sigset_t set;
	int sig, fd = -1, rc = 0;
	ssize_t n;

	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	sigaddset(&set, SIGTERM);
	sigprocmask(SIG_BLOCK, &set, NULL);
	if (tier_segment_create(&o, &seg) < 0 || tier_segment_wait_tracked(seg, 10000) < 0)
		return 3;
	base = tier_segment_addr(seg);
	for (size_t off = 0; off < SEG_BYTES; off++)
		base[off] = pattern(off);
	if (e == EDGE_ODIRECT) {
		fd = open(file, O_RDONLY | O_DIRECT | O_CLOEXEC);
		if (fd < 0) {
			fprintf(stderr, "edge: open %s O_DIRECT: %s\n", file, strerror(errno));
			return 4;
		}
	}
	if (madvise(base, SEG_BYTES, MADV_DONTNEED) < 0)
		return 5;
	printf("ready pid=%d base=%llu\n", (int)getpid(), (unsigned long long)(uintptr_t)base);
	fflush(stdout);
	if (sigwait(&set, &sig) != 0)
		return 6;
	if (sig == SIGUSR1) {
		switch (e) {
		case EDGE_MLOCK:
			if (mlockall(MCL_CURRENT | MCL_FUTURE) < 0) {
				fprintf(stderr, "edge: mlockall: %s\n", strerror(errno));
				rc = 7;
			}
			break;
		case EDGE_ODIRECT:
			n = read(fd, base, FILE_BYTES);
			if (n != FILE_BYTES) {
				fprintf(stderr, "edge: O_DIRECT read gave %zd (%s)\n", n,
					n < 0 ? strerror(errno) : "short");
				rc = 8;
			}
			break;
		case EDGE_VMREAD:
			break;
		}
		if (e != EDGE_VMREAD)
			printf("done\n");
		fflush(stdout);
		if (e == EDGE_VMREAD && sigwait(&set, &sig) != 0)
			return 6;
	}
	if (rc == 0)
		rc = verify(base, SEG_BYTES, e == EDGE_ODIRECT);
	if (e == EDGE_MLOCK)
		munlockall();
	if (fd >= 0)
		close(fd);
	tier_segment_destroy(seg);
	return rc;
}

static int edge_reader(pid_t pid, uint64_t base)
{
	static uint8_t buf[SEG_BYTES];
	struct iovec local = { buf, SEG_BYTES }, remote = { (void *)(uintptr_t)base, SEG_BYTES };
	ssize_t n = process_vm_readv(pid, &local, 1, &remote, 1, 0);

	if (n != SEG_BYTES) {
		fprintf(stderr, "edge: process_vm_readv gave %zd (%s)\n", n, n < 0 ? strerror(errno) : "short");
		return 9;
	}
	return verify(buf, SEG_BYTES, false);
}

/* ---- the test ------------------------------------------------------------------------------------ */

static int group_setup(void **state)
{
	(void)state;
	snprintf(sock, sizeof(sock), "%s/tierd.sock", harness_dir());
	return 0;
}

/* Waits for "ready" in the client's output; returns its base address. */
static uint64_t wait_ready(const char *out)
{
	char text[4096];
	const char *p;

	for (unsigned i = 0; i < READY_MS / 10; i++) {
		if (read_text(out, text, sizeof(text)) > 0 && (p = strstr(text, "ready pid=")) &&
		    strchr(p, '\n'))
			return (uint64_t)kv_int(p, "base");
		msleep(10);
	}
	read_text(out, text, sizeof(text));
	print_message("client not ready: %s\n", text);
	fail();
	return 0;
}

static void write_file(const char *path)
{
	static uint8_t buf[FILE_BYTES];
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

	assert_true(fd >= 0);
	memset(buf, FILE_BYTE, sizeof(buf));
	assert_int_equal(write(fd, buf, sizeof(buf)), sizeof(buf));
	assert_int_equal(fsync(fd), 0);
	close(fd);
}

static void edge_case(enum edge e, bool by_guardian)
{
#if defined(__SANITIZE_ADDRESS__)
	/* ASan makes mlockall() a no-op (it would lock the shadow memory): the client would fault
	 * in its own code, not inside the syscall. */
	if (e == EDGE_MLOCK) {
		print_message("skipped under AddressSanitizer: it ignores mlockall()\n");
		skip();
	}
#endif
	char out[256], rout[256], file[128], basebuf[32], pidbuf[16], text[4096];
	char self[] = "/proc/self/exe";
	long want_sys = e == EDGE_MLOCK ? SYS_mlockall : e == EDGE_ODIRECT ? SYS_read :
					   SYS_process_vm_readv;
	pid_t d, c, r = -1, blocked;
	uint64_t base, t0, t1;
	long sys;
	int rc;

	snprintf(sock, sizeof(sock), "%s/%s-%s.sock", harness_dir(), edge_name[e],
		 by_guardian ? "hang" : "kill");
	snprintf(out, sizeof(out), "%s/edge-%s.out", harness_dir(), edge_name[e]);
	unlink(out);
	snprintf(rout, sizeof(rout), "%s/edge-%s.reader.out", harness_dir(), edge_name[e]);
	/* A real filesystem: /var/tmp (ext4 here); tmpfs refuses O_DIRECT. */
	snprintf(file, sizeof(file), "/var/tmp/tierd-edge.%d", (int)getpid());
	if (e == EDGE_ODIRECT)
		write_file(file);
	d = daemon_start(sock, "--shmem-registration", "whole", "--max-windows", "0", NULL);
	assert_true(d > 0);
	{
		char *argv[] = { self, "--edge-client", (char *)edge_name[e], sock, file,
				 by_guardian ? "1500" : "60000", NULL };

		c = spawn_out(argv, out, "TIERD_QUIET=1");
	}
	assert_true(c > 0);
	base = wait_ready(out);
	if (e == EDGE_ODIRECT)
		unlink(file); /* the client has it open: nothing is left behind if the case fails */
	kill(d, SIGSTOP);
	assert_true(harness_wait_stopped(d));
	if (e == EDGE_VMREAD) {
		char *argv[] = { self, "--edge-reader", pidbuf, basebuf, NULL };

		snprintf(pidbuf, sizeof(pidbuf), "%d", (int)c);
		snprintf(basebuf, sizeof(basebuf), "%llu", (unsigned long long)base);
		r = spawn_out(argv, rout, NULL);
		assert_true(r > 0);
		blocked = r;
	} else {
		kill(c, SIGUSR1);
		blocked = c;
	}
	msleep(BLOCKED_CHECK_MS);
	sys = harness_proc_syscall(blocked);
	if (sys != want_sys) {
		read_text(out, text, sizeof(text));
		print_message("client: %s\n", text);
		kill(d, SIGKILL);
	}
	print_message("%s: %s blocked in syscall %ld (state %c)\n", edge_name[e],
		      e == EDGE_VMREAD ? "reader" : "client", sys, harness_proc_state(blocked));
	/* Still inside the syscall: the kernel waits on the stopped tierd. */
	assert_int_equal(sys, want_sys);

	t0 = mono_usec();
	if (!by_guardian) {
		kill(d, SIGKILL);
		waitpid(d, NULL, 0);
	}
	if (e == EDGE_VMREAD) {
		rc = wait_exit(r, EDGE_DEADLINE_MS);
		t1 = mono_usec();
		read_text(rout, text, sizeof(text));
		print_message("reader exit %d after %.1f ms %s\n", rc, (double)(t1 - t0) / 1000.0, text);
		assert_int_equal(rc, 0);
		kill(c, SIGTERM);
	}
	rc = wait_exit(c, EDGE_DEADLINE_MS);
	t1 = mono_usec();
	read_text(out, text, sizeof(text));
	print_message("client exit %d, %.1f ms after the release began: %s", rc, (double)(t1 - t0) / 1000.0, text);
	if (by_guardian)
		daemon_stop(d);
	assert_int_equal(rc, 0);
}

static void test_mlockall_kill(void **state)
{
	(void)state;
	edge_case(EDGE_MLOCK, false);
}

static void test_mlockall_hang(void **state)
{
	(void)state;
	edge_case(EDGE_MLOCK, true);
}

static void test_odirect_read_kill(void **state)
{
	(void)state;
	edge_case(EDGE_ODIRECT, false);
}

static void test_odirect_read_hang(void **state)
{
	(void)state;
	edge_case(EDGE_ODIRECT, true);
}

static void test_process_vm_readv_kill(void **state)
{
	(void)state;
	edge_case(EDGE_VMREAD, false);
}

static void test_process_vm_readv_hang(void **state)
{
	(void)state;
	edge_case(EDGE_VMREAD, true);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_mlockall_kill),     cmocka_unit_test(test_mlockall_hang),
		cmocka_unit_test(test_odirect_read_kill), cmocka_unit_test(test_odirect_read_hang),
		cmocka_unit_test(test_process_vm_readv_kill),
		cmocka_unit_test(test_process_vm_readv_hang),
	};

	if (argc == 6 && strcmp(argv[1], "--edge-client") == 0)
		for (int e = 0; e < 3; e++)
			if (strcmp(argv[2], edge_name[e]) == 0)
				return edge_client((enum edge)e, argv[3], argv[4],
						   (unsigned)atoi(argv[5]));
	if (argc == 4 && strcmp(argv[1], "--edge-reader") == 0)
		return edge_reader((pid_t)atoi(argv[2]), strtoull(argv[3], NULL, 10));
	if (geteuid() != 0) {
		fprintf(stderr, "kernel tests need root\n");
		return 77;
	}
	return cmocka_run_group_tests_name("uffd release under kernel waiters", tests, group_setup,
					   harness_group_teardown);
}
