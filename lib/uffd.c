/* SPDX-License-Identifier: MIT */
/* userfaultfd creation, the two-step UFFDIO_API handshake, and ioctl wrappers. */
#include "uffd.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "tierd/proto.h"

static int real_create(void *ctx)
{
	int *dev_fd = ctx;
	int fd;

	if (dev_fd && *dev_fd >= 0)
		fd = ioctl(*dev_fd, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
	else
		fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	return fd < 0 ? -errno : fd;
}

static int real_ioctl(int fd, unsigned long req, void *arg)
{
	return ioctl(fd, req, arg);
}

struct uffd_ops uffd_ops_real(int *dev_fd)
{
	return (struct uffd_ops){ .create = real_create, .ioctl = real_ioctl, .ctx = dev_fd };
}

static int api_call(const struct uffd_ops *ops, int fd, uint64_t features, struct uffdio_api *out)
{
	*out = (struct uffdio_api){ .api = UFFD_API, .features = features };
	if (ops->ioctl(fd, UFFDIO_API, out) < 0)
		return -errno;
	return 0;
}

int uffd_negotiate(const struct uffd_ops *ops, uint64_t required, uint64_t optional,
		   struct uffd_handshake *hs)
{
	struct uffdio_api api;
	uint64_t want;
	int fd, r;

	*hs = (struct uffd_handshake){ 0 };

	/* Step 1: features = 0 asks what the kernel offers. */
	fd = ops->create(ops->ctx);
	if (fd < 0)
		return fd;
	r = api_call(ops, fd, 0, &api);
	if (r < 0) {
		close(fd);
		return r;
	}
	hs->offered = api.features;
	hs->missing = required & ~api.features;
	if (hs->missing) {
		close(fd);
		return -EPROTONOSUPPORT;
	}
	want = required | (optional & api.features);

	/* Step 2: request the subset on the same fd, as the man page describes. */
	r = api_call(ops, fd, want, &api);
	if (r == -EINVAL) {
		/* This kernel sets the API once per fd: the first fd was only a probe. */
		hs->second_call_refused = 1;
		close(fd);
		fd = ops->create(ops->ctx);
		if (fd < 0)
			return fd;
		r = api_call(ops, fd, want, &api);
	}
	if (r < 0) {
		close(fd);
		return r;
	}
	/* The kernel echoes the enabled features; anything required and absent is a refusal. */
	if ((api.features & required) != required) {
		hs->missing = required & ~api.features;
		close(fd);
		return -EPROTONOSUPPORT;
	}
	hs->enabled = api.features & want;
	hs->ioctls = api.ioctls;
	return fd;
}

static const char *const feature_names[] = {
	"PAGEFAULT_FLAG_WP", "EVENT_FORK",     "EVENT_REMAP",     "EVENT_REMOVE",
	"EVENT_UNMAP",       "MISSING_HUGETLBFS", "MISSING_SHMEM", "SIGBUS",
	"THREAD_ID",         "MINOR_HUGETLBFS", "MINOR_SHMEM",    "EXACT_ADDRESS",
	"WP_HUGETLBFS_SHMEM", "WP_UNPOPULATED", "POISON",         "WP_ASYNC",
	"MOVE",
};

void uffd_feature_names(uint64_t features, char *buf, size_t len)
{
	size_t used = 0;

	if (len == 0)
		return;
	buf[0] = '\0';
	for (unsigned bit = 0; bit < 64 && used < len; bit++) {
		char unknown[24];
		const char *name;
		int n;

		if (!(features & (UINT64_C(1) << bit)))
			continue;
		if (bit < sizeof(feature_names) / sizeof(feature_names[0])) {
			name = feature_names[bit];
		} else {
			snprintf(unknown, sizeof(unknown), "bit%u", bit);
			name = unknown;
		}
		n = snprintf(buf + used, len - used, "%s%s", used ? "|" : "", name);
		if (n < 0)
			break;
		used += (size_t)n;
	}
}

uint64_t uffd_required_for_kind(uint32_t kind)
{
	switch (kind) {
	case TIERD_SEG_SHMEM:
		return UFFD_FEATURE_MINOR_SHMEM;
	case TIERD_SEG_HUGETLB:
		return UFFD_FEATURE_MINOR_HUGETLBFS;
	default:
		return 0;
	}
}

void uffd_describe_missing(uint64_t missing, char *buf, size_t len)
{
	char names[256];
	struct utsname u;
	const char *hint = "";

	uffd_feature_names(missing, names, sizeof(names));
	if (uname(&u) < 0)
		snprintf(u.release, sizeof(u.release), "unknown");
	/* Say what would fix it: the first kernel release with the missing feature. */
	if (missing & UFFD_FEATURE_MINOR_SHMEM)
		hint = " (MINOR faults on shmem need Linux >= 5.14)";
	else if (missing & UFFD_FEATURE_MINOR_HUGETLBFS)
		hint = " (MINOR faults on hugetlbfs need Linux >= 5.13)";
	snprintf(buf, len, "kernel %s lacks userfaultfd feature(s) %s%s", u.release, names, hint);
}

int uffd_register(int uffd, uint64_t start, uint64_t len, uint64_t mode)
{
	struct uffdio_register reg = { .range = { .start = start, .len = len }, .mode = mode };

	return ioctl(uffd, UFFDIO_REGISTER, &reg) < 0 ? -errno : 0;
}

int uffd_unregister(int uffd, uint64_t start, uint64_t len)
{
	struct uffdio_range range = { .start = start, .len = len };

	return ioctl(uffd, UFFDIO_UNREGISTER, &range) < 0 ? -errno : 0;
}

int uffd_wake(int uffd, uint64_t start, uint64_t len)
{
	struct uffdio_range range = { .start = start, .len = len };

	return ioctl(uffd, UFFDIO_WAKE, &range) < 0 ? -errno : 0;
}

int uffd_continue(int uffd, uint64_t start, uint64_t len, int64_t *mapped)
{
	struct uffdio_continue c = { .range = { .start = start, .len = len }, .mode = 0 };
	int r = ioctl(uffd, UFFDIO_CONTINUE, &c) < 0 ? -errno : 0;

	if (mapped)
		*mapped = c.mapped;
	return r;
}
