/* SPDX-License-Identifier: MIT */
/*
 * Which perf event the eBPF perf_event sampler opens (pure: reads a sysfs tree under a root
 * prefix, so tests feed fixtures). Probed in this order:
 *   1. AMD IBS: the ibs_op PMU (bus/event_source/devices/ibs_op): op sampling, counting
 *      dispatched ops where the PMU has cnt_ctl; the sample's data address is the op's load or
 *      store linear address (PERF_SAMPLE_ADDR).
 *   2. Intel PEBS: the core PMU's mem-loads event (devices/cpu or, on hybrid parts, cpu_core:
 *      events/mem-loads, e.g. "event=0xcd,umask=0x1,ldlat=3"), encoded through the PMU's format
 *      files, with precise_ip = 2: the sample's address is the load's data address.
 *   3. Only when allowed: the software event PERF_COUNT_SW_PAGE_FAULTS, whose sample address is
 *      the faulting address (no PMU needed: what the tests run on a machine without one).
 */
#ifndef TIERD_PERFSEL_H
#define TIERD_PERFSEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum perfsel_kind { PERFSEL_NONE = 0, PERFSEL_IBS, PERFSEL_PEBS, PERFSEL_SOFTWARE };

/* The perf_event_attr fields that differ between the choices. */
struct perfsel {
	enum perfsel_kind kind;
	uint32_t type;
	uint64_t config, config1;
	uint32_t precise_ip;
	uint64_t sample_period;
	char desc[128]; /* for the status and the log: "Intel PEBS cpu/mem-loads/ ..." */
};

/* Default sampling periods when the configuration gives 0: one load in 10007 (a prime, so the
 * samples do not beat with loop strides), one IBS op in 65536 (IBS counts in units of 16), every
 * page fault for the software event (faults are already rare). */
#define PERFSEL_PERIOD_PEBS 10007
#define PERFSEL_PERIOD_IBS 65536
#define PERFSEL_PERIOD_SOFTWARE 1

/* Chooses an event under `sysfs_root` ("/sys"). period: the sampling period, 0 for the
 * default of the event chosen. Returns 0 with *out filled, or -ENOENT when there is no
 * hardware event and software is not allowed (why says so), or -EINVAL for a malformed events
 * or format file (why names it). */
int perfsel_probe(const char *sysfs_root, bool allow_software, uint64_t period, struct perfsel *out,
		  char *why, size_t whylen);

/* Encodes "term=value,term,..." (a PMU's events/NAME) through the PMU's format files under
 * `pmu_dir` ("<sysfs>/bus/event_source/devices/cpu") into config and config1. Returns 0,
 * -ENOENT for a term without a format file, -EINVAL for a malformed term or format. */
int perfsel_encode(const char *pmu_dir, const char *terms, uint64_t *config, uint64_t *config1);

#endif
