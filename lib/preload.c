/* SPDX-License-Identifier: MIT */
/*
 * libtier-preload.so: tiering for programs that do not know about tierd.
 *
 * LD_PRELOAD=libtier-preload.so puts this file's mmap/munmap/mremap in front of libc's. A shared
 * anonymous mapping (MAP_SHARED|MAP_ANONYMOUS, with or without MAP_HUGETLB and its MAP_HUGE_*
 * size bits) of at least $TIERD_MIN_BYTES becomes a sealed memfd of the same kind mapped with the
 * caller's address, protection and flags, and libtier attaches it to tierd in the background
 * (tier_segment_adopt: a control thread with every signal blocked). Forked children inherit the
 * mapping and attach their own userfaultfd from libtier's atfork handler. munmap and mremap of a
 * replaced mapping detach it first, so a PostgreSQL crash restart (unmap, map anew) frees the old
 * memfd and its huge pages.
 *
 * The caller must never see a result the original call would not have given: when any step of the
 * replacement fails (memfd_create, ftruncate, sealing, the mapping itself), the original call runs
 * unchanged and its result is returned. A mapping that tierd cannot track (tierd absent, refused,
 * no huge pages for the alias) stays a perfectly good shared mapping, only untracked.
 *
 * Knobs (read once, at the first call): TIERD_PRELOAD=0 turns the shim off; TIERD_MIN_BYTES (bytes,
 * K/M/G suffixes; default 64M); TIERD_PRELOAD_KINDS = hugetlb (default) | all | shmem; TIERD_PRELOAD_VERBOSE=1
 * says what it replaced on stderr; libtier's TIERD_SOCKET, TIERD_HANG_TIMEOUT_MS and TIERD_QUIET.
 */
#include "tierd/tier.h"
#include "errtext.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/memfd.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define EXPORT __attribute__((visibility("default")))
#define DEFAULT_MIN_BYTES (64ull << 20)

#ifndef MAP_HUGE_MASK
#define MAP_HUGE_MASK 0x3f
#endif

typedef void *(*mmap_fn)(void *, size_t, int, int, int, off_t);
typedef int (*munmap_fn)(void *, size_t);
typedef void *(*mremap_fn)(void *, size_t, size_t, int, ...);

enum kinds { KINDS_ALL, KINDS_HUGETLB, KINDS_SHMEM };

/* One replaced mapping. */
struct shim_map {
	uintptr_t start, end;
	bool huge;
	struct tier_segment *seg; /* NULL: replaced, not tracked (adopt failed) */
	struct shim_map *next;
};

static struct {
	pthread_once_t once;
	mmap_fn mmap;
	munmap_fn munmap;
	mremap_fn mremap;
	bool enabled, verbose;
	bool commit_strict; /* vm.overcommit_memory = 2: shmem would escape commit accounting */
	enum kinds kinds;
	unsigned long long min_bytes;
	unsigned release_wait_ms;       /* how long tierd may take to let go of huge pages */
	uint64_t released_ms;           /* when a tracked hugetlb mapping was last let go of */
	pthread_mutex_t lock; /* guards maps */
	struct shim_map *maps;
	unsigned nmaps; /* written under lock, peeked without */
} shim = { .once = PTHREAD_ONCE_INIT, .lock = PTHREAD_MUTEX_INITIALIZER };

/* Set while the shim itself maps or unmaps: libtier's own calls go straight through. */
static __thread int inside;
/* Set while shim_init() looks up the C library's functions: an allocator that maps memory
 * through mmap() from inside dlsym() gets the system call, not a second pthread_once(). */
static __thread bool initializing;

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
	char line[256];
	va_list ap;
	int n;

	n = snprintf(line, sizeof(line), "libtier-preload: pid %d: ", (int)getpid());
	va_start(ap, fmt);
	vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
	va_end(ap);
	/* stderr may be a pipe the application owns: one write, and never stdio's buffer. */
	n = (int)strnlen(line, sizeof(line) - 2);
	line[n++] = '\n';
	(void)!write(STDERR_FILENO, line, (size_t)n);
}

/* "64M", "1G", "1048576": bytes, or 0 when the value is not a size. */
static unsigned long long parse_bytes(const char *s)
{
	unsigned long long v;
	char *end;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s)
		return 0;
	switch (*end) {
	case 'k': case 'K': v <<= 10; end++; break;
	case 'm': case 'M': v <<= 20; end++; break;
	case 'g': case 'G': v <<= 30; end++; break;
	default: break;
	}
	return *end ? 0 : v;
}

/* Locks the map list around fork, so the child never inherits it held by another thread. */
static void fork_prepare(void)
{
	pthread_mutex_lock(&shim.lock);
}

static void fork_release(void)
{
	pthread_mutex_unlock(&shim.lock);
}

static void shim_init(void)
{
	const char *e;

	initializing = true;
	shim.mmap = (mmap_fn)dlsym(RTLD_NEXT, "mmap");
	shim.munmap = (munmap_fn)dlsym(RTLD_NEXT, "munmap");
	shim.mremap = (mremap_fn)dlsym(RTLD_NEXT, "mremap");
	initializing = false;
	shim.enabled = shim.mmap && shim.munmap && shim.mremap;
	e = getenv("TIERD_PRELOAD");
	if (e && strcmp(e, "0") == 0)
		shim.enabled = false;
	e = getenv("TIERD_PRELOAD_VERBOSE");
	shim.verbose = e && *e && strcmp(e, "0") != 0;
	shim.min_bytes = DEFAULT_MIN_BYTES;
	e = getenv("TIERD_MIN_BYTES");
	if (e && *e) {
		unsigned long long v = parse_bytes(e);

		if (v)
			shim.min_bytes = v;
		else
			say("TIERD_MIN_BYTES=%s is not a size (bytes, or with K, M or G); using %llu",
			    e, shim.min_bytes);
	}
	/* libtier's hang timeout: the longest a live tierd takes to answer. */
	e = getenv("TIERD_HANG_TIMEOUT_MS");
	shim.release_wait_ms = e && *e ? (unsigned)strtoul(e, NULL, 10) : 0;
	if (!shim.release_wait_ms)
		shim.release_wait_ms = 2000;
	if (shim.release_wait_ms > 60000)
		shim.release_wait_ms = 60000;
	/* A shared anonymous mapping is charged to the commit limit when it is made; a memfd's
	 * pages only when they are allocated, where running out means SIGBUS instead of ENOMEM
	 * from mmap. Under strict overcommit, 4 KiB mappings stay as they are. */
	{
		int fd = open("/proc/sys/vm/overcommit_memory", O_RDONLY | O_CLOEXEC);
		char c = '0';

		if (fd >= 0) {
			(void)!read(fd, &c, 1);
			close(fd);
		}
		shim.commit_strict = c == '2';
	}
	/* Huge pages by default: tracking a forking server's 4 KiB shared memory costs it a large
	 * share of its throughput (docs/postgres.md), which its operator must choose. */
	shim.kinds = KINDS_HUGETLB;
	e = getenv("TIERD_PRELOAD_KINDS");
	if (e && strcmp(e, "all") == 0)
		shim.kinds = KINDS_ALL;
	else if (e && strcmp(e, "shmem") == 0)
		shim.kinds = KINDS_SHMEM;
	else if (e && *e && strcmp(e, "hugetlb") != 0)
		say("TIERD_PRELOAD_KINDS=%s is not hugetlb, all or shmem; using hugetlb", e);
	pthread_atfork(fork_prepare, fork_release, fork_release);
}

static void shim_ready(void)
{
	pthread_once(&shim.once, shim_init);
}

/* Look the C library's functions up before the program runs, when nothing holds an allocator's
 * lock; the lazy path stays for calls from constructors that ran earlier. */
__attribute__((constructor)) static void shim_ctor(void)
{
	shim_ready();
}

static bool candidate(size_t len, int prot, int flags, int fd, off_t off)
{
	bool huge = flags & MAP_HUGETLB;

	/* MAP_SHARED exactly: MAP_SHARED_VALIDATE refuses MAP_ANONYMOUS, and an unaligned offset
	 * is EINVAL; the original call says so. */
	if (!shim.enabled || inside || !(flags & MAP_ANONYMOUS) || fd != -1 ||
	    (flags & MAP_TYPE) != MAP_SHARED || (off & (sysconf(_SC_PAGESIZE) - 1)) ||
	    len < shim.min_bytes)
		return false;
	/* Mappings that are not plain data memory stay as they are. */
	if ((prot & (PROT_READ | PROT_WRITE)) != (PROT_READ | PROT_WRITE) || (prot & PROT_EXEC) ||
	    (flags & MAP_GROWSDOWN))
		return false;
	if (!huge && shim.commit_strict)
		return false;
	return shim.kinds == KINDS_ALL || (shim.kinds == KINDS_HUGETLB) == huge;
}

static unsigned log2_size(size_t v)
{
	return (unsigned)(63 - __builtin_clzll((unsigned long long)v));
}

static void remember(void *p, size_t size, bool huge, struct tier_segment *seg)
{
	struct shim_map *m = malloc(sizeof(*m));

	if (!m) {
		/* Cannot forget it later: leave it untracked rather than unknown. */
		tier_segment_destroy(seg);
		return;
	}
	*m = (struct shim_map){ .start = (uintptr_t)p, .end = (uintptr_t)p + size, .huge = huge,
				.seg = seg };
	pthread_mutex_lock(&shim.lock);
	m->next = shim.maps;
	shim.maps = m;
	__atomic_add_fetch(&shim.nmaps, 1, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&shim.lock);
}

/* The mapping as a memfd, or MAP_FAILED (errno untouched by the caller's view: it retries). */
static void *replace(void *addr, size_t len, int prot, int flags)
{
	bool huge = flags & MAP_HUGETLB;
	unsigned shift = ((unsigned)flags >> MAP_HUGE_SHIFT) & MAP_HUGE_MASK;
	unsigned mfd = MFD_CLOEXEC | MFD_ALLOW_SEALING;
	struct tier_options opts = { .name = "tierd-preload" };
	struct tier_segment *seg = NULL;
	struct stat st;
	size_t ps, size;
	void *p;
	int fd, r;

	if (huge)
		mfd |= MFD_HUGETLB | (shift << MFD_HUGE_SHIFT);
	fd = memfd_create("tierd-preload", mfd);
	if (fd < 0)
		return MAP_FAILED;
	if (fd < 3) {
		/* The program closed stdin, stdout or stderr: whatever it later writes there must not
		 * land in its shared memory. */
		int high = fcntl(fd, F_DUPFD_CLOEXEC, 3);

		close(fd);
		if (high < 0)
			return MAP_FAILED;
		fd = high;
	}
	/* A hugetlbfs file's block size is its huge page size (the default one when no bits). */
	if (fstat(fd, &st) < 0)
		goto fail;
	ps = huge ? (size_t)st.st_blksize : (size_t)sysconf(_SC_PAGESIZE);
	if (ps == 0 || (ps & (ps - 1)) || len > SIZE_MAX - ps)
		goto fail;
	size = (len + ps - 1) & ~(ps - 1);
	if (ftruncate(fd, (off_t)size) < 0 ||
	    fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0)
		goto fail;
	/* The caller's flags, minus what made it anonymous: MAP_FIXED, MAP_FIXED_NOREPLACE,
	 * MAP_NORESERVE, MAP_POPULATE, MAP_LOCKED, MAP_32BIT... keep their meaning. Huge pages
	 * are reserved here, as they would have been by the original call. */
	flags &= ~(MAP_ANONYMOUS | MAP_HUGETLB | (MAP_HUGE_MASK << MAP_HUGE_SHIFT));
	p = shim.mmap(addr, size, prot, flags, fd, 0);
	/* A tracked hugetlb mapping unmapped just now (PostgreSQL's crash restart unmaps and maps
	 * again at once) keeps its huge pages until tierd has closed its own mapping of them, a few
	 * milliseconds later. The original call would have found them free: wait for tierd. */
	while (p == MAP_FAILED && errno == ENOMEM && huge &&
	       now_ms() - __atomic_load_n(&shim.released_ms, __ATOMIC_ACQUIRE) < shim.release_wait_ms) {
		usleep(5000);
		p = shim.mmap(addr, size, prot, flags, fd, 0);
	}
	if (p == MAP_FAILED)
		goto fail;

	opts.kind = huge ? TIER_HUGETLB : TIER_SHMEM;
	opts.size = size;
	opts.huge_shift = huge ? log2_size(ps) : 0;
	r = tier_segment_adopt(fd, p, size, &opts, &seg);
	if (r < 0) {
		/* Still a good shared mapping; only tierd will not see it. */
		if (shim.verbose)
			say("%zu-byte mapping at %p replaced but not tracked: %s", size, p, errtext(-r));
		close(fd);
		seg = NULL;
	} else if (shim.verbose) {
		say("%zu-byte shared %s mapping at %p is a memfd now, attaching to tierd", size,
		    huge ? "hugetlb" : "shmem", p);
	}
	remember(p, size, huge, seg);
	return p;
fail:
	close(fd);
	return MAP_FAILED;
}

/* Detaches and forgets every replaced mapping that [start, end) touches. errno is kept. */
static void forget(uintptr_t start, uintptr_t end)
{
	struct shim_map *gone = NULL;
	int saved = errno;

	pthread_mutex_lock(&shim.lock);
	for (struct shim_map **pp = &shim.maps; *pp;) {
		struct shim_map *m = *pp;

		if (m->start < end && start < m->end) {
			*pp = m->next;
			m->next = gone;
			gone = m;
			__atomic_sub_fetch(&shim.nmaps, 1, __ATOMIC_RELEASE);
		} else {
			pp = &m->next;
		}
	}
	pthread_mutex_unlock(&shim.lock);
	/* Outside the lock: destroying joins the control thread, which unregisters the mapping
	 * and wakes its faults before the caller unmaps it. */
	while (gone) {
		struct shim_map *m = gone;
		struct tier_info info = { 0 };

		gone = m->next;
		if (m->seg)
			tier_segment_info(m->seg, &info);
		if (shim.verbose)
			say("mapping at %#lx detached from tierd (unmapped or moved)",
			    (unsigned long)m->start);
		inside++;
		tier_segment_destroy(m->seg);
		inside--;
		/* Only a segment tierd has had holds huge pages there. */
		if (m->huge && info.attaches)
			__atomic_store_n(&shim.released_ms, now_ms(), __ATOMIC_RELEASE);
		free(m);
	}
	errno = saved;
}

static bool any_replaced(void)
{
	/* A racy peek is enough: a mapping being replaced right now is not the caller's to unmap. */
	return __atomic_load_n(&shim.nmaps, __ATOMIC_ACQUIRE) != 0;
}

EXPORT void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	void *p;

	if (!initializing)
		shim_ready();
	if (initializing || !shim.mmap)
		return (void *)syscall(SYS_mmap, addr, len, prot, flags, fd, off);
	/* MAP_FIXED replaces what was there, a replaced mapping too: tierd lets go of it first. */
	if ((flags & MAP_FIXED) && !inside && any_replaced())
		forget((uintptr_t)addr, (uintptr_t)addr + len);
	if (candidate(len, prot, flags, fd, off)) {
		int saved = errno;

		inside++;
		p = replace(addr, len, prot, flags);
		inside--;
		errno = saved;
		if (p != MAP_FAILED)
			return p;
	}
	return shim.mmap(addr, len, prot, flags, fd, off);
}

EXPORT void *mmap64(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	return mmap(addr, len, prot, flags, fd, off);
}

EXPORT int munmap(void *addr, size_t len)
{
	if (!initializing)
		shim_ready();
	if (initializing || !shim.munmap)
		return (int)syscall(SYS_munmap, addr, len);
	if (!inside && any_replaced() && len)
		forget((uintptr_t)addr, (uintptr_t)addr + len);
	return shim.munmap(addr, len);
}

EXPORT void *mremap(void *old, size_t old_len, size_t new_len, int flags, ...)
{
	void *new_addr = NULL;
	va_list ap;

	if (flags & MREMAP_FIXED) {
		va_start(ap, flags);
		new_addr = va_arg(ap, void *);
		va_end(ap);
	}
	if (!initializing)
		shim_ready();
	if (initializing || !shim.mremap)
		return (void *)syscall(SYS_mremap, old, old_len, new_len, flags, new_addr);
	if (!inside && any_replaced()) {
		/* The mapping moves or changes size: tierd would track the wrong range. Untracked
		 * from here on; the memory itself behaves as it would have. A fixed target replaces
		 * whatever was there, a replaced mapping too. */
		/* old_len 0 makes a second mapping of a shared one and leaves the first. */
		if (old_len)
			forget((uintptr_t)old, (uintptr_t)old + old_len);
		if (flags & MREMAP_FIXED)
			forget((uintptr_t)new_addr, (uintptr_t)new_addr + new_len);
	}
	return shim.mremap(old, old_len, new_len, flags, new_addr);
}
