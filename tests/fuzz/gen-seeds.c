/* SPDX-License-Identifier: MIT */
/*
 * Writes the generated seeds of the proto and trace corpora (make fuzz-seeds; the output is
 * committed): one well-formed message of each type, and a small valid trace of each flavour.
 * Seeds only start the fuzzer off where the real inputs are; what it finds from them is merged
 * into the same directories by make fuzz. Usage: gen-seeds PROTO_DIR TRACE_DIR
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proto.h"
#include "tierd/policy.h"
#include "trace.h"

static const char *proto_dir, *trace_dir;

static int put(const char *dir, const char *name, const void *buf, size_t len)
{
	char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "we");
	if (!f || fwrite(buf, 1, len, f) != len || fclose(f) != 0) {
		fprintf(stderr, "%s: %s\n", path, strerror(errno));
		return -1;
	}
	return 0;
}

/* A message of `len` bytes whose fixed part is *msg: header filled in, then written. */
static int msg(const char *name, void *buf, uint16_t type, size_t len)
{
	proto_init(buf, type, (uint32_t)len, 7);
	return put(proto_dir, name, buf, len);
}

static int control(const char *name, uint16_t type, uint32_t op, uint64_t arg, const char *const *args,
		   unsigned nargs)
{
	uint8_t buf[512];
	struct tierd_msg_control q = { .op = op, .nargs = nargs, .arg = arg };
	size_t len = sizeof(q);

	for (unsigned i = 0; i < nargs; i++) {
		size_t l = strlen(args[i]) + 1;

		memcpy(buf + len, args[i], l);
		len += l;
	}
	memcpy(buf, &q, sizeof(q));
	return msg(name, buf, type, len);
}

static int proto_seeds(void)
{
	static const char *const policy_args[] = { "hotness", "decay=0.5", "hot_share=0.2" };
	uint8_t buf[1024];
	int r = 0;

	memset(buf, 0, sizeof(buf));
	*(struct tierd_msg_hello *)buf = (struct tierd_msg_hello){ .pid = 4242,
								  .flags = TIERD_HELLO_WANT_UFFD_DEV };
	r |= msg("seed-hello", buf, TIERD_MSG_HELLO, sizeof(struct tierd_msg_hello));
	*(struct tierd_msg_welcome *)buf = (struct tierd_msg_welcome){ .daemon_version = 1,
								      .heartbeat_ms = 250 };
	r |= msg("seed-welcome", buf, TIERD_MSG_WELCOME, sizeof(struct tierd_msg_welcome));
	*(struct tierd_msg_attach *)buf = (struct tierd_msg_attach){
		.kind = TIERD_SEG_SHMEM, .page_size = 4096, .base = 0x7f0000000000ull,
		.length = 64ull << 20, .uffd_features = 1u << 10 };
	r |= msg("seed-attach", buf, TIERD_MSG_ATTACH, sizeof(struct tierd_msg_attach));
	*(struct tierd_msg_attached *)buf = (struct tierd_msg_attached){ .status = -EINVAL };
	snprintf(((struct tierd_msg_attached *)buf)->reason, 128, "length 1 does not match");
	r |= msg("seed-attached", buf, TIERD_MSG_ATTACHED, sizeof(struct tierd_msg_attached));
	{
		struct tierd_msg_zap *z = (struct tierd_msg_zap *)buf;
		struct tierd_zap_range *ranges = (struct tierd_zap_range *)(z + 1);

		*z = (struct tierd_msg_zap){ .attach_id = 3, .nranges = 3 };
		for (unsigned i = 0; i < 3; i++)
			ranges[i] = (struct tierd_zap_range){ .offset = i * 65536, .length = 32768 };
		r |= msg("seed-zap", buf, TIERD_MSG_ZAP, sizeof(*z) + 3 * sizeof(*ranges));
	}
	*(struct tierd_msg_zap_done *)buf = (struct tierd_msg_zap_done){ .attach_id = 3, .nranges = 3 };
	r |= msg("seed-zap-done", buf, TIERD_MSG_ZAP_DONE, sizeof(struct tierd_msg_zap_done));
	*(struct tierd_msg_ping *)buf = (struct tierd_msg_ping){ .token = 99 };
	r |= msg("seed-ping", buf, TIERD_MSG_PING, sizeof(struct tierd_msg_ping));
	r |= msg("seed-pong", buf, TIERD_MSG_PONG, sizeof(struct tierd_msg_ping));
	*(struct tierd_msg_detach *)buf = (struct tierd_msg_detach){ .attach_id = 3 };
	r |= msg("seed-detach", buf, TIERD_MSG_DETACH, sizeof(struct tierd_msg_detach));
	*(struct tierd_msg_heat_query *)buf = (struct tierd_msg_heat_query){ .segment_id = 2,
									    .first_page = 8 };
	r |= msg("seed-heat-query", buf, TIERD_MSG_HEAT_QUERY, sizeof(struct tierd_msg_heat_query));
	*(struct tierd_msg_heat_reply *)buf = (struct tierd_msg_heat_reply){
		.segment_id = 2, .first_page = 8, .npages = 20, .total_pages = 28, .epoch = 5 };
	memset(buf + sizeof(struct tierd_msg_heat_reply), 0xa5, 3);
	r |= msg("seed-heat-reply", buf, TIERD_MSG_HEAT_REPLY, sizeof(struct tierd_msg_heat_reply) + 3);
	memset(buf, 0, sizeof(buf));
	r |= msg("seed-status-query", buf, TIERD_MSG_STATUS_QUERY, sizeof(struct tierd_msg_hdr));
	{
		const char *json = "{\"epoch\":5,\"clients\":[]}";

		memcpy(buf + sizeof(struct tierd_msg_hdr), json, strlen(json) + 1);
		r |= msg("seed-status-reply", buf, TIERD_MSG_STATUS_REPLY,
			 sizeof(struct tierd_msg_hdr) + strlen(json) + 1);
	}
	memset(buf, 0, sizeof(buf));
	*(struct tierd_msg_error *)buf = (struct tierd_msg_error){ .status = -EPROTO };
	snprintf(((struct tierd_msg_error *)buf)->reason, 128, "HELLO expected first");
	r |= msg("seed-error", buf, TIERD_MSG_ERROR, sizeof(struct tierd_msg_error));
	r |= control("seed-control-policy-set", TIERD_MSG_CONTROL, TIERD_CTL_POLICY_SET, 0, policy_args, 3);
	r |= control("seed-control-record-start", TIERD_MSG_CONTROL_FD, TIERD_CTL_RECORD_START, 1 << 20,
		     NULL, 0);
	r |= control("seed-control-record-stop", TIERD_MSG_CONTROL, TIERD_CTL_RECORD_STOP, 0, NULL, 0);
	r |= control("seed-control-metrics", TIERD_MSG_CONTROL, TIERD_CTL_METRICS, 0, NULL, 0);
	{
		const char *text = "policy hotness running";

		memset(buf, 0, sizeof(buf));
		memcpy(buf + sizeof(struct tierd_msg_control_reply), text, strlen(text) + 1);
		r |= msg("seed-control-reply", buf, TIERD_MSG_CONTROL_REPLY,
			 sizeof(struct tierd_msg_control_reply) + strlen(text) + 1);
	}
	return r;
}

static int trace(const char *name, uint32_t flavour, const struct trace_rec *recs, size_t n)
{
	struct trace_header h = { .flavour = flavour, .seed = 42, .epoch_ms = 100, .page_size = 4096,
				  .first_epoch = flavour == TRACE_SAMPLED ? 17 : 0 };
	struct trace_writer *w;
	char path[512];
	int r;

	snprintf(h.source, sizeof(h.source), "gen-seeds");
	snprintf(path, sizeof(path), "%s/%s", trace_dir, name);
	r = trace_writer_open(path, &h, 0, true, &w);
	for (size_t i = 0; r == 0 && i < n; i++)
		r = trace_write(w, &recs[i]);
	if (r == 0)
		r = trace_writer_close(w);
	if (r < 0)
		fprintf(stderr, "%s: %s\n", path, strerror(-r));
	return r;
}

#define FLOATS(lo, hi) ((uint64_t)(lo) | (uint64_t)(hi) << 32)

static int trace_seeds(void)
{
	/* A generator's output: every access, per page. */
	static const struct trace_rec full[] = {
		{ .type = TREC_SEG, .u32 = 1, .a = 16, .b = 4096, .u8 = TIERD_SEGV_SHMEM },
		{ .type = TREC_EVENT, .a = 1000, .b = 0, .u32 = 1, .u16 = 3, .u8 = TIERD_EV_ACCESS },
		{ .type = TREC_EVENT, .a = 2000, .b = 5, .u32 = 1, .u16 = 1, .u8 = TIERD_EV_ACCESS },
		{ .type = TREC_EVENT, .a = 3000, .b = 15, .u32 = 1, .u16 = 9, .u8 = TIERD_EV_ACCESS },
		{ .type = TREC_SEG_END, .u32 = 1 },
	};
	/* What tierd records: events, then one epoch's view and its decide. 0x3f000000 is 0.5f,
	 * 0x3e800000 0.25f, 0x3f733333 0.95f, 0x3f59999a 0.85f. */
	static const struct trace_rec sampled[] = {
		{ .type = TREC_SEG, .u32 = 2, .a = 64, .b = 4096, .u8 = TIERD_SEGV_SHMEM },
		{ .type = TREC_SEG, .u32 = 3, .a = 4, .b = 2u << 20, .u8 = TIERD_SEGV_HUGETLB },
		{ .type = TREC_EVENT, .a = 10, .b = 3, .u32 = 2, .c = 77, .u16 = 1, .u8 = TIERD_EV_FAULT },
		{ .type = TREC_EVENT, .a = 11, .b = 40, .u32 = 2, .u16 = 1, .u8 = TIERD_EV_SAMPLE },
		{ .type = TREC_EVENT, .a = 12, .b = 1, .u32 = 3, .u16 = 1, .u8 = TIERD_EV_FIRST_TOUCH },
		{ .type = TREC_EPOCH, .a = 100, .u32 = 18, .b = 1 << 20, .c = 64 << 20, .u8 = 1, .u16 = 2 },
		{ .type = TREC_TIER, .u8 = 0, .a = 1ull << 30, .b = 1ull << 29, .c = 1ull << 29, .u16 = 1,
		  .u32 = 1 },
		{ .type = TREC_TIER, .u8 = 1, .a = 4ull << 30, .b = 4ull << 30, .u16 = 1,
		  .u32 = (uint32_t)-1 },
		{ .type = TREC_NODE_TIER, .u8 = 0, .u16 = 0 },
		{ .type = TREC_NODE_TIER, .u8 = 1, .u16 = 1 },
		{ .type = TREC_NODE_TIER, .u8 = 2, .u16 = (uint16_t)-1 },
		{ .type = TREC_NODES, .u32 = 2, .a = 0, .b = 32, .c = 0 },
		{ .type = TREC_NODES, .u32 = 2, .a = 32, .b = 32, .c = (uint64_t)-1 },
		{ .type = TREC_REGIONS_BEGIN, .u32 = 2, .a = 2 },
		{ .type = TREC_REGION, .u32 = 2, .a = 0, .b = 32, .c = FLOATS(0x3f000000, 0x3e800000),
		  .u16 = 12 },
		{ .type = TREC_REGION, .u32 = 2, .a = 32, .b = 64, .c = 0, .u16 = 3 },
		{ .type = TREC_CLOSED, .u32 = 2, .a = 8, .b = 8 },
		{ .type = TREC_DECIDE, .u32 = 18, .a = FLOATS(0x3f733333, 0x3f59999a), .b = 32768, .c = 32 },
		{ .type = TREC_SEG_END, .u32 = 3 },
	};
	return trace("seed-full.trc", TRACE_FULL, full, sizeof(full) / sizeof(full[0])) |
	       trace("seed-sampled.trc", TRACE_SAMPLED, sampled, sizeof(sampled) / sizeof(sampled[0]));
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: %s PROTO_DIR TRACE_DIR\n", argv[0]);
		return 2;
	}
	proto_dir = argv[1];
	trace_dir = argv[2];
	return proto_seeds() || trace_seeds() ? 1 : 0;
}
