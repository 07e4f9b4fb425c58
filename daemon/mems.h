/* SPDX-License-Identifier: MIT */
/*
 * The memory nodes a process may allocate on: its cpuset's mems (Mems_allowed in
 * /proc/PID/status). tierd moves pages through its own mapping, so the kernel checks only tierd's
 * cpuset; a client confined to some nodes (cpuset.mems, systemd's AllowedMemoryNodes=) would get
 * its memory moved where it could not have put it. Placement keeps each segment's moves within
 * the nodes every process mapping it, and tierd itself, may use.
 */
#ifndef TIERD_MEMS_H
#define TIERD_MEMS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Every node: what a process whose mems cannot be read is taken to allow (tierd does not restrict
 * what it cannot see; the kernel's own check on tierd still applies). */
#define MEMS_ALL UINT64_MAX

/* Parses the value of a Mems_allowed: line ("00000000,00000003": 32-bit words in hex, the most
 * significant first) into nodes 0..63. 0, or -EINVAL when the text is not such a list. */
int mems_parse(const char *value, uint64_t *mask);

/* The nodes process `pid` (0: tierd itself) may allocate on. 0, or a negative errno (the
 * process is gone, or its status has no Mems_allowed: a kernel without cpusets). */
int mems_of(pid_t pid, uint64_t *mask);

/* Whether the running kernel has memory node `node` (/sys/devices/system/node/nodeN, whatever
 * tierd's --sysfs-root says): only such a node can be in anyone's mems. */
bool mems_node_exists(int node);

/* "0-1,3"-style text of a mask, for messages. */
void mems_format(uint64_t mask, char *buf, size_t len);

#endif
