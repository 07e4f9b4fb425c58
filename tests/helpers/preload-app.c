/* SPDX-License-Identifier: MIT */
/*
 * An "unmodified application" for the LD_PRELOAD shim's tests (tests/kernel/test_preload.c): it
 * knows nothing about tierd and maps shared memory the way PostgreSQL does. It reports on stdout,
 * one line per step, and waits for a line on stdin where a step says so.
 *
 *   preload-app track shmem|hugetlb MIB NCHILD
 *       mmap(MAP_SHARED|MAP_ANONYMOUS[|MAP_HUGETLB]), fill, fork NCHILD children that each write
 *       and verify counters in their own slice of pages until SIGTERM; "MAPPED <maps name>",
 *       "READY"; <line>: stop and check the children ("CHILDREN <ok>/<n>"), check its own data,
 *       munmap ("UNMAPPED"), map again as a crash restart does ("REMAPPED <maps name>");
 *       <line>: exit.
 *   preload-app errno shmem|hugetlb MIB   one mmap: "OK <maps name>" or "ERRNO <n>"
 *   preload-app remap MIB                 "MAPPED"; <line>: mremap grow, "REMAPPED"; <line>: a new
 *                                         mapping, "MAPPED2"; <line>: MAP_FIXED over it, "FIXED";
 *                                         <line>: exit
 *   preload-app skip MIB                  a MAP_PRIVATE mapping and a small shared one
 *   preload-app hygiene MIB               with stderr closed: map, fill, a thread on a 64 KiB
 *                                         stack, wait 500 ms (libtier may complain meanwhile),
 *                                         check the data: "OK" or what went wrong
 * Exit status 0 when every check held.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#define WORD_STRIDE 4096u

static volatile sig_atomic_t stop;

static void on_term(int sig)
{
	(void)sig;
	stop = 1;
}

/* The pathname /proc/self/maps shows for the mapping at p ("" for none). */
static void maps_name(const void *p, char *out, size_t len)
{
	FILE *f = fopen("/proc/self/maps", "re");
	char line[512];

	snprintf(out, len, "?");
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		unsigned long lo, hi;
		int n = 0;

		if (sscanf(line, "%lx-%lx %*s %*s %*s %*s %n", &lo, &hi, &n) >= 2 &&
		    (uintptr_t)p >= lo && (uintptr_t)p < hi) {
			line[strcspn(line, "\n")] = '\0';
			snprintf(out, len, "%s", n ? line + n : "");
			break;
		}
	}
	fclose(f);
}

static void *map_shared(size_t size, int huge)
{
	return mmap(NULL, size, PROT_READ | PROT_WRITE,
		    MAP_SHARED | MAP_ANONYMOUS | (huge ? MAP_HUGETLB : 0), -1, 0);
}

static uint64_t expect(size_t off, uint64_t round)
{
	return (off * 0x9e3779b97f4a7c15ull) ^ round;
}

/* Writes and verifies one word per 4 KiB in [lo, hi) until SIGTERM. Exit status: 0 all good. */
static int child_loop(volatile uint64_t *base, size_t lo, size_t hi)
{
	uint64_t round = 0;

	while (!stop) {
		for (size_t off = lo; off < hi; off += WORD_STRIDE) {
			volatile uint64_t *w = base + off / 8;

			if (*w != expect(off, round))
				return 1;
			*w = expect(off, round + 1);
		}
		round++;
	}
	return 0;
}

static void wait_line(void)
{
	char line[64];

	if (!fgets(line, sizeof(line), stdin))
		exit(3);
}

static int track(int huge, size_t size, int nchild)
{
	pid_t kids[64];
	char name[256];
	volatile uint64_t *p;
	size_t slice;
	int ok = 0;

	if (nchild < 0 || nchild > 64)
		return 2;
	p = map_shared(size, huge);
	if (p == MAP_FAILED) {
		printf("ERRNO %d\n", errno);
		return 1;
	}
	maps_name((const void *)p, name, sizeof(name));
	printf("MAPPED %s\n", name);
	for (size_t off = 0; off < size; off += WORD_STRIDE)
		p[off / 8] = expect(off, 0);
	slice = size / (size_t)(nchild + 1) / WORD_STRIDE * WORD_STRIDE;
	signal(SIGTERM, on_term);
	fflush(stdout);
	for (int i = 0; i < nchild; i++) {
		kids[i] = fork();
		if (kids[i] == 0 && prctl(PR_SET_PDEATHSIG, SIGKILL) == 0 && getppid() != 1)
			_exit(child_loop(p, (size_t)(i + 1) * slice, (size_t)(i + 2) * slice));
		if (kids[i] == 0)
			_exit(4); /* orphaned already */
	}
	printf("READY\n");
	fflush(stdout);
	wait_line();
	for (int i = 0; i < nchild; i++)
		kill(kids[i], SIGTERM);
	for (int i = 0; i < nchild; i++) {
		int st;

		if (waitpid(kids[i], &st, 0) == kids[i] && WIFEXITED(st) && WEXITSTATUS(st) == 0)
			ok++;
	}
	printf("CHILDREN %d/%d\n", ok, nchild);
	/* The parent's slice was never written after the fill. */
	for (size_t off = 0; off < slice; off += WORD_STRIDE)
		if (p[off / 8] != expect(off, 0)) {
			printf("CORRUPT at %zu\n", off);
			return 1;
		}
	if (munmap((void *)p, size) < 0) {
		printf("MUNMAP %d\n", errno);
		return 1;
	}
	printf("UNMAPPED\n");
	fflush(stdout);
	/* A crash restart maps a new segment, zero-filled. */
	p = map_shared(size, huge);
	if (p == MAP_FAILED || p[size / 8 - 1] != 0) {
		printf("REMAP failed %d\n", errno);
		return 1;
	}
	p[0] = 1;
	maps_name((const void *)p, name, sizeof(name));
	printf("REMAPPED %s\n", name);
	fflush(stdout);
	wait_line();
	return ok == nchild ? 0 : 1;
}

static int remap(size_t size)
{
	char name[256];
	volatile uint64_t *p = map_shared(size, 0), *q;
	void *r;

	if (p == MAP_FAILED)
		return 1;
	for (size_t off = 0; off < size; off += WORD_STRIDE)
		p[off / 8] = expect(off, 7);
	maps_name((const void *)p, name, sizeof(name));
	printf("MAPPED %s\n", name);
	wait_line();
	q = mremap((void *)p, size, 2 * size, MREMAP_MAYMOVE);
	if (q == MAP_FAILED) {
		printf("MREMAP %d\n", errno);
		return 1;
	}
	for (size_t off = 0; off < size; off += WORD_STRIDE)
		if (q[off / 8] != expect(off, 7)) {
			printf("CORRUPT after mremap at %zu\n", off);
			return 1;
		}
	maps_name((const void *)q, name, sizeof(name));
	printf("REMAPPED %s\n", name);
	wait_line();
	p = map_shared(size, 0);
	if (p == MAP_FAILED)
		return 1;
	p[0] = 5;
	maps_name((const void *)p, name, sizeof(name));
	printf("MAPPED2 %s\n", name);
	wait_line();
	/* MAP_FIXED private memory over it: the kernel replaces it, tierd must let go. */
	r = mmap((void *)p, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
	if (r != (void *)p || p[0] != 0) {
		printf("FIXED failed %d\n", errno);
		return 1;
	}
	printf("FIXED\n");
	wait_line();
	return 0;
}

static void *nothing(void *arg)
{
	return arg;
}

static int hygiene(size_t size)
{
	volatile uint8_t *p;
	pthread_attr_t attr;
	pthread_t th;
	int r;

	close(2); /* the next fd the program or the shim opens takes number 2 */
	p = map_shared(size, 0);
	if (p == MAP_FAILED) {
		printf("MMAP %d\n", errno);
		return 1;
	}
	memset((void *)p, 0xAA, size);
	/* Thread-local storage the shim brings comes out of every thread's stack. */
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, 64 << 10);
	r = pthread_create(&th, &attr, nothing, NULL);
	if (r) {
		printf("PTHREAD_CREATE %d\n", r);
		return 1;
	}
	pthread_join(th, NULL);
	usleep(500 * 1000);
	for (size_t i = 0; i < size; i++)
		if (p[i] != 0xAA) {
			printf("CORRUPT at %zu: %.40s\n", i, (const char *)p + i);
			return 1;
		}
	printf("OK\n");
	return 0;
}

int main(int argc, char **argv)
{
	char name[256];
	size_t mib;
	void *p;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc >= 5 && strcmp(argv[1], "track") == 0)
		return track(strcmp(argv[2], "hugetlb") == 0, strtoull(argv[3], NULL, 10) << 20,
			     atoi(argv[4]));
	if (argc >= 4 && strcmp(argv[1], "errno") == 0) {
		p = map_shared(strtoull(argv[3], NULL, 10) << 20, strcmp(argv[2], "hugetlb") == 0);
		if (p == MAP_FAILED) {
			printf("ERRNO %d\n", errno);
			return 0;
		}
		maps_name(p, name, sizeof(name));
		printf("OK %s\n", name);
		return 0;
	}
	if (argc >= 3 && strcmp(argv[1], "hygiene") == 0)
		return hygiene(strtoull(argv[2], NULL, 10) << 20);
	if (argc >= 3 && strcmp(argv[1], "remap") == 0)
		return remap(strtoull(argv[2], NULL, 10) << 20);
	if (argc >= 3 && strcmp(argv[1], "skip") == 0) {
		mib = strtoull(argv[2], NULL, 10);
		p = mmap(NULL, mib << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		maps_name(p, name, sizeof(name));
		printf("PRIVATE %s\n", name);
		p = map_shared(64 << 10, 0);
		maps_name(p, name, sizeof(name));
		printf("SMALL %s\n", name);
		return 0;
	}
	fprintf(stderr, "usage: see tests/helpers/preload-app.c\n");
	return 2;
}
