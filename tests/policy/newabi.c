/* SPDX-License-Identifier: MIT */
/* Test fixture: a module built against a policy ABI newer than tierd's. */
#include <stddef.h>

#include "tierd/policy.h"

static int init(void **state, const struct tierd_policy_env *env,
		const struct tierd_policy_param *params, size_t n, char *err, size_t errlen)
{
	(void)state, (void)env, (void)params, (void)n, (void)err, (void)errlen;
	return 0;
}

static int decide(void *state, const struct tierd_view *v, struct tierd_plan *plan)
{
	(void)state, (void)v, (void)plan;
	return 0;
}

const struct tierd_policy_ops tierd_policy = {
	.abi_version = TIERD_POLICY_ABI_VERSION + 1,
	.size = sizeof(struct tierd_policy_ops) + 16,
	.name = "newabi",
	.init = init,
	.decide = decide,
};
