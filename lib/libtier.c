/* SPDX-License-Identifier: MIT */
/*
 * libtier: tracked segments, the per-segment control thread (attach, zap, heartbeat, guardian),
 * fork handling and the small query helpers. See include/tierd/tier.h for the contract.
 */
#include "tierd/tier.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/memfd.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "proto.h"
#include "errtext.h"
#include "uffd.h"

#define DEFAULT_HANG_TIMEOUT_MS 2000u
#define BACKOFF_MIN_MS 50u
#define BACKOFF_MAX_MS 2000u
/* A forked child attaches this long after fork: most children of a server that forks per
 * connection live shorter than that, and their first touches are not heat anyway. */
#define DEFAULT_CHILD_ATTACH_DELAY_MS 100u

/* Which file an fd number held when libtier opened it: a program that closes fds it did not open
 * (closefrom) must not make libtier write to, or close, whatever reuses the number. */
struct fd_id {
	dev_t dev;
	ino_t ino;
};

struct tier_segment {
	/* Fixed at creation. */
	int memfd;
	void *addr;
	size_t size, page_size;
	enum tier_kind kind;
	char socket_path[108];
	unsigned hang_timeout_ms;
	unsigned child_delay_ms; /* TIERD_CHILD_ATTACH_DELAY_MS */
	bool owns_mapping;
	bool forked;             /* in a forked child, not yet attached: wait child_delay_ms first */

	int stop_fd; /* eventfd: the control thread stops when it becomes readable */
	struct fd_id stop_id, memfd_id;
	bool stop_flag; /* atomic: stop, for when stop_fd is not ours any more */
	uint8_t *msgbuf; /* TIERD_MSG_MAX_BYTES for the control thread's messages (not in TLS:
			  * every thread of the application would pay for thread-local buffers) */
	pthread_t thread;
	bool thread_running;

	/* Under lock: shared by the control thread, API callers and the fork handlers. */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct tier_info info;
	int sock, uffd; /* the control thread's live connection and uffd copy, -1 when none */
	bool announced;  /* "untracked" said once already */

	struct tier_segment *next; /* global list, under list_lock */
};

static pthread_mutex_t list_lock = PTHREAD_MUTEX_INITIALIZER;
static struct tier_segment *segments;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

static uint64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static bool quiet(void)
{
	const char *q = getenv("TIERD_QUIET");

	return q && *q && strcmp(q, "0") != 0;
}

static void set_error(struct tier_segment *seg, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void set_error(struct tier_segment *seg, int err, const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&seg->lock);
	seg->info.last_error = err;
	va_start(ap, fmt);
	vsnprintf(seg->info.last_reason, sizeof(seg->info.last_reason), fmt, ap);
	va_end(ap);
	pthread_mutex_unlock(&seg->lock);
}

static void set_state(struct tier_segment *seg, enum tier_state st)
{
	pthread_mutex_lock(&seg->lock);
	seg->info.state = st;
	pthread_cond_broadcast(&seg->cond);
	pthread_mutex_unlock(&seg->lock);
}

static void fd_id_get(int fd, struct fd_id *id)
{
	struct stat st;

	*id = (struct fd_id){ 0 };
	if (fd >= 0 && fstat(fd, &st) == 0)
		*id = (struct fd_id){ .dev = st.st_dev, .ino = st.st_ino };
}

static bool fd_is(int fd, const struct fd_id *id)
{
	struct stat st;

	return fd >= 0 && fstat(fd, &st) == 0 && st.st_dev == id->dev && st.st_ino == id->ino;
}

/* Moves fd above 0-2: a program that closed stdin, stdout or stderr must not have libtier's fds
 * take their numbers (a later write "to stderr" would land in them). */
static int above_stdio(int fd)
{
	int r;

	if (fd < 0 || fd > 2)
		return fd;
	r = fcntl(fd, F_DUPFD_CLOEXEC, 3);
	r = r < 0 ? -errno : r;
	close(fd);
	return r;
}

/* ---- the wire ------------------------------------------------------------------------------ */

static int connect_daemon(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd;

	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, path);
	/* Non-blocking: a hung tierd with a full backlog must not block the control thread. */
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	fd = above_stdio(fd);
	if (fd < 0)
		return fd;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int r = -errno;

		close(fd);
		return r;
	}
	return fd;
}

/*
 * Waits up to timeout_ms for a packet of `type` (other packets are passed to `other` when set, or
 * dropped). Returns its length, 0 when stop_fd fired, or a negative errno (-ETIMEDOUT, -ECONNRESET).
 */
static ssize_t wait_reply(int sock, int stop_fd, uint16_t type, void *buf, int *fds, unsigned *nfds,
			  unsigned timeout_ms)
{
	uint64_t deadline = mono_ms() + timeout_ms;

	for (;;) {
		struct pollfd p[2] = { { .fd = sock, .events = POLLIN }, { .fd = stop_fd, .events = POLLIN } };
		int64_t left = (int64_t)(deadline - mono_ms());
		ssize_t n;
		int r;

		if (left <= 0)
			return -ETIMEDOUT;
		r = poll(p, stop_fd >= 0 ? 2 : 1, (int)left);
		if (r < 0 && errno != EINTR)
			return -errno;
		if (stop_fd >= 0 && (p[1].revents & (POLLIN | POLLNVAL | POLLERR)))
			return 0;
		if (r <= 0)
			continue;
		n = proto_recv(sock, buf, TIERD_MSG_MAX_BYTES, fds, nfds);
		if (n == -EAGAIN)
			continue;
		if (n == 0)
			return -ECONNRESET;
		if (n < 0)
			return n;
		if (proto_validate(buf, (size_t)n) < 0) {
			proto_close_fds(fds, *nfds);
			return -EPROTO;
		}
		if (((struct tierd_msg_hdr *)buf)->type == type)
			return n;
		proto_close_fds(fds, *nfds);
		if (((struct tierd_msg_hdr *)buf)->type == TIERD_MSG_ERROR)
			return ((struct tierd_msg_error *)buf)->status < 0 ?
				       ((struct tierd_msg_error *)buf)->status : -EPROTO;
	}
}

static int say_hello(uint8_t *buf, int sock, int stop_fd, uint32_t flags, struct tierd_msg_welcome *w,
		     int *devfd, unsigned timeout_ms)
{
	struct tierd_msg_hello h = { .pid = (uint32_t)getpid(), .flags = flags };
	int fds[PROTO_MAX_FDS];
	unsigned nfds = 0;
	ssize_t n;
	int r;

	*devfd = -1;
	proto_init(&h.hdr, TIERD_MSG_HELLO, sizeof(h), 1);
	r = proto_send(sock, &h, sizeof(h), NULL, 0);
	if (r < 0)
		return r;
	n = wait_reply(sock, stop_fd, TIERD_MSG_WELCOME, buf, fds, &nfds, timeout_ms);
	if (n <= 0)
		return n == 0 ? -ECANCELED : (int)n;
	memcpy(w, buf, sizeof(*w));
	if (nfds == 1 && (w->flags & TIERD_HELLO_WANT_UFFD_DEV))
		*devfd = fds[0];
	else
		proto_close_fds(fds, nfds);
	return 0;
}

/* ---- the control thread -------------------------------------------------------------------- */

enum serve_end { END_STOP, END_HANGUP, END_HANG };

static void publish_fds(struct tier_segment *seg, int sock, int uffd)
{
	pthread_mutex_lock(&seg->lock);
	seg->sock = sock;
	seg->uffd = uffd;
	pthread_mutex_unlock(&seg->lock);
}

/* Returns 0 when attached (seg->sock/uffd live), 1 when asked to stop, or a negative errno. */
static int attach_once(struct tier_segment *seg, unsigned *heartbeat_ms)
{
	uint8_t *buf = seg->msgbuf;
	uint64_t required = uffd_required_for_kind(seg->kind == TIER_HUGETLB ? TIERD_SEG_HUGETLB
									      : TIERD_SEG_SHMEM);
	struct tierd_msg_attach at = { .kind = seg->kind == TIER_HUGETLB ? TIERD_SEG_HUGETLB
									  : TIERD_SEG_SHMEM,
				       .page_size = seg->page_size,
				       .base = (uint64_t)(uintptr_t)seg->addr,
				       .length = seg->size };
	const struct tierd_msg_attached *rep = (const void *)buf;
	struct tierd_msg_welcome w;
	struct uffd_handshake hs;
	struct uffd_ops ops;
	int sock, uffd, devfd = -1, r, fds[PROTO_MAX_FDS];
	unsigned nfds = 0;
	ssize_t n;

	sock = connect_daemon(seg->socket_path);
	if (sock < 0) {
		set_error(seg, sock, "cannot connect to tierd at %s: %s", seg->socket_path,
			  errtext(-sock));
		return sock;
	}
	publish_fds(seg, sock, -1);

	ops = uffd_ops_real(NULL);
	uffd = above_stdio(uffd_negotiate(&ops, required, 0, &hs));
	r = say_hello(seg->msgbuf, sock, seg->stop_fd, uffd == -EPERM ? TIERD_HELLO_WANT_UFFD_DEV : 0, &w, &devfd,
		      seg->hang_timeout_ms);
	if (r < 0) {
		set_error(seg, r, "tierd at %s did not greet: %s", seg->socket_path, errtext(-r));
		goto fail;
	}
	if (uffd == -EPERM) {
		if (devfd < 0) {
			r = -EPERM;
			set_error(seg, r, "userfaultfd(2) is not permitted here "
					  "(vm.unprivileged_userfaultfd=0) and tierd handed out no "
					  "/dev/userfaultfd");
			goto fail;
		}
		/* Use the device once and drop it: keeping it would hand every later child the
		 * power that the sysctl withholds. */
		ops = uffd_ops_real(&devfd);
		uffd = above_stdio(uffd_negotiate(&ops, required, 0, &hs));
		close(devfd);
	} else if (devfd >= 0) {
		close(devfd);
	}
	if (uffd < 0) {
		r = uffd;
		if (r == -EPROTONOSUPPORT) {
			char why[200];

			uffd_describe_missing(hs.missing, why, sizeof(why));
			set_error(seg, r, "%s", why);
		} else {
			set_error(seg, r, "cannot create a userfaultfd: %s", errtext(-r));
		}
		goto fail;
	}
	publish_fds(seg, sock, uffd);

	at.uffd_features = hs.enabled;
	proto_init(&at.hdr, TIERD_MSG_ATTACH, sizeof(at), 2);
	r = proto_send(sock, &at, sizeof(at), (int[]){ seg->memfd, uffd }, 2);
	if (r < 0) {
		set_error(seg, r, "sending ATTACH: %s", errtext(-r));
		goto fail;
	}
	n = wait_reply(sock, seg->stop_fd, TIERD_MSG_ATTACHED, buf, fds, &nfds, seg->hang_timeout_ms);
	proto_close_fds(fds, nfds);
	if (n <= 0) {
		r = n == 0 ? 1 : (int)n;
		if (r < 0)
			set_error(seg, r, "waiting for ATTACHED: %s", errtext(-r));
		goto fail;
	}
	if (rep->status < 0) {
		r = rep->status;
		set_error(seg, r, "tierd refused the segment: %.120s", rep->reason);
		goto fail;
	}
	pthread_mutex_lock(&seg->lock);
	seg->info.segment_id = rep->segment_id;
	seg->info.attach_id = rep->attach_id;
	seg->info.attaches++;
	seg->info.last_error = 0;
	seg->info.last_reason[0] = '\0';
	seg->info.state = TIER_STATE_TRACKED;
	seg->announced = false;
	pthread_cond_broadcast(&seg->cond);
	pthread_mutex_unlock(&seg->lock);
	*heartbeat_ms = w.heartbeat_ms ? w.heartbeat_ms : 250;
	return 0;

fail:
	publish_fds(seg, -1, -1);
	if (uffd >= 0)
		close(uffd);
	close(sock);
	return r;
}

static int do_zap(struct tier_segment *seg, const struct tierd_zap_range *z)
{
	/* Never trust the offsets, even from tierd: a bad range must not zap foreign memory. */
	if (z->length == 0 || z->offset % seg->page_size || z->length % seg->page_size ||
	    z->offset > seg->size || z->length > seg->size - z->offset)
		return -EINVAL;
	if (madvise((char *)seg->addr + z->offset, z->length, MADV_DONTNEED) < 0)
		return -errno;
	return 0;
}

static enum serve_end serve(struct tier_segment *seg, unsigned heartbeat_ms)
{
	uint8_t *buf = seg->msgbuf;
	uint64_t last_pong = mono_ms(), next_ping = last_pong + heartbeat_ms;
	int sock = seg->sock;

	for (;;) {
		struct pollfd p[2] = { { .fd = sock, .events = POLLIN }, { .fd = seg->stop_fd, .events = POLLIN } };
		uint64_t now = mono_ms();
		int r;

		if (now - last_pong > seg->hang_timeout_ms)
			return END_HANG;
		if (now >= next_ping) {
			struct tierd_msg_ping ping = { .token = now };

			proto_init(&ping.hdr, TIERD_MSG_PING, sizeof(ping), 0);
			r = proto_send(sock, &ping, sizeof(ping), NULL, 0);
			if (r < 0 && r != -EAGAIN)
				return END_HANGUP;
			next_ping = now + heartbeat_ms;
		}
		r = poll(p, 2, (int)(next_ping - now));
		if (r < 0 && errno != EINTR)
			return END_HANGUP;
		if ((p[1].revents & (POLLIN | POLLNVAL | POLLERR)) ||
		    __atomic_load_n(&seg->stop_flag, __ATOMIC_ACQUIRE))
			return END_STOP;
		if (r <= 0)
			continue;
		for (int i = 0; i < 64; i++) {
			int fds[PROTO_MAX_FDS];
			unsigned nfds = 0;
			ssize_t n = proto_recv(sock, buf, TIERD_MSG_MAX_BYTES, fds, &nfds);
			const struct tierd_msg_hdr *h = (const void *)buf;

			if (n == -EAGAIN)
				break;
			if (n <= 0)
				return END_HANGUP;
			proto_close_fds(fds, nfds);
			if (proto_validate(buf, (size_t)n) < 0)
				return END_HANGUP;
			switch (h->type) {
			case TIERD_MSG_ZAP: {
				const struct tierd_msg_zap *z = (const void *)buf;
				const struct tierd_zap_range *ranges = (const void *)(z + 1);
				struct tierd_msg_zap_done d = { .attach_id = z->attach_id };

				for (uint32_t k = 0; k < z->nranges; k++) {
					int zr = do_zap(seg, &ranges[k]);

					if (zr < 0 && d.status == 0)
						d.status = zr;
					d.nranges += zr == 0;
				}
				pthread_mutex_lock(&seg->lock);
				seg->info.zaps += d.nranges;
				pthread_mutex_unlock(&seg->lock);
				proto_init(&d.hdr, TIERD_MSG_ZAP_DONE, sizeof(d), h->seq);
				(void)proto_send(sock, &d, sizeof(d), NULL, 0);
				break;
			}
			case TIERD_MSG_PONG:
				last_pong = mono_ms();
				break;
			case TIERD_MSG_ERROR: {
				const struct tierd_msg_error *e = (const void *)buf;

				set_error(seg, e->status, "tierd: %.120s", e->reason);
				return END_HANGUP;
			}
			default:
				break;
			}
		}
	}
}

/* Lets go of tierd: every fault it holds is released, the mapping is left unregistered. */
static void detach_local(struct tier_segment *seg, enum serve_end why)
{
	int sock, uffd;

	pthread_mutex_lock(&seg->lock);
	sock = seg->sock;
	uffd = seg->uffd;
	seg->sock = seg->uffd = -1;
	pthread_mutex_unlock(&seg->lock);

	if (uffd >= 0) {
		/* UNREGISTER does not wake faults already blocked: WAKE the whole range after it.
		 * On a hang-up this matters when tierd is alive but dropped us; when tierd died, the
		 * close below is what releases the uffd (ours is the last reference). */
		(void)uffd_unregister(uffd, (uint64_t)(uintptr_t)seg->addr, seg->size);
		(void)uffd_wake(uffd, (uint64_t)(uintptr_t)seg->addr, seg->size);
		close(uffd);
	}
	if (sock >= 0)
		close(sock);

	pthread_mutex_lock(&seg->lock);
	seg->info.state = TIER_STATE_UNTRACKED;
	seg->info.segment_id = seg->info.attach_id = 0;
	if (why != END_STOP)
		seg->info.detaches++;
	if (why == END_HANG) {
		seg->info.guardian_detaches++;
		seg->info.last_error = -ETIMEDOUT;
		snprintf(seg->info.last_reason, sizeof(seg->info.last_reason),
			 "tierd did not answer within %u ms: detached on our side", seg->hang_timeout_ms);
	}
	pthread_cond_broadcast(&seg->cond);
	pthread_mutex_unlock(&seg->lock);
	if (why == END_HANG && !quiet())
		fprintf(stderr, "libtier: pid %d: tierd did not answer within %u ms; released the "
				"segment and will re-attach when it answers\n",
			(int)getpid(), seg->hang_timeout_ms);
}

/* Sleeps up to ms; true when asked to stop. */
static bool wait_stop(struct tier_segment *seg, unsigned ms)
{
	struct pollfd p = { .fd = seg->stop_fd, .events = POLLIN };

	return poll(&p, 1, (int)ms) > 0 || __atomic_load_n(&seg->stop_flag, __ATOMIC_ACQUIRE);
}

static bool permanent(int r)
{
	/* The kernel lacks the features, or tierd refused the segment itself: retrying cannot help. */
	return r == -EPROTONOSUPPORT || r == -EINVAL || r == -EBADF || r == -ENOSYS;
}

static void *control_main(void *arg)
{
	struct tier_segment *seg = arg;
	unsigned backoff = BACKOFF_MIN_MS, heartbeat_ms = 250;

	if (seg->forked && seg->child_delay_ms && wait_stop(seg, seg->child_delay_ms))
		return NULL;
	for (;;) {
		int r = attach_once(seg, &heartbeat_ms);
		enum serve_end end;

		if (r == 1)
			break;
		if (r < 0) {
			char reason[sizeof(seg->info.last_reason)];
			bool say;

			pthread_mutex_lock(&seg->lock);
			say = !seg->announced;
			seg->announced = true;
			memcpy(reason, seg->info.last_reason, sizeof(reason));
			pthread_mutex_unlock(&seg->lock);
			if (say && !quiet())
				fprintf(stderr, "libtier: pid %d: segment untracked: %s%s\n", (int)getpid(),
					reason,
					permanent(r) ? "" : " (will retry in the background)");
			if (permanent(r)) {
				set_state(seg, TIER_STATE_DISABLED);
				(void)wait_stop(seg, -1u >> 1);
				break;
			}
			if (wait_stop(seg, backoff))
				break;
			backoff = backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2;
			continue;
		}
		backoff = BACKOFF_MIN_MS;
		end = serve(seg, heartbeat_ms);
		detach_local(seg, end);
		if (end == END_STOP)
			break;
		/* Back off a little before the first retry so a restarting tierd can bind. */
		if (wait_stop(seg, BACKOFF_MIN_MS))
			break;
	}
	return NULL;
}

static int start_control(struct tier_segment *seg)
{
	sigset_t all, old;
	int r;

	seg->stop_fd = above_stdio(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
	if (seg->stop_fd < 0)
		return seg->stop_fd == -1 ? -errno : seg->stop_fd;
	fd_id_get(seg->stop_fd, &seg->stop_id);
	/* The thread starts with every signal blocked: application signals go to app threads. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	r = -pthread_create(&seg->thread, NULL, control_main, seg);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (r < 0) {
		close(seg->stop_fd);
		seg->stop_fd = -1;
		return r;
	}
	seg->thread_running = true;
	return 0;
}

/* ---- fork ---------------------------------------------------------------------------------- */

static void atfork_prepare(void)
{
	pthread_mutex_lock(&list_lock);
	for (struct tier_segment *s = segments; s; s = s->next)
		pthread_mutex_lock(&s->lock);
}

static void atfork_parent(void)
{
	for (struct tier_segment *s = segments; s; s = s->next)
		pthread_mutex_unlock(&s->lock);
	pthread_mutex_unlock(&list_lock);
}

static void atfork_child(void)
{
	for (struct tier_segment *s = segments; s; s = s->next) {
		/* The parent's connection and uffd copy must not live on here: a copy held by the
		 * child would keep the parent's faults blocked after tierd dies, and the socket would
		 * hide the parent's exit from tierd. The child has no control thread yet. */
		if (s->sock >= 0)
			close(s->sock);
		if (s->uffd >= 0)
			close(s->uffd);
		if (s->stop_fd >= 0)
			close(s->stop_fd);
		s->sock = s->uffd = s->stop_fd = -1;
		s->thread_running = false;
		s->announced = true; /* the parent already said it, if it had to */
		s->forked = true;
		s->stop_flag = false;
		memset(&s->info, 0, sizeof(s->info));
		pthread_mutex_unlock(&s->lock);
		/* A child starts unregistered and attaches in the background: fork stays cheap. */
		(void)start_control(s);
	}
	pthread_mutex_unlock(&list_lock);
}

static void register_atfork(void)
{
	pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
}

/* ---- public API ---------------------------------------------------------------------------- */

static int seg_alloc(const struct tier_options *opts, struct tier_segment **ret)
{
	struct tier_segment *seg;
	const char *env;

	if (!opts || (opts->kind != TIER_SHMEM && opts->kind != TIER_HUGETLB))
		return -EINVAL;
	seg = calloc(1, sizeof(*seg));
	if (!seg)
		return -ENOMEM;
	seg->msgbuf = malloc(TIERD_MSG_MAX_BYTES);
	if (!seg->msgbuf) {
		free(seg);
		return -ENOMEM;
	}
	seg->memfd = seg->sock = seg->uffd = seg->stop_fd = -1;
	seg->addr = MAP_FAILED;
	seg->kind = opts->kind;
	pthread_mutex_init(&seg->lock, NULL);
	pthread_cond_init(&seg->cond, NULL);
	env = getenv("TIERD_SOCKET");
	snprintf(seg->socket_path, sizeof(seg->socket_path), "%s",
		 opts->socket_path ? opts->socket_path : env && *env ? env : TIERD_DEFAULT_SOCKET);
	seg->hang_timeout_ms = opts->hang_timeout_ms;
	env = getenv("TIERD_HANG_TIMEOUT_MS");
	if (!seg->hang_timeout_ms && env && *env)
		seg->hang_timeout_ms = (unsigned)strtoul(env, NULL, 10);
	if (!seg->hang_timeout_ms)
		seg->hang_timeout_ms = DEFAULT_HANG_TIMEOUT_MS;
	env = getenv("TIERD_CHILD_ATTACH_DELAY_MS");
	seg->child_delay_ms = env && *env ? (unsigned)strtoul(env, NULL, 10) : DEFAULT_CHILD_ATTACH_DELAY_MS;
	if (seg->child_delay_ms > 60000)
		seg->child_delay_ms = 60000;
	*ret = seg;
	return 0;
}

/* Frees a segment whose control thread is not running (never started, or joined). */
static void seg_release(struct tier_segment *seg)
{
	if (fd_is(seg->stop_fd, &seg->stop_id))
		close(seg->stop_fd);
	if (seg->owns_mapping && seg->addr != MAP_FAILED)
		munmap(seg->addr, seg->size);
	if (fd_is(seg->memfd, &seg->memfd_id))
		close(seg->memfd);
	pthread_mutex_destroy(&seg->lock);
	pthread_cond_destroy(&seg->cond);
	free(seg->msgbuf);
	free(seg);
}

static int seg_start(struct tier_segment *seg)
{
	int r;

	pthread_once(&atfork_once, register_atfork);
	pthread_mutex_lock(&list_lock);
	r = start_control(seg);
	if (r == 0) {
		seg->next = segments;
		segments = seg;
	}
	pthread_mutex_unlock(&list_lock);
	return r;
}

int tier_segment_create(const struct tier_options *opts, struct tier_segment **ret)
{
	struct tier_segment *seg;
	unsigned flags = MFD_CLOEXEC | MFD_ALLOW_SEALING;
	int r;

	r = seg_alloc(opts, &seg);
	if (r < 0)
		return r;
	if (seg->kind == TIER_HUGETLB) {
		unsigned shift = opts->huge_shift ? opts->huge_shift : 21;

		if (shift < 16 || shift > 40) {
			r = -EINVAL;
			goto fail;
		}
		flags |= MFD_HUGETLB | (opts->huge_shift ? shift << MFD_HUGE_SHIFT : 0);
		seg->page_size = (size_t)1 << shift;
	} else {
		seg->page_size = (size_t)sysconf(_SC_PAGESIZE);
	}
	if (opts->size == 0 || opts->size > SIZE_MAX - seg->page_size) {
		r = -EINVAL;
		goto fail;
	}
	seg->size = (opts->size + seg->page_size - 1) / seg->page_size * seg->page_size;
	seg->memfd = above_stdio(memfd_create(opts->name ? opts->name : "tier", flags));
	if (seg->memfd < 0) {
		r = seg->memfd == -1 ? -errno : seg->memfd;
		goto fail;
	}
	fd_id_get(seg->memfd, &seg->memfd_id);
	if (ftruncate(seg->memfd, (off_t)seg->size) < 0 ||
	    fcntl(seg->memfd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0) {
		r = -errno;
		goto fail;
	}
	/* Huge pages are reserved here: ENOMEM means the pool (nr_hugepages) is too small. */
	seg->addr = mmap(NULL, seg->size, PROT_READ | PROT_WRITE, MAP_SHARED, seg->memfd, 0);
	seg->owns_mapping = true;
	if (seg->addr == MAP_FAILED) {
		r = -errno;
		goto fail;
	}
	r = seg_start(seg);
	if (r < 0)
		goto fail;
	*ret = seg;
	return 0;
fail:
	seg_release(seg);
	return r;
}

int tier_segment_adopt(int memfd, void *addr, size_t len, const struct tier_options *opts,
		       struct tier_segment **ret)
{
	struct tier_segment *seg;
	int r;

	if (memfd < 0 || !addr || len == 0)
		return -EINVAL;
	r = seg_alloc(opts, &seg);
	if (r < 0)
		return r;
	seg->memfd = memfd;
	fd_id_get(memfd, &seg->memfd_id);
	seg->addr = addr;
	seg->size = len;
	seg->page_size = seg->kind == TIER_HUGETLB ? (size_t)1 << (opts->huge_shift ? opts->huge_shift : 21)
						   : (size_t)sysconf(_SC_PAGESIZE);
	r = seg_start(seg);
	if (r < 0) {
		seg->memfd = -1; /* on failure the caller keeps its memfd and mapping */
		seg_release(seg);
		return r;
	}
	*ret = seg;
	return 0;
}

void *tier_segment_addr(const struct tier_segment *seg)
{
	return seg->addr;
}

size_t tier_segment_size(const struct tier_segment *seg)
{
	return seg->size;
}

size_t tier_segment_page_size(const struct tier_segment *seg)
{
	return seg->page_size;
}

int tier_segment_memfd(const struct tier_segment *seg)
{
	return seg->memfd;
}

void tier_segment_info(struct tier_segment *seg, struct tier_info *info)
{
	pthread_mutex_lock(&seg->lock);
	*info = seg->info;
	pthread_mutex_unlock(&seg->lock);
}

int tier_segment_wait_tracked(struct tier_segment *seg, unsigned timeout_ms)
{
	struct timespec ts;
	int r = 0;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += timeout_ms / 1000;
	ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&seg->lock);
	while (seg->info.state == TIER_STATE_UNTRACKED && r == 0)
		r = pthread_cond_timedwait(&seg->cond, &seg->lock, &ts);
	if (seg->info.state == TIER_STATE_TRACKED)
		r = 0;
	else if (seg->info.state == TIER_STATE_DISABLED)
		r = seg->info.last_error ? seg->info.last_error : -ENOTSUP;
	else
		r = -ETIMEDOUT;
	pthread_mutex_unlock(&seg->lock);
	return r;
}

/* A short query connection: HELLO, then the caller's request. */
static int query_open(const char *path)
{
	struct tierd_msg_welcome w;
	uint8_t *buf = malloc(TIERD_MSG_MAX_BYTES);
	int sock, devfd, r;

	if (!buf)
		return -ENOMEM;
	sock = connect_daemon(path);
	if (sock < 0) {
		free(buf);
		return sock;
	}
	r = say_hello(buf, sock, -1, 0, &w, &devfd, DEFAULT_HANG_TIMEOUT_MS);
	free(buf);
	if (r < 0) {
		close(sock);
		return r;
	}
	return sock;
}

static int tier_heat_query_in(uint8_t *buf, const char *socket_path, uint32_t segment_id,
			      uint8_t *bitmap, uint64_t npages, uint64_t *faults)
{
	const struct tierd_msg_heat_reply *rep = (const void *)buf;
	const char *env = getenv("TIERD_SOCKET");
	uint64_t page = 0;
	int sock, r = 0;

	if (!socket_path)
		socket_path = env && *env ? env : TIERD_DEFAULT_SOCKET;
	sock = query_open(socket_path);
	if (sock < 0)
		return sock;
	memset(bitmap, 0, (npages + 7) / 8);
	while (page < npages) {
		struct tierd_msg_heat_query q = { .segment_id = segment_id, .first_page = page };
		int fds[PROTO_MAX_FDS];
		unsigned nfds = 0;
		ssize_t n;

		proto_init(&q.hdr, TIERD_MSG_HEAT_QUERY, sizeof(q), page + 2);
		r = proto_send(sock, &q, sizeof(q), NULL, 0);
		if (r < 0)
			break;
		n = wait_reply(sock, -1, TIERD_MSG_HEAT_REPLY, buf, fds, &nfds, DEFAULT_HANG_TIMEOUT_MS);
		proto_close_fds(fds, nfds);
		if (n <= 0) {
			r = n == 0 ? -ECONNRESET : (int)n;
			break;
		}
		if (rep->status < 0) {
			r = rep->status;
			break;
		}
		if (rep->npages == 0 || (size_t)n < sizeof(*rep) + (rep->npages + 7) / 8) {
			r = rep->npages == 0 ? 0 : -EPROTO;
			break;
		}
		for (uint64_t i = 0; i < rep->npages && page + i < npages; i++)
			if (buf[sizeof(*rep) + (i >> 3)] & (1u << (i & 7)))
				bitmap[(page + i) >> 3] |= (uint8_t)(1u << ((page + i) & 7));
		if (faults)
			*faults = rep->faults;
		page += rep->npages;
	}
	close(sock);
	return r;
}

/* The message buffer is on the heap: a thread-local one would cost every thread of the
 * application 64 KiB. */
int tier_heat_query(const char *socket_path, uint32_t segment_id, uint8_t *bitmap, uint64_t npages,
		    uint64_t *faults)
{
	uint8_t *buf = malloc(TIERD_MSG_MAX_BYTES);
	int r;

	if (!buf)
		return -ENOMEM;
	r = tier_heat_query_in(buf, socket_path, segment_id, bitmap, npages, faults);
	free(buf);
	return r;
}

int tier_segment_heat(struct tier_segment *seg, uint8_t *bitmap, uint64_t npages, uint64_t *faults)
{
	uint32_t segment_id;

	pthread_mutex_lock(&seg->lock);
	segment_id = seg->info.state == TIER_STATE_TRACKED ? seg->info.segment_id : 0;
	pthread_mutex_unlock(&seg->lock);
	if (!segment_id)
		return -ENOTCONN;
	return tier_heat_query(seg->socket_path, segment_id, bitmap, npages, faults);
}

void tier_segment_destroy(struct tier_segment *seg)
{
	if (!seg)
		return;
	pthread_mutex_lock(&list_lock);
	for (struct tier_segment **p = &segments; *p; p = &(*p)->next)
		if (*p == seg) {
			*p = seg->next;
			break;
		}
	pthread_mutex_unlock(&list_lock);
	if (seg->thread_running) {
		/* When the program closed stop_fd, the thread sees the flag within a heartbeat or a
		 * hang timeout. */
		__atomic_store_n(&seg->stop_flag, true, __ATOMIC_RELEASE);
		if (fd_is(seg->stop_fd, &seg->stop_id))
			(void)eventfd_write(seg->stop_fd, 1);
		pthread_join(seg->thread, NULL);
	}
	seg_release(seg);
}

static int tier_status_json_in(uint8_t *buf, const char *socket_path, char *out, size_t len)
{
	struct tierd_msg_hdr q;
	const char *env = getenv("TIERD_SOCKET");
	int fds[PROTO_MAX_FDS], sock, r;
	unsigned nfds = 0;
	ssize_t n;
	size_t js;

	if (!socket_path)
		socket_path = env && *env ? env : TIERD_DEFAULT_SOCKET;
	sock = query_open(socket_path);
	if (sock < 0)
		return sock;
	proto_init(&q, TIERD_MSG_STATUS_QUERY, sizeof(q), 2);
	r = proto_send(sock, &q, sizeof(q), NULL, 0);
	if (r == 0) {
		n = wait_reply(sock, -1, TIERD_MSG_STATUS_REPLY, buf, fds, &nfds, DEFAULT_HANG_TIMEOUT_MS);
		proto_close_fds(fds, nfds);
		r = n <= 0 ? (n == 0 ? -ECONNRESET : (int)n) : 0;
		if (r == 0) {
			js = strnlen((const char *)buf + sizeof(q), (size_t)n - sizeof(q));
			if (js + 1 > len) {
				r = -ENOBUFS;
			} else {
				memcpy(out, buf + sizeof(q), js);
				out[js] = '\0';
				r = (int)js;
			}
		}
	}
	close(sock);
	return r;
}

/* The message buffer is on the heap: a thread-local one would cost every thread of the
 * application 64 KiB. */
int tier_status_json(const char *socket_path, char *out, size_t len)
{
	uint8_t *buf = malloc(TIERD_MSG_MAX_BYTES);
	int r;

	if (!buf)
		return -ENOMEM;
	r = tier_status_json_in(buf, socket_path, out, len);
	free(buf);
	return r;
}

static int tier_control_in(uint8_t *buf, const char *socket_path, uint32_t op, uint64_t arg, const char *const *args,
			 unsigned nargs, int fd, char *out, size_t len)
{
	struct tierd_msg_control *q = (struct tierd_msg_control *)buf;
	const struct tierd_msg_control_reply *rep = (const void *)buf;
	const char *env = getenv("TIERD_SOCKET");
	size_t size = sizeof(*q);
	int fds[PROTO_MAX_FDS], sock, r;
	unsigned nfds = 0;
	ssize_t n;

	if (nargs > TIERD_CONTROL_MAX_ARGS)
		return -E2BIG;
	for (unsigned i = 0; i < nargs; i++) {
		size_t l = strlen(args[i]) + 1;

		if (size + l > TIERD_MSG_MAX_BYTES)
			return -E2BIG;
		memcpy(buf + size, args[i], l);
		size += l;
	}
	*q = (struct tierd_msg_control){ .op = op, .nargs = nargs, .arg = arg };
	proto_init(&q->hdr, fd >= 0 ? TIERD_MSG_CONTROL_FD : TIERD_MSG_CONTROL, (uint32_t)size, 2);
	if (!socket_path)
		socket_path = env && *env ? env : TIERD_DEFAULT_SOCKET;
	sock = query_open(socket_path);
	if (sock < 0)
		return sock;
	r = proto_send(sock, buf, size, fd >= 0 ? &fd : NULL, fd >= 0 ? 1 : 0);
	if (r == 0) {
		n = wait_reply(sock, -1, TIERD_MSG_CONTROL_REPLY, buf, fds, &nfds, DEFAULT_HANG_TIMEOUT_MS);
		proto_close_fds(fds, nfds);
		if (n <= 0) {
			r = n == 0 ? -ECONNRESET : (int)n;
		} else {
			size_t t = strnlen((const char *)buf + sizeof(*rep), (size_t)n - sizeof(*rep));

			if (len) {
				t = t < len - 1 ? t : len - 1;
				memcpy(out, buf + sizeof(*rep), t);
				out[t] = '\0';
			}
			r = rep->status;
		}
	}
	close(sock);
	return r;
}

/* The message buffer is on the heap: a thread-local one would cost every thread of the
 * application 64 KiB. */
int tier_control(const char *socket_path, uint32_t op, uint64_t arg, const char *const *args,
		 unsigned nargs, int fd, char *out, size_t len)
{
	uint8_t *buf = malloc(TIERD_MSG_MAX_BYTES);
	int r;

	if (!buf)
		return -ENOMEM;
	r = tier_control_in(buf, socket_path, op, arg, args, nargs, fd, out, len);
	free(buf);
	return r;
}
