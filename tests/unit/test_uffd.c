/* SPDX-License-Identifier: MIT */
/*
 * The UFFDIO_API handshake against both kernel behaviours (injected ioctl: one kernel refuses a
 * second UFFDIO_API on one fd, an older one accepts it), missing features, and the real kernel.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <cmocka.h>

#include "tierd/proto.h"
#include "uffd.h"

struct fake_kernel {
	uint64_t offered;
	bool refuse_second;  /* 6.1/6.18 behaviour */
	bool echo_less;      /* a kernel that enables less than asked */
	int create_error;
	int fds_created;
	int api_calls;
	int api_set[64];     /* per fd: API already set */
};

static int fake_create(void *ctx)
{
	struct fake_kernel *k = ctx;
	int fd;

	if (k->create_error)
		return -k->create_error;
	fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0 && fd < 64);
	k->api_set[fd] = 0;
	k->fds_created++;
	return fd;
}

static struct fake_kernel *current;

static int fake_ioctl(int fd, unsigned long req, void *arg)
{
	struct uffdio_api *api = arg;

	assert_int_equal(req, UFFDIO_API);
	assert_int_equal(api->api, UFFD_API);
	current->api_calls++;
	if (current->api_set[fd] && current->refuse_second) {
		errno = EINVAL;
		return -1;
	}
	if (api->features & ~current->offered) {
		errno = EINVAL;
		return -1;
	}
	current->api_set[fd] = 1;
	if (api->features == 0)
		api->features = current->offered;
	else if (current->echo_less)
		api->features &= ~UFFD_FEATURE_MINOR_SHMEM;
	api->ioctls = 1ull << _UFFDIO_REGISTER;
	return 0;
}

static struct uffd_ops fake_ops(struct fake_kernel *k)
{
	current = k;
	return (struct uffd_ops){ .create = fake_create, .ioctl = fake_ioctl, .ctx = k };
}

#define KERNEL_6_1_FEATURES 0x1fffull

static void test_second_call_refused(void **state)
{
	struct fake_kernel k = { .offered = KERNEL_6_1_FEATURES, .refuse_second = true };
	struct uffd_ops ops = fake_ops(&k);
	struct uffd_handshake hs;
	int fd;

	(void)state;
	fd = uffd_negotiate(&ops, UFFD_FEATURE_MINOR_SHMEM, UFFD_FEATURE_THREAD_ID, &hs);
	assert_true(fd >= 0);
	assert_int_equal(hs.second_call_refused, 1);
	assert_int_equal(k.fds_created, 2); /* probe fd thrown away, fresh fd negotiated */
	assert_int_equal(k.api_calls, 3);
	assert_int_equal(hs.offered, KERNEL_6_1_FEATURES);
	assert_int_equal(hs.enabled, UFFD_FEATURE_MINOR_SHMEM | UFFD_FEATURE_THREAD_ID);
	close(fd);
}

static void test_second_call_accepted(void **state)
{
	struct fake_kernel k = { .offered = KERNEL_6_1_FEATURES, .refuse_second = false };
	struct uffd_ops ops = fake_ops(&k);
	struct uffd_handshake hs;
	int fd;

	(void)state;
	fd = uffd_negotiate(&ops, UFFD_FEATURE_MINOR_HUGETLBFS, 0, &hs);
	assert_true(fd >= 0);
	assert_int_equal(hs.second_call_refused, 0);
	assert_int_equal(k.fds_created, 1); /* the man page's two steps on one fd */
	assert_int_equal(k.api_calls, 2);
	assert_int_equal(hs.enabled, UFFD_FEATURE_MINOR_HUGETLBFS);
	close(fd);
}

static void test_optional_not_offered(void **state)
{
	/* 6.1 offers nothing above bit 12: asking for MOVE (bit 16) optionally must not fail. */
	struct fake_kernel k = { .offered = KERNEL_6_1_FEATURES, .refuse_second = true };
	struct uffd_ops ops = fake_ops(&k);
	struct uffd_handshake hs;
	int fd;

	(void)state;
	fd = uffd_negotiate(&ops, UFFD_FEATURE_MINOR_SHMEM, 1ull << 16, &hs);
	assert_true(fd >= 0);
	assert_int_equal(hs.enabled, UFFD_FEATURE_MINOR_SHMEM);
	close(fd);
}

static void test_missing_required(void **state)
{
	struct fake_kernel k = { .offered = KERNEL_6_1_FEATURES & ~(uint64_t)UFFD_FEATURE_MINOR_SHMEM };
	struct uffd_ops ops = fake_ops(&k);
	struct uffd_handshake hs;
	char why[256];
	struct utsname u;

	(void)state;
	assert_int_equal(uffd_negotiate(&ops, UFFD_FEATURE_MINOR_SHMEM, 0, &hs), -EPROTONOSUPPORT);
	assert_int_equal(hs.missing, UFFD_FEATURE_MINOR_SHMEM);
	assert_int_equal(k.fds_created, 1);
	uffd_describe_missing(hs.missing, why, sizeof(why));
	assert_non_null(strstr(why, "MINOR_SHMEM"));
	assert_null(strstr(why, "MINOR_HUGETLBFS"));
	assert_int_equal(uname(&u), 0);
	assert_non_null(strstr(why, u.release));
}

static void test_kernel_enables_less(void **state)
{
	struct fake_kernel k = { .offered = KERNEL_6_1_FEATURES, .echo_less = true };
	struct uffd_ops ops = fake_ops(&k);
	struct uffd_handshake hs;

	(void)state;
	assert_int_equal(uffd_negotiate(&ops, UFFD_FEATURE_MINOR_SHMEM, 0, &hs), -EPROTONOSUPPORT);
	assert_int_equal(hs.missing, UFFD_FEATURE_MINOR_SHMEM);
}

static void test_create_fails(void **state)
{
	struct fake_kernel k = { .offered = KERNEL_6_1_FEATURES, .create_error = EPERM };
	struct uffd_ops ops = fake_ops(&k);
	struct uffd_handshake hs;

	(void)state;
	assert_int_equal(uffd_negotiate(&ops, UFFD_FEATURE_MINOR_SHMEM, 0, &hs), -EPERM);
}

static void test_feature_names(void **state)
{
	char buf[256];

	(void)state;
	uffd_feature_names(UFFD_FEATURE_MINOR_SHMEM | UFFD_FEATURE_MINOR_HUGETLBFS, buf, sizeof(buf));
	assert_string_equal(buf, "MINOR_HUGETLBFS|MINOR_SHMEM");
	uffd_feature_names(1ull << 40, buf, sizeof(buf));
	assert_string_equal(buf, "bit40");
	uffd_feature_names(0, buf, sizeof(buf));
	assert_string_equal(buf, "");
	uffd_feature_names(~0ull, buf, 8); /* truncation stays NUL-terminated */
	assert_true(strlen(buf) < 8);
	assert_int_equal(uffd_required_for_kind(TIERD_SEG_SHMEM), UFFD_FEATURE_MINOR_SHMEM);
	assert_int_equal(uffd_required_for_kind(TIERD_SEG_HUGETLB), UFFD_FEATURE_MINOR_HUGETLBFS);
	assert_int_equal(uffd_required_for_kind(99), 0);
}

/* The running kernel: whatever it does with a second UFFDIO_API, negotiation must succeed. */
static void test_real_kernel(void **state)
{
	struct uffd_ops ops = uffd_ops_real(NULL);
	struct uffd_handshake hs;
	int fd;

	(void)state;
	fd = uffd_negotiate(&ops, UFFD_FEATURE_MINOR_SHMEM | UFFD_FEATURE_MINOR_HUGETLBFS, 0, &hs);
	if (fd == -EPERM)
		skip(); /* unprivileged run: covered through /dev/userfaultfd below */
	assert_true(fd >= 0);
	assert_true(hs.offered & UFFD_FEATURE_MINOR_SHMEM);
	print_message("offered 0x%llx, second UFFDIO_API %s\n", (unsigned long long)hs.offered,
		      hs.second_call_refused ? "refused" : "accepted");
	/* On a kernel that refuses a second UFFDIO_API, the returned fd has its API set. */
	{
		struct uffdio_api api = { .api = UFFD_API };

		if (hs.second_call_refused)
			assert_int_equal(ioctl(fd, UFFDIO_API, &api), -1);
	}
	close(fd);
}

static void test_real_dev_userfaultfd(void **state)
{
	int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
	struct uffd_ops ops = uffd_ops_real(&dev);
	struct uffd_handshake hs;
	int fd;

	(void)state;
	if (dev < 0)
		skip();
	fd = uffd_negotiate(&ops, UFFD_FEATURE_MINOR_SHMEM, 0, &hs);
	assert_true(fd >= 0);
	assert_int_equal(hs.enabled, UFFD_FEATURE_MINOR_SHMEM);
	close(fd);
	close(dev);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_second_call_refused), cmocka_unit_test(test_second_call_accepted),
		cmocka_unit_test(test_optional_not_offered), cmocka_unit_test(test_missing_required),
		cmocka_unit_test(test_kernel_enables_less), cmocka_unit_test(test_create_fails),
		cmocka_unit_test(test_feature_names),       cmocka_unit_test(test_real_kernel),
		cmocka_unit_test(test_real_dev_userfaultfd),
	};

	return cmocka_run_group_tests_name("uffd handshake", tests, NULL, NULL);
}
