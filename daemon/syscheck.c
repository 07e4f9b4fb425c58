/* SPDX-License-Identifier: MIT */
/*
 * `tierd --check-system`: read what tierd depends on or competes with under a root prefix and
 * judge each finding. Fixes name real paths (/proc/sys/..., /sys/...), never the prefix: they are
 * for the operator's machine.
 */
#include "syscheck.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/capability.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "../lib/uffd.h"
#include "tierd/proto.h"
#include "tiers.h"

/* Every file read here (proc status ~1.5 KiB, a sysctl, a sysfs attribute) fits in one page. */
#define FILE_BYTES 4096

/* Huge page sizes per node: x86-64 has 2, arm64 up to 4; more is not a real machine. */
#define MAX_HUGE_SIZES 8

/* Above MAX_PAGE_ORDER (4 MiB with 4K pages on x86-64 and arm64) a huge page is "gigantic": the
 * kernel never allocates one for a migration, so moving it needs a free page in the target's pool. */
#define GIGANTIC_MIN_KB 8192

#define HUGE_2M_KB 2048

/* --- small readers ------------------------------------------------------------------------ */

static int vpath(char *out, size_t len, const char *root, const char *fmt, va_list ap)
{
	int n = snprintf(out, len, "%s", root), m;

	if (n < 0 || (size_t)n >= len)
		return -ENAMETOOLONG;
	m = vsnprintf(out + n, len - (size_t)n, fmt, ap);
	if (m < 0 || (size_t)m >= len - (size_t)n)
		return -ENAMETOOLONG;
	return 0;
}

__attribute__((format(printf, 4, 5))) static int path_of(char *out, size_t len, const char *root,
							  const char *fmt, ...)
{
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = vpath(out, len, root, fmt, ap);
	va_end(ap);
	return r;
}

/* Reads ROOT<fmt…> into buf (NUL-terminated, trailing whitespace dropped; a longer file is cut
 * at len - 1, which no file read here reaches). Returns the length or a negative errno. */
__attribute__((format(printf, 4, 5))) static int read_file(const char *root, char *buf, size_t len,
							    const char *fmt, ...)
{
	char path[PATH_MAX];
	size_t got = 0;
	va_list ap;
	int fd, r;

	va_start(ap, fmt);
	r = vpath(path, sizeof(path), root, fmt, ap);
	va_end(ap);
	if (r < 0)
		return r;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	while (got < len - 1) {
		ssize_t n = read(fd, buf + got, len - 1 - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			r = -errno;
			close(fd);
			return r;
		}
		if (n == 0)
			break;
		got += (size_t)n;
	}
	close(fd);
	while (got > 0 && isspace((unsigned char)buf[got - 1]))
		got--;
	buf[got] = '\0';
	return (int)got;
}

/* A file holding one integer (a sysctl). -EINVAL when it holds something else. */
__attribute__((format(printf, 3, 4))) static int read_int(const char *root, long long *v,
							   const char *fmt, ...)
{
	char path[PATH_MAX], buf[64], *end;
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = vpath(path, sizeof(path), root, fmt, ap);
	va_end(ap);
	if (r < 0)
		return r;
	r = read_file("", buf, sizeof(buf), "%s", path);
	if (r < 0)
		return r;
	errno = 0;
	*v = strtoll(buf, &end, 10);
	if (errno || end == buf || *end)
		return -EINVAL;
	return 0;
}

static bool exists(const char *root, const char *rel)
{
	char path[PATH_MAX];

	return path_of(path, sizeof(path), root, "%s", rel) == 0 && access(path, F_OK) == 0;
}

/* Numeric entries of a directory, sorted ("nodeN" with prefix "node", "123" with prefix "").
 * Returns how many (at most max), or a negative errno from opendir. */
static int list_ids(const char *dir, const char *prefix, int *ids, int max)
{
	size_t plen = strlen(prefix);
	struct dirent *de;
	DIR *d = opendir(dir); /* glibc opens it O_CLOEXEC */
	int n = 0;

	if (!d)
		return -errno;
	while ((de = readdir(d)) && n < max) {
		const char *s = de->d_name;
		char *end;
		long v;

		if (strncmp(s, prefix, plen) != 0 || !isdigit((unsigned char)s[plen]))
			continue;
		v = strtol(s + plen, &end, 10);
		if (*end || v < 0 || v > INT_MAX)
			continue;
		ids[n++] = (int)v;
	}
	closedir(d);
	for (int i = 1; i < n; i++) /* small lists: insertion sort */
		for (int j = i; j > 0 && ids[j - 1] > ids[j]; j--) {
			int t = ids[j];

			ids[j] = ids[j - 1];
			ids[j - 1] = t;
		}
	return n;
}

/* Appends to a fixed buffer, keeping what fits. */
__attribute__((format(printf, 3, 4))) static void appendf(char *buf, size_t len, const char *fmt, ...)
{
	size_t used = strlen(buf);
	va_list ap;

	if (used + 1 >= len)
		return;
	va_start(ap, fmt);
	vsnprintf(buf + used, len - used, fmt, ap);
	va_end(ap);
}

/* --- the report --------------------------------------------------------------------------- */

int syscheck_new(struct syscheck **ret)
{
	struct syscheck *sc = calloc(1, sizeof(*sc));

	if (!sc)
		return -ENOMEM;
	*ret = sc;
	return 0;
}

struct syscheck *syscheck_free(struct syscheck *sc)
{
	if (sc) {
		free(sc->items);
		free(sc);
	}
	return NULL;
}

/* Appends an item; `fix` may be NULL (OK items carry none). Returns 0 or -ENOMEM. */
__attribute__((format(printf, 5, 6))) static int add(struct syscheck *sc, enum syscheck_verdict v,
						      const char *name, const char *fix,
						      const char *fmt, ...)
{
	struct syscheck_item *it;
	va_list ap;

	if (sc->n == sc->cap) {
		unsigned cap = sc->cap ? sc->cap * 2 : 32;
		struct syscheck_item *items = realloc(sc->items, cap * sizeof(*items));

		if (!items)
			return -ENOMEM;
		sc->items = items;
		sc->cap = cap;
	}
	it = &sc->items[sc->n++];
	it->verdict = v;
	snprintf(it->name, sizeof(it->name), "%s", name);
	va_start(ap, fmt);
	vsnprintf(it->found, sizeof(it->found), fmt, ap);
	va_end(ap);
	snprintf(it->fix, sizeof(it->fix), "%s", fix && v != SYSCHECK_OK ? fix : "");
	return 0;
}

const struct syscheck_item *syscheck_find(const struct syscheck *sc, const char *name)
{
	for (unsigned i = 0; i < sc->n; i++)
		if (strcmp(sc->items[i].name, name) == 0)
			return &sc->items[i];
	return NULL;
}

enum syscheck_verdict syscheck_worst(const struct syscheck *sc)
{
	enum syscheck_verdict w = SYSCHECK_OK;

	for (unsigned i = 0; i < sc->n; i++)
		if (sc->items[i].verdict > w)
			w = sc->items[i].verdict;
	return w;
}

int syscheck_print(const struct syscheck *sc, FILE *f)
{
	static const char *const verdicts[] = { "OK", "WARN", "FAIL" };

	for (unsigned i = 0; i < sc->n; i++) {
		const struct syscheck_item *it = &sc->items[i];

		fprintf(f, "%-4s %-24s %s%s%s\n", verdicts[it->verdict], it->name, it->found,
			it->fix[0] ? " -- fix: " : "", it->fix);
	}
	return ferror(f) ? -EIO : 0;
}

/* --- what the process is ------------------------------------------------------------------ */

struct proc_self {
	bool ok;            /* /proc/self/status was read */
	unsigned euid, egid;
	unsigned ngroups;
	unsigned groups[64]; /* supplementary groups (more are ignored: only for the device check) */
	bool have_caps;
	uint64_t cap_eff;
};

/* The effective id of a "Uid:"/"Gid:" line: real, effective, saved, fs. */
static bool second_field(const char *line, unsigned *v)
{
	unsigned long a, b;

	if (sscanf(line, "%lu %lu", &a, &b) != 2 || b > UINT_MAX)
		return false;
	*v = (unsigned)b;
	return true;
}

static void parse_status(const char *buf, struct proc_self *ps)
{
	bool uid = false, gid = false;

	for (const char *l = buf; l && *l; l = strchr(l, '\n'), l = l ? l + 1 : NULL) {
		if (strncmp(l, "Uid:", 4) == 0) {
			uid = second_field(l + 4, &ps->euid);
		} else if (strncmp(l, "Gid:", 4) == 0) {
			gid = second_field(l + 4, &ps->egid);
		} else if (strncmp(l, "Groups:", 7) == 0) {
			const char *p = l + 7;
			char *end;

			for (;;) {
				unsigned long g = strtoul(p, &end, 10);

				if (end == p || ps->ngroups == sizeof(ps->groups) / sizeof(ps->groups[0]))
					break;
				ps->groups[ps->ngroups++] = (unsigned)g;
				p = end;
			}
		} else if (strncmp(l, "CapEff:", 7) == 0) {
			char *end;

			errno = 0;
			ps->cap_eff = strtoull(l + 7, &end, 16);
			ps->have_caps = errno == 0 && end != l + 7;
		}
	}
	ps->ok = uid && gid;
}

static bool in_group(const struct proc_self *ps, unsigned gid)
{
	if (ps->egid == gid)
		return true;
	for (unsigned i = 0; i < ps->ngroups; i++)
		if (ps->groups[i] == gid)
			return true;
	return false;
}

/* --- userfaultfd -------------------------------------------------------------------------- */

static const struct {
	uint32_t kind;
	const char *item, *what, *since; /* since: the first Linux release with the feature */
} uffd_kinds[] = {
	{ TIERD_SEG_SHMEM, "uffd.minor_shmem", "4K shmem (memfd) segments", "5.14" },
	{ TIERD_SEG_HUGETLB, "uffd.minor_hugetlbfs", "hugetlbfs segments", "5.13" },
};

static int check_uffd_api(struct syscheck *sc, const char *root, const struct syscheck_uffd_probe *p)
{
	char release[128], names[512], fix[SYSCHECK_FIX_BYTES];
	int r;

	if (read_file(root, release, sizeof(release), "/proc/sys/kernel/osrelease") <= 0)
		snprintf(release, sizeof(release), "(release unknown)");
	if (p->err) {
		const char *fx;

		switch (-p->err) {
		case ENOSYS:
			fx = "a kernel built with CONFIG_USERFAULTFD=y (Linux >= 5.14 for MINOR_SHMEM)";
			break;
		case EPERM:
		case EACCES:
			fx = "run tierd as root: userfaultfd(2) needs CAP_SYS_PTRACE while "
			     "vm.unprivileged_userfaultfd=0, and /dev/userfaultfd is root's";
			break;
		default:
			fx = "see the kernel log (dmesg) for why userfaultfd is refused";
			break;
		}
		return add(sc, SYSCHECK_FAIL, "uffd.api", fx, "kernel %s: no userfaultfd: %s", release,
			   strerror(-p->err));
	}
	uffd_feature_names(p->offered, names, sizeof(names));
	r = add(sc, SYSCHECK_OK, "uffd.api", NULL,
		"features 0x%" PRIx64 " (%s)%s; a second UFFDIO_API on one fd is %s", p->offered,
		names[0] ? names : "none",
		p->via_dev ? ", probed through /dev/userfaultfd (userfaultfd(2) refused here)" : "",
		p->second_call_refused ? "refused (tierd probes on a throwaway fd)" : "accepted");
	if (r < 0)
		return r;
	for (size_t i = 0; i < sizeof(uffd_kinds) / sizeof(uffd_kinds[0]); i++) {
		uint64_t need = uffd_required_for_kind(uffd_kinds[i].kind);
		char need_names[64]; /* one or two feature names */

		uffd_feature_names(need, need_names, sizeof(need_names));
		if ((p->offered & need) == need) {
			r = add(sc, SYSCHECK_OK, uffd_kinds[i].item, NULL, "%s offered: %s can be tracked",
				need_names, uffd_kinds[i].what);
		} else {
			snprintf(fix, sizeof(fix), "Linux >= %s (the first release with %s)",
				 uffd_kinds[i].since, need_names);
			r = add(sc, SYSCHECK_FAIL, uffd_kinds[i].item, fix,
				"kernel %s lacks UFFD_FEATURE_%s: %s cannot be tracked", release, need_names,
				uffd_kinds[i].what);
		}
		if (r < 0)
			return r;
	}
	return 0;
}

/* vm.unprivileged_userfaultfd (informative) and /dev/userfaultfd, which tierd opens and hands to
 * clients that may not create a userfaultfd themselves. */
static int check_uffd_dev(struct syscheck *sc, const char *root, const struct proc_self *ps)
{
	char path[PATH_MAX];
	long long unpriv = -1;
	struct stat st;
	int r = read_int(root, &unpriv, "/proc/sys/vm/unprivileged_userfaultfd");
	bool needed, can;
	unsigned mode;

	if (r == -ENOENT)
		r = add(sc, SYSCHECK_OK, "uffd.unprivileged", NULL,
			"vm.unprivileged_userfaultfd absent (a kernel before 5.2: any process may "
			"create a userfaultfd)");
	else if (r < 0)
		r = add(sc, SYSCHECK_OK, "uffd.unprivileged", NULL,
			"vm.unprivileged_userfaultfd unreadable: %s", strerror(-r));
	else if (unpriv == 0)
		r = add(sc, SYSCHECK_OK, "uffd.unprivileged", NULL,
			"vm.unprivileged_userfaultfd=0: only processes with CAP_SYS_PTRACE may create a "
			"full userfaultfd; tierd hands other clients one made from /dev/userfaultfd");
	else
		r = add(sc, SYSCHECK_OK, "uffd.unprivileged", NULL,
			"vm.unprivileged_userfaultfd=%lld: any process may create a userfaultfd; "
			"clients need nothing from tierd",
			unpriv);
	if (r < 0)
		return r;
	/* Unset or 0: clients that are not root need the device. */
	needed = unpriv != 1;

	r = path_of(path, sizeof(path), root, "/dev/userfaultfd");
	if (r < 0)
		return r;
	if (stat(path, &st) < 0) {
		r = -errno;
		if (r == -ENOENT && !needed)
			return add(sc, SYSCHECK_OK, "uffd.dev", NULL,
				   "/dev/userfaultfd absent; not needed while "
				   "vm.unprivileged_userfaultfd=1");
		if (r == -ENOENT)
			return add(sc, SYSCHECK_WARN, "uffd.dev",
				   "Linux >= 6.1 with CONFIG_USERFAULTFD (devtmpfs then creates "
				   "/dev/userfaultfd); or sysctl -w vm.unprivileged_userfaultfd=1, a wider "
				   "grant (any process may then stall the kernel on its own pages)",
				   "/dev/userfaultfd absent: clients not running as root cannot get a "
				   "userfaultfd and cannot be tracked");
		return add(sc, SYSCHECK_WARN, "uffd.dev", "check the device node's permissions",
			   "/dev/userfaultfd: %s", strerror(-r));
	}
	if (!S_ISCHR(st.st_mode))
		return add(sc, SYSCHECK_WARN, "uffd.dev",
			   "remove it and let devtmpfs create the misc device 'userfaultfd'",
			   "/dev/userfaultfd is not a character device");

	/* tierd opens it O_RDWR: rw for the owner (0600), the group (0060) or everyone (0006). */
	mode = (unsigned)st.st_mode & 07777;
	can = ps->ok && (ps->euid == 0 || (st.st_uid == ps->euid && (mode & 0600) == 0600) ||
			 (in_group(ps, st.st_gid) && (mode & 0060) == 0060) || (mode & 0006) == 0006);

	if (can || !needed || !ps->ok)
		return add(sc, SYSCHECK_OK, "uffd.dev", NULL,
			   "/dev/userfaultfd present (%u:%u), mode %04o, owner %u:%u%s%s", major(st.st_rdev),
			   minor(st.st_rdev), mode, (unsigned)st.st_uid, (unsigned)st.st_gid,
			   needed ? ": tierd opens it for clients that may not create a userfaultfd" : "",
			   (mode & 06) == 06 ? "; any user may open it" : "");
	return add(sc, SYSCHECK_WARN, "uffd.dev",
		   "run tierd as root (tierd.service does), or give its user rw on the device (udev: "
		   "KERNEL==\"userfaultfd\", GROUP=\"tierd\", MODE=\"0660\")",
		   "/dev/userfaultfd mode %04o, owner %u:%u: this process (uid %u) cannot open it, so "
		   "clients not running as root cannot be tracked",
		   mode, (unsigned)st.st_uid, (unsigned)st.st_gid, ps->euid);
}

/* --- NUMA tiers and huge pages ------------------------------------------------------------ */

static int check_numa(struct syscheck *sc, const char *root, struct tier_topology *topo, bool *have)
{
	char sys[PATH_MAX], name[SYSCHECK_NAME_BYTES], *desc;
	int r;

	*have = false;
	r = path_of(sys, sizeof(sys), root, "/sys");
	if (r < 0)
		return r;
	r = tiers_discover(sys, topo);
	if (r == -ENOMEM)
		return r;
	if (r < 0)
		return add(sc, SYSCHECK_WARN, "numa.tiers",
			   "a kernel with CONFIG_NUMA and sysfs mounted at /sys",
			   "cannot read the NUMA topology (/sys/devices/system/node): %s: tierd runs as "
			   "one tier, tracking only",
			   strerror(-r));
	*have = true;
	if (topo->ntiers < 2)
		r = add(sc, SYSCHECK_WARN, "numa.tiers",
			"migration needs a slower memory node: a CPU-less or more distant node (CXL, "
			"or PMEM as system RAM: daxctl reconfigure-device --mode=system-ram)",
			"1 tier (%u node%s): nothing to migrate: tracking only", topo->nnodes,
			topo->nnodes == 1 ? "" : "s");
	else
		r = add(sc, SYSCHECK_OK, "numa.tiers", NULL, "%u tiers over %u nodes (from %s)",
			topo->ntiers, topo->nnodes,
			topo->from_memory_tiering ? "the kernel's memory_tiering" : "node distances");
	if (r < 0)
		return r;

	/* One item per tier, as tierd logs them: "tier K: node N (cpus, X MiB, Y MiB free)". */
	desc = malloc(16384);
	if (!desc)
		return -ENOMEM;
	/* -ENOBUFS still leaves whole lines before the cut one: show those. */
	if (tiers_describe(topo, desc, 16384) != -EINVAL) {
		char *save = NULL;

		for (char *line = strtok_r(desc, "\n", &save); line && r >= 0;
		     line = strtok_r(NULL, "\n", &save)) {
			unsigned t;
			int skip = 0;

			if (sscanf(line, "tier %u: %n", &t, &skip) < 1 || skip == 0)
				continue;
			snprintf(name, sizeof(name), "numa.tier%u", t);
			r = add(sc, SYSCHECK_OK, name, NULL, "%s", line + skip);
		}
	}
	free(desc);
	return r < 0 ? r : 0;
}

struct huge_pool {
	uint64_t size_kb, nr, nfree;
};

struct huge_node {
	int id; /* -1: the global pools (/sys/kernel/mm/hugepages), when there is no node sysfs */
	unsigned nsizes;
	struct huge_pool pools[MAX_HUGE_SIZES];
};

/* The pools under dir (…/hugepages), sizes ascending. Absent dir → no pools. */
static void read_pools(const char *root, const char *dir, struct huge_node *hn)
{
	char path[PATH_MAX];
	struct dirent *de;
	DIR *d;

	if (path_of(path, sizeof(path), root, "%s", dir) < 0 || !(d = opendir(path)))
		return;
	while ((de = readdir(d)) && hn->nsizes < MAX_HUGE_SIZES) {
		unsigned long long kb;
		struct huge_pool *p = &hn->pools[hn->nsizes];
		long long v;
		int end = 0;

		if (sscanf(de->d_name, "hugepages-%llukB%n", &kb, &end) != 1 || de->d_name[end])
			continue;
		p->size_kb = kb;
		p->nr = read_int(root, &v, "%s/%s/nr_hugepages", dir, de->d_name) == 0 && v > 0 ?
				(uint64_t)v : 0;
		p->nfree = read_int(root, &v, "%s/%s/free_hugepages", dir, de->d_name) == 0 && v > 0 ?
				   (uint64_t)v : 0;
		hn->nsizes++;
	}
	closedir(d);
	for (unsigned i = 1; i < hn->nsizes; i++)
		for (unsigned j = i; j > 0 && hn->pools[j - 1].size_kb > hn->pools[j].size_kb; j--) {
			struct huge_pool t = hn->pools[j];

			hn->pools[j] = hn->pools[j - 1];
			hn->pools[j - 1] = t;
		}
}

static const struct huge_pool *pool_of(const struct huge_node *hn, uint64_t size_kb)
{
	for (unsigned i = 0; i < hn->nsizes; i++)
		if (hn->pools[i].size_kb == size_kb)
			return &hn->pools[i];
	return NULL;
}

static const struct huge_node *huge_node_of(const struct huge_node *hns, unsigned n, int id)
{
	for (unsigned i = 0; i < n; i++)
		if (hns[i].id == id)
			return &hns[i];
	return NULL;
}

/* Demotion of SIZE pages: each slower tier needs somewhere to put them. */
static int check_demote(struct syscheck *sc, const struct tier_topology *topo,
			const struct huge_node *hns, unsigned n, uint64_t size_kb)
{
	bool gigantic = size_kb >= GIGANTIC_MIN_KB;
	char name[SYSCHECK_NAME_BYTES], lacking[256] = "", fix[SYSCHECK_FIX_BYTES] = "";
	uint64_t fast = 0;
	int first_node = -1;

	for (unsigned i = 0; i < topo->tier_size[0]; i++) {
		const struct huge_node *hn = huge_node_of(hns, n, topo->tier_nodes[0][i]);
		const struct huge_pool *p = hn ? pool_of(hn, size_kb) : NULL;

		fast += p ? p->nr : 0;
	}
	if (fast == 0)
		return 0; /* nothing of this size on the fast tier to demote */
	for (unsigned t = 1; t < topo->ntiers; t++) {
		bool has = false;

		for (unsigned i = 0; i < topo->tier_size[t] && !has; i++) {
			const struct huge_node *hn = huge_node_of(hns, n, topo->tier_nodes[t][i]);
			const struct huge_pool *p = hn ? pool_of(hn, size_kb) : NULL;

			/* A gigantic page moves only into a free page of the target's pool. */
			has = p && (gigantic ? p->nfree > 0 : p->nr > 0);
		}
		if (has)
			continue;
		appendf(lacking, sizeof(lacking), "%stier %u (node", lacking[0] ? ", " : "", t);
		for (unsigned i = 0; i < topo->tier_size[t]; i++)
			appendf(lacking, sizeof(lacking), "%s%d", i ? "," : " ", topo->tier_nodes[t][i]);
		appendf(lacking, sizeof(lacking), ")");
		if (first_node < 0 && topo->tier_size[t])
			first_node = topo->tier_nodes[t][0];
	}
	snprintf(name, sizeof(name), "hugepages.demote.%" PRIu64 "kB", size_kb);
	if (!lacking[0])
		return add(sc, SYSCHECK_OK, name, NULL,
			   "every slower tier has a %" PRIu64 "kB pool for the fast tier's %" PRIu64
			   " pages",
			   size_kb, fast);
	snprintf(fix, sizeof(fix),
		 "reserve a pool on the slower nodes: echo N > "
		 "/sys/devices/system/node/node%d/hugepages/hugepages-%" PRIu64 "kB/nr_hugepages",
		 first_node, size_kb);
	if (gigantic)
		return add(sc, SYSCHECK_WARN, name, fix,
			   "fast tier holds %" PRIu64 " pages of %" PRIu64 "kB; no free one in the pool of "
			   "%s: they cannot be demoted (the kernel allocates no gigantic page for a migration; "
			   "move_pages needs a free one in the target node's pool)",
			   fast, size_kb, lacking);
	/* Measured in the guest (ARCHITECTURE.md): without a free pool page on the target, the
	 * migration allocates a fresh huge page from the node's free memory — that is what can
	 * fail, once the node's memory is fragmented. */
	return add(sc, SYSCHECK_WARN, name, fix,
		   "fast tier holds %" PRIu64 " pages of %" PRIu64 "kB; no pool on %s: each "
		   "demoted page needs a fresh %" PRIu64 "kB page allocated from the target node's "
		   "free memory, which fails once it is fragmented",
		   fast, size_kb, lacking, size_kb);
}

static int check_hugepages(struct syscheck *sc, const char *root, const struct tier_topology *topo,
			   bool have_topo)
{
	char path[PATH_MAX], name[SYSCHECK_NAME_BYTES], found[SYSCHECK_FOUND_BYTES];
	int ids[TIERS_MAX_NODES], nids, r = 0;
	struct huge_node *hns;
	uint64_t sizes[MAX_HUGE_SIZES];
	unsigned n = 0, nsizes = 0;
	uint64_t total2m = 0, free2m = 0;
	bool any2m = false;
	long long overcommit = 0;

	r = path_of(path, sizeof(path), root, "/sys/devices/system/node");
	if (r < 0)
		return r;
	nids = list_ids(path, "node", ids, TIERS_MAX_NODES);
	hns = calloc(nids > 0 ? (size_t)nids : 1, sizeof(*hns));
	if (!hns)
		return -ENOMEM;
	if (nids <= 0) {
		/* No node sysfs: the machine-wide pools are all there is. */
		hns[0].id = -1;
		read_pools(root, "/sys/kernel/mm/hugepages", &hns[0]);
		n = 1;
	}
	for (int i = 0; i < nids; i++) {
		char dir[64];

		hns[n].id = ids[i];
		snprintf(dir, sizeof(dir), "/sys/devices/system/node/node%d/hugepages", ids[i]);
		read_pools(root, dir, &hns[n]);
		n++;
	}

	for (unsigned i = 0; i < n && r == 0; i++) {
		const struct huge_node *hn = &hns[i];
		const struct tier_node *tn = have_topo && hn->id >= 0 ? tiers_node(topo, hn->id) : NULL;

		found[0] = '\0';
		if (tn)
			appendf(found, sizeof(found), "tier %d: ", tn->tier);
		for (unsigned k = 0; k < hn->nsizes; k++) {
			const struct huge_pool *p = &hn->pools[k];
			bool seen = false;

			appendf(found, sizeof(found), "%s%" PRIu64 "kB %" PRIu64 " (%" PRIu64 " free)",
				k ? ", " : "", p->size_kb, p->nr, p->nfree);
			for (unsigned s = 0; s < nsizes; s++)
				seen |= sizes[s] == p->size_kb;
			if (!seen && nsizes < MAX_HUGE_SIZES)
				sizes[nsizes++] = p->size_kb;
			if (p->size_kb == HUGE_2M_KB) {
				any2m = true;
				total2m += p->nr;
				free2m += p->nfree;
			}
		}
		if (!hn->nsizes)
			appendf(found, sizeof(found), "no huge page sizes");
		if (hn->id >= 0)
			snprintf(name, sizeof(name), "hugepages.node%d", hn->id);
		else
			snprintf(name, sizeof(name), "hugepages.all");
		r = add(sc, SYSCHECK_OK, name, NULL, "%s", found);
	}
	if (r < 0)
		goto out;

	(void)read_int(root, &overcommit, "/proc/sys/vm/nr_overcommit_hugepages");
	if (!any2m)
		r = add(sc, SYSCHECK_WARN, "hugepages.2M",
			"a kernel with CONFIG_HUGETLBFS offering 2 MiB pages (x86-64; arm64 with 4K pages)",
			"this kernel offers no 2 MiB huge pages: hugetlbfs segments cannot be created");
	else if (total2m == 0 && overcommit <= 0)
		r = add(sc, SYSCHECK_WARN, "hugepages.2M",
			"sysctl -w vm.nr_hugepages=N (per node: echo N > "
			"/sys/devices/system/node/nodeX/hugepages/hugepages-2048kB/nr_hugepages)",
			"no 2 MiB huge page pool on any node: hugetlbfs segments cannot be created "
			"(mmap of an MFD_HUGETLB memfd fails with ENOMEM)");
	else if (total2m == 0)
		r = add(sc, SYSCHECK_OK, "hugepages.2M", NULL,
			"no 2 MiB pool; vm.nr_overcommit_hugepages=%lld surplus pages on demand",
			overcommit);
	else
		r = add(sc, SYSCHECK_OK, "hugepages.2M", NULL,
			"%" PRIu64 " pages of 2 MiB (%" PRIu64 " free) for hugetlbfs segments", total2m,
			free2m);
	if (r < 0 || !have_topo || topo->ntiers < 2)
		goto out;
	for (unsigned s = 0; s < nsizes && r == 0; s++)
		r = check_demote(sc, topo, hns, n, sizes[s]);
out:
	free(hns);
	return r;
}

/* --- what would fight tierd --------------------------------------------------------------- */

static int check_numa_balancing(struct syscheck *sc, const char *root)
{
	static const char fix[] = "sysctl -w kernel.numa_balancing=0 (and in /etc/sysctl.d/ to keep it)";
	long long v;
	int r = read_int(root, &v, "/proc/sys/kernel/numa_balancing");

	if (r == -ENOENT)
		return add(sc, SYSCHECK_OK, "conflict.numa_balancing", NULL,
			   "kernel.numa_balancing absent (kernel without CONFIG_NUMA_BALANCING)");
	if (r < 0)
		return add(sc, SYSCHECK_WARN, "conflict.numa_balancing", fix,
			   "kernel.numa_balancing unreadable: %s", strerror(-r));
	if (v == 0)
		return add(sc, SYSCHECK_OK, "conflict.numa_balancing", NULL,
			   "kernel.numa_balancing=0: the kernel moves no pages on its own");
	/*
	 * The scanner (task_numa_work) skips hugetlb VMAs and read-only file mappings, not writable
	 * shared ones: a client's 4K memfd mapping is scanned like anonymous memory. Mode 2 skips
	 * pages already on the top tier and promotes the rest when they turn hot.
	 */
	return add(sc, SYSCHECK_WARN, "conflict.numa_balancing", fix,
		   "kernel.numa_balancing=%lld:%s%s%s", v,
		   (v & 1) ? " 1 = NUMA balancing: the kernel unmaps pages to sample accesses and moves "
			     "them toward the CPUs touching them, anonymous memory and 4K shmem "
			     "segments alike (hugetlb is not scanned)" :
			     "",
		   (v & 3) == 3 ? ";" : "",
		   (v & 2) ? " 2 = memory tiering: the kernel promotes pages it sees accessed on "
			     "slower-tier nodes to the top tier, undoing tierd's demotions of 4K shmem "
			     "(top-tier pages and hugetlb are not scanned)" :
			     "");
}

static int check_numad(struct syscheck *sc, const char *root)
{
	char path[PATH_MAX], comm[64], pids[256] = "";
	struct dirent *de;
	unsigned found = 0;
	DIR *d;
	int r = path_of(path, sizeof(path), root, "/proc");

	if (r < 0)
		return r;
	d = opendir(path);
	if (!d)
		return add(sc, SYSCHECK_WARN, "conflict.numad", "mount procfs at /proc",
			   "cannot list /proc: %s", strerror(errno));
	while ((de = readdir(d))) {
		if (!isdigit((unsigned char)de->d_name[0]))
			continue;
		/* A process that exits while we look is simply not there. */
		if (read_file(root, comm, sizeof(comm), "/proc/%s/comm", de->d_name) < 0)
			continue;
		if (strcmp(comm, "numad") == 0) {
			appendf(pids, sizeof(pids), "%s%s", found ? ", " : "", de->d_name);
			found++;
		}
	}
	closedir(d);
	if (!found)
		return add(sc, SYSCHECK_OK, "conflict.numad", NULL, "numad not running");
	return add(sc, SYSCHECK_WARN, "conflict.numad",
		   "systemctl disable --now numad (or stop it: it would undo tierd's placement)",
		   "numad running (pid %s): it rebinds processes to nodes and migrates their memory, "
		   "tracked segments included",
		   pids);
}

#define DAMON_DIR "/sys/kernel/mm/damon/admin/kdamonds"

/* Every DAMON scheme whose action migrates (migrate_hot, migrate_cold), per kdamond. */
static int check_damon(struct syscheck *sc, const char *root)
{
	char path[PATH_MAX], found[SYSCHECK_FOUND_BYTES] = "", fix[SYSCHECK_FIX_BYTES] = "";
	char state[32], action[32];
	int kds[64], ctxs[16], schemes[64], nkd;
	unsigned active = 0, idle = 0;
	int r = path_of(path, sizeof(path), root, DAMON_DIR);

	if (r < 0)
		return r;
	nkd = list_ids(path, "", kds, 64);
	if (nkd < 0)
		return add(sc, SYSCHECK_OK, "conflict.damon", NULL,
			   "no DAMON sysfs interface (%s)", strerror(-nkd));
	for (int k = 0; k < nkd; k++) {
		bool on, any = false;
		int nctx;

		if (read_file(root, state, sizeof(state), DAMON_DIR "/%d/state", kds[k]) < 0)
			continue;
		on = strcmp(state, "on") == 0;
		if (path_of(path, sizeof(path), root, DAMON_DIR "/%d/contexts", kds[k]) < 0)
			continue;
		nctx = list_ids(path, "", ctxs, 16);
		for (int c = 0; c < nctx; c++) {
			int ns;

			if (path_of(path, sizeof(path), root, DAMON_DIR "/%d/contexts/%d/schemes", kds[k],
				    ctxs[c]) < 0)
				continue;
			ns = list_ids(path, "", schemes, 64);
			for (int s = 0; s < ns; s++) {
				long long nid;

				if (read_file(root, action, sizeof(action),
					      DAMON_DIR "/%d/contexts/%d/schemes/%d/action", kds[k],
					      ctxs[c], schemes[s]) < 0 ||
				    strncmp(action, "migrate_", 8) != 0)
					continue;
				appendf(found, sizeof(found), "%skdamond %d (%s) context %d scheme %d %s",
					found[0] ? "; " : "", kds[k], on ? "on" : state, ctxs[c],
					schemes[s], action);
				if (read_int(root, &nid, DAMON_DIR "/%d/contexts/%d/schemes/%d/target_nid",
					     kds[k], ctxs[c], schemes[s]) == 0)
					appendf(found, sizeof(found), " to node %lld", nid);
				any = true;
			}
		}
		if (any && on) {
			appendf(fix, sizeof(fix), "%secho off > " DAMON_DIR "/%d/state",
				fix[0] ? "; " : "", kds[k]);
			active++;
		} else if (any) {
			idle++;
		}
	}
	if (active)
		return add(sc, SYSCHECK_WARN, "conflict.damon", fix,
			   "DAMON migrates pages between nodes by itself, tracked segments included: %s",
			   found);
	if (idle)
		return add(sc, SYSCHECK_OK, "conflict.damon", NULL,
			   "migrating DAMON schemes exist but their kdamonds are off: %s", found);
	return add(sc, SYSCHECK_OK, "conflict.damon", NULL, "%d kdamond%s, none with a migrate_hot/"
		   "migrate_cold scheme on", nkd, nkd == 1 ? "" : "s");
}

static int check_demotion(struct syscheck *sc, const char *root)
{
	char v[16];
	int r = read_file(root, v, sizeof(v), "/sys/kernel/mm/numa/demotion_enabled");

	/* Informative: reclaim demotion only acts under memory pressure and tierd plans around the
	 * pages it finds moved. */
	if (r < 0)
		return add(sc, SYSCHECK_OK, "conflict.demotion", NULL,
			   "/sys/kernel/mm/numa/demotion_enabled absent (kernel before 5.15: reclaim "
			   "never demotes)");
	if (strcmp(v, "true") == 0 || strcmp(v, "1") == 0)
		return add(sc, SYSCHECK_OK, "conflict.demotion", NULL,
			   "demotion_enabled=%s: under memory pressure reclaim demotes cold pages to "
			   "slower nodes, tierd's included (echo false > "
			   "/sys/kernel/mm/numa/demotion_enabled leaves placement to tierd)",
			   v);
	return add(sc, SYSCHECK_OK, "conflict.demotion", NULL,
		   "demotion_enabled=%s: reclaim frees pages rather than demoting them", v);
}

/* --- the coming eBPF sampler --------------------------------------------------------------- */

static int check_bpf_perf(struct syscheck *sc, const char *root)
{
	static const char *const pmus[] = { "cpu", "cpu_core", "cpu_atom" };
	char rel[128], name[64], found[256] = "", buf[128];
	long long paranoid;
	int r;

	if (exists(root, "/sys/kernel/btf/vmlinux"))
		r = add(sc, SYSCHECK_OK, "bpf.btf", NULL,
			"/sys/kernel/btf/vmlinux present: CO-RE eBPF programs can load");
	else
		r = add(sc, SYSCHECK_WARN, "bpf.btf",
			"a kernel built with CONFIG_DEBUG_INFO_BTF=y",
			"/sys/kernel/btf/vmlinux absent: the eBPF sampler (CO-RE) cannot load");
	if (r < 0)
		return r;

	r = read_int(root, &paranoid, "/proc/sys/kernel/perf_event_paranoid");
	if (r == -ENOENT)
		r = add(sc, SYSCHECK_WARN, "perf.paranoid", "a kernel built with CONFIG_PERF_EVENTS=y",
			"kernel.perf_event_paranoid absent: no perf events, no sampling");
	else if (r < 0)
		r = add(sc, SYSCHECK_WARN, "perf.paranoid", "check /proc/sys/kernel/perf_event_paranoid",
			"kernel.perf_event_paranoid unreadable: %s", strerror(-r));
	else if (paranoid >= 3)
		r = add(sc, SYSCHECK_WARN, "perf.paranoid",
			"sysctl -w kernel.perf_event_paranoid=2: CAP_PERFMON then suffices (the tierd "
			"unit grants CAP_PERFMON, never CAP_SYS_ADMIN)",
			"kernel.perf_event_paranoid=%lld: perf_event_open needs CAP_SYS_ADMIN (Debian's "
			"and Android's patch; upstream kernels treat it as 2)",
			paranoid);
	else
		r = add(sc, SYSCHECK_OK, "perf.paranoid", NULL,
			"kernel.perf_event_paranoid=%lld: %s", paranoid,
			paranoid < 0 ? "no restriction" :
				       "sampling other processes needs CAP_PERFMON (or CAP_SYS_ADMIN)");
	if (r < 0)
		return r;

	for (size_t i = 0; i < sizeof(pmus) / sizeof(pmus[0]); i++) {
		snprintf(rel, sizeof(rel), "/sys/bus/event_source/devices/%s/type", pmus[i]);
		if (!exists(root, rel))
			continue;
		appendf(found, sizeof(found), "%s%s", found[0] ? ", " : "", pmus[i]);
		if (read_file(root, buf, sizeof(buf), "/sys/bus/event_source/devices/%s/caps/pmu_name",
			      pmus[i]) > 0)
			appendf(found, sizeof(found), " (%s)", buf);
	}
	if (found[0] && exists(root, "/sys/bus/event_source/devices/ibs_op/type"))
		appendf(found, sizeof(found), ", ibs_op (AMD IBS: sampled data addresses)");
	if (found[0])
		r = add(sc, SYSCHECK_OK, "perf.pmu", NULL, "hardware PMU: %s", found);
	else
		r = add(sc, SYSCHECK_WARN, "perf.pmu",
			"on a VM, expose the host's PMU (QEMU/KVM: -cpu host,pmu=on; or the "
			"hypervisor's vPMU setting)",
			"no hardware PMU: software page-fault sampling only");
	if (r < 0)
		return r;

	r = read_file(root, buf, sizeof(buf), "/sys/kernel/security/lockdown");
	if (r < 0)
		return add(sc, SYSCHECK_OK, "kernel.lockdown", NULL,
			   "unknown: %s (mount -t securityfs securityfs /sys/kernel/security to read it)",
			   r == -ENOENT ? "securityfs not mounted or no lockdown LSM" : strerror(-r));
	{
		const char *open_br = strchr(buf, '['), *close_br = open_br ? strchr(open_br, ']') : NULL;

		if (!open_br || !close_br || (size_t)(close_br - open_br - 1) >= sizeof(name))
			return add(sc, SYSCHECK_OK, "kernel.lockdown", NULL, "unparsed: %s", buf);
		snprintf(name, sizeof(name), "%.*s", (int)(close_br - open_br - 1), open_br + 1);
	}
	if (strcmp(name, "confidentiality") == 0)
		return add(sc, SYSCHECK_WARN, "kernel.lockdown",
			   "boot with lockdown=integrity (Secure Boot may impose confidentiality)",
			   "lockdown=confidentiality: BPF programs may not read kernel memory "
			   "(bpf_probe_read_kernel) and perf refuses kernel-side sample data");
	return add(sc, SYSCHECK_OK, "kernel.lockdown", NULL, "lockdown=%s%s", name,
		   strcmp(name, "integrity") == 0 ?
			   ": debugfs and /dev/mem closed; BPF and perf sampling unaffected" :
			   "");
}

/* --- capabilities ------------------------------------------------------------------------- */

static int check_caps(struct syscheck *sc, const char *root, const struct proc_self *ps)
{
	static const struct {
		int cap;
		const char *item, *capname, *disables;
	} caps[] = {
		{ CAP_SYS_NICE, "cap.sys_nice", "CAP_SYS_NICE",
		  "--migrate-mode mapped (MPOL_MF_MOVE_ALL) and moving pages a client still maps; the "
		  "default zap mode works without it" },
		{ CAP_SYS_PTRACE, "cap.sys_ptrace", "CAP_SYS_PTRACE",
		  "attaching clients of other users (tierd reads their /proc/PID/maps)" },
		{ CAP_BPF, "cap.bpf", "CAP_BPF", "loading the eBPF sampler" },
		{ CAP_PERFMON, "cap.perfmon", "CAP_PERFMON",
		  "opening perf sampling events on other processes for the eBPF sampler" },
	};
	char fix[SYSCHECK_FIX_BYTES];
	long long last = 63;
	int r;

	if (!ps->have_caps)
		return add(sc, SYSCHECK_WARN, "cap", "mount procfs at /proc",
			   "cannot read CapEff from /proc/self/status");
	/* CAP_BPF and CAP_PERFMON exist from Linux 5.8; before, CAP_SYS_ADMIN stands in. */
	(void)read_int(root, &last, "/proc/sys/kernel/cap_last_cap");
	for (size_t i = 0; i < sizeof(caps) / sizeof(caps[0]); i++) {
		int cap = caps[i].cap <= last ? caps[i].cap : CAP_SYS_ADMIN;
		const char *capname = cap == caps[i].cap ? caps[i].capname : "CAP_SYS_ADMIN";

		if (ps->cap_eff & (UINT64_C(1) << cap)) {
			r = add(sc, SYSCHECK_OK, caps[i].item, NULL, "%s held%s", capname,
				cap == caps[i].cap ? "" : " (this kernel has no separate capability)");
		} else {
			snprintf(fix, sizeof(fix),
				 "run tierd as root, or grant %s (systemd: CapabilityBoundingSet= and "
				 "AmbientCapabilities=%s)",
				 capname, capname);
			r = add(sc, SYSCHECK_WARN, caps[i].item, fix,
				"this process lacks %s (CapEff %016" PRIx64 "): disables %s", capname,
				ps->cap_eff, caps[i].disables);
		}
		if (r < 0)
			return r;
	}
	return 0;
}

int syscheck_run(struct syscheck *sc, const char *root, const struct syscheck_uffd_probe *probe)
{
	char status[FILE_BYTES];
	struct proc_self ps = { 0 };
	struct tier_topology *topo;
	bool have_topo = false;
	int r;

	if (strlen(root) > PATH_MAX / 2)
		return -ENAMETOOLONG;
	if (read_file(root, status, sizeof(status), "/proc/self/status") > 0)
		parse_status(status, &ps);
	topo = calloc(1, sizeof(*topo)); /* ~11 KiB */
	if (!topo)
		return -ENOMEM;
	r = check_uffd_api(sc, root, probe);
	if (r >= 0)
		r = check_uffd_dev(sc, root, &ps);
	if (r >= 0)
		r = check_numa(sc, root, topo, &have_topo);
	if (r >= 0)
		r = check_hugepages(sc, root, topo, have_topo);
	if (r >= 0)
		r = check_numa_balancing(sc, root);
	if (r >= 0)
		r = check_numad(sc, root);
	if (r >= 0)
		r = check_damon(sc, root);
	if (r >= 0)
		r = check_demotion(sc, root);
	if (r >= 0)
		r = check_bpf_perf(sc, root);
	if (r >= 0)
		r = check_caps(sc, root, &ps);
	free(topo);
	return r < 0 ? r : 0;
}
