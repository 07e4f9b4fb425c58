/* SPDX-License-Identifier: MIT */
/* Wire codec for include/tierd/proto.h: framing, validation and fd passing. */
#ifndef TIERD_PROTO_CODEC_H
#define TIERD_PROTO_CODEC_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "tierd/proto.h"

#define PROTO_MAX_FDS 4

/* Fills a header for a message of `size` bytes. */
void proto_init(struct tierd_msg_hdr *hdr, uint16_t type, uint32_t size, uint64_t seq);

/* The smallest payload-inclusive size a message of `type` may have, or 0 for unknown types. */
size_t proto_min_size(uint16_t type);

/* The number of fds a message of `type` must carry (exactly). */
unsigned proto_fd_count(uint16_t type);

/*
 * Validates a received packet of `len` bytes: 0, or -EPROTO (bad version, size mismatch, short
 * payload; a ZAP's ranges or a HEAT_REPLY's bitmap not inside the packet), -EBADMSG (unknown
 * type), -EMSGSIZE (over TIERD_MSG_MAX_BYTES).
 */
int proto_validate(const void *buf, size_t len);

/*
 * Splits the arguments of a CONTROL or CONTROL_FD message of `len` bytes that passed
 * proto_validate(): its `nargs` NUL-terminated strings after struct tierd_msg_control, pointed to
 * (inside buf) by args[0..nargs). Bytes after the last argument are ignored, as every payload's
 * unknown tail is. Returns nargs, -E2BIG (more than TIERD_CONTROL_MAX_ARGS) or -EPROTO (an
 * argument runs past the end of the message, or len is below the fixed part).
 */
int proto_control_args(const void *buf, size_t len, const char *args[TIERD_CONTROL_MAX_ARGS]);

/* Sends one packet with optional fds. Returns 0 or a negative errno. */
int proto_send(int sock, const void *msg, size_t len, const int *fds, unsigned nfds);

/*
 * Receives one packet into buf (at least TIERD_MSG_MAX_BYTES) and up to PROTO_MAX_FDS fds
 * (O_CLOEXEC). Returns the packet length, 0 at EOF (or a zero-length packet: SEQPACKET cannot
 * tell them apart; fds that came with it are closed), or a negative errno: -EMSGSIZE for a
 * truncated packet or control data (any fds received are closed then), -EMFILE when the packet's
 * fds could not be installed because this process is at its fd limit (closed likewise; the
 * packet is lost), -EAGAIN.
 * The packet is not validated: call proto_validate().
 */
ssize_t proto_recv(int sock, void *buf, size_t len, int *fds, unsigned *nfds);

/* Closes fds[0..n) and sets them to -1. */
void proto_close_fds(int *fds, unsigned n);

#endif
