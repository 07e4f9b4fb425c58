/* SPDX-License-Identifier: MIT */
/* Wire codec: per-type validation, fd passing, and the fd-leak guards on hostile packets. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "proto.h"

static int open_fds(void)
{
	int n = 0;

	for (int fd = 0; fd < 1024; fd++)
		n += fcntl(fd, F_GETFD) >= 0;
	return n;
}

static void test_validate(void **state)
{
	struct tierd_msg_hello h = { 0 };
	uint8_t big[TIERD_MSG_MAX_BYTES + 8] = { 0 };

	(void)state;
	proto_init(&h.hdr, TIERD_MSG_HELLO, sizeof(h), 1);
	assert_int_equal(proto_validate(&h, sizeof(h)), 0);
	/* A longer payload than known is accepted (append-only growth)... */
	memcpy(big, &h, sizeof(h));
	((struct tierd_msg_hdr *)big)->size = sizeof(h) + 8;
	assert_int_equal(proto_validate(big, sizeof(h) + 8), 0);
	/* ...a shorter one is not. */
	h.hdr.size = sizeof(h) - 4;
	assert_int_equal(proto_validate(&h, sizeof(h) - 4), -EPROTO);
	h.hdr.size = sizeof(h);
	assert_int_equal(proto_validate(&h, sizeof(h) - 1), -EPROTO); /* size field lies */
	h.hdr.version = 2;
	assert_int_equal(proto_validate(&h, sizeof(h)), -EPROTO);
	h.hdr.version = TIERD_PROTO_VERSION;
	h.hdr.type = 0;
	assert_int_equal(proto_validate(&h, sizeof(h)), -EBADMSG);
	h.hdr.type = _TIERD_MSG_MAX;
	assert_int_equal(proto_validate(&h, sizeof(h)), -EBADMSG);
	h.hdr.type = 0xffff;
	assert_int_equal(proto_validate(&h, sizeof(h)), -EBADMSG);
	assert_int_equal(proto_validate(&h, 3), -EPROTO);
	assert_int_equal(proto_validate(big, sizeof(big)), -EMSGSIZE);
	assert_int_equal(proto_fd_count(TIERD_MSG_ATTACH), 2);
	assert_int_equal(proto_fd_count(TIERD_MSG_HELLO), 0);
	assert_int_equal(proto_fd_count(0xffff), 0);
	/* Every type the daemon accepts has a size entry. */
	for (uint16_t t = 1; t < _TIERD_MSG_MAX; t++)
		assert_true(proto_min_size(t) >= sizeof(struct tierd_msg_hdr));
}

static void test_fd_passing(void **state)
{
	uint8_t buf[TIERD_MSG_MAX_BYTES];
	struct tierd_msg_attach at = { .kind = TIERD_SEG_SHMEM };
	int sv[2], p[2], fds[PROTO_MAX_FDS];
	unsigned nfds;
	ssize_t n;

	(void)state;
	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	proto_init(&at.hdr, TIERD_MSG_ATTACH, sizeof(at), 7);
	assert_int_equal(proto_send(sv[0], &at, sizeof(at), p, 2), 0);
	n = proto_recv(sv[1], buf, sizeof(buf), fds, &nfds);
	assert_int_equal(n, sizeof(at));
	assert_int_equal(nfds, 2);
	assert_int_equal(proto_validate(buf, (size_t)n), 0);
	/* Received fds are close-on-exec. */
	assert_true(fcntl(fds[0], F_GETFD) & FD_CLOEXEC);
	proto_close_fds(fds, nfds);
	assert_int_equal(fds[0], -1);
	assert_int_equal(proto_recv(sv[1], buf, sizeof(buf), fds, &nfds), -EAGAIN);
	close(sv[0]);
	assert_int_equal(proto_recv(sv[1], buf, sizeof(buf), fds, &nfds), 0); /* EOF */
	close(sv[1]);
	close(p[0]);
	close(p[1]);
}

static void test_too_many_fds_closed(void **state)
{
	uint8_t buf[TIERD_MSG_MAX_BYTES];
	struct tierd_msg_hello h = { 0 };
	int sv[2], many[8], fds[PROTO_MAX_FDS], before;
	unsigned nfds;

	(void)state;
	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
	before = open_fds();
	for (int i = 0; i < 8; i++)
		many[i] = open("/dev/null", O_RDONLY | O_CLOEXEC);
	proto_init(&h.hdr, TIERD_MSG_HELLO, sizeof(h), 1);
	/* proto_send caps at PROTO_MAX_FDS, so build the over-supply by hand. */
	{
		char cbuf[CMSG_SPACE(sizeof(many))];
		struct iovec iov = { .iov_base = &h, .iov_len = sizeof(h) };
		struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
				     .msg_controllen = sizeof(cbuf) };
		struct cmsghdr *c = CMSG_FIRSTHDR(&mh);

		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(many));
		memcpy(CMSG_DATA(c), many, sizeof(many));
		assert_int_equal(sendmsg(sv[0], &mh, 0), sizeof(h));
	}
	for (int i = 0; i < 8; i++)
		close(many[i]);
	assert_int_equal(proto_recv(sv[1], buf, sizeof(buf), fds, &nfds), -EMSGSIZE);
	assert_int_equal(nfds, 0);
	assert_int_equal(open_fds(), before); /* every received fd was closed */
	assert_int_equal(proto_send(sv[0], &h, sizeof(h), many, PROTO_MAX_FDS + 1), -EINVAL);
	close(sv[0]);
	close(sv[1]);
}

static void test_truncated_packet(void **state)
{
	static uint8_t big[TIERD_MSG_MAX_BYTES + 100];
	uint8_t buf[64];
	int sv[2], fds[PROTO_MAX_FDS];
	unsigned nfds;

	(void)state;
	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
	assert_int_equal(send(sv[0], big, sizeof(big), 0), (ssize_t)sizeof(big));
	/* A packet longer than the buffer is an error, not a silently cut message. */
	assert_int_equal(proto_recv(sv[1], buf, sizeof(buf), fds, &nfds), -EMSGSIZE);
	close(sv[0]);
	close(sv[1]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_validate),
		cmocka_unit_test(test_fd_passing),
		cmocka_unit_test(test_too_many_fds_closed),
		cmocka_unit_test(test_truncated_packet),
	};

	return cmocka_run_group_tests_name("protocol codec", tests, NULL, NULL);
}
