/* SPDX-License-Identifier: MIT */
/*
 * Hostile clients against a real tierd: malformed packets, protocol misuse, wrong, lying or
 * foreign fds on ATTACH, a forged /proc/PID/maps line, clients that vanish mid-attach, connection
 * floods, clients that never read, and a uid outside --allow-uid.
 *
 * One tierd serves the group, and one well-behaved libtier segment (8 MiB shmem) stays attached
 * throughout while a thread touches its pages. After every case the test proves tierd still serves
 * it: the daemon is alive, the segment is TRACKED and was never re-attached, and tierd's fault
 * count for it keeps rising. Every case also checks that tierd kept none of the fds it was handed:
 * its /proc/PID/fd count returns to the baseline taken at setup.
 *
 * Every access of the toucher thread is timed, per case and overall, and every hostile input is
 * counted by kind (the case's name unless the case names a finer kind): test_summary, the last
 * case, prints both tables and holds the good client's latency to a bound.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"
#include "rawclient.h"
#include "proto.h"
#include "tierd/tier.h"
#include "uffd.h"

#define GOOD_SEG_BYTES (8u << 20) /* the well-behaved libtier segment */
#define RAW_BYTES (1u << 20)      /* memfds the test attaches by hand */
#define SETTLE_MS 1500u           /* time tierd gets to close what a dropped client held */
#define REPLY_MS 2000u
#define SEALS_OK (F_SEAL_SHRINK | F_SEAL_GROW)

#define MAX_CASES 48
#define MAX_KINDS 64
/* Latency histogram: LAT_SUB buckets per power of two, so a percentile is within 1/16 of the
 * truth; values below LAT_SUB ns get a bucket each. */
#define LAT_SUB 16u
#define LAT_BUCKETS (64u * LAT_SUB)
/* An access slower than this (a bucket boundary) faulted, into tierd or the kernel, or the thread
 * was preempted: the accesses worth looking at. A cached access takes ~100 ns. */
#define SLOW_NS 4096u
/* Bounds on the good client's accesses under attack, loose enough for a loaded 2-CPU box (a
 * preempted toucher waits tens of ms) but well below what a blocked tierd costs: a fault stalls
 * until tierd answers or libtier's guardian gives up on it (2 s + a heartbeat). */
#define SLOW_P99_MAX_NS (100u * 1000000u)
#define ACCESS_MAX_NS (1000u * 1000000u)

/* One case's accesses of the good segment. Written by the toucher only (relaxed). */
struct lat {
	_Atomic uint64_t n, max_ns;
	_Atomic uint64_t b[LAT_BUCKETS];
};

/* Hostile inputs of one kind: sent, and refused (refused, dropped or ignored without effect, as
 * the case asserts: counted only once the assertion passed). */
struct hkind {
	const char *name;
	unsigned sent, refused;
};

static struct {
	char sock[128];
	pid_t tierd;
	int fd_base;           /* tierd's open fds with only the good client connected */
	struct tier_segment *seg;
	size_t page_size;
	uint64_t npages;
	pthread_t toucher;
	bool toucher_running;
	atomic_bool stop;
	int uffd;              /* the test process's own uffd, for hand-made ATTACHes */
	uint64_t uffd_features;
	bool in_case;          /* a case started and has not reached finish() */
	_Atomic unsigned case_idx; /* the toucher's slot in lat[]: 0 is the group setup */
	const char *case_name[MAX_CASES];
	struct hkind kinds[MAX_KINDS];
	unsigned nkinds;
	struct hkind *kind;    /* where sent()/refused() count */
} g = { .tierd = -1, .uffd = -1 };

static struct lat lat[MAX_CASES];

/* ---- counting hostile inputs -------------------------------------------------------------------- */

/* Inputs from here on count as `name` (until the next case or kind()). */
static void kind(const char *name)
{
	for (unsigned i = 0; i < g.nkinds; i++)
		if (!strcmp(g.kinds[i].name, name)) {
			g.kind = &g.kinds[i];
			return;
		}
	assert_true(g.nkinds < MAX_KINDS);
	g.kind = &g.kinds[g.nkinds++];
	g.kind->name = name;
}

static void counted(unsigned sent, unsigned refused)
{
	if (!g.kind)
		kind("(setup)");
	g.kind->sent += sent;
	g.kind->refused += refused;
}

/* Receive buffer of the raw helpers (also used by forked children: their own copy). */
static uint8_t rbuf[TIERD_MSG_MAX_BYTES];

/* ---- tierd's fds ------------------------------------------------------------------------------ */

#define wait_fds harness_wait_fds
#define assert_fds(want) assert_int_equal(wait_fds(g.tierd, (want), SETTLE_MS), (want))

/* The fd count once it has stopped moving (after start-up probes and short queries). */
#define settled_fds(pid) harness_settled_fds((pid), 10, 2000)

/* ---- raw protocol helpers (no cmocka asserts: forked children use them too) -------------------- */

static int raw_connect_to(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd;

	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	memcpy(sa.sun_path, path, strlen(path));
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int r = -errno;

		close(fd);
		return r;
	}
	return fd;
}

/* sendmsg with up to SCM_MAX_FD (253) fds; proto_send stops at PROTO_MAX_FDS. */
static int send_pkt(int sock, const void *buf, size_t len, const int *fds, unsigned nfds)
{
	union {
		char b[CMSG_SPACE(sizeof(int) * 253)];
		struct cmsghdr align;
	} c;
	struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	ssize_t n;

	if (nfds > 253)
		return -EINVAL;
	if (nfds <= PROTO_MAX_FDS && len > 0)
		return proto_send(sock, buf, len, fds, nfds);
	if (nfds > 0) {
		struct cmsghdr *h;

		memset(&c, 0, sizeof(c));
		mh.msg_control = c.b;
		mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
		h = CMSG_FIRSTHDR(&mh);
		h->cmsg_level = SOL_SOCKET;
		h->cmsg_type = SCM_RIGHTS;
		h->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
		memcpy(CMSG_DATA(h), fds, sizeof(int) * nfds);
	}
	n = sendmsg(sock, &mh, MSG_NOSIGNAL);
	if (n < 0)
		return -errno;
	return (size_t)n == len ? 0 : -EMSGSIZE;
}

static uint16_t msg_type(void)
{
	return ((const struct tierd_msg_hdr *)rbuf)->type;
}

/* The next packet into rbuf (raw_recv: zaps_of 0 drops ZAPs, else only that attachment's). */
static ssize_t recv_pkt(int sock, unsigned timeout_ms, uint32_t zaps_of)
{
	return raw_recv(sock, rbuf, sizeof(rbuf), timeout_ms, zaps_of);
}

static ssize_t recv_msg(int sock, unsigned timeout_ms)
{
	return recv_pkt(sock, timeout_ms, 0);
}

static int send_hello(int sock, uint32_t flags)
{
	return raw_send_hello(sock, flags);
}

/* HELLO → WELCOME: 0 or a negative errno. */
static int hello(int sock)
{
	return raw_hello(sock, 0, rbuf, sizeof(rbuf), REPLY_MS);
}

/* PING → PONG with the same token: 0 or a negative errno. */
static int ping(int sock)
{
	return raw_ping(sock, rbuf, sizeof(rbuf), REPLY_MS);
}

/* ATTACH → ATTACHED: 0 with *rep filled, or a negative errno when no ATTACHED came. */
static int do_attach(int sock, const struct tierd_msg_attach *msg, int memfd, int uffd,
		     struct tierd_msg_attached *rep)
{
	ssize_t n;
	int r;

	r = proto_send(sock, msg, sizeof(*msg), (int[]){ memfd, uffd }, 2);
	if (r < 0)
		return r;
	n = recv_msg(sock, REPLY_MS);
	if (n <= 0)
		return n == 0 ? -ECONNRESET : (int)n;
	if (msg_type() != TIERD_MSG_ATTACHED || (size_t)n < sizeof(*rep))
		return -EPROTO;
	memcpy(rep, rbuf, sizeof(*rep));
	rep->reason[sizeof(rep->reason) - 1] = '\0';
	return 0;
}

/* Reads until tierd closes the connection: 0 (and *err = the status of an ERROR it sent first,
 * 0 when none), or -ETIMEDOUT when tierd kept it open. */
static int expect_drop(int sock, int *err)
{
	*err = 0;
	for (;;) {
		ssize_t n = recv_msg(sock, REPLY_MS);

		if (n == 0 || n == -ECONNRESET)
			return 0;
		if (n < 0)
			return (int)n;
		if (msg_type() == TIERD_MSG_ERROR && (size_t)n >= sizeof(struct tierd_msg_error))
			*err = ((struct tierd_msg_error *)rbuf)->status;
	}
}

/* ---- fixtures ---------------------------------------------------------------------------------- */

struct mfd {
	int fd;
	uint8_t *addr; /* MAP_FAILED when not mapped */
	size_t len;
};

/* A memfd of len bytes with `seals`, mapped shared read-write when `map`. */
static struct mfd mfd_new(size_t len, unsigned seals, bool map)
{
	struct mfd m = { .addr = MAP_FAILED, .len = len };

	m.fd = memfd_create("hostile", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	assert_true(m.fd >= 0);
	assert_int_equal(ftruncate(m.fd, (off_t)len), 0);
	if (seals)
		assert_int_equal(fcntl(m.fd, F_ADD_SEALS, seals), 0);
	if (map) {
		m.addr = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, m.fd, 0);
		assert_true(m.addr != MAP_FAILED);
	}
	return m;
}

static void mfd_free(struct mfd *m)
{
	if (m->addr != MAP_FAILED)
		munmap(m->addr, m->len);
	if (m->fd >= 0)
		close(m->fd);
	m->fd = -1;
	m->addr = MAP_FAILED;
}

static struct tierd_msg_attach attach_msg(const void *base, uint64_t len)
{
	struct tierd_msg_attach a = { .kind = TIERD_SEG_SHMEM,
				      .page_size = g.page_size,
				      .base = (uint64_t)(uintptr_t)base,
				      .length = len,
				      .uffd_features = g.uffd_features };

	proto_init(&a.hdr, TIERD_MSG_ATTACH, sizeof(a), 2);
	return a;
}

/* A uffd of the calling process with what shmem tracking needs: the fd or a negative errno. */
static int make_uffd(uint64_t *features)
{
	struct uffd_ops ops = uffd_ops_real(NULL);
	struct uffd_handshake hs;
	int u = uffd_negotiate(&ops, uffd_required_for_kind(TIERD_SEG_SHMEM), 0, &hs);

	if (features)
		*features = hs.enabled;
	return u;
}

static int raw_connect(void)
{
	int fd = raw_connect_to(g.sock);

	assert_true(fd >= 0);
	return fd;
}

/* Sends one packet (after HELLO when do_hello) on a fresh connection and asserts tierd drops the
 * connection. Returns the status of the ERROR tierd sent first, 0 when it closed without one. */
static int drop_case(bool do_hello, const void *pkt, size_t len, const int *fds, unsigned nfds)
{
	int sock = raw_connect(), err = 0;

	if (do_hello)
		assert_int_equal(hello(sock), 0);
	assert_int_equal(send_pkt(sock, pkt, len, fds, nfds), 0);
	assert_int_equal(expect_drop(sock, &err), 0);
	close(sock);
	counted(1, 1);
	return err;
}

/* ATTACH on a fresh connection; asserts a refusal whose reason names `needle`, that the connection
 * is still served (a refusal is not a protocol error), and that tierd kept neither fd. */
static void expect_refused(const char *what, const struct tierd_msg_attach *msg, int memfd, int uffd,
			   const char *needle)
{
	struct tierd_msg_attached rep;
	int sock = raw_connect();

	assert_int_equal(hello(sock), 0);
	assert_int_equal(do_attach(sock, msg, memfd, uffd, &rep), 0);
	print_message("  %-30s -> %d \"%s\"\n", what, rep.status, rep.reason);
	if (rep.status >= 0 || !strstr(rep.reason, needle)) {
		close(sock); /* an attachment made by mistake must not outlive this case */
		fail_msg("%s: status %d, reason \"%s\" (expected a refusal naming \"%s\")", what,
			 rep.status, rep.reason, needle);
	}
	assert_int_equal(ping(sock), 0);
	assert_fds(g.fd_base + 1);
	close(sock);
	assert_fds(g.fd_base);
	counted(1, 1);
}

/* ---- the well-behaved client ------------------------------------------------------------------- */

static unsigned lat_bucket(uint64_t ns)
{
	unsigned msb;

	if (ns < LAT_SUB)
		return (unsigned)ns;
	msb = 63u - (unsigned)__builtin_clzll(ns); /* >= 4 */
	return (msb - 3u) * LAT_SUB + (unsigned)((ns >> (msb - 4u)) & (LAT_SUB - 1u));
}

/* The largest value bucket b holds. */
static uint64_t lat_bucket_top(unsigned b)
{
	unsigned msb = b / LAT_SUB + 3u;

	if (b < LAT_SUB)
		return b;
	return ((uint64_t)(LAT_SUB + b % LAT_SUB) << (msb - 4u)) + ((uint64_t)1 << (msb - 4u)) - 1u;
}

static uint64_t nsec_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void lat_add(struct lat *l, uint64_t ns)
{
	_Atomic uint64_t *b = &l->b[lat_bucket(ns)];

	atomic_store_explicit(b, atomic_load_explicit(b, memory_order_relaxed) + 1, memory_order_relaxed);
	atomic_store_explicit(&l->n, atomic_load_explicit(&l->n, memory_order_relaxed) + 1,
			      memory_order_relaxed);
	if (ns > atomic_load_explicit(&l->max_ns, memory_order_relaxed))
		atomic_store_explicit(&l->max_ns, ns, memory_order_relaxed);
}

/* Times every access: those that fault into tierd wait for its UFFDIO_CONTINUE. */
static void *touch_loop(void *arg)
{
	volatile uint8_t *base = tier_segment_addr(g.seg);

	(void)arg;
	while (!atomic_load(&g.stop)) {
		for (uint64_t p = 0; p < g.npages; p++) {
			uint64_t t0 = nsec_now();

			base[p * g.page_size + (p % 61) * 64] += 1;
			lat_add(&lat[atomic_load_explicit(&g.case_idx, memory_order_relaxed)],
				nsec_now() - t0);
		}
		msleep(1);
	}
	return NULL;
}

/* Percentiles of the accesses in `l` (all, or only those of at least SLOW_NS). */
struct lat_summary {
	uint64_t n, slow, p50, p99, max, slow_p99;
};

static uint64_t lat_pct(const uint64_t *b, unsigned from, uint64_t n, double q)
{
	uint64_t want = (uint64_t)(q * (double)n + 0.999999), seen = 0;

	for (unsigned i = from; i < LAT_BUCKETS && n; i++) {
		seen += b[i];
		if (seen >= want)
			return lat_bucket_top(i);
	}
	return 0;
}

/* Sums the slots [first, last] into one summary. */
static struct lat_summary lat_sum(unsigned first, unsigned last)
{
	static uint64_t b[LAT_BUCKETS];
	struct lat_summary s = { 0 };
	unsigned slow_from = lat_bucket(SLOW_NS);

	memset(b, 0, sizeof(b));
	for (unsigned c = first; c <= last; c++) {
		uint64_t mx = atomic_load_explicit(&lat[c].max_ns, memory_order_relaxed);

		for (unsigned i = 0; i < LAT_BUCKETS; i++)
			b[i] += atomic_load_explicit(&lat[c].b[i], memory_order_relaxed);
		if (mx > s.max)
			s.max = mx;
	}
	for (unsigned i = 0; i < LAT_BUCKETS; i++) {
		s.n += b[i];
		s.slow += i >= slow_from ? b[i] : 0;
	}
	s.p50 = lat_pct(b, 0, s.n, 0.50);
	s.p99 = lat_pct(b, 0, s.n, 0.99);
	s.slow_p99 = lat_pct(b, slow_from, s.slow, 0.99);
	if (s.p99 > s.max)
		s.p99 = s.max;
	if (s.slow_p99 > s.max)
		s.slow_p99 = s.max;
	return s;
}

static void lat_print(const char *name, struct lat_summary s)
{
	print_message("  %-28s %9llu %7llu %8.2f %8.2f %10.1f %10.1f\n", name,
		      (unsigned long long)s.n, (unsigned long long)s.slow, (double)s.p50 / 1e3,
		      (double)s.p99 / 1e3, (double)s.slow_p99 / 1e3, (double)s.max / 1e3);
}

static void lat_header(void)
{
	print_message("  %-28s %9s %7s %8s %8s %10s %10s\n", "good client's accesses", "n",
		      ">4us", "p50 us", "p99 us", "p99>4us us", "max us");
}

static uint64_t good_faults(void)
{
	uint8_t bits[(GOOD_SEG_BYTES / 4096 + 7) / 8];
	uint64_t faults = 0;

	assert_true(g.npages <= sizeof(bits) * 8);
	assert_int_equal(tier_segment_heat(g.seg, bits, g.npages, &faults), 0);
	return faults;
}

/* tierd is alive, the good segment stayed attached on its first attach, and tierd keeps
 * resolving its faults. */
static void assert_serving(void)
{
	struct tier_info ti;
	uint64_t f0, f1, deadline;
	int st;

	assert_int_equal(waitpid(g.tierd, &st, WNOHANG), 0);
	tier_segment_info(g.seg, &ti);
	if (ti.attaches != 1 || ti.detaches != 0)
		print_message("  good client: state %d, %llu attaches, %llu detaches (%llu by its guardian), "
			      "last error %d \"%s\"\n",
			      (int)ti.state, (unsigned long long)ti.attaches,
			      (unsigned long long)ti.detaches, (unsigned long long)ti.guardian_detaches,
			      ti.last_error, ti.last_reason);
	assert_int_equal(ti.state, TIER_STATE_TRACKED);
	assert_int_equal(ti.attaches, 1);
	assert_int_equal(ti.detaches, 0);
	f0 = f1 = good_faults();
	deadline = mono_usec() + 3000000u;
	while (f1 <= f0 && mono_usec() < deadline) {
		msleep(10);
		f1 = good_faults();
	}
	assert_true(f1 > f0);
}

/* The end of every case: nothing left in tierd, and the good client served. */
static void finish(void)
{
	unsigned c = atomic_load(&g.case_idx);

	assert_fds(g.fd_base);
	assert_serving();
	lat_header();
	lat_print(g.case_name[c], lat_sum(c, c));
	g.in_case = false;
}

/* Before every case: when the previous one failed half-way (leaking fds in tierd, or sockets of
 * its own that tierd still serves), take a new baseline so one failure does not fail the rest. */
static int case_setup(void **state)
{
	const char *name = *state;
	unsigned c = atomic_load(&g.case_idx) + 1;

	if (c >= MAX_CASES)
		return -1;
	/* The case's name without "test_" names its latency slot and its kind of input. */
	g.case_name[c] = strncmp(name, "test_", 5) ? name : name + 5;
	atomic_store(&g.case_idx, c);
	kind(g.case_name[c]);
	if (g.in_case) {
		int n = settled_fds(g.tierd);

		print_message("  (previous case failed: tierd fd baseline %d -> %d)\n", g.fd_base, n);
		g.fd_base = n;
	}
	g.in_case = true;
	return 0;
}

static long long status_stat(const char *sock, const char *key)
{
	char js[16384];

	assert_true(status_fetch(sock, js, sizeof(js)) > 0);
	return json_int(js, "\"stats\"", key);
}

/* Status stats.key and its metric agree. */
static void assert_metric_is_stat(const char *sock, const char *series, const char *key)
{
	static char text[1 << 16];

	assert_int_equal(harness_tierctl(sock, false, text, sizeof(text), "metrics", NULL), 0);
	assert_true(metrics_sample(text, series) == (double)status_stat(sock, key));
}

/* ---- group ------------------------------------------------------------------------------------- */

static int group_setup(void **state)
{
	struct tier_options o = { .kind = TIER_SHMEM, .size = GOOD_SEG_BYTES, .name = "good" };
	struct rlimit rl;

	(void)state;
	/* 1000 connections at once need the fds, here and in tierd (which inherits the limit). */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 4096) {
		rl.rlim_cur = rl.rlim_max < 4096 ? rl.rlim_max : 4096;
		(void)setrlimit(RLIMIT_NOFILE, &rl);
	}
	g.case_name[0] = "(group setup)";
	g.page_size = (size_t)sysconf(_SC_PAGESIZE);
	g.uffd = make_uffd(&g.uffd_features);
	if (g.uffd < 0) {
		fprintf(stderr, "cannot create a userfaultfd with MINOR_SHMEM: %s\n", strerror(-g.uffd));
		return -1;
	}
	snprintf(g.sock, sizeof(g.sock), "%s/tierd.sock", harness_dir());
	/* The default epoch (100 ms): each check that the good client's fault count rises waits at
	 * most a couple of epochs, and the daemon runs as it would in production. */
	g.tierd = daemon_start(g.sock, NULL);
	if (g.tierd < 0)
		return -1;

	o.socket_path = g.sock;
	if (tier_segment_create(&o, &g.seg) < 0 || tier_segment_wait_tracked(g.seg, 3000) < 0)
		return -1;
	g.npages = tier_segment_size(g.seg) / tier_segment_page_size(g.seg);
	memset(tier_segment_addr(g.seg), 0x5a, tier_segment_size(g.seg));
	if (pthread_create(&g.toucher, NULL, touch_loop, NULL) != 0)
		return -1;
	g.toucher_running = true;
	g.fd_base = settled_fds(g.tierd);
	print_message("tierd pid %d holds %d fds with the good client attached\n", (int)g.tierd,
		      g.fd_base);
	return g.fd_base > 0 ? 0 : -1;
}

static int group_teardown(void **state)
{
	int r = 0, st;

	(void)state;
	if (g.toucher_running) {
		atomic_store(&g.stop, true);
		pthread_join(g.toucher, NULL);
	}
	tier_segment_destroy(g.seg);
	if (g.tierd > 0) {
		st = daemon_stop(g.tierd);
		if (st != 0) {
			fprintf(stderr, "tierd exited with status %d\n", st);
			r = -1;
		}
	}
	if (g.uffd >= 0)
		close(g.uffd);
	harness_cleanup();
	return r;
}

/* ---- framing ----------------------------------------------------------------------------------- */

static uint64_t xorshift(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static void test_garbage(void **state)
{
	static uint8_t pkt[4096];
	uint64_t seed = 0x9e3779b97f4a7c15ull;

	(void)state;
	for (int i = 0; i < 16; i++) {
		size_t len = 1 + xorshift(&seed) % sizeof(pkt);
		int err;

		for (size_t j = 0; j < len; j++)
			pkt[j] = (uint8_t)xorshift(&seed);
		err = drop_case(i & 1, pkt, len, NULL, 0);
		assert_true(err == -EPROTO || err == -EBADMSG);
	}
	finish();
}

static void test_truncated_header(void **state)
{
	struct tierd_msg_hello h = { .pid = 1 };
	struct tierd_msg_attach a = attach_msg(NULL, 4096);
	struct mfd m = mfd_new(RAW_BYTES, SEALS_OK, false);
	const size_t lens[] = { 1, 8, 15 };

	(void)state;
	proto_init(&h.hdr, TIERD_MSG_HELLO, sizeof(h), 1);
	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		assert_int_equal(drop_case(false, &h, lens[i], NULL, 0), -EPROTO);
		assert_int_equal(drop_case(true, &h, lens[i], NULL, 0), -EPROTO);
	}
	/* A whole header whose size claims only the header: HELLO's payload is missing. */
	h.hdr.size = sizeof(h.hdr);
	assert_int_equal(drop_case(false, &h, sizeof(h.hdr), NULL, 0), -EPROTO);
	/* An ATTACH cut short, carrying its two fds: refused, and both fds closed. */
	a.hdr.size = 40;
	assert_int_equal(drop_case(true, &a, 40, (int[]){ m.fd, g.uffd }, 2), -EPROTO);
	/* A zero-length packet reads as end-of-file: dropped, no ERROR. */
	assert_int_equal(drop_case(true, "", 0, NULL, 0), 0);
	mfd_free(&m);
	finish();
}

/* A zero-length packet that carries fds: recvmsg returns 0 with the fds installed in tierd. */
static void test_empty_packet_with_fds(void **state)
{
	struct mfd m = mfd_new(RAW_BYTES, SEALS_OK, false);
	int ev = eventfd(0, EFD_CLOEXEC);

	(void)state;
	assert_true(ev >= 0);
	for (int i = 0; i < 4; i++) {
		assert_int_equal(drop_case(i & 1, "", 0, (int[]){ m.fd, g.uffd, ev, ev }, 4), 0);
		assert_fds(g.fd_base);
	}
	close(ev);
	mfd_free(&m);
	finish();
}

static void test_wrong_version(void **state)
{
	const uint16_t versions[] = { 0, 2, 0x100, 0xffff };
	struct tierd_msg_hello h = { .pid = 1 };
	struct tierd_msg_ping p = { .token = 1 };

	(void)state;
	for (size_t i = 0; i < sizeof(versions) / sizeof(versions[0]); i++) {
		proto_init(&h.hdr, TIERD_MSG_HELLO, sizeof(h), 1);
		h.hdr.version = versions[i];
		assert_int_equal(drop_case(false, &h, sizeof(h), NULL, 0), -EPROTO);
		proto_init(&p.hdr, TIERD_MSG_PING, sizeof(p), 2);
		p.hdr.version = versions[i];
		assert_int_equal(drop_case(true, &p, sizeof(p), NULL, 0), -EPROTO);
	}
	finish();
}

static void test_size_mismatch(void **state)
{
	const uint32_t sizes[] = { 0, 16, sizeof(struct tierd_msg_hello) - 1,
				   sizeof(struct tierd_msg_hello) + 1, 65536, 0xffffffffu };
	struct tierd_msg_hello h = { .pid = 1 };
	uint8_t longer[100] = { 0 };
	int sock;

	(void)state;
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		proto_init(&h.hdr, TIERD_MSG_HELLO, sizes[i], 1);
		assert_int_equal(drop_case(false, &h, sizeof(h), NULL, 0), -EPROTO);
	}
	/* Control: a HELLO longer than this version's, size matching, is served (append-only). */
	memcpy(longer, &h, sizeof(h));
	proto_init((struct tierd_msg_hdr *)longer, TIERD_MSG_HELLO, sizeof(longer), 1);
	sock = raw_connect();
	assert_int_equal(send_pkt(sock, longer, sizeof(longer), NULL, 0), 0);
	assert_true(recv_msg(sock, REPLY_MS) > 0);
	assert_int_equal(msg_type(), TIERD_MSG_WELCOME);
	assert_int_equal(ping(sock), 0);
	close(sock);
	finish();
}

static void test_unknown_type(void **state)
{
	const uint16_t unknown[] = { 0, _TIERD_MSG_MAX, 200, 0xffff };
	/* Types only tierd sends: valid framing, refused from a client. */
	const uint16_t daemon_only[] = { TIERD_MSG_WELCOME,     TIERD_MSG_ATTACHED,
					 TIERD_MSG_ZAP,         TIERD_MSG_PONG,
					 TIERD_MSG_HEAT_REPLY,  TIERD_MSG_STATUS_REPLY,
					 TIERD_MSG_ERROR };
	uint8_t pkt[256] = { 0 };

	(void)state;
	for (size_t i = 0; i < sizeof(unknown) / sizeof(unknown[0]); i++) {
		proto_init((struct tierd_msg_hdr *)pkt, unknown[i], 64, 1);
		assert_int_equal(drop_case(false, pkt, 64, NULL, 0), -EBADMSG);
		assert_int_equal(drop_case(true, pkt, 64, NULL, 0), -EBADMSG);
	}
	for (size_t i = 0; i < sizeof(daemon_only) / sizeof(daemon_only[0]); i++) {
		proto_init((struct tierd_msg_hdr *)pkt, daemon_only[i], sizeof(pkt), 1);
		assert_int_equal(drop_case(true, pkt, sizeof(pkt), NULL, 0), -EBADMSG);
	}
	finish();
}

static void test_oversized(void **state)
{
	static uint8_t big[70000];
	struct mfd m = mfd_new(RAW_BYTES, SEALS_OK, false);
	const size_t lens[] = { TIERD_MSG_MAX_BYTES + 1, sizeof(big) };
	int sock;

	(void)state;
	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		memset(big, 0, sizeof(big));
		proto_init((struct tierd_msg_hdr *)big, TIERD_MSG_PING, (uint32_t)lens[i], 3);
		/* Truncated on receive: dropped without a reply (tierd cannot trust the header). */
		assert_int_equal(drop_case(true, big, lens[i], NULL, 0), 0);
		proto_init((struct tierd_msg_hdr *)big, TIERD_MSG_ATTACH, (uint32_t)lens[i], 3);
		assert_int_equal(drop_case(true, big, lens[i], (int[]){ m.fd, g.uffd }, 2), 0);
	}
	/* Control: exactly TIERD_MSG_MAX_BYTES is a valid (long) PING. */
	memset(big, 0, sizeof(big));
	proto_init((struct tierd_msg_hdr *)big, TIERD_MSG_PING, TIERD_MSG_MAX_BYTES, 3);
	sock = raw_connect();
	assert_int_equal(hello(sock), 0);
	assert_int_equal(send_pkt(sock, big, TIERD_MSG_MAX_BYTES, NULL, 0), 0);
	assert_true(recv_msg(sock, REPLY_MS) > 0);
	assert_int_equal(msg_type(), TIERD_MSG_PONG);
	close(sock);
	mfd_free(&m);
	finish();
}

/* ---- protocol order and fd counts ---------------------------------------------------------------- */

static void test_attach_before_hello(void **state)
{
	struct mfd m = mfd_new(RAW_BYTES, SEALS_OK, true);
	struct tierd_msg_attach a = attach_msg(m.addr, m.len);
	struct tierd_msg_hdr q;

	(void)state;
	assert_int_equal(drop_case(false, &a, sizeof(a), (int[]){ m.fd, g.uffd }, 2), -EPROTO);
	proto_init(&q, TIERD_MSG_STATUS_QUERY, sizeof(q), 1);
	assert_int_equal(drop_case(false, &q, sizeof(q), NULL, 0), -EPROTO);
	mfd_free(&m);
	finish();
}

static void test_second_hello(void **state)
{
	struct tierd_msg_hello h = { .pid = 1 };

	(void)state;
	proto_init(&h.hdr, TIERD_MSG_HELLO, sizeof(h), 2);
	/* Dropped (with or without an ERROR first: either is a fine goodbye). */
	(void)drop_case(true, &h, sizeof(h), NULL, 0);
	/* A second HELLO must not fetch a second /dev/userfaultfd either. */
	h.flags = TIERD_HELLO_WANT_UFFD_DEV;
	(void)drop_case(true, &h, sizeof(h), NULL, 0);
	finish();
}

static void test_attach_fd_counts(void **state)
{
	struct mfd m = mfd_new(RAW_BYTES, SEALS_OK, true);
	struct tierd_msg_attach a = attach_msg(m.addr, m.len);
	int p[2], fds[253];

	(void)state;
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	fds[0] = m.fd;
	fds[1] = g.uffd;
	for (int i = 2; i < 253; i++)
		fds[i] = p[i & 1];
	/* 0, 1, 3, 4 fds: framing is fine, the count is wrong. */
	assert_int_equal(drop_case(true, &a, sizeof(a), NULL, 0), -EBADMSG);
	assert_int_equal(drop_case(true, &a, sizeof(a), fds, 1), -EBADMSG);
	assert_int_equal(drop_case(true, &a, sizeof(a), fds, 3), -EBADMSG);
	assert_int_equal(drop_case(true, &a, sizeof(a), fds, 4), -EBADMSG);
	/* More than tierd receives (PROTO_MAX_FDS), up to the kernel's SCM_MAX_FD. */
	assert_int_equal(drop_case(true, &a, sizeof(a), fds, 5), 0);
	assert_int_equal(drop_case(true, &a, sizeof(a), fds, 64), 0);
	assert_int_equal(drop_case(true, &a, sizeof(a), fds, 253), 0);
	close(p[0]);
	close(p[1]);
	mfd_free(&m);
	finish();
}

static void test_fds_on_hello(void **state)
{
	struct mfd m = mfd_new(RAW_BYTES, SEALS_OK, false);
	struct tierd_msg_hello h = { .pid = 1 };
	struct tierd_msg_ping p = { .token = 5 };
	struct tierd_msg_hdr q;

	(void)state;
	proto_init(&h.hdr, TIERD_MSG_HELLO, sizeof(h), 1);
	assert_int_equal(drop_case(false, &h, sizeof(h), (int[]){ m.fd }, 1), -EBADMSG);
	assert_int_equal(drop_case(false, &h, sizeof(h), (int[]){ m.fd, g.uffd }, 2), -EBADMSG);
	proto_init(&p.hdr, TIERD_MSG_PING, sizeof(p), 2);
	assert_int_equal(drop_case(true, &p, sizeof(p), (int[]){ g.uffd }, 1), -EBADMSG);
	proto_init(&q, TIERD_MSG_STATUS_QUERY, sizeof(q), 2);
	assert_int_equal(drop_case(true, &q, sizeof(q), (int[]){ m.fd, m.fd, m.fd }, 3), -EBADMSG);
	mfd_free(&m);
	finish();
}

/* ---- ATTACH with fds that are not what they claim ---------------------------------------------- */

/* Control for the refusal cases: the same ATTACH with everything right is accepted. */
static void test_good_raw_attach(void **state)
{
	struct mfd m = mfd_new(RAW_BYTES, SEALS_OK, true);
	struct tierd_msg_attach a = attach_msg(m.addr, m.len);
	struct tierd_msg_attached rep;
	struct tierd_msg_detach d = { 0 };
	int sock = raw_connect();

	(void)state;
	assert_int_equal(hello(sock), 0);
	assert_int_equal(do_attach(sock, &a, m.fd, g.uffd, &rep), 0);
	assert_int_equal(rep.status, 0);
	assert_int_equal(rep.registration, TIERD_REG_WINDOWS);
	assert_fds(g.fd_base + 3); /* connection, memfd (the segment's), uffd (the attachment's) */
	d.attach_id = rep.attach_id;
	proto_init(&d.hdr, TIERD_MSG_DETACH, sizeof(d), 3);
	assert_int_equal(proto_send(sock, &d, sizeof(d), NULL, 0), 0);
	assert_int_equal(ping(sock), 0);
	assert_fds(g.fd_base + 1);
	close(sock);
	mfd_free(&m);
	finish();
}

static void test_attach_wrong_fd_types(void **state)
{
	struct mfd m = mfd_new(RAW_BYTES, SEALS_OK, true);
	struct tierd_msg_attach a = attach_msg(m.addr, m.len);
	char tmp_path[256], shm_path[64], ro_path[64];
	int p[2], sp[2], tmpf, shmf, zero, ev, ro;
	struct statfs sfs;
	const char *tmp_needle;

	(void)state;
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp), 0);
	snprintf(tmp_path, sizeof(tmp_path), "/tmp/tierd-hostile-%d", (int)getpid());
	tmpf = open(tmp_path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	assert_true(tmpf >= 0);
	unlink(tmp_path);
	assert_int_equal(ftruncate(tmpf, RAW_BYTES), 0);
	assert_int_equal(fstatfs(tmpf, &sfs), 0);
	/* On tmpfs, a plain file carries F_SEAL_SEAL and nothing else: refused for its seals. */
	tmp_needle = (unsigned long)sfs.f_type == TMPFS_MAGIC ? "F_SEAL_SHRINK" : "not tmpfs";
	snprintf(shm_path, sizeof(shm_path), "/dev/shm/tierd-hostile-%d", (int)getpid());
	shmf = open(shm_path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (shmf >= 0) {
		unlink(shm_path);
		assert_int_equal(ftruncate(shmf, RAW_BYTES), 0);
	}
	zero = open("/dev/zero", O_RDWR | O_CLOEXEC);
	assert_true(zero >= 0);
	ev = eventfd(0, EFD_CLOEXEC);
	assert_true(ev >= 0);
	snprintf(ro_path, sizeof(ro_path), "/proc/self/fd/%d", m.fd);
	ro = open(ro_path, O_RDONLY | O_CLOEXEC);
	assert_true(ro >= 0);

	/* The memfd slot. */
	expect_refused("pipe as memfd", &a, p[0], g.uffd, "not a regular file");
	expect_refused("regular file in /tmp as memfd", &a, tmpf, g.uffd, tmp_needle);
	if (shmf >= 0)
		expect_refused("/dev/shm file as memfd", &a, shmf, g.uffd, "F_SEAL_SHRINK");
	expect_refused("/dev/zero as memfd", &a, zero, g.uffd, "not a regular file");
	expect_refused("socket as memfd", &a, sp[0], g.uffd, "not a regular file");
	expect_refused("eventfd as memfd", &a, ev, g.uffd, "not a regular file");
	expect_refused("uffd as memfd", &a, g.uffd, g.uffd, "not a regular file");
	expect_refused("read-only memfd", &a, ro, g.uffd, "read-write");
	/* The uffd slot, behind a good memfd. */
	expect_refused("pipe as uffd", &a, m.fd, p[1], "not a userfaultfd");
	expect_refused("/dev/zero as uffd", &a, m.fd, zero, "not a userfaultfd");
	expect_refused("eventfd as uffd", &a, m.fd, ev, "not a userfaultfd");
	expect_refused("socket as uffd", &a, m.fd, sp[1], "not a userfaultfd");
	expect_refused("memfd as uffd", &a, m.fd, m.fd, "not a userfaultfd");
	expect_refused("regular file as uffd", &a, m.fd, tmpf, "not a userfaultfd");

	close(p[0]);
	close(p[1]);
	close(sp[0]);
	close(sp[1]);
	close(tmpf);
	if (shmf >= 0)
		close(shmf);
	close(zero);
	close(ev);
	close(ro);
	mfd_free(&m);
	finish();
}

static void test_attach_unsealed_memfd(void **state)
{
	struct mfd m = mfd_new(RAW_BYTES, 0, true);
	struct mfd grow_only = mfd_new(RAW_BYTES, F_SEAL_GROW, true);
	struct mfd no_sealing = { .addr = MAP_FAILED, .len = RAW_BYTES };
	struct tierd_msg_attach a = attach_msg(m.addr, m.len);

	(void)state;
	expect_refused("unsealed memfd", &a, m.fd, g.uffd, "F_SEAL_SHRINK");
	a = attach_msg(grow_only.addr, grow_only.len);
	expect_refused("memfd sealed F_SEAL_GROW only", &a, grow_only.fd, g.uffd, "F_SEAL_SHRINK");
	/* Created without MFD_ALLOW_SEALING: born with F_SEAL_SEAL, can never be sealed. */
	no_sealing.fd = memfd_create("hostile", MFD_CLOEXEC);
	assert_true(no_sealing.fd >= 0);
	assert_int_equal(ftruncate(no_sealing.fd, RAW_BYTES), 0);
	no_sealing.addr = mmap(NULL, RAW_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED, no_sealing.fd, 0);
	assert_true(no_sealing.addr != MAP_FAILED);
	a = attach_msg(no_sealing.addr, no_sealing.len);
	expect_refused("memfd without sealing", &a, no_sealing.fd, g.uffd, "F_SEAL_SHRINK");
	mfd_free(&m);
	mfd_free(&grow_only);
	mfd_free(&no_sealing);
	finish();
}

/* The memfd is mapped, but ATTACH lies about its length, kind, page size or alignment. */
static void test_attach_lying_fields(void **state)
{
	struct mfd m = mfd_new(RAW_BYTES, SEALS_OK, false);
	struct tierd_msg_attach a;
	uint8_t *map2;

	(void)state;
	/* Mapped twice its size (legal: the tail past EOF would SIGBUS), claimed at that length. */
	map2 = mmap(NULL, 2 * RAW_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED, m.fd, 0);
	assert_true(map2 != MAP_FAILED);
	a = attach_msg(map2, 2 * RAW_BYTES);
	expect_refused("length > memfd size", &a, m.fd, g.uffd, "does not match the memfd's size");
	a = attach_msg(map2, RAW_BYTES / 2);
	expect_refused("length < memfd size", &a, m.fd, g.uffd, "does not match the memfd's size");
	a = attach_msg(map2, 0);
	expect_refused("length 0", &a, m.fd, g.uffd, "does not match the memfd's size");
	a = attach_msg(map2, RAW_BYTES);
	a.kind = TIERD_SEG_HUGETLB;
	expect_refused("kind hugetlb on shmem", &a, m.fd, g.uffd, "does not match the memfd");
	a.kind = 77;
	expect_refused("unknown kind", &a, m.fd, g.uffd, "does not match the memfd");
	a = attach_msg(map2, RAW_BYTES);
	a.page_size = 2u << 20;
	expect_refused("page size 2 MiB on shmem", &a, m.fd, g.uffd, "page size");
	a.page_size = 0;
	expect_refused("page size 0", &a, m.fd, g.uffd, "page size");
	a = attach_msg(map2 + 1, RAW_BYTES);
	expect_refused("unaligned base", &a, m.fd, g.uffd, "not page aligned");
	a = attach_msg((void *)(uintptr_t)0xfffffffffff00000ull, RAW_BYTES);
	expect_refused("base + length overflows", &a, m.fd, g.uffd, "not page aligned");
	munmap(map2, 2 * RAW_BYTES);
	mfd_free(&m);
	finish();
}

/* Everything about the memfd is right except where the client says it maps it. */
static void test_attach_wrong_base(void **state)
{
	struct mfd m = mfd_new(RAW_BYTES, SEALS_OK, true), decoy = mfd_new(RAW_BYTES, SEALS_OK, true);
	struct tierd_msg_attach a;
	uint8_t *anon, *priv, *r;
	size_t ps = g.page_size;

	(void)state;
	a = attach_msg(m.addr + RAW_BYTES, RAW_BYTES);
	expect_refused("base past the mapping", &a, m.fd, g.uffd, "does not map the memfd");
	a = attach_msg(m.addr + ps, RAW_BYTES);
	expect_refused("base one page in", &a, m.fd, g.uffd, "does not map the memfd");
	a = attach_msg(decoy.addr, RAW_BYTES);
	expect_refused("base of another memfd", &a, m.fd, g.uffd, "does not map the memfd");
	anon = mmap(NULL, RAW_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(anon != MAP_FAILED);
	a = attach_msg(anon, RAW_BYTES);
	expect_refused("base of anonymous memory", &a, m.fd, g.uffd, "does not map the memfd");
	priv = mmap(NULL, RAW_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE, m.fd, 0);
	assert_true(priv != MAP_FAILED);
	a = attach_msg(priv, RAW_BYTES);
	expect_refused("memfd mapped MAP_PRIVATE", &a, m.fd, g.uffd, "does not map the memfd");

	/* Only the first half mapped. */
	munmap(m.addr + RAW_BYTES / 2, RAW_BYTES / 2);
	a = attach_msg(m.addr, RAW_BYTES);
	expect_refused("memfd half mapped", &a, m.fd, g.uffd, "does not map the memfd");

	/* Skewed: file offset 0 mapped one page *before* base, the tail patched with a second VMA,
	 * so every address in [base, base+len) maps the memfd, each VMA "starts" where coverage
	 * stands, yet base maps file offset one page, not 0. */
	r = mmap(NULL, RAW_BYTES + ps, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(r != MAP_FAILED);
	assert_true(mmap(r, RAW_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, m.fd, 0) == r);
	assert_true(mmap(r + RAW_BYTES, ps, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, m.fd,
			 (off_t)(RAW_BYTES - ps)) == r + RAW_BYTES);
	a = attach_msg(r + ps, RAW_BYTES);
	expect_refused("memfd mapped skewed by a page", &a, m.fd, g.uffd, "does not map the memfd");

	munmap(r, RAW_BYTES + ps);
	munmap(anon, RAW_BYTES);
	munmap(priv, RAW_BYTES);
	mfd_free(&m);
	mfd_free(&decoy);
	finish();
}

/* Sealed against writes: tierd's own read-write alias cannot be made. */
static void test_attach_write_sealed(void **state)
{
	struct mfd m = mfd_new(RAW_BYTES, SEALS_OK | F_SEAL_WRITE, false);
	struct mfd fw = mfd_new(RAW_BYTES, 0, true);
	struct tierd_msg_attach a;

	(void)state;
	m.addr = mmap(NULL, RAW_BYTES, PROT_READ, MAP_SHARED, m.fd, 0);
	assert_true(m.addr != MAP_FAILED);
	a = attach_msg(m.addr, RAW_BYTES);
	expect_refused("memfd sealed F_SEAL_WRITE", &a, m.fd, g.uffd, "cannot set up the segment");
	assert_int_equal(fcntl(fw.fd, F_ADD_SEALS, SEALS_OK | F_SEAL_FUTURE_WRITE), 0);
	a = attach_msg(fw.addr, RAW_BYTES);
	expect_refused("memfd sealed F_SEAL_FUTURE_WRITE", &a, fw.fd, g.uffd,
		       "cannot set up the segment");
	mfd_free(&m);
	mfd_free(&fw);
	finish();
}

/*
 * Another process's uffd: a child (forked before the memfd is mapped, so its address space has
 * nothing there) makes a uffd and sends it over a socketpair; the parent attaches its own memfd
 * with it. With the child alive UFFDIO_REGISTER finds no mapping in the child's mm; with the
 * child gone there is no mm at all. _Fork: no atfork handlers, so the child does not re-attach
 * the good segment; it only makes async-signal-safe calls.
 */
static void foreign_uffd_case(bool child_alive)
{
	struct tierd_msg_attach a;
	int sp[2], fds[PROTO_MAX_FDS], st;
	unsigned nfds = 0;
	struct pollfd pfd;
	struct mfd m;
	pid_t pid;

	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp), 0);
	pid = _Fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int u = make_uffd(NULL);
		char c;

		close(sp[0]);
		if (u < 0)
			_exit(2);
		if (proto_send(sp[1], "u", 1, &u, 1) < 0)
			_exit(3);
		if (child_alive)
			(void)read(sp[1], &c, 1); /* until the parent is done */
		_exit(0);
	}
	close(sp[1]);
	pfd = (struct pollfd){ .fd = sp[0], .events = POLLIN };
	assert_int_equal(poll(&pfd, 1, 2000), 1);
	assert_int_equal(proto_recv(sp[0], rbuf, sizeof(rbuf), fds, &nfds), 1);
	assert_int_equal(nfds, 1);
	if (!child_alive)
		assert_int_equal(wait_exit(pid, 2000), 0);

	m = mfd_new(RAW_BYTES, SEALS_OK, true);
	a = attach_msg(m.addr, RAW_BYTES);
	expect_refused(child_alive ? "uffd of a live child" : "uffd of an exited child", &a, m.fd,
		       fds[0], "UFFDIO_REGISTER");
	if (child_alive) {
		assert_int_equal(write(sp[0], "x", 1), 1);
		assert_int_equal(waitpid(pid, &st, 0), pid);
		assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	}
	close(fds[0]);
	close(sp[0]);
	mfd_free(&m);
}

static void test_attach_foreign_uffd(void **state)
{
	(void)state;
	foreign_uffd_case(true);
	foreign_uffd_case(false);
	finish();
}

/*
 * A forged /proc/PID/maps record. tierd reads maps with fgets() into a 512-byte line: a path
 * longer than that is returned in pieces, and a piece that starts with a well-formed record is
 * indistinguishable from a real line. The client maps a file whose path carries, at exactly the
 * piece boundary, a record claiming its memfd is mapped shared at `base`, where in truth another
 * shmem memfd is mapped (so the UFFDIO_REGISTER probe succeeds). tierd must refuse.
 */
static void test_attach_forged_maps_line(void **state)
{
	const size_t gap = 64u << 10, maps_prefix = 73, fgets_piece = 511;
	struct mfd m = mfd_new(RAW_BYTES, SEALS_OK, true), decoy = mfd_new(RAW_BYTES, SEALS_OK, false);
	char rec[160], path[2048], line[512], d1[512], d2[1024], filler[256];
	size_t dl = strlen(harness_dir()), fill;
	struct tierd_msg_attach a;
	bool forged_seen = false;
	uint8_t *r, *base;
	struct stat st;
	FILE *f;
	int fd;

	(void)state;
	r = mmap(NULL, gap + RAW_BYTES, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(r != MAP_FAILED);
	base = r + gap;
	assert_int_equal(fstat(m.fd, &st), 0);
	snprintf(rec, sizeof(rec), "%llx-%llx rw-s 00000000 %02x:%02x %llu ",
		 (unsigned long long)(uintptr_t)base, (unsigned long long)(uintptr_t)(base + RAW_BYTES),
		 major(st.st_dev), minor(st.st_dev), (unsigned long long)st.st_ino);

	/* harness_dir()/aaa…(200)/bbb…(200)/<filler><record>x: the record starts at line offset
	 * 511 when the line's path column is at 73 (12-digit addresses, the kernel pads to it). */
	fill = fgets_piece - maps_prefix - (dl + 1 + 200 + 1 + 200 + 1);
	if (fill >= sizeof(filler) || fill + strlen(rec) + 1 > 255)
		skip();
	snprintf(d1, sizeof(d1), "%s/%0200d", harness_dir(), 0);
	memset(d1 + dl + 1, 'a', 200);
	snprintf(d2, sizeof(d2), "%s/%0200d", d1, 0);
	memset(d2 + strlen(d1) + 1, 'b', 200);
	memset(filler, 'c', fill);
	filler[fill] = '\0';
	snprintf(path, sizeof(path), "%s/%s%sx", d2, filler, rec);
	assert_int_equal(mkdir(d1, 0755), 0);
	assert_int_equal(mkdir(d2, 0755), 0);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, 4096), 0);
	assert_true(mmap(r, 4096, PROT_READ, MAP_PRIVATE | MAP_FIXED, fd, 0) == r);
	assert_true(mmap(base, RAW_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, decoy.fd, 0) ==
		    base);

	/* Read our maps the way tierd does: the forged piece must come out on its own. */
	f = fopen("/proc/self/maps", "re");
	assert_non_null(f);
	while (fgets(line, sizeof(line), f))
		forged_seen |= strncmp(line, rec, strlen(rec)) == 0;
	fclose(f);
	if (!forged_seen) {
		print_message("  the forged record did not land on a 512-byte boundary; skipping\n");
		skip();
	}
	a = attach_msg(base, RAW_BYTES);
	expect_refused("forged maps line", &a, m.fd, g.uffd, "does not map the memfd");

	munmap(r, gap + RAW_BYTES);
	close(fd);
	unlink(path);
	rmdir(d2);
	rmdir(d1);
	mfd_free(&m);
	mfd_free(&decoy);
	finish();
}

/* ---- clients that vanish, flood, or stop reading ------------------------------------------------ */

/*
 * Children that HELLO, ATTACH and exit at once: some before tierd reads the ATTACH (their maps
 * are gone when it looks), some right after ATTACHED (tierd must release the attachment), some
 * without waiting for anything.
 */
static void test_attach_then_exit(void **state)
{
	(void)state;
	for (int i = 0; i < 24; i++) {
		pid_t pid = _Fork();

		assert_true(pid >= 0);
		if (pid == 0) {
			struct tierd_msg_attach a;
			struct tierd_msg_hello h = { .pid = (uint32_t)getpid() };
			uint64_t feat = 0;
			int mfd, u, sock;
			void *addr;

			mfd = memfd_create("vanish", MFD_CLOEXEC | MFD_ALLOW_SEALING);
			if (mfd < 0 || ftruncate(mfd, RAW_BYTES) < 0 ||
			    fcntl(mfd, F_ADD_SEALS, SEALS_OK) < 0)
				_exit(2);
			addr = mmap(NULL, RAW_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
			u = make_uffd(&feat);
			sock = raw_connect_to(g.sock);
			if (addr == MAP_FAILED || u < 0 || sock < 0)
				_exit(3);
			a = (struct tierd_msg_attach){ .kind = TIERD_SEG_SHMEM, .page_size = g.page_size,
						       .base = (uint64_t)(uintptr_t)addr,
						       .length = RAW_BYTES, .uffd_features = feat };
			proto_init(&a.hdr, TIERD_MSG_ATTACH, sizeof(a), 2);
			proto_init(&h.hdr, TIERD_MSG_HELLO, sizeof(h), 1);
			if (proto_send(sock, &h, sizeof(h), NULL, 0) < 0)
				_exit(4);
			if (i % 3 != 0 && recv_msg(sock, REPLY_MS) <= 0)
				_exit(5);
			if (proto_send(sock, &a, sizeof(a), (int[]){ mfd, u }, 2) < 0)
				_exit(6);
			if (i % 3 == 2 && recv_msg(sock, REPLY_MS) <= 0)
				_exit(7);
			_exit(0);
		}
		assert_int_equal(wait_exit(pid, 3000), 0);
	}
	counted(24, 24); /* each refused, or released at its exit */
	finish();
}

static void test_thousand_connects(void **state)
{
	enum { N = 1000 };
	int *socks = calloc(N, sizeof(*socks)), open_fds, r;
	char js[16384];

	(void)state;
	assert_non_null(socks);
	for (int i = 0; i < N; i++) {
		socks[i] = raw_connect();
		/* A quarter say HELLO, a quarter also ask for /dev/userfaultfd; nobody reads. */
		if (i % 4 == 1)
			assert_int_equal(send_hello(socks[i], 0), 0);
		else if (i % 4 == 2)
			assert_int_equal(send_hello(socks[i], TIERD_HELLO_WANT_UFFD_DEV), 0);
	}
	open_fds = wait_fds(g.tierd, g.fd_base + N, 3000);
	r = status_fetch(g.sock, js, sizeof(js));
	for (int i = 0; i < N; i++)
		close(socks[i]);
	free(socks);
	assert_int_equal(open_fds, g.fd_base + N);
	assert_true(r > 0);
	/* The 1000, the good client and the status query itself. */
	assert_int_equal(json_int(js, NULL, "clients"), N + 2);
	assert_int_equal(wait_fds(g.tierd, g.fd_base, 2000), g.fd_base);
	kind("connect flood (served, not refused)");
	counted(N, 0);
	finish();
}

/* A client that sends PINGs and never reads the PONGs: tierd drops it once its socket buffer
 * is full instead of blocking on it. */
static void test_never_reads(void **state)
{
	long long dropped0 = status_stat(g.sock, "clients_dropped");
	uint64_t deadline = mono_usec() + 5000000u;
	struct tierd_msg_ping p = { .token = 9 };
	unsigned sent = 0;
	int sock = raw_connect(), r = 0, err;

	(void)state;
	assert_int_equal(hello(sock), 0);
	assert_int_equal(fcntl(sock, F_SETFL, O_NONBLOCK), 0);
	proto_init(&p.hdr, TIERD_MSG_PING, sizeof(p), 5);
	while (mono_usec() < deadline) {
		r = proto_send(sock, &p, sizeof(p), NULL, 0);
		if (r == 0)
			sent++;
		else if (r == -EAGAIN)
			msleep(1);
		else
			break;
	}
	print_message("  tierd dropped the client after %u unread PONGs (send: %s)\n", sent,
		      strerror(-r));
	assert_true(r == -EPIPE || r == -ECONNRESET);
	assert_int_equal(fcntl(sock, F_SETFL, 0), 0);
	assert_int_equal(expect_drop(sock, &err), 0);
	close(sock);
	assert_int_equal(status_stat(g.sock, "clients_dropped"), dropped0 + 1);
	counted(1, 1);
	finish();
}

/* An attached client that stops reading: the ZAPs and PONGs tierd owes it pile up until tierd
 * drops it and releases the attachment (memfd and uffd closed) while the client still holds its
 * end open. ZAPs come once an epoch; the PING flood gets there in milliseconds. */
static void test_attached_never_reads(void **state)
{
	long long dropped0 = status_stat(g.sock, "clients_dropped");
	struct mfd m = mfd_new(RAW_BYTES, SEALS_OK, true);
	struct tierd_msg_attach a = attach_msg(m.addr, RAW_BYTES);
	struct tierd_msg_ping p = { .token = 10 };
	struct tierd_msg_attached rep;
	uint64_t deadline;
	int sock = raw_connect(), r = 0, err;

	(void)state;
	assert_int_equal(hello(sock), 0);
	assert_int_equal(do_attach(sock, &a, m.fd, g.uffd, &rep), 0);
	assert_int_equal(rep.status, 0);
	assert_fds(g.fd_base + 3);
	assert_int_equal(fcntl(sock, F_SETFL, O_NONBLOCK), 0);
	proto_init(&p.hdr, TIERD_MSG_PING, sizeof(p), 5);
	for (deadline = mono_usec() + 5000000u; mono_usec() < deadline;) {
		r = proto_send(sock, &p, sizeof(p), NULL, 0);
		if (r == -EAGAIN)
			msleep(1);
		else if (r < 0)
			break;
	}
	assert_true(r == -EPIPE || r == -ECONNRESET);
	/* Everything the client handed over is closed although it has not closed its end yet. */
	assert_fds(g.fd_base);
	assert_int_equal(status_stat(g.sock, "clients_dropped"), dropped0 + 1);
	assert_int_equal(fcntl(sock, F_SETFL, 0), 0);
	assert_int_equal(expect_drop(sock, &err), 0);
	close(sock);
	mfd_free(&m);
	counted(1, 1);
	finish();
}

/* A connection naming other clients' ids: DETACH, ZAP_DONE and HEAT_QUERY must neither detach
 * nor disturb the good segment, and bogus ids get clean answers. */
static void test_foreign_ids(void **state)
{
	struct tierd_msg_heat_query q = { 0 };
	struct tierd_msg_heat_reply *hr = (struct tierd_msg_heat_reply *)rbuf;
	struct tier_info ti;
	int sock = raw_connect();

	(void)state;
	tier_segment_info(g.seg, &ti);
	assert_int_equal(hello(sock), 0);
	for (int i = 0; i < 1000; i++) {
		struct tierd_msg_detach d = { .attach_id = i & 1 ? ti.attach_id : (uint32_t)i };
		struct tierd_msg_zap_done z = { .attach_id = ti.attach_id, .status = -EIO };

		proto_init(&d.hdr, TIERD_MSG_DETACH, sizeof(d), 10);
		proto_init(&z.hdr, TIERD_MSG_ZAP_DONE, sizeof(z), 11);
		assert_int_equal(proto_send(sock, &d, sizeof(d), NULL, 0), 0);
		assert_int_equal(proto_send(sock, &z, sizeof(z), NULL, 0), 0);
	}
	proto_init(&q.hdr, TIERD_MSG_HEAT_QUERY, sizeof(q), 12);
	q.segment_id = 0xdeadbeef;
	assert_int_equal(proto_send(sock, &q, sizeof(q), NULL, 0), 0);
	assert_true(recv_msg(sock, REPLY_MS) > 0);
	assert_int_equal(msg_type(), TIERD_MSG_HEAT_REPLY);
	assert_int_equal(hr->status, -ENOENT);
	q.segment_id = ti.segment_id;
	q.first_page = UINT64_MAX;
	assert_int_equal(proto_send(sock, &q, sizeof(q), NULL, 0), 0);
	assert_true(recv_msg(sock, REPLY_MS) > 0);
	assert_int_equal(hr->status, 0);
	assert_int_equal(hr->npages, 0);
	q.first_page = g.npages - 1;
	assert_int_equal(proto_send(sock, &q, sizeof(q), NULL, 0), 0);
	assert_true(recv_msg(sock, REPLY_MS) > 0);
	assert_int_equal(hr->npages, 1);
	assert_int_equal(hr->total_pages, g.npages);
	assert_int_equal(ping(sock), 0);
	close(sock);
	counted(2001, 2001); /* 1000 DETACHes, 1000 ZAP_DONEs, a HEAT_QUERY for no segment */
	finish();
}

/* The per-client attachment limit, on a tierd of its own that arms no windows: this connection
 * reads no ZAPs, and its 64 attachments would be sent a ZAP each per epoch. */
static void test_attach_limit(void **state)
{
	char sock3[160];
	struct mfd m = mfd_new(RAW_BYTES, SEALS_OK, true);
	struct tierd_msg_attach a = attach_msg(m.addr, RAW_BYTES);
	struct tierd_msg_attached rep;
	int base3, sock, st;
	pid_t d3;

	(void)state;
	snprintf(sock3, sizeof(sock3), "%s/limit.sock", harness_dir());
	d3 = daemon_start(sock3, "--max-windows", "0", NULL);
	assert_true(d3 > 0);
	base3 = settled_fds(d3);
	sock = raw_connect_to(sock3);
	assert_true(sock >= 0);
	assert_int_equal(hello(sock), 0);
	for (int i = 0; i < 64; i++) {
		assert_int_equal(do_attach(sock, &a, m.fd, g.uffd, &rep), 0);
		assert_int_equal(rep.status, 0);
	}
	assert_int_equal(do_attach(sock, &a, m.fd, g.uffd, &rep), 0);
	print_message("  65th attach -> %d \"%s\"\n", rep.status, rep.reason);
	assert_int_equal(rep.status, -EMFILE);
	assert_non_null(strstr(rep.reason, "too many attachments"));
	counted(1, 1);
	/* The connection, one memfd for the segment, one uffd per attachment. */
	assert_int_equal(wait_fds(d3, base3 + 1 + 1 + 64, SETTLE_MS), base3 + 66);
	close(sock);
	assert_int_equal(wait_fds(d3, base3, SETTLE_MS), base3);
	st = daemon_stop(d3);
	assert_int_equal(st, 0);
	mfd_free(&m);
	finish();
}

/* ---- SO_PEERCRED against --allow-uid ------------------------------------------------------------ */

/* Runs fn(arg) in a child (after _Fork) as uid:gid `uid`; returns its exit status as
 * wait_exit() does (10: the uid could not be taken). Raw syscalls: glibc's setresuid would try to
 * sync threads the child does not have. */
static int run_as_uid(uid_t uid, int (*fn)(const void *), const void *arg)
{
	pid_t pid = _Fork();

	if (pid < 0)
		return -errno;
	if (pid == 0) {
		if (syscall(SYS_setgroups, 0, NULL) < 0 || syscall(SYS_setresgid, uid, uid, uid) < 0 ||
		    syscall(SYS_setresuid, uid, uid, uid) < 0)
			_exit(10);
		_exit(fn(arg));
	}
	return wait_exit(pid, 5000);
}

struct as_uid_arg {
	const char *sock;
	bool expect_welcome;
};

static int as_uid_child(const void *arg)
{
	const struct as_uid_arg *x = arg;
	int sock = raw_connect_to(x->sock);
	ssize_t n;

	if (sock < 0)
		return 11;
	if (x->expect_welcome)
		return hello(sock) == 0 ? 0 : 12;
	n = recv_msg(sock, REPLY_MS);
	if (n == 0 || n == -ECONNRESET)
		return 1;
	if (n <= 0 || msg_type() != TIERD_MSG_ERROR ||
	    ((struct tierd_msg_error *)rbuf)->status != -EACCES)
		return 13;
	n = recv_msg(sock, REPLY_MS);
	return n == 0 || n == -ECONNRESET ? 0 : 14;
}

/*
 * A client connecting as `uid`. Refused as expected: exits 0 after ERROR -EACCES and the close,
 * 1 after a bare close. With expect_welcome: exits 0 when HELLO got a WELCOME.
 */
static int as_uid(const char *sock_path, uid_t uid, bool expect_welcome)
{
	const struct as_uid_arg x = { .sock = sock_path, .expect_welcome = expect_welcome };

	return run_as_uid(uid, as_uid_child, &x);
}

static void test_allow_uid(void **state)
{
	char sock2[160];
	int sock, base2;
	pid_t d2;

	(void)state;
	snprintf(sock2, sizeof(sock2), "%s/allow.sock", harness_dir());
	d2 = daemon_start(sock2, "--allow-uid", "4242", NULL);
	assert_true(d2 > 0);
	assert_int_equal(chmod(sock2, 0777), 0);
	base2 = settled_fds(d2);
	for (int i = 0; i < 2; i++) {
		uid_t uid = i ? 4243 : 65534;
		int st = as_uid(sock2, uid, false);

		print_message("  uid %u: %s\n", (unsigned)uid,
			      st == 0 ? "ERROR -EACCES, then closed" : st == 1 ? "closed" : "not refused");
		assert_true(st == 0 || st == 1);
	}
	assert_int_equal(as_uid(sock2, 4242, true), 0);
	/* root is always let in */
	sock = raw_connect_to(sock2);
	assert_true(sock >= 0);
	assert_int_equal(hello(sock), 0);
	close(sock);
	assert_int_equal(status_stat(sock2, "clients_refused"), 2);
	counted(2, 2);
	assert_int_equal(wait_fds(d2, base2, SETTLE_MS), base2);
	assert_int_equal(daemon_stop(d2), 0);
	finish();
}

/* ---- sizes and seals read in the wrong order ------------------------------------------------------ */

/* Shrunk, then sealed, then attached at its old length: refused for its size. And a memfd sealed
 * F_SEAL_SHRINK only, grown after a first attach and attached again at the new length: refused
 * (the segment's page table has the old length; an attachment past it would index beyond it). */
static void test_attach_resized_memfd(void **state)
{
	struct mfd m = mfd_new(2 * RAW_BYTES, 0, true), g2 = mfd_new(RAW_BYTES, F_SEAL_SHRINK, false);
	struct tierd_msg_attach a = attach_msg(m.addr, 2 * RAW_BYTES);
	struct tierd_msg_attached rep;
	uint8_t *map2;
	int sock;

	(void)state;
	kind("shrunk memfd");
	assert_int_equal(ftruncate(m.fd, RAW_BYTES), 0);
	assert_int_equal(fcntl(m.fd, F_ADD_SEALS, SEALS_OK), 0);
	expect_refused("shrunk, sealed, old length", &a, m.fd, g.uffd, "does not match the memfd's size");

	kind("grown memfd");
	map2 = mmap(NULL, 2 * RAW_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED, g2.fd, 0);
	assert_true(map2 != MAP_FAILED);
	sock = raw_connect();
	assert_int_equal(hello(sock), 0);
	a = attach_msg(map2, RAW_BYTES);
	assert_int_equal(do_attach(sock, &a, g2.fd, g.uffd, &rep), 0);
	assert_int_equal(rep.status, 0);
	assert_int_equal(ftruncate(g2.fd, 2 * RAW_BYTES), 0);
	a = attach_msg(map2, 2 * RAW_BYTES);
	assert_int_equal(do_attach(sock, &a, g2.fd, g.uffd, &rep), 0);
	print_message("  %-30s -> %d \"%s\"\n", "grown since its first attach", rep.status, rep.reason);
	if (rep.status >= 0 || !strstr(rep.reason, "grown")) {
		close(sock);
		fail_msg("grown memfd: status %d \"%s\"", rep.status, rep.reason);
	}
	counted(1, 1);
	assert_int_equal(ping(sock), 0);
	assert_fds(g.fd_base + 3); /* the connection, the segment's memfd, the first attach's uffd */
	close(sock);
	munmap(map2, 2 * RAW_BYTES);
	mfd_free(&g2);
	mfd_free(&m);
	finish();
}

/*
 * The shrink race: the client hands over an unsealed memfd of 2 MiB, and while tierd checks it,
 * shrinks it to 1 MiB and seals it. tierd must never accept the old size with the new seals.
 * A racing thread would hit the microsecond between tierd's two reads almost never; instead a
 * tierd of its own runs with fi-preload's TIERD_FI_SEALS_DELAY_MS, so its F_GET_SEALS sleeps and
 * the test shrinks and seals inside that sleep. What this proves: whatever tierd read before the
 * seals, the size it accepts is read after them (read size-then-seals, it accepted 2 MiB). What it
 * cannot: a read of the size somewhere other than around F_GET_SEALS (the code was read for that:
 * memfd_inspect is the only place), or a shrink after the seal (the kernel forbids it).
 */
static void test_attach_shrink_race(void **state)
{
	const char *const vars[] = { "TIERD_FI_SEALS_DELAY_MS", "1000", NULL };
	struct mfd m = mfd_new(2 * RAW_BYTES, 0, true);
	struct tierd_msg_attach a = attach_msg(m.addr, 2 * RAW_BYTES);
	char sock4[160];
	ssize_t n;
	int base4, sock;
	pid_t d4;

	(void)state;
	kind("shrink+seal during ATTACH");
	snprintf(sock4, sizeof(sock4), "%s/race.sock", harness_dir());
	harness_fi_env_begin(vars);
	d4 = daemon_start(sock4, "--max-windows", "0", NULL);
	harness_fi_env_end(vars);
	assert_true(d4 > 0);
	base4 = settled_fds(d4);
	sock = raw_connect_to(sock4);
	assert_true(sock >= 0);
	assert_int_equal(hello(sock), 0);
	assert_int_equal(proto_send(sock, &a, sizeof(a), (int[]){ m.fd, g.uffd }, 2), 0);
	msleep(300); /* tierd has read the size and sleeps in F_GET_SEALS */
	assert_int_equal(ftruncate(m.fd, RAW_BYTES), 0);
	assert_int_equal(fcntl(m.fd, F_ADD_SEALS, SEALS_OK), 0);
	n = recv_msg(sock, 3000);
	assert_true(n >= (ssize_t)sizeof(struct tierd_msg_attached));
	assert_int_equal(msg_type(), TIERD_MSG_ATTACHED);
	print_message("  %-30s -> %d \"%s\"\n", "shrunk and sealed mid-check",
		      ((struct tierd_msg_attached *)rbuf)->status, ((struct tierd_msg_attached *)rbuf)->reason);
	assert_true(((struct tierd_msg_attached *)rbuf)->status < 0);
	assert_non_null(strstr(((struct tierd_msg_attached *)rbuf)->reason,
			       "does not match the memfd's size"));
	counted(1, 1);
	close(sock);
	assert_int_equal(wait_fds(d4, base4, SETTLE_MS), base4);
	assert_int_equal(daemon_stop(d4), 0);
	mfd_free(&m);
	finish();
}

/* ---- another uid, replayed ids, a uffd with more on it ------------------------------------------ */

struct ctl_req {
	uint32_t op;
	const char *arg; /* one argument, or NULL */
};

/* CONTROL → CONTROL_REPLY: its status, or a positive code when no reply came. */
static int control(int sock, const struct ctl_req *q)
{
	uint8_t pkt[128] = { 0 };
	struct tierd_msg_control *c = (struct tierd_msg_control *)pkt;
	size_t len = sizeof(*c);

	if (q->arg) {
		memcpy(pkt + len, q->arg, strlen(q->arg) + 1);
		len += strlen(q->arg) + 1;
		c->nargs = 1;
	}
	c->op = q->op;
	proto_init(&c->hdr, TIERD_MSG_CONTROL, (uint32_t)len, 40);
	if (proto_send(sock, pkt, len, NULL, 0) < 0 || recv_msg(sock, REPLY_MS) <= 0 ||
	    msg_type() != TIERD_MSG_CONTROL_REPLY)
		return 1000;
	return ((struct tierd_msg_control_reply *)rbuf)->status;
}

/* As uid 65534: every per-segment read or control message on the good segment, and every
 * operation that would change what tierd does to it. Exit status: 0, or the step that failed. */
static int other_uid_child(const void *arg)
{
	const struct tier_info *ti = arg;
	const struct ctl_req denied[] = { { TIERD_CTL_RELEASE_ALL, NULL },
					  { TIERD_CTL_MODE, "observe" },
					  { TIERD_CTL_POLICY_SET, "none" } };
	struct tierd_msg_heat_query q = { .segment_id = ti->segment_id };
	struct tierd_msg_detach d = { .attach_id = ti->attach_id };
	struct tierd_msg_zap_done z = { .attach_id = ti->attach_id };
	int sock = raw_connect_to(g.sock);

	if (sock < 0 || hello(sock) < 0)
		return 20;
	proto_init(&q.hdr, TIERD_MSG_HEAT_QUERY, sizeof(q), 30);
	if (proto_send(sock, &q, sizeof(q), NULL, 0) < 0 || recv_msg(sock, REPLY_MS) <= 0 ||
	    msg_type() != TIERD_MSG_HEAT_REPLY)
		return 21;
	if (((struct tierd_msg_heat_reply *)rbuf)->status != -EACCES ||
	    ((struct tierd_msg_heat_reply *)rbuf)->npages != 0)
		return 22;
	/* Another client's ids: no reply, no effect (the parent checks the good client). */
	proto_init(&d.hdr, TIERD_MSG_DETACH, sizeof(d), 31);
	proto_init(&z.hdr, TIERD_MSG_ZAP_DONE, sizeof(z), 32);
	if (proto_send(sock, &d, sizeof(d), NULL, 0) < 0 || proto_send(sock, &z, sizeof(z), NULL, 0) < 0)
		return 23;
	for (size_t i = 0; i < sizeof(denied) / sizeof(denied[0]); i++)
		if (control(sock, &denied[i]) != -EPERM)
			return 24 + (int)i;
	/* The status document lists this uid's clients and segments only: not root's. */
	{
		struct tierd_msg_hdr sq;
		char seg[64];
		const char *js = (const char *)rbuf + sizeof(struct tierd_msg_hdr);

		proto_init(&sq, TIERD_MSG_STATUS_QUERY, sizeof(sq), 33);
		if (proto_send(sock, &sq, sizeof(sq), NULL, 0) < 0 || recv_msg(sock, REPLY_MS) <= 0 ||
		    msg_type() != TIERD_MSG_STATUS_REPLY)
			return 30;
		snprintf(seg, sizeof(seg), "{\"id\":%u,\"kind\"", ti->segment_id);
		if (!strstr(js, "\"scope\":\"own\"") || strstr(js, seg) ||
		    strstr(js, "\"uid\":0,\"attachments\""))
			return 31;
	}
	return ping(sock) == 0 ? 0 : 29;
}

static void test_other_uid_reads(void **state)
{
	long long stale0 = status_stat(g.sock, "zap_acks_stale");
	struct tier_info ti;
	struct stat st;
	int r;

	(void)state;
	kind("other uid: heat, detach, zap_done, control");
	tier_segment_info(g.seg, &ti);
	assert_int_equal(stat(g.sock, &st), 0);
	assert_int_equal(chmod(g.sock, 0777), 0);
	r = run_as_uid(65534, other_uid_child, &ti);
	assert_int_equal(chmod(g.sock, st.st_mode & 07777), 0);
	print_message("  uid 65534 on the good segment: %s (exit %d)\n",
		      r == 0 ? "HEAT_QUERY -EACCES, DETACH/ZAP_DONE ignored, 3 CONTROLs -EPERM, status "
			       "without root's clients and segments" : "FAILED",
		      r);
	assert_int_equal(r, 0);
	counted(6, 6);
	assert_int_equal(status_stat(g.sock, "zap_acks_stale"), stale0 + 1);
	/* Root's status has them all. */
	{
		static char js[65536];
		char seg[64];

		assert_true(status_fetch(g.sock, js, sizeof(js)) > 0);
		snprintf(seg, sizeof(seg), "{\"id\":%u,\"kind\"", ti.segment_id);
		assert_non_null(strstr(js, "\"scope\":\"all\""));
		assert_non_null(strstr(js, seg));
	}
	finish();
}

/* The next ZAP for attach_id on sock within timeout_ms: its seq, or 0 when none came. */
static uint64_t recv_zap(int sock, uint32_t attach_id, unsigned timeout_ms)
{
	return recv_pkt(sock, timeout_ms, attach_id) > 0 ? ((struct tierd_msg_hdr *)rbuf)->seq : 0;
}

static int send_zap_done(int sock, uint32_t attach_id, uint64_t seq)
{
	struct tierd_msg_zap_done z = { .attach_id = attach_id };

	proto_init(&z.hdr, TIERD_MSG_ZAP_DONE, sizeof(z), seq);
	return proto_send(sock, &z, sizeof(z), NULL, 0);
}

static int send_detach(int sock, uint32_t attach_id)
{
	struct tierd_msg_detach d = { .attach_id = attach_id };

	proto_init(&d.hdr, TIERD_MSG_DETACH, sizeof(d), 50);
	return proto_send(sock, &d, sizeof(d), NULL, 0);
}

/*
 * A client replaying its own ids: DETACH of an attachment it already detached (while a new one
 * of the same memfd lives), ZAP_DONE of a batch already acknowledged, of an attachment gone, or
 * of a seq tierd never sent. Each is ignored: the live attachment stays, and the acks buy no zaps
 * past the in-flight limit (4): a client that acknowledges nothing gets 4 ZAPs and no more.
 */
static void test_replayed_ids(void **state)
{
	long long stale0 = status_stat(g.sock, "zap_acks_stale");
	struct mfd m = mfd_new(RAW_BYTES, SEALS_OK, true);
	struct tierd_msg_attach a = attach_msg(m.addr, RAW_BYTES);
	struct tierd_msg_attached rep;
	uint64_t old_zap, zaps[4];
	uint32_t a1, a2;
	int sock = raw_connect();

	(void)state;
	kind("replayed own ids");
	assert_int_equal(hello(sock), 0);
	assert_int_equal(do_attach(sock, &a, m.fd, g.uffd, &rep), 0);
	assert_int_equal(rep.status, 0);
	a1 = rep.attach_id;
	old_zap = recv_zap(sock, a1, 3000);
	assert_true(old_zap > 0);
	assert_int_equal(send_zap_done(sock, a1, old_zap), 0);
	assert_int_equal(send_zap_done(sock, a1, old_zap), 0); /* the same batch twice */
	assert_int_equal(send_detach(sock, a1), 0);
	assert_int_equal(ping(sock), 0);
	assert_fds(g.fd_base + 1);
	assert_int_equal(send_detach(sock, a1), 0);
	assert_int_equal(send_zap_done(sock, a1, old_zap), 0);
	assert_int_equal(ping(sock), 0);
	assert_fds(g.fd_base + 1);

	/* A new attachment of the same memfd: the old id's replays must not touch it. */
	assert_int_equal(do_attach(sock, &a, m.fd, g.uffd, &rep), 0);
	assert_int_equal(rep.status, 0);
	a2 = rep.attach_id;
	assert_true(a2 != a1);
	assert_int_equal(send_detach(sock, a1), 0);
	assert_int_equal(ping(sock), 0);
	assert_fds(g.fd_base + 3);
	for (int i = 0; i < 4; i++) {
		zaps[i] = recv_zap(sock, a2, 3000);
		assert_true(zaps[i] > 0);
	}
	assert_int_equal(recv_zap(sock, a2, 600), 0); /* the limit: nothing acknowledged */
	/* Acks for zaps that were not a2's, or that tierd never sent. */
	assert_int_equal(send_zap_done(sock, a2, old_zap), 0);
	assert_int_equal(send_zap_done(sock, a2, old_zap), 0);
	assert_int_equal(send_zap_done(sock, a2, zaps[3] + 1000), 0);
	assert_int_equal(send_zap_done(sock, a1, zaps[0]), 0);
	assert_int_equal(recv_zap(sock, a2, 600), 0);
	/* Control: a real ack frees one slot; replayed, it frees none. */
	assert_int_equal(send_zap_done(sock, a2, zaps[0]), 0);
	assert_true(recv_zap(sock, a2, 3000) > 0);
	assert_int_equal(send_zap_done(sock, a2, zaps[0]), 0);
	assert_int_equal(recv_zap(sock, a2, 600), 0);
	assert_int_equal(ping(sock), 0);
	/* 1 (same batch twice) + 1 (gone) + 4 + 1 (replayed real ack) */
	assert_int_equal(status_stat(g.sock, "zap_acks_stale"), stale0 + 7);
	assert_metric_is_stat(g.sock, "tierd_zap_acks_stale_total", "zap_acks_stale");
	counted(9, 9); /* 7 ZAP_DONEs, 2 DETACHes */
	assert_fds(g.fd_base + 3);
	close(sock);
	mfd_free(&m);
	finish();
}

struct reader {
	const volatile uint8_t *p;
	size_t len, step;
	atomic_bool done;
	uint64_t sum;
};

static void *read_pages(void *arg)
{
	struct reader *r = arg;

	for (size_t o = 0; o < r->len; o += r->step)
		r->sum += r->p[o];
	atomic_store(&r->done, true);
	return NULL;
}

/*
 * The uffd an ATTACH hands over also has another shmem range of the client registered (MINOR),
 * by the client. tierd's attach-time probe cannot see that (no uffd call lists registrations), so
 * the attach is accepted; the faults of that other range then reach tierd, outside the segment.
 * tierd must resolve them: a thread reading the other range (zapped, so every page minor-faults)
 * must complete, and tierd serve on.
 */
static void test_uffd_other_range(void **state)
{
	long long out0 = status_stat(g.sock, "faults_outside");
	struct mfd m = mfd_new(RAW_BYTES, SEALS_OK, true), x = mfd_new(RAW_BYTES, SEALS_OK, true);
	struct tierd_msg_attach a = attach_msg(m.addr, RAW_BYTES);
	struct tierd_msg_attached rep;
	struct reader rd = { .p = NULL };
	uint64_t deadline;
	pthread_t t;
	int u = make_uffd(NULL), sock = raw_connect();

	(void)state;
	kind("uffd registered on another range (accepted, faults resolved)");
	assert_true(u >= 0);
	memset(x.addr, 7, RAW_BYTES); /* in the page cache: a touch after a zap is a minor fault */
	assert_int_equal(uffd_register(u, (uint64_t)(uintptr_t)x.addr, RAW_BYTES,
				       UFFDIO_REGISTER_MODE_MINOR), 0);
	assert_int_equal(hello(sock), 0);
	assert_int_equal(do_attach(sock, &a, m.fd, u, &rep), 0);
	print_message("  %-30s -> %d \"%s\"\n", "uffd with another range", rep.status, rep.reason);
	assert_int_equal(rep.status, 0);
	assert_int_equal(madvise(x.addr, RAW_BYTES, MADV_DONTNEED), 0);
	rd = (struct reader){ .p = x.addr, .len = RAW_BYTES, .step = g.page_size };
	assert_int_equal(pthread_create(&t, NULL, read_pages, &rd), 0);
	for (deadline = mono_usec() + 5000000u; !atomic_load(&rd.done) && mono_usec() < deadline;)
		msleep(5);
	if (!atomic_load(&rd.done)) {
		/* Release the thread (tierd's copy goes with the connection, then ours) to report. */
		close(sock);
		msleep(SETTLE_MS);
		close(u);
		pthread_join(t, NULL);
		fail_msg("a thread faulting in the other range was not resolved within 5 s");
	}
	pthread_join(t, NULL);
	assert_int_equal(rd.sum, 7u * (RAW_BYTES / g.page_size));
	print_message("  faults outside the segment resolved: %lld\n",
		      status_stat(g.sock, "faults_outside") - out0);
	assert_true(status_stat(g.sock, "faults_outside") > out0);
	assert_metric_is_stat(g.sock, "tierd_faults_outside_total", "faults_outside");
	counted(1, 0);
	assert_int_equal(ping(sock), 0);
	close(sock);
	assert_fds(g.fd_base);
	close(u);
	mfd_free(&x);
	mfd_free(&m);
	finish();
}

/* ---- the figures ------------------------------------------------------------------------------ */

/* The good client's latency over every case (per case, then overall) and the hostile inputs by
 * kind, ready to paste; then the bounds. */
static void test_summary(void **state)
{
	unsigned last = atomic_load(&g.case_idx), worst = 0;
	uint64_t worst_p99 = 0, sent = 0, refused = 0;
	struct lat_summary all;

	(void)state;
	/* Everything from here on is not under attack. */
	atomic_store(&g.stop, true);
	pthread_join(g.toucher, NULL);
	g.toucher_running = false;
	print_message("\n  latency of the good client's page accesses, per case (us)\n");
	lat_header();
	for (unsigned c = 0; c < last; c++) {
		struct lat_summary cs = lat_sum(c, c);

		lat_print(g.case_name[c], cs);
		if (cs.slow_p99 > worst_p99) {
			worst_p99 = cs.slow_p99;
			worst = c;
		}
	}
	all = lat_sum(0, last - 1);
	lat_print("OVERALL", all);
	print_message("  worst case by p99 of the >4us accesses: %s\n", g.case_name[worst]);
	print_message("\n  hostile inputs by kind\n");
	for (unsigned i = 0; i < g.nkinds; i++) {
		if (!g.kinds[i].sent)
			continue;
		print_message("  %s: sent %u, refused %u\n", g.kinds[i].name, g.kinds[i].sent,
			      g.kinds[i].refused);
		sent += g.kinds[i].sent;
		refused += g.kinds[i].refused;
	}
	print_message("  TOTAL: sent %llu, refused %llu\n\n", (unsigned long long)sent,
		      (unsigned long long)refused);
	assert_true(all.n > 0);
	assert_true(all.slow_p99 < SLOW_P99_MAX_NS);
	assert_true(all.max < ACCESS_MAX_NS);
	g.in_case = false;
}

/* Each case gets its name as its initial state: case_setup() labels its counts with it. */
#define HCASE(f) cmocka_unit_test_prestate_setup_teardown(f, case_setup, NULL, (void *)#f)

int main(void)
{
	const struct CMUnitTest tests[] = {
		HCASE(test_garbage),
		HCASE(test_truncated_header),
		HCASE(test_empty_packet_with_fds),
		HCASE(test_wrong_version),
		HCASE(test_size_mismatch),
		HCASE(test_unknown_type),
		HCASE(test_oversized),
		HCASE(test_attach_before_hello),
		HCASE(test_second_hello),
		HCASE(test_attach_fd_counts),
		HCASE(test_fds_on_hello),
		HCASE(test_good_raw_attach),
		HCASE(test_attach_wrong_fd_types),
		HCASE(test_attach_unsealed_memfd),
		HCASE(test_attach_lying_fields),
		HCASE(test_attach_wrong_base),
		HCASE(test_attach_write_sealed),
		HCASE(test_attach_foreign_uffd),
		HCASE(test_attach_forged_maps_line),
		HCASE(test_attach_then_exit),
		HCASE(test_thousand_connects),
		HCASE(test_never_reads),
		HCASE(test_attached_never_reads),
		HCASE(test_foreign_ids),
		HCASE(test_attach_limit),
		HCASE(test_allow_uid),
		HCASE(test_attach_resized_memfd),
		HCASE(test_attach_shrink_race),
		HCASE(test_other_uid_reads),
		HCASE(test_replayed_ids),
		HCASE(test_uffd_other_range),
		HCASE(test_summary),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
