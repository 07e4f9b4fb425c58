/* SPDX-License-Identifier: MIT */
/* Configuration keys, their defaults, and reading them from INI files with libinih. */
#include "config.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <ini.h>
#include <inttypes.h>
#include <math.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef TIERD_POLICY_DIR
/* Where policy modules are looked up (policy.module_dir). Fixed, so that config/tierd.conf
 * documents the default whatever PREFIX a build uses; make install creates LIBDIR/tierd/policies,
 * which differs when PREFIX is not /usr/local (set module_dir to it then). */
#define TIERD_POLICY_DIR "/usr/local/lib/tierd/policies"
#endif

void tierd_config_defaults(struct tierd_config *cfg)
{
	*cfg = (struct tierd_config){
		.epoch_ms = 100,
		/* Sampling rate. tierd's CPU follows the faults it serves, and each window costs a
		 * register, an unregister and up to window_bytes/page_size faults. 32 windows of
		 * 32 KiB every 100 ms zap at most 2560 pages/s: measured ~1-2 % of a core (make
		 * bench, daemon_cpu) and a hot set found within a second or two (tests/kernel). 32
		 * live windows add ~64 VMAs to a client: far below vm.max_map_count (65530). */
		.max_windows = 32,
		.window_bytes = 32 * 1024,
		.min_regions = 10,
		.max_regions = 256,
		.aggregate_epochs = 5,
		.hot_threshold = 0.25f,
		.merge_delta = 0.10f,
		.heartbeat_ms = 250,
		.max_clients = 4096,
		.hello_timeout_ms = 5000,
		.max_attach_per_client = 64,
		/* On where the host allows (it turns itself off, saying why, without BTF, CAP_BPF or
		 * CAP_PERFMON): its samples are re-accesses only, a page's first fault in a process
		 * (population, fork) is a first touch (bpf/fault.bpf.c), so freshly written pages do
		 * not look hot. */
		.bpf = true,
		/* 16 Mi pages: 64 GiB of 4 KiB pages over all tracked mappings, in 2 MiB of kernel
		 * memory (one bit a page). */
		.bpf_seen_pages = 1u << 24,
		/* PEBS/IBS where the machine has them; the software page-fault event only when asked:
		 * it sees the faults the page-fault counter sees, and would count them twice. */
		.perf = true,
		.perf_software = false,
		.perf_period = 0,
		/* 64 Ki pages (256 MiB of 4 KiB pages touched per epoch) in ~5 MiB of kernel memory;
		 * beyond that faults are still counted, as overflow. */
		.bpf_map_entries = 65536,
		/* A client more than 4 epochs behind on zaps is skipped until it catches up. */
		.max_zaps_in_flight = 4,
		.uffd_dev_path = "/dev/userfaultfd",
		.migrate = true,
		/* Hysteresis between the watermarks keeps demotion from running every pass. */
		.high_wm = 0.95f,
		.low_wm = 0.85f,
		/* Well below what one core moves (GB/s): migration must not starve the fault path. */
		.rate_limit_mbps = 512,
		.migrate_every_epochs = 5,
		.reserve_bytes = 64ull << 20,
		/* A pass moves for at most 50 ms (the loop serves no fault meanwhile); a batch waits
		 * at most 200 ms for its zaps (faults on its pages wait that long at most): both far
		 * below the clients' 2 s hang timeout. */
		.batch_ms = 50,
		.batch_wait_ms = 200,
		.sysfs_root = "/sys",
		.policy_name = "hotness",
		.policy_dir = TIERD_POLICY_DIR,
		/* node_exporter scrapes every 15 s by default. */
		.metrics_interval_ms = 15000,
		/* What tierd.socket gives: root and a group the operator names may connect. */
		.socket_mode = 0660,
		.socket_gid = TIERD_NO_GROUP,
	};
	snprintf(cfg->socket_path, sizeof(cfg->socket_path), "%s", TIERD_DEFAULT_SOCKET);
}


/* The longest line libinih reads whole (its buffer, less the newline and the NUL). Every value
 * config_set() accepts must fit on one such line as config_dump() prints it, "key = value", so
 * that what tierd --check-config prints reads back: a file's line may be "key=value", two bytes
 * shorter, and a list of names or numbers prints as numbers. */
#define LINE_MAX_BYTES (INI_MAX_LINE - 2)
/* libinih keeps the current section in 50 bytes and cuts a longer name without a word
 * (MAX_SECTION in its ini.c; ini.h does not export it). A longer header is refused instead: cut,
 * [policy.NAME] would silently give its keys to another name. */
#define INI_SECTION_MAX 50

enum key_type { K_U32, K_BYTES, K_FLOAT, K_BOOL, K_PATH, K_MODE, K_REG, K_USERS, K_GROUPS, K_NAME,
		K_DIR, K_FILE, K_PMODE, K_OCTAL, K_GROUP };

struct key {
	const char *section, *name;
	enum key_type type;
	size_t off;          /* into struct tierd_config */
	double min, max;     /* K_U32, K_FLOAT; K_BYTES: in `unit`s */
	uint64_t unit;       /* K_BYTES: bytes per unit of the value (the key's name says which) */
};

#define F(field) offsetof(struct tierd_config, field)
static const struct key keys[] = {
	{ "daemon", "socket", K_PATH, F(socket_path), 0, 0, 0 },
	{ "daemon", "socket_mode", K_OCTAL, F(socket_mode), 0, 0777, 0 },
	{ "daemon", "socket_group", K_GROUP, F(socket_gid), 0, 0, 0 },
	{ "sampling", "epoch_ms", K_U32, F(epoch_ms), 1, 60000, 0 },
	{ "sampling", "max_windows", K_U32, F(max_windows), 0, 4096, 0 },
	{ "sampling", "window_kib", K_BYTES, F(window_bytes), 4, 1 << 20, 1024 },
	{ "sampling", "max_regions", K_U32, F(max_regions), 10, 65536, 0 },
	{ "sampling", "hot_threshold", K_FLOAT, F(hot_threshold), 0.001, 1, 0 },
	{ "sampling", "bpf", K_BOOL, F(bpf), 0, 0, 0 },
	{ "sampling", "bpf_map_entries", K_U32, F(bpf_map_entries), 16, 1 << 24, 0 },
	{ "sampling", "bpf_seen_pages", K_U32, F(bpf_seen_pages), 4096, 1 << 30, 0 },
	{ "sampling", "bpf_percpu_pages", K_U32, F(bpf_percpu_pages), 0, 1 << 24, 0 },
	{ "sampling", "perf", K_BOOL, F(perf), 0, 0, 0 },
	{ "sampling", "perf_software", K_BOOL, F(perf_software), 0, 0, 0 },
	{ "sampling", "perf_period", K_U32, F(perf_period), 0, 1 << 30, 0 },
	{ "migration", "enabled", K_BOOL, F(migrate), 0, 0, 0 },
	{ "migration", "mode", K_MODE, F(migrate_how), 0, 0, 0 },
	{ "migration", "rate_limit_mbps", K_U32, F(rate_limit_mbps), 1, 1000000, 0 },
	{ "migration", "every_epochs", K_U32, F(migrate_every_epochs), 1, 10000, 0 },
	{ "migration", "batch_ms", K_U32, F(batch_ms), 1, 1000, 0 },
	{ "migration", "batch_wait_ms", K_U32, F(batch_wait_ms), 10, 1000, 0 },
	{ "tiers", "fast_budget_mib", K_BYTES, F(fast_budget_bytes), 0, UINT32_MAX - 1, 1 << 20 },
	{ "tiers", "high_watermark", K_FLOAT, F(high_wm), 0.01, 1, 0 },
	{ "tiers", "low_watermark", K_FLOAT, F(low_wm), 0.0, 1, 0 },
	{ "tiers", "reserve_mib", K_BYTES, F(reserve_bytes), 0, UINT32_MAX - 1, 1 << 20 },
	{ "tiers", "huge_reserve_pages", K_U32, F(huge_reserve_pages), 0, 1 << 20, 0 },
	{ "policy", "name", K_NAME, F(policy_name), 0, 0, 0 },
	{ "policy", "module_dir", K_DIR, F(policy_dir), 0, 0, 0 },
	{ "policy", "mode", K_PMODE, F(mode), 0, 0, 0 },
	{ "metrics", "textfile", K_FILE, F(metrics_textfile), 0, 0, 0 },
	{ "metrics", "interval_ms", K_U32, F(metrics_interval_ms), 1000, 3600000, 0 },
	{ "clients", "allow_users", K_USERS, F(allow_uids), 0, 0, 0 },
	{ "clients", "allow_groups", K_GROUPS, F(allow_gids), 0, 0, 0 },
	/* Below half of libtier's default hang timeout (2 s): slower pings would make every client
	 * think tierd hung. */
	{ "clients", "heartbeat_ms", K_U32, F(heartbeat_ms), 10, 1000, 0 },
	{ "clients", "max_clients", K_U32, F(max_clients), 1, 1 << 20, 0 },
	{ "clients", "hello_timeout_ms", K_U32, F(hello_timeout_ms), 100, 600000, 0 },
	{ "clients", "max_attach_per_client", K_U32, F(max_attach_per_client), 1, 4096, 0 },
	{ "clients", "shmem_registration", K_REG, F(shmem_register_whole), 0, 0, 0 },
};
#define NKEYS (sizeof(keys) / sizeof(keys[0]))

static const struct key *key_find(const char *section, const char *name)
{
	for (size_t i = 0; i < NKEYS; i++)
		if (strcmp(keys[i].section, section) == 0 && strcmp(keys[i].name, name) == 0)
			return &keys[i];
	return NULL;
}

static int parse_number(const char *v, double min, double max, bool integer, double *out)
{
	char *end;
	double d;

	errno = 0;
	d = strtod(v, &end);
	if (errno || end == v || *end != '\0' || isnan(d))
		return -EINVAL;
	if (integer && (d != floor(d) || strpbrk(v, ".eE")))
		return -EINVAL;
	if (d < min || d > max)
		return -ERANGE;
	*out = d;
	return 0;
}

/* "root, 1000 postgres": names or numbers, comma or space separated; an empty list allows every
 * user the socket's mode lets in. */
static int parse_ids(const char *v, bool users, uint32_t *ids, unsigned *n, char *why, size_t whylen)
{
	char buf[512], *save = NULL;
	/* config_dump() prints "allow_users = 0, 1000": the key, then the list as numbers. */
	size_t printed = strlen(users ? "allow_users" : "allow_groups") + strlen(" = ");
	unsigned k = 0;

	if (strlen(v) >= sizeof(buf)) {
		snprintf(why, whylen, "list longer than %zu bytes", sizeof(buf) - 1);
		return -EINVAL;
	}
	snprintf(buf, sizeof(buf), "%s", v);
	for (char *t = strtok_r(buf, ", \t", &save); t; t = strtok_r(NULL, ", \t", &save)) {
		double d;

		if (k == TIERD_MAX_ALLOW) {
			snprintf(why, whylen, "more than %d entries", TIERD_MAX_ALLOW);
			return -EINVAL;
		}
		if (parse_number(t, 0, UINT32_MAX - 1, true, &d) == 0) {
			ids[k++] = (uint32_t)d;
		} else if (users) {
			struct passwd *pw = getpwnam(t);

			if (!pw) {
				snprintf(why, whylen, "no user '%s'", t);
				return -EINVAL;
			}
			ids[k++] = pw->pw_uid;
		} else {
			struct group *gr = getgrnam(t);

			if (!gr) {
				snprintf(why, whylen, "no group '%s'", t);
				return -EINVAL;
			}
			ids[k++] = gr->gr_gid;
		}
		printed += (size_t)snprintf(NULL, 0, "%s%" PRIu32, k > 1 ? ", " : "", ids[k - 1]);
	}
	if (printed > LINE_MAX_BYTES) {
		snprintf(why, whylen, "the list prints as %zu bytes, more than a line holds (%d): "
			 "use fewer entries, or a group", printed, LINE_MAX_BYTES);
		return -EINVAL;
	}
	*n = k;
	return 0;
}

static bool parse_bool(const char *v, bool *out)
{
	static const char *const yes[] = { "yes", "true", "on", "1" }, *const no[] = { "no", "false",
										       "off", "0" };

	for (size_t i = 0; i < 4; i++) {
		if (strcasecmp(v, yes[i]) == 0)
			return (*out = true);
		if (strcasecmp(v, no[i]) == 0)
			return !(*out = false);
	}
	return false;
}

_Static_assert(INI_SECTION_MAX - sizeof("policy.") < sizeof(((struct tierd_policy_kv *)0)->policy),
	       "a [policy.NAME] libinih keeps whole fits in tierd_policy_kv");

/* [policy.NAME] key = value: kept as text; the policy itself checks them when it starts (tierd
 * --check-config starts it), since only it knows its parameters. */
static int set_policy_param(struct tierd_config *cfg, const char *policy, const char *name,
			    const char *value, char *why, size_t whylen)
{
	struct tierd_policy_kv *kv = NULL;

	/* An empty key ("= 5") would be printed by config_dump() as an indented line, which
	 * reads back as a continuation: refused like any nameless key. */
	if (!name[0]) {
		snprintf(why, whylen, "a policy parameter needs a name");
		return -EINVAL;
	}
	/* The policy's name is also kept by libinih as part of [policy.NAME]: no longer than that. */
	if (!policy[0] || strlen("policy.") + strlen(policy) >= INI_SECTION_MAX ||
	    strlen(name) >= sizeof(kv->key) || strlen(value) >= sizeof(kv->value)) {
		snprintf(why, whylen, "policy name, key or value too long (%zu, %zu, %zu bytes at most)",
			 INI_SECTION_MAX - 1 - strlen("policy."), sizeof(kv->key) - 1,
			 sizeof(kv->value) - 1);
		return -EINVAL;
	}
	for (unsigned i = 0; i < cfg->n_policy_params && !kv; i++)
		if (!strcmp(cfg->policy_params[i].policy, policy) && !strcmp(cfg->policy_params[i].key, name))
			kv = &cfg->policy_params[i];
	if (!kv) {
		if (cfg->n_policy_params == TIERD_MAX_POLICY_PARAMS) {
			snprintf(why, whylen, "more than %d policy parameters", TIERD_MAX_POLICY_PARAMS);
			return -EINVAL;
		}
		kv = &cfg->policy_params[cfg->n_policy_params++];
	}
	snprintf(kv->policy, sizeof(kv->policy), "%s", policy);
	snprintf(kv->key, sizeof(kv->key), "%s", name);
	snprintf(kv->value, sizeof(kv->value), "%s", value);
	return 0;
}

/* Copies a text value whose length the caller checked against the field. Not snprintf: after the
 * line-length check GCC sees a bound on the value's length (not the field's check) and, at some
 * optimisation levels, warns that the copy may be cut. */
static void set_text(char *field, const char *value)
{
	memcpy(field, value, strlen(value) + 1);
}

/* An absolute path (or, when allowed, empty) that fits the field of `size` bytes. */
static int set_path(char *field, size_t size, const char *value, bool empty_ok, char *why,
		    size_t whylen)
{
	if ((value[0] ? value[0] != '/' : !empty_ok) || strlen(value) >= size) {
		snprintf(why, whylen, "'%s' is not %san absolute path shorter than %zu bytes", value,
			 empty_ok ? "empty or " : "", size);
		return -EINVAL;
	}
	set_text(field, value);
	return 0;
}

int config_set(struct tierd_config *cfg, const char *section, const char *name, const char *value,
	       char *why, size_t whylen)
{
	const struct key *k = key_find(section, name);
	char *p = (char *)cfg + (k ? k->off : 0);
	double d;
	bool b;
	int r;

	/* "key =;x" gives the value ";x", but config_dump() writes "key = ;x", where " ;" starts a
	 * comment: such a value could not be read back. Nothing legitimate starts with ';'. */
	if (value[0] == ';') {
		snprintf(why, whylen, "'%s' starts with ';', which after a space starts a comment", value);
		return -EINVAL;
	}
	if (!strncmp(section, "policy.", 7))
		return set_policy_param(cfg, section + 7, name, value, why, whylen);
	if (!k) {
		snprintf(why, whylen, "unknown key (config/tierd.conf lists every key)");
		return -ENOENT;
	}
	/* The command line has no line length; a file's "key=value" is two bytes shorter. */
	if (strlen(name) + strlen(" = ") + strlen(value) > LINE_MAX_BYTES) {
		snprintf(why, whylen, "'%.32s...' is too long: \"%s = value\" must fit in a line (%d bytes)",
			 value, name, LINE_MAX_BYTES);
		return -EINVAL;
	}
	switch (k->type) {
	case K_U32:
	case K_BYTES:
	case K_FLOAT:
		r = parse_number(value, k->min, k->max, k->type != K_FLOAT, &d);
		if (r == -ERANGE) {
			snprintf(why, whylen, "'%s' is out of range [%g, %g]", value, k->min, k->max);
			return -EINVAL;
		}
		if (r < 0) {
			snprintf(why, whylen, "'%s' is not %s", value,
				 k->type == K_FLOAT ? "a number" : "a whole number");
			return -EINVAL;
		}
		if (k->type == K_U32)
			*(uint32_t *)p = (uint32_t)d;
		else if (k->type == K_BYTES)
			*(uint64_t *)p = (uint64_t)d * k->unit;
		else
			*(float *)p = (float)d;
		return 0;
	case K_BOOL:
		if (!parse_bool(value, &b)) {
			snprintf(why, whylen, "'%s' is not yes or no", value);
			return -EINVAL;
		}
		*(bool *)p = b;
		return 0;
	case K_PATH:
		return set_path(p, sizeof(cfg->socket_path), value, false, why, whylen);
	case K_MODE:
		if (strcmp(value, "zap") && strcmp(value, "mapped")) {
			snprintf(why, whylen, "'%s' is not zap or mapped", value);
			return -EINVAL;
		}
		*(enum migrate_how *)p = strcmp(value, "zap") == 0 ? MIGRATE_ZAPPED : MIGRATE_MAPPED;
		return 0;
	case K_REG:
		if (strcmp(value, "window") && strcmp(value, "whole")) {
			snprintf(why, whylen, "'%s' is not window or whole", value);
			return -EINVAL;
		}
		*(bool *)p = strcmp(value, "whole") == 0;
		return 0;
	case K_USERS:
		return parse_ids(value, true, cfg->allow_uids, &cfg->n_allow_uids, why, whylen);
	case K_GROUPS:
		return parse_ids(value, false, cfg->allow_gids, &cfg->n_allow_gids, why, whylen);
	case K_NAME:
		/* A built-in's name, a module's name in module_dir, or an absolute .so path. */
		if (!value[0] || strlen(value) >= sizeof(cfg->policy_name) ||
		    (value[0] != '/' && strpbrk(value, "/ \t"))) {
			snprintf(why, whylen, "'%s' is not a policy name or an absolute path shorter "
				 "than %zu bytes", value, sizeof(cfg->policy_name));
			return -EINVAL;
		}
		set_text(p, value);
		return 0;
	case K_PMODE: {
		static const char *const names[] = { "enforce", "advise", "observe" };

		for (int i = 0; i < 3; i++)
			if (!strcmp(value, names[i])) {
				*(enum tierd_mode *)p = (enum tierd_mode)i;
				return 0;
			}
		snprintf(why, whylen, "'%s' is not enforce, advise or observe", value);
		return -EINVAL;
	}
	case K_FILE:
		return set_path(p, sizeof(cfg->metrics_textfile), value, true, why, whylen); /* empty: off */
	case K_OCTAL: {
		char *end;
		unsigned long v;

		errno = 0;
		v = strtoul(value, &end, 8);
		if (errno || end == value || *end || value[0] < '0' || value[0] > '7' || v > k->max) {
			snprintf(why, whylen, "'%s' is not an octal mode from 0 to %04o", value,
				 (unsigned)k->max);
			return -EINVAL;
		}
		*(uint32_t *)p = (uint32_t)v;
		return 0;
	}
	case K_GROUP: {
		uint32_t ids[TIERD_MAX_ALLOW];
		unsigned n = 0;

		if (!value[0]) { /* empty: the socket keeps tierd's group */
			*(uint32_t *)p = TIERD_NO_GROUP;
			return 0;
		}
		r = parse_ids(value, false, ids, &n, why, whylen);
		if (r < 0)
			return r;
		if (n != 1) {
			snprintf(why, whylen, "'%s' is not one group", value);
			return -EINVAL;
		}
		*(uint32_t *)p = ids[0];
		return 0;
	}
	case K_DIR:
		return set_path(p, sizeof(cfg->policy_dir), value, false, why, whylen);
	}
	return -EINVAL;
}

const char *config_mode_name(enum tierd_mode mode)
{
	return mode == MODE_ADVISE ? "advise" : mode == MODE_OBSERVE ? "observe" : "enforce";
}

int config_validate(const struct tierd_config *cfg, char *why, size_t whylen)
{
	if (!(cfg->low_wm < cfg->high_wm)) {
		snprintf(why, whylen, "tiers.low_watermark (%g) must be below high_watermark (%g)",
			 (double)cfg->low_wm, (double)cfg->high_wm);
		return -EINVAL;
	}
	return 0;
}

/* ---- files ------------------------------------------------------------------------------------ */

/* A valid file has at most 6 sections and 24 keys of the table plus TIERD_MAX_POLICY_PARAMS
 * policy parameters (each maybe in its own [policy.NAME]); a file with more is refused rather
 * than checked for duplicates only partly. */
#define MAX_SECTIONS_SEEN 64
#define MAX_KEYS_SEEN 64
/* A configuration is a few KiB: a file this large is a mistake (a log, a device), not read. */
#define CONFIG_MAX_BYTES (1u << 20)

/*
 * One file's parse. libinih reads it line by line through read_line() and calls on_key() for each
 * key. Debian's libinih calls back for keys only (its build has no INI_CALL_HANDLER_ON_NEW_SECTION
 * and numbers no lines), so read_line() also classifies each line as libinih will — blank or
 * comment, continuation of the last value, [section] header, or its business (key or syntax
 * error) — to number lines and to see section headers; on_key() checks that libinih put each key
 * in the section this mirror says.
 */
struct parse {
	const char *name;       /* the file, for messages */
	const char *next, *end; /* text not handed to libinih yet */
	unsigned line;          /* lines handed out: the one libinih is working on */
	char section[INI_SECTION_MAX];
	bool name_set;          /* the last key had a name: libinih continues it on an indented line */
	bool continuation;      /* the current line is such a continuation */

	struct tierd_config *cfg;
	char *err;
	size_t errlen;
	unsigned fail_line;     /* the first error this code found (libinih counts its own), or 0 */

	unsigned nsections;
	struct {
		char name[INI_SECTION_MAX];
		unsigned line;
	} sections[MAX_SECTIONS_SEEN];
	unsigned nkeys;
	struct {
		char section[INI_SECTION_MAX];
		char name[INI_MAX_LINE];
	} keys[MAX_KEYS_SEEN];
};

/* Records the first error (a later one is a consequence or just noise). Returns 0, libinih's
 * "stop" for the handler. */
static int __attribute__((format(printf, 2, 3))) fail(struct parse *ps, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (ps->fail_line)
		return 0;
	ps->fail_line = ps->line;
	n = snprintf(ps->err, ps->errlen, "%s:%u: ", ps->name, ps->line);
	if (n >= 0 && (size_t)n < ps->errlen) {
		va_start(ap, fmt);
		vsnprintf(ps->err + n, ps->errlen - (size_t)n, fmt, ap);
		va_end(ap);
	}
	return 0;
}

/* A [section] header: libinih will make `name` the current section. Refuses a name libinih would
 * cut, and a header this file already had (a drop-in may repeat the main file's sections: that is
 * what drop-ins are for; one file saying [migration] twice is an edit gone wrong). */
static int on_section(struct parse *ps, const char *name, size_t len)
{
	if (len >= INI_SECTION_MAX)
		return fail(ps, "[%.*s...] section name longer than %d bytes", INI_SECTION_MAX - 1, name,
			    INI_SECTION_MAX - 1);
	memcpy(ps->section, name, len);
	ps->section[len] = '\0';
	for (unsigned i = 0; i < ps->nsections; i++)
		if (strcmp(ps->sections[i].name, ps->section) == 0)
			return fail(ps, "[%s] appears twice in this file (first at line %u)", ps->section,
				    ps->sections[i].line);
	if (ps->nsections == MAX_SECTIONS_SEEN)
		return fail(ps, "more than %d sections in one file", MAX_SECTIONS_SEEN);
	snprintf(ps->sections[ps->nsections].name, INI_SECTION_MAX, "%s", ps->section);
	ps->sections[ps->nsections++].line = ps->line;
	return 1;
}

/* What libinih will make of `line` (ini.c, ini_parse_stream), as far as sections go. Returns 0
 * when the line must not be parsed (an error was recorded). */
static int classify(struct parse *ps, const char *line)
{
	const char *s = line, *end = line + strlen(line);
	bool was_space = false;

	ps->continuation = false;
	/* A UTF-8 byte order mark is skipped on the first line. */
	if (ps->line == 1 && strncmp(s, "\xEF\xBB\xBF", 3) == 0)
		s += 3;
	while (end > s && isspace((unsigned char)end[-1]))
		end--;
	while (s < end && isspace((unsigned char)*s))
		s++;
	if (s == end || *s == ';' || *s == '#')
		return 1; /* blank or comment: changes nothing */
	if (ps->name_set && s > line) {
		ps->continuation = true;
		return 1;
	}
	if (*s != '[')
		return 1; /* a key (on_key sees it) or libinih's syntax error */
	/* The name ends at the first ']', unless an inline comment (" ;") comes first: then libinih
	 * reports the line as a syntax error. */
	for (const char *p = s + 1; p < end; p++) {
		if (*p == ']') {
			ps->name_set = false;
			return on_section(ps, s + 1, (size_t)(p - (s + 1)));
		}
		if (was_space && *p == ';')
			break;
		was_space = isspace((unsigned char)*p);
	}
	return 1;
}

/* libinih's reader: one line per call, counted and classified. A line longer than libinih's
 * buffer is an error instead of being split in two, and so is a NUL byte (libinih would end the
 * line there and read what follows it as part of the value). */
static char *read_line(char *str, int num, void *stream)
{
	struct parse *ps = stream;
	const char *eol;
	size_t len;

	if (ps->fail_line || ps->next == ps->end)
		return NULL;
	eol = memchr(ps->next, '\n', (size_t)(ps->end - ps->next));
	len = eol ? (size_t)(eol - ps->next) + 1 : (size_t)(ps->end - ps->next);
	ps->line++;
	if (num < 2 || len > (size_t)num - 1) {
		fail(ps, "line longer than %d bytes", num - 2);
		return NULL;
	}
	if (memchr(ps->next, '\0', len)) {
		fail(ps, "NUL byte in the line");
		return NULL;
	}
	memcpy(str, ps->next, len);
	str[len] = '\0';
	ps->next += len;
	return classify(ps, str) ? str : NULL;
}

static int on_key(void *user, const char *section, const char *name, const char *value)
{
	struct parse *ps = user;
	char why[256];
	int r;

	ps->name_set = name[0] != '\0';
	if (ps->fail_line)
		return 0;
	if (strcmp(section, ps->section) != 0)
		/* classify() and libinih disagree about this file: refuse it rather than check
		 * duplicates against the wrong section. */
		return fail(ps, "%s.%s: cannot tell which section this line is in", section, name);
	if (ps->continuation)
		/* libinih would hand the line over as a second value of the key above. */
		return fail(ps, "%s.%s: an indented line continues the value above: not supported",
			    section, name);
	for (unsigned i = 0; i < ps->nkeys; i++)
		if (strcmp(ps->keys[i].section, section) == 0 && strcmp(ps->keys[i].name, name) == 0)
			return fail(ps, "%s.%s: set twice in one file", section, name);
	if (ps->nkeys == MAX_KEYS_SEEN)
		return fail(ps, "more than %d keys in one file", MAX_KEYS_SEEN);
	snprintf(ps->keys[ps->nkeys].section, INI_SECTION_MAX, "%s", section);
	snprintf(ps->keys[ps->nkeys++].name, INI_MAX_LINE, "%s", name);
	r = config_set(ps->cfg, section, name, value, why, sizeof(why));
	if (r < 0)
		return fail(ps, "%s.%s: %s", section, name, why);
	return 1;
}

int config_parse(const char *name, const char *text, size_t len, struct tierd_config *cfg, char *err,
		 size_t errlen)
{
	struct tierd_config *work = malloc(sizeof(*work));
	struct parse *ps = calloc(1, sizeof(*ps));
	int r;

	if (!work || !ps) {
		free(work);
		free(ps);
		snprintf(err, errlen, "%s: %s", name, strerror(ENOMEM));
		return -ENOMEM;
	}
	*work = *cfg;
	*ps = (struct parse){ .name = name, .next = text, .end = text + len, .cfg = work, .err = err,
			      .errlen = errlen };
	r = ini_parse_stream(read_line, ps, on_key, ps);
	/* libinih returns the first line with an error of its own or a handler's: an earlier syntax
	 * error than ours is the one to report. */
	if (r > 0 && (!ps->fail_line || (unsigned)r < ps->fail_line)) {
		snprintf(err, errlen, "%s:%d: not a [section], key = value, or comment", name, r);
		r = -EINVAL;
	} else if (ps->fail_line) {
		r = -EINVAL;
	} else if (r < 0) {
		snprintf(err, errlen, "%s: cannot parse (%d)", name, r);
		r = -EINVAL;
	} else {
		*cfg = *work;
	}
	free(ps);
	free(work);
	return r;
}

/* Reads the whole file (a pipe or /dev/stdin as well: no st_size). */
static int read_file(int fd, char **ret, size_t *len)
{
	size_t cap = 8192, n = 0;
	char *buf = malloc(cap);

	if (!buf)
		return -ENOMEM;
	for (;;) {
		ssize_t k;

		if (n == cap) {
			char *bigger;

			if (cap > CONFIG_MAX_BYTES) {
				free(buf);
				return -EFBIG;
			}
			bigger = realloc(buf, 2 * cap);
			if (!bigger) {
				free(buf);
				return -ENOMEM;
			}
			buf = bigger;
			cap *= 2;
		}
		k = read(fd, buf + n, cap - n);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0) {
			int e = -errno;

			free(buf);
			return e;
		}
		if (k == 0)
			break;
		n += (size_t)k;
	}
	*ret = buf;
	*len = n;
	return 0;
}

static int load_file(const char *path, bool must_exist, struct tierd_config *cfg, char *err,
		     size_t errlen)
{
	char *text = NULL;
	size_t len = 0;
	int fd, r;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		r = -errno;
		if (r == -ENOENT && !must_exist)
			return 0;
		snprintf(err, errlen, "%s: %s", path, strerror(-r));
		return r;
	}
	r = read_file(fd, &text, &len);
	close(fd);
	if (r == -EFBIG) {
		snprintf(err, errlen, "%s: larger than %u bytes: not a configuration file", path,
			 CONFIG_MAX_BYTES);
		return r;
	}
	if (r < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(-r));
		return r;
	}
	r = config_parse(path, text, len, cfg, err, errlen);
	free(text);
	return r;
}

static int by_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int config_load(const char *path, bool must_exist, struct tierd_config *cfg, char *err, size_t errlen)
{
	struct tierd_config *work = malloc(sizeof(*work));
	char dir[4096], file[4096 + 256], *names[256];
	size_t n = 0;
	DIR *d;
	int r;

	if (!work)
		return -ENOMEM;
	*work = *cfg;
	r = load_file(path, must_exist, work, err, errlen);
	snprintf(dir, sizeof(dir), "%s.d", path);
	d = r < 0 ? NULL : opendir(dir);
	if (d) {
		struct dirent *de;

		while ((de = readdir(d)) && n < sizeof(names) / sizeof(names[0])) {
			size_t l = strlen(de->d_name);

			if (de->d_name[0] != '.' && l > 5 && strcmp(de->d_name + l - 5, ".conf") == 0) {
				/* Checked here: qsort() would hand a NULL to strcmp(). */
				names[n] = strdup(de->d_name);
				if (!names[n]) {
					r = -ENOMEM;
					snprintf(err, errlen, "%s: %s", dir, strerror(ENOMEM));
					break;
				}
				n++;
			}
		}
		closedir(d);
		qsort(names, n, sizeof(names[0]), by_name);
		for (size_t i = 0; i < n && r >= 0; i++) {
			snprintf(file, sizeof(file), "%s/%s", dir, names[i]);
			r = load_file(file, true, work, err, errlen);
		}
		for (size_t i = 0; i < n; i++)
			free(names[i]);
	}
	if (r >= 0) {
		char why[256];

		r = config_validate(work, why, sizeof(why));
		if (r < 0)
			snprintf(err, errlen, "%s: %s", path, why);
	}
	if (r >= 0)
		*cfg = *work;
	free(work);
	return r < 0 ? r : 0;
}

/* The shortest text that config_set() reads back as the same float: %g's 6 digits are not always
 * enough (low_watermark 0.8499999 printed as 0.85 would read back equal to high_watermark 0.85
 * and fail config_validate), and 9 always are. */
static void dump_float(FILE *f, float v)
{
	char buf[32];

	for (int digits = 6; digits <= 9; digits++) {
		snprintf(buf, sizeof(buf), "%.*g", digits, (double)v);
		if ((float)strtod(buf, NULL) == v)
			break;
	}
	fputs(buf, f);
}

static void dump_ids(FILE *f, const uint32_t *ids, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		fprintf(f, "%s%" PRIu32, i ? ", " : "", ids[i]);
}

void config_dump(const struct tierd_config *cfg, FILE *f)
{
	const char *section = "";

	for (size_t i = 0; i < NKEYS; i++) {
		const struct key *k = &keys[i];
		const char *p = (const char *)cfg + k->off;

		if (strcmp(section, k->section)) {
			fprintf(f, "%s[%s]\n", i ? "\n" : "", k->section);
			section = k->section;
		}
		fprintf(f, "%s = ", k->name);
		switch (k->type) {
		case K_U32:
			fprintf(f, "%" PRIu32, *(const uint32_t *)p);
			break;
		case K_BYTES:
			fprintf(f, "%" PRIu64, *(const uint64_t *)p / k->unit);
			break;
		case K_FLOAT:
			dump_float(f, *(const float *)p);
			break;
		case K_BOOL:
			fputs(*(const bool *)p ? "yes" : "no", f);
			break;
		case K_PATH:
		case K_NAME:
		case K_DIR:
		case K_FILE:
			fputs(p, f);
			break;
		case K_MODE:
			fputs(*(const enum migrate_how *)p == MIGRATE_ZAPPED ? "zap" : "mapped", f);
			break;
		case K_REG:
			fputs(*(const bool *)p ? "whole" : "window", f);
			break;
		case K_PMODE:
			fputs(config_mode_name(*(const enum tierd_mode *)p), f);
			break;
		case K_USERS:
			dump_ids(f, cfg->allow_uids, cfg->n_allow_uids);
			break;
		case K_GROUPS:
			dump_ids(f, cfg->allow_gids, cfg->n_allow_gids);
			break;
		case K_OCTAL:
			fprintf(f, "%04" PRIo32, *(const uint32_t *)p);
			break;
		case K_GROUP:
			if (*(const uint32_t *)p != TIERD_NO_GROUP)
				fprintf(f, "%" PRIu32, *(const uint32_t *)p);
			break;
		}
		fputc('\n', f);
	}
	for (unsigned i = 0; i < cfg->n_policy_params; i++) {
		const struct tierd_policy_kv *kv = &cfg->policy_params[i];

		if (!i || strcmp(kv->policy, cfg->policy_params[i - 1].policy))
			fprintf(f, "\n[policy.%s]\n", kv->policy);
		fprintf(f, "%s = %s\n", kv->key, kv->value);
	}
}
