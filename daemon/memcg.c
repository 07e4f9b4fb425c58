/* SPDX-License-Identifier: MIT */
/* tierd's memory cgroup limit: see memcg.h. */
#include "memcg.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* v1 reports "no limit" as the largest page-aligned counter value; anything this large is none. */
#define UNLIMITED (UINT64_C(1) << 60)

/* Whether comma-separated `list` holds `word`. */
static bool has_word(const char *list, const char *word)
{
	size_t n = strlen(word);

	for (const char *p = list; (p = strstr(p, word)); p += n)
		if ((p == list || p[-1] == ',') && (p[n] == ',' || p[n] == '\0'))
			return true;
	return false;
}

/* The mount of the v2 hierarchy (v2) or of the v1 memory controller: its root within the
 * hierarchy and its mount point. Returns 0 or -ENOENT. */
static int find_mount(bool v2, char *root, size_t rootlen, char *mnt, size_t mntlen)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	char line[4096];
	int r = -ENOENT;

	if (!f)
		return -errno;
	while (r < 0 && fgets(line, sizeof(line), f)) {
		char rt[1024], mp[1024], fstype[64], opts[1024];
		const char *sep = strstr(line, " - ");

		if (!sep || sscanf(line, "%*s %*s %*s %1023s %1023s", rt, mp) != 2 ||
		    sscanf(sep + 3, "%63s %*s %1023s", fstype, opts) != 2)
			continue;
		if (v2 ? strcmp(fstype, "cgroup2") != 0 : strcmp(fstype, "cgroup") != 0 || !has_word(opts, "memory"))
			continue;
		snprintf(root, rootlen, "%s", rt);
		snprintf(mnt, mntlen, "%s", mp);
		r = 0;
	}
	fclose(f);
	return r;
}

/* tierd's cgroup path in the v2 hierarchy (v2) or in the v1 memory one. Returns 0 or -ENOENT. */
static int own_cgroup(bool v2, char *path, size_t len)
{
	FILE *f = fopen("/proc/self/cgroup", "re");
	char line[4096];
	int r = -ENOENT;

	if (!f)
		return -errno;
	while (r < 0 && fgets(line, sizeof(line), f)) {
		char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;

		if (!c2)
			continue;
		*c2 = '\0';
		if (v2 ? strcmp(line, "0") != 0 || c2 != c1 + 1 : !has_word(c1 + 1, "memory"))
			continue;
		c2[1 + strcspn(c2 + 1, "\n")] = '\0';
		snprintf(path, len, "%s", c2 + 1);
		r = 0;
	}
	fclose(f);
	return r;
}

/* A number from a cgroup file; "max" is UINT64_MAX. Returns 0, or -errno / -EINVAL. */
static int read_u64(const char *dir, const char *name, uint64_t *v)
{
	char path[4200], buf[64];
	FILE *f;
	int r = 0;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "re");
	if (!f)
		return -errno;
	if (!fgets(buf, sizeof(buf), f))
		r = -EINVAL;
	else if (!strncmp(buf, "max", 3))
		*v = UINT64_MAX;
	else if (sscanf(buf, "%" SCNu64, v) != 1)
		r = -EINVAL;
	fclose(f);
	return r;
}

/* Walks from tierd's cgroup up to the hierarchy's root: the smallest room under a limit. */
static int walk(bool v2, uint64_t *room, uint64_t *limit, char *where, size_t wherelen)
{
	const char *lim_file = v2 ? "memory.max" : "memory.limit_in_bytes";
	const char *use_file = v2 ? "memory.current" : "memory.usage_in_bytes";
	char root[1024], mnt[1024], cg[2048], dir[4096];
	size_t base;
	int found = 0, r;

	r = find_mount(v2, root, sizeof(root), mnt, sizeof(mnt));
	if (r == 0)
		r = own_cgroup(v2, cg, sizeof(cg));
	if (r < 0)
		return r;
	/* A container sees its own part of the hierarchy: the mount's root is a prefix of the path. */
	if (strcmp(root, "/") && !strncmp(cg, root, strlen(root)))
		memmove(cg, cg + strlen(root), strlen(cg + strlen(root)) + 1);
	snprintf(dir, sizeof(dir), "%s%s%s", mnt, cg[0] == '/' ? "" : "/", cg);
	base = strlen(mnt);
	for (;;) {
		uint64_t lim, use;
		size_t n = strlen(dir);

		while (n > base + 1 && dir[n - 1] == '/')
			dir[--n] = '\0';
		/* v2: no memory.max where the controller is off (and at the root): no limit there. */
		if (read_u64(dir, lim_file, &lim) == 0 && lim < UNLIMITED &&
		    read_u64(dir, use_file, &use) == 0) {
			uint64_t left = use < lim ? lim - use : 0;

			if (!found || left < *room) {
				*room = left;
				*limit = lim;
				snprintf(where, wherelen, "%.3800s/%s", dir, lim_file);
			}
			found = 1;
		}
		if (n <= base + 1)
			break;
		while (n > base && dir[n - 1] != '/')
			n--;
		dir[n > base ? n - 1 : base] = '\0';
		if (strlen(dir) < base)
			break;
	}
	return found;
}

int memcg_room(uint64_t *room, uint64_t *limit, char *where, size_t wherelen)
{
	int r = walk(true, room, limit, where, wherelen);

	/* v2 where it has a limit; else v1 (hybrid hosts keep the memory controller there). */
	if (r == 1)
		return 1;
	r = walk(false, room, limit, where, wherelen);
	return r == -ENOENT ? 0 : r;
}
