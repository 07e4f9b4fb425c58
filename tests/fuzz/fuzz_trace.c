/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target: the trace reader (policy/trace.c). The input is a whole trace file, handed to
 * trace_reader_open() through a memfd (it takes a path: /proc/self/fd/N). Properties:
 *   - open and read return only the documented values, always with a reason;
 *   - reading ends: a bad field is consumed (read on), a truncated record is sticky;
 *   - every accepted record formats as text, and a short buffer gets a NUL-terminated prefix;
 *   - the writer takes back every record the reader accepted, and reading its output gives the
 *     same header fields and records (the codec round-trips).
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fuzz.h"
#include "trace.h"

/* Records round-tripped per input: enough for the reader's 64 KiB refills, and bounded memory. */
#define MAX_KEPT 4096

static int memfd_with(const uint8_t *data, size_t size)
{
	int fd = memfd_create("fuzz-trace", MFD_CLOEXEC);
	size_t done = 0;

	if (fd < 0)
		return -1;
	while (done < size) {
		ssize_t k = write(fd, data + done, size - done);

		if (k <= 0) {
			close(fd);
			return -1;
		}
		done += (size_t)k;
	}
	return fd;
}

static void check_format(const struct trace_rec *rec)
{
	char line[512], small[24];
	int n = trace_rec_format(rec, line, sizeof(line)), k;

	FUZZ_CHECK(n > 0 && (size_t)n == strlen(line));
	k = trace_rec_format(rec, small, sizeof(small));
	FUZZ_CHECK(k == -ENOBUFS || k == n);
	FUZZ_CHECK(strlen(small) < sizeof(small) && strncmp(small, line, strlen(small)) == 0);
	FUZZ_CHECK(trace_rec_format(rec, small, 0) == -EINVAL);
}

/* Writes the records with the header's caller-owned fields and reads them back. */
static void check_round_trip(const struct trace_header *h, const struct trace_rec *recs, size_t n)
{
	struct trace_writer *w;
	struct trace_reader *r;
	struct trace_rec got;
	char why[256], path[64];
	int fd = memfd_create("fuzz-trace-out", MFD_CLOEXEC), wfd;

	if (fd < 0)
		return;
	wfd = dup(fd);
	if (wfd < 0) {
		close(fd);
		return;
	}
	FUZZ_CHECK(trace_writer_fdopen(wfd, h, 0, &w) == 0);
	for (size_t i = 0; i < n; i++)
		FUZZ_CHECK(trace_write(w, &recs[i]) == 0);
	FUZZ_CHECK(trace_writer_records(w) == n && trace_writer_dropped(w) == 0);
	FUZZ_CHECK(trace_writer_close(w) == 0);

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	FUZZ_CHECK(trace_reader_open(path, &r, why, sizeof(why)) == 0);
	{
		const struct trace_header *g = trace_reader_header(r);

		FUZZ_CHECK(g->flavour == h->flavour && g->seed == h->seed && g->epoch_ms == h->epoch_ms &&
			   g->page_size == h->page_size && g->first_epoch == h->first_epoch &&
			   memcmp(g->source, h->source, sizeof(g->source)) == 0);
	}
	for (size_t i = 0; i < n; i++) {
		FUZZ_CHECK(trace_read(r, &got, why, sizeof(why)) == 1);
		FUZZ_CHECK(got.type == recs[i].type && got.u8 == recs[i].u8 && got.u16 == recs[i].u16 &&
			   got.u32 == recs[i].u32 && got.a == recs[i].a && got.b == recs[i].b &&
			   got.c == recs[i].c);
	}
	FUZZ_CHECK(trace_read(r, &got, why, sizeof(why)) == 0);
	trace_reader_close(r);
	close(fd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct trace_rec rec, *kept;
	struct trace_reader *r;
	char why[256], last[256] = "", path[64];
	size_t nkept = 0, calls = 0;
	int fd = memfd_with(data, size), e;

	if (fd < 0)
		return 0;
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	why[0] = '\0';
	e = trace_reader_open(path, &r, why, sizeof(why));
	close(fd); /* the reader opened its own */
	if (e < 0) {
		FUZZ_CHECK(e == -EBADMSG || e == -EPROTONOSUPPORT);
		FUZZ_CHECK(why[0] != '\0');
		return 0;
	}
	kept = malloc(MAX_KEPT * sizeof(*kept));
	if (!kept) {
		trace_reader_close(r);
		return 0;
	}
	for (;;) {
		why[0] = '\0';
		e = trace_read(r, &rec, why, sizeof(why));
		/* Each call consumes a whole record or ends: at most one per 32 bytes, plus the
		 * end (or the sticky error, seen twice). */
		FUZZ_CHECK(++calls <= size / sizeof(rec) + 2);
		if (e == 0)
			break;
		if (e == 1) {
			check_format(&rec);
			if (nkept < MAX_KEPT)
				kept[nkept++] = rec;
			last[0] = '\0';
			continue;
		}
		FUZZ_CHECK(e == -EBADMSG && why[0] != '\0');
		/* A bad field names a new offset each time; the same reason twice in a row is the
		 * sticky truncated record: the end. */
		if (strcmp(why, last) == 0)
			break;
		snprintf(last, sizeof(last), "%s", why);
	}
	if (nkept)
		check_round_trip(trace_reader_header(r), kept, nkept);
	free(kept);
	trace_reader_close(r);
	return 0;
}
