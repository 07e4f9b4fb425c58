/* SPDX-License-Identifier: MIT */
/*
 * none: track only. tierd samples as usual (status, heat, traces) and never moves a page: the dry
 * run operators use before they let anything move.
 */
#include <errno.h>
#include <stdio.h>

#include "builtins.h"

static int none_init(void **state, const struct tierd_policy_env *env,
		     const struct tierd_policy_param *params, size_t nparams, char *err, size_t errlen)
{
	(void)env;
	*state = NULL;
	if (nparams) {
		snprintf(err, errlen, "none takes no parameters (got \"%s\")", params[0].key);
		return -EINVAL;
	}
	return 0;
}

static int none_decide(void *state, const struct tierd_view *view, struct tierd_plan *plan)
{
	(void)state;
	(void)view;
	plan->npromote = plan->ndemote = plan->nwindows = 0;
	return 0;
}

const struct tierd_policy_ops policy_none = {
	.abi_version = TIERD_POLICY_ABI_VERSION,
	.size = sizeof(struct tierd_policy_ops),
	.name = "none",
	.description = "track only: never moves a page",
	.init = none_init,
	.decide = none_decide,
};
