/* SPDX-License-Identifier: MIT */
/*
 * tierd client protocol, version 1.
 *
 * Transport: a unix SOCK_SEQPACKET connection (default /run/tierd/tierd.sock), one message per
 * packet. Every message begins with struct tierd_msg_hdr; `size` is the whole packet's length and
 * must equal the received length; the receiver validates version, type and size before reading
 * any payload. Payloads only grow at their end (append-only): a receiver accepts a payload longer
 * than the one it knows and ignores the tail, and refuses a shorter one.
 *
 * Flow:  client HELLO ──► WELCOME (+ a /dev/userfaultfd fd when the client asked for one)
 *        client ATTACH (+ memfd, uffd via SCM_RIGHTS) ──► ATTACHED (status, ids)
 *        daemon ZAP (this epoch's windows) ──► client zaps its own mapping ──► ZAP_DONE
 *        client PING ──► PONG (the client's hang detector)
 *        client HEAT_QUERY ──► HEAT_REPLY (bitmap of pages tierd currently rates hot)
 *        client STATUS_QUERY ──► STATUS_REPLY (one JSON document, for tools and the demo)
 *        client DETACH, or just close the socket.
 */
#ifndef TIERD_PROTO_H
#define TIERD_PROTO_H

#include <stdint.h>

#define TIERD_PROTO_VERSION 1u
#define TIERD_DEFAULT_SOCKET "/run/tierd/tierd.sock"
/* The largest packet either side sends or accepts; a longer packet is a protocol error. */
#define TIERD_MSG_MAX_BYTES 65536u

enum tierd_msg_type {
	TIERD_MSG_HELLO = 1,
	TIERD_MSG_WELCOME = 2,
	TIERD_MSG_ATTACH = 3,
	TIERD_MSG_ATTACHED = 4,
	TIERD_MSG_ZAP = 5,
	TIERD_MSG_ZAP_DONE = 6,
	TIERD_MSG_PING = 7,
	TIERD_MSG_PONG = 8,
	TIERD_MSG_DETACH = 9,
	TIERD_MSG_HEAT_QUERY = 10,
	TIERD_MSG_HEAT_REPLY = 11,
	TIERD_MSG_STATUS_QUERY = 12,
	TIERD_MSG_STATUS_REPLY = 13,
	TIERD_MSG_ERROR = 14,
	TIERD_MSG_CONTROL = 15,       /* tierctl: an operation on the daemon (root only) */
	TIERD_MSG_CONTROL_FD = 16,    /* the same, with one fd (recording: the trace file) */
	TIERD_MSG_CONTROL_REPLY = 17,
	_TIERD_MSG_MAX,
};

struct tierd_msg_hdr {
	uint16_t version;
	uint16_t type;
	uint32_t size; /* whole packet, header included */
	uint64_t seq;  /* sender's sequence number; replies echo the request's */
};
_Static_assert(sizeof(struct tierd_msg_hdr) == 16, "wire header is 16 bytes");

/* HELLO flags */
#define TIERD_HELLO_WANT_UFFD_DEV (1u << 0) /* userfaultfd(2) was EPERM here: hand me /dev/userfaultfd */

struct tierd_msg_hello {
	struct tierd_msg_hdr hdr;
	uint32_t pid;
	uint32_t flags;
};
_Static_assert(sizeof(struct tierd_msg_hello) == 24, "hello");

struct tierd_msg_welcome {
	struct tierd_msg_hdr hdr;
	uint32_t daemon_version; /* TIERD_PROTO_VERSION of the daemon */
	uint32_t flags;          /* TIERD_HELLO_WANT_UFFD_DEV when an fd is attached */
	uint32_t heartbeat_ms;   /* how often the client should PING */
	uint32_t reserved;
};
_Static_assert(sizeof(struct tierd_msg_welcome) == 32, "welcome");

enum tierd_seg_kind {
	TIERD_SEG_SHMEM = 1,
	TIERD_SEG_HUGETLB = 2,
};

/* ATTACH carries exactly two fds: [0] the memfd, [1] the client's userfaultfd. */
struct tierd_msg_attach {
	struct tierd_msg_hdr hdr;
	uint32_t kind;      /* enum tierd_seg_kind */
	uint32_t reserved;
	uint64_t page_size; /* bytes */
	uint64_t base;      /* the client's mapping address of file offset 0 */
	uint64_t length;    /* bytes mapped; must equal the memfd's size */
	uint64_t uffd_features; /* what the client negotiated on the uffd */
};
_Static_assert(sizeof(struct tierd_msg_attach) == 56, "attach");

struct tierd_msg_attached {
	struct tierd_msg_hdr hdr;
	int32_t status;      /* 0 or a negative errno */
	uint32_t attach_id;
	uint32_t segment_id;
	uint32_t registration; /* enum tierd_registration */
	char reason[128];    /* NUL-terminated, set when status < 0 */
};
_Static_assert(sizeof(struct tierd_msg_attached) == 160, "attached");

enum tierd_registration {
	TIERD_REG_WINDOWS = 1, /* tierd registers each armed window, the rest keeps kernel faults */
	TIERD_REG_WHOLE = 2,   /* the whole mapping is registered (hugetlb) */
};

/* One epoch's windows for one attachment, in one packet: a slow client is never flooded. */
struct tierd_zap_range {
	uint64_t offset; /* bytes from the start of the mapping, page aligned */
	uint64_t length;
};
_Static_assert(sizeof(struct tierd_zap_range) == 16, "zap range");

struct tierd_msg_zap {
	struct tierd_msg_hdr hdr;
	uint32_t attach_id;
	uint32_t nranges; /* followed by nranges struct tierd_zap_range; hdr.size must cover them */
};
_Static_assert(sizeof(struct tierd_msg_zap) == 24, "zap");
#define TIERD_ZAP_MAX_RANGES ((TIERD_MSG_MAX_BYTES - sizeof(struct tierd_msg_zap)) / sizeof(struct tierd_zap_range))

struct tierd_msg_zap_done {
	struct tierd_msg_hdr hdr;
	uint32_t attach_id;
	uint32_t nranges; /* ranges zapped */
	int32_t status;   /* 0, or the first error (e.g. -EINVAL for a range outside the mapping) */
	uint32_t reserved;
};
_Static_assert(sizeof(struct tierd_msg_zap_done) == 32, "zap_done");

struct tierd_msg_ping {
	struct tierd_msg_hdr hdr;
	uint64_t token;
};
_Static_assert(sizeof(struct tierd_msg_ping) == 24, "ping");

struct tierd_msg_detach {
	struct tierd_msg_hdr hdr;
	uint32_t attach_id;
	uint32_t reserved;
};
_Static_assert(sizeof(struct tierd_msg_detach) == 24, "detach");

/* Any connection may ask (no ATTACH needed); the asker must be root or share the uid of a process
 * attached to the segment. */
struct tierd_msg_heat_query {
	struct tierd_msg_hdr hdr;
	uint32_t segment_id;
	uint32_t reserved;
	uint64_t first_page;
};
_Static_assert(sizeof(struct tierd_msg_heat_query) == 32, "heat_query");

/* Followed by ceil(npages / 8) bytes of bitmap, bit i = page first_page + i is hot. */
struct tierd_msg_heat_reply {
	struct tierd_msg_hdr hdr;
	int32_t status;
	uint32_t segment_id;
	uint64_t first_page;
	uint64_t npages;       /* pages covered by this reply's bitmap */
	uint64_t total_pages;  /* pages of the segment */
	uint64_t epoch;        /* daemon epoch the answer was computed at */
	uint64_t faults;       /* minor faults tierd resolved for this segment */
};
_Static_assert(sizeof(struct tierd_msg_heat_reply) == 64, "heat_reply");
#define TIERD_HEAT_MAX_PAGES ((uint64_t)(TIERD_MSG_MAX_BYTES - sizeof(struct tierd_msg_heat_reply)) * 8u)

/* STATUS_REPLY: header followed by a NUL-terminated JSON text. */
struct tierd_msg_error {
	struct tierd_msg_hdr hdr;
	int32_t status;
	uint32_t reserved;
	char reason[128];
};
_Static_assert(sizeof(struct tierd_msg_error) == 152, "error");

/* CONTROL / CONTROL_FD: followed by `nargs` NUL-terminated strings (the message's size covers them
 * exactly). Only root may send those that change what tierd does (all but METRICS, EVENTS and
 * CONFIG, which only read). */
enum tierd_control_op {
	TIERD_CTL_POLICY_SET = 1,   /* args: NAME [key=value...] */
	TIERD_CTL_RECORD_START = 2, /* CONTROL_FD: the trace file, open for writing; arg = max bytes */
	TIERD_CTL_RECORD_STOP = 3,
	TIERD_CTL_METRICS = 4,      /* anyone: the reply's text is the metrics (Prometheus text) */
	TIERD_CTL_EVENTS = 5,       /* anyone: the latest `arg` migration events (0: all), JSON Lines */
	TIERD_CTL_MODE = 6,         /* args: enforce | advise | observe */
	TIERD_CTL_RELEASE_ALL = 7,  /* fail open now: every client lets go of its memory */
	TIERD_CTL_CONFIG = 8,       /* anyone: the configuration in force, as tierd.conf text */
};

struct tierd_msg_control {
	struct tierd_msg_hdr hdr;
	uint32_t op;    /* enum tierd_control_op */
	uint32_t nargs;
	uint64_t arg;
};
_Static_assert(sizeof(struct tierd_msg_control) == 32, "control");
#define TIERD_CONTROL_MAX_ARGS 33

/* Followed by a NUL-terminated text: what was done, or why not. */
struct tierd_msg_control_reply {
	struct tierd_msg_hdr hdr;
	int32_t status; /* 0 or a negative errno */
	uint32_t reserved;
};
_Static_assert(sizeof(struct tierd_msg_control_reply) == 24, "control_reply");

#endif
