/* SPDX-License-Identifier: MIT */
/* daemon/mems.c: reading a process's cpuset mems (Mems_allowed) and printing node masks. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "mems.h"

static void test_parse(void **state)
{
	uint64_t m = 0;

	(void)state;
	assert_int_equal(mems_parse("\t00000001\n", &m), 0);
	assert_true(m == 1);
	assert_int_equal(mems_parse("00000000,00000003", &m), 0);
	assert_true(m == 3);
	/* Nodes 32 and 0, and a kernel with 1024 nodes (32 words): the last two words are 0..63. */
	assert_int_equal(mems_parse("00000001,00000001", &m), 0);
	assert_true(m == (UINT64_C(1) << 32 | 1));
	assert_int_equal(mems_parse("00000000,00000000,00000000,00000000,00000000,00000000,"
				    "00000000,00000000,00000000,00000000,00000000,00000000,"
				    "00000000,00000000,00000000,00000000,00000000,00000000,"
				    "00000000,00000000,00000000,00000000,00000000,00000000,"
				    "00000000,00000000,00000000,00000000,00000000,00000000,"
				    "00000000,00000002\n", &m), 0);
	assert_true(m == 2);
	assert_int_equal(mems_parse("", &m), -EINVAL);
	assert_int_equal(mems_parse("0-1", &m), -EINVAL);
	assert_int_equal(mems_parse("00000001,", &m), -EINVAL);
	assert_int_equal(mems_parse("123456789", &m), -EINVAL);
	assert_int_equal(mems_parse("00000001 x", &m), -EINVAL);
}

/* The real file: this process may use at least one node, and a process that is gone says so. */
static void test_of(void **state)
{
	uint64_t m = 0;

	(void)state;
	assert_int_equal(mems_of(0, &m), 0);
	assert_true(m != 0);
	assert_int_equal(mems_of(getpid(), &m), 0);
	assert_true(m != 0);
	assert_int_equal(mems_of(0x3ffffff0, &m), -ENOENT);
}

static void test_format(void **state)
{
	char b[64];

	(void)state;
	mems_format(1, b, sizeof(b));
	assert_string_equal(b, "0");
	mems_format(0xb, b, sizeof(b));
	assert_string_equal(b, "0-1,3");
	mems_format(UINT64_C(1) << 63 | 0x70, b, sizeof(b));
	assert_string_equal(b, "4-6,63");
	mems_format(0, b, sizeof(b));
	assert_string_equal(b, "none");
	mems_format(UINT64_MAX, b, sizeof(b));
	assert_string_equal(b, "0-63");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse),
		cmocka_unit_test(test_of),
		cmocka_unit_test(test_format),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
