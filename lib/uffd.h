/* SPDX-License-Identifier: MIT */
/*
 * userfaultfd creation and the UFFDIO_API handshake, shared by libtier and tierd.
 *
 * ioctl_userfaultfd(2) describes a two-step handshake: UFFDIO_API with features = 0 reports what
 * the kernel offers, then a second UFFDIO_API on the same fd requests a subset. Kernels 6.1 and
 * 6.18 refuse the second call with EINVAL (the API is already set), so on EINVAL the probe fd is
 * thrown away and the subset is requested on a fresh fd. Both paths are tested with an injected
 * ioctl (tests/unit/test_uffd.c) and the real one on the running kernel.
 */
#ifndef TIERD_UFFD_H
#define TIERD_UFFD_H

#include <stddef.h>
#include <stdint.h>
#include <linux/userfaultfd.h>

/* Debian 12's header is 6.1's; define what tierd uses beyond it. */
#ifndef UFFD_FEATURE_MINOR_SHMEM
#define UFFD_FEATURE_MINOR_SHMEM (1 << 10)
#endif
#ifndef USERFAULTFD_IOC_NEW
#define USERFAULTFD_IOC_NEW _IO(0xAA, 0x00)
#endif

/* How uffds are made and driven; tests substitute these. */
struct uffd_ops {
	/* Returns a new uffd (O_CLOEXEC|O_NONBLOCK) or a negative errno. */
	int (*create)(void *ctx);
	/* ioctl(2): returns 0 or -1 with errno set. */
	int (*ioctl)(int fd, unsigned long req, void *arg);
	void *ctx;
};

/* Real ops: userfaultfd(2), or USERFAULTFD_IOC_NEW on a /dev/userfaultfd fd when dev_fd >= 0. */
struct uffd_ops uffd_ops_real(int *dev_fd);

struct uffd_handshake {
	uint64_t offered;   /* everything the kernel offers */
	uint64_t enabled;   /* what the returned fd has enabled */
	uint64_t missing;   /* required features the kernel lacks (set when -EPROTONOSUPPORT) */
	uint64_t ioctls;    /* UFFDIO_API's ioctls mask */
	int second_call_refused; /* 1 when the kernel refused UFFDIO_API twice on one fd */
};

/*
 * Negotiate: returns a uffd with `required` plus whatever of `optional` the kernel offers, or a
 * negative errno: -EPROTONOSUPPORT when required features are missing (hs->missing says which),
 * -EPERM/-ENOSYS/… from creating the fd.
 */
int uffd_negotiate(const struct uffd_ops *ops, uint64_t required, uint64_t optional,
		   struct uffd_handshake *hs);

/* Writes "MINOR_SHMEM|MINOR_HUGETLBFS" style names of the bits in `features` into buf. */
void uffd_feature_names(uint64_t features, char *buf, size_t len);

/* The uffd features a segment kind (enum tierd_seg_kind) needs. 0 for unknown kinds. */
uint64_t uffd_required_for_kind(uint32_t kind);

/* A message naming the missing features and the running kernel, for logs and errors. */
void uffd_describe_missing(uint64_t missing, char *buf, size_t len);

/* Thin wrappers returning 0 or a negative errno; `copied`/`mapped` out-params may be NULL. */
int uffd_register(int uffd, uint64_t start, uint64_t len, uint64_t mode);
int uffd_unregister(int uffd, uint64_t start, uint64_t len);
int uffd_wake(int uffd, uint64_t start, uint64_t len);
int uffd_continue(int uffd, uint64_t start, uint64_t len, int64_t *mapped);

#endif
