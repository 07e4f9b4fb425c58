/* SPDX-License-Identifier: MIT */
/*
 * The daemon's event loop: socket server and client protocol, timer-driven epochs, signals, and
 * the deferred freeing of objects that die inside an epoll batch.
 */
#include "manager.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <malloc.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include "../lib/proto.h"
#include "config.h"
#include "host.h"
#include "bpf.h"
#include "log.h"

static int epoll_add(struct manager *m, int fd, uint32_t events, struct watch *w)
{
	struct epoll_event ev = { .events = events, .data.ptr = w };

	return epoll_ctl(m->epfd, EPOLL_CTL_ADD, fd, &ev) < 0 ? -errno : 0;
}

static int setup_socket(struct manager *m)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	mode_t old_umask;
	int n, fd, r;

	n = sd_listen_fds(1);
	if (n > 1)
		return log_error_errno(-EINVAL, "Expected at most one socket from systemd, got %d", n);
	if (n == 1) {
		if (sd_is_socket_unix(SD_LISTEN_FDS_START, SOCK_SEQPACKET, 1, NULL, 0) <= 0)
			return log_error_errno(-EINVAL, "systemd passed a socket that is not a listening "
							"AF_UNIX SOCK_SEQPACKET socket");
		m->listen_fd = SD_LISTEN_FDS_START;
		fcntl(m->listen_fd, F_SETFD, FD_CLOEXEC);
		fcntl(m->listen_fd, F_SETFL, fcntl(m->listen_fd, F_GETFL) | O_NONBLOCK);
		log_info("Using the socket passed by systemd");
		return 0;
	}

	if (strlen(m->cfg.socket_path) >= sizeof(sa.sun_path))
		return log_error_errno(-ENAMETOOLONG, "Socket path too long: %s", m->cfg.socket_path);
	strcpy(sa.sun_path, m->cfg.socket_path);
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return log_error_errno(-errno, "socket(): %m");
	/* A stale socket file from a crashed tierd would make bind fail; a live tierd would answer. */
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
		close(fd);
		return log_error_errno(-EADDRINUSE, "Another tierd is serving %s", sa.sun_path);
	}
	(void)unlink(sa.sun_path);
	/* Born 0600 whatever the umask (a umask of 0 would open it to everyone until the chmod), then
	 * given daemon.socket_mode and socket_group: the socket's mode is who may connect. */
	old_umask = umask(0177);
	r = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
	umask(old_umask);
	if (r < 0 || listen(fd, 256) < 0) {
		r = -errno;
		close(fd);
		return log_error_errno(r, "Cannot listen on %s: %m", sa.sun_path);
	}
	if ((m->cfg.socket_gid != TIERD_NO_GROUP &&
	     chown(sa.sun_path, (uid_t)-1, (gid_t)m->cfg.socket_gid) < 0) ||
	    chmod(sa.sun_path, (mode_t)m->cfg.socket_mode) < 0) {
		r = -errno;
		close(fd);
		(void)unlink(sa.sun_path);
		return log_error_errno(r, "Cannot give %s mode %04o and group %d: %m", sa.sun_path,
				       m->cfg.socket_mode,
				       m->cfg.socket_gid == TIERD_NO_GROUP ? -1 : (int)m->cfg.socket_gid);
	}
	m->listen_fd = fd;
	m->own_socket = true;
	return 0;
}

/* Each live window can add two VMAs to a client; near vm.max_map_count its own mmap/mprotect
 * start failing. Keep the windows of one epoch within a sixteenth of the budget. */
static void clamp_windows(struct tierd_config *cfg)
{
	FILE *f = fopen("/proc/sys/vm/max_map_count", "re");
	unsigned long max_maps = 0;

	if (!f)
		return;
	if (fscanf(f, "%lu", &max_maps) != 1)
		max_maps = 0;
	fclose(f);
	if (max_maps && cfg->max_windows > max_maps / 32) {
		log_warning("max_windows %u would use more than 1/16 of vm.max_map_count (%lu) in a "
			    "client; using %lu",
			    cfg->max_windows, max_maps, max_maps / 32);
		cfg->max_windows = (uint32_t)(max_maps / 32);
	}
}

int manager_new(const struct tierd_config *cfg, struct manager **ret)
{
	struct itimerspec its = { 0 };
	struct rlimit rl;
	struct manager *m;
	sigset_t mask;
	int r;

	m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	m->cfg = *cfg;
	clamp_windows(&m->cfg);
	m->epfd = m->listen_fd = m->timer_fd = m->signal_fd = m->spare_fd = -1;
	m->started_usec = now_usec();
	m->listen_watch = (struct watch){ WATCH_LISTEN, m };
	m->timer_watch = (struct watch){ WATCH_TIMER, m };
	m->signal_watch = (struct watch){ WATCH_SIGNAL, m };

	/* Each client holds a socket, a uffd and maybe a memfd: allow as many fds as we may. */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		(void)setrlimit(RLIMIT_NOFILE, &rl);
	}
	signal(SIGPIPE, SIG_IGN);
	m->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);

	m->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (m->epfd < 0) {
		r = log_error_errno(-errno, "epoll_create1: %m");
		goto fail;
	}
	r = manager_tiers_init(m);
	if (r < 0)
		goto fail;
	r = setup_socket(m);
	if (r < 0)
		goto fail;
	r = epoll_add(m, m->listen_fd, EPOLLIN, &m->listen_watch);
	if (r < 0)
		goto fail;
	/* Listening: what tierd does from here on needs four capabilities at most. Before any thread
	 * starts, since capabilities are per thread. */
	if (privs_drop(&m->privs) < 0)
		log_warning("Keeping every capability: %s", m->privs.why);
	else
		log_info("Capabilities kept: %s (%u dropped%s; no_new_privs)", m->privs.kept,
			 m->privs.dropped, m->privs.bounding ? ", bounding set too" : "");
	/* On a thread: loading takes ~0.1 s (libbpf reads the kernel's BTF), up to a second on a
	 * loaded host, and clients attach meanwhile (tracked by the programs once they run). */
	manager_bpf_start(m);

	m->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (m->timer_fd < 0) {
		r = log_error_errno(-errno, "timerfd_create: %m");
		goto fail;
	}
	its.it_interval.tv_sec = cfg->epoch_ms / 1000;
	its.it_interval.tv_nsec = (long)(cfg->epoch_ms % 1000) * 1000000L;
	its.it_value = its.it_interval;
	if (timerfd_settime(m->timer_fd, 0, &its, NULL) < 0) {
		r = log_error_errno(-errno, "timerfd_settime: %m");
		goto fail;
	}
	r = epoll_add(m, m->timer_fd, EPOLLIN, &m->timer_watch);
	if (r < 0)
		goto fail;

	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	m->signal_fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
	if (m->signal_fd < 0) {
		r = log_error_errno(-errno, "signalfd: %m");
		goto fail;
	}
	r = epoll_add(m, m->signal_fd, EPOLLIN, &m->signal_watch);
	if (r < 0)
		goto fail;
	*ret = m;
	return 0;
fail:
	manager_free(m);
	return r;
}

static void client_free(struct client *c)
{
	free(c);
}

/* SO_PEERPIDFD (Linux 6.5): a pidfd of the process that connected, from the struct pid the socket
 * holds since connect(), so it names that process even after its pid was reused. */
#ifndef SO_PEERPIDFD
#define SO_PEERPIDFD 77
#endif
/* -1 not known yet, 0 the kernel lacks it (pidfd_open at accept instead), 1 it has it. */
static int have_peerpidfd = -1;

static int sys_pidfd_open(pid_t pid)
{
	return (int)syscall(SYS_pidfd_open, pid, 0);
}

static int sys_pidfd_send_signal(int pidfd, int sig)
{
	return (int)syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0);
}

/*
 * At accept: with SO_PEERPIDFD nothing needs holding (the socket pins the peer's struct pid), so
 * a connection costs tierd one fd. Without it (Debian 12's 6.1), a pidfd of the peer's pid is
 * opened now and held: that leaves the time between connect() and this accept during which the
 * pid could be reused unnoticed, a window of microseconds that the client cannot widen at will
 * (tierd accepts at once), where the ATTACH could come any time later.
 */
static void peer_pidfd_at_accept(struct client *c)
{
	c->pidfd = -1;
	c->pidfd_err = 0;
	if (have_peerpidfd != 0) {
		int fd;
		socklen_t l = sizeof(fd);

		if (getsockopt(c->fd, SOL_SOCKET, SO_PEERPIDFD, &fd, &l) == 0) {
			close(fd);
			have_peerpidfd = 1;
			return;
		}
		if (errno != ENOPROTOOPT || have_peerpidfd == 1)
			return; /* the peer is gone already, say: seen again at ATTACH */
		have_peerpidfd = 0;
	}
	if (c->pid <= 0) {
		c->pidfd_err = ESRCH; /* not in tierd's pid namespace: /proc cannot show its maps */
		return;
	}
	c->pidfd = sys_pidfd_open(c->pid);
	if (c->pidfd < 0)
		c->pidfd_err = errno;
}

int manager_client_alive(const struct client *c)
{
	int fd = c->pidfd, r = 0;

	if (fd < 0 && !c->pidfd_err) {
		socklen_t l = sizeof(fd);

		if (getsockopt(c->fd, SOL_SOCKET, SO_PEERPIDFD, &fd, &l) < 0)
			/* 6.5-6.14 refuse a pidfd of a reaped process (EINVAL or ESRCH); later
			 * kernels give one, and the signal below says ESRCH. */
			return errno == EINVAL || errno == ESRCH ? -ESRCH : -errno;
	} else if (fd < 0) {
		return -c->pidfd_err;
	}
	/* Signal 0 checks without sending: a zombie still answers (its pid is still its own),
	 * a reaped process says ESRCH. EPERM (tierd not root): it exists. */
	if (sys_pidfd_send_signal(fd, 0) < 0 && errno != EPERM)
		r = -errno;
	if (fd != c->pidfd)
		close(fd);
	return r;
}

static void reap(struct manager *m)
{
	while (m->graveyard_attachments) {
		struct attachment *a = m->graveyard_attachments;

		m->graveyard_attachments = a->grave_next;
		free(a->zapped);
		free(a);
	}
	while (m->graveyard_segments) {
		struct segment *s = m->graveyard_segments;

		m->graveyard_segments = s->grave_next;
		manager_batch_drop(m, s); /* keeps batches_active true to the live batches */
		segment_free(s);
	}
	while (m->graveyard) {
		struct client *c = m->graveyard;

		m->graveyard = c->grave_next;
		client_free(c);
	}
}

void manager_client_drop(struct manager *m, struct client *c, const char *why)
{
	if (c->dead)
		return;
	c->dead = true;
	/* Release the client's faults before anything else: its threads must never stay blocked. */
	while (c->attachments)
		attachment_release(m, c->attachments);
	(void)epoll_ctl(m->epfd, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	c->fd = -1;
	if (c->pidfd >= 0)
		close(c->pidfd);
	c->pidfd = -1;
	if (!c->hello_done)
		m->hello_pending--;
	for (struct client **p = &m->clients; *p; p = &(*p)->next)
		if (*p == c) {
			*p = c->next;
			m->nclients--;
			break;
		}
	if (why)
		log_full(c->ever_attached ? LOG_INFO : LOG_DEBUG, 0, "pid %d client %u: detached (%s)",
			 (int)c->pid, c->id, why);
	c->grave_next = m->graveyard;
	m->graveyard = c;
}

int manager_send(struct manager *m, struct client *c, void *msg, size_t len, const int *fds,
		 unsigned nfds)
{
	int r;

	if (c->dead)
		return -ECONNRESET;
	r = proto_send(c->fd, msg, len, fds, nfds);
	if (r == -EPIPE || r == -ECONNRESET) {
		manager_client_drop(m, c, "disconnected");
	} else if (r < 0) {
		/* EAGAIN: the client stopped reading its socket. Its faults are released by the drop;
		 * a client that does not read cannot be served. */
		m->stats.clients_dropped++;
		manager_client_drop(m, c, r == -EAGAIN ? "not reading its socket" : "send failed");
	}
	return r;
}

static void send_error(struct client *c, int status, const char *reason)
{
	struct tierd_msg_error e = { .status = status };

	proto_init(&e.hdr, TIERD_MSG_ERROR, sizeof(e), ++c->seq);
	snprintf(e.reason, sizeof(e.reason), "%s", reason);
	(void)proto_send(c->fd, &e, sizeof(e), NULL, 0);
}

static bool peer_allowed(const struct manager *m, uid_t uid, gid_t gid)
{
	if (m->cfg.n_allow_uids == 0 && m->cfg.n_allow_gids == 0)
		return true; /* the socket's file mode is the gate */
	if (uid == 0)
		return true;
	for (unsigned i = 0; i < m->cfg.n_allow_uids; i++)
		if (m->cfg.allow_uids[i] == uid)
			return true;
	for (unsigned i = 0; i < m->cfg.n_allow_gids; i++)
		if (m->cfg.allow_gids[i] == gid)
			return true;
	return false;
}

size_t manager_heap_bytes(void)
{
	struct mallinfo2 mi = mallinfo2();

	return mi.uordblks + mi.hblkhd;
}

int manager_fds_open(void)
{
	struct dirent *e;
	DIR *d = opendir("/proc/self/fd");
	int n = 0;

	if (!d)
		return -errno;
	while ((e = readdir(d)))
		n += e->d_name[0] != '.';
	closedir(d);
	return n - 1; /* the directory's own fd */
}

static unsigned long fd_limit(void)
{
	struct rlimit rl;

	return getrlimit(RLIMIT_NOFILE, &rl) == 0 ? (unsigned long)rl.rlim_cur : 0;
}

/* At RLIMIT_NOFILE (or the system's limit): one pending connection is accepted on the spare fd's
 * slot, told why, and closed. Returns 1 when one was refused, 0 when none was pending, or -EMFILE
 * when there is no spare to give up (it could not be opened again). */
static int refuse_for_fds(struct manager *m, int err)
{
	int fd;

	if (m->spare_fd < 0)
		m->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (m->spare_fd < 0)
		return -EMFILE;
	close(m->spare_fd);
	fd = accept4(m->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (fd >= 0) {
		struct client tmp = { .fd = fd };

		m->stats.fd_refusals++;
		log_ratelimited(LOG_WARNING, err, "Refused a connection: out of file descriptors "
				"(limit %lu, %u clients): %m", fd_limit(), m->nclients);
		send_error(&tmp, err, "tierd: out of file descriptors, try again later");
		close(fd);
	}
	m->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	return fd >= 0 ? 1 : 0;
}

static void on_accept(struct manager *m)
{
	for (int i = 0; i < 64; i++) {
		struct ucred cred;
		socklen_t cl = sizeof(cred);
		struct client *c;
		int fd;

		fd = accept4(m->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			int err = -errno;

			if (err == -EMFILE || err == -ENFILE) {
				int r = refuse_for_fds(m, err);

				if (r > 0)
					continue;
				if (r == 0)
					return;
				/* No spare: the connection stays queued; said, rate-limited. */
			}
			if (err != -EAGAIN && err != -EINTR)
				log_ratelimited(LOG_WARNING, err, "accept: %m");
			return;
		}
		if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) < 0) {
			close(fd);
			continue;
		}
		if (m->nclients >= m->cfg.max_clients || !peer_allowed(m, cred.uid, cred.gid)) {
			struct client tmp = { .fd = fd };
			bool full = m->nclients >= m->cfg.max_clients;

			m->stats.clients_refused++;
			log_ratelimited(LOG_WARNING, 0, "pid %d uid %u: refused (%s)", (int)cred.pid,
					cred.uid, full ? "too many clients" : "uid/gid not allowed");
			send_error(&tmp, full ? -EUSERS : -EACCES,
				   full ? "tierd: too many clients" : "tierd: uid/gid not allowed");
			close(fd);
			continue;
		}
		c = calloc(1, sizeof(*c));
		if (!c) {
			close(fd);
			continue;
		}
		c->watch = (struct watch){ WATCH_CLIENT, c };
		c->fd = fd;
		c->pid = cred.pid;
		c->uid = cred.uid;
		c->gid = cred.gid;
		c->id = ++m->next_id;
		peer_pidfd_at_accept(c);
		if (epoll_add(m, fd, EPOLLIN | EPOLLRDHUP, &c->watch) < 0) {
			close(fd);
			if (c->pidfd >= 0)
				close(c->pidfd);
			free(c);
			continue;
		}
		c->next = m->clients;
		m->clients = c;
		m->nclients++;
		c->accepted_usec = now_usec();
		if (!m->hello_pending++ ||
		    c->accepted_usec + (uint64_t)m->cfg.hello_timeout_ms * 1000u < m->hello_due_usec)
			m->hello_due_usec = c->accepted_usec + (uint64_t)m->cfg.hello_timeout_ms * 1000u;
		m->stats.clients_accepted++;
		log_debug("pid %d uid %u: connected as client %u", (int)c->pid, c->uid, c->id);
	}
}

static void on_hello(struct manager *m, struct client *c, const struct tierd_msg_hello *h)
{
	struct tierd_msg_welcome w = { .daemon_version = TIERD_PROTO_VERSION,
				       .heartbeat_ms = m->cfg.heartbeat_ms };
	int devfd = -1;

	if (c->hello_done) {
		manager_client_drop(m, c, "second HELLO");
		return;
	}
	c->hello_done = true;
	m->hello_pending--;
	if (h->flags & TIERD_HELLO_WANT_UFFD_DEV) {
		/* The client may not create a full uffd itself (vm.unprivileged_userfaultfd=0). The
		 * device only ever makes uffds for the caller's own mm, so handing it over grants
		 * nothing beyond tracking the client's own memory. */
		devfd = open(m->cfg.uffd_dev_path, O_RDWR | O_CLOEXEC);
		if (devfd >= 0)
			w.flags |= TIERD_HELLO_WANT_UFFD_DEV;
		else
			log_ratelimited(LOG_WARNING, -errno, "pid %d: cannot open %s for it: %m",
					(int)c->pid, m->cfg.uffd_dev_path);
	}
	proto_init(&w.hdr, TIERD_MSG_WELCOME, sizeof(w), h->hdr.seq);
	(void)manager_send(m, c, &w, sizeof(w), devfd >= 0 ? &devfd : NULL, devfd >= 0);
	if (devfd >= 0)
		close(devfd);
}

static void on_attach(struct manager *m, struct client *c, const struct tierd_msg_attach *msg,
		      int *fds)
{
	struct tierd_msg_attached rep = { 0 };
	struct attachment *a = NULL;
	char why[128] = "";
	int r;

	if (c->nattach >= m->cfg.max_attach_per_client) {
		r = -EMFILE;
		snprintf(why, sizeof(why), "too many attachments (limit %u)", m->cfg.max_attach_per_client);
	} else {
		r = attachment_new(m, c, msg, fds[0], fds[1], &a, why, sizeof(why));
	}
	if (r == 0) {
		c->ever_attached = true;
		/* The memfd now belongs to the segment (or was closed), the uffd to the attachment. */
		fds[0] = fds[1] = -1;
		rep.attach_id = a->id;
		rep.segment_id = a->seg->id;
		rep.registration = a->registration;
		log_info("pid %d seg %u: attached %s segment of %" PRIu64 " MiB (%s registration)",
			 (int)c->pid, a->seg->id, a->seg->kind == TIERD_SEG_HUGETLB ? "hugetlb" : "shmem",
			 a->length >> 20, a->registration == TIERD_REG_WHOLE ? "whole" : "per-window");
	} else {
		m->stats.attach_refused++;
		m->stats.attach_nomem += r == -ENOMEM;
		log_ratelimited(LOG_WARNING, r, "pid %d: attach refused: %s", (int)c->pid, why);
		snprintf(rep.reason, sizeof(rep.reason), "%s", why);
	}
	rep.status = r;
	proto_init(&rep.hdr, TIERD_MSG_ATTACHED, sizeof(rep), msg->hdr.seq);
	(void)manager_send(m, c, &rep, sizeof(rep), NULL, 0);
}

static struct attachment *client_attachment(struct client *c, uint32_t id)
{
	for (struct attachment *a = c->attachments; a; a = a->client_next)
		if (a->id == id)
			return a;
	return NULL;
}

static struct segment *segment_by_id(struct manager *m, uint32_t id)
{
	for (struct segment *s = m->segments; s; s = s->next)
		if (s->id == id)
			return s;
	return NULL;
}

static bool may_read_segment(const struct client *c, const struct segment *seg)
{
	if (c->uid == 0)
		return true;
	for (const struct attachment *a = seg->attachments; a; a = a->seg_next)
		if (a->client->uid == c->uid)
			return true;
	return false;
}

static void on_heat_query(struct manager *m, struct client *c, const struct tierd_msg_heat_query *q)
{
	static uint8_t buf[TIERD_MSG_MAX_BYTES];
	struct tierd_msg_heat_reply *rep = (struct tierd_msg_heat_reply *)buf;
	struct segment *seg = segment_by_id(m, q->segment_id);
	uint8_t *bits = buf + sizeof(*rep);
	uint64_t n = 0;
	size_t len;

	memset(buf, 0, sizeof(*rep));
	if (!seg) {
		rep->status = -ENOENT;
	} else if (!may_read_segment(c, seg)) {
		rep->status = -EACCES;
	} else if (q->first_page < seg->npages) {
		n = seg->npages - q->first_page;
		if (n > TIERD_HEAT_MAX_PAGES)
			n = TIERD_HEAT_MAX_PAGES;
		memset(bits, 0, (n + 7) / 8);
		for (uint64_t i = 0; i < n; i++)
			if (region_set_score(&seg->regions, q->first_page + i) >= m->cfg.hot_threshold)
				bits[i >> 3] |= (uint8_t)(1u << (i & 7));
	}
	if (seg && rep->status == 0) {
		rep->total_pages = seg->npages;
		rep->faults = seg->faults;
	}
	rep->segment_id = q->segment_id;
	rep->first_page = q->first_page;
	rep->npages = n;
	rep->epoch = m->epoch;
	len = sizeof(*rep) + (n + 7) / 8;
	proto_init(&rep->hdr, TIERD_MSG_HEAT_REPLY, (uint32_t)len, q->hdr.seq);
	(void)manager_send(m, c, rep, len, NULL, 0);
}

/* Appends to a bounded buffer; returns false once it is full. */
static bool json_add(char *buf, size_t cap, size_t *len, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static bool json_add(char *buf, size_t cap, size_t *len, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (*len >= cap)
		return false;
	va_start(ap, fmt);
	n = vsnprintf(buf + *len, cap - *len, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= cap - *len) {
		*len = cap;
		return false;
	}
	*len += (size_t)n;
	return true;
}

#define STATUS_MAX_CLIENTS 64

static void on_status(struct manager *m, struct client *c, const struct tierd_msg_hdr *q)
{
	static char buf[TIERD_MSG_MAX_BYTES];
	struct tierd_msg_hdr *hdr = (struct tierd_msg_hdr *)buf;
	char *js = buf + sizeof(*hdr);
	/* Keep room to close the document when the segment list is cut short. */
	size_t cap = sizeof(buf) - sizeof(*hdr) - 64, len = 0;
	const struct manager_stats *s = &m->stats;
	bool first = true, cut = false;
	char policy_js[700], samplers_js[4096];
	unsigned nlisted;

	manager_policy_status(m, policy_js, sizeof(policy_js));
	manager_bpf_status(m, samplers_js, sizeof(samplers_js));

	json_add(js, cap, &len,
		 "{\"version\":%u,\"pid\":%d,\"uptime_s\":%.1f,\"epoch\":%u,\"numa_nodes\":%d,"
		 "\"config\":{\"epoch_ms\":%u,\"max_windows\":%u,\"rate_limit_mbps\":%u,"
		 "\"migration_mode\":\"%s\",\"migration_enabled\":%s},"
		 "\"clients\":%u,\"stats\":{\"faults\":%" PRIu64 ",\"first_touch_faults\":%" PRIu64
		 ",\"continue_eexist\":%" PRIu64 ",\"continue_retries\":%" PRIu64
		 ",\"continue_failed\":%" PRIu64 ",\"continue_drops\":%" PRIu64
		 ",\"continue_absent\":%" PRIu64
		 ",\"wake_after_unregister\":%" PRIu64 ",\"windows_armed\":%" PRIu64
		 ",\"windows_closed\":%" PRIu64 ",\"zaps_sent\":%" PRIu64 ",\"zaps_skipped\":%" PRIu64 ",\"zaps_rested\":%" PRIu64 ",\"zap_acks\":%" PRIu64
		 ",\"zap_errors\":%" PRIu64 ",\"zap_acks_stale\":%" PRIu64
		 ",\"faults_outside\":%" PRIu64 ",\"clients_accepted\":%" PRIu64
		 ",\"clients_refused\":%" PRIu64 ",\"clients_dropped\":%" PRIu64
		 ",\"attach_refused\":%" PRIu64 ",\"register_errors\":%" PRIu64 "},\"tiers\":%u,\"migration\":{\"enabled\":%s"
		 ",\"promoted\":%" PRIu64 ",\"demoted\":%" PRIu64 ",\"bytes_moved\":%" PRIu64
		 ",\"move_calls\":%" PRIu64 ",\"move_usec\":%" PRIu64 ",\"failed_nomem\":%" PRIu64 ",\"failed_busy\":%" PRIu64
		 ",\"failed_access\":%" PRIu64 ",\"failed_noent\":%" PRIu64 ",\"failed_other\":%" PRIu64
		 ",\"mode\":\"%s\",\"batches\":%" PRIu64 ",\"batch_timeouts\":%" PRIu64
		 ",\"faults_held\":%" PRIu64 ",\"move_all_fallback\":%" PRIu64 ",\"held_mems\":%" PRIu64
		 ",\"passes\":%" PRIu64
		 ",\"pass_usec_last\":%" PRIu64 ",\"pass_usec_max\":%" PRIu64 "},\"policy\":%s,"
		 "\"recording\":%s,\"mode\":\"%s\",\"events\":%" PRIu64 ",\"samplers\":%s,",
		 TIERD_PROTO_VERSION, (int)getpid(), (double)(now_usec() - m->started_usec) / 1e6,
		 m->epoch, m->topo.nnodes, m->cfg.epoch_ms, m->cfg.max_windows, m->cfg.rate_limit_mbps,
		 m->cfg.migrate_how == MIGRATE_ZAPPED ? "zap" : "mapped", m->cfg.migrate ? "true" : "false", m->nclients, s->faults, s->first_touch_faults,
		 s->continue_eexist, s->continue_retries, s->continue_failed, s->continue_drops,
		 s->continue_absent, s->wake_after_unregister, s->windows_armed,
		 s->windows_closed, s->zaps_sent, s->zaps_skipped, s->zaps_rested, s->zap_acks, s->zap_errors,
		 s->zap_acks_stale, s->faults_outside, s->clients_accepted,
		 s->clients_refused, s->clients_dropped, s->attach_refused, s->register_errors,
		 m->topo.ntiers, m->cfg.migrate && m->topo.ntiers > 1 ? "true" : "false",
		 m->mstats.promoted, m->mstats.demoted, m->mstats.bytes_moved, m->mstats.calls, m->mstats.move_usec,
		 m->mstats.err_nomem, m->mstats.err_busy, m->mstats.err_access, m->mstats.err_noent,
		 m->mstats.err_other + m->mstats.err_fault,
		 m->cfg.migrate_how == MIGRATE_ZAPPED ? "zap" : "mapped", s->batches, s->batch_timeouts,
		 s->faults_held, m->mstats.fallback_pages, m->mstats.held_mems, m->mstats.passes, m->mstats.pass_usec_last,
		 m->mstats.pass_usec_max, policy_js, m->trace ? "true" : "false",
		 config_mode_name(m->cfg.mode), m->events_next, samplers_js);
	json_add(js, cap, &len,
		 "\"resources\":{\"heap_bytes\":%zu,\"fds_open\":%d,\"fd_limit\":%lu,"
		 "\"fd_refusals\":%" PRIu64 ",\"attach_nomem\":%" PRIu64 "},",
		 manager_heap_bytes(), manager_fds_open(), fd_limit(), s->fd_refusals, s->attach_nomem);
	json_add(js, cap, &len,
		 "\"privileges\":{\"uid\":%u,\"capabilities\":\"%s\",\"dropped\":%u,"
		 "\"bounding_set\":%s,\"no_new_privs\":%s},",
		 (unsigned)geteuid(), m->privs.no_new_privs ? m->privs.kept : "all (not dropped)",
		 m->privs.dropped, m->privs.bounding ? "true" : "false",
		 m->privs.no_new_privs ? "true" : "false");
	json_add(js, cap, &len, "\"misbehaving\":{\"hello_timeouts\":%" PRIu64
		 ",\"attach_peer_exited\":%" PRIu64 "},", s->hello_timeouts, s->attach_peer_exited);
	/* The tiers, node by node (tierctl tiers), and the clients (tierctl clients). */
	json_add(js, cap, &len, "\"tier_list\":[");
	for (unsigned t = 0; t < m->topo.ntiers; t++) {
		json_add(js, cap, &len, "%s{\"tier\":%u,\"tracked_bytes\":%" PRIu64 ",\"nodes\":[",
			 t ? "," : "", t, t < TIERD_MAX_TIERS ? m->tier_used[t] : 0);
		for (unsigned i = 0; i < m->topo.tier_size[t]; i++) {
			const struct tier_node *n = tiers_node(&m->topo, m->topo.tier_nodes[t][i]);

			if (n)
				json_add(js, cap, &len,
					 "%s{\"node\":%d,\"cpus\":%s,\"total_bytes\":%" PRIu64
					 ",\"free_bytes\":%" PRIu64 ",\"huge_2m_total\":%" PRIu64
					 ",\"huge_2m_free\":%" PRIu64 ",\"distance\":%u}",
					 i ? "," : "", n->id, n->has_cpus ? "true" : "false", n->total_bytes,
					 n->free_bytes, n->huge_total_2m, n->huge_free_2m, n->cpu_distance);
		}
		json_add(js, cap, &len, "]}");
	}
	/* At most STATUS_MAX_CLIENTS (the newest): the document must leave room for the segments,
	 * and a thousand idle connections say nothing that "clients" does not. A requester other
	 * than root sees its own uid's clients and the segments it may read (as HEAT_QUERY): other
	 * users' pids and what their memory does are theirs; the totals above stay for everyone. */
	json_add(js, cap, &len, "],\"scope\":\"%s\",\"client_list\":[", c->uid ? "own" : "all");
	nlisted = 0;
	const struct client *cl = m->clients;
	for (; cl && nlisted < STATUS_MAX_CLIENTS; cl = cl->next) {
		uint64_t faults = 0;

		if (c->uid && cl->uid != c->uid)
			continue;
		for (const struct attachment *a = cl->attachments; a; a = a->client_next)
			faults += a->faults;
		json_add(js, cap, &len,
			 "%s{\"id\":%u,\"pid\":%d,\"uid\":%u,\"attachments\":%u,\"faults\":%" PRIu64 "}",
			 nlisted ? "," : "", cl->id, (int)cl->pid, (unsigned)cl->uid, cl->nattach, faults);
		nlisted++;
	}
	while (cl && c->uid && cl->uid != c->uid)
		cl = cl->next; /* what is left unlisted counts only if the requester may see it */
	json_add(js, cap, &len, "],\"client_list_truncated\":%s,\"segments\":[",
		 cl ? "true" : "false");
	for (const struct segment *seg = m->segments; seg && !cut; seg = seg->next) {
		char nodes[SEG_MAX_NODES * 24] = "";
		size_t nl = 0;
		uint64_t hot = 0;

		if (!may_read_segment(c, seg))
			continue;

		for (size_t i = 0; i < seg->regions.n; i++)
			if (seg->regions.r[i].score >= m->cfg.hot_threshold)
				hot += seg->regions.r[i].end - seg->regions.r[i].start;
		for (unsigned i = 0; i < m->topo.nnodes && i < SEG_MAX_NODES; i++) {
			int id = m->topo.nodes[i].id;

			if (id < SEG_MAX_NODES)
				json_add(nodes, sizeof(nodes), &nl, "%s\"%d\":%" PRIu64, nl ? "," : "", id,
					 seg->pages_on_node[id]);
		}
		cut = !json_add(js, cap, &len,
				"%s{\"id\":%u,\"kind\":\"%s\",\"size_bytes\":%" PRIu64
				",\"page_size\":%" PRIu64 ",\"pages\":%" PRIu64 ",\"attachments\":%u"
				",\"faults\":%" PRIu64 ",\"first_touch_faults\":%" PRIu64
				",\"regions\":%zu,\"hot_pages\":%" PRIu64 ",\"windows_open\":%zu"
				",\"pages_on_node\":{%s}}",
				first ? "" : ",", seg->id,
				seg->kind == TIERD_SEG_HUGETLB ? "hugetlb" : "shmem", seg->size_bytes,
				seg->page_size, seg->npages, seg->nattach, seg->faults,
				seg->first_touch_faults, seg->regions.n, hot, seg->nwindows, nodes);
		first = false;
	}
	if (cut) {
		/* Drop the partial entry: back up to the last complete one. */
		char *p = strrchr(js, '}');

		len = p ? (size_t)(p - js) + 1 : len;
		if (len > cap)
			len = cap;
	}
	len += (size_t)snprintf(js + len, 64, "],\"truncated\":%s}", cut ? "true" : "false");
	proto_init(hdr, TIERD_MSG_STATUS_REPLY, (uint32_t)(sizeof(*hdr) + len + 1), q->seq);
	(void)manager_send(m, c, buf, sizeof(*hdr) + len + 1, NULL, 0);
}

static uint8_t control_buf[TIERD_MSG_MAX_BYTES];

static void control_reply(struct manager *m, struct client *c, uint64_t seq, int status,
			  const char *text)
{
	struct tierd_msg_control_reply *rep = (struct tierd_msg_control_reply *)control_buf;
	size_t room = sizeof(control_buf) - sizeof(*rep), len;

	if ((char *)(rep + 1) != text) /* the metrics are written in place */
		snprintf((char *)(rep + 1), room, "%s", text);
	control_buf[sizeof(control_buf) - 1] = '\0';
	len = sizeof(*rep) + strlen((char *)(rep + 1)) + 1;
	rep->status = status;
	rep->reserved = 0;
	proto_init(&rep->hdr, TIERD_MSG_CONTROL_REPLY, (uint32_t)len, seq);
	(void)manager_send(m, c, rep, len, NULL, 0);
}

/* tierctl's operations. Root only: they change what tierd does for every client. */
static void on_control(struct manager *m, struct client *c, const void *buf, size_t len, int *fds)
{
	const struct tierd_msg_control *q = buf;
	const char *args[TIERD_CONTROL_MAX_ARGS];
	struct tierd_policy_param params[TIERD_CONTROL_MAX_ARGS];
	char why[300], kv[TIERD_CONTROL_MAX_ARGS][256];
	int nargs, r = 0;

	if (q->op == TIERD_CTL_METRICS || q->op == TIERD_CTL_EVENTS || q->op == TIERD_CTL_CONFIG) {
		/* Reading only: anyone who reached the socket. Written in place, up to 64 KiB. */
		char *text = (char *)control_buf + sizeof(struct tierd_msg_control_reply);
		size_t room = sizeof(control_buf) - sizeof(struct tierd_msg_control_reply);

		if (q->op == TIERD_CTL_METRICS) {
			r = manager_metrics(m, text, room);
			if (r < 0)
				snprintf(text, 64, "metrics larger than a message");
		} else if (q->op == TIERD_CTL_EVENTS) {
			r = 0;
			events_format(m, q->arg, text, room);
		} else {
			FILE *f = fmemopen(text, room, "w");

			r = f ? 0 : -ENOMEM;
			if (f) {
				config_dump(&m->cfg, f);
				fputc('\0', f);
				fclose(f);
			}
			text[room - 1] = '\0';
		}
		control_reply(m, c, q->hdr.seq, r < 0 ? r : 0, text);
		return;
	}
	if (c->uid != 0) {
		control_reply(m, c, q->hdr.seq, -EPERM, "only root may change what tierd does");
		return;
	}
	nargs = proto_control_args(buf, len, args);
	if (nargs == -E2BIG) {
		control_reply(m, c, q->hdr.seq, -E2BIG, "too many arguments");
		return;
	}
	if (nargs < 0) {
		control_reply(m, c, q->hdr.seq, -EPROTO, "arguments are not NUL-terminated strings");
		return;
	}
	switch (q->op) {
	case TIERD_CTL_POLICY_SET: {
		int n;

		if (nargs < 1) {
			control_reply(m, c, q->hdr.seq, -EINVAL, "policy set: which policy?");
			return;
		}
		for (int i = 1; i < nargs; i++)
			snprintf(kv[i - 1], sizeof(kv[0]), "%s", args[i]);
		{
			char *ptrs[TIERD_CONTROL_MAX_ARGS];

			for (int i = 0; i + 1 < nargs; i++)
				ptrs[i] = kv[i];
			n = policy_parse_params(ptrs, (size_t)nargs - 1, params, why, sizeof(why));
		}
		if (n >= 0)
			r = manager_policy_switch(m, args[0], params, (size_t)n, why, sizeof(why));
		else
			r = n;
		if (r == 0)
			snprintf(why, sizeof(why), "policy %s running", args[0]);
		else
			log_warning("tierctl (pid %d): policy set %s refused: %s", (int)c->pid, args[0], why);
		break;
	}
	case TIERD_CTL_RECORD_START:
		if (!fds || fds[0] < 0) {
			r = -EBADF;
			snprintf(why, sizeof(why), "record: no trace file passed");
			break;
		}
		r = manager_record_start(m, fds[0], q->arg, why, sizeof(why));
		fds[0] = -1; /* manager_record_start() owns it, whatever happened */
		if (r == 0)
			snprintf(why, sizeof(why), "recording");
		break;
	case TIERD_CTL_RECORD_STOP:
		if (!m->trace) {
			r = -ENOENT;
			snprintf(why, sizeof(why), "not recording");
			break;
		}
		manager_record_stop(m);
		snprintf(why, sizeof(why), "recording stopped");
		break;
	case TIERD_CTL_MODE: {
		struct tierd_config n = m->cfg;

		if (q->nargs != 1 || config_set(&n, "policy", "mode", args[0], why, sizeof(why)) < 0) {
			r = -EINVAL;
			if (q->nargs != 1)
				snprintf(why, sizeof(why), "mode: enforce, advise or observe?");
			break;
		}
		if (n.mode != m->cfg.mode)
			log_notice("Mode %s (was %s), by pid %d", config_mode_name(n.mode),
				   config_mode_name(m->cfg.mode), (int)c->pid);
		m->cfg.mode = n.mode;
		snprintf(why, sizeof(why), "mode %s", config_mode_name(n.mode));
		break;
	}
	case TIERD_CTL_RELEASE_ALL: {
		unsigned n = 0;

		/* Fail open on purpose: every client that holds memory is dropped, which releases
		 * all its faults and registrations; libtier re-attaches after its backoff. */
		log_notice("Releasing every client, by pid %d", (int)c->pid);
		for (struct client *cl = m->clients, *next; cl; cl = next) {
			next = cl->next;
			if (cl != c && cl->nattach && !cl->dead) {
				manager_client_drop(m, cl, "released by tierctl release --all");
				n++;
			}
		}
		snprintf(why, sizeof(why), "released %u client(s)", n);
		break;
	}
	default:
		r = -EOPNOTSUPP;
		snprintf(why, sizeof(why), "unknown control operation %u", q->op);
		break;
	}
	control_reply(m, c, q->hdr.seq, r, why);
}

static void on_client_message(struct manager *m, struct client *c, void *buf, size_t len, int *fds,
			      unsigned nfds)
{
	const struct tierd_msg_hdr *h = buf;
	int r = proto_validate(buf, len);

	if (r < 0 || nfds != proto_fd_count(h->type)) {
		char why[96];

		snprintf(why, sizeof(why), "protocol error: %s",
			 r < 0 ? strerror(-r) : "wrong number of fds for the message");
		send_error(c, r < 0 ? r : -EBADMSG, why);
		manager_client_drop(m, c, why);
		return;
	}
	if (!c->hello_done && h->type != TIERD_MSG_HELLO) {
		send_error(c, -EPROTO, "HELLO expected first");
		manager_client_drop(m, c, "message before HELLO");
		return;
	}
	switch (h->type) {
	case TIERD_MSG_HELLO:
		on_hello(m, c, buf);
		break;
	case TIERD_MSG_ATTACH:
		on_attach(m, c, buf, fds);
		break;
	case TIERD_MSG_ZAP_DONE: {
		const struct tierd_msg_zap_done *d = buf;
		struct attachment *a = client_attachment(c, d->attach_id);

		if (!a || !a->zaps_in_flight || h->seq <= a->zap_seq_acked || h->seq > a->zap_seq_sent) {
			m->stats.zap_acks_stale++;
			break;
		}
		a->zaps_in_flight--;
		a->zap_seq_acked = h->seq;
		if (a->batch_waiting && h->seq == a->batch_seq)
			a->batch_waiting = false; /* its batch may move (manager_batches_poll) */
		m->stats.zap_acks++;
		if (d->status < 0)
			m->stats.zap_errors++;
		break;
	}
	case TIERD_MSG_PING: {
		struct tierd_msg_ping p = *(const struct tierd_msg_ping *)buf;

		proto_init(&p.hdr, TIERD_MSG_PONG, sizeof(p), h->seq);
		(void)manager_send(m, c, &p, sizeof(p), NULL, 0);
		break;
	}
	case TIERD_MSG_DETACH: {
		struct attachment *a = client_attachment(c, ((const struct tierd_msg_detach *)buf)->attach_id);

		if (a)
			attachment_release(m, a);
		break;
	}
	case TIERD_MSG_HEAT_QUERY:
		on_heat_query(m, c, buf);
		break;
	case TIERD_MSG_STATUS_QUERY:
		on_status(m, c, h);
		break;
	case TIERD_MSG_CONTROL:
		on_control(m, c, buf, len, NULL);
		break;
	case TIERD_MSG_CONTROL_FD:
		on_control(m, c, buf, len, fds);
		break;
	default:
		send_error(c, -EBADMSG, "message type not accepted from clients");
		manager_client_drop(m, c, "unexpected message type");
		break;
	}
}

static void on_client(struct manager *m, struct client *c, uint32_t events)
{
	static uint8_t buf[TIERD_MSG_MAX_BYTES];

	/* A bounded batch per wake-up: a flooding client cannot starve the fault path. */
	for (int i = 0; i < 32 && !c->dead; i++) {
		int fds[PROTO_MAX_FDS];
		unsigned nfds = 0;
		ssize_t n = proto_recv(c->fd, buf, sizeof(buf), fds, &nfds);

		if (n == -EAGAIN)
			break;
		if (n == -EMFILE) {
			/* The fds it sent could not be installed: tierd is at its fd limit. It is told
			 * so (libtier retries later); one holding attachments keeps them. */
			m->stats.fd_refusals++;
			log_ratelimited(LOG_WARNING, (int)n, "pid %d client %u: refused its message with "
					"fds: out of file descriptors (limit %lu): %m", (int)c->pid, c->id,
					fd_limit());
			send_error(c, -EMFILE, "tierd: out of file descriptors, try again later");
			if (c->nattach == 0)
				manager_client_drop(m, c, "tierd out of file descriptors");
			continue;
		}
		if (n <= 0) {
			manager_client_drop(m, c, n == 0 || n == -ECONNRESET ? "disconnected" :
						  n == -EMSGSIZE ? "oversized message or fds" :
								   "receive error");
			return;
		}
		log_context_set(c->pid, 0, -1);
		on_client_message(m, c, buf, (size_t)n, fds, nfds);
		log_context_clear();
		proto_close_fds(fds, nfds); /* whatever the handler did not take */
	}
	if (!c->dead && (events & (EPOLLHUP | EPOLLERR)))
		manager_client_drop(m, c, "hung up");
}

static void on_timer(struct manager *m)
{
	uint64_t ticks;

	if (read(m->timer_fd, &ticks, sizeof(ticks)) != sizeof(ticks))
		return;
	manager_epoch(m);
}

/* The watchdog is fed from the loop that serves faults, so it proves that loop runs; the loop
 * wakes at least every third of the watchdog's time to do it, whatever the epoch length. */
static int watchdog_timeout_ms(struct manager *m, int timeout_ms)
{
	int w = (int)(m->watchdog_usec / 3000);

	if (!m->watchdog_usec)
		return timeout_ms;
	return timeout_ms < 0 || w < timeout_ms ? w : timeout_ms;
}

/*
 * Connections that sent no HELLO within hello_timeout_ms are closed: max_clients idle
 * connections would otherwise lock every client out for as long as they stay open. Looks at the
 * clients only when the earliest deadline has passed.
 */
static void hello_sweep(struct manager *m)
{
	uint64_t now, limit = (uint64_t)m->cfg.hello_timeout_ms * 1000u, due = UINT64_MAX;

	if (!m->hello_pending)
		return;
	now = now_usec();
	if (now < m->hello_due_usec)
		return;
	for (struct client *c = m->clients, *next; c; c = next) {
		next = c->next; /* a dropped client is unlinked (and freed after the batch) */
		if (c->hello_done || c->dead)
			continue;
		if (now - c->accepted_usec < limit) {
			if (c->accepted_usec + limit < due)
				due = c->accepted_usec + limit;
			continue;
		}
		m->stats.hello_timeouts++;
		log_ratelimited(LOG_WARNING, 0, "pid %d uid %u client %u: no HELLO within %u ms, closed "
				"(%" PRIu64 " so far)", (int)c->pid, c->uid, c->id, m->cfg.hello_timeout_ms,
				m->stats.hello_timeouts);
		send_error(c, -ETIMEDOUT, "tierd: no HELLO in time");
		manager_client_drop(m, c, "no HELLO in time");
	}
	m->hello_due_usec = due;
}

/* epoll_wait's timeout: a batch out is polled every BATCH_POLL_MS, a connection without HELLO
 * is closed when its time is up, and the watchdog is fed. */
static int loop_timeout_ms(struct manager *m)
{
	int t = m->batches_active ? BATCH_POLL_MS : -1;

	if (m->hello_pending) {
		uint64_t now = now_usec(), ms = 0;
		int h;

		if (m->hello_due_usec > now)
			ms = (m->hello_due_usec - now + 999) / 1000; /* not a moment before it */
		h = ms < 600000 ? (int)ms : 600000;

		if (t < 0 || h < t)
			t = h;
	}
	return watchdog_timeout_ms(m, t);
}

/* systemd's one-line STATUS= (systemctl status): refreshed every STATUS_EVERY_USEC when it
 * changed. */
#define STATUS_EVERY_USEC 2000000u
static void status_line(struct manager *m, bool force)
{
	char line[256];
	uint64_t now = now_usec(), tracked = 0;
	unsigned nseg = 0;

	if (!force && now - m->status_usec < STATUS_EVERY_USEC)
		return;
	m->status_usec = now;
	for (const struct segment *s = m->segments; s; s = s->next, nseg++)
		tracked += s->size_bytes;
	snprintf(line, sizeof(line),
		 "%u client(s), %u segment(s), %.0f MiB tracked, %.0f MiB on the fast tier; policy %s "
		 "(%s)%s; %" PRIu64 " pages moved",
		 m->nclients, nseg, (double)tracked / 1048576.0,
		 (double)m->tier_used[0] / 1048576.0, m->policy ? policy_name(m->policy) : "none",
		 config_mode_name(m->cfg.mode), m->policy_failed_why[0] ? ", one was disabled" : "",
		 m->mstats.promoted + m->mstats.demoted);
	if (strcmp(line, m->status_text)) {
		snprintf(m->status_text, sizeof(m->status_text), "%s", line);
		sd_notifyf(0, "STATUS=%s", line);
	}
}

static void watchdog_feed(struct manager *m)
{
	uint64_t now;

	if (!m->watchdog_usec)
		return;
	now = now_usec();
	if (now - m->watchdog_fed_usec >= m->watchdog_usec / 3) {
		sd_notify(0, "WATCHDOG=1");
		m->watchdog_fed_usec = now;
	}
}

/*
 * SIGHUP: the configuration is read again, all or nothing. What the loop can change at once is
 * applied; the socket and the registration strategy keep their values until a restart (said).
 */
static void manager_reload(struct manager *m)
{
	struct tierd_config n;
	struct itimerspec its = { 0 };

	if (!m->reload) {
		log_info("Reload requested: no configuration to reload");
		return;
	}
	if (m->reload(&n) < 0) {
		log_error("Reload failed (above); the running configuration stays in force");
		return;
	}
	/* The policy restarts when its name or parameters changed, or when it was disabled: a
	 * reload is how an operator says "try again". It goes first: a policy that does not start
	 * (its parameters refused) fails the whole reload, so nothing of the new file applies. */
	if (strcmp(n.policy_name, m->cfg.policy_name) || strcmp(n.policy_dir, m->cfg.policy_dir) ||
	    n.n_policy_params != m->cfg.n_policy_params ||
	    memcmp(n.policy_params, m->cfg.policy_params,
		   n.n_policy_params * sizeof(n.policy_params[0])) ||
	    m->policy_failed_why[0]) {
		struct tierd_config old = m->cfg;
		char why[300];
		int r;

		/* The new policy reads its parameters, module directory and epoch from m->cfg. */
		snprintf(m->cfg.policy_dir, sizeof(m->cfg.policy_dir), "%s", n.policy_dir);
		m->cfg.epoch_ms = n.epoch_ms;
		m->cfg.n_policy_params = n.n_policy_params;
		memcpy(m->cfg.policy_params, n.policy_params, sizeof(n.policy_params));
		r = manager_policy_switch(m, n.policy_name, NULL, 0, why, sizeof(why));
		if (r < 0) {
			m->cfg = old;
			log_error("Reload failed: policy %s does not start: %s; the running configuration "
				  "(policy %s) stays in force", n.policy_name, why,
				  m->policy ? policy_name(m->policy) : "none");
			return;
		}
	}
	if (strcmp(n.socket_path, m->cfg.socket_path) || n.socket_mode != m->cfg.socket_mode ||
	    n.socket_gid != m->cfg.socket_gid)
		log_warning("Reload: daemon.socket, socket_mode and socket_group change only at restart "
			    "(still %s)", m->cfg.socket_path);
	if (n.shmem_register_whole != m->cfg.shmem_register_whole)
		log_warning("Reload: clients.shmem_registration changes only at restart");
	if (n.bpf != m->cfg.bpf || n.bpf_map_entries != m->cfg.bpf_map_entries ||
	    n.bpf_seen_pages != m->cfg.bpf_seen_pages || n.bpf_percpu_pages != m->cfg.bpf_percpu_pages ||
	    n.perf != m->cfg.perf ||
	    n.perf_software != m->cfg.perf_software || n.perf_period != m->cfg.perf_period)
		log_warning("Reload: sampling.bpf* and perf* change only at restart");
	n.bpf = m->cfg.bpf;
	n.bpf_map_entries = m->cfg.bpf_map_entries;
	n.bpf_seen_pages = m->cfg.bpf_seen_pages;
	n.bpf_percpu_pages = m->cfg.bpf_percpu_pages;
	n.perf = m->cfg.perf;
	n.perf_software = m->cfg.perf_software;
	n.perf_period = m->cfg.perf_period;
	snprintf(n.socket_path, sizeof(n.socket_path), "%s", m->cfg.socket_path);
	n.socket_mode = m->cfg.socket_mode;
	n.socket_gid = m->cfg.socket_gid;
	n.shmem_register_whole = m->cfg.shmem_register_whole;
	n.sysfs_root = m->cfg.sysfs_root;
	clamp_windows(&n); /* vm.max_map_count, as at start */
	if (n.epoch_ms != m->cfg.epoch_ms) {
		its.it_value.tv_sec = its.it_interval.tv_sec = n.epoch_ms / 1000;
		its.it_value.tv_nsec = its.it_interval.tv_nsec = (long)(n.epoch_ms % 1000) * 1000000L;
		if (timerfd_settime(m->timer_fd, 0, &its, NULL) < 0) {
			log_error_errno(-errno, "Reload: setting the epoch timer: %m; keeping %u ms",
					m->cfg.epoch_ms);
			n.epoch_ms = m->cfg.epoch_ms;
		}
	}
	m->cfg = n;
	m->hello_due_usec = 0; /* clients.hello_timeout_ms may have changed: the next sweep recomputes */
	log_info("Configuration reloaded (epoch %u ms, %u windows, migration %s, mode %s, rate %u MB/s)",
		 n.epoch_ms, n.max_windows, n.migrate ? "on" : "off",
		 n.migrate_how == MIGRATE_ZAPPED ? "zap" : "mapped", n.rate_limit_mbps);
}

static void on_signal(struct manager *m)
{
	struct signalfd_siginfo si;

	while (read(m->signal_fd, &si, sizeof(si)) == sizeof(si)) {
		switch (si.ssi_signo) {
		case SIGTERM:
		case SIGINT:
			log_info("Received %s, releasing all clients and exiting",
				 si.ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT");
			m->quit = true;
			break;
		case SIGHUP:
			sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%" PRIu64, now_usec());
			manager_reload(m);
			sd_notify(0, "READY=1");
			break;
		}
	}
}

int manager_run(struct manager *m)
{
	struct epoll_event evs[64];

	if (sd_watchdog_enabled(0, &m->watchdog_usec) <= 0)
		m->watchdog_usec = 0;
	sd_notify(0, "READY=1");
	status_line(m, true);
	log_info("tierd ready on %s (epoch %u ms, %u windows/epoch, %u NUMA node(s) in %u tier(s))",
		 m->own_socket ? m->cfg.socket_path : "the systemd socket", m->cfg.epoch_ms,
		 m->cfg.max_windows, m->topo.nnodes, m->topo.ntiers);
	while (!m->quit) {
		/* A migration batch out wakes the loop on its own: its deadline must not wait for
		 * the next epoch (which --epoch-ms may put seconds away) while faults are held. */
		int n = epoll_wait(m->epfd, evs, 64, loop_timeout_ms(m));

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return log_error_errno(-errno, "epoll_wait: %m");
		}
		for (int i = 0; i < n; i++) {
			struct watch *w = evs[i].data.ptr;

			switch (w->kind) {
			case WATCH_UFFD: {
				struct attachment *a = w->obj;

				if (!a->dead)
					attachment_handle_uffd(m, a);
				break;
			}
			case WATCH_CLIENT: {
				struct client *c = w->obj;

				if (!c->dead)
					on_client(m, c, evs[i].events);
				break;
			}
			case WATCH_LISTEN:
				on_accept(m);
				break;
			case WATCH_TIMER:
				on_timer(m);
				break;
			case WATCH_SIGNAL:
				on_signal(m);
				break;
			case WATCH_BPF:
				manager_bpf_loaded(m);
				break;
			}
		}
		manager_batches_poll(m);
		hello_sweep(m);
		reap(m);
		watchdog_feed(m);
		status_line(m, false);
	}
	sd_notify(0, "STOPPING=1");
	return 0;
}

struct manager *manager_free(struct manager *m)
{
	if (!m)
		return NULL;
	while (m->clients)
		manager_client_drop(m, m->clients, NULL);
	reap(m);
	if (m->listen_fd >= 0) {
		close(m->listen_fd);
		if (m->own_socket)
			(void)unlink(m->cfg.socket_path);
	}
	if (m->spare_fd >= 0)
		close(m->spare_fd);
	if (m->timer_fd >= 0)
		close(m->timer_fd);
	if (m->signal_fd >= 0)
		close(m->signal_fd);
	if (m->epfd >= 0)
		close(m->epfd);
	manager_record_stop(m);
	manager_bpf_stop(m);
	manager_policy_flush(m);
	policy_close(m->policy);
	if (m->decision_log)
		fclose(m->decision_log);
	free(m->events);
	free(m->segviews);
	free(m->promote);
	free(m->demote);
	free(m->pwindows);
	free(m->cands);
	free(m->pagebuf);
	free(m);
	return NULL;
}
