/* SPDX-License-Identifier: MIT */
/* The policies compiled into tierd (policy/builtin_*.c). */
#ifndef TIERD_POLICY_BUILTINS_H
#define TIERD_POLICY_BUILTINS_H

#include "tierd/policy.h"

extern const struct tierd_policy_ops policy_hotness, policy_lru, policy_none;

#endif
