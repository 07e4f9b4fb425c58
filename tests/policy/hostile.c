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

#ifdef __SANITIZE_ADDRESS__
#include <sanitizer/lsan_interface.h>
#endif

struct st {
	char mode[16];
	volatile int *null;
};

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
	/* A policy that crashed is never called again, fini() included (its state cannot be
	 * trusted): in crash mode this state is lost on purpose, not a leak for LSan to report. */
#ifdef __SANITIZE_ADDRESS__
	if (!strcmp(s->mode, "crash"))
		__lsan_ignore_object(s);
#endif
	*state = s;
	return 0;
}

static void fini(void *state)
{
	free(state);
}

/* "crash" faults on purpose, for tierd's guard to catch: UBSan (SANITIZE=1 builds this module
 * with it) must let the load happen instead of stopping the process at it. */
__attribute__((no_sanitize("null")))
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
