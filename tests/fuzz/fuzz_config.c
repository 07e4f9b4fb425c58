/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target: the configuration parser (daemon/config.c), through config_parse(), the per-file
 * step of config_load() without the file: the input is one file's bytes. Properties:
 *   - an error names the file and a line, and changes nothing (all or nothing);
 *   - what parses and validates is printed by config_dump() (tierd --check-config) in a form
 *     that parses again, validates again, and prints the same.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "fuzz.h"

static char *dump(const struct tierd_config *cfg, size_t *len)
{
	char *text = NULL;
	FILE *f = open_memstream(&text, len);

	if (!f)
		return NULL;
	config_dump(cfg, f);
	if (fclose(f) != 0) {
		free(text);
		return NULL;
	}
	return text;
}

static void check_round_trip(const struct tierd_config *cfg)
{
	struct tierd_config *again = malloc(sizeof(*again));
	char err[512], why[256], *text, *text2 = NULL;
	size_t len, len2;

	text = dump(cfg, &len);
	if (!again || !text)
		goto out;
	tierd_config_defaults(again);
	if (config_parse("dump", text, len, again, err, sizeof(err)) != 0) {
		fprintf(stderr, "the dump does not parse: %s\n---\n%s---\n", err, text);
		FUZZ_CHECK(!"config_dump() output parses");
	}
	if (config_validate(again, why, sizeof(why)) != 0) {
		fprintf(stderr, "the dump does not validate: %s\n---\n%s---\n", why, text);
		FUZZ_CHECK(!"config_dump() output validates");
	}
	text2 = dump(again, &len2);
	if (text2)
		FUZZ_CHECK(len == len2 && memcmp(text, text2, len) == 0);
out:
	free(text2);
	free(text);
	free(again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char mirror_lost[] = ": cannot tell which section this line is in";
	struct tierd_config *cfg = malloc(sizeof(*cfg)), *before = malloc(sizeof(*before));
	char err[512], why[256];
	int r;

	if (!cfg || !before)
		goto out;
	tierd_config_defaults(cfg);
	*before = *cfg;
	err[0] = '\0';
	r = config_parse("fuzz.conf", (const char *)data, size, cfg, err, sizeof(err));
	if (r < 0) {
		FUZZ_CHECK(r == -EINVAL || r == -ENOMEM);
		FUZZ_CHECK(strncmp(err, "fuzz.conf:", strlen("fuzz.conf:")) == 0);
		FUZZ_CHECK(memcmp(cfg, before, sizeof(*cfg)) == 0);
		/* config.c's mirror of libinih's line rules disagreed with libinih (the message's
		 * end: the key's name before it may say anything). */
		FUZZ_CHECK(strlen(err) < strlen(mirror_lost) ||
			   strcmp(err + strlen(err) - strlen(mirror_lost), mirror_lost) != 0);
		goto out;
	}
	FUZZ_CHECK(r == 0);
	/* NULs are refused: the text libinih saw was the whole input. */
	FUZZ_CHECK(!memchr(data, '\0', size));
	if (config_validate(cfg, why, sizeof(why)) == 0)
		check_round_trip(cfg);
out:
	free(before);
	free(cfg);
	return 0;
}
