/* SPDX-License-Identifier: MIT */
/* Trace files: round trip of every record type, the byte layout of docs/trace-format.md, the size
 * bound, write errors, each corrupt input's error, and random mutations that must never crash
 * the reader. Corrupt files are built here with an encoder of the documented layout, independent
 * of policy/trace.c's. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "tierd/policy.h"
#include "trace.h"

#define HDR 104u
#define REC 32u

static char dir[] = "/tmp/tierd-test-trace.XXXXXX";

static int group_setup(void **state)
{
	(void)state;
	return mkdtemp(dir) ? 0 : -1;
}

static int group_teardown(void **state)
{
	DIR *d = opendir(dir);
	struct dirent *e;

	(void)state;
	if (!d)
		return -1;
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] != '.')
			(void)unlinkat(dirfd(d), e->d_name, 0);
	}
	closedir(d);
	return rmdir(dir);
}

static const char *path_of(const char *name)
{
	static char buf[PATH_MAX];

	snprintf(buf, sizeof(buf), "%s/%s", dir, name);
	return buf;
}

static uint32_t fbits(float f)
{
	uint32_t u;

	memcpy(&u, &f, sizeof(u));
	return u;
}

static struct trace_header make_header(uint32_t flavour)
{
	struct trace_header h;

	memset(&h, 0, sizeof(h));
	h.flavour = flavour;
	h.seed = 0x1122334455667788ull;
	h.epoch_ms = 250;
	h.page_size = 4096;
	snprintf(h.source, sizeof(h.source), "test_trace");
	return h;
}

/* One record of each type, with values that fill their fields (and the edge values: -1 nodes). */
static size_t all_records(struct trace_rec *out)
{
	size_t n = 0;

	out[n++] = (struct trace_rec){ .type = TREC_SEG, .u8 = TIERD_SEGV_HUGETLB, .u32 = 7, .a = 512,
				       .b = 2u << 20 };
	out[n++] = (struct trace_rec){ .type = TREC_EVENT, .u8 = TIERD_EV_SAMPLE, .u16 = 65535, .u32 = 7,
				       .a = 123456789012ull, .b = 511, .c = 4242 };
	out[n++] = (struct trace_rec){ .type = TREC_EPOCH, .u8 = 1, .u16 = 2, .u32 = 99,
				       .a = 1000000000ull, .b = 64u << 20, .c = 1ull << 33 };
	out[n++] = (struct trace_rec){ .type = TREC_TIER, .u8 = 1, .u16 = 3, .u32 = (uint32_t)-1,
				       .a = 8ull << 30, .b = 1ull << 30, .c = 3ull << 30 };
	out[n++] = (struct trace_rec){ .type = TREC_NODE_TIER, .u8 = 63, .u16 = (uint16_t)(int16_t)-1 };
	out[n++] = (struct trace_rec){ .type = TREC_NODES, .u32 = 7, .a = 10, .b = 20,
				       .c = (uint64_t)(int64_t)-1 };
	out[n++] = (struct trace_rec){ .type = TREC_REGIONS_BEGIN, .u32 = 7, .a = 2 };
	out[n++] = (struct trace_rec){ .type = TREC_REGION, .u16 = 12, .u32 = 7, .a = 0, .b = 256,
				       .c = fbits(0.25f) | (uint64_t)fbits(0.5f) << 32 };
	out[n++] = (struct trace_rec){ .type = TREC_REGION, .u16 = 0, .u32 = 7, .a = 256, .b = 512,
				       .c = 0 };
	out[n++] = (struct trace_rec){ .type = TREC_CLOSED, .u32 = 7, .a = 256, .b = 16 };
	out[n++] = (struct trace_rec){ .type = TREC_DECIDE, .u32 = 99,
				       .a = fbits(0.95f) | (uint64_t)fbits(0.85f) << 32, .b = 65536,
				       .c = 32 };
	out[n++] = (struct trace_rec){ .type = TREC_SEG_END, .u32 = 7 };
	/* A newer writer's record type: written and read back as is. */
	out[n++] = (struct trace_rec){ .type = 200, .u8 = 1, .u16 = 2, .u32 = 3, .a = 4, .b = 5, .c = 6 };
	return n;
}

static void assert_rec_equal(const struct trace_rec *x, const struct trace_rec *y)
{
	assert_int_equal(x->type, y->type);
	assert_int_equal(x->u8, y->u8);
	assert_int_equal(x->u16, y->u16);
	assert_int_equal(x->u32, y->u32);
	assert_true(x->a == y->a);
	assert_true(x->b == y->b);
	assert_true(x->c == y->c);
}

static void write_file(const char *path, const uint8_t *p, size_t n)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, p, n), (ssize_t)n);
	close(fd);
}

/* Reads a whole file; *n gets its size. The caller frees. */
static uint8_t *read_whole(const char *path, size_t *n)
{
	struct stat st;
	uint8_t *p;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	assert_true(fd >= 0);
	assert_int_equal(fstat(fd, &st), 0);
	p = malloc((size_t)st.st_size + 1);
	assert_non_null(p);
	assert_int_equal(read(fd, p, (size_t)st.st_size), st.st_size);
	close(fd);
	*n = (size_t)st.st_size;
	return p;
}

/* The documented layout, written out independently: little-endian, byte by byte. */
static void le(uint8_t *p, uint64_t v, size_t bytes)
{
	for (size_t i = 0; i < bytes; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void raw_header(uint8_t *p, uint32_t version, uint32_t header_size, uint32_t record_size,
		       uint32_t flavour)
{
	memset(p, 0, HDR);
	memcpy(p, "TIERDTRC", 8);
	le(p + 8, version, 4);
	le(p + 12, header_size, 4);
	le(p + 16, record_size, 4);
	le(p + 20, flavour, 4);
	le(p + 24, 42, 8);
	le(p + 32, 100, 4);
	le(p + 36, 4096, 4);
	memcpy(p + 40, "raw", 3);
}

static void raw_rec(uint8_t *p, const struct trace_rec *r)
{
	p[0] = r->type;
	p[1] = r->u8;
	le(p + 2, r->u16, 2);
	le(p + 4, r->u32, 4);
	le(p + 8, r->a, 8);
	le(p + 16, r->b, 8);
	le(p + 24, r->c, 8);
}

/* A file of the raw header and records; returns its path. */
static const char *raw_file(const char *name, const struct trace_rec *recs, size_t n)
{
	uint8_t buf[HDR + 16 * REC];
	const char *path = path_of(name);

	assert_true(n <= 16);
	raw_header(buf, 1, HDR, REC, TRACE_SAMPLED);
	for (size_t i = 0; i < n; i++)
		raw_rec(buf + HDR + i * REC, &recs[i]);
	write_file(path, buf, HDR + n * REC);
	return path;
}

static int open_fd_cloexec(const char *path)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int found = -1;

	assert_non_null(d);
	while ((e = readdir(d)) != NULL) {
		char target[PATH_MAX];
		ssize_t k;

		if (e->d_name[0] == '.')
			continue;
		k = readlinkat(dirfd(d), e->d_name, target, sizeof(target) - 1);
		if (k < 0)
			continue;
		target[k] = 0;
		if (strcmp(target, path) == 0)
			found = (fcntl(atoi(e->d_name), F_GETFD) & FD_CLOEXEC) ? 1 : 0;
	}
	closedir(d);
	return found;
}

static void test_round_trip(void **state)
{
	struct trace_rec recs[16], got;
	struct trace_header h = make_header(TRACE_SAMPLED);
	const struct trace_header *rh;
	struct trace_writer *w;
	struct trace_reader *r;
	char why[256];
	size_t n = all_records(recs);
	const char *path = path_of("roundtrip.trc");

	(void)state;
	assert_int_equal(trace_writer_open(path, &h, 0, false, &w), 0);
	assert_int_equal(open_fd_cloexec(path), 1);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(trace_write(w, &recs[i]), 0);
	assert_int_equal(trace_writer_records(w), n);
	assert_int_equal(trace_writer_dropped(w), 0);
	assert_int_equal(trace_writer_close(w), 0);

	assert_int_equal(trace_reader_open(path, &r, why, sizeof(why)), 0);
	assert_int_equal(open_fd_cloexec(path), 1);
	rh = trace_reader_header(r);
	assert_memory_equal(rh->magic, TRACE_MAGIC, 8);
	assert_int_equal(rh->version, TRACE_VERSION);
	assert_int_equal(rh->header_size, HDR);
	assert_int_equal(rh->record_size, REC);
	assert_int_equal(rh->flavour, TRACE_SAMPLED);
	assert_true(rh->seed == h.seed);
	assert_int_equal(rh->epoch_ms, 250);
	assert_int_equal(rh->page_size, 4096);
	assert_string_equal(rh->source, "test_trace");
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(trace_read(r, &got, why, sizeof(why)), 1);
		assert_rec_equal(&got, &recs[i]);
	}
	/* The end, and it stays the end. */
	assert_int_equal(trace_read(r, &got, why, sizeof(why)), 0);
	assert_int_equal(trace_read(r, &got, why, sizeof(why)), 0);
	trace_reader_close(r);
}

/* The bytes on disk are the documented ones (docs/trace-format.md), whatever the host order. */
static void test_byte_layout(void **state)
{
	struct trace_header h = make_header(TRACE_FULL);
	struct trace_rec ev = { .type = TREC_EVENT, .u8 = TIERD_EV_ACCESS, .u16 = 0x0102,
				.u32 = 0x03040506, .a = 0x0708090a0b0c0d0eull, .b = 1, .c = 2 };
	uint8_t want_hdr[HDR], want_rec[REC];
	struct trace_writer *w;
	const char *path = path_of("layout.trc");
	uint8_t *p;
	size_t n;

	(void)state;
	/* The writer owns the encoding fields and zeroes the reserved ones, whatever it is given. */
	h.version = 7;
	h.header_size = 1;
	h.record_size = 2;
	h.reserved[1] = 5;
	assert_int_equal(trace_writer_open(path, &h, 0, false, &w), 0);
	assert_int_equal(trace_write(w, &ev), 0);
	assert_int_equal(trace_writer_close(w), 0);
	p = read_whole(path, &n);
	assert_int_equal(n, HDR + REC);

	raw_header(want_hdr, 1, HDR, REC, TRACE_FULL);
	le(want_hdr + 24, h.seed, 8);
	le(want_hdr + 32, 250, 4);
	memset(want_hdr + 40, 0, 32);
	memcpy(want_hdr + 40, "test_trace", 10);
	assert_memory_equal(p, want_hdr, HDR);
	raw_rec(want_rec, &ev);
	assert_memory_equal(p + HDR, want_rec, REC);
	/* Spelled out once, so that the encoder above cannot hide a shared mistake. */
	assert_int_equal(p[HDR + 2], 0x02);
	assert_int_equal(p[HDR + 3], 0x01);
	assert_int_equal(p[HDR + 4], 0x06);
	assert_int_equal(p[HDR + 8], 0x0e);
	assert_int_equal(p[HDR + 15], 0x07);
	assert_int_equal(p[12], 104);
	free(p);
}

static void test_large(void **state)
{
	struct trace_header h = make_header(TRACE_FULL);
	struct trace_writer *w;
	struct trace_reader *r;
	struct trace_rec rec;
	char why[256];
	const char *path = path_of("large.trc");
	const uint64_t count = 10000; /* several write buffers */
	uint64_t i;
	int k;

	(void)state;
	assert_int_equal(trace_writer_open(path, &h, 0, false, &w), 0);
	for (i = 0; i < count; i++) {
		rec = (struct trace_rec){ .type = TREC_EVENT, .u8 = TIERD_EV_ACCESS, .u16 = 1,
					  .a = i * 1000, .b = i };
		assert_int_equal(trace_write(w, &rec), 0);
	}
	assert_int_equal(trace_writer_close(w), 0);
	assert_int_equal(trace_reader_open(path, &r, why, sizeof(why)), 0);
	for (i = 0; (k = trace_read(r, &rec, why, sizeof(why))) == 1; i++) {
		assert_true(rec.b == i);
		assert_true(rec.a == i * 1000);
	}
	assert_int_equal(k, 0);
	assert_true(i == count);
	trace_reader_close(r);
}

static void test_excl_replace(void **state)
{
	struct trace_header h = make_header(TRACE_FULL);
	struct trace_rec ev = { .type = TREC_EVENT, .u8 = TIERD_EV_ACCESS, .u16 = 1 };
	struct trace_writer *w;
	const char *path = path_of("excl.trc");
	char saved[PATH_MAX];
	uint8_t *p;
	size_t n;

	(void)state;
	snprintf(saved, sizeof(saved), "%s", path);
	assert_int_equal(trace_writer_open(saved, &h, 0, false, &w), 0);
	for (int i = 0; i < 5; i++)
		assert_int_equal(trace_write(w, &ev), 0);
	assert_int_equal(trace_writer_close(w), 0);
	/* Never over an existing file unless asked. */
	assert_int_equal(trace_writer_open(saved, &h, 0, false, &w), -EEXIST);
	p = read_whole(saved, &n);
	assert_int_equal(n, HDR + 5 * REC);
	free(p);
	/* Replacing truncates. */
	assert_int_equal(trace_writer_open(saved, &h, 0, true, &w), 0);
	assert_int_equal(trace_write(w, &ev), 0);
	assert_int_equal(trace_writer_close(w), 0);
	p = read_whole(saved, &n);
	assert_int_equal(n, HDR + REC);
	free(p);
}

static void test_size_bound(void **state)
{
	struct trace_header h = make_header(TRACE_FULL);
	struct trace_writer *w;
	struct trace_reader *r;
	struct trace_rec rec;
	char why[256];
	const char *path = path_of("bound.trc");
	int k;
	uint64_t i;

	(void)state;
	/* Below the header: no valid file fits. */
	assert_int_equal(trace_writer_open(path, &h, HDR - 1, false, &w), -EINVAL);
	assert_int_equal(access(path, F_OK), -1);

	/* Room for 10 records and 20 bytes: the 11th does not fit whole and is dropped. */
	assert_int_equal(trace_writer_open(path, &h, HDR + 10 * REC + 20, false, &w), 0);
	for (i = 0; i < 15; i++) {
		rec = (struct trace_rec){ .type = TREC_EVENT, .u8 = TIERD_EV_ACCESS, .u16 = 1, .b = i };
		assert_int_equal(trace_write(w, &rec), i < 10 ? 0 : -EFBIG);
	}
	assert_int_equal(trace_writer_records(w), 10);
	assert_int_equal(trace_writer_dropped(w), 5);
	assert_int_equal(trace_writer_close(w), 0);

	assert_int_equal(trace_reader_open(path, &r, why, sizeof(why)), 0);
	for (i = 0; (k = trace_read(r, &rec, why, sizeof(why))) == 1; i++)
		assert_true(rec.b == i);
	assert_int_equal(k, 0); /* ends on a whole record, no truncation error */
	assert_true(i == 10);
	trace_reader_close(r);

	/* Exactly the header: a valid, empty trace. */
	assert_int_equal(trace_writer_open(path, &h, HDR, true, &w), 0);
	assert_int_equal(trace_write(w, &rec), -EFBIG);
	assert_int_equal(trace_writer_dropped(w), 1);
	/* An invalid record is the caller's bug, full or not, and no drop. */
	rec.u8 = 0;
	assert_int_equal(trace_write(w, &rec), -EINVAL);
	assert_int_equal(trace_writer_dropped(w), 1);
	assert_int_equal(trace_writer_close(w), 0);
	assert_int_equal(trace_reader_open(path, &r, why, sizeof(why)), 0);
	assert_int_equal(trace_read(r, &rec, why, sizeof(why)), 0);
	trace_reader_close(r);
}

static void test_writer_refuses(void **state)
{
	struct trace_header h = make_header(TRACE_FULL);
	struct trace_rec bad = { .type = TREC_EVENT, .u8 = 0 };
	struct trace_rec good = { .type = TREC_EVENT, .u8 = TIERD_EV_ACCESS };
	struct trace_writer *w;
	const char *path = path_of("refuse.trc");
	char saved[PATH_MAX];

	(void)state;
	snprintf(saved, sizeof(saved), "%s", path);
	h.flavour = 0;
	assert_int_equal(trace_writer_open(saved, &h, 0, false, &w), -EINVAL);
	h = make_header(TRACE_FULL);
	memset(h.source, 'x', sizeof(h.source));
	assert_int_equal(trace_writer_open(saved, &h, 0, false, &w), -EINVAL);
	assert_int_equal(access(saved, F_OK), -1);

	/* A record the reader would refuse is not written (and not a drop: nothing was full). */
	h = make_header(TRACE_FULL);
	assert_int_equal(trace_writer_open(saved, &h, 0, false, &w), 0);
	assert_int_equal(trace_write(w, &bad), -EINVAL);
	assert_int_equal(trace_write(w, &good), 0);
	assert_int_equal(trace_writer_records(w), 1);
	assert_int_equal(trace_writer_dropped(w), 0);
	assert_int_equal(trace_writer_close(w), 0);
}

static void test_write_errors(void **state)
{
	struct trace_header h = make_header(TRACE_FULL);
	struct trace_rec rec = { .type = TREC_EVENT, .u8 = TIERD_EV_ACCESS, .u16 = 1 };
	struct trace_writer *w;
	struct rlimit old, lim;
	struct stat st;
	void (*old_handler)(int);
	char saved[PATH_MAX];
	int r = 0;

	(void)state;
	snprintf(saved, sizeof(saved), "%s", path_of("fsize.trc"));
	/* The header cannot be written: an error, and a device given with replace is left alone. */
	if (access("/dev/full", W_OK) == 0) {
		assert_int_equal(trace_writer_open("/dev/full", &h, 0, true, &w), -ENOSPC);
		assert_int_equal(stat("/dev/full", &st), 0);
		assert_true(S_ISCHR(st.st_mode));
	}
	assert_int_equal(trace_writer_open(path_of("no/such/dir.trc"), &h, 0, false, &w), -ENOENT);

	/* A write error after the header (the file size limit): later writes fail, close reports
	 * the first error. SIGXFSZ would kill the test; ignored, write() says EFBIG instead. */
	assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
	old_handler = signal(SIGXFSZ, SIG_IGN);
	assert_int_equal(trace_writer_open(saved, &h, 0, false, &w), 0);
	lim = old;
	lim.rlim_cur = 4096;
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
	/* Enough records to flush the 64 KiB buffer at least once. */
	for (int i = 0; i < 5000 && r == 0; i++)
		r = trace_write(w, &rec);
	assert_int_equal(r, -EFBIG);
	assert_int_equal(trace_write(w, &rec), -EFBIG);
	assert_true(trace_writer_dropped(w) >= 2);
	assert_int_equal(trace_writer_close(w), -EFBIG);
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
	signal(SIGXFSZ, old_handler);
}

/* ---- corrupt inputs ------------------------------------------------------------------------- */

static int open_expect(const char *path, int err, const char *needle, const char *needle2)
{
	struct trace_reader *r = NULL;
	char why[256] = "";
	int e = trace_reader_open(path, &r, why, sizeof(why));

	if (e == 0)
		trace_reader_close(r);
	if (e != err)
		fail_msg("%s: got %d (%s), expected %d", path, e, why, err);
	if (needle && !strstr(why, needle))
		fail_msg("%s: reason \"%s\" does not say \"%s\"", path, why, needle);
	if (needle2 && !strstr(why, needle2))
		fail_msg("%s: reason \"%s\" does not say \"%s\"", path, why, needle2);
	return e;
}

static void test_bad_headers(void **state)
{
	uint8_t buf[HDR + 64 + REC];
	struct trace_rec ev = { .type = TREC_EVENT, .u8 = 1, .u16 = 1, .b = 77 }, got;
	struct trace_reader *r;
	char why[256];
	const char *p;

	(void)state;
	/* A valid reference first: the raw encoder makes files the reader takes. */
	raw_header(buf, 1, HDR, REC, TRACE_FULL);
	p = path_of("ok.trc");
	write_file(p, buf, HDR);
	open_expect(p, 0, NULL, NULL);

	p = path_of("empty.trc");
	write_file(p, buf, 0);
	open_expect(p, -EBADMSG, "magic", NULL);

	raw_header(buf, 1, HDR, REC, TRACE_FULL);
	buf[3] = 'X';
	p = path_of("magic.trc");
	write_file(p, buf, HDR);
	open_expect(p, -EBADMSG, "magic", NULL);

	raw_header(buf, 2, HDR, REC, TRACE_FULL);
	p = path_of("newer.trc");
	write_file(p, buf, HDR);
	open_expect(p, -EPROTONOSUPPORT, "version 2", "version 1");

	raw_header(buf, 0, HDR, REC, TRACE_FULL);
	p = path_of("v0.trc");
	write_file(p, buf, HDR);
	open_expect(p, -EBADMSG, "version 0", NULL);

	raw_header(buf, 1, HDR, 24, TRACE_FULL);
	p = path_of("recsize.trc");
	write_file(p, buf, HDR);
	open_expect(p, -EBADMSG, "record_size 24", NULL);

	raw_header(buf, 1, HDR - 8, REC, TRACE_FULL);
	p = path_of("hdrsmall.trc");
	write_file(p, buf, HDR);
	open_expect(p, -EBADMSG, "header_size 96", NULL);

	raw_header(buf, 1, HDR, REC, 3);
	p = path_of("flavour.trc");
	write_file(p, buf, HDR);
	open_expect(p, -EBADMSG, "flavour 3", NULL);

	raw_header(buf, 1, HDR, REC, TRACE_FULL);
	memset(buf + 40, 'x', 32);
	p = path_of("source.trc");
	write_file(p, buf, HDR);
	open_expect(p, -EBADMSG, "source", NULL);

	raw_header(buf, 1, HDR, REC, TRACE_FULL);
	p = path_of("shorthdr.trc");
	write_file(p, buf, 50);
	open_expect(p, -EBADMSG, "truncated header: 50 of 104", NULL);

	/* A header longer than the file says it is. */
	raw_header(buf, 1, HDR + 64, REC, TRACE_FULL);
	p = path_of("longhdr-short.trc");
	write_file(p, buf, HDR + 10);
	open_expect(p, -EBADMSG, "truncated header: 114 of 168", NULL);

	/* A newer minor version's longer header: the unknown tail is skipped, records follow it. */
	raw_header(buf, 1, HDR + 64, REC, TRACE_FULL);
	memset(buf + HDR, 0xee, 64);
	raw_rec(buf + HDR + 64, &ev);
	p = path_of("longhdr.trc");
	write_file(p, buf, HDR + 64 + REC);
	assert_int_equal(trace_reader_open(p, &r, why, sizeof(why)), 0);
	assert_int_equal(trace_reader_header(r)->header_size, HDR + 64);
	assert_int_equal(trace_read(r, &got, why, sizeof(why)), 1);
	assert_rec_equal(&got, &ev);
	assert_int_equal(trace_read(r, &got, why, sizeof(why)), 0);
	trace_reader_close(r);

	/* Neither a directory nor a missing file crashes anything. */
	assert_true(trace_reader_open(dir, &r, why, sizeof(why)) < 0);
	assert_int_equal(trace_reader_open(path_of("missing.trc"), &r, why, sizeof(why)), -ENOENT);
}

static void test_truncated_record(void **state)
{
	uint8_t buf[HDR + 4 * REC];
	struct trace_rec ev = { .type = TREC_EVENT, .u8 = 1, .u16 = 1 }, got;
	struct trace_reader *r;
	char why[256];
	const char *p = path_of("truncrec.trc");

	(void)state;
	raw_header(buf, 1, HDR, REC, TRACE_FULL);
	for (int i = 0; i < 4; i++)
		raw_rec(buf + HDR + i * REC, &ev);
	write_file(p, buf, HDR + 3 * REC + 10);
	assert_int_equal(trace_reader_open(p, &r, why, sizeof(why)), 0);
	for (int i = 0; i < 3; i++)
		assert_int_equal(trace_read(r, &got, why, sizeof(why)), 1);
	assert_int_equal(trace_read(r, &got, why, sizeof(why)), -EBADMSG);
	assert_non_null(strstr(why, "truncated record at byte offset 200"));
	/* Sticky: the trace ends there. */
	why[0] = 0;
	assert_int_equal(trace_read(r, &got, why, sizeof(why)), -EBADMSG);
	assert_non_null(strstr(why, "byte offset 200"));
	trace_reader_close(r);
}

static void test_bad_fields(void **state)
{
	static const struct {
		struct trace_rec rec;
		const char *says;
	} cases[] = {
		{ { .type = TREC_EVENT, .u8 = 0, .u16 = 1 }, "event kind 0" },
		{ { .type = TREC_TIER, .u8 = TIERD_MAX_TIERS }, "tier 8 >= 8" },
		{ { .type = TREC_TIER, .u8 = 0, .u16 = TIERD_MAX_NODES + 1 }, "nnodes 65" },
		{ { .type = TREC_TIER, .u8 = 0, .u32 = TIERD_MAX_NODES }, "target_node 64" },
		{ { .type = TREC_TIER, .u8 = 0, .u32 = (uint32_t)-2 }, "target_node -2" },
		{ { .type = TREC_NODE_TIER, .u8 = TIERD_MAX_NODES }, "node 64 >= 64" },
		{ { .type = TREC_NODE_TIER, .u8 = 1, .u16 = TIERD_MAX_TIERS }, "tier 8 out of range" },
		{ { .type = TREC_NODE_TIER, .u8 = 1, .u16 = (uint16_t)-2 }, "tier -2 out of range" },
		{ { .type = TREC_REGION, .u32 = 3, .a = 10, .b = 5 }, "start 10 >= end 5" },
		{ { .type = TREC_REGION, .u32 = 3, .a = 10, .b = 10 }, "start 10 >= end 10" },
		{ { .type = TREC_REGION, .u32 = 3, .a = 0, .b = 10, .c = 0x7fc00000 }, "not in 0..1" },
		{ { .type = TREC_REGION, .u32 = 3, .a = 0, .b = 10, .c = 0x3fc00000ull << 32 },
		  "prev_score 1.5" },
		{ { .type = TREC_SEG, .u32 = 4, .a = 10, .b = 0 }, "page_size 0" },
		{ { .type = TREC_SEG, .u32 = 4, .a = 10, .b = 4097 }, "page_size 4097" },
		{ { .type = TREC_SEG, .u32 = 4, .a = UINT64_MAX, .b = 4096 }, "overflow" },
		{ { .type = TREC_EPOCH, .u32 = 5, .u16 = 0 }, "ntiers 0" },
		{ { .type = TREC_EPOCH, .u32 = 5, .u16 = TIERD_MAX_TIERS + 1 }, "ntiers 9" },
		{ { .type = TREC_EPOCH, .u32 = 5, .u16 = 2, .u8 = 2 }, "migrate 2" },
		{ { .type = TREC_NODES, .u32 = 1, .a = 0, .b = 0 }, "empty" },
		{ { .type = TREC_NODES, .u32 = 1, .a = UINT64_MAX, .b = 2 }, "overflows" },
		{ { .type = TREC_NODES, .u32 = 1, .a = 0, .b = 1, .c = TIERD_MAX_NODES }, "node 64" },
		{ { .type = TREC_CLOSED, .u32 = 1, .a = 0, .b = 0 }, "empty" },
		{ { .type = TREC_DECIDE, .u32 = 6, .a = 0x3f000000ull | 0x3f400000ull << 32 }, "low 0.75" },
		{ { .type = TREC_DECIDE, .u32 = 6, .a = 0x3fc00000ull }, "high 1.5" },
	};
	struct trace_rec good = { .type = TREC_EVENT, .u8 = 1, .u16 = 1, .b = 31337 }, got;
	struct trace_writer *w;
	struct trace_header h = make_header(TRACE_SAMPLED);

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct trace_rec two[2] = { cases[i].rec, good };
		struct trace_reader *r;
		char name[32], why[256] = "", path[PATH_MAX];
		int e;

		snprintf(name, sizeof(name), "field%zu.trc", i);
		snprintf(path, sizeof(path), "%s", raw_file(name, two, 2));
		assert_int_equal(trace_reader_open(path, &r, why, sizeof(why)), 0);
		e = trace_read(r, &got, why, sizeof(why));
		if (e != -EBADMSG || !strstr(why, cases[i].says) || !strstr(why, "byte offset 104"))
			fail_msg("case %zu: got %d \"%s\", expected -EBADMSG saying \"%s\"", i, e, why,
				 cases[i].says);
		/* The bad record was consumed; the next one is read. */
		assert_int_equal(trace_read(r, &got, why, sizeof(why)), 1);
		assert_true(got.b == 31337);
		trace_reader_close(r);

		/* The writer refuses what the reader refuses. */
		snprintf(name, sizeof(name), "wfield%zu.trc", i);
		snprintf(path, sizeof(path), "%s", path_of(name));
		assert_int_equal(trace_writer_open(path, &h, 0, false, &w), 0);
		assert_int_equal(trace_write(w, &cases[i].rec), -EINVAL);
		assert_int_equal(trace_writer_records(w), 0);
		assert_int_equal(trace_writer_close(w), 0);
	}
}

/* Values at the edges of their ranges, and unknown kinds (newer), are accepted. */
static void test_edge_fields(void **state)
{
	const struct trace_rec ok[] = {
		{ .type = TREC_EVENT, .u8 = 99, .u16 = 0 },
		{ .type = TREC_SEG, .u8 = 77, .a = 0, .b = 1 },
		{ .type = TREC_TIER, .u8 = TIERD_MAX_TIERS - 1, .u16 = TIERD_MAX_NODES,
		  .u32 = TIERD_MAX_NODES - 1 },
		{ .type = TREC_NODE_TIER, .u8 = TIERD_MAX_NODES - 1, .u16 = TIERD_MAX_TIERS - 1 },
		{ .type = TREC_REGION, .a = 0, .b = 1, .c = 0x3f800000ull | 0x3f800000ull << 32 },
		{ .type = TREC_EPOCH, .u16 = TIERD_MAX_TIERS, .u8 = 1 },
		{ .type = TREC_NODES, .a = UINT64_MAX - 1, .b = 1, .c = TIERD_MAX_NODES - 1 },
		{ .type = TREC_DECIDE, .a = 0x3f800000ull | 0x3f800000ull << 32 },
		{ .type = 255, .a = UINT64_MAX },
	};
	const size_t n = sizeof(ok) / sizeof(ok[0]);
	struct trace_reader *r;
	struct trace_rec got;
	char why[256], path[PATH_MAX];

	(void)state;
	snprintf(path, sizeof(path), "%s", raw_file("edges.trc", ok, n));
	assert_int_equal(trace_reader_open(path, &r, why, sizeof(why)), 0);
	for (size_t i = 0; i < n; i++) {
		int e = trace_read(r, &got, why, sizeof(why));

		if (e != 1)
			fail_msg("edge record %zu refused: %s", i, why);
		assert_rec_equal(&got, &ok[i]);
	}
	assert_int_equal(trace_read(r, &got, why, sizeof(why)), 0);
	trace_reader_close(r);
}

/* The checks a caller relies on after trace_read returned 1 (what rec_check promises). */
static void assert_sane(const struct trace_rec *r)
{
	float f;

	switch (r->type) {
	case TREC_EVENT:
		assert_true(r->u8 != 0);
		break;
	case TREC_TIER:
		assert_true(r->u8 < TIERD_MAX_TIERS);
		break;
	case TREC_NODE_TIER:
		assert_true(r->u8 < TIERD_MAX_NODES);
		assert_true((int16_t)r->u16 >= -1 && (int16_t)r->u16 < TIERD_MAX_TIERS);
		break;
	case TREC_REGION:
		assert_true(r->a < r->b);
		memcpy(&f, &r->c, sizeof(f)); /* little-endian host: the low half */
		assert_true(f >= 0.0f && f <= 1.0f);
		break;
	case TREC_EPOCH:
		assert_true(r->u16 >= 1 && r->u16 <= TIERD_MAX_TIERS);
		break;
	default:
		break;
	}
}

/* xorshift64*: deterministic, so a failure repeats. */
static uint64_t rnd(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 2685821657736338717ull;
}

static void test_mutations(void **state)
{
	struct trace_rec recs[16], got;
	struct trace_header h = make_header(TRACE_SAMPLED);
	struct trace_writer *w;
	size_t n = all_records(recs), len;
	const char *valid = path_of("valid.trc");
	char vpath[PATH_MAX], mpath[PATH_MAX], why[256], line[256];
	uint8_t *orig, *buf;
	uint64_t seed = 0x9e3779b97f4a7c15ull;
	unsigned opened = 0, records = 0, errors = 0;

	(void)state;
	snprintf(vpath, sizeof(vpath), "%s", valid);
	snprintf(mpath, sizeof(mpath), "%s", path_of("mutant.trc"));
	assert_int_equal(trace_writer_open(vpath, &h, 0, false, &w), 0);
	for (int rep = 0; rep < 3; rep++)
		for (size_t i = 0; i < n; i++)
			assert_int_equal(trace_write(w, &recs[i]), 0);
	assert_int_equal(trace_writer_close(w), 0);
	orig = read_whole(vpath, &len);
	buf = malloc(len + 64);
	assert_non_null(buf);

	for (int iter = 0; iter < 4000; iter++) {
		size_t mlen = len;
		unsigned flips = 1 + (unsigned)(rnd(&seed) % 8);
		struct trace_reader *r;
		int e, guard = 0;

		memcpy(buf, orig, len);
		for (unsigned f = 0; f < flips; f++) {
			/* Half the flips land in the header, where most checks are. */
			size_t at = rnd(&seed) % 2 ? rnd(&seed) % HDR : rnd(&seed) % len;

			buf[at] = (uint8_t)rnd(&seed);
		}
		switch (rnd(&seed) % 4) {
		case 0: /* cut anywhere */
			mlen = rnd(&seed) % (len + 1);
			break;
		case 1: /* trailing garbage */
			mlen = len + rnd(&seed) % 64;
			for (size_t i = len; i < mlen; i++)
				buf[i] = (uint8_t)rnd(&seed);
			break;
		default:
			break;
		}
		write_file(mpath, buf, mlen);
		e = trace_reader_open(mpath, &r, why, sizeof(why));
		if (e < 0) {
			assert_true(why[0] != 0);
			errors++;
			continue;
		}
		opened++;
		/* Bad-field errors are per record, so read on: the reader must still end. */
		while ((e = trace_read(r, &got, why, sizeof(why))) != 0) {
			assert_true(++guard <= (int)(mlen / REC) + 2);
			if (e == 1) {
				records++;
				assert_sane(&got);
				assert_true(trace_rec_format(&got, line, sizeof(line)) > 0);
			} else if (e == -EBADMSG && strstr(why, "truncated")) {
				break;
			} else {
				assert_int_equal(e, -EBADMSG);
			}
		}
		trace_reader_close(r);
	}
	/* The mutations reached both the header checks and the record checks. */
	assert_true(opened > 100);
	assert_true(errors > 100);
	assert_true(records > 1000);
	free(buf);
	free(orig);
}

static void test_format(void **state)
{
	static const struct {
		struct trace_rec rec;
		const char *line;
	} cases[] = {
		{ { .type = TREC_EVENT, .u8 = TIERD_EV_FAULT, .u16 = 1, .u32 = 1, .a = 123456, .b = 42 },
		  "event t=123456 seg=1 page=42 kind=fault weight=1 tid=0" },
		{ { .type = TREC_EVENT, .u8 = 9, .u16 = 3, .u32 = 2, .a = 1, .b = 2, .c = 77 },
		  "event t=1 seg=2 page=2 kind=9 weight=3 tid=77" },
		{ { .type = TREC_SEG, .u8 = TIERD_SEGV_SHMEM, .u32 = 1, .a = 1024, .b = 4096 },
		  "seg id=1 npages=1024 page_size=4096 kind=shmem" },
		{ { .type = TREC_SEG_END, .u32 = 1 }, "seg_end id=1" },
		{ { .type = TREC_EPOCH, .u8 = 1, .u16 = 2, .u32 = 5, .a = 10, .b = 20, .c = 30 },
		  "epoch t=10 epoch=5 max_move_bytes=20 fast_budget_bytes=30 migrate=1 ntiers=2" },
		{ { .type = TREC_TIER, .u8 = 1, .u16 = 2, .u32 = (uint32_t)-1, .a = 1, .b = 2, .c = 3 },
		  "tier tier=1 capacity_bytes=1 free_bytes=2 used_bytes=3 nnodes=2 target_node=-1" },
		{ { .type = TREC_NODE_TIER, .u8 = 3, .u16 = (uint16_t)-1 }, "node_tier node=3 tier=-1" },
		{ { .type = TREC_NODES, .u32 = 1, .a = 5, .b = 6, .c = 1 }, "nodes seg=1 page=5 npages=6 node=1" },
		{ { .type = TREC_REGION, .u16 = 4, .u32 = 1, .a = 0, .b = 64,
		    .c = 0x3e800000ull | 0x3f000000ull << 32 },
		  "region seg=1 start=0 end=64 score=0.25 prev_score=0.5 samples=4" },
		{ { .type = TREC_REGIONS_BEGIN, .u32 = 1, .a = 8 }, "regions_begin seg=1 nregions=8" },
		{ { .type = TREC_CLOSED, .u32 = 1, .a = 16, .b = 16 }, "closed seg=1 start=16 npages=16" },
		{ { .type = TREC_DECIDE, .u32 = 5, .a = 0x3f400000ull | 0x3f000000ull << 32, .b = 65536, .c = 8 },
		  "decide epoch=5 high_wm=0.75 low_wm=0.5 window_bytes=65536 max_windows=8" },
		{ { .type = 42, .u8 = 1, .u16 = 2, .u32 = 3, .a = 4, .b = 5, .c = 6 },
		  "unknown type=42 u8=1 u16=2 u32=3 a=4 b=5 c=6" },
	};
	char buf[256], small[8];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int n = trace_rec_format(&cases[i].rec, buf, sizeof(buf));

		assert_string_equal(buf, cases[i].line);
		assert_int_equal(n, (int)strlen(cases[i].line));
	}
	assert_int_equal(trace_rec_format(&cases[0].rec, small, sizeof(small)), -ENOBUFS);
	assert_int_equal(strlen(small), sizeof(small) - 1);
	assert_int_equal(trace_rec_format(&cases[0].rec, buf, 0), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_byte_layout),
		cmocka_unit_test(test_large),
		cmocka_unit_test(test_excl_replace),
		cmocka_unit_test(test_size_bound),
		cmocka_unit_test(test_writer_refuses),
		cmocka_unit_test(test_write_errors),
		cmocka_unit_test(test_bad_headers),
		cmocka_unit_test(test_truncated_record),
		cmocka_unit_test(test_bad_fields),
		cmocka_unit_test(test_edge_fields),
		cmocka_unit_test(test_mutations),
		cmocka_unit_test(test_format),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
