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

/* The bitmap must hold npages bits; (npages + 7) / 8 once wrapped for npages near 2^64, so a
 * reply claiming UINT64_MAX pages passed with no bitmap (found by tests/fuzz/fuzz_proto.c). */
static void test_heat_reply_bitmap(void **state)
{
	static uint8_t buf[TIERD_MSG_MAX_BYTES];
	struct tierd_msg_heat_reply *rep = (struct tierd_msg_heat_reply *)buf;

	(void)state;
	memset(buf, 0, sizeof(buf));
	rep->npages = 20;
	proto_init(&rep->hdr, TIERD_MSG_HEAT_REPLY, sizeof(*rep) + 3, 1);
	assert_int_equal(proto_validate(buf, sizeof(*rep) + 3), 0);
	proto_init(&rep->hdr, TIERD_MSG_HEAT_REPLY, sizeof(*rep) + 2, 1);
	assert_int_equal(proto_validate(buf, sizeof(*rep) + 2), -EPROTO);
	rep->npages = 0;
	proto_init(&rep->hdr, TIERD_MSG_HEAT_REPLY, sizeof(*rep), 1);
	assert_int_equal(proto_validate(buf, sizeof(*rep)), 0);
	rep->npages = UINT64_MAX;
	assert_int_equal(proto_validate(buf, sizeof(*rep)), -EPROTO);
	rep->npages = UINT64_MAX - 6; /* + 7 wraps to 0 */
	assert_int_equal(proto_validate(buf, sizeof(*rep)), -EPROTO);
	/* The largest reply the daemon sends (on_heat_query) passes. */
	rep->npages = TIERD_HEAT_MAX_PAGES;
	proto_init(&rep->hdr, TIERD_MSG_HEAT_REPLY, TIERD_MSG_MAX_BYTES, 1);
	assert_int_equal(proto_validate(buf, TIERD_MSG_MAX_BYTES), 0);
	rep->npages = TIERD_HEAT_MAX_PAGES + 1;
	assert_int_equal(proto_validate(buf, TIERD_MSG_MAX_BYTES), -EPROTO);
}

/* Builds a CONTROL message of nargs strings from `text` (len bytes, NULs included). */
static size_t control_msg(uint8_t *buf, uint32_t nargs, const char *text, size_t len)
{
	struct tierd_msg_control q = { .op = TIERD_CTL_POLICY_SET, .nargs = nargs };

	proto_init(&q.hdr, TIERD_MSG_CONTROL, (uint32_t)(sizeof(q) + len), 1);
	memcpy(buf, &q, sizeof(q));
	memcpy(buf + sizeof(q), text, len);
	return sizeof(q) + len;
}

static void test_control_args(void **state)
{
	uint8_t buf[512];
	const char *args[TIERD_CONTROL_MAX_ARGS];
	size_t len;

	(void)state;
	len = control_msg(buf, 3, "lru\0a=1\0\0", 10);
	assert_int_equal(proto_validate(buf, len), 0);
	assert_int_equal(proto_control_args(buf, len, args), 3);
	assert_string_equal(args[0], "lru");
	assert_string_equal(args[1], "a=1");
	assert_string_equal(args[2], "");
	assert_ptr_equal(args[0], (const char *)buf + sizeof(struct tierd_msg_control));
	/* Bytes after the last argument are ignored (append-only growth). */
	len = control_msg(buf, 1, "lru\0tail", 8);
	assert_int_equal(proto_control_args(buf, len, args), 1);
	assert_string_equal(args[0], "lru");
	len = control_msg(buf, 0, "", 0);
	assert_int_equal(proto_control_args(buf, len, args), 0);
	/* An argument without its NUL, or fewer strings than nargs. */
	len = control_msg(buf, 1, "lru", 3);
	assert_int_equal(proto_control_args(buf, len, args), -EPROTO);
	len = control_msg(buf, 2, "lru\0", 4);
	assert_int_equal(proto_control_args(buf, len, args), -EPROTO);
	len = control_msg(buf, 1, "", 0);
	assert_int_equal(proto_control_args(buf, len, args), -EPROTO);
	/* Too many: refused before any is looked at. */
	len = control_msg(buf, TIERD_CONTROL_MAX_ARGS + 1, "x\0", 2);
	assert_int_equal(proto_control_args(buf, len, args), -E2BIG);
	len = control_msg(buf, UINT32_MAX, "x\0", 2);
	assert_int_equal(proto_control_args(buf, len, args), -E2BIG);
	{
		char many[2 * TIERD_CONTROL_MAX_ARGS];

		for (int i = 0; i < TIERD_CONTROL_MAX_ARGS; i++) {
			many[2 * i] = 'k';
			many[2 * i + 1] = '\0';
		}
		len = control_msg(buf, TIERD_CONTROL_MAX_ARGS, many, sizeof(many));
		assert_int_equal(proto_control_args(buf, len, args), TIERD_CONTROL_MAX_ARGS);
		assert_string_equal(args[TIERD_CONTROL_MAX_ARGS - 1], "k");
	}
	/* Shorter than the fixed part: refused, not read before the buffer's end. */
	assert_int_equal(proto_control_args(buf, sizeof(struct tierd_msg_control) - 1, args), -EPROTO);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_validate),
		cmocka_unit_test(test_fd_passing),
		cmocka_unit_test(test_too_many_fds_closed),
		cmocka_unit_test(test_truncated_packet),
		cmocka_unit_test(test_heat_reply_bitmap),
		cmocka_unit_test(test_control_args),
	};

	return cmocka_run_group_tests_name("protocol codec", tests, NULL, NULL);
}
