/* SPDX-License-Identifier: MIT */
/*
 * Access traces: what a policy saw, in a versioned binary file of a fixed header and fixed
 * 32-byte records (docs/trace-format.md). tierd writes them (tierctl record), tierd-sim reads
 * them and its generators write full (unsampled) ones.
 *
 * Two flavours, said by the header:
 *   TRACE_FULL     every access (TIERD_EV_ACCESS records), from a generator: tierd-sim applies
 *                  its model of tierd's sampling to produce the events a policy would see.
 *   TRACE_SAMPLED  recorded by tierd: the policy's exact input stream — segments, events, and
 *                  per epoch the view (tiers, page nodes that changed, regions, closed windows)
 *                  followed by a DECIDE record where tierd called decide(). Replaying it calls
 *                  the policy with the same inputs, so its decisions can be compared.
 */
#ifndef TIERD_POLICY_TRACE_H
#define TIERD_POLICY_TRACE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define TRACE_MAGIC "TIERDTRC"
#define TRACE_VERSION 1u

enum trace_flavour { TRACE_FULL = 1, TRACE_SAMPLED = 2 };

struct trace_header {
	char magic[8];        /* TRACE_MAGIC, no NUL */
	uint32_t version;     /* TRACE_VERSION */
	uint32_t header_size; /* sizeof(struct trace_header): readers skip what they do not know */
	uint32_t record_size; /* 32 */
	uint32_t flavour;     /* enum trace_flavour */
	uint64_t seed;        /* generator seed (FULL), tierd's policy seed (SAMPLED) */
	uint32_t epoch_ms;
	uint32_t page_size;   /* default page size of the trace's segments */
	char source[32];      /* "tierd 0.x", "tierd-sim zipf", NUL-padded */
	uint64_t first_epoch; /* SAMPLED: tierd's epoch when recording began (events before the first
			       * TREC_EPOCH belong to it); FULL: 0 */
	uint64_t reserved[3];
};

enum trace_rec_type {
	/* seg=u32 id, a=npages, b=page_size, u8=kind (tierd_seg_kind_v) */
	TREC_SEG = 1,
	/* seg=u32 id */
	TREC_SEG_END = 2,
	/* a=time_ns, b=page, seg=u32, c=tid, u16=weight, u8=kind (tierd_event_kind) */
	TREC_EVENT = 3,
	/* a=time_ns, u32=epoch, b=max_move_bytes, c=fast_budget_bytes, u8=migrate,
	 * u16 = ntiers. Starts an epoch's view; the view's records follow, then TREC_DECIDE. */
	TREC_EPOCH = 4,
	/* u8=tier index, a=capacity_bytes, b=free_bytes, c=used_bytes, u16=nnodes,
	 * u32=(uint32_t)target_node */
	TREC_TIER = 5,
	/* u8=node, u16=(uint16_t)(int16_t)tier (-1 = not a memory node) */
	TREC_NODE_TIER = 6,
	/* u32=seg, a=first page, b=npages, c=(uint64_t)(int64_t)node: a run of pages now on node */
	TREC_NODES = 7,
	/* u32=seg, a=start, b=end, c=low 32 bits: score (float bits), high 32 bits: prev_score,
	 * u16=samples (saturating). A segment's regions at this epoch, in order; they replace
	 * the segment's previous regions (TREC_REGIONS_BEGIN first). */
	TREC_REGION = 8,
	/* u32=seg, a=nregions */
	TREC_REGIONS_BEGIN = 9,
	/* u32=seg, a=start, b=npages: a window that closed at the end of the last epoch */
	TREC_CLOSED = 10,
	/* u32=epoch, a=high_wm (float bits) | low_wm (float bits) << 32, b=window_bytes,
	 * c=max_windows: tierd called decide() with the view given since TREC_EPOCH */
	TREC_DECIDE = 11,
};

struct trace_rec {
	uint8_t type;
	uint8_t u8;
	uint16_t u16;
	uint32_t u32;
	uint64_t a, b, c;
};
_Static_assert(sizeof(struct trace_rec) == 32, "trace records are 32 bytes");

struct trace_writer;

/* Creates `path` (O_EXCL unless `replace`; mode 0600) and writes the header: magic, version,
 * header_size and record_size are the writer's, the rest the caller's (-EINVAL: unknown flavour,
 * a source without a NUL, max_bytes below the header). At most max_bytes (header included; 0 = no
 * limit) are written: once full, trace_write returns -EFBIG and counts drops. trace_write returns
 * -EINVAL, writing nothing, for a record trace_read would refuse. */
int trace_writer_open(const char *path, const struct trace_header *h, uint64_t max_bytes, bool replace,
		      struct trace_writer **ret);
/* The same on an fd the caller opened (tierctl passes one: tierd writes where the user could). The
 * writer owns the fd from then on, also on failure. */
int trace_writer_fdopen(int fd, const struct trace_header *h, uint64_t max_bytes,
			struct trace_writer **ret);
int trace_write(struct trace_writer *w, const struct trace_rec *r);
uint64_t trace_writer_records(const struct trace_writer *w);
uint64_t trace_writer_dropped(const struct trace_writer *w);
/* Flushes and closes. Returns 0 or the first write error. */
int trace_writer_close(struct trace_writer *w);

struct trace_reader;

/* Opens and checks the header: magic, version (a newer one is refused, naming both), record size.
 * Returns 0 or a negative errno with the reason in why. */
int trace_reader_open(const char *path, struct trace_reader **ret, char *why, size_t whylen);
const struct trace_header *trace_reader_header(const struct trace_reader *r);
/* Reads the next record: 1, 0 at the end, or a negative errno with the reason (a truncated
 * record: its offset; an out-of-range field of a known type). Unknown types are returned as is
 * (readers skip them: newer minor additions). -EBADMSG for a bad field consumes the record (the
 * caller may read on); a truncated record or a read error is returned again on every later call.
 * trace_reader_open: -EBADMSG for a malformed header, -EPROTONOSUPPORT for a newer version. */
int trace_read(struct trace_reader *r, struct trace_rec *rec, char *why, size_t whylen);
void trace_reader_close(struct trace_reader *r);

/* One record as a line of text (no newline), for tierd-sim --export. Returns its length,
 * -ENOBUFS when it did not fit (buf then holds a NUL-terminated prefix), -EINVAL for len 0. */
int trace_rec_format(const struct trace_rec *r, char *buf, size_t len);

#endif
