/* SPDX-License-Identifier: MIT */
/* NUMA tier discovery: parse the node files under a sysfs root and rank the nodes into tiers. */
#include "tiers.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NODE_DIR "devices/system/node"
#define MEMTIER_DIR "devices/virtual/memory_tiering"
#define MEMTIER_PREFIX "memory_tier"

/* Node ids above this are refused as garbage: the kernel's MAX_NUMNODES is at most 1024. */
#define NODE_ID_MAX 4095

/* Every file read here is one sysfs page or less (meminfo ~1.5 KiB, a 64-node distance row
 * 256 bytes); a larger one is not the file we expect. */
#define FILE_BUF_BYTES 4096

/* SLIT distances are one byte (255 = unreachable); anything larger is not a distance. */
#define DISTANCE_MAX 255

static bool is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n';
}

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/* Reads root/<fmt…> into buf, NUL-terminated. Returns the length or a negative errno. */
__attribute__((format(printf, 4, 5))) static int read_text(const char *root, char *buf, size_t len,
							    const char *fmt, ...)
{
	char rel[PATH_MAX], path[PATH_MAX];
	size_t got = 0;
	va_list ap;
	int fd, n;

	va_start(ap, fmt);
	n = vsnprintf(rel, sizeof(rel), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(rel))
		return -ENAMETOOLONG;
	n = snprintf(path, sizeof(path), "%s/%s", root, rel);
	if (n < 0 || (size_t)n >= sizeof(path))
		return -ENAMETOOLONG;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	for (;;) {
		ssize_t r = read(fd, buf + got, len - 1 - got);

		if (r < 0) {
			if (errno == EINTR)
				continue;
			r = -errno;
			close(fd);
			return (int)r;
		}
		if (r == 0)
			break;
		got += (size_t)r;
		if (got == len - 1) {
			char extra;

			if (read(fd, &extra, 1) != 0) {
				close(fd);
				return -EFBIG; /* not the small file we expect */
			}
			break;
		}
	}
	close(fd);
	buf[got] = '\0';
	return (int)got;
}

/* Parses an unsigned decimal at *p (no sign), advancing *p. -EINVAL if none or it overflows. */
static int parse_uint(const char **p, uint64_t max, uint64_t *ret)
{
	const char *s = *p;
	uint64_t v = 0;

	if (!is_digit(*s))
		return -EINVAL;
	for (; is_digit(*s); s++) {
		unsigned d = (unsigned)(*s - '0');

		if (v > (max - d) / 10)
			return -EINVAL;
		v = v * 10 + d;
	}
	*p = s;
	*ret = v;
	return 0;
}

/* A file holding one number and a newline (nr_hugepages). */
static int parse_count(const char *s, uint64_t *ret)
{
	int r = parse_uint(&s, UINT64_MAX, ret);

	if (r < 0)
		return r;
	while (is_space(*s))
		s++;
	return *s ? -EINVAL : 0;
}

/*
 * Parses a kernel list ("0-2,4\n", or "\n" for none) into ascending ids. The kernel prints its
 * lists in ascending order; anything else (descending range, repeat) is refused, so an index in
 * the result is also the id's position in every per-online-node row. -E2BIG past `max` ids.
 */
static int parse_list(const char *s, int *ids, unsigned max, unsigned *ret_n)
{
	unsigned n = 0;
	int64_t last = -1;

	while (is_space(*s))
		s++;
	while (*s) {
		uint64_t lo, hi;
		int r;

		r = parse_uint(&s, NODE_ID_MAX, &lo);
		if (r < 0)
			return r;
		hi = lo;
		if (*s == '-') {
			s++;
			r = parse_uint(&s, NODE_ID_MAX, &hi);
			if (r < 0)
				return r;
		}
		if (hi < lo || (int64_t)lo <= last)
			return -EINVAL;
		for (uint64_t id = lo; id <= hi; id++) {
			if (n == max)
				return -E2BIG;
			ids[n++] = (int)id;
		}
		last = (int64_t)hi;
		if (*s == ',')
			s++;
		else if (is_space(*s))
			break;
		else if (*s)
			return -EINVAL;
	}
	while (is_space(*s))
		s++;
	if (*s)
		return -EINVAL;
	*ret_n = n;
	return 0;
}

/*
 * A distance row: exactly `n` numbers, one per online node in id order. The kernel prints
 * for_each_online_node() and puts no space before node 0's entry, so a row whose first online
 * node is not 0 starts with a space — tolerated.
 */
static int parse_distances(const char *s, unsigned n, uint8_t *row)
{
	for (unsigned i = 0; i < n; i++) {
		uint64_t v;
		int r;

		while (*s == ' ' || *s == '\t')
			s++;
		r = parse_uint(&s, DISTANCE_MAX, &v);
		if (r < 0)
			return r;
		if (*s && !is_space(*s))
			return -EINVAL;
		row[i] = (uint8_t)v;
	}
	while (is_space(*s))
		s++;
	return *s ? -EINVAL : 0; /* more entries than online nodes */
}

/* "Node N MemTotal:       1234 kB" lines → bytes. Both keys are required. */
static int parse_meminfo(const char *s, int id, uint64_t *total_bytes, uint64_t *free_bytes)
{
	bool have_total = false, have_free = false;

	for (const char *line = s; line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
		uint64_t kb, *dst = NULL;
		const char *p;
		char key[32];
		int node, off = 0;

		if (sscanf(line, "Node %d %31[^: \n]:%n", &node, key, &off) != 2 || off == 0)
			continue; /* not a "Node N Key:" line */
		if (strcmp(key, "MemTotal") == 0) {
			dst = total_bytes;
			have_total = true;
		} else if (strcmp(key, "MemFree") == 0) {
			dst = free_bytes;
			have_free = true;
		} else {
			continue;
		}
		p = line + off;
		while (*p == ' ' || *p == '\t')
			p++;
		if (node != id || parse_uint(&p, UINT64_MAX / 1024, &kb) < 0 || strncmp(p, " kB", 3) != 0)
			return -EINVAL;
		*dst = kb * 1024;
	}
	return have_total && have_free ? 0 : -EINVAL;
}

/* Huge page pool of one size on one node; an absent directory is an empty pool. */
static int read_huge(const char *root, int id, unsigned size_kb, uint64_t *total, uint64_t *free_pages)
{
	char buf[64];
	int r;

	r = read_text(root, buf, sizeof(buf), NODE_DIR "/node%d/hugepages/hugepages-%ukB/nr_hugepages",
		      id, size_kb);
	if (r == -ENOENT) {
		*total = *free_pages = 0;
		return 0;
	}
	if (r < 0)
		return r;
	r = parse_count(buf, total);
	if (r < 0)
		return r;
	r = read_text(root, buf, sizeof(buf), NODE_DIR "/node%d/hugepages/hugepages-%ukB/free_hugepages",
		      id, size_kb);
	if (r < 0)
		return r;
	return parse_count(buf, free_pages);
}

/* The counters tiers_refresh() keeps current: meminfo and the two huge page pools. */
static int read_node_mem(const char *root, struct tier_node *n)
{
	char buf[FILE_BUF_BYTES];
	int r;

	r = read_text(root, buf, sizeof(buf), NODE_DIR "/node%d/meminfo", n->id);
	if (r < 0)
		return r;
	r = parse_meminfo(buf, n->id, &n->total_bytes, &n->free_bytes);
	if (r < 0)
		return r;
	r = read_huge(root, n->id, 2048, &n->huge_total_2m, &n->huge_free_2m);
	if (r < 0)
		return r;
	return read_huge(root, n->id, 1048576, &n->huge_total_1g, &n->huge_free_1g);
}

static int cmp_int(const void *a, const void *b)
{
	int x = *(const int *)a, y = *(const int *)b;

	return (x > y) - (x < y);
}

/* Rank of `key` among the sorted distinct `keys`, folded so it stays a valid tier index. */
static int rank_of(const int *keys, unsigned nkeys, int key)
{
	unsigned i = 0;

	while (i + 1 < nkeys && keys[i] != key)
		i++;
	return i < TIERS_MAX_TIERS ? (int)i : TIERS_MAX_TIERS - 1;
}

/* Sorts keys[0..n) and drops repeats; returns how many distinct remain. */
static unsigned sort_unique(int *keys, unsigned n)
{
	unsigned m = 0;

	qsort(keys, n, sizeof(*keys), cmp_int);
	for (unsigned i = 0; i < n; i++)
		if (m == 0 || keys[m - 1] != keys[i])
			keys[m++] = keys[i];
	return m;
}

/*
 * Fills each node's memtier from memory_tiering. Returns 1 when the kernel's tiers cover every
 * node exactly once and separate them into more than one tier (then node tiers are set from
 * them), 0 when absent or not usable (caller ranks by distance), or a negative errno.
 */
static int apply_memory_tiers(const char *root, struct tier_topology *topo)
{
	char path[PATH_MAX], buf[FILE_BUF_BYTES];
	int keys[TIERS_MAX_NODES], ids[TIERS_MAX_NODES];
	unsigned nkeys = 0;
	bool usable = true;
	struct dirent *de;
	DIR *d;
	int r;

	r = snprintf(path, sizeof(path), "%s/" MEMTIER_DIR, root);
	if (r < 0 || (size_t)r >= sizeof(path))
		return -ENAMETOOLONG;
	d = opendir(path);
	if (!d)
		return errno == ENOENT ? 0 : -errno;
	while ((errno = 0, de = readdir(d))) {
		const char *p = de->d_name;
		uint64_t k;
		unsigned n;

		if (strncmp(p, MEMTIER_PREFIX, strlen(MEMTIER_PREFIX)) != 0)
			continue; /* power/, uevent, … */
		p += strlen(MEMTIER_PREFIX);
		if (parse_uint(&p, INT_MAX, &k) < 0 || *p)
			continue;
		r = read_text(root, buf, sizeof(buf), MEMTIER_DIR "/%s/nodelist", de->d_name);
		if (r == -ENOENT) {
			usable = false; /* a kernel with another layout: rank by distance */
			continue;
		}
		if (r >= 0)
			r = parse_list(buf, ids, TIERS_MAX_NODES, &n);
		if (r < 0) {
			closedir(d);
			return r;
		}
		for (unsigned i = 0; i < n; i++)
			for (unsigned j = 0; j < topo->nnodes; j++) {
				struct tier_node *nd = &topo->nodes[j];

				if (nd->id != ids[i])
					continue;
				if (nd->memtier >= 0)
					usable = false; /* in two tiers: do not guess */
				else
					nd->memtier = (int)k;
			}
	}
	r = errno;
	closedir(d);
	if (r)
		return -r;

	for (unsigned j = 0; j < topo->nnodes; j++) {
		if (topo->nodes[j].memtier < 0)
			usable = false; /* a node the kernel did not tier */
		keys[nkeys++] = topo->nodes[j].memtier;
	}
	nkeys = sort_unique(keys, nkeys);
	if (!usable || nkeys < 2)
		return 0;
	for (unsigned j = 0; j < topo->nnodes; j++)
		topo->nodes[j].tier = rank_of(keys, nkeys, topo->nodes[j].memtier);
	return 1;
}

/* CPU nodes are tier 0, CPU-less nodes one tier per distinct distance from the nearest CPU node. */
static void apply_distance_tiers(struct tier_topology *topo)
{
	int keys[TIERS_MAX_NODES];
	unsigned nkeys;

	for (unsigned j = 0; j < topo->nnodes; j++)
		keys[j] = topo->nodes[j].has_cpus ? 0 : (int)topo->nodes[j].cpu_distance;
	nkeys = sort_unique(keys, topo->nnodes);
	for (unsigned j = 0; j < topo->nnodes; j++) {
		struct tier_node *nd = &topo->nodes[j];

		nd->tier = rank_of(keys, nkeys, nd->has_cpus ? 0 : (int)nd->cpu_distance);
	}
}

/* Per online node (memoryless ones included), as read, before the memory nodes are picked. */
struct online_scan {
	unsigned n;
	int ids[TIERS_MAX_NODES];
	bool cpus[TIERS_MAX_NODES];
	struct tier_node mem[TIERS_MAX_NODES];
	uint8_t dist[TIERS_MAX_NODES][TIERS_MAX_NODES]; /* by position in the online list */
};

static int scan_online(const char *root, struct online_scan *sc)
{
	char buf[FILE_BUF_BYTES];
	int r;

	r = read_text(root, buf, sizeof(buf), NODE_DIR "/online");
	if (r < 0)
		return r;
	r = parse_list(buf, sc->ids, TIERS_MAX_NODES, &sc->n);
	if (r < 0)
		return r;
	if (sc->n == 0)
		return -ENOENT;
	for (unsigned i = 0; i < sc->n; i++) {
		const char *p = buf;

		r = read_text(root, buf, sizeof(buf), NODE_DIR "/node%d/cpulist", sc->ids[i]);
		if (r < 0)
			return r;
		while (is_space(*p))
			p++;
		sc->cpus[i] = *p != '\0';

		sc->mem[i] = (struct tier_node){ .id = sc->ids[i], .online = true, .has_cpus = sc->cpus[i],
						 .memtier = -1 };
		r = read_node_mem(root, &sc->mem[i]);
		if (r < 0)
			return r;
	}
	/* Distances last, so a node directory that is gone reads as -ENOENT, not as a row of the
	 * wrong length in another node. */
	for (unsigned i = 0; i < sc->n; i++) {
		r = read_text(root, buf, sizeof(buf), NODE_DIR "/node%d/distance", sc->ids[i]);
		if (r < 0)
			return r;
		r = parse_distances(buf, sc->n, sc->dist[i]);
		if (r < 0)
			return r;
	}
	return 0;
}

int tiers_discover(const char *sysfs_root, struct tier_topology *out)
{
	/* ~17 KiB: on the heap, so a caller on a small thread stack is safe. */
	struct {
		struct online_scan sc;
		struct tier_topology topo;
		unsigned pos[TIERS_MAX_NODES]; /* topo index → online position */
	} *w;
	bool any_cpu = false;
	int r;

	w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	r = scan_online(sysfs_root, &w->sc);
	if (r < 0)
		goto out;

	for (unsigned i = 0; i < w->sc.n; i++) {
		any_cpu |= w->sc.cpus[i];
		if (w->sc.mem[i].total_bytes == 0)
			continue; /* memoryless: nothing to place pages on */
		w->pos[w->topo.nnodes] = i;
		w->topo.nodes[w->topo.nnodes++] = w->sc.mem[i];
	}
	if (w->topo.nnodes == 0) {
		r = -ENOENT;
		goto out;
	}
	for (unsigned a = 0; a < w->topo.nnodes; a++)
		for (unsigned b = 0; b < w->topo.nnodes; b++)
			w->topo.distance[a][b] = w->sc.dist[w->pos[a]][w->pos[b]];

	/* Access cost is initiator → target: the CPU node's row, this node's column. Memoryless CPU
	 * nodes count as initiators too. */
	for (unsigned a = 0; a < w->topo.nnodes; a++) {
		unsigned best = any_cpu ? UINT_MAX : 0;

		for (unsigned i = 0; i < w->sc.n; i++)
			if (w->sc.cpus[i] && w->sc.dist[i][w->pos[a]] < best)
				best = w->sc.dist[i][w->pos[a]];
		w->topo.nodes[a].cpu_distance = best;
	}

	r = apply_memory_tiers(sysfs_root, &w->topo);
	if (r < 0)
		goto out;
	w->topo.from_memory_tiering = r == 1;
	if (!w->topo.from_memory_tiering)
		apply_distance_tiers(&w->topo);

	for (unsigned a = 0; a < w->topo.nnodes; a++) {
		const struct tier_node *nd = &w->topo.nodes[a];
		unsigned t = (unsigned)nd->tier;

		w->topo.tier_nodes[t][w->topo.tier_size[t]++] = nd->id;
		if (t + 1 > w->topo.ntiers)
			w->topo.ntiers = t + 1;
	}
	*out = w->topo;
	r = 0;
out:
	free(w);
	return r;
}

int tiers_refresh(const char *sysfs_root, struct tier_topology *topo)
{
	struct tier_node fresh[TIERS_MAX_NODES];
	char buf[FILE_BUF_BYTES];
	int ids[TIERS_MAX_NODES];
	unsigned n, seen = 0;
	int r;

	for (unsigned a = 0; a < topo->nnodes; a++) {
		fresh[a] = topo->nodes[a];
		r = read_node_mem(sysfs_root, &fresh[a]);
		if (r < 0)
			return r;
		/* Every memory block of the node went offline: the node stays online (its files
		 * stay) but has nothing left to place pages on, and move_pages() to it fails. */
		if (fresh[a].total_bytes == 0)
			return -ESTALE;
	}
	/* Offlining a node's memory does not take the node offline, and onlining memory of an
	 * online memoryless node (hot-add into it, or onlining the blocks again) does not change
	 * the online list either: a known node must still be online, and an online node not in
	 * the topology must still have no memory. */
	r = read_text(sysfs_root, buf, sizeof(buf), NODE_DIR "/online");
	if (r < 0)
		return r;
	r = parse_list(buf, ids, TIERS_MAX_NODES, &n);
	if (r < 0)
		return r;
	for (unsigned i = 0; i < n; i++) {
		uint64_t total, free_bytes;

		if (tiers_node(topo, ids[i])) {
			seen++;
			continue;
		}
		r = read_text(sysfs_root, buf, sizeof(buf), NODE_DIR "/node%d/meminfo", ids[i]);
		if (r == -ENOENT)
			return -ESTALE; /* just came online, files not there yet */
		if (r >= 0)
			r = parse_meminfo(buf, ids[i], &total, &free_bytes);
		if (r < 0)
			return r;
		if (total)
			return -ESTALE;
	}
	if (seen != topo->nnodes)
		return -ESTALE; /* a known node went offline */
	memcpy(topo->nodes, fresh, topo->nnodes * sizeof(fresh[0]));
	return 0;
}

const struct tier_node *tiers_node(const struct tier_topology *topo, int node_id)
{
	for (unsigned a = 0; a < topo->nnodes; a++)
		if (topo->nodes[a].id == node_id)
			return &topo->nodes[a];
	return NULL;
}

bool tiers_same_nodes(const struct tier_topology *a, const struct tier_topology *b)
{
	if (a->nnodes != b->nnodes)
		return false;
	for (unsigned i = 0; i < a->nnodes; i++)
		if (a->nodes[i].id != b->nodes[i].id || a->nodes[i].tier != b->nodes[i].tier)
			return false;
	return true;
}

__attribute__((format(printf, 4, 5))) static void append(char *buf, size_t len, size_t *pos,
							 const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(*pos < len ? buf + *pos : NULL, *pos < len ? len - *pos : 0, fmt, ap);
	va_end(ap);
	if (n > 0)
		*pos += (size_t)n;
}

int tiers_describe(const struct tier_topology *topo, char *buf, size_t len)
{
	size_t pos = 0;

	if (len == 0)
		return -EINVAL;
	buf[0] = '\0';
	for (unsigned t = 0; t < topo->ntiers; t++) {
		append(buf, len, &pos, "tier %u:", t);
		for (unsigned k = 0; k < topo->tier_size[t]; k++) {
			const struct tier_node *nd = tiers_node(topo, topo->tier_nodes[t][k]);

			if (!nd)
				continue;
			append(buf, len, &pos, "%s node %d (", k ? "," : "", nd->id);
			if (nd->has_cpus)
				append(buf, len, &pos, "cpus, ");
			else
				append(buf, len, &pos, "no cpus, distance %u, ", nd->cpu_distance);
			append(buf, len, &pos, "%" PRIu64 " MiB, %" PRIu64 " MiB free", nd->total_bytes >> 20,
			       nd->free_bytes >> 20);
			if (nd->huge_total_2m)
				append(buf, len, &pos, ", 2M pages %" PRIu64 "/%" PRIu64 " free",
				       nd->huge_free_2m, nd->huge_total_2m);
			if (nd->huge_total_1g)
				append(buf, len, &pos, ", 1G pages %" PRIu64 "/%" PRIu64 " free",
				       nd->huge_free_1g, nd->huge_total_1g);
			append(buf, len, &pos, ")");
		}
		append(buf, len, &pos, "\n");
	}
	if (pos >= len || pos > INT_MAX)
		return -ENOBUFS;
	return (int)pos;
}
