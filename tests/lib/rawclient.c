/* SPDX-License-Identifier: MIT */
/* Raw protocol clients for tests: see rawclient.h. */
#include "rawclient.h"

#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <unistd.h>

#include "harness.h"
#include "proto.h"

ssize_t raw_recv(int sock, void *buf, size_t len, unsigned timeout_ms, uint32_t zaps_of)
{
	uint64_t deadline = mono_usec() + (uint64_t)timeout_ms * 1000u;
	const struct tierd_msg_hdr *h = buf;

	for (;;) {
		struct pollfd p = { .fd = sock, .events = POLLIN };
		int64_t left_ms = ((int64_t)deadline - (int64_t)mono_usec()) / 1000;
		int fds[PROTO_MAX_FDS];
		unsigned nfds = 0;
		bool zap;
		ssize_t n;

		if (left_ms <= 0)
			return -ETIMEDOUT;
		if (poll(&p, 1, (int)left_ms) < 0 && errno != EINTR)
			return -errno;
		n = proto_recv(sock, buf, len, fds, &nfds);
		proto_close_fds(fds, nfds);
		if (n == -EAGAIN)
			continue;
		if (n < (ssize_t)sizeof(*h) || zaps_of == RAW_ZAPS_ALL)
			return n;
		zap = h->type == TIERD_MSG_ZAP && (size_t)n >= sizeof(struct tierd_msg_zap);
		if (zaps_of ? zap && ((const struct tierd_msg_zap *)buf)->attach_id == zaps_of : !zap)
			return n;
	}
}

int raw_send_hello(int sock, uint32_t flags)
{
	struct tierd_msg_hello h = { .pid = (uint32_t)getpid(), .flags = flags };

	proto_init(&h.hdr, TIERD_MSG_HELLO, sizeof(h), 1);
	return proto_send(sock, &h, sizeof(h), NULL, 0);
}

int raw_hello(int sock, uint32_t flags, void *buf, size_t len, unsigned timeout_ms)
{
	ssize_t n;
	int r = raw_send_hello(sock, flags);

	if (r < 0)
		return r;
	n = raw_recv(sock, buf, len, timeout_ms, 0);
	if (n <= 0)
		return n == 0 ? -ECONNRESET : (int)n;
	return ((const struct tierd_msg_hdr *)buf)->type == TIERD_MSG_WELCOME ? 0 : -EPROTO;
}

int raw_ping(int sock, void *buf, size_t len, unsigned timeout_ms)
{
	struct tierd_msg_ping p = { .token = 0x1234567890abcdefull };
	ssize_t n;
	int r;

	proto_init(&p.hdr, TIERD_MSG_PING, sizeof(p), 77);
	r = proto_send(sock, &p, sizeof(p), NULL, 0);
	if (r < 0)
		return r;
	n = raw_recv(sock, buf, len, timeout_ms, 0);
	if (n <= 0)
		return n == 0 ? -ECONNRESET : (int)n;
	if (((const struct tierd_msg_hdr *)buf)->type != TIERD_MSG_PONG ||
	    (size_t)n < sizeof(p) || ((const struct tierd_msg_ping *)buf)->token != p.token)
		return -EPROTO;
	return 0;
}
