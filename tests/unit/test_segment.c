/* SPDX-License-Identifier: MIT */
/* Checks tierd applies to the fds clients hand it, the maps parser, and segment set-up. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cmocka.h>

#include "segment.h"
#include "tierd/proto.h"

static int sealed_memfd(size_t size, unsigned seals)
{
	int fd = memfd_create("t", MFD_CLOEXEC | MFD_ALLOW_SEALING);

	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)size), 0);
	if (seals)
		assert_int_equal(fcntl(fd, F_ADD_SEALS, seals), 0);
	return fd;
}

static void test_memfd_inspect(void **state)
{
	struct memfd_info info;
	char why[128];
	int fd, p[2];

	(void)state;
	fd = sealed_memfd(1 << 20, F_SEAL_SHRINK | F_SEAL_GROW);
	assert_int_equal(memfd_inspect(fd, &info, why, sizeof(why)), 0);
	assert_int_equal(info.kind, TIERD_SEG_SHMEM);
	assert_int_equal(info.size_bytes, 1 << 20);
	assert_int_equal(info.page_size, (uint64_t)sysconf(_SC_PAGESIZE));
	close(fd);

	fd = sealed_memfd(1 << 20, 0);
	assert_int_equal(memfd_inspect(fd, &info, why, sizeof(why)), -EPERM);
	assert_non_null(strstr(why, "F_SEAL_SHRINK"));
	close(fd);

	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	assert_int_equal(memfd_inspect(p[0], &info, why, sizeof(why)), -EBADF);
	assert_non_null(strstr(why, "not a regular file"));
	close(p[0]);
	close(p[1]);

	fd = open("/dev/zero", O_RDWR | O_CLOEXEC);
	assert_int_equal(memfd_inspect(fd, &info, why, sizeof(why)), -EBADF);
	close(fd);

	/* A regular file on a disk filesystem, not tmpfs/hugetlbfs. */
	fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
	assert_int_equal(memfd_inspect(fd, &info, why, sizeof(why)), -EBADF);
	close(fd);

	/* Read-only memfd: the alias needs write access for migration. */
	fd = sealed_memfd(4096, F_SEAL_SHRINK);
	{
		char path[64];
		int ro;

		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
		ro = open(path, O_RDONLY | O_CLOEXEC);
		assert_true(ro >= 0);
		assert_int_equal(memfd_inspect(ro, &info, why, sizeof(why)), -EBADF);
		close(ro);
	}
	close(fd);
}

static void test_is_uffd(void **state)
{
	int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC);
	int m = sealed_memfd(4096, 0);

	(void)state;
	if (fd < 0)
		skip();
	assert_true(fd_is_userfaultfd(fd));
	assert_false(fd_is_userfaultfd(m));
	assert_false(fd_is_userfaultfd(-1));
	close(fd);
	close(m);
}

static void test_maps_fixture(void **state)
{
	char path[] = "/tmp/tierd-maps.XXXXXX";
	int fd = mkstemp(path);
	FILE *f = fdopen(fd, "w");
	dev_t dev = makedev(0, 1);

	(void)state;
	/* Two adjacent VMAs of one file (a split by window registration), then an unrelated one. */
	fprintf(f, "7f0000000000-7f0000100000 rw-s 00000000 00:01 4242 /memfd:a (deleted)\n"
		   "7f0000100000-7f0000200000 rw-s 00100000 00:01 4242 /memfd:a (deleted)\n"
		   "7f0000200000-7f0000300000 rw-p 00000000 00:00 0\n"
		   "7f1000000000-7f1000100000 rw-p 00000000 00:01 4243 /memfd:b (deleted)\n");
	fclose(f);
	assert_int_equal(maps_cover(path, 0x7f0000000000, 0x200000, dev, 4242), 0);
	assert_int_equal(maps_cover(path, 0x7f0000000000, 0x100000, dev, 4242), 0);
	assert_int_equal(maps_cover(path, 0x7f0000000000, 0x300000, dev, 4242), -ENOENT); /* runs off */
	assert_int_equal(maps_cover(path, 0x7f0000100000, 0x100000, dev, 4242), -ENOENT); /* offset */
	assert_int_equal(maps_cover(path, 0x7f0000000000, 0x200000, dev, 4243), -ENOENT); /* inode */
	assert_int_equal(maps_cover(path, 0x7f0000000000, 0x200000, makedev(0, 2), 4242), -ENOENT);
	assert_int_equal(maps_cover(path, 0x7f1000000000, 0x100000, dev, 4243), -ENOENT); /* private */
	assert_int_equal(maps_cover("/nonexistent/maps", 0, 1, dev, 1), -ENOENT);
	unlink(path);
}

static void test_maps_real_and_segment(void **state)
{
	int fd = sealed_memfd(64 * 4096, F_SEAL_SHRINK | F_SEAL_GROW);
	struct memfd_info info;
	struct segment *seg = NULL;
	char why[128];
	void *p;

	(void)state;
	p = mmap(NULL, 64 * 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	assert_true(p != MAP_FAILED);
	assert_int_equal(memfd_inspect(fd, &info, why, sizeof(why)), 0);
	assert_int_equal(maps_cover("/proc/self/maps", (uintptr_t)p, 64 * 4096, info.dev, info.ino), 0);
	assert_int_equal(maps_cover("/proc/self/maps", (uintptr_t)p + 4096, 63 * 4096, info.dev,
				    info.ino), -ENOENT);

	assert_int_equal(segment_new(&info, fd, 1, 16, 10, 256, &seg), 0);
	assert_int_equal(seg->npages, 64);
	assert_int_equal(seg->regions.n, 4); /* 64 pages / 16-page windows */
	for (uint64_t i = 0; i < seg->npages; i++) {
		assert_int_equal(seg->pages[i].node, -1);
		assert_int_equal(seg->pages[i].accesses, 0);
	}
	/* The alias maps the same memory. */
	((volatile char *)p)[4096] = 'x';
	assert_int_equal(((volatile char *)seg->alias)[4096], 'x');
	page_touch(&seg->pages[3], 7);
	assert_int_equal(seg->pages[3].accesses, 1);
	assert_int_equal(seg->pages[3].last_epoch, 7);
	assert_false(seg->pages[3].flags & PS_HIT);
	seg->pages[3].flags |= PS_ARMED;
	page_touch(&seg->pages[3], 8);
	assert_true(seg->pages[3].flags & PS_HIT);
	seg->pages[4].accesses = UINT32_MAX;
	page_touch(&seg->pages[4], 9); /* saturates */
	assert_int_equal(seg->pages[4].accesses, UINT32_MAX);
	assert_true(sizeof(struct tierd_page) <= 16);
	segment_free(seg); /* closes fd */
	munmap(p, 64 * 4096);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_memfd_inspect),
		cmocka_unit_test(test_is_uffd),
		cmocka_unit_test(test_maps_fixture),
		cmocka_unit_test(test_maps_real_and_segment),
	};

	return cmocka_run_group_tests_name("segments and fd checks", tests, NULL, NULL);
}
