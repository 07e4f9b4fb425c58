/* SPDX-License-Identifier: MIT */
/*
 * The policy host: built-in registry, module loading with ownership checks, the crash and time
 * guard around calls into a policy, plan validation and the decision log.
 */
#include "host.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "builtins.h"

const struct tierd_policy_ops *const policy_builtins[] = {
	&policy_hotness,
	&policy_lru,
	&policy_none,
	NULL,
};

/* The ops a version-1 module must have: everything up to and including decide. */
#define OPS_V1_MIN_SIZE (offsetof(struct tierd_policy_ops, decide) + sizeof(void *))
/* decide() longer than this disables the policy: the daemon's loop serves no fault meanwhile, and
 * systemd's watchdog (10 s) would restart tierd well after that. */
#define GUARD_MS_DEFAULT 2000u

struct policy {
	struct tierd_policy_ops ops; /* the module's, padded with NULL operations */
	void *state;
	void *dl;
	char name[64];
	char why_disabled[256];
	bool disabled;
	bool crashed; /* its state may be corrupt: never call it again, not even fini */
	bool no_fini; /* init failed or never ran */
	FILE *dlog;
	unsigned guard_ms;
};

const struct tierd_policy_ops *policy_builtin(const char *name)
{
	for (size_t i = 0; policy_builtins[i]; i++)
		if (!strcmp(policy_builtins[i]->name, name))
			return policy_builtins[i];
	return NULL;
}

/* "hotness, lru, none" */
static const char *builtin_names(void)
{
	static char buf[256];
	size_t l = 0;

	buf[0] = '\0';
	for (size_t i = 0; policy_builtins[i] && l < sizeof(buf); i++)
		l += (size_t)snprintf(buf + l, sizeof(buf) - l, "%s%s", i ? ", " : "",
				      policy_builtins[i]->name);
	return buf;
}

static int fail(int err, char *why, size_t whylen, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static int fail(int err, char *why, size_t whylen, const char *fmt, ...)
{
	va_list ap;

	if (why && whylen) {
		va_start(ap, fmt);
		vsnprintf(why, whylen, fmt, ap);
		va_end(ap);
	}
	return err;
}

/* Owned by root and not writable by group or others (a root-owned sticky /tmp is not safe either:
 * any user can put a module there under a name tierd has not loaded yet). */
static int check_owner_mode(const char *path, const struct stat *st, char *why, size_t whylen)
{
	if (st->st_uid != 0)
		return fail(-EPERM, why, whylen, "%s is owned by uid %u, not root", path,
			    (unsigned)st->st_uid);
	if (st->st_mode & (S_IWGRP | S_IWOTH))
		return fail(-EPERM, why, whylen, "%s is writable by %s (mode %04o)", path,
			    st->st_mode & S_IWOTH ? "everyone" : "its group",
			    (unsigned)(st->st_mode & 07777));
	return 0;
}

int policy_check_dir(const char *dir, char *why, size_t whylen)
{
	char real[PATH_MAX], *slash;
	struct stat st;
	int r;

	if (!realpath(dir, real))
		return fail(-errno, why, whylen, "policy module directory %s: %s", dir, strerror(errno));
	if (stat(real, &st) < 0)
		return fail(-errno, why, whylen, "%s: %s", real, strerror(errno));
	if (!S_ISDIR(st.st_mode))
		return fail(-ENOTDIR, why, whylen, "%s is not a directory", real);
	/* The directory and every parent: whoever can write a parent can swap the directory. */
	for (;;) {
		if (stat(real, &st) < 0)
			return fail(-errno, why, whylen, "%s: %s", real, strerror(errno));
		r = check_owner_mode(real, &st, why, whylen);
		if (r < 0)
			return r;
		slash = strrchr(real, '/');
		if (!slash || slash == real) {
			if (strcmp(real, "/")) {
				real[1] = '\0';
				continue;
			}
			return 0;
		}
		*slash = '\0';
	}
}

int policy_check_ops(const struct tierd_policy_ops *ops, struct tierd_policy_ops *out, char *why,
		     size_t whylen)
{
	memset(out, 0, sizeof(*out));
	if (ops->abi_version == 0)
		return fail(-EPROTO, why, whylen, "abi_version is 0: not a tierd policy");
	if (ops->abi_version > TIERD_POLICY_ABI_VERSION)
		return fail(-EPROTO, why, whylen,
			    "built for policy ABI %u, but this tierd supports ABI %u at most: rebuild it "
			    "against this tierd's <tierd/policy.h> or upgrade tierd",
			    ops->abi_version, TIERD_POLICY_ABI_VERSION);
	if (ops->size < OPS_V1_MIN_SIZE)
		return fail(-EPROTO, why, whylen, "ops size %u is smaller than ABI 1's %zu bytes",
			    ops->size, (size_t)OPS_V1_MIN_SIZE);
	/* An older module's struct is a prefix of ours; a newer minor one may be longer: read only
	 * what we know. */
	memcpy(out, ops, ops->size < sizeof(*out) ? ops->size : sizeof(*out));
	out->size = sizeof(*out);
	if (!out->name || !out->name[0])
		return fail(-EINVAL, why, whylen, "the policy has no name");
	if (!out->init || !out->decide)
		return fail(-EINVAL, why, whylen, "policy %s lacks %s()", out->name,
			    out->init ? "decide" : "init");
	return 0;
}

/* ---- the guard ------------------------------------------------------------------------------- */

/* One thread calls policies (the daemon's loop, the simulator, a test), so one jump buffer. */
static sigjmp_buf guard_jmp;
static volatile sig_atomic_t guard_active, guard_sig;
static struct sigaction guard_old[NSIG];
static const int guard_signals[] = { SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGALRM };
static bool guard_installed;

static void guard_handler(int sig, siginfo_t *si, void *uc)
{
	(void)si;
	(void)uc;
	if (guard_active) {
		guard_active = 0;
		guard_sig = sig;
		siglongjmp(guard_jmp, 1);
	}
	/* Not inside a policy: this crash is the host's own. Put back the previous handlers (the
	 * sanitizer's, or the default) and return, so the faulting instruction runs again into
	 * them; the next guarded call installs the guard again. */
	for (size_t i = 0; i < sizeof(guard_signals) / sizeof(guard_signals[0]); i++)
		sigaction(guard_signals[i], &guard_old[guard_signals[i]], NULL);
	guard_installed = false;
	if (sig == SIGALRM)
		raise(sig);
}

static void guard_install(void)
{
	static uint8_t altstack[64 * 1024];
	stack_t ss = { .ss_sp = altstack, .ss_size = sizeof(altstack) };
	struct sigaction sa = { .sa_sigaction = guard_handler, .sa_flags = SA_SIGINFO | SA_ONSTACK };

	struct sigaction cur;

	/* Someone may have put their handler over ours since (a test framework does, per test):
	 * one look at SIGSEGV tells. */
	if (guard_installed && sigaction(SIGSEGV, NULL, &cur) == 0 &&
	    (cur.sa_flags & SA_SIGINFO) && cur.sa_sigaction == guard_handler)
		return;
	/* A policy that overflows its stack still gets caught: the handler runs on its own. */
	(void)sigaltstack(&ss, NULL);
	sigemptyset(&sa.sa_mask);
	for (size_t i = 0; i < sizeof(guard_signals) / sizeof(guard_signals[0]); i++)
		sigaction(guard_signals[i], &sa, &guard_old[guard_signals[i]]);
	guard_installed = true;
}

static void set_alarm(unsigned ms)
{
	struct itimerval it = { .it_value = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 } };

	(void)setitimer(ITIMER_REAL, &it, NULL);
}

static void disable(struct policy *p, bool crashed, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void disable(struct policy *p, bool crashed, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(p->why_disabled, sizeof(p->why_disabled), fmt, ap);
	va_end(ap);
	p->disabled = true;
	p->crashed |= crashed;
}

/* One call into a policy, run by guarded(). */
enum call_kind { CALL_INIT, CALL_FINI, CALL_SEG_ADD, CALL_SEG_REMOVE, CALL_OBSERVE, CALL_DECIDE };

struct call {
	enum call_kind kind;
	const struct tierd_policy_env *env;
	const struct tierd_policy_param *params;
	size_t n;
	char *err;
	size_t errlen;
	const void *arg;
	uint32_t seg;
	struct tierd_plan *plan;
	int ret;
};

static void run_call(struct policy *p, struct call *c)
{
	switch (c->kind) {
	case CALL_INIT:
		c->ret = p->ops.init(&p->state, c->env, c->params, c->n, c->err, c->errlen);
		break;
	case CALL_FINI:
		p->ops.fini(p->state);
		break;
	case CALL_SEG_ADD:
		c->ret = p->ops.seg_add(p->state, c->arg);
		break;
	case CALL_SEG_REMOVE:
		p->ops.seg_remove(p->state, c->seg);
		break;
	case CALL_OBSERVE:
		p->ops.observe(p->state, c->arg, c->n);
		break;
	case CALL_DECIDE:
		c->ret = p->ops.decide(p->state, c->arg, c->plan);
		break;
	}
}

/*
 * Runs one call inside the guard: a fault in the policy's code, or (timed) a call longer than
 * guard_ms, jumps back here and disables the policy. Returns the call's result, or -EFAULT /
 * -ETIME. A policy that crashed inside malloc may leave the allocator's lock taken; that cannot
 * be avoided in one process, and is why a crashed policy is never called again.
 */
static int guarded(struct policy *p, const char *what, bool timed, struct call *c)
{
	/* Read after a jump: statics, not locals the jump may have clobbered. */
	static struct policy *volatile cur;
	static const char *volatile cur_what;
	static volatile bool cur_timed;

	guard_install();
	cur = p;
	cur_what = what;
	cur_timed = timed && p->guard_ms;
	if (sigsetjmp(guard_jmp, 1) == 0) {
		guard_sig = 0;
		guard_active = 1;
		if (cur_timed)
			set_alarm(p->guard_ms);
		run_call(p, c);
		guard_active = 0;
		if (cur_timed)
			set_alarm(0);
		return c->ret;
	}
	if (cur_timed)
		set_alarm(0);
	if (guard_sig == SIGALRM) {
		disable(cur, true, "%s() ran longer than %u ms", cur_what, cur->guard_ms);
		return -ETIME;
	}
	disable(cur, true, "%s() crashed with SIG%s", cur_what,
		sigabbrev_np(guard_sig) ? sigabbrev_np(guard_sig) : "?");
	return -EFAULT;
}

/* ---- loading --------------------------------------------------------------------------------- */

static int load_module(const char *spec, const char *module_dir, struct policy *p, char *why,
		       size_t whylen)
{
	char path[PATH_MAX], dir[PATH_MAX], *slash;
	const struct tierd_policy_ops *ops;
	struct stat st;
	int fd, r;

	if (strchr(spec, '/'))
		snprintf(path, sizeof(path), "%s", spec);
	else if (module_dir)
		snprintf(path, sizeof(path), "%s/%s.so", module_dir, spec);
	else
		return fail(-ENOENT, why, whylen, "no built-in policy named \"%s\" (built-ins: %s)", spec,
			    builtin_names());

	if (module_dir) {
		char real[PATH_MAX];

		/* The file and its directory must be root's alone: then nobody else can swap them
		 * between this check and dlopen(), and checking the path is enough. */
		if (!realpath(path, real))
			return fail(-errno, why, whylen, "policy \"%s\": %s: %s%s", spec, path,
				    strerror(errno), errno == ENOENT ? " (and it is not a built-in)" : "");
		fd = open(real, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			return fail(-errno, why, whylen, "%s: %s", real, strerror(errno));
		r = fstat(fd, &st) < 0 ? -errno : 0;
		close(fd);
		if (r < 0 || !S_ISREG(st.st_mode))
			return fail(r < 0 ? r : -EINVAL, why, whylen, "%s is not a regular file", real);
		r = check_owner_mode(real, &st, why, whylen);
		snprintf(dir, sizeof(dir), "%s", real);
		slash = strrchr(dir, '/');
		*slash = '\0';
		if (r == 0)
			r = policy_check_dir(dir[0] ? dir : "/", why, whylen);
		if (r < 0)
			return r;
		/* By its real path: glibc knows a loaded object by name and inode, and the same
		 * module loaded twice is one object. */
		p->dl = dlopen(real, RTLD_NOW | RTLD_LOCAL);
	} else {
		p->dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	}
	if (!p->dl)
		return fail(-ENOEXEC, why, whylen, "loading policy \"%s\": %s", spec, dlerror());
	ops = dlsym(p->dl, TIERD_POLICY_SYMBOL);
	if (!ops) {
		fail(-ENOEXEC, why, whylen, "policy \"%s\" does not export the symbol %s", spec,
		     TIERD_POLICY_SYMBOL);
		return -ENOEXEC;
	}
	r = policy_check_ops(ops, &p->ops, why, whylen);
	if (r < 0) {
		char tmp[256];

		snprintf(tmp, sizeof(tmp), "%s", why);
		return fail(r, why, whylen, "policy \"%s\": %s", spec, tmp);
	}
	return 0;
}

static int open_common(const char *spec, const struct tierd_policy_ops *ops, const char *module_dir,
		       const struct tierd_policy_param *params, size_t nparams,
		       const struct tierd_policy_env *env, struct policy **ret, char *why, size_t whylen)
{
	struct policy *p = calloc(1, sizeof(*p));
	char err[256] = "";
	int r;

	*ret = NULL;
	if (!p)
		return fail(-ENOMEM, why, whylen, "out of memory");
	p->guard_ms = GUARD_MS_DEFAULT;
	if (ops)
		r = policy_check_ops(ops, &p->ops, why, whylen);
	else
		r = load_module(spec, module_dir, p, why, whylen);
	p->no_fini = true;
	if (r < 0)
		goto out;
	snprintf(p->name, sizeof(p->name), "%s", p->ops.name);
	r = guarded(p, "init", true, &(struct call){ .kind = CALL_INIT, .env = env, .params = params,
						      .n = nparams, .err = err, .errlen = sizeof(err) });
	if (p->disabled) {
		r = fail(r, why, whylen, "policy %s: %s", p->name, p->why_disabled);
		p->crashed = true;
		goto out;
	}
	if (r < 0) {
		r = fail(r, why, whylen, "policy %s: %s", p->name, err[0] ? err : strerror(-r));
		p->no_fini = true; /* init failed: there is no state to fini */
		goto out;
	}
	p->no_fini = false;
	*ret = p;
	return 0;
out:
	policy_close(p);
	return r;
}

int policy_open(const char *spec, const char *module_dir, const struct tierd_policy_param *params,
		size_t nparams, const struct tierd_policy_env *env, struct policy **ret, char *why,
		size_t whylen)
{
	return open_common(spec, policy_builtin(spec), module_dir, params, nparams, env, ret, why,
			   whylen);
}

int policy_open_ops(const struct tierd_policy_ops *ops, const struct tierd_policy_param *params,
		    size_t nparams, const struct tierd_policy_env *env, struct policy **ret, char *why,
		    size_t whylen)
{
	return open_common(ops->name ? ops->name : "?", ops, NULL, params, nparams, env, ret, why,
			   whylen);
}

void policy_close(struct policy *p)
{
	if (!p)
		return;
	if (!p->crashed && !p->no_fini && p->ops.fini)
		(void)guarded(p, "fini", true, &(struct call){ .kind = CALL_FINI });
	/* A module that crashed may have threads or handlers pointing into its code: keep it. */
	if (p->dl && !p->crashed)
		dlclose(p->dl);
	free(p);
}

const char *policy_name(const struct policy *p)
{
	return p->name;
}

const struct tierd_policy_ops *policy_ops(const struct policy *p)
{
	return &p->ops;
}

bool policy_picks_windows(const struct policy *p)
{
	return p->ops.picks_windows != 0;
}

const char *policy_disabled(const struct policy *p)
{
	return p->disabled ? p->why_disabled : NULL;
}

void policy_set_guard_ms(struct policy *p, unsigned ms)
{
	p->guard_ms = ms;
}

void policy_set_decision_log(struct policy *p, FILE *f)
{
	p->dlog = f;
}

int policy_seg_add(struct policy *p, const struct tierd_seg_view *seg)
{
	if (p->disabled || !p->ops.seg_add)
		return 0;
	return guarded(p, "seg_add", true, &(struct call){ .kind = CALL_SEG_ADD, .arg = seg });
}

void policy_seg_remove(struct policy *p, uint32_t seg)
{
	if (p->disabled || !p->ops.seg_remove)
		return;
	(void)guarded(p, "seg_remove", true, &(struct call){ .kind = CALL_SEG_REMOVE, .seg = seg });
}

void policy_observe(struct policy *p, const struct tierd_event *events, size_t n)
{
	if (p->disabled || !p->ops.observe || !n)
		return;
	/* Not timed: observe runs on the fault path, and an itimer per call costs two syscalls. */
	(void)guarded(p, "observe", false,
		      &(struct call){ .kind = CALL_OBSERVE, .arg = events, .n = n });
}

/* ---- validation ------------------------------------------------------------------------------ */

static const struct tierd_seg_view *find_seg(const struct tierd_view *v, uint32_t id, size_t *hint)
{
	if (*hint < v->nsegs && v->segs[*hint].id == id)
		return &v->segs[*hint];
	for (size_t i = 0; i < v->nsegs; i++)
		if (v->segs[i].id == id) {
			*hint = i;
			return &v->segs[i];
		}
	return NULL;
}

struct key {
	uint32_t seg;
	uint64_t a, b;
};

static int by_key(const void *x, const void *y)
{
	const struct key *a = x, *b = y;

	if (a->seg != b->seg)
		return a->seg < b->seg ? -1 : 1;
	return (a->a > b->a) - (a->a < b->a);
}

static int check_moves(const struct tierd_view *v, const struct tierd_move *m, size_t n, bool up,
		       struct key *keys, size_t *nkeys, uint64_t *bytes, char *why, size_t whylen)
{
	size_t hint = 0;

	for (size_t i = 0; i < n; i++) {
		const struct tierd_seg_view *s = find_seg(v, m[i].seg, &hint);
		int node, tier;

		if (!s)
			return fail(-EPROTO, why, whylen, "%s %zu names segment %u, which does not exist",
				    up ? "promotion" : "demotion", i, m[i].seg);
		if (m[i].page >= s->npages)
			return fail(-EPROTO, why, whylen,
				    "%s %zu names page %" PRIu64 " of segment %u, which has %" PRIu64 " pages",
				    up ? "promotion" : "demotion", i, m[i].page, m[i].seg, s->npages);
		node = s->pages[m[i].page].node;
		tier = node >= 0 && node < TIERD_MAX_NODES ? v->node_tier[node] : -1;
		if (tier < 0)
			return fail(-EPROTO, why, whylen,
				    "%s of segment %u page %" PRIu64 ": where the page is, is not known",
				    up ? "promotion" : "demotion", m[i].seg, m[i].page);
		if (up && tier == 0)
			return fail(-EPROTO, why, whylen,
				    "promotion of segment %u page %" PRIu64 ": it is on the fast tier already",
				    m[i].seg, m[i].page);
		if (!up && tier != 0)
			return fail(-EPROTO, why, whylen,
				    "demotion of segment %u page %" PRIu64 ": it is not on the fast tier",
				    m[i].seg, m[i].page);
		*bytes += s->page_size;
		keys[(*nkeys)++] = (struct key){ .seg = m[i].seg, .a = m[i].page };
	}
	return 0;
}

int policy_validate(const struct tierd_view *v, const struct tierd_plan *plan, bool picks_windows,
		    char *why, size_t whylen)
{
	size_t nmoves = plan->npromote + plan->ndemote, nkeys = 0, hint = 0;
	uint64_t bytes = 0;
	struct key *keys;
	int r = 0;

	if (plan->npromote > plan->max_promote || plan->ndemote > plan->max_demote)
		return fail(-EPROTO, why, whylen, "%zu promotions and %zu demotions; at most %zu and %zu "
			    "were allowed", plan->npromote, plan->ndemote, plan->max_promote,
			    plan->max_demote);
	if (nmoves && !v->migrate)
		return fail(-EPROTO, why, whylen, "moves outside a migration pass");
	if (plan->nwindows && !picks_windows)
		return fail(-EPROTO, why, whylen, "windows from a policy that does not pick them");
	if (plan->nwindows > plan->max_windows)
		return fail(-EPROTO, why, whylen, "%zu windows; at most %zu were allowed", plan->nwindows,
			    plan->max_windows);
	keys = malloc((nmoves > plan->nwindows ? nmoves : plan->nwindows) * sizeof(*keys) + 1);
	if (!keys)
		return fail(-ENOMEM, why, whylen, "out of memory validating a plan");
	r = check_moves(v, plan->promote, plan->npromote, true, keys, &nkeys, &bytes, why, whylen);
	if (r == 0)
		r = check_moves(v, plan->demote, plan->ndemote, false, keys, &nkeys, &bytes, why, whylen);
	if (r == 0 && bytes > v->max_move_bytes)
		r = fail(-EPROTO, why, whylen, "the plan moves %" PRIu64 " bytes; this pass allows %" PRIu64,
			 bytes, v->max_move_bytes);
	if (r == 0 && nkeys) {
		qsort(keys, nkeys, sizeof(*keys), by_key);
		for (size_t i = 1; i < nkeys && r == 0; i++)
			if (keys[i].seg == keys[i - 1].seg && keys[i].a == keys[i - 1].a)
				r = fail(-EPROTO, why, whylen,
					 "segment %u page %" PRIu64 " appears in the plan twice", keys[i].seg,
					 keys[i].a);
	}
	for (size_t i = 0; r == 0 && i < plan->nwindows; i++) {
		const struct tierd_window *w = &plan->windows[i];
		const struct tierd_seg_view *s = find_seg(v, w->seg, &hint);

		if (!s)
			r = fail(-EPROTO, why, whylen, "window %zu names segment %u, which does not exist",
				 i, w->seg);
		else if (!w->npages || w->start >= s->npages || w->npages > s->npages - w->start)
			r = fail(-EPROTO, why, whylen,
				 "window %zu [%" PRIu64 ", +%" PRIu64 ") is outside segment %u's %" PRIu64
				 " pages", i, w->start, w->npages, w->seg, s->npages);
		else if (w->npages * s->page_size > (v->window_bytes > s->page_size ? v->window_bytes
										      : s->page_size))
			/* The host caps the fault rate it arms for: windows * window size. */
			r = fail(-EPROTO, why, whylen,
				 "window %zu of segment %u is %" PRIu64 " pages; windows are at most %" PRIu64
				 " bytes", i, w->seg, w->npages, v->window_bytes);
		else
			keys[i] = (struct key){ .seg = w->seg, .a = w->start, .b = w->start + w->npages };
	}
	if (r == 0 && plan->nwindows) {
		qsort(keys, plan->nwindows, sizeof(*keys), by_key);
		for (size_t i = 1; i < plan->nwindows && r == 0; i++)
			if (keys[i].seg == keys[i - 1].seg && keys[i].a < keys[i - 1].b)
				r = fail(-EPROTO, why, whylen, "windows overlap in segment %u at page %" PRIu64,
					 keys[i].seg, keys[i].a);
	}
	free(keys);
	return r;
}

void policy_log_plan(FILE *f, const char *policy, const struct tierd_view *v,
		     const struct tierd_plan *plan)
{
	fprintf(f, "epoch %" PRIu32 " policy %s migrate %u promote %zu demote %zu windows %zu\n",
		v->epoch, policy, v->migrate, plan->npromote, plan->ndemote, plan->nwindows);
	for (size_t i = 0; i < plan->npromote; i++)
		fprintf(f, "+ %" PRIu32 " %" PRIu64 " %.4f\n", plan->promote[i].seg, plan->promote[i].page,
			(double)plan->promote[i].score);
	for (size_t i = 0; i < plan->ndemote; i++)
		fprintf(f, "- %" PRIu32 " %" PRIu64 " %.4f\n", plan->demote[i].seg, plan->demote[i].page,
			(double)plan->demote[i].score);
	for (size_t i = 0; i < plan->nwindows; i++)
		fprintf(f, "w %" PRIu32 " %" PRIu64 " %" PRIu64 "\n", plan->windows[i].seg,
			plan->windows[i].start, plan->windows[i].npages);
}

int policy_decide(struct policy *p, const struct tierd_view *view, struct tierd_plan *plan)
{
	char why[200];
	int r = 0;

	plan->npromote = plan->ndemote = plan->nwindows = 0;
	if (p->disabled)
		return -ECANCELED;
	if (!policy_picks_windows(p)) {
		/* The host picks: the policy gets no array to fill. */
		plan->max_windows = 0;
	}
	r = guarded(p, "decide", true, &(struct call){ .kind = CALL_DECIDE, .arg = view, .plan = plan });
	if (p->disabled) {
		plan->npromote = plan->ndemote = plan->nwindows = 0;
		return r;
	}
	if (r < 0) {
		disable(p, false, "decide() failed: %s", strerror(-r));
		plan->npromote = plan->ndemote = plan->nwindows = 0;
		return r;
	}
	r = policy_validate(view, plan, policy_picks_windows(p), why, sizeof(why));
	if (r < 0) {
		disable(p, false, "invalid plan at epoch %u: %s", view->epoch, why);
		plan->npromote = plan->ndemote = plan->nwindows = 0;
		return r;
	}
	if (p->dlog)
		policy_log_plan(p->dlog, p->name, view, plan);
	return 0;
}

int policy_parse_params(char **kv, size_t n, struct tierd_policy_param *out, char *why, size_t whylen)
{
	for (size_t i = 0; i < n; i++) {
		char *eq = strchr(kv[i], '=');

		if (!eq || eq == kv[i])
			return fail(-EINVAL, why, whylen, "policy parameter \"%s\" is not key=value", kv[i]);
		*eq = '\0';
		out[i] = (struct tierd_policy_param){ .key = kv[i], .value = eq + 1 };
	}
	return (int)n;
}
