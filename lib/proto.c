/* SPDX-License-Identifier: MIT */
/* Wire codec: header checks per message type and SCM_RIGHTS fd passing. */
#include "proto.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static const struct {
	size_t size;
	unsigned fds;
} msg_table[_TIERD_MSG_MAX] = {
	[TIERD_MSG_HELLO] = { sizeof(struct tierd_msg_hello), 0 },
	[TIERD_MSG_WELCOME] = { sizeof(struct tierd_msg_welcome), 0 },
	[TIERD_MSG_ATTACH] = { sizeof(struct tierd_msg_attach), 2 },
	[TIERD_MSG_ATTACHED] = { sizeof(struct tierd_msg_attached), 0 },
	[TIERD_MSG_ZAP] = { sizeof(struct tierd_msg_zap), 0 },
	[TIERD_MSG_ZAP_DONE] = { sizeof(struct tierd_msg_zap_done), 0 },
	[TIERD_MSG_PING] = { sizeof(struct tierd_msg_ping), 0 },
	[TIERD_MSG_PONG] = { sizeof(struct tierd_msg_ping), 0 },
	[TIERD_MSG_DETACH] = { sizeof(struct tierd_msg_detach), 0 },
	[TIERD_MSG_HEAT_QUERY] = { sizeof(struct tierd_msg_heat_query), 0 },
	[TIERD_MSG_HEAT_REPLY] = { sizeof(struct tierd_msg_heat_reply), 0 },
	[TIERD_MSG_STATUS_QUERY] = { sizeof(struct tierd_msg_hdr), 0 },
	[TIERD_MSG_STATUS_REPLY] = { sizeof(struct tierd_msg_hdr) + 1, 0 },
	[TIERD_MSG_ERROR] = { sizeof(struct tierd_msg_error), 0 },
	[TIERD_MSG_CONTROL] = { sizeof(struct tierd_msg_control), 0 },
	[TIERD_MSG_CONTROL_FD] = { sizeof(struct tierd_msg_control), 1 },
	[TIERD_MSG_CONTROL_REPLY] = { sizeof(struct tierd_msg_control_reply) + 1, 0 },
};

void proto_init(struct tierd_msg_hdr *hdr, uint16_t type, uint32_t size, uint64_t seq)
{
	hdr->version = TIERD_PROTO_VERSION;
	hdr->type = type;
	hdr->size = size;
	hdr->seq = seq;
}

size_t proto_min_size(uint16_t type)
{
	return type < _TIERD_MSG_MAX ? msg_table[type].size : 0;
}

unsigned proto_fd_count(uint16_t type)
{
	return type < _TIERD_MSG_MAX ? msg_table[type].fds : 0;
}

int proto_validate(const void *buf, size_t len)
{
	struct tierd_msg_hdr hdr;
	size_t min;

	if (len > TIERD_MSG_MAX_BYTES)
		return -EMSGSIZE;
	if (len < sizeof(hdr))
		return -EPROTO;
	memcpy(&hdr, buf, sizeof(hdr));
	if (hdr.version != TIERD_PROTO_VERSION)
		return -EPROTO;
	if (hdr.size != len)
		return -EPROTO;
	min = proto_min_size(hdr.type);
	if (min == 0)
		return -EBADMSG;
	if (len < min)
		return -EPROTO;
	if (hdr.type == TIERD_MSG_ZAP) {
		struct tierd_msg_zap z;

		memcpy(&z, buf, sizeof(z));
		if (z.nranges > TIERD_ZAP_MAX_RANGES ||
		    len < sizeof(z) + (size_t)z.nranges * sizeof(struct tierd_zap_range))
			return -EPROTO;
	}
	if (hdr.type == TIERD_MSG_HEAT_REPLY) {
		struct tierd_msg_heat_reply h;

		/* The bitmap must hold npages bits. Bounding npages first keeps (npages + 7) / 8 from
		 * wrapping: a reply claiming 2^64 - 1 pages would pass as a zero-byte bitmap. */
		memcpy(&h, buf, sizeof(h));
		if (h.npages > TIERD_HEAT_MAX_PAGES || len < sizeof(h) + (size_t)((h.npages + 7) / 8))
			return -EPROTO;
	}
	return 0;
}

int proto_control_args(const void *buf, size_t len, const char *args[TIERD_CONTROL_MAX_ARGS])
{
	const char *p = (const char *)buf + sizeof(struct tierd_msg_control), *end = (const char *)buf + len;
	struct tierd_msg_control q;

	/* proto_validate() promised this; checked again because the pointer arithmetic below
	 * would run before the buffer otherwise. */
	if (len < sizeof(q))
		return -EPROTO;
	/* Copied out: buf is the receive buffer, with no alignment promised for the u32 fields. */
	memcpy(&q, buf, sizeof(q));
	if (q.nargs > TIERD_CONTROL_MAX_ARGS)
		return -E2BIG;
	for (uint32_t i = 0; i < q.nargs; i++) {
		const char *nul = memchr(p, '\0', (size_t)(end - p));

		if (!nul)
			return -EPROTO;
		args[i] = p;
		p = nul + 1;
	}
	return (int)q.nargs;
}

int proto_send(int sock, const void *msg, size_t len, const int *fds, unsigned nfds)
{
	union {
		char buf[CMSG_SPACE(sizeof(int) * PROTO_MAX_FDS)];
		struct cmsghdr align;
	} cbuf;
	struct iovec iov = { .iov_base = (void *)msg, .iov_len = len };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	ssize_t n;

	if (nfds > PROTO_MAX_FDS)
		return -EINVAL;
	if (nfds > 0) {
		struct cmsghdr *c;

		memset(&cbuf, 0, sizeof(cbuf));
		mh.msg_control = cbuf.buf;
		mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
		c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
		memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
	}
	do
		n = sendmsg(sock, &mh, MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	return (size_t)n == len ? 0 : -EMSGSIZE;
}

void proto_close_fds(int *fds, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		if (fds[i] >= 0)
			close(fds[i]);
		fds[i] = -1;
	}
}

ssize_t proto_recv(int sock, void *buf, size_t len, int *fds, unsigned *nfds)
{
	/* Room for more fds than we accept, so an over-supply is seen and closed, not leaked. */
	union {
		char buf[CMSG_SPACE(sizeof(int) * 64)];
		struct cmsghdr align;
	} cbuf;
	struct iovec iov = { .iov_base = buf, .iov_len = len };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf.buf,
			     .msg_controllen = sizeof(cbuf.buf) };
	unsigned got = 0, extra = 0;
	int extra_fds[64];
	ssize_t n;

	*nfds = 0;
	do
		n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;

	for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
		size_t cnt;
		int tmp[64];

		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		cnt = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		if (cnt > 64)
			cnt = 64;
		memcpy(tmp, CMSG_DATA(c), cnt * sizeof(int));
		for (size_t i = 0; i < cnt; i++) {
			if (got < PROTO_MAX_FDS)
				fds[got++] = tmp[i];
			else if (extra < 64)
				extra_fds[extra++] = tmp[i];
			else
				close(tmp[i]);
		}
	}
	proto_close_fds(extra_fds, extra);
	*nfds = got;
	/* A zero-length packet can carry fds, and every caller takes 0 for end-of-file and closes
	 * nothing: they must not outlive this call. */
	if (n == 0 || (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) || extra > 0) {
		/* Control data cut short with room left in cbuf: the kernel could not install the
		 * fds here (the receiver is at its RLIMIT_NOFILE), the sender did nothing wrong. */
		bool out_of_fds = n > 0 && !(mh.msg_flags & MSG_TRUNC) && (mh.msg_flags & MSG_CTRUNC) &&
				  got + extra < 64;

		proto_close_fds(fds, got);
		*nfds = 0;
		return n == 0 ? 0 : out_of_fds ? -EMFILE : -EMSGSIZE;
	}
	return n;
}
