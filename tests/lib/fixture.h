/* SPDX-License-Identifier: MIT */
/*
 * Fixture trees for unit tests that read /sys or /proc under a root prefix (tiers, syscheck):
 * write and delete files below `root`, creating parent directories. Header-only (the unit tests
 * link no test library); failures are cmocka assertions.
 */
#ifndef TIERD_TEST_FIXTURE_H
#define TIERD_TEST_FIXTURE_H

#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static inline void fx_vpath(const char *root, char path[PATH_MAX], const char *fmt, va_list ap)
{
	int n = snprintf(path, PATH_MAX, "%s/", root);

	assert_true(n > 0 && vsnprintf(path + n, (size_t)(PATH_MAX - n), fmt, ap) < PATH_MAX - n);
}

/* Writes root/<rel> with `content`, creating parent directories. */
__attribute__((format(printf, 3, 4))) static inline void fx_put(const char *root, const char *content,
								const char *fmt, ...)
{
	char path[PATH_MAX];
	va_list ap;
	FILE *f;

	va_start(ap, fmt);
	fx_vpath(root, path, fmt, ap);
	va_end(ap);
	for (char *p = path + strlen(root) + 1; (p = strchr(p, '/')); p++) {
		*p = '\0';
		assert_true(mkdir(path, 0755) == 0 || errno == EEXIST);
		*p = '/';
	}
	f = fopen(path, "we");
	assert_non_null(f);
	fputs(content, f);
	assert_int_equal(fclose(f), 0);
}

__attribute__((format(printf, 2, 3))) static inline void fx_del(const char *root, const char *fmt, ...)
{
	char path[PATH_MAX];
	va_list ap;

	va_start(ap, fmt);
	fx_vpath(root, path, fmt, ap);
	va_end(ap);
	assert_int_equal(unlink(path), 0);
}

static inline int fx_rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

/* Removes the fixture tree. Returns 0 or -1. */
static inline int fx_rmtree(const char *root)
{
	return nftw(root, fx_rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

#endif
