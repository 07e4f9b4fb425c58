/* SPDX-License-Identifier: MIT */
/*
 * Attachments (one per process mapping of a segment): validation at attach time, the minor-fault
 * path (record heat, UFFDIO_CONTINUE), and the sampling windows each epoch.
 *
 * Registration strategy (ARCHITECTURE.md §2): for 4K shmem tierd registers only the armed windows,
 * from its side, on the client's uffd (REG_WINDOWS) — memory outside windows keeps ordinary kernel
 * faults with fault-around, and forked children start unregistered. A window closes with
 * UFFDIO_UNREGISTER followed by UFFDIO_WAKE (UNREGISTER alone leaves blocked faults blocked). For
 * hugetlb the whole mapping is registered once (REG_WHOLE: per-window registration would fragment
 * hugetlb VMAs for good) and a window closes by UFFDIO_CONTINUE on the pages that were zapped and
 * not touched.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "../lib/proto.h"
#include "../lib/uffd.h"
#include "log.h"
#include "host.h"
#include "manager.h"
#include "mems.h"

/* An idle attachment is armed every 2^IDLE_MAX_SHIFT epochs at least (manager.h, struct
 * attachment). */
#define IDLE_MAX_SHIFT 4

/* (window, attachment) pairs armed per epoch, all segments together. Each costs a
 * UFFDIO_REGISTER now and an UNREGISTER + WAKE at close (3-15 us each) and the client a zap: with
 * 1000 processes attached to one segment, arming every window in every one of them took tierd
 * longer than an epoch (tests/kernel/test_scale.c; docs/reliability.md). Beyond this budget a
 * segment's attachments take the windows in turn, epoch after epoch: they share the pages, so the
 * heat of a page is seen through any of them. */
#define ARM_PAIRS_PER_EPOCH 256u

/* A CONTINUE that keeps answering EAGAIN (mmap changing under it) is retried this often, then the
 * thread is woken to fault again: it can never be left blocked. */
#define CONTINUE_MAX_RETRIES 16
/* Failed UFFDIO_CONTINUEs in a row on one attachment after which tierd lets go of the client: a
 * fault that cannot be resolved is woken and faults again at once, so an error that persists
 * (found with tests/helpers/fi-preload.c) would keep the thread faulting forever. Dropped, the
 * client unregisters its mapping and runs untracked; it attaches again later on its own. */
#define CONTINUE_MAX_FAILURES 64

static struct segment *segment_find(struct manager *m, dev_t dev, ino_t ino)
{
	for (struct segment *s = m->segments; s; s = s->next)
		if (s->dev == dev && s->ino == ino)
			return s;
	return NULL;
}

static uint64_t segment_window_pages(const struct manager *m, const struct segment *seg)
{
	uint64_t w;

	if (seg->kind == TIERD_SEG_HUGETLB)
		return 1;
	w = m->cfg.window_bytes / seg->page_size;
	return w ? w : 1;
}

static void segment_unlink(struct manager *m, struct segment *seg)
{
	for (struct segment **p = &m->segments; *p; p = &(*p)->next)
		if (*p == seg) {
			*p = seg->next;
			m->nsegments--;
			return;
		}
}

int attachment_new(struct manager *m, struct client *c, const struct tierd_msg_attach *msg, int memfd,
		   int uffd, struct attachment **ret, char *why, size_t whylen)
{
	struct memfd_info info;
	struct attachment *a;
	struct segment *seg;
	char maps[64];
	bool new_seg = false;
	int r, rc, fl;

	r = memfd_inspect(memfd, &info, why, whylen);
	if (r < 0)
		return r;
	if (msg->kind != info.kind) {
		snprintf(why, whylen, "segment kind %u does not match the memfd (%s)", msg->kind,
			 info.kind == TIERD_SEG_HUGETLB ? "hugetlbfs" : "shmem");
		return -EINVAL;
	}
	if (msg->page_size != info.page_size) {
		snprintf(why, whylen, "page size %" PRIu64 " does not match the memfd's %" PRIu64,
			 (uint64_t)msg->page_size, info.page_size);
		return -EINVAL;
	}
	if (msg->length == 0 || msg->length != info.size_bytes) {
		snprintf(why, whylen, "length %" PRIu64 " does not match the memfd's size %" PRIu64,
			 (uint64_t)msg->length, info.size_bytes);
		return -EINVAL;
	}
	if (msg->length % info.page_size || msg->base % info.page_size ||
	    msg->base + msg->length < msg->base) {
		snprintf(why, whylen, "mapping 0x%" PRIx64 "+%" PRIu64 " is not page aligned",
			 (uint64_t)msg->base, (uint64_t)msg->length);
		return -EINVAL;
	}
	if (!fd_is_userfaultfd(uffd)) {
		snprintf(why, whylen, "second fd is not a userfaultfd");
		return -EBADF;
	}
	if (c->pid <= 0) {
		snprintf(why, whylen, "the process that connected is not in tierd's pid namespace "
			 "(its /proc/PID/maps cannot be read)");
		return -EPERM;
	}
	snprintf(maps, sizeof(maps), "/proc/%d/maps", (int)c->pid);
	r = maps_cover(maps, msg->base, msg->length, info.dev, info.ino);
	/* The maps were those of the process that connected only if it still held its pid after
	 * they were read: once it is reaped the pid may be reused, and a process that inherited
	 * the socket could have a stranger's mapping vouch for its ATTACH. A zombie holds its pid
	 * (and has no maps). */
	rc = manager_client_alive(c);
	if (rc == -ESRCH) {
		m->stats.attach_peer_exited++;
		snprintf(why, whylen, "the process that connected (pid %d) has exited", (int)c->pid);
		return -ESRCH;
	}
	if (r < 0) {
		snprintf(why, whylen, "pid %d does not map the memfd at 0x%" PRIx64 "+%" PRIu64,
			 (int)c->pid, (uint64_t)msg->base, (uint64_t)msg->length);
		return r == -ENOENT ? -EINVAL : r;
	}
	if (rc < 0) {
		snprintf(why, whylen, "cannot tell whether the process that connected (pid %d) is "
			 "still there: %s", (int)c->pid, strerror(-rc));
		return rc;
	}

	a = calloc(1, sizeof(*a));
	if (!a)
		return -ENOMEM;
	a->watch = (struct watch){ .kind = WATCH_UFFD, .obj = a };
	a->uffd = -1;
	a->client = c;
	a->base = msg->base;
	a->length = msg->length;
	a->id = ++m->next_id;
	a->zap_seq_sent = a->zap_seq_acked = c->seq; /* seqs from before it existed are stale */

	seg = segment_find(m, info.dev, info.ino);
	if (!seg) {
		uint64_t wp = info.kind == TIERD_SEG_HUGETLB ? 1 : m->cfg.window_bytes / info.page_size;

		r = segment_new(&info, memfd, ++m->next_id, wp ? wp : 1, m->cfg.min_regions,
				m->cfg.max_regions, &seg);
		if (r < 0) {
			snprintf(why, whylen, "cannot set up the segment: %s", strerror(-r));
			free(a);
			return r;
		}
		memfd = -1; /* owned by the segment now */
		new_seg = true;
	}
	if (!new_seg && seg->size_bytes != info.size_bytes) {
		/* The memfd grew since the segment was set up (F_SEAL_SHRINK alone allows that): an
		 * attachment longer than the segment's page table would index past its end. */
		snprintf(why, whylen, "memfd size %" PRIu64 " differs from the segment's %" PRIu64
			 " (grown since it was attached)", info.size_bytes, seg->size_bytes);
		free(a);
		return -EINVAL;
	}
	a->seg = seg;
	/* The nodes this process may allocate on bound where its segment's pages may move (mems.h);
	 * refreshed by placement before it moves any. */
	if (mems_of(c->pid, &a->mems) < 0)
		a->mems = MEMS_ALL;
	a->mems_usec = now_usec();

	fl = fcntl(uffd, F_GETFL);
	if (fl < 0 || fcntl(uffd, F_SETFL, fl | O_NONBLOCK) < 0) {
		r = -errno;
		snprintf(why, whylen, "cannot make the uffd non-blocking: %s", strerror(errno));
		goto fail;
	}

	if (seg->kind == TIERD_SEG_HUGETLB || m->cfg.shmem_register_whole) {
		a->registration = TIERD_REG_WHOLE;
		a->zapped = calloc((seg->npages + 7) / 8, 1);
		if (!a->zapped) {
			r = -ENOMEM;
			snprintf(why, whylen, "out of memory");
			goto fail;
		}
		r = uffd_register(uffd, a->base, a->length, UFFDIO_REGISTER_MODE_MINOR);
	} else {
		/* Probe now so a uffd of another process, or without MINOR support, is refused at
		 * attach time and not at the first window. */
		a->registration = TIERD_REG_WINDOWS;
		r = uffd_register(uffd, a->base, seg->page_size, UFFDIO_REGISTER_MODE_MINOR);
		if (r == 0)
			(void)uffd_unregister(uffd, a->base, seg->page_size);
	}
	if (r < 0) {
		snprintf(why, whylen,
			 "UFFDIO_REGISTER(MINOR) of the mapping failed: %s (uffd of another process, "
			 "or MINOR faults unsupported for this memory)",
			 strerror(-r));
		goto fail;
	}

	a->uffd = uffd;
	if (epoll_ctl(m->epfd, EPOLL_CTL_ADD, uffd,
		      &(struct epoll_event){ .events = EPOLLIN, .data.ptr = &a->watch }) < 0) {
		r = -errno;
		a->uffd = -1;
		if (a->registration == TIERD_REG_WHOLE) {
			(void)uffd_unregister(uffd, a->base, a->length);
			(void)uffd_wake(uffd, a->base, a->length);
		}
		snprintf(why, whylen, "epoll: %s", strerror(-r));
		goto fail;
	}

	if (new_seg) {
		seg->next = m->segments;
		m->segments = seg;
		m->nsegments++;
	} else if (memfd >= 0) {
		close(memfd); /* the segment keeps the first memfd it got */
	}
	a->seg_next = seg->attachments;
	seg->attachments = a;
	seg->nattach++;
	a->client_next = c->attachments;
	c->attachments = a;
	c->nattach++;
	if (new_seg)
		manager_policy_seg_add(m, seg);
	manager_bpf_track(m, a);
	*ret = a;
	return 0;

fail:
	free(a->zapped);
	free(a);
	if (new_seg) {
		seg->memfd = -1; /* the caller still owns and closes memfd */
		segment_free(seg);
	}
	return r;
}

static void release_ranges(struct attachment *a)
{
	/* Unregister everything tierd may have registered, then wake: UNREGISTER alone does not
	 * release faults that are already blocked. Errors mean the process is gone or changed its
	 * mapping; either way no thread can stay blocked on a uffd that is about to be closed. */
	(void)uffd_unregister(a->uffd, a->base, a->length);
	(void)uffd_wake(a->uffd, a->base, a->length);
}

void attachment_release(struct manager *m, struct attachment *a)
{
	struct segment *seg = a->seg;
	struct client *c = a->client;

	if (a->dead)
		return;
	a->dead = true;
	manager_bpf_untrack(m, a);
	if (a->uffd >= 0) {
		(void)epoll_ctl(m->epfd, EPOLL_CTL_DEL, a->uffd, NULL);
		release_ranges(a);
		close(a->uffd);
		a->uffd = -1;
	}
	for (struct attachment **p = &seg->attachments; *p; p = &(*p)->seg_next)
		if (*p == a) {
			*p = a->seg_next;
			seg->nattach--;
			break;
		}
	for (struct attachment **p = &c->attachments; *p; p = &(*p)->client_next)
		if (*p == a) {
			*p = a->client_next;
			c->nattach--;
			break;
		}
	if (seg->nattach == 0) {
		manager_batch_drop(m, seg);
		manager_policy_seg_remove(m, seg);
		/* Last process gone: drop the memfd and alias so the application's memory is freed
		 * (after the epoll batch, like every object that dies inside it). */
		segment_unlink(m, seg);
		seg->grave_next = m->graveyard_segments;
		m->graveyard_segments = seg;
	}
	/* Links stay intact: a walk that saved this attachment as its `next` can still step on. */
	a->grave_next = m->graveyard_attachments;
	m->graveyard_attachments = a;
}

static inline bool bit_test_clear(uint8_t *map, uint64_t i)
{
	uint8_t mask = (uint8_t)(1u << (i & 7));
	bool was = map[i >> 3] & mask;

	map[i >> 3] &= (uint8_t)~mask;
	return was;
}

/* What resolve() learned about the page, besides that no thread waits on it any more. */
enum page_seen {
	PAGE_PRESENT = 0, /* mapped, or already mapped: it is in the page cache */
	PAGE_ABSENT = 1,  /* not in the page cache */
	PAGE_UNKNOWN = 2, /* the window closed meanwhile, or another error */
};

/* Resolves one minor fault or maps back one zapped page. Returns an enum page_seen, -ESRCH when
 * the process is gone, or -EIO when CONTINUE_MAX_FAILURES UFFDIO_CONTINUEs in a row failed (the
 * faulting thread is woken all the same). */
static int resolve(struct manager *m, struct attachment *a, uint64_t addr, uint64_t len)
{
	for (int tries = 0;; tries++) {
		int r = uffd_continue(a->uffd, addr, len, NULL);
		enum page_seen seen = PAGE_UNKNOWN;
		bool failed = false;

		switch (r) {
		case 0:
			a->continue_failures = 0;
			return PAGE_PRESENT;
		case -EAGAIN:
			if (tries < CONTINUE_MAX_RETRIES) {
				m->stats.continue_retries++;
				continue;
			}
			failed = true;
			break;
		case -EEXIST:
			m->stats.continue_eexist++; /* already mapped: just wake the waiter */
			seen = PAGE_PRESENT;
			break;
		case -ENOENT:
			m->stats.wake_after_unregister++; /* window closed meanwhile */
			break;
		case -EFAULT:
			/* No page in the page cache at that offset: never allocated (a window closing
			 * over memory the app has not touched yet) or hole-punched since the fault.
			 * Waking lets the thread fault again as an ordinary missing fault. */
			m->stats.continue_absent++;
			seen = PAGE_ABSENT;
			break;
		case -ESRCH:
			return -ESRCH;
		default:
			log_ratelimited(LOG_WARNING, r, "pid %d seg %u: UFFDIO_CONTINUE at 0x%" PRIx64 ": %m",
					(int)a->client->pid, a->seg->id, addr);
			failed = true;
			break;
		}
		if (failed) {
			m->stats.continue_failed++;
			a->continue_failures++;
		} else {
			a->continue_failures = 0;
		}
		r = uffd_wake(a->uffd, addr, len);
		if (r == -ESRCH)
			return -ESRCH;
		return a->continue_failures >= CONTINUE_MAX_FAILURES ? -EIO : (int)seen;
	}
}

static int handle_fault(struct manager *m, struct attachment *a, uint64_t addr, uint64_t read_usec)
{
	struct segment *seg = a->seg;
	uint64_t ps = seg->page_size, pgaddr = addr & ~(ps - 1), page;
	int r;

	if (pgaddr < a->base || pgaddr - a->base >= a->length) {
		/* Not ours: the client registered other memory on the uffd it handed over (or
		 * remapped). A wake alone would let the thread fault again at once, forever: map the
		 * page the client's own mapping has, which is what the kernel would have done. What
		 * CONTINUE cannot resolve is woken, and counts towards CONTINUE_MAX_FAILURES. */
		m->stats.faults_outside++;
		log_ratelimited(LOG_WARNING, 0, "pid %d: fault at 0x%" PRIx64 " outside its segment",
				(int)a->client->pid, addr);
		r = resolve(m, a, pgaddr, ps);
		return r < 0 ? r : 0;
	}
	page = (pgaddr - a->base) / ps;
	if (a->registration == TIERD_REG_WHOLE && !bit_test_clear(a->zapped, page)) {
		/* A page this process never had mapped (new or forked process): not heat. */
		seg->first_touch_faults++;
		m->stats.first_touch_faults++;
		manager_policy_event(m, seg, page, TIERD_EV_FIRST_TOUCH);
	} else {
		page_touch(&seg->pages[page], m->epoch);
		manager_policy_event(m, seg, page, TIERD_EV_FAULT);
	}
	/* A minor fault is only raised for a page in the page cache. */
	seg->pages[page].flags |= PS_EXISTS;
	seg->faults++;
	a->faults++;
	m->stats.faults++;
	if (seg->batch.active && (seg->pages[page].flags & PS_MOVING)) {
		/* Its batch has not moved yet: the thread waits, and attachment_batch_release()
		 * lets it onto the moved page. */
		m->stats.faults_held++;
		seg->batch.held++;
		return 0;
	}
	r = resolve(m, a, pgaddr, ps);
	manager_fault_latency(m, now_usec() - read_usec, 1);
	return r < 0 ? r : 0;
}

static void attachment_read_faults(struct manager *m, struct attachment *a);

void attachment_handle_uffd(struct manager *m, struct attachment *a)
{
	log_context_set(a->client->pid, a->seg->id, -1);
	attachment_read_faults(m, a);
	log_context_clear();
}

static void attachment_read_faults(struct manager *m, struct attachment *a)
{
	struct uffd_msg msgs[16];

	/* A bounded number of reads per wake-up keeps one busy client from starving the others. */
	for (int round = 0; round < 8 && !a->dead; round++) {
		ssize_t n = read(a->uffd, msgs, sizeof(msgs));
		uint64_t read_usec = now_usec();

		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				return;
			log_ratelimited(LOG_WARNING, -errno, "pid %d seg %u: reading uffd: %m",
					(int)a->client->pid, a->seg->id);
			manager_client_drop(m, a->client, "uffd read failed");
			return;
		}
		for (size_t i = 0; i < (size_t)n / sizeof(msgs[0]); i++) {
			switch (msgs[i].event) {
			case UFFD_EVENT_PAGEFAULT:
				switch (handle_fault(m, a, msgs[i].arg.pagefault.address, read_usec)) {
				case -ESRCH:
					manager_client_drop(m, a->client, "process exited");
					return;
				case -EIO:
					m->stats.continue_drops++;
					log_warning("pid %d seg %u: %d UFFDIO_CONTINUEs in a row failed: letting "
						    "go of the client, which runs on untracked",
						    (int)a->client->pid, a->seg->id, CONTINUE_MAX_FAILURES);
					manager_client_drop(m, a->client, "UFFDIO_CONTINUE keeps failing");
					return;
				default:
					break;
				}
				break;
			default:
				/* tierd requests no other events; ignore anything new. */
				break;
			}
		}
		if ((size_t)n < sizeof(msgs))
			return;
	}
}

/* ---- sampling windows ------------------------------------------------------------------------ */

/*
 * Maps pages [first, first + n) of a whole-registered attachment back with UFFDIO_CONTINUE, which
 * also releases a fault held on one: every page (`all`), or only those still marked zapped.
 * Returns -ESRCH when the process is gone (it is dropped), else 0.
 */
static int map_back(struct manager *m, struct attachment *a, uint64_t first, uint64_t n, bool all)
{
	uint64_t ps = a->seg->page_size;

	for (uint64_t p = first; p < first + n; p++) {
		int r;

		if (!bit_test_clear(a->zapped, p) && !all)
			continue;
		r = resolve(m, a, a->base + p * ps, ps);
		if (r == -ESRCH) {
			manager_client_drop(m, a->client, "process exited");
			return r;
		}
		if (r == PAGE_PRESENT)
			a->seg->pages[p].flags |= PS_EXISTS;
	}
	return 0;
}

/* Keeps the windows that are closing for the policy's view (tierd_seg_view.closed). */
static void keep_closed(struct segment *seg)
{
	seg->nclosed = 0;
	if (seg->nwindows > seg->closed_cap) {
		struct tierd_window *w = realloc(seg->closed, seg->nwindows * sizeof(*w));

		if (!w)
			return;
		seg->closed = w;
		seg->closed_cap = seg->nwindows;
	}
	for (size_t i = 0; i < seg->nwindows; i++)
		seg->closed[i] = (struct tierd_window){ .seg = seg->id, .start = seg->windows[i].start,
							.npages = seg->windows[i].npages };
	seg->nclosed = seg->nwindows;
}

static void close_windows(struct manager *m, struct segment *seg)
{
	uint64_t ps = seg->page_size, seg_hits = 0;

	keep_closed(seg);
	for (size_t i = 0; i < seg->nwindows; i++) {
		const struct region_window *w = &seg->windows[i];
		uint64_t hits = 0;
		struct attachment *a, *next;

		for (uint64_t p = w->start; p < w->start + w->npages; p++) {
			hits += !!(seg->pages[p].flags & PS_HIT);
			seg->pages[p].flags &= (uint16_t) ~(PS_ARMED | PS_HIT);
		}
		region_set_record(&seg->regions, w, hits);
		seg_hits += hits;
		seg->windows_closed++;
		m->stats.windows_closed++;

		for (a = seg->attachments; a; a = next) {
			next = a->seg_next;
			if (a->dead || !a->armed)
				continue;
			if (a->registration == TIERD_REG_WINDOWS) {
				uint64_t start = a->base + w->start * ps, len = w->npages * ps;

				(void)uffd_unregister(a->uffd, start, len);
				(void)uffd_wake(a->uffd, start, len);
			} else {
				/* Map back what the app did not touch, so stale zaps do not fault in
				 * later epochs. */
				(void)map_back(m, a, w->start, w->npages, false);
			}
		}
	}
	region_set_commit(&seg->regions);
	seg->nwindows = 0;
	/* Idle means: others touched these windows and this process did not. A process alone on
	 * its segment, or windows nobody touched, say nothing about it. */
	for (struct attachment *a = seg->attachments; a; a = a->seg_next) {
		if (a->armed && a->faults != a->faults_at_arm) {
			a->idle = a->rest = 0;
		} else if (a->armed && seg_hits) {
			if (a->idle < IDLE_MAX_SHIFT)
				a->idle++;
			a->rest = (uint8_t)((1u << a->idle) - 1);
		}
		a->armed = false;
	}
}

/* Sends a ZAP of z->nranges ranges. Returns 0, -EAGAIN when the client's socket is full (skipped:
 * a zap that never happens only costs a sample or leaves a page mapped), or -EPIPE when the client
 * was dropped. *seq is the message's sequence number. */
static int send_zap(struct manager *m, struct attachment *a, struct tierd_msg_zap *z, uint64_t *seq)
{
	size_t len = sizeof(*z) + z->nranges * sizeof(struct tierd_zap_range);
	int r;

	z->attach_id = a->id;
	*seq = a->zap_seq_sent = ++a->client->seq;
	proto_init(&z->hdr, TIERD_MSG_ZAP, (uint32_t)len, *seq);
	r = proto_send(a->client->fd, z, len, NULL, 0);
	if (r == -EAGAIN) {
		m->stats.zaps_skipped++;
		return r;
	}
	if (r < 0) {
		manager_client_drop(m, a->client, "disconnected");
		return -EPIPE;
	}
	a->zaps_in_flight++;
	m->stats.zaps_sent++;
	return 0;
}

/* Makes [start, start + npages) of the attachment fault to tierd once zapped. */
static int watch_range(struct manager *m, struct attachment *a, uint64_t start, uint64_t npages)
{
	uint64_t ps = a->seg->page_size;
	int r;

	if (a->registration == TIERD_REG_WHOLE) {
		for (uint64_t p = start; p < start + npages; p++)
			a->zapped[p >> 3] |= (uint8_t)(1u << (p & 7));
		return 0;
	}
	r = uffd_register(a->uffd, a->base + start * ps, npages * ps, UFFDIO_REGISTER_MODE_MINOR);
	if (r < 0) {
		/* ENOMEM/EINVAL: the process is exiting or unmapped the range (its hang-up follows),
		 * or it is near vm.max_map_count. Counted. */
		m->stats.register_errors++;
		log_debug_errno(r, "pid %d seg %u: registering a range: %m", (int)a->client->pid,
				a->seg->id);
	}
	return r;
}

void attachment_batch_zap(struct manager *m, struct attachment *a)
{
	static uint8_t buf[TIERD_MSG_MAX_BYTES];
	struct tierd_msg_zap *z = (struct tierd_msg_zap *)buf;
	struct tierd_zap_range *ranges = (struct tierd_zap_range *)(z + 1);
	const struct seg_batch *b = &a->seg->batch;
	uint64_t ps = a->seg->page_size;

	/* A client far behind on zaps keeps its pages mapped: they move with MOVE_ALL, or not. */
	if (a->dead || a->zaps_in_flight >= m->cfg.max_zaps_in_flight)
		return;
	z->nranges = 0;
	for (size_t i = 0; i < b->nruns && z->nranges < TIERD_ZAP_MAX_RANGES; i++) {
		if (watch_range(m, a, b->runs[i].start, b->runs[i].n) < 0)
			break;
		ranges[z->nranges++] = (struct tierd_zap_range){ .offset = b->runs[i].start * ps,
								 .length = b->runs[i].n * ps };
	}
	if (z->nranges && send_zap(m, a, z, &a->batch_seq) == 0)
		a->batch_waiting = true;
}

void attachment_batch_release(struct manager *m, struct attachment *a)
{
	const struct seg_batch *b = &a->seg->batch;
	uint64_t ps = a->seg->page_size;

	a->batch_waiting = false;
	if (a->dead)
		return;
	for (size_t i = 0; i < b->nruns; i++) {
		uint64_t start = b->runs[i].start;

		if (a->registration == TIERD_REG_WINDOWS) {
			/* Held faults retry as ordinary faults and map the page where it now is. */
			(void)uffd_unregister(a->uffd, a->base + start * ps, b->runs[i].n * ps);
			(void)uffd_wake(a->uffd, a->base + start * ps, b->runs[i].n * ps);
			continue;
		}
		/* Map every page of the batch back: that releases held faults, and spares the app a
		 * fault on each zapped page it touches later. */
		if (map_back(m, a, start, b->runs[i].n, true) < 0)
			return;
	}
}

/* The segment's windows for the next epoch: the policy's, when it picks them; else the regions'. */
static void pick_windows(struct manager *m, struct segment *seg, size_t budget)
{
	bool by_policy = m->policy && policy_picks_windows(m->policy);
	size_t need = by_policy ? m->npwindows : budget;

	seg->nwindows = 0;
	if (need > seg->windows_cap) {
		struct region_window *w = realloc(seg->windows, need * sizeof(*w));

		if (!w)
			return;
		seg->windows = w;
		seg->windows_cap = need;
	}
	if (!by_policy) {
		seg->nwindows = region_set_pick(&seg->regions, budget, segment_window_pages(m, seg),
						seg->windows);
		return;
	}
	/* Validated by the host: inside the segment, no overlaps, at most max_windows. */
	for (size_t i = 0; i < m->npwindows; i++)
		if (m->pwindows[i].seg == seg->id)
			seg->windows[seg->nwindows++] = (struct region_window){
				.start = m->pwindows[i].start, .npages = m->pwindows[i].npages,
				.region = region_set_find(&seg->regions, m->pwindows[i].start) };
}

static void arm_windows(struct manager *m, struct segment *seg, size_t budget, size_t nsegs)
{
	uint64_t ps = seg->page_size;
	struct attachment *a, *next;
	unsigned skip, take;
	bool any = false;

	pick_windows(m, seg, budget);
	/* This segment's share of the pairs budget: `take` attachments from the cursor on. */
	if (!seg->nwindows || !seg->nattach) {
		seg->nwindows = 0;
		return;
	}
	take = (unsigned)(ARM_PAIRS_PER_EPOCH / nsegs / seg->nwindows);
	if (take == 0)
		take = 1;
	if (take >= seg->nattach) {
		take = seg->nattach;
		seg->arm_cursor = 0;
	}
	skip = seg->arm_cursor % seg->nattach;
	seg->arm_cursor = (skip + take) % seg->nattach;
	for (a = seg->attachments; a && skip; a = a->seg_next)
		skip--;
	for (; take; a = next, take--) {
		static uint8_t buf[TIERD_MSG_MAX_BYTES];
		struct tierd_msg_zap *z = (struct tierd_msg_zap *)buf;
		struct tierd_zap_range *ranges = (struct tierd_zap_range *)(z + 1);
		uint64_t seq;

		if (!a)
			a = seg->attachments; /* wrap around */
		if (!a)
			break; /* the last ones were dropped while arming */
		next = a->seg_next;
		/* A client that has not acknowledged its last batches gets no new windows: it is
		 * slow or stuck, and its socket must not fill up. */
		if (a->dead || a->zaps_in_flight >= m->cfg.max_zaps_in_flight)
			continue;
		if (a->rest) {
			a->rest--;
			m->stats.zaps_rested++;
			continue;
		}
		any = true;
		a->armed = true;
		a->faults_at_arm = a->faults;
		z->nranges = 0;
		for (size_t i = 0; i < seg->nwindows && z->nranges < TIERD_ZAP_MAX_RANGES; i++) {
			const struct region_window *w = &seg->windows[i];

			if (watch_range(m, a, w->start, w->npages) < 0)
				break;
			ranges[z->nranges++] = (struct tierd_zap_range){ .offset = w->start * ps,
									 .length = w->npages * ps };
		}
		/* A full socket skips this epoch for it: the windows close as usual. */
		if (z->nranges)
			(void)send_zap(m, a, z, &seq);
	}
	/* Every attachment resting: nobody was zapped, so no fault can come, and recording the
	 * windows would score their regions cold when they were only not looked at. Otherwise
	 * the pages count as armed from here (their faults are read after this returns). */
	if (!any) {
		seg->nwindows = 0;
		return;
	}
	for (size_t i = 0; i < seg->nwindows; i++) {
		const struct region_window *w = &seg->windows[i];

		for (uint64_t p = w->start; p < w->start + w->npages; p++)
			seg->pages[p].flags = (uint16_t)((seg->pages[p].flags & ~PS_HIT) | PS_ARMED);
		m->stats.windows_armed++;
	}
}

void manager_epoch(struct manager *m)
{
	size_t active = 0, budget;

	m->epoch++;
	m->stats.epochs++;
	for (struct segment *s = m->segments; s; s = s->next) {
		close_windows(m, s);
		if (m->cfg.aggregate_epochs && m->epoch % m->cfg.aggregate_epochs == 0)
			region_set_adapt(&s->regions, m->cfg.merge_delta);
		active += s->nattach > 0;
	}
	/* The epoch's eBPF samples reach the policy with its faults, before it decides. */
	manager_bpf_drain(m);
	/* The policy decides (and placement runs) on closed windows' scores, before new windows
	 * are zapped. */
	manager_placement(m);
	manager_metrics_textfile(m);
	if (!active || m->cfg.max_windows == 0)
		return;
	budget = m->cfg.max_windows / active;
	if (budget == 0)
		budget = 1;
	/* A segment can disappear while arming (its last client dropped): walk a saved next. */
	for (struct segment *s = m->segments, *next; s; s = next) {
		next = s->next;
		/* A segment with a batch in flight samples again once its batch is done. */
		if (s->nattach && !s->batch.active)
			arm_windows(m, s, budget, active);
	}
}
