/* SPDX-License-Identifier: MIT */
/* Configuration keys, their defaults, and reading them from INI files with libinih. */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <grp.h>
#include <ini.h>
#include <inttypes.h>
#include <math.h>
#include <pwd.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

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
		.max_attach_per_client = 64,
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
	};
	snprintf(cfg->socket_path, sizeof(cfg->socket_path), "%s", TIERD_DEFAULT_SOCKET);
}


enum key_type { K_U32, K_BYTES, K_FLOAT, K_BOOL, K_PATH, K_MODE, K_REG, K_USERS, K_GROUPS, K_NAME,
		K_DIR, K_FILE, K_PMODE };

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
	{ "sampling", "epoch_ms", K_U32, F(epoch_ms), 1, 60000, 0 },
	{ "sampling", "max_windows", K_U32, F(max_windows), 0, 4096, 0 },
	{ "sampling", "window_kib", K_BYTES, F(window_bytes), 4, 1 << 20, 1024 },
	{ "sampling", "max_regions", K_U32, F(max_regions), 10, 65536, 0 },
	{ "sampling", "hot_threshold", K_FLOAT, F(hot_threshold), 0.001, 1, 0 },
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

/* [policy.NAME] key = value: kept as text; the policy itself checks them when it starts (tierd
 * --check-config starts it), since only it knows its parameters. */
static int set_policy_param(struct tierd_config *cfg, const char *policy, const char *name,
			    const char *value, char *why, size_t whylen)
{
	struct tierd_policy_kv *kv = NULL;

	if (!policy[0] || strlen(policy) >= sizeof(kv->policy) || strlen(name) >= sizeof(kv->key) ||
	    strlen(value) >= sizeof(kv->value)) {
		snprintf(why, whylen, "policy name, key or value too long (%zu, %zu, %zu bytes at most)",
			 sizeof(kv->policy) - 1, sizeof(kv->key) - 1, sizeof(kv->value) - 1);
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

int config_set(struct tierd_config *cfg, const char *section, const char *name, const char *value,
	       char *why, size_t whylen)
{
	const struct key *k = key_find(section, name);
	char *p = (char *)cfg + (k ? k->off : 0);
	double d;
	bool b;
	int r;

	if (!strncmp(section, "policy.", 7))
		return set_policy_param(cfg, section + 7, name, value, why, whylen);
	if (!k) {
		snprintf(why, whylen, "unknown key (config/tierd.conf lists every key)");
		return -ENOENT;
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
		if (value[0] != '/' || strlen(value) >= sizeof(cfg->socket_path)) {
			snprintf(why, whylen, "'%s' is not an absolute path shorter than %zu bytes", value,
				 sizeof(cfg->socket_path));
			return -EINVAL;
		}
		snprintf(p, sizeof(cfg->socket_path), "%s", value);
		return 0;
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
		snprintf(p, sizeof(cfg->policy_name), "%s", value);
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
		/* Empty: off. */
		if ((value[0] && value[0] != '/') || strlen(value) >= sizeof(cfg->metrics_textfile)) {
			snprintf(why, whylen, "'%s' is not empty or an absolute path shorter than %zu bytes",
				 value, sizeof(cfg->metrics_textfile));
			return -EINVAL;
		}
		snprintf(p, sizeof(cfg->metrics_textfile), "%s", value);
		return 0;
	case K_DIR:
		if (value[0] != '/' || strlen(value) >= sizeof(cfg->policy_dir)) {
			snprintf(why, whylen, "'%s' is not an absolute path shorter than %zu bytes", value,
				 sizeof(cfg->policy_dir));
			return -EINVAL;
		}
		snprintf(p, sizeof(cfg->policy_dir), "%s", value);
		return 0;
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

#define MAX_KEYS_SEEN 64

struct reader {
	FILE *f;
	const char *path;
	unsigned line;
	bool too_long;
};

struct parse {
	struct reader rd;
	struct tierd_config *cfg;
	char *err;
	size_t errlen;
	bool failed;
	unsigned nseen;
	char seen[MAX_KEYS_SEEN][64];
};

/* libinih's reader: one line per call, counted (Debian's build reports no line numbers), and a
 * line longer than libinih's buffer is an error instead of being split into two lines. */
static char *read_line(char *str, int num, void *stream)
{
	struct reader *rd = stream;
	size_t len;
	int c;

	if (rd->too_long || !fgets(str, num, rd->f))
		return NULL;
	rd->line++;
	len = strlen(str);
	if (len == (size_t)num - 1 && str[len - 1] != '\n' && (c = fgetc(rd->f)) != EOF) {
		ungetc(c, rd->f);
		rd->too_long = true;
		return NULL;
	}
	return str;
}

static int on_key(void *user, const char *section, const char *name, const char *value)
{
	struct parse *ps = user;
	char why[256], id[64];
	int r;

	snprintf(id, sizeof(id), "%s.%s", section, name);
	for (unsigned i = 0; i < ps->nseen; i++)
		if (strcmp(ps->seen[i], id) == 0) {
			snprintf(ps->err, ps->errlen, "%s:%u: %s: set twice in one file", ps->rd.path,
				 ps->rd.line, id);
			ps->failed = true;
			return 0;
		}
	if (ps->nseen < MAX_KEYS_SEEN)
		snprintf(ps->seen[ps->nseen++], sizeof(ps->seen[0]), "%s", id);
	r = config_set(ps->cfg, section, name, value, why, sizeof(why));
	if (r < 0) {
		snprintf(ps->err, ps->errlen, "%s:%u: %s: %s", ps->rd.path, ps->rd.line, id, why);
		ps->failed = true;
		return 0; /* stop */
	}
	return 1;
}

static int load_file(const char *path, bool must_exist, struct tierd_config *cfg, char *err,
		     size_t errlen)
{
	struct parse *ps;
	int r;

	ps = calloc(1, sizeof(*ps));
	if (!ps)
		return -ENOMEM;
	ps->rd = (struct reader){ .f = fopen(path, "re"), .path = path };
	ps->cfg = cfg;
	ps->err = err;
	ps->errlen = errlen;
	if (!ps->rd.f) {
		r = -errno;
		if (r == -ENOENT && !must_exist)
			r = 0;
		else
			snprintf(err, errlen, "%s: %s", path, strerror(-r));
		free(ps);
		return r;
	}
	r = ini_parse_stream(read_line, &ps->rd, on_key, ps);
	if (ps->rd.too_long) {
		snprintf(err, errlen, "%s:%u: line longer than %d bytes", path, ps->rd.line,
			 INI_MAX_LINE - 2);
		r = -EINVAL;
	} else if (ps->failed) {
		r = -EINVAL;
	} else if (r > 0) {
		snprintf(err, errlen, "%s:%d: not a [section], key = value, or comment", path, r);
		r = -EINVAL;
	} else if (r < 0) {
		snprintf(err, errlen, "%s: cannot parse (%d)", path, r);
		r = -EINVAL;
	} else if (ferror(ps->rd.f)) {
		snprintf(err, errlen, "%s: read error", path);
		r = -EIO;
	}
	fclose(ps->rd.f);
	free(ps);
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

			if (de->d_name[0] != '.' && l > 5 && strcmp(de->d_name + l - 5, ".conf") == 0)
				names[n++] = strdup(de->d_name);
		}
		closedir(d);
		qsort(names, n, sizeof(names[0]), by_name);
		for (size_t i = 0; i < n && r >= 0; i++) {
			if (!names[i]) {
				r = -ENOMEM;
				break;
			}
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
			fprintf(f, "%g", (double)*(const float *)p);
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
