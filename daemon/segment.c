/* SPDX-License-Identifier: MIT */
/* Segment objects and the checks on fds that clients hand to tierd. */
#include "segment.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/magic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "tierd/proto.h"

int memfd_inspect(int fd, struct memfd_info *info, char *why, size_t whylen)
{
	struct statfs sfs;
	struct stat st;
	int seals;

	if (fstat(fd, &st) < 0 || fstatfs(fd, &sfs) < 0) {
		snprintf(why, whylen, "cannot stat the segment fd: %s", strerror(errno));
		return -errno;
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(why, whylen, "segment fd is not a regular file (a memfd is expected)");
		return -EBADF;
	}
	if ((unsigned long)sfs.f_type == TMPFS_MAGIC) {
		info->kind = TIERD_SEG_SHMEM;
		info->page_size = (uint64_t)sysconf(_SC_PAGESIZE);
	} else if ((unsigned long)sfs.f_type == HUGETLBFS_MAGIC) {
		info->kind = TIERD_SEG_HUGETLB;
		info->page_size = (uint64_t)sfs.f_bsize;
	} else {
		snprintf(why, whylen, "segment fd is on filesystem 0x%lx, not tmpfs or hugetlbfs",
			 (unsigned long)sfs.f_type);
		return -EBADF;
	}
	seals = fcntl(fd, F_GET_SEALS);
	if (seals < 0) {
		snprintf(why, whylen, "segment fd does not support sealing (not a memfd)");
		return -EBADF;
	}
	if (!(seals & F_SEAL_SHRINK)) {
		snprintf(why, whylen, "memfd is not sealed with F_SEAL_SHRINK");
		return -EPERM;
	}
	if ((fcntl(fd, F_GETFL) & O_ACCMODE) != O_RDWR) {
		snprintf(why, whylen, "memfd must be open read-write");
		return -EBADF;
	}
	/* The size only now, with F_SEAL_SHRINK seen: from here it can never go down. A size read
	 * before the seals could be stale: the client shrinks, then seals, in between, and tierd's
	 * alias would reach past the end of the file (tests/kernel/test_hostile.c, shrink race). */
	if (fstat(fd, &st) < 0) {
		snprintf(why, whylen, "cannot stat the segment fd: %s", strerror(errno));
		return -errno;
	}
	info->dev = st.st_dev;
	info->ino = st.st_ino;
	info->size_bytes = (uint64_t)st.st_size;
	info->seals = seals;
	return 0;
}

bool fd_is_userfaultfd(int fd)
{
	char path[64], target[64];
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	n = readlink(path, target, sizeof(target) - 1);
	if (n < 0)
		return false;
	target[n] = '\0';
	return strcmp(target, "anon_inode:[userfaultfd]") == 0;
}

int maps_cover(const char *maps_path, uint64_t base, uint64_t length, dev_t dev, ino_t ino)
{
	uint64_t covered_to = base, end = base + length;
	bool line_start = true;
	char line[512];
	FILE *f;

	f = fopen(maps_path, "re");
	if (!f)
		return -errno;
	while (covered_to < end && fgets(line, sizeof(line), f)) {
		unsigned long long lo, hi, off, inode;
		unsigned maj, min;
		char perms[8];
		/* A line longer than the buffer (a long path) comes in pieces, and only the first is a
		 * record: the others start inside a path the client chose, which can spell one. */
		bool record = line_start;

		line_start = strchr(line, '\n') != NULL;
		if (!record || sscanf(line, "%llx-%llx %7s %llx %x:%x %llu", &lo, &hi, perms, &off,
				      &maj, &min, &inode) != 7)
			continue;
		if (hi <= covered_to || lo > covered_to)
			continue;
		/* This VMA must continue the coverage: same file, shared, offset in step. */
		if (inode != (unsigned long long)ino || makedev(maj, min) != dev || perms[3] != 's' ||
		    off + (covered_to - lo) != covered_to - base)
			break;
		covered_to = hi;
	}
	fclose(f);
	return covered_to >= end ? 0 : -ENOENT;
}

int segment_new(const struct memfd_info *info, int memfd, uint32_t id, uint64_t window_pages,
		size_t min_regions, size_t max_regions, struct segment **ret)
{
	struct segment *seg;
	int r;

	seg = calloc(1, sizeof(*seg));
	if (!seg)
		return -ENOMEM;
	seg->memfd = -1;
	seg->alias = MAP_FAILED;
	seg->id = id;
	seg->kind = info->kind;
	seg->dev = info->dev;
	seg->ino = info->ino;
	seg->size_bytes = info->size_bytes;
	seg->page_size = info->page_size;
	seg->npages = info->size_bytes / info->page_size;

	/* The alias is where migration will act (issue 3). It is never touched by the fault path, and
	 * the F_SEAL_SHRINK checked at attach time keeps it from ever SIGBUSing. */
	seg->alias = mmap(NULL, seg->size_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
	if (seg->alias == MAP_FAILED) {
		r = -errno;
		goto fail;
	}
	seg->pages = calloc(seg->npages, sizeof(*seg->pages));
	if (!seg->pages) {
		r = -ENOMEM;
		goto fail;
	}
	for (uint64_t i = 0; i < seg->npages; i++)
		seg->pages[i].node = -1;
	if (window_pages > seg->npages)
		window_pages = seg->npages;
	r = region_set_init(&seg->regions, seg->npages, min_regions, max_regions, window_pages,
			    ((uint64_t)id << 32) ^ (uint64_t)info->ino ^ 0x5bd1e995u);
	if (r < 0)
		goto fail;
	seg->memfd = memfd;
	*ret = seg;
	return 0;
fail:
	segment_free(seg);
	return r;
}

struct segment *segment_free(struct segment *seg)
{
	if (!seg)
		return NULL;
	if (seg->alias != MAP_FAILED)
		munmap(seg->alias, seg->size_bytes);
	if (seg->memfd >= 0)
		close(seg->memfd);
	region_set_fini(&seg->regions);
	free(seg->windows);
	free(seg->vregions);
	free(seg->closed);
	free(seg->recorded_node);
	free(seg->batch.pages);
	free(seg->batch.runs);
	free(seg->pages);
	free(seg);
	return NULL;
}
