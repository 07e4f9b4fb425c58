/* SPDX-License-Identifier: MIT */
/*
 * Clients that misbehave against a real tierd, each case with its own tierd:
 *   - pid reuse: a process connects, hands its socket to a child and exits; its pid is reused
 *     (forced through /proc/sys/kernel/ns_last_pid) by a process that maps the same memfd at the
 *     same address; the child's ATTACH must be refused (the maps tierd reads are a stranger's);
 *   - idle connections that never send HELLO hold every client slot: they are closed after
 *     clients.hello_timeout_ms, and a libtier client locked out meanwhile gets in;
 *   - a client that closes its socket and its uffd copy while its threads are blocked in faults
 *     on pages it zapped, and keeps touching them: every access completes, data intact;
 *   - a client that reads ZAPs, zaps, and never answers with ZAP_DONE while tierd migrates (the
 *     fixture's second node, as in test_chaos): its batches time out, its held faults are let go,
 *     tierd stops zapping it after max_zaps_in_flight, and a libtier client is served throughout.
 * Each also checks that tierd's fds come back to where they were.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"
#include "rawclient.h"
#include "proto.h"
#include "tierd/tier.h"
#include "uffd.h"

#define RAW_BYTES (4u << 20)  /* memfds the test attaches by hand */
#define GOOD_BYTES (4u << 20) /* the well-behaved libtier segment */
#define REPLY_MS 2000u
#define SETTLE_MS 3000u
#define SEALS_OK (F_SEAL_SHRINK | F_SEAL_GROW)

static char sock_path[128], conf_path[256], sysfs_root[256];
static size_t page_size;
static uint8_t rbuf[TIERD_MSG_MAX_BYTES];

/* ---- raw protocol (no cmocka asserts: forked children use them) ---------------------------- */

static int raw_connect(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -errno;
	if (strlen(sock_path) >= sizeof(sa.sun_path)) {
		close(fd);
		return -ENAMETOOLONG;
	}
	memcpy(sa.sun_path, sock_path, strlen(sock_path));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int r = -errno;

		close(fd);
		return r;
	}
	return fd;
}

static uint16_t msg_type(void)
{
	return ((const struct tierd_msg_hdr *)rbuf)->type;
}

/* The next packet into rbuf (raw_recv: zaps_of 0 skips ZAPs, RAW_ZAPS_ALL keeps them). */
static ssize_t recv_pkt(int sock, unsigned timeout_ms, uint32_t zaps_of)
{
	return raw_recv(sock, rbuf, sizeof(rbuf), timeout_ms, zaps_of);
}

static int hello(int sock)
{
	return raw_hello(sock, 0, rbuf, sizeof(rbuf), REPLY_MS);
}

static int ping(int sock)
{
	return raw_ping(sock, rbuf, sizeof(rbuf), REPLY_MS);
}

/* A uffd of the calling process able to track shmem: the fd or a negative errno. */
static int make_uffd(uint64_t *features)
{
	struct uffd_ops ops = uffd_ops_real(NULL);
	struct uffd_handshake hs;
	int u = uffd_negotiate(&ops, uffd_required_for_kind(TIERD_SEG_SHMEM), 0, &hs);

	*features = hs.enabled;
	return u;
}

/* ATTACH of memfd mapped at base → ATTACHED into *rep: 0, or a negative errno. */
static int attach(int sock, int memfd, const void *base, size_t len, int uffd, uint64_t features,
		  struct tierd_msg_attached *rep)
{
	struct tierd_msg_attach a = { .kind = TIERD_SEG_SHMEM, .page_size = page_size,
				      .base = (uint64_t)(uintptr_t)base, .length = len,
				      .uffd_features = features };
	ssize_t n;
	int r;

	proto_init(&a.hdr, TIERD_MSG_ATTACH, sizeof(a), 2);
	r = proto_send(sock, &a, sizeof(a), (int[]){ memfd, uffd }, 2);
	if (r < 0)
		return r;
	n = recv_pkt(sock, REPLY_MS, 0);
	if (n <= 0)
		return n == 0 ? -ECONNRESET : (int)n;
	if (msg_type() != TIERD_MSG_ATTACHED || (size_t)n < sizeof(*rep))
		return -EPROTO;
	memcpy(rep, rbuf, sizeof(*rep));
	rep->reason[sizeof(rep->reason) - 1] = '\0';
	return 0;
}

/* A sealed memfd of len bytes: the fd; mapped at *addr (shared) when addr. */
static int memfd_sealed(size_t len, uint8_t **addr)
{
	int fd = memfd_create("misbehave", MFD_CLOEXEC | MFD_ALLOW_SEALING);

	if (fd < 0 || ftruncate(fd, (off_t)len) < 0 || fcntl(fd, F_ADD_SEALS, SEALS_OK) < 0)
		return -1;
	if (addr) {
		*addr = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		if (*addr == MAP_FAILED)
			return -1;
	}
	return fd;
}

/* The byte page p holds at offset o (every page different, every offset too). */
static uint8_t pattern(uint64_t p, size_t o)
{
	return (uint8_t)(p * 131u + o * 7u + 1u);
}

static void fill(uint8_t *base, size_t len)
{
	for (size_t p = 0; p < len / page_size; p++)
		for (size_t o = 0; o < page_size; o += 512)
			base[p * page_size + o] = pattern(p, o);
}

/* Pages whose sampled bytes are not the pattern. */
static unsigned verify(const volatile uint8_t *base, size_t len)
{
	unsigned bad = 0;

	for (size_t p = 0; p < len / page_size; p++)
		for (size_t o = 0; o < page_size; o += 512)
			if (base[p * page_size + o] != pattern(p, o)) {
				bad++;
				break;
			}
	return bad;
}

/* ---- tierd and the well-behaved client ----------------------------------------------------- */

static void write_conf(const char *text)
{
	FILE *f = fopen(conf_path, "we");

	assert_non_null(f);
	fputs(text, f);
	assert_int_equal(fclose(f), 0);
}

static long long status_get(const char *after, const char *key)
{
	char js[16384];

	if (status_fetch(sock_path, js, sizeof(js)) <= 0)
		return -1;
	return json_int(js, after, key);
}

/* A series of tierctl metrics (-1 when tierctl fails). */
static double metric_get(const char *series)
{
	static char text[1 << 16];

	if (harness_tierctl(sock_path, false, text, sizeof(text), "metrics", NULL) != 0)
		return -1;
	return metrics_sample(text, series);
}

struct good {
	struct tier_segment *seg;
	pthread_t toucher;
	atomic_bool stop;
	atomic_ullong rounds;
	bool running;
};

static void *good_touch(void *arg)
{
	struct good *g = arg;
	volatile uint8_t *base = tier_segment_addr(g->seg);
	size_t n = tier_segment_size(g->seg) / page_size;

	while (!atomic_load(&g->stop)) {
		for (size_t p = 0; p < n; p++)
			base[p * page_size + (p % 61) * 64] += 1;
		atomic_fetch_add(&g->rounds, 1);
		msleep(1);
	}
	return NULL;
}

/* The case's good client (static: a failed case's frame is gone when case_teardown() stops it;
 * its control thread would attach to the next case's tierd). */
static struct good good_slot, *good_live;

static struct good *good_start(unsigned track_ms)
{
	struct good *g = &good_slot;
	struct tier_options o = { .kind = TIER_SHMEM, .size = GOOD_BYTES, .name = "good",
				  .socket_path = sock_path };

	memset(g, 0, sizeof(*g));
	assert_int_equal(tier_segment_create(&o, &g->seg), 0);
	good_live = g;
	if (track_ms)
		assert_int_equal(tier_segment_wait_tracked(g->seg, track_ms), 0);
	assert_int_equal(pthread_create(&g->toucher, NULL, good_touch, g), 0);
	g->running = true;
	return g;
}

static uint64_t good_faults(struct good *g)
{
	uint8_t bits[GOOD_BYTES / 4096 / 8 + 1];
	uint64_t faults = 0;

	assert_int_equal(tier_segment_heat(g->seg, bits, sizeof(bits) * 8, &faults), 0);
	return faults;
}

/* Tracked on its first attach, its toucher progressing and tierd resolving its faults. */
static void good_assert_served(struct good *g, uint64_t attaches)
{
	struct tier_info ti;
	uint64_t f0 = good_faults(g), r0 = atomic_load(&g->rounds), deadline = mono_usec() + 3000000u;

	tier_segment_info(g->seg, &ti);
	assert_int_equal(ti.state, TIER_STATE_TRACKED);
	assert_int_equal(ti.attaches, attaches);
	while ((good_faults(g) <= f0 || atomic_load(&g->rounds) <= r0) && mono_usec() < deadline)
		msleep(10);
	assert_true(good_faults(g) > f0);
	assert_true(atomic_load(&g->rounds) > r0);
}

static void good_stop(struct good *g)
{
	atomic_store(&g->stop, true);
	if (g->running)
		pthread_join(g->toucher, NULL);
	tier_segment_destroy(g->seg);
	good_live = NULL;
}

static int group_setup(void **state)
{
	(void)state;
	page_size = (size_t)sysconf(_SC_PAGESIZE);
	snprintf(sock_path, sizeof(sock_path), "%s/tierd.sock", harness_dir());
	snprintf(conf_path, sizeof(conf_path), "%s/tierd.conf", harness_dir());
	snprintf(sysfs_root, sizeof(sysfs_root), "%s/sysfs", harness_dir());
	harness_fake_two_nodes(sysfs_root);
	/* Grandchildren of cases whose child exits are reparented here, and reaped by the case. */
	return prctl(PR_SET_CHILD_SUBREAPER, 1) == 0 ? 0 : -1;
}

static int group_teardown(void **state)
{
	(void)state;
	harness_cleanup();
	return 0;
}

static int case_teardown(void **state)
{
	(void)state;
	if (good_live)
		good_stop(good_live);
	harness_stop_daemons();
	return 0;
}

/* ---- 1. pid reuse between connect and attach ------------------------------------------------ */

static bool write_ns_last_pid(pid_t pid)
{
	char v[32];
	int fd = open("/proc/sys/kernel/ns_last_pid", O_WRONLY | O_CLOEXEC);
	int n = snprintf(v, sizeof(v), "%d", (int)pid);
	bool ok;

	if (fd < 0)
		return false;
	ok = write(fd, v, (size_t)n) == n;
	close(fd);
	return ok;
}

/*
 * A process that waits on `go` and _exits: holds pid `want` when the kernel hands it out. Forks
 * until one gets it (others fork on the host too): its pid, or -1 after `tries`.
 */
static pid_t fork_with_pid(pid_t want, int go, unsigned tries)
{
	for (unsigned i = 0; i < tries; i++) {
		pid_t p;

		if (!write_ns_last_pid(want - 1))
			return -1;
		p = _Fork();
		if (p == 0) {
			char c;

			(void)read(go, &c, 1);
			_exit(0);
		}
		if (p == want)
			return p;
		if (p > 0) {
			kill(p, SIGKILL);
			waitpid(p, NULL, 0);
		}
	}
	return -1;
}

enum reuse { REUSE_NONE, REUSE_ZOMBIE, REUSE_PID };

/*
 * A child connects and says HELLO, then forks a grandchild that inherits the socket, and exits.
 * The grandchild waits for the word on `cmd`, ATTACHes (the memfd, mapped at `base` in every
 * process of the case, and a uffd of its own) and writes the reply's status and reason to `res`.
 * Returns the ATTACHED reply via *rep; *reused says whether the pid could be given to a process
 * mapping the memfd at the same address (REUSE_PID).
 */
static void reuse_case(enum reuse how, int memfd, uint8_t *base, struct tierd_msg_attached *rep,
		       bool *reused)
{
	int cmd[2], res[2], go[2];
	pid_t child, grandchild, reuser = -1;
	ssize_t n;
	char c = 'x';

	assert_int_equal(pipe2(cmd, O_CLOEXEC), 0);
	assert_int_equal(pipe2(res, O_CLOEXEC), 0);
	assert_int_equal(pipe2(go, O_CLOEXEC), 0);
	*reused = false;
	child = _Fork();
	assert_true(child >= 0);
	if (child == 0) {
		int s = raw_connect();

		if (s < 0 || hello(s) < 0)
			_exit(2);
		if (_Fork() == 0) {
			struct tierd_msg_attached r = { .status = -EPROTO };
			uint64_t feat = 0;
			int u = make_uffd(&feat);

			if (read(cmd[0], &c, 1) != 1 || u < 0)
				_exit(3);
			if (attach(s, memfd, base, RAW_BYTES, u, feat, &r) < 0)
				snprintf(r.reason, sizeof(r.reason), "no reply");
			r.segment_id = (uint32_t)getpid(); /* for the parent to reap it */
			(void)write(res[1], &r, sizeof(r));
			/* Stays connected until told: an attachment made stays visible meanwhile. */
			(void)read(cmd[0], &c, 1);
			_exit(0);
		}
		_exit(0);
	}
	if (how != REUSE_ZOMBIE)
		assert_int_equal(wait_exit(child, 3000), 0); /* reaped: its pid is free */
	else
		msleep(100); /* exited, not reaped: a zombie holds its pid */
	if (how == REUSE_PID) {
		reuser = fork_with_pid(child, go[0], 50);
		*reused = reuser == child;
	}
	assert_int_equal(write(cmd[1], &c, 1), 1);
	n = read(res[0], rep, sizeof(*rep));
	assert_int_equal(n, sizeof(*rep));
	rep->reason[sizeof(rep->reason) - 1] = '\0';
	grandchild = (pid_t)rep->segment_id;
	assert_int_equal(write(cmd[1], &c, 1), 1); /* the grandchild disconnects and exits */
	if (reuser > 0) {
		assert_int_equal(write(go[1], &c, 1), 1);
		assert_int_equal(wait_exit(reuser, 3000), 0);
	}
	if (how == REUSE_ZOMBIE)
		assert_int_equal(wait_exit(child, 3000), 0);
	/* The grandchild, reparented to this subreaper. */
	assert_int_equal(wait_exit(grandchild, 3000), 0);
	close(cmd[0]);
	close(cmd[1]);
	close(res[0]);
	close(res[1]);
	close(go[0]);
	close(go[1]);
}

/* tierd as on a kernel without SO_PEERPIDFD (< 6.5, Debian 12's 6.1): libfi makes the option
 * fail, and tierd holds a pidfd_open() of the peer from accept instead. */
static pid_t start_tierd_no_peerpidfd(void)
{
	const char *asan = getenv("ASAN_OPTIONS");
	char saved[400], opts[512];
	pid_t d;

	snprintf(saved, sizeof(saved), "%s", asan ? asan : "");
	/* An ASan tierd refuses a library loaded before its runtime unless told not to check. */
	snprintf(opts, sizeof(opts), "%s%sverify_asan_link_order=0", saved, asan ? ":" : "");
	setenv("ASAN_OPTIONS", opts, 1);
	setenv("LD_PRELOAD", harness_bin("tests/helpers/libfi.so"), 1);
	setenv("TIERD_FI_NO_PEERPIDFD", "1", 1);
	d = daemon_start(sock_path, NULL);
	unsetenv("LD_PRELOAD");
	unsetenv("TIERD_FI_NO_PEERPIDFD");
	if (asan)
		setenv("ASAN_OPTIONS", saved, 1);
	else
		unsetenv("ASAN_OPTIONS");
	return d;
}

static void pid_reuse(bool peerpidfd)
{
	struct tierd_msg_attached rep;
	struct good *good;
	uint8_t *base;
	int memfd, fd_base, tries = 0;
	bool reused = false;
	pid_t d;

	if (access("/proc/sys/kernel/ns_last_pid", W_OK) != 0)
		skip(); /* not root, or no CONFIG_CHECKPOINT_RESTORE */
	d = peerpidfd ? daemon_start(sock_path, NULL) : start_tierd_no_peerpidfd();
	assert_true(d > 0);
	good = good_start(3000);
	fd_base = harness_settled_fds(d, 10, 2000);
	memfd = memfd_sealed(RAW_BYTES, &base);
	assert_true(memfd >= 0);
	/* Which path tierd took: with SO_PEERPIDFD a connection costs it one fd, without it two
	 * (the pidfd held from accept). */
	{
		int s = raw_connect();

		assert_true(s >= 0);
		assert_int_equal(hello(s), 0);
		assert_int_equal(harness_wait_fds(d, fd_base + (peerpidfd ? 1 : 2), 1000),
				 fd_base + (peerpidfd ? 1 : 2));
		close(s);
		assert_int_equal(harness_wait_fds(d, fd_base, SETTLE_MS), fd_base);
	}

	/* The connecting process a zombie: its pid is still its own, and it has no maps. */
	reuse_case(REUSE_ZOMBIE, memfd, base, &rep, &reused);
	print_message("  zombie:          %d \"%s\"\n", rep.status, rep.reason);
	assert_true(rep.status < 0);
	/* Gone, pid not reused: refused, with the reason. */
	reuse_case(REUSE_NONE, memfd, base, &rep, &reused);
	print_message("  exited:          %d \"%s\"\n", rep.status, rep.reason);
	assert_true(rep.status < 0);
	assert_non_null(strstr(rep.reason, "has exited"));
	/* Gone, and its pid taken by a process that maps the memfd where the grandchild does:
	 * /proc/PID/maps vouches for the ATTACH, and only the pidfd tells. */
	while (!reused && tries++ < 3)
		reuse_case(REUSE_PID, memfd, base, &rep, &reused);
	if (!reused) {
		print_message("  could not get the pid reused (the host forks too much): skipped\n");
		skip();
	}
	print_message("  exited, pid reused (%d tries): %d \"%s\"\n", tries, rep.status, rep.reason);
	assert_true(rep.status < 0);
	assert_non_null(strstr(rep.reason, "has exited"));
	assert_true(status_get("\"misbehaving\"", "attach_peer_exited") >= 2);
	assert_true(metric_get("tierd_attach_peer_exited_total") ==
		    (double)status_get("\"misbehaving\"", "attach_peer_exited"));

	assert_int_equal(harness_wait_fds(d, fd_base, SETTLE_MS), fd_base);
	good_assert_served(good, 1);
	good_stop(good);
	munmap(base, RAW_BYTES);
	close(memfd);
	assert_int_equal(daemon_stop(d), 0);
}

static void test_pid_reuse(void **state)
{
	(void)state;
	pid_reuse(true);
}

static void test_pid_reuse_pidfd_open(void **state)
{
	(void)state;
	pid_reuse(false);
}

/* ---- 2. connections that never say HELLO ----------------------------------------------------- */

#define HOG_SLOTS 8u
#define HOG_TIMEOUT_MS 1000u

static void test_hello_deadline(void **state)
{
	char conf[256];
	int hogs[HOG_SLOTS], talker, fd_base, extra, err = 0;
	uint64_t t0, closed_usec[HOG_SLOTS], got_in_usec;
	struct tier_info ti;
	struct good *good;
	pid_t d;

	(void)state;
	snprintf(conf, sizeof(conf), "[clients]\nmax_clients = %u\nhello_timeout_ms = %u\n",
		 HOG_SLOTS, HOG_TIMEOUT_MS);
	write_conf(conf);
	d = daemon_start(sock_path, "--config", conf_path, NULL);
	assert_true(d > 0);
	fd_base = harness_settled_fds(d, 10, 2000);

	/* One that says HELLO and then nothing: it is a client, and keeps its slot. */
	talker = raw_connect();
	assert_true(talker >= 0);
	assert_int_equal(hello(talker), 0);
	t0 = mono_usec();
	for (unsigned i = 0; i < HOG_SLOTS - 1; i++) {
		hogs[i] = raw_connect();
		assert_true(hogs[i] >= 0);
	}
	assert_int_equal(harness_wait_fds(d, fd_base + (int)HOG_SLOTS, 1000), fd_base + (int)HOG_SLOTS);
	/* Full: one more is refused at once. */
	extra = raw_connect();
	assert_true(extra >= 0);
	assert_true(recv_pkt(extra, REPLY_MS, 0) > 0);
	assert_int_equal(msg_type(), TIERD_MSG_ERROR);
	assert_int_equal(((struct tierd_msg_error *)rbuf)->status, -EUSERS);
	close(extra);

	/* A libtier client is locked out while they hold the slots... */
	good = good_start(0);
	msleep(HOG_TIMEOUT_MS / 2);
	tier_segment_info(good->seg, &ti);
	print_message("  libtier client while %u slots are held: state %d, \"%s\"\n", HOG_SLOTS,
		      (int)ti.state, ti.last_reason);
	/* Refused (tierd's ERROR may be lost to the reset: its HELLO hit a closed socket). */
	assert_int_equal(ti.state, TIER_STATE_UNTRACKED);
	assert_true(ti.attaches == 0 && ti.detaches == 0 && ti.last_error < 0);

	/* ...until the silent ones are closed, each told why. */
	for (unsigned i = 0; i < HOG_SLOTS - 1; i++) {
		ssize_t n;

		while ((n = recv_pkt(hogs[i], 3 * HOG_TIMEOUT_MS, 0)) > 0)
			if (msg_type() == TIERD_MSG_ERROR)
				err = ((struct tierd_msg_error *)rbuf)->status;
		closed_usec[i] = mono_usec() - t0;
		assert_true(n == 0 || n == -ECONNRESET);
		assert_int_equal(err, -ETIMEDOUT);
		close(hogs[i]);
	}
	assert_int_equal(tier_segment_wait_tracked(good->seg, 5000), 0);
	got_in_usec = mono_usec() - t0;
	print_message("  idle connections closed %.0f-%.0f ms after they connected (deadline %u ms); "
		      "the libtier client attached after %.0f ms\n",
		      (double)closed_usec[0] / 1000.0, (double)closed_usec[HOG_SLOTS - 2] / 1000.0,
		      HOG_TIMEOUT_MS, (double)got_in_usec / 1000.0);
	assert_true(closed_usec[0] >= (HOG_TIMEOUT_MS - 50) * 1000u);
	assert_true(closed_usec[HOG_SLOTS - 2] <= (HOG_TIMEOUT_MS + 1000) * 1000u);
	/* The one that said HELLO is still served. */
	assert_int_equal(ping(talker), 0);
	close(talker);
	assert_int_equal(status_get("\"misbehaving\"", "hello_timeouts"), HOG_SLOTS - 1);
	assert_true(metric_get("tierd_hello_timeouts_total") == HOG_SLOTS - 1);
	{
		static char out[1 << 16];
		char want[64];

		assert_int_equal(harness_tierctl(sock_path, false, out, sizeof(out), "status", NULL), 0);
		snprintf(want, sizeof(want), "misbehaving clients: %d closed without HELLO",
			 HOG_SLOTS - 1);
		assert_non_null(strstr(out, want));
	}
	/* The extra connection and the libtier client's tries (at least one). */
	assert_true(status_get("\"stats\"", "clients_refused") >= 2);
	good_assert_served(good, 1);
	good_stop(good);
	assert_int_equal(harness_wait_fds(d, fd_base, SETTLE_MS), fd_base);
	assert_int_equal(daemon_stop(d), 0);
}

/* ---- 3. a client that hangs up and goes on faulting ----------------------------------------- */

#define HANGUP_THREADS 4

struct hangup {
	uint8_t *base;
	unsigned idx;
	atomic_ullong *first_done_usec; /* when its first access (blocked) completed */
	atomic_bool *stop;
	atomic_uint *bad;
	atomic_ullong *max_stall_usec;
};

static void *hangup_touch(void *arg)
{
	struct hangup *h = arg;
	size_t npages = RAW_BYTES / page_size;
	uint64_t p = h->idx * 97u;
	bool first = true;

	while (!atomic_load(h->stop)) {
		uint64_t t = mono_usec(), dt;
		volatile uint8_t *b = h->base + (p % npages) * page_size;

		if (b[512] != pattern(p % npages, 512))
			atomic_fetch_add(h->bad, 1);
		dt = mono_usec() - t;
		if (first) {
			atomic_store(h->first_done_usec, mono_usec());
			first = false;
		} else if (dt > atomic_load(h->max_stall_usec)) {
			atomic_store(h->max_stall_usec, dt);
		}
		p += 7;
	}
	return NULL;
}

/* The client, in a child: 0 when every access completed with the right data. Talks to the
 * parent through `ctl` (a socketpair): 'A' attached and zapped / 'g' go / 'C' closed / 'c' tierd
 * continued / "R" + results. */
static int hangup_client(int ctl)
{
	struct tierd_msg_attached rep;
	atomic_ullong first_done[HANGUP_THREADS], max_stall = 0;
	atomic_bool stop = false;
	atomic_uint bad = 0;
	struct hangup h[HANGUP_THREADS];
	pthread_t th[HANGUP_THREADS];
	uint64_t feat = 0, closed_at, cont_at = 0, res[4];
	uint8_t *base;
	int memfd = memfd_sealed(RAW_BYTES, &base), u = make_uffd(&feat), s = raw_connect();
	char c;

	if (memfd < 0 || u < 0 || s < 0 || hello(s) < 0)
		return 2;
	fill(base, RAW_BYTES);
	if (attach(s, memfd, base, RAW_BYTES, u, feat, &rep) < 0 || rep.status < 0 ||
	    rep.registration != TIERD_REG_WHOLE)
		return 3;
	/* Zapped by itself (tierd's scheme: the pages stay in the page cache): with the whole
	 * mapping registered, every touch is a minor fault that only tierd resolves. */
	if (madvise(base, RAW_BYTES, MADV_DONTNEED) < 0)
		return 4;
	if (write(ctl, "A", 1) != 1 || read(ctl, &c, 1) != 1) /* tierd is stopped now */
		return 5;
	for (int i = 0; i < HANGUP_THREADS; i++) {
		atomic_store(&first_done[i], 0);
		h[i] = (struct hangup){ base, (unsigned)i, &first_done[i], &stop, &bad, &max_stall };
		if (pthread_create(&th[i], NULL, hangup_touch, &h[i]) != 0)
			return 6;
	}
	msleep(100); /* they are blocked in faults tierd cannot answer */
	close(s);
	close(u);
	closed_at = mono_usec();
	/* tierd runs again: when it was continued (CLOCK_MONOTONIC is the same in both). */
	if (write(ctl, "C", 1) != 1 || read(ctl, &cont_at, sizeof(cont_at)) != sizeof(cont_at))
		return 7;
	msleep(300);
	atomic_store(&stop, true);
	for (int i = 0; i < HANGUP_THREADS; i++)
		pthread_join(th[i], NULL);
	/* Zapped again and read whole: plain faults now, the same data. */
	if (madvise(base, RAW_BYTES, MADV_DONTNEED) < 0)
		return 8;
	res[0] = atomic_load(&bad) + verify(base, RAW_BYTES);
	res[1] = 0; /* threads whose first access completed before tierd was continued */
	res[2] = 0; /* the latest first access after SIGCONT, us */
	for (int i = 0; i < HANGUP_THREADS; i++) {
		uint64_t f = atomic_load(&first_done[i]);

		res[1] += f == 0 || f < closed_at;
		if (f > cont_at && f - cont_at > res[2])
			res[2] = f - cont_at;
	}
	res[3] = atomic_load(&max_stall);
	if (write(ctl, res, sizeof(res)) != sizeof(res))
		return 9;
	return 0;
}

static void test_hangup_keeps_faulting(void **state)
{
	struct good *good;
	int sp[2], fd_base, rc;
	uint64_t res[4] = { 0 }, cont;
	pid_t d, child;
	char c;

	(void)state;
	d = daemon_start(sock_path, "--shmem-registration", "whole", NULL);
	assert_true(d > 0);
	good = good_start(3000);
	fd_base = harness_settled_fds(d, 10, 2000);
	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp), 0);
	child = _Fork();
	assert_true(child >= 0);
	if (child == 0) {
		close(sp[0]);
		_exit(hangup_client(sp[1]));
	}
	close(sp[1]);
	/* Bounded reads: a client whose threads tierd never releases must fail the case, not hang
	 * it. */
	assert_int_equal(setsockopt(sp[0], SOL_SOCKET, SO_RCVTIMEO,
				    &(struct timeval){ .tv_sec = 10 }, sizeof(struct timeval)), 0);
	assert_int_equal(read(sp[0], &c, 1), 1);
	assert_int_equal(c, 'A');
	/* tierd stopped: the client's faults wait while it hangs up. */
	assert_int_equal(kill(d, SIGSTOP), 0);
	assert_true(harness_wait_stopped(d));
	assert_int_equal(write(sp[0], "g", 1), 1);
	assert_int_equal(read(sp[0], &c, 1), 1);
	assert_int_equal(c, 'C');
	msleep(200);
	cont = mono_usec();
	assert_int_equal(kill(d, SIGCONT), 0);
	assert_int_equal(write(sp[0], &cont, sizeof(cont)), sizeof(cont));
	assert_int_equal(read(sp[0], res, sizeof(res)), sizeof(res));
	rc = wait_exit(child, 10000);
	close(sp[0]);
	print_message("  %d threads blocked at the hang-up; the last released %.1f ms after SIGCONT; "
		      "longest access after that %.1f ms; %llu bad pages\n", HANGUP_THREADS,
		      (double)res[2] / 1000.0, (double)res[3] / 1000.0, (unsigned long long)res[0]);
	assert_int_equal(rc, 0);
	assert_int_equal(res[0], 0);
	assert_int_equal(res[1], 0); /* each was blocked until after the hang-up */
	assert_true(res[2] < 2000000u);
	assert_true(res[3] < 2000000u);
	/* Its segment and fds are gone from tierd; the good client goes on. */
	assert_int_equal(harness_wait_fds(d, fd_base, SETTLE_MS), fd_base);
	good_assert_served(good, 1);
	good_stop(good);
	assert_true(status_wait_no_segments(sock_path, SETTLE_MS));
	assert_int_equal(daemon_stop(d), 0);
}

/* ---- 4. a client that never answers zaps ------------------------------------------------------ */

#define SILENT_RUN_MS 2500u
#define BATCH_WAIT 200u /* migration.batch_wait_ms (the default) */

/* The silent client, in a child: zaps what it is told, touches it, never says ZAP_DONE. Writes
 * {zaps, pages touched, longest touch us, bad pages} to `out`. */
static int silent_client(int out)
{
	struct tierd_msg_attached rep;
	uint64_t feat = 0, res[4] = { 0 }, end;
	uint8_t *base;
	int memfd = memfd_sealed(RAW_BYTES, &base), u = make_uffd(&feat), s = raw_connect();

	if (memfd < 0 || u < 0 || s < 0 || hello(s) < 0)
		return 2;
	fill(base, RAW_BYTES);
	if (attach(s, memfd, base, RAW_BYTES, u, feat, &rep) < 0 || rep.status < 0)
		return 3;
	end = mono_usec() + SILENT_RUN_MS * 1000u;
	while (mono_usec() < end) {
		const struct tierd_msg_zap *z = (const struct tierd_msg_zap *)rbuf;
		const struct tierd_zap_range *r = (const struct tierd_zap_range *)(z + 1);
		ssize_t n = recv_pkt(s, 50, RAW_ZAPS_ALL);

		if (n == -ETIMEDOUT)
			continue;
		if (n <= 0)
			return 4;
		if (msg_type() != TIERD_MSG_ZAP)
			continue;
		res[0]++;
		for (uint32_t i = 0; i < z->nranges; i++)
			if (madvise(base + r[i].offset, r[i].length, MADV_DONTNEED) < 0)
				return 5;
		/* Its touches fault into the batch it does not acknowledge, and wait for it. */
		for (uint32_t i = 0; i < z->nranges; i++)
			for (uint64_t o = 0; o < r[i].length; o += page_size * 16) {
				uint64_t p = (r[i].offset + o) / page_size, t = mono_usec(), dt;

				res[3] += ((volatile uint8_t *)base)[p * page_size + 512] != pattern(p, 512);
				dt = mono_usec() - t;
				res[1]++;
				if (dt > res[2])
					res[2] = dt;
			}
	}
	res[3] += verify(base, RAW_BYTES);
	if (write(out, res, sizeof(res)) != sizeof(res))
		return 6;
	close(s);
	return 0;
}

static void test_never_answers_zaps(void **state)
{
	long long batches0, batches1, timeouts1, skipped, sent;
	struct good *good;
	int p[2], fd_base, rc;
	uint64_t res[4] = { 0 };
	pid_t d, child;

	(void)state;
	/* test_chaos' set-up: node 1 refuses every move, the 1 MiB budget is always exceeded, a
	 * pass every 20 ms epoch — tierd keeps zapping batches. No sampling windows: every ZAP
	 * the silent client gets is a batch's. */
	d = daemon_start(sock_path, "--sysfs-root", sysfs_root, "--epoch-ms", "20", "--migrate-every",
			 "1", "--fast-budget-mib", "1", "--reserve-mib", "0", "--max-windows", "0", NULL);
	assert_true(d > 0);
	good = good_start(3000);
	fd_base = harness_settled_fds(d, 10, 2000);
	batches0 = status_get("\"migration\"", "batches");
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	child = _Fork();
	assert_true(child >= 0);
	if (child == 0) {
		close(p[0]);
		_exit(silent_client(p[1]));
	}
	close(p[1]);
	rc = wait_exit(child, SILENT_RUN_MS + 10000u);
	assert_int_equal(read(p[0], res, sizeof(res)), rc == 0 ? (ssize_t)sizeof(res) : 0);
	close(p[0]);
	batches1 = status_get("\"migration\"", "batches");
	timeouts1 = status_get("\"migration\"", "batch_timeouts");
	skipped = status_get("\"stats\"", "zaps_skipped");
	sent = status_get("\"stats\"", "zaps_sent");
	print_message("  silent client: exit %d, %llu ZAPs, %llu pages touched, longest touch %.1f ms, "
		      "%llu bad; tierd: %lld batches, %lld timed out, %lld zaps sent\n", rc,
		      (unsigned long long)res[0], (unsigned long long)res[1], (double)res[2] / 1000.0,
		      (unsigned long long)res[3], batches1 - batches0, timeouts1, sent);
	(void)skipped;
	assert_int_equal(rc, 0);
	assert_int_equal(res[3], 0);
	/* Zapped, unanswered, timed out: each of its batches timed out... */
	assert_true(res[0] >= 1);
	assert_true(timeouts1 >= (long long)res[0]);
	/* ...its held faults let go at the deadline, not held for good... */
	assert_true(res[1] >= 1);
	assert_true(res[2] < (BATCH_WAIT + 1000u) * 1000u);
	/* ...and no more than max_zaps_in_flight (4) zaps were queued for it: tierd then stopped
	 * waiting for it, while batches went on. */
	assert_true(res[0] <= 4);
	assert_true(batches1 - batches0 > (long long)res[0]);
	good_assert_served(good, 1);
	assert_int_equal(harness_wait_fds(d, fd_base, SETTLE_MS), fd_base);
	good_stop(good);
	assert_int_equal(daemon_stop(d), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_pid_reuse, case_teardown),
		cmocka_unit_test_teardown(test_pid_reuse_pidfd_open, case_teardown),
		cmocka_unit_test_teardown(test_hello_deadline, case_teardown),
		cmocka_unit_test_teardown(test_hangup_keeps_faulting, case_teardown),
		cmocka_unit_test_teardown(test_never_answers_zaps, case_teardown),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
