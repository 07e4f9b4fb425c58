/* SPDX-License-Identifier: MIT */
/*
 * Access trace files (docs/trace-format.md): a buffered, size-bounded writer and a validating
 * reader. The on-disk layout is defined byte by byte, little-endian, independently of the C
 * structs in trace.h: every field goes through put_le*()/get_le*() so that a big-endian port
 * reads and writes the same files (on x86-64 the conversions compile to plain loads and stores).
 */
#include "trace.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tierd/policy.h"

/* The version-1 header on disk. A later version may only make it longer (header_size says how
 * long); these offsets never change. */
#define HDR_OFF_MAGIC 0
#define HDR_OFF_VERSION 8
#define HDR_OFF_HEADER_SIZE 12
#define HDR_OFF_RECORD_SIZE 16
#define HDR_OFF_FLAVOUR 20
#define HDR_OFF_SEED 24
#define HDR_OFF_EPOCH_MS 32
#define HDR_OFF_PAGE_SIZE 36
#define HDR_OFF_SOURCE 40
#define HDR_OFF_RESERVED 72
#define HDR_V1_SIZE 104u

/* Records on disk: type u8 @0, u8 @1, u16 @2, u32 @4, a @8, b @16, c @24. */
#define REC_SIZE 32u

/* The in-memory structs happen to match the disk layout on x86-64; the codec does not rely on
 * it, but header_size is written as sizeof(struct trace_header), so that must be the v1 size. */
_Static_assert(sizeof(struct trace_header) == HDR_V1_SIZE, "trace header v1 is 104 bytes");
_Static_assert(offsetof(struct trace_header, source) == HDR_OFF_SOURCE, "header layout");
_Static_assert(offsetof(struct trace_header, first_epoch) == HDR_OFF_RESERVED, "header layout");
_Static_assert(sizeof(((struct trace_header *)0)->magic) == sizeof(TRACE_MAGIC) - 1, "magic size");
_Static_assert(sizeof(struct trace_rec) == REC_SIZE, "record size");
_Static_assert(sizeof(float) == sizeof(uint32_t), "float bits are stored as u32");

/* 2048 records per write(): few system calls even at a fault rate of 100k/s, and small enough
 * that a daemon that dies loses under a second of trace. */
#define WRITE_BUF_BYTES (64u * 1024u)
#define READ_BUF_BYTES (64u * 1024u)

static void put_le16(uint8_t *p, uint16_t v)
{
	v = htole16(v);
	memcpy(p, &v, sizeof(v));
}

static void put_le32(uint8_t *p, uint32_t v)
{
	v = htole32(v);
	memcpy(p, &v, sizeof(v));
}

static void put_le64(uint8_t *p, uint64_t v)
{
	v = htole64(v);
	memcpy(p, &v, sizeof(v));
}

static uint16_t get_le16(const uint8_t *p)
{
	uint16_t v;

	memcpy(&v, p, sizeof(v));
	return le16toh(v);
}

static uint32_t get_le32(const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, sizeof(v));
	return le32toh(v);
}

static uint64_t get_le64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, sizeof(v));
	return le64toh(v);
}

static float float_from_bits(uint32_t bits)
{
	float f;

	memcpy(&f, &bits, sizeof(f));
	return f;
}

static void encode_header(const struct trace_header *h, uint8_t out[HDR_V1_SIZE])
{
	memset(out, 0, HDR_V1_SIZE);
	memcpy(out + HDR_OFF_MAGIC, h->magic, sizeof(h->magic));
	put_le32(out + HDR_OFF_VERSION, h->version);
	put_le32(out + HDR_OFF_HEADER_SIZE, h->header_size);
	put_le32(out + HDR_OFF_RECORD_SIZE, h->record_size);
	put_le32(out + HDR_OFF_FLAVOUR, h->flavour);
	put_le64(out + HDR_OFF_SEED, h->seed);
	put_le32(out + HDR_OFF_EPOCH_MS, h->epoch_ms);
	put_le32(out + HDR_OFF_PAGE_SIZE, h->page_size);
	memcpy(out + HDR_OFF_SOURCE, h->source, sizeof(h->source));
	put_le64(out + HDR_OFF_RESERVED, h->first_epoch);
	for (size_t i = 0; i < 3; i++)
		put_le64(out + HDR_OFF_RESERVED + 8 + 8 * i, h->reserved[i]);
}

static void decode_header(const uint8_t in[HDR_V1_SIZE], struct trace_header *h)
{
	memcpy(h->magic, in + HDR_OFF_MAGIC, sizeof(h->magic));
	h->version = get_le32(in + HDR_OFF_VERSION);
	h->header_size = get_le32(in + HDR_OFF_HEADER_SIZE);
	h->record_size = get_le32(in + HDR_OFF_RECORD_SIZE);
	h->flavour = get_le32(in + HDR_OFF_FLAVOUR);
	h->seed = get_le64(in + HDR_OFF_SEED);
	h->epoch_ms = get_le32(in + HDR_OFF_EPOCH_MS);
	h->page_size = get_le32(in + HDR_OFF_PAGE_SIZE);
	memcpy(h->source, in + HDR_OFF_SOURCE, sizeof(h->source));
	h->first_epoch = get_le64(in + HDR_OFF_RESERVED);
	for (size_t i = 0; i < 3; i++)
		h->reserved[i] = get_le64(in + HDR_OFF_RESERVED + 8 + 8 * i);
}

static void encode_rec(const struct trace_rec *r, uint8_t out[REC_SIZE])
{
	out[0] = r->type;
	out[1] = r->u8;
	put_le16(out + 2, r->u16);
	put_le32(out + 4, r->u32);
	put_le64(out + 8, r->a);
	put_le64(out + 16, r->b);
	put_le64(out + 24, r->c);
}

static void decode_rec(const uint8_t in[REC_SIZE], struct trace_rec *r)
{
	r->type = in[0];
	r->u8 = in[1];
	r->u16 = get_le16(in + 2);
	r->u32 = get_le32(in + 4);
	r->a = get_le64(in + 8);
	r->b = get_le64(in + 16);
	r->c = get_le64(in + 24);
}

static bool flavour_known(uint32_t flavour)
{
	return flavour == TRACE_FULL || flavour == TRACE_SAMPLED;
}

static bool is_share(float f)
{
	return isfinite(f) && f >= 0.0f && f <= 1.0f;
}

static bool node_ok(int64_t node)
{
	return node >= -1 && node < TIERD_MAX_NODES;
}

/*
 * The field checks of the known record types, shared by the writer (so that tierd never writes a
 * file its own reader refuses) and the reader (so that a replay never hands a policy a view the
 * host could not have built). Returns 0 or -EBADMSG with the field named.
 */
static int rec_check(const struct trace_rec *r, char *why, size_t whylen)
{
	switch (r->type) {
	case TREC_SEG:
		/* A page size that is not a power of two would make every byte count wrong. */
		if (r->b == 0 || (r->b & (r->b - 1)) != 0) {
			snprintf(why, whylen, "seg %u: page_size %llu is not a power of two", r->u32,
				 (unsigned long long)r->b);
			return -EBADMSG;
		}
		if (r->a > UINT64_MAX / r->b) {
			snprintf(why, whylen, "seg %u: %llu pages of %llu bytes overflow", r->u32,
				 (unsigned long long)r->a, (unsigned long long)r->b);
			return -EBADMSG;
		}
		return 0;
	case TREC_EVENT:
		/* Unknown kinds are allowed (policies ignore them); 0 was never a kind. */
		if (r->u8 == 0) {
			snprintf(why, whylen, "event kind 0");
			return -EBADMSG;
		}
		return 0;
	case TREC_EPOCH:
		if (r->u16 < 1 || r->u16 > TIERD_MAX_TIERS) {
			snprintf(why, whylen, "epoch %u: ntiers %u not in 1..%d", r->u32, r->u16,
				 TIERD_MAX_TIERS);
			return -EBADMSG;
		}
		if (r->u8 > 1) {
			snprintf(why, whylen, "epoch %u: migrate %u is not 0 or 1", r->u32, r->u8);
			return -EBADMSG;
		}
		return 0;
	case TREC_TIER:
		if (r->u8 >= TIERD_MAX_TIERS) {
			snprintf(why, whylen, "tier %u >= %d", r->u8, TIERD_MAX_TIERS);
			return -EBADMSG;
		}
		if (r->u16 > TIERD_MAX_NODES) {
			snprintf(why, whylen, "tier %u: nnodes %u > %d", r->u8, r->u16, TIERD_MAX_NODES);
			return -EBADMSG;
		}
		if (!node_ok((int32_t)r->u32)) {
			snprintf(why, whylen, "tier %u: target_node %d out of range", r->u8,
				 (int32_t)r->u32);
			return -EBADMSG;
		}
		return 0;
	case TREC_NODE_TIER:
		if (r->u8 >= TIERD_MAX_NODES) {
			snprintf(why, whylen, "node %u >= %d", r->u8, TIERD_MAX_NODES);
			return -EBADMSG;
		}
		if ((int16_t)r->u16 < -1 || (int16_t)r->u16 >= TIERD_MAX_TIERS) {
			snprintf(why, whylen, "node %u: tier %d out of range", r->u8, (int16_t)r->u16);
			return -EBADMSG;
		}
		return 0;
	case TREC_NODES:
		if (r->b == 0 || r->a + r->b < r->a) {
			snprintf(why, whylen, "nodes seg %u: pages %llu+%llu is empty or overflows", r->u32,
				 (unsigned long long)r->a, (unsigned long long)r->b);
			return -EBADMSG;
		}
		if (!node_ok((int64_t)r->c)) {
			snprintf(why, whylen, "nodes seg %u: node %lld out of range", r->u32,
				 (long long)(int64_t)r->c);
			return -EBADMSG;
		}
		return 0;
	case TREC_REGION: {
		float score = float_from_bits((uint32_t)r->c);
		float prev = float_from_bits((uint32_t)(r->c >> 32));

		/* Regions are [start, end) and never empty (the host's region set keeps that). */
		if (r->a >= r->b) {
			snprintf(why, whylen, "region seg %u: start %llu >= end %llu", r->u32,
				 (unsigned long long)r->a, (unsigned long long)r->b);
			return -EBADMSG;
		}
		if (!is_share(score) || !is_share(prev)) {
			snprintf(why, whylen, "region seg %u: score %g / prev_score %g not in 0..1", r->u32,
				 (double)score, (double)prev);
			return -EBADMSG;
		}
		return 0;
	}
	case TREC_CLOSED:
		if (r->b == 0 || r->a + r->b < r->a) {
			snprintf(why, whylen, "closed window seg %u: pages %llu+%llu is empty or overflows",
				 r->u32, (unsigned long long)r->a, (unsigned long long)r->b);
			return -EBADMSG;
		}
		return 0;
	case TREC_DECIDE: {
		float high = float_from_bits((uint32_t)r->a);
		float low = float_from_bits((uint32_t)(r->a >> 32));

		if (!is_share(high) || !is_share(low) || low > high) {
			snprintf(why, whylen, "decide epoch %u: watermarks low %g high %g not 0 <= low <= high <= 1",
				 r->u32, (double)low, (double)high);
			return -EBADMSG;
		}
		return 0;
	}
	default:
		/* TREC_SEG_END, TREC_REGIONS_BEGIN: any value is meaningful. Unknown types: a newer
		 * writer's; the reader passes them on for the caller to skip. */
		return 0;
	}
}

/* ---- writer --------------------------------------------------------------------------------- */

struct trace_writer {
	int fd;
	int err;            /* first write error, sticky: later writes fail with it */
	uint64_t max_bytes; /* 0: no limit */
	uint64_t bytes;     /* header + accepted records, flushed or not */
	uint64_t records, dropped;
	size_t used;        /* bytes in buf */
	uint8_t buf[WRITE_BUF_BYTES];
};

static int write_all(int fd, const uint8_t *p, size_t n)
{
	while (n > 0) {
		ssize_t k = write(fd, p, n);

		if (k < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		/* write() returning 0 for a regular file means no progress can be made. */
		if (k == 0)
			return -EIO;
		p += k;
		n -= (size_t)k;
	}
	return 0;
}

static int writer_flush(struct trace_writer *w)
{
	int r;

	if (w->err)
		return w->err;
	if (w->used == 0)
		return 0;
	r = write_all(w->fd, w->buf, w->used);
	w->used = 0;
	if (r < 0)
		w->err = r;
	return r;
}

/* The header checks and writing, on an open fd; frees nothing on failure. */
static int writer_start(int fd, const struct trace_header *h, uint64_t max_bytes, struct trace_writer **ret)
{
	struct trace_header hdr = *h;
	uint8_t raw[HDR_V1_SIZE];
	struct trace_writer *w;
	int r;

	/* The writer owns the fields that describe the encoding; the caller says the rest. */
	memcpy(hdr.magic, TRACE_MAGIC, sizeof(hdr.magic));
	hdr.version = TRACE_VERSION;
	hdr.header_size = HDR_V1_SIZE;
	hdr.record_size = REC_SIZE;
	/* Zero in version 1, so that a later minor version can give them a meaning. */
	memset(hdr.reserved, 0, sizeof(hdr.reserved));
	if (!flavour_known(hdr.flavour))
		return -EINVAL;
	/* source is read back as a C string: it must keep a NUL. */
	if (memchr(hdr.source, 0, sizeof(hdr.source)) == NULL)
		return -EINVAL;
	/* A bound below the header could not hold a valid file. */
	if (max_bytes != 0 && max_bytes < HDR_V1_SIZE)
		return -EINVAL;
	w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->max_bytes = max_bytes;
	w->fd = fd;
	encode_header(&hdr, raw);
	r = write_all(fd, raw, sizeof(raw));
	if (r < 0) {
		free(w);
		return r;
	}
	w->bytes = HDR_V1_SIZE;
	*ret = w;
	return 0;
}

int trace_writer_open(const char *path, const struct trace_header *h, uint64_t max_bytes, bool replace,
		      struct trace_writer **ret)
{
	int fd, r;

	/* 0600: which pages a process touches, and when, can leak what it computes (the same
	 * side channel as page-fault timing); the owner may widen it. */
	fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | (replace ? O_TRUNC : O_EXCL), 0600);
	if (fd < 0)
		return -errno;
	r = writer_start(fd, h, max_bytes, ret);
	if (r < 0) {
		/* Leave no headerless file behind: the next O_EXCL attempt would fail on it. Only a
		 * file this call created: with `replace` the path may be something else's (a device). */
		if (!replace)
			(void)unlink(path);
		close(fd);
	}
	return r;
}

int trace_writer_fdopen(int fd, const struct trace_header *h, uint64_t max_bytes,
			struct trace_writer **ret)
{
	int r = writer_start(fd, h, max_bytes, ret);

	if (r < 0)
		close(fd);
	return r;
}

int trace_write(struct trace_writer *w, const struct trace_rec *rec)
{
	char why[128];
	int r;

	/* A caller's bug, not a drop: reported the same whether or not the file is full. */
	if (rec_check(rec, why, sizeof(why)) < 0)
		return -EINVAL;
	if (w->err) {
		w->dropped++;
		return w->err;
	}
	/* Whole records only: the file stays readable to its last byte when the bound cuts it. */
	if (w->max_bytes != 0 && w->bytes + REC_SIZE > w->max_bytes) {
		w->dropped++;
		return -EFBIG;
	}
	if (w->used + REC_SIZE > sizeof(w->buf)) {
		r = writer_flush(w);
		if (r < 0) {
			w->dropped++;
			return r;
		}
	}
	encode_rec(rec, w->buf + w->used);
	w->used += REC_SIZE;
	w->bytes += REC_SIZE;
	w->records++;
	return 0;
}

uint64_t trace_writer_records(const struct trace_writer *w)
{
	return w->records;
}

uint64_t trace_writer_dropped(const struct trace_writer *w)
{
	return w->dropped;
}

int trace_writer_close(struct trace_writer *w)
{
	int r;

	if (!w)
		return 0;
	r = writer_flush(w);
	/* close() can report a deferred write error (NFS, quota); it counts if nothing came first. */
	if (close(w->fd) < 0 && r == 0)
		r = -errno;
	free(w);
	return r;
}

/* ---- reader --------------------------------------------------------------------------------- */

struct trace_reader {
	int fd;
	int err;         /* sticky: a truncated record or a read error ends the trace */
	char err_why[160];
	uint64_t offset; /* file offset of buf[pos] */
	size_t pos, len; /* buf[pos..len) is read but not consumed */
	struct trace_header hdr;
	uint8_t buf[READ_BUF_BYTES];
};

/* Makes up to `want` bytes available at buf[pos]. Returns the count available (less than want
 * only at the end of the file) or a negative errno. Reads with read() only, so pipes work. */
static ssize_t reader_fill(struct trace_reader *r, size_t want)
{
	if (r->len - r->pos >= want)
		return (ssize_t)want;
	memmove(r->buf, r->buf + r->pos, r->len - r->pos);
	r->len -= r->pos;
	r->pos = 0;
	while (r->len < want) {
		ssize_t k = read(r->fd, r->buf + r->len, sizeof(r->buf) - r->len);

		if (k < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (k == 0)
			break;
		r->len += (size_t)k;
	}
	return (ssize_t)(r->len < want ? r->len : want);
}

static void reader_consume(struct trace_reader *r, size_t n)
{
	r->pos += n;
	r->offset += n;
}

/* Checks the header; returns 0 or a negative errno with the reason. */
static int reader_header(struct trace_reader *r, char *why, size_t whylen)
{
	struct trace_header *h = &r->hdr;
	uint64_t skip;
	ssize_t n;

	n = reader_fill(r, HDR_V1_SIZE);
	if (n < 0) {
		snprintf(why, whylen, "reading the header: %s", strerror((int)-n));
		return (int)n;
	}
	/* Magic first: a short file that is not a trace at all should say so. */
	if ((size_t)n < sizeof(h->magic) || memcmp(r->buf + r->pos, TRACE_MAGIC, sizeof(h->magic)) != 0) {
		snprintf(why, whylen, "not a tierd trace (bad magic)");
		return -EBADMSG;
	}
	if ((size_t)n < HDR_V1_SIZE) {
		snprintf(why, whylen, "truncated header: %zd of %u bytes", n, HDR_V1_SIZE);
		return -EBADMSG;
	}
	decode_header(r->buf + r->pos, h);
	reader_consume(r, HDR_V1_SIZE);
	if (h->version > TRACE_VERSION) {
		snprintf(why, whylen, "trace version %u is newer than this reader's version %u",
			 h->version, TRACE_VERSION);
		return -EPROTONOSUPPORT;
	}
	if (h->version == 0) {
		snprintf(why, whylen, "trace version 0 does not exist");
		return -EBADMSG;
	}
	if (h->header_size < HDR_V1_SIZE) {
		snprintf(why, whylen, "header_size %u is below the version-1 size %u", h->header_size,
			 HDR_V1_SIZE);
		return -EBADMSG;
	}
	if (h->record_size != REC_SIZE) {
		snprintf(why, whylen, "record_size %u, expected %u", h->record_size, REC_SIZE);
		return -EBADMSG;
	}
	if (!flavour_known(h->flavour)) {
		snprintf(why, whylen, "unknown flavour %u", h->flavour);
		return -EBADMSG;
	}
	if (memchr(h->source, 0, sizeof(h->source)) == NULL) {
		snprintf(why, whylen, "header source is not NUL-terminated");
		return -EBADMSG;
	}
	/* A newer minor writer's longer header: its tail is fields this reader does not know. */
	skip = h->header_size - HDR_V1_SIZE;
	while (skip > 0) {
		size_t chunk = skip < sizeof(r->buf) ? (size_t)skip : sizeof(r->buf);

		n = reader_fill(r, chunk);
		if (n < 0) {
			snprintf(why, whylen, "reading the header: %s", strerror((int)-n));
			return (int)n;
		}
		if (n == 0) {
			snprintf(why, whylen, "truncated header: %llu of %u bytes",
				 (unsigned long long)r->offset, h->header_size);
			return -EBADMSG;
		}
		reader_consume(r, (size_t)n);
		skip -= (uint64_t)n;
	}
	return 0;
}

int trace_reader_open(const char *path, struct trace_reader **ret, char *why, size_t whylen)
{
	struct trace_reader *r;
	int e;

	r = calloc(1, sizeof(*r));
	if (!r) {
		snprintf(why, whylen, "out of memory");
		return -ENOMEM;
	}
	r->fd = open(path, O_RDONLY | O_CLOEXEC);
	if (r->fd < 0) {
		e = -errno;
		snprintf(why, whylen, "%s: %s", path, strerror(-e));
		free(r);
		return e;
	}
	e = reader_header(r, why, whylen);
	if (e < 0) {
		trace_reader_close(r);
		return e;
	}
	*ret = r;
	return 0;
}

const struct trace_header *trace_reader_header(const struct trace_reader *r)
{
	return &r->hdr;
}

/*
 * A truncated record and a read error are sticky (the same error again on every later call); a
 * record with an out-of-range field is consumed, so a caller may log it and read on.
 */
int trace_read(struct trace_reader *r, struct trace_rec *rec, char *why, size_t whylen)
{
	uint64_t off = r->offset;
	char reason[128];
	ssize_t n;
	int e;

	if (r->err) {
		snprintf(why, whylen, "%s", r->err_why);
		return r->err;
	}
	n = reader_fill(r, REC_SIZE);
	if (n < 0) {
		r->err = (int)n;
		snprintf(r->err_why, sizeof(r->err_why), "reading at byte offset %llu: %s",
			 (unsigned long long)off, strerror((int)-n));
		snprintf(why, whylen, "%s", r->err_why);
		return r->err;
	}
	if (n == 0)
		return 0;
	if ((size_t)n < REC_SIZE) {
		r->err = -EBADMSG;
		snprintf(r->err_why, sizeof(r->err_why),
			 "truncated record at byte offset %llu: %zd of %u bytes", (unsigned long long)off,
			 n, REC_SIZE);
		snprintf(why, whylen, "%s", r->err_why);
		return r->err;
	}
	decode_rec(r->buf + r->pos, rec);
	reader_consume(r, REC_SIZE);
	e = rec_check(rec, reason, sizeof(reason));
	if (e < 0) {
		snprintf(why, whylen, "record at byte offset %llu: %s", (unsigned long long)off, reason);
		return e;
	}
	return 1;
}

void trace_reader_close(struct trace_reader *r)
{
	if (!r)
		return;
	if (r->fd >= 0)
		close(r->fd);
	free(r);
}

/* ---- text export ---------------------------------------------------------------------------- */

static const char *event_kind_name(unsigned kind)
{
	switch (kind) {
	case TIERD_EV_FAULT:
		return "fault";
	case TIERD_EV_SAMPLE:
		return "sample";
	case TIERD_EV_FIRST_TOUCH:
		return "first_touch";
	case TIERD_EV_ACCESS:
		return "access";
	default:
		return NULL;
	}
}

static const char *seg_kind_name(unsigned kind)
{
	switch (kind) {
	case TIERD_SEGV_SHMEM:
		return "shmem";
	case TIERD_SEGV_HUGETLB:
		return "hugetlb";
	default:
		return NULL;
	}
}

/*
 * Writes one line per record, fields as name=value in a fixed order, so exports diff cleanly.
 * Unknown kinds print as numbers; unknown record types print every raw field. Returns the length
 * of the line, -ENOBUFS when it did not fit (buf then holds a NUL-terminated prefix) or -EINVAL.
 */
int trace_rec_format(const struct trace_rec *r, char *buf, size_t len)
{
	unsigned long long a = r->a, b = r->b, c = r->c;
	const char *name;
	char kind[16];
	int n;

	if (!buf || len == 0)
		return -EINVAL;
	switch (r->type) {
	case TREC_SEG:
		name = seg_kind_name(r->u8);
		if (!name)
			snprintf(kind, sizeof(kind), "%u", r->u8);
		n = snprintf(buf, len, "seg id=%u npages=%llu page_size=%llu kind=%s", r->u32, a, b,
			     name ? name : kind);
		break;
	case TREC_SEG_END:
		n = snprintf(buf, len, "seg_end id=%u", r->u32);
		break;
	case TREC_EVENT:
		name = event_kind_name(r->u8);
		if (!name)
			snprintf(kind, sizeof(kind), "%u", r->u8);
		n = snprintf(buf, len, "event t=%llu seg=%u page=%llu kind=%s weight=%u tid=%llu", a,
			     r->u32, b, name ? name : kind, r->u16, c);
		break;
	case TREC_EPOCH:
		n = snprintf(buf, len,
			     "epoch t=%llu epoch=%u max_move_bytes=%llu fast_budget_bytes=%llu migrate=%u ntiers=%u",
			     a, r->u32, b, c, r->u8, r->u16);
		break;
	case TREC_TIER:
		n = snprintf(buf, len,
			     "tier tier=%u capacity_bytes=%llu free_bytes=%llu used_bytes=%llu nnodes=%u target_node=%d",
			     r->u8, a, b, c, r->u16, (int32_t)r->u32);
		break;
	case TREC_NODE_TIER:
		n = snprintf(buf, len, "node_tier node=%u tier=%d", r->u8, (int16_t)r->u16);
		break;
	case TREC_NODES:
		n = snprintf(buf, len, "nodes seg=%u page=%llu npages=%llu node=%lld", r->u32, a, b,
			     (long long)(int64_t)r->c);
		break;
	case TREC_REGION:
		n = snprintf(buf, len, "region seg=%u start=%llu end=%llu score=%.6g prev_score=%.6g samples=%u",
			     r->u32, a, b, (double)float_from_bits((uint32_t)r->c),
			     (double)float_from_bits((uint32_t)(r->c >> 32)), r->u16);
		break;
	case TREC_REGIONS_BEGIN:
		n = snprintf(buf, len, "regions_begin seg=%u nregions=%llu", r->u32, a);
		break;
	case TREC_CLOSED:
		n = snprintf(buf, len, "closed seg=%u start=%llu npages=%llu", r->u32, a, b);
		break;
	case TREC_DECIDE:
		n = snprintf(buf, len,
			     "decide epoch=%u high_wm=%.6g low_wm=%.6g window_bytes=%llu max_windows=%llu",
			     r->u32, (double)float_from_bits((uint32_t)r->a),
			     (double)float_from_bits((uint32_t)(r->a >> 32)), b, c);
		break;
	default:
		n = snprintf(buf, len, "unknown type=%u u8=%u u16=%u u32=%u a=%llu b=%llu c=%llu", r->type,
			     r->u8, r->u16, r->u32, a, b, c);
		break;
	}
	if (n < 0)
		return -EINVAL;
	return (size_t)n < len ? n : -ENOBUFS;
}
