/* SPDX-License-Identifier: MIT */
/*
 * Raw protocol clients for the tests that play broken or hostile clients (test_hostile,
 * test_misbehave): they speak tierd's protocol by hand, without libtier.
 */
#ifndef TIERD_TEST_RAWCLIENT_H
#define TIERD_TEST_RAWCLIENT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* raw_recv's zaps_of: every packet, ZAPs of any attachment included. */
#define RAW_ZAPS_ALL UINT32_MAX

/* The next packet into buf: with zaps_of 0 the next that is not a ZAP (ZAPs are dropped
 * unanswered), with RAW_ZAPS_ALL the next of any type, else the next ZAP for attachment zaps_of.
 * Fds it carried are closed. Its length, 0 at EOF, or a negative errno (-ETIMEDOUT). */
ssize_t raw_recv(int sock, void *buf, size_t len, unsigned timeout_ms, uint32_t zaps_of);

/* Sends HELLO as this process, with flags. 0 or a negative errno. */
int raw_send_hello(int sock, uint32_t flags);

/* HELLO, then WELCOME into buf within timeout_ms: 0, or a negative errno (-EPROTO for another
 * reply, -ECONNRESET at EOF). */
int raw_hello(int sock, uint32_t flags, void *buf, size_t len, unsigned timeout_ms);

/* PING, then a PONG carrying the same token into buf within timeout_ms (ZAPs on the way are
 * dropped): 0, or a negative errno (-EPROTO for another reply or token, -ECONNRESET at EOF). */
int raw_ping(int sock, void *buf, size_t len, unsigned timeout_ms);

#endif
