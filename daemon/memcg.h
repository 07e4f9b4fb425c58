/* SPDX-License-Identifier: MIT */
/*
 * tierd's own memory cgroup limit (systemd's MemoryMax=, or any limit above it): how much room
 * is left before the kernel refuses tierd memory or OOM-kills it. Read before optional work that
 * needs a burst of memory (loading the eBPF programs), so that a tight limit turns it off with a
 * reason instead of killing the daemon.
 */
#ifndef TIERD_MEMCG_H
#define TIERD_MEMCG_H

#include <stddef.h>
#include <stdint.h>

/*
 * The smallest room (limit − usage) over tierd's memory cgroup and its ancestors: cgroup v2
 * (memory.max, memory.current) where the memory controller is on there, else v1
 * (memory.limit_in_bytes, memory.usage_in_bytes). Returns 1 with *room, *limit and `where` (the
 * limiting cgroup's limit file) when a limit applies, 0 when none does (no memory controller, or
 * no limit on the way up), or a negative errno when the files cannot be read.
 */
int memcg_room(uint64_t *room, uint64_t *limit, char *where, size_t wherelen);

#endif
