/* SPDX-License-Identifier: MIT */
/*
 * What every fuzz target here shares. Each tests/fuzz/fuzz_NAME.c defines the libFuzzer entry
 * point; it is linked two ways (Makefile): with clang's libFuzzer for `make fuzz`, and with
 * replay.c's main for `make check`, which runs the committed corpus tests/fuzz/corpus/NAME/.
 */
#ifndef TIERD_FUZZ_H
#define TIERD_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* Runs one input. Returns 0 (libFuzzer reserves other values); a broken property aborts. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A property of the code under test that failed: abort, so that libFuzzer saves the input and
 * the replay run fails. Not assert(): it must hold in every build, NDEBUG or not. */
#define FUZZ_CHECK(cond)                                                                          \
	do {                                                                                      \
		if (!(cond)) {                                                                    \
			fprintf(stderr, "%s:%d: property failed: %s\n", __FILE__, __LINE__, #cond); \
			abort();                                                                  \
		}                                                                                 \
	} while (0)

#endif
