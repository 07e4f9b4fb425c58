/* SPDX-License-Identifier: MIT */
/*
 * Test fixture: a policy module that misbehaves on request (parameter mode=): crash (SIGSEGV in
 * decide), loop (never returns), dup (a page twice), foreign (a segment that does not exist),
 * error (decide returns -EIO), fine (promotes nothing). Exercises tierd's guard and plan checks
 * through dlopen, as a real module would meet them.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tierd/policy.h"

struct st {
	char mode[16];
	volatile int *null;
};

/* tierd never calls fini() of a policy that crashed (its state may be torn) and keeps the
 * module loaded: this keeps the abandoned state reachable, as a real module's would be from its
 * own globals, so leak checkers in the sanitizer build see no leak. */
static struct st *kept[64];
static unsigned nkept;

static int init(void **state, const struct tierd_policy_env *env,
		const struct tierd_policy_param *params, size_t n, char *err, size_t errlen)
{
	struct st *s = calloc(1, sizeof(*s));

	(void)env;
	if (!s)
		return -ENOMEM;
	strcpy(s->mode, "fine");
	for (size_t i = 0; i < n; i++) {
		if (strcmp(params[i].key, "mode") || strlen(params[i].value) >= sizeof(s->mode)) {
			snprintf(err, errlen, "unknown parameter \"%s\"", params[i].key);
			free(s);
			return -EINVAL;
		}
		strcpy(s->mode, params[i].value);
	}
	kept[nkept++ % 64] = s;
	*state = s;
	return 0;
}

static void fini(void *state)
{
	free(state);
}

/* A real fault, not UBSan's report of one: sanitizer builds must reach tierd's guard. */
__attribute__((no_sanitize_undefined, no_sanitize_address))
static int decide(void *state, const struct tierd_view *v, struct tierd_plan *plan)
{
	struct st *s = state;

	if (!strcmp(s->mode, "crash"))
		return *s->null;
	if (!strcmp(s->mode, "loop"))
		for (;;)
			__asm__ volatile("" ::: "memory");
	if (!strcmp(s->mode, "error"))
		return -EIO;
	if (!v->migrate || !plan->max_promote || !v->nsegs)
		return 0;
	if (!strcmp(s->mode, "dup") && plan->max_promote >= 2) {
		plan->promote[0] = (struct tierd_move){ .seg = v->segs[0].id, .page = 0 };
		plan->promote[1] = plan->promote[0];
		plan->npromote = 2;
	} else if (!strcmp(s->mode, "foreign")) {
		plan->promote[0] = (struct tierd_move){ .seg = 0xdead, .page = 0 };
		plan->npromote = 1;
	}
	return 0;
}

const struct tierd_policy_ops tierd_policy = {
	.abi_version = TIERD_POLICY_ABI_VERSION,
	.size = sizeof(struct tierd_policy_ops),
	.name = "hostile",
	.description = "misbehaves on request (tests)",
	.init = init,
	.fini = fini,
	.decide = decide,
};
