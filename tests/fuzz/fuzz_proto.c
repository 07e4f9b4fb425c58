/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target: the wire codec (lib/proto.c). A packet as it arrives — any bytes — goes through
 * proto_validate(); when that accepts it, every field a receiver reads next is read the way the
 * receiver reads it (daemon/manager.c on_client_message and its handlers, lib/libtier.c for the
 * daemon's replies), from a buffer of exactly the packet's size so that ASan sees a read past it.
 * What validation promises each reader is checked as a property:
 *   - the header's size is the packet's, the type is known and the fixed part fits;
 *   - ZAP: its ranges lie inside the packet;
 *   - HEAT_REPLY: the bitmap covers npages (libtier reads that many bits);
 *   - CONTROL: proto_control_args() returns NUL-terminated arguments inside the packet, one
 *     after the other, or refuses with -E2BIG / -EPROTO exactly when the daemon must.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "proto.h"

/* The values read go here, so that the compiler cannot drop the reads. */
static volatile uint64_t sink;

static void read_text(const uint8_t *buf, size_t size, size_t off)
{
	/* Clients read the text of STATUS_REPLY and CONTROL_REPLY with strnlen over the rest of
	 * the packet: it need not be terminated. */
	size_t n = strnlen((const char *)buf + off, size - off);

	for (size_t i = 0; i < n; i++)
		sink += buf[off + i];
}

static void read_reason(const char *reason)
{
	char out[128];

	/* libtier prints a refusal's reason with %.120s: never past the 128-byte field. */
	sink += (uint64_t)snprintf(out, sizeof(out), "%.120s", reason);
}

static void read_control(const uint8_t *buf, size_t size)
{
	const char *args[TIERD_CONTROL_MAX_ARGS], *next = (const char *)buf + sizeof(struct tierd_msg_control);
	const char *end = (const char *)buf + size;
	struct tierd_msg_control q;
	int n = proto_control_args(buf, size, args);

	memcpy(&q, buf, sizeof(q));
	if (q.nargs > TIERD_CONTROL_MAX_ARGS) {
		FUZZ_CHECK(n == -E2BIG);
		return;
	}
	if (n < 0) {
		/* Refused only when some argument has no NUL before the end. */
		size_t nuls = 0;

		FUZZ_CHECK(n == -EPROTO);
		for (const char *p = next; p < end; p++)
			nuls += *p == '\0';
		FUZZ_CHECK(nuls < q.nargs);
		return;
	}
	FUZZ_CHECK((uint32_t)n == q.nargs);
	for (int i = 0; i < n; i++) {
		char kv[256], *eq;
		size_t len;

		/* Back to back, inside the packet, NUL-terminated. */
		FUZZ_CHECK(args[i] == next);
		FUZZ_CHECK(args[i] >= (const char *)buf && args[i] < end);
		len = strnlen(args[i], (size_t)(end - args[i]));
		FUZZ_CHECK(len < (size_t)(end - args[i]));
		next = args[i] + len + 1;
		/* What on_control does with them: POLICY_SET's key=value copies. */
		snprintf(kv, sizeof(kv), "%s", args[i]);
		eq = strchr(kv, '=');
		sink += eq ? (uint64_t)(eq - kv) : len;
	}
}

static void read_payload(const uint8_t *buf, size_t size, uint16_t type)
{
	switch (type) {
	case TIERD_MSG_HELLO: {
		const struct tierd_msg_hello *m = (const void *)buf;

		sink += m->pid + m->flags;
		break;
	}
	case TIERD_MSG_WELCOME: {
		const struct tierd_msg_welcome *m = (const void *)buf;

		sink += m->daemon_version + m->flags + m->heartbeat_ms;
		break;
	}
	case TIERD_MSG_ATTACH: {
		const struct tierd_msg_attach *m = (const void *)buf;

		sink += m->kind + m->page_size + m->base + m->length + m->uffd_features;
		break;
	}
	case TIERD_MSG_ATTACHED: {
		const struct tierd_msg_attached *m = (const void *)buf;

		sink += (uint64_t)m->status + m->attach_id + m->segment_id + m->registration;
		read_reason(m->reason);
		break;
	}
	case TIERD_MSG_ZAP: {
		const struct tierd_msg_zap *z = (const void *)buf;
		const struct tierd_zap_range *ranges = (const void *)(z + 1);

		FUZZ_CHECK(z->nranges <= TIERD_ZAP_MAX_RANGES);
		FUZZ_CHECK(sizeof(*z) + (size_t)z->nranges * sizeof(*ranges) <= size);
		for (uint32_t k = 0; k < z->nranges; k++)
			sink += ranges[k].offset + ranges[k].length;
		break;
	}
	case TIERD_MSG_ZAP_DONE: {
		const struct tierd_msg_zap_done *d = (const void *)buf;

		sink += d->attach_id + d->nranges + (uint64_t)d->status;
		break;
	}
	case TIERD_MSG_PING:
	case TIERD_MSG_PONG:
		sink += ((const struct tierd_msg_ping *)buf)->token;
		break;
	case TIERD_MSG_DETACH:
		sink += ((const struct tierd_msg_detach *)buf)->attach_id;
		break;
	case TIERD_MSG_HEAT_QUERY: {
		const struct tierd_msg_heat_query *q = (const void *)buf;

		sink += q->segment_id + q->first_page;
		break;
	}
	case TIERD_MSG_HEAT_REPLY: {
		const struct tierd_msg_heat_reply *rep = (const void *)buf;
		const uint8_t *bits = buf + sizeof(*rep);

		/* tier_segment_heat() reads npages bits after the fixed part. */
		FUZZ_CHECK(rep->npages <= TIERD_HEAT_MAX_PAGES);
		FUZZ_CHECK(sizeof(*rep) + (rep->npages + 7) / 8 <= size);
		for (uint64_t i = 0; i < rep->npages; i += 8)
			sink += bits[i >> 3];
		sink += (uint64_t)rep->status + rep->total_pages + rep->epoch + rep->faults;
		break;
	}
	case TIERD_MSG_STATUS_QUERY:
		break;
	case TIERD_MSG_STATUS_REPLY:
		read_text(buf, size, sizeof(struct tierd_msg_hdr));
		break;
	case TIERD_MSG_ERROR: {
		const struct tierd_msg_error *e = (const void *)buf;

		sink += (uint64_t)e->status;
		read_reason(e->reason);
		break;
	}
	case TIERD_MSG_CONTROL:
	case TIERD_MSG_CONTROL_FD:
		read_control(buf, size);
		break;
	case TIERD_MSG_CONTROL_REPLY:
		sink += (uint64_t)((const struct tierd_msg_control_reply *)buf)->status;
		read_text(buf, size, sizeof(struct tierd_msg_control_reply));
		break;
	default:
		/* proto_validate() accepted a type no receiver knows. */
		FUZZ_CHECK(0);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct tierd_msg_hdr h;
	uint8_t *buf;
	int r;

	/* recvmsg() into the receivers' 64 KiB buffer cuts a longer packet (MSG_TRUNC): such a
	 * length reaches proto_validate only as a claim, and must be refused before any read. */
	if (size > TIERD_MSG_MAX_BYTES) {
		FUZZ_CHECK(proto_validate(data, size) == -EMSGSIZE);
		return 0;
	}
	/* malloc'd to the byte (and aligned as the receivers' static buffers are). */
	buf = malloc(size ? size : 1);
	if (!buf)
		return 0;
	memcpy(buf, data, size);
	r = proto_validate(buf, size);
	FUZZ_CHECK(r == 0 || r == -EPROTO || r == -EBADMSG);
	if (r == 0) {
		memcpy(&h, buf, sizeof(h));
		FUZZ_CHECK(h.version == TIERD_PROTO_VERSION && h.size == size);
		FUZZ_CHECK(proto_min_size(h.type) >= sizeof(h) && proto_min_size(h.type) <= size);
		FUZZ_CHECK(proto_fd_count(h.type) <= PROTO_MAX_FDS);
		read_payload(buf, size, h.type);
	}
	free(buf);
	return 0;
}
