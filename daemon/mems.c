/* SPDX-License-Identifier: MIT */
/* Memory nodes a process may use: see mems.h. */
#include "mems.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int mems_parse(const char *value, uint64_t *mask)
{
	uint64_t m = 0;
	unsigned words = 0;
	const char *p = value;

	while (*p == ' ' || *p == '\t')
		p++;
	for (;;) {
		unsigned long w;
		char *end;

		if (!isxdigit((unsigned char)*p))
			return -EINVAL;
		errno = 0;
		w = strtoul(p, &end, 16);
		if (errno || end - p > 8)
			return -EINVAL;
		/* Words beyond the last two name nodes from 64 up, which tierd does not track
		 * (TIERD_MAX_NODES): shifted out. */
		m = (m << 32) | (uint32_t)w;
		words++;
		p = end;
		if (*p != ',')
			break;
		p++;
	}
	while (*p == ' ' || *p == '\t' || *p == '\n')
		p++;
	if (*p || !words)
		return -EINVAL;
	*mask = m;
	return 0;
}

int mems_of(pid_t pid, uint64_t *mask)
{
	char path[64], line[1024];
	int r = -ENOENT;
	FILE *f;

	if (pid)
		snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	else
		snprintf(path, sizeof(path), "/proc/self/status");
	f = fopen(path, "re");
	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, "Mems_allowed:", 13)) {
			r = mems_parse(line + 13, mask);
			break;
		}
	fclose(f);
	return r;
}

bool mems_node_exists(int node)
{
	char path[64];

	snprintf(path, sizeof(path), "/sys/devices/system/node/node%d", node);
	return access(path, F_OK) == 0;
}

void mems_format(uint64_t mask, char *buf, size_t len)
{
	size_t n = 0;

	buf[0] = '\0';
	for (int i = 0; i < 64 && n < len; i++) {
		int j = i;

		if (!(mask & (UINT64_C(1) << i)))
			continue;
		while (j < 63 && (mask & (UINT64_C(1) << (j + 1))))
			j++;
		n += (size_t)snprintf(buf + n, len - n, "%s%d", n ? "," : "", i);
		if (j > i && n < len)
			n += (size_t)snprintf(buf + n, len - n, "-%d", j);
		i = j;
	}
	if (!mask)
		snprintf(buf, len, "none");
}
