/* SPDX-License-Identifier: MIT */
/*
 * The perf_event sampler's event choice from sysfs (see perfsel.h): IBS, then PEBS mem-loads,
 * then, if allowed, the software page-fault event. No perf_event_open here: whether the chosen
 * event can be opened (privilege, perf_event_paranoid) is the loader's question.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "perfsel.h"

/* linux/perf_event.h values (UAPI, stable). */
#define PERF_TYPE_SOFTWARE 1u
#define PERF_COUNT_SW_PAGE_FAULTS 2u

/* The first line of a small file, without its newline. Returns its length or -errno. */
static int read_line(const char *path, char *buf, size_t len)
{
	FILE *f = fopen(path, "re");
	size_t n;

	if (!f)
		return -errno;
	if (!fgets(buf, (int)len, f)) {
		fclose(f);
		return -EINVAL;
	}
	fclose(f);
	n = strcspn(buf, "\n");
	buf[n] = '\0';
	return (int)n;
}

static int read_u32(const char *path, uint32_t *ret)
{
	char buf[32], *end;
	unsigned long v;
	int r = read_line(path, buf, sizeof(buf));

	if (r < 0)
		return r;
	errno = 0;
	v = strtoul(buf, &end, 0);
	if (errno || end == buf || *end || v > UINT32_MAX)
		return -EINVAL;
	*ret = (uint32_t)v;
	return 0;
}

/* Places `value` into the bits a format file names: "config:0-7", "config1:0-15", "config:21",
 * or split ranges "config:0-7,32-35" (the value's low bits fill the first range, and so on). */
static int place(const char *format, uint64_t value, uint64_t *config, uint64_t *config1)
{
	const char *p = strchr(format, ':');
	uint64_t *dst;
	unsigned used = 0;

	if (!p)
		return -EINVAL;
	if (!strncmp(format, "config:", 7))
		dst = config;
	else if (!strncmp(format, "config1:", 8))
		dst = config1;
	else
		return -EINVAL; /* config2 and beyond: not used by the events chosen here */
	p++;
	while (*p) {
		char *end;
		unsigned long lo = strtoul(p, &end, 10), hi = lo;

		if (end == p)
			return -EINVAL;
		if (*end == '-') {
			p = end + 1;
			hi = strtoul(p, &end, 10);
			if (end == p)
				return -EINVAL;
		}
		if (hi < lo || hi > 63)
			return -EINVAL;
		for (unsigned long b = lo; b <= hi; b++, used++)
			if (used < 64 && (value >> used) & 1)
				*dst |= UINT64_C(1) << b;
		if (*end == ',')
			end++;
		else if (*end)
			return -EINVAL;
		p = end;
	}
	return used < 64 && value >> used ? -EINVAL : 0; /* a value wider than its field */
}

int perfsel_encode(const char *pmu_dir, const char *terms, uint64_t *config, uint64_t *config1)
{
	char buf[256], path[PATH_MAX], fmt[128], *save = NULL, *t;

	*config = *config1 = 0;
	if (strlen(terms) >= sizeof(buf))
		return -EINVAL;
	strcpy(buf, terms);
	for (t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(t, '='), *end;
		uint64_t v = 1;
		int r;

		if (eq) {
			*eq = '\0';
			errno = 0;
			v = strtoull(eq + 1, &end, 0);
			if (errno || end == eq + 1 || *end)
				return -EINVAL;
		}
		if (!*t || strchr(t, '/') || snprintf(path, sizeof(path), "%s/format/%s", pmu_dir, t) >= (int)sizeof(path))
			return -EINVAL;
		r = read_line(path, fmt, sizeof(fmt));
		if (r < 0)
			return r == -ENOENT ? -ENOENT : -EINVAL;
		r = place(fmt, v, config, config1);
		if (r < 0)
			return r;
	}
	return 0;
}

static int probe_ibs(const char *root, struct perfsel *out)
{
	char dir[PATH_MAX], path[PATH_MAX];
	uint64_t c1 = 0;

	if (snprintf(dir, sizeof(dir), "%s/bus/event_source/devices/ibs_op", root) >= (int)sizeof(dir) ||
	    snprintf(path, sizeof(path), "%s/type", dir) >= (int)sizeof(path) || read_u32(path, &out->type) < 0)
		return -ENOENT;
	out->kind = PERFSEL_IBS;
	out->config = 0;
	/* Count dispatched ops rather than cycles where the PMU can: samples follow the
	 * instruction stream, so loads and stores are sampled in proportion. */
	if (perfsel_encode(dir, "cnt_ctl=1", &out->config, &c1) < 0)
		out->config = 0;
	snprintf(out->desc, sizeof(out->desc), "AMD IBS ibs_op/%s/", out->config ? "cnt_ctl=1" : "");
	return 0;
}

static int probe_pebs(const char *root, struct perfsel *out, char *why, size_t whylen)
{
	static const char *const pmus[] = { "cpu", "cpu_core" };

	for (size_t i = 0; i < sizeof(pmus) / sizeof(pmus[0]); i++) {
		char dir[PATH_MAX], path[PATH_MAX], terms[256];
		int r;

		if (snprintf(dir, sizeof(dir), "%s/bus/event_source/devices/%s", root, pmus[i]) >= (int)sizeof(dir) ||
		    snprintf(path, sizeof(path), "%s/events/mem-loads", dir) >= (int)sizeof(path) ||
		    read_line(path, terms, sizeof(terms)) < 0)
			continue;
		if (snprintf(path, sizeof(path), "%s/type", dir) >= (int)sizeof(path) ||
		    read_u32(path, &out->type) < 0)
			continue;
		r = perfsel_encode(dir, terms, &out->config, &out->config1);
		if (r < 0) {
			snprintf(why, whylen, "%s/events/mem-loads '%s' does not encode through %s/format",
				 dir, terms, dir);
			return -EINVAL;
		}
		out->kind = PERFSEL_PEBS;
		out->precise_ip = 2;
		if (snprintf(out->desc, sizeof(out->desc), "Intel PEBS %s/mem-loads/ (%.64s)", pmus[i], terms) < 0)
			return -EINVAL;
		return 0;
	}
	return -ENOENT;
}

int perfsel_probe(const char *sysfs_root, bool allow_software, uint64_t period, struct perfsel *out,
		  char *why, size_t whylen)
{
	char d[sizeof(out->desc)];
	int r;

	memset(out, 0, sizeof(*out));
	if (probe_ibs(sysfs_root, out) == 0) {
		out->sample_period = period ? period : PERFSEL_PERIOD_IBS;
	} else {
		r = probe_pebs(sysfs_root, out, why, whylen);
		if (r == -EINVAL)
			return r;
		if (r == 0) {
			out->sample_period = period ? period : PERFSEL_PERIOD_PEBS;
		} else if (allow_software) {
			out->kind = PERFSEL_SOFTWARE;
			out->type = PERF_TYPE_SOFTWARE;
			out->config = PERF_COUNT_SW_PAGE_FAULTS;
			out->sample_period = period ? period : PERFSEL_PERIOD_SOFTWARE;
			snprintf(out->desc, sizeof(out->desc), "software page-faults");
		} else {
			memset(out, 0, sizeof(*out));
			snprintf(why, whylen,
				 "no PEBS (cpu/events/mem-loads) or IBS (ibs_op) PMU; sampling.perf_software = "
				 "yes samples page faults instead");
			return -ENOENT;
		}
	}
	snprintf(d, sizeof(d), "%s", out->desc);
	/* Cut short if need be: the description is for people. */
	if (snprintf(out->desc, sizeof(out->desc), "%.100s, period %" PRIu64, d, out->sample_period) < 0)
		return -EINVAL;
	return 0;
}
