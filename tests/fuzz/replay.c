/* SPDX-License-Identifier: MIT */
/*
 * The corpus replay: a plain (non-libFuzzer) main for a fuzz target, so that `make check` runs
 * every committed input — seeds, and the inputs that once crashed — with the normal compiler and,
 * under SANITIZE=1, ASan/UBSan. One cmocka test per file, named after it, so tests/run.sh counts
 * them; a crash or a failed property aborts the binary, which run.sh counts as a failure.
 *
 * Runs every file of FUZZ_CORPUS (set by the Makefile: tests/fuzz/corpus/NAME, relative to the
 * source tree, where make runs) and every file named on the command line.
 */
#include <dirent.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "fuzz.h"

#ifndef FUZZ_CORPUS
#error "FUZZ_CORPUS: the corpus directory, set by the Makefile"
#endif

/* libFuzzer's default -max_len is 4096 and ours at most 64 KiB: a larger file is not a corpus
 * entry but a mistake, and reading it whole would hide that. */
#define MAX_INPUT_BYTES (1u << 20)

static void run_file(void **state)
{
	const char *path = *state;
	uint8_t *buf = malloc(MAX_INPUT_BYTES);
	size_t n;
	FILE *f;

	assert_non_null(buf);
	f = fopen(path, "rbe");
	if (!f)
		fail_msg("%s: %s", path, strerror(errno));
	n = fread(buf, 1, MAX_INPUT_BYTES, f);
	assert_false(ferror(f));
	assert_true(feof(f)); /* not cut at MAX_INPUT_BYTES */
	fclose(f);
	/* Exactly n bytes, as libFuzzer hands them over: ASan sees a read past the input. */
	{
		uint8_t *exact = malloc(n ? n : 1);

		assert_non_null(exact);
		memcpy(exact, buf, n);
		free(buf);
		assert_int_equal(LLVMFuzzerTestOneInput(exact, n), 0);
		free(exact);
	}
}

static int by_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

struct list {
	char **paths;
	size_t n, cap;
};

static int add(struct list *l, char *path)
{
	if (!path)
		return -ENOMEM;
	if (l->n == l->cap) {
		size_t cap = l->cap ? 2 * l->cap : 64;
		char **p = realloc(l->paths, cap * sizeof(*p));

		if (!p) {
			free(path);
			return -ENOMEM;
		}
		l->paths = p;
		l->cap = cap;
	}
	l->paths[l->n++] = path;
	return 0;
}

int main(int argc, char **argv)
{
	struct list l = { 0 };
	struct CMUnitTest *tests;
	struct dirent *de;
	size_t first;
	DIR *d;
	int r;

	for (int i = 1; i < argc; i++)
		if (add(&l, strdup(argv[i])) < 0)
			return 1;
	d = opendir(FUZZ_CORPUS);
	if (!d) {
		/* A missing corpus would pass without testing anything. */
		fprintf(stderr, "%s: %s\n", FUZZ_CORPUS, strerror(errno));
		return 1;
	}
	first = l.n;
	while ((de = readdir(d))) {
		char *path;

		if (de->d_name[0] == '.')
			continue;
		if (asprintf(&path, "%s/%s", FUZZ_CORPUS, de->d_name) < 0 || add(&l, path) < 0) {
			closedir(d);
			return 1;
		}
	}
	closedir(d);
	if (l.n == first) {
		fprintf(stderr, "%s: no inputs\n", FUZZ_CORPUS);
		return 1;
	}
	/* readdir's order is the file system's: sorted, runs compare. */
	qsort(l.paths + first, l.n - first, sizeof(*l.paths), by_name);
	tests = calloc(l.n, sizeof(*tests));
	if (!tests)
		return 1;
	for (size_t i = 0; i < l.n; i++)
		tests[i] = (struct CMUnitTest){ .name = l.paths[i], .test_func = run_file,
						.initial_state = l.paths[i] };
	r = _cmocka_run_group_tests(FUZZ_CORPUS, tests, l.n, NULL, NULL);
	for (size_t i = 0; i < l.n; i++)
		free(l.paths[i]);
	free(l.paths);
	free(tests);
	return r;
}
