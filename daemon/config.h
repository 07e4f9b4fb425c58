/* SPDX-License-Identifier: MIT */
/*
 * Configuration: defaults, /etc/tierd/tierd.conf and its drop-ins (tierd.conf.d/NAME.conf, in name
 * order, later wins), INI read with libinih. Every key is in one table (config.c) with its type
 * and range, documented in config/tierd.conf; the command line sets the same keys through it, so
 * a value means the same thing wherever it comes from. Errors name file:line, the key and the
 * reason; a file with any error changes nothing.
 */
#ifndef TIERD_CONFIG_H
#define TIERD_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "manager.h"

#define TIERD_DEFAULT_CONFIG "/etc/tierd/tierd.conf"

/* Sets section.key from its text form. Returns 0, -ENOENT (no such key) or -EINVAL, with the
 * reason in `why`. */
int config_set(struct tierd_config *cfg, const char *section, const char *key, const char *value,
	       char *why, size_t whylen);

/* "enforce", "advise", "observe". */
const char *config_mode_name(enum tierd_mode mode);

/* Checks what no single key can: values that depend on each other. */
int config_validate(const struct tierd_config *cfg, char *why, size_t whylen);

/*
 * Reads `path` and then every `path`.d/ *.conf in name order over *cfg. A missing `path` is an
 * error only when must_exist. All or nothing: on any error *cfg is unchanged and `err` says
 * "file:line: section.key: reason". Returns 0 or a negative errno.
 */
int config_load(const char *path, bool must_exist, struct tierd_config *cfg, char *err, size_t errlen);

/*
 * Parses one file's text, `len` bytes (NULs are an error), over *cfg: config_load()'s step per
 * file, with no I/O, so that tests and the fuzzer (tests/fuzz/fuzz_config.c) can feed it bytes.
 * `name` is the file's name in messages. Beyond the per-key checks: a key or a [section] header
 * given twice in the text is an error (a later file may set them again). All or nothing: on error
 * *cfg is unchanged and `err` says "name:line: reason". Does not run config_validate(): values
 * that depend on each other may be set by different files. Returns 0 or a negative errno.
 */
int config_parse(const char *name, const char *text, size_t len, struct tierd_config *cfg, char *err,
		 size_t errlen);

/* Writes the configuration in the format config_load() reads, every key. */
void config_dump(const struct tierd_config *cfg, FILE *f);

#endif
