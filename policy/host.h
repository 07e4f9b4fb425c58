/* SPDX-License-Identifier: MIT */
/*
 * The policy host: loads a policy (built-in or a module), calls it, and checks every plan it
 * returns before anyone acts on it. Used unchanged by tierd, tierd-sim and the unit tests, so one
 * policy object behaves the same in all three. Pure: no kernel calls besides dlopen and the
 * checks of a module's directory.
 */
#ifndef TIERD_POLICY_HOST_H
#define TIERD_POLICY_HOST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "tierd/policy.h"

struct policy;

/* Built-in policies, NULL-terminated. */
extern const struct tierd_policy_ops *const policy_builtins[];
const struct tierd_policy_ops *policy_builtin(const char *name);

/*
 * Checks that `dir` may hold policy modules: a directory owned by root that is not group- or
 * world-writable, nor is any of its parents. Returns 0 or a negative errno with the reason.
 */
int policy_check_dir(const char *dir, char *why, size_t whylen);

/*
 * Checks a module's ops as loaded: ABI version (a newer one is refused, naming both), size,
 * mandatory operations. Returns 0 or -EPROTO / -EINVAL with the reason; *out gets a copy padded
 * with NULL operations up to this host's size.
 */
int policy_check_ops(const struct tierd_policy_ops *ops, struct tierd_policy_ops *out, char *why,
		     size_t whylen);

/*
 * Opens policy `spec`: a built-in's name; else a module, "NAME" meaning module_dir/NAME.so, or a
 * path to a .so. With a module_dir (tierd), the file and its directory must be root-owned and not
 * group/world-writable (policy_check_dir); module_dir NULL (tierd-sim, tests: a user loading
 * their own code into their own process) loads any path. The module must export
 * TIERD_POLICY_SYMBOL. Calls init() with the parameters. Returns 0 or a negative errno with the
 * reason in why.
 */
int policy_open(const char *spec, const char *module_dir, const struct tierd_policy_param *params,
		size_t nparams, const struct tierd_policy_env *env, struct policy **ret, char *why,
		size_t whylen);
/* The same for ops the caller has at hand (tests, an embedding simulator). */
int policy_open_ops(const struct tierd_policy_ops *ops, const struct tierd_policy_param *params,
		    size_t nparams, const struct tierd_policy_env *env, struct policy **ret, char *why,
		    size_t whylen);
void policy_close(struct policy *p);

const char *policy_name(const struct policy *p);
const struct tierd_policy_ops *policy_ops(const struct policy *p);
bool policy_picks_windows(const struct policy *p);
/* NULL while the policy runs; else why it was disabled (a crash, an error, an invalid plan). */
const char *policy_disabled(const struct policy *p);

int policy_seg_add(struct policy *p, const struct tierd_seg_view *seg);
void policy_seg_remove(struct policy *p, uint32_t seg);
void policy_observe(struct policy *p, const struct tierd_event *events, size_t n);

/*
 * Calls decide() and validates the plan against the view. A policy that crashes (SIGSEGV,
 * SIGBUS, SIGFPE, SIGILL inside its code), runs longer than the guard time, returns an error or
 * an invalid plan is disabled: the plan is emptied, -EPROTO (invalid plan), -EFAULT (crash),
 * -ETIME (too slow) or its error is returned, and the reason is kept (policy_disabled). A
 * disabled policy is never called again; the host switches to another one.
 * When a decision log is set, every decide's outcome is written to it (policy_log_plan).
 */
int policy_decide(struct policy *p, const struct tierd_view *view, struct tierd_plan *plan);

/* Validates a plan against a view. Returns 0 or -EPROTO with the first fault named. */
int policy_validate(const struct tierd_view *view, const struct tierd_plan *plan, bool picks_windows,
		    char *why, size_t whylen);

/* Decision log: one text line per decide, deterministic (no times, no addresses). */
void policy_set_decision_log(struct policy *p, FILE *f);
void policy_log_plan(FILE *f, const char *policy, const struct tierd_view *view,
		     const struct tierd_plan *plan);

/* Longest a decide() may take before the policy is disabled (default 2000 ms; 0 = no limit). */
void policy_set_guard_ms(struct policy *p, unsigned ms);

/* Parses "key=value" strings into params (pointing into the strings, which are modified).
 * Returns the count, or -EINVAL with the bad one named. */
int policy_parse_params(char **kv, size_t n, struct tierd_policy_param *out, char *why, size_t whylen);

#endif
