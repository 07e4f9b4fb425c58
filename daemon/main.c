/* SPDX-License-Identifier: MIT */
/* tierd entry point: options, feature probe, then the manager's loop. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../lib/uffd.h"
#include "host.h"
#include "log.h"
#include "config.h"
#include "manager.h"
#include "syscheck.h"

static void help(void)
{
	struct tierd_config defaults;

	tierd_config_defaults(&defaults);
	printf("Usage: tierd [OPTIONS]\n"
	       "Keeps the hot pages of applications' shared memory on the fast NUMA node.\n\n"
	       "  -s, --socket PATH          listen on PATH (default %s; a socket passed by\n"
	       "                             systemd takes precedence)\n"
	       "      --epoch-ms N           sampling epoch (default 100)\n"
	       "      --max-windows N        sampling windows armed per epoch (default 32)\n"
	       "      --window-kib N         4K shmem window size (default 32)\n"
	       "      --max-regions N        sampling regions per segment (default 256)\n"
	       "      --hot-threshold F      region score counted as hot, 0..1 (default 0.25)\n"
	       "      --heartbeat-ms N       client ping interval (default 250)\n"
	       "      --shmem-registration window|whole\n"
	       "                             register 4K shmem per window (default) or whole\n"
	       "      --allow-uid UID        accept clients of this uid (repeatable; default: any\n"
	       "                             uid that the socket's mode lets connect)\n"
	       "      --allow-gid GID        accept clients of this gid (repeatable)\n"
	       "      --no-migrate           track only, never move pages\n"
	       "      --fast-budget-mib N    tracked memory allowed on the fast tier (default:\n"
	       "                             90%% of the fast tier's memory)\n"
	       "      --rate-limit-mbps N    migration rate cap (default 512)\n"
	       "      --migrate-every N      migration pass every N epochs (default 5)\n"
	       "      --reserve-mib N        free memory per node migration never uses (default 64)\n"
	       "      --migrate-mode zap|mapped\n"
	       "                             move pages while clients have them zapped (default),\n"
	       "                             or while mapped (MPOL_MF_MOVE_ALL, needs CAP_SYS_NICE)\n"
	       "      --policy NAME|PATH     placement policy: hotness (default), lru, none, or a\n"
	       "                             module NAME.so in --policy-dir / an absolute path\n"
	       "      --policy-dir DIR       policy modules' directory (root-owned, not group- or\n"
	       "                             world-writable; default %s)\n"
	       "      --policy-param K=V     a parameter of the policy (repeatable)\n"
	       "      --policy-seed N        seed for policies that randomise (default 0)\n"
	       "      --decision-log FILE    write every decision of the policy to FILE\n"
	       "      --record FILE          record the policy's input from the start (tierd-sim\n"
	       "                             replays it); --record-max-mib N caps it (default 256)\n"
	       "      --check-system         pre-flight report: one line per check (OK, WARN or\n"
	       "                             FAIL, what was found, the fix); exit 1 on a FAIL\n"
	       "      --config PATH          configuration file (default %s, and PATH.d/*.conf);\n"
	       "                             options given here override it\n"
	       "      --check-config         print the effective configuration and exit (2 when\n"
	       "                             it is invalid, with file:line and the reason)\n"
	       "  -v, --verbose              debug logging\n"
	       "  -h, --help                 this help\n",
	       TIERD_DEFAULT_SOCKET, defaults.policy_dir, TIERD_DEFAULT_CONFIG);
}

static int parse_u32(const char *s, const char *opt, uint32_t min, uint32_t max, uint32_t *out)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || *s == '\0' || *end != '\0' || v < min || v > max) {
		fprintf(stderr, "tierd: %s: '%s' is not a number in [%u, %u]\n", opt, s, min, max);
		return -EINVAL;
	}
	*out = (uint32_t)v;
	return 0;
}

/* What UFFDIO_API offers here: the one check that needs a kernel call, not a file. */
static void probe_uffd(const char *dev_path, struct syscheck_uffd_probe *p)
{
	struct uffd_handshake hs;
	int devfd = -1;
	struct uffd_ops ops = uffd_ops_real(&devfd);
	int fd = uffd_negotiate(&ops, 0, 0, &hs);

	if (fd == -EPERM) {
		/* userfaultfd(2) is refused to this user (vm.unprivileged_userfaultfd=0): clients
		 * then get their uffds from the device, so ask the kernel through it. */
		devfd = open(dev_path, O_RDWR | O_CLOEXEC);
		if (devfd >= 0) {
			fd = uffd_negotiate(&ops, 0, 0, &hs);
			p->via_dev = true;
			close(devfd);
		}
	}
	if (fd < 0) {
		p->err = fd;
		return;
	}
	close(fd);
	p->offered = hs.offered;
	p->second_call_refused = hs.second_call_refused;
}

/*
 * The pre-flight report (daemon/syscheck.h). It reads ROOT/proc and ROOT/sys; ROOT comes from
 * --sysfs-root (tests: a fixture tree holding both), which must therefore end in "/sys".
 * Returns the exit status: 0 when nothing FAILs, 1 otherwise, 2 on a usage error.
 */
static int check_system(const struct tierd_config *cfg)
{
	struct syscheck_uffd_probe probe = { 0 };
	struct syscheck *sc = NULL;
	size_t len = strlen(cfg->sysfs_root);
	char root[PATH_MAX];
	int r;

	if (len < 4 || strcmp(cfg->sysfs_root + len - 4, "/sys") != 0 || len - 4 >= sizeof(root)) {
		fprintf(stderr, "tierd: --check-system reads ROOT/proc and ROOT/sys: --sysfs-root must "
				"name ROOT/sys, not '%s'\n",
			cfg->sysfs_root);
		return 2;
	}
	snprintf(root, sizeof(root), "%.*s", (int)(len - 4), cfg->sysfs_root);
	probe_uffd(cfg->uffd_dev_path, &probe);
	r = syscheck_new(&sc);
	if (r >= 0)
		r = syscheck_run(sc, root, &probe);
	if (r >= 0)
		r = syscheck_print(sc, stdout);
	if (r >= 0)
		r = syscheck_worst(sc) == SYSCHECK_FAIL ? 1 : 0;
	else
		fprintf(stderr, "tierd: --check-system: %s\n", strerror(-r));
	syscheck_free(sc);
	return r < 0 ? 1 : r;
}

/* Long options that set a configuration key (config/tierd.conf): the value goes through the same
 * table as the file's, so it means the same thing. */
static const struct {
	const char *option, *section, *key, *fixed; /* fixed: the value, for flags */
} cli_keys[] = {
	{ "socket", "daemon", "socket", NULL },
	{ "epoch-ms", "sampling", "epoch_ms", NULL },
	{ "max-windows", "sampling", "max_windows", NULL },
	{ "window-kib", "sampling", "window_kib", NULL },
	{ "max-regions", "sampling", "max_regions", NULL },
	{ "hot-threshold", "sampling", "hot_threshold", NULL },
	{ "heartbeat-ms", "clients", "heartbeat_ms", NULL },
	{ "shmem-registration", "clients", "shmem_registration", NULL },
	{ "no-migrate", "migration", "enabled", "no" },
	{ "fast-budget-mib", "tiers", "fast_budget_mib", NULL },
	{ "rate-limit-mbps", "migration", "rate_limit_mbps", NULL },
	{ "migrate-every", "migration", "every_epochs", NULL },
	{ "reserve-mib", "tiers", "reserve_mib", NULL },
	{ "migrate-mode", "migration", "mode", NULL },
	{ "policy", "policy", "name", NULL },
	{ "policy-dir", "policy", "module_dir", NULL },
};
#define NCLI (sizeof(cli_keys) / sizeof(cli_keys[0]))
enum { O_KEY = 256, O_UID = O_KEY + NCLI, O_GID, O_CHECK, O_SYSFS, O_CONFIG, O_CHECKCFG, O_PARAM,
       O_RECORD, O_RECORD_MAX, O_DLOG, O_SEED };

static const struct option *options(void)
{
	static struct option opts[NCLI + 16];

	if (opts[0].name)
		return opts;
	for (size_t i = 0; i < NCLI; i++)
		opts[i] = (struct option){ cli_keys[i].option,
					   cli_keys[i].fixed ? no_argument : required_argument, NULL,
					   (int)(O_KEY + i) };
	opts[NCLI] = (struct option){ "allow-uid", required_argument, NULL, O_UID };
	opts[NCLI + 1] = (struct option){ "allow-gid", required_argument, NULL, O_GID };
	opts[NCLI + 2] = (struct option){ "check-system", no_argument, NULL, O_CHECK };
	opts[NCLI + 3] = (struct option){ "sysfs-root", required_argument, NULL, O_SYSFS }; /* tests */
	opts[NCLI + 4] = (struct option){ "config", required_argument, NULL, O_CONFIG };
	opts[NCLI + 5] = (struct option){ "check-config", no_argument, NULL, O_CHECKCFG };
	opts[NCLI + 6] = (struct option){ "verbose", no_argument, NULL, 'v' };
	opts[NCLI + 7] = (struct option){ "help", no_argument, NULL, 'h' };
	opts[NCLI + 8] = (struct option){ "policy-param", required_argument, NULL, O_PARAM };
	opts[NCLI + 9] = (struct option){ "record", required_argument, NULL, O_RECORD };
	opts[NCLI + 10] = (struct option){ "record-max-mib", required_argument, NULL, O_RECORD_MAX };
	opts[NCLI + 11] = (struct option){ "decision-log", required_argument, NULL, O_DLOG };
	opts[NCLI + 12] = (struct option){ "policy-seed", required_argument, NULL, O_SEED };
	return opts;
}

enum action { RUN, CHECK_SYSTEM, CHECK_CONFIG, HELP };

/*
 * The configuration tierd runs with: defaults, then the config file and its drop-ins, then the
 * command line (which wins). Also what SIGHUP re-reads. Returns 0, or 2 after saying why.
 */
/* Run-time files from the command line (not configuration: they name this run's outputs). */
static const char *record_path, *decision_log_path;
static uint32_t record_max_mib = 256;

static int load_config(int argc, char **argv, struct tierd_config *cfg, enum action *action)
{
	const char *path = TIERD_DEFAULT_CONFIG;
	const char *params[TIERD_MAX_POLICY_PARAMS];
	unsigned nparams = 0;
	bool explicit_path = false;
	char err[512], why[256];
	int c;

	*action = RUN;
	/* First the config file's name; the other options once the file is read. */
	opterr = 0;
	optind = 1;
	while ((c = getopt_long(argc, argv, "s:vh", options(), NULL)) >= 0)
		if (c == O_CONFIG) {
			path = optarg;
			explicit_path = true;
		}
	tierd_config_defaults(cfg);
	if (config_load(path, explicit_path, cfg, err, sizeof(err)) < 0) {
		log_error("Configuration: %s", err);
		return 2;
	}
	opterr = 1;
	optind = 1;
	while ((c = getopt_long(argc, argv, "s:vh", options(), NULL)) >= 0) {
		if (c == 's')
			c = O_KEY; /* --socket */
		if (c >= O_KEY && c < O_KEY + (int)NCLI) {
			size_t i = (size_t)(c - O_KEY);

			if (config_set(cfg, cli_keys[i].section, cli_keys[i].key,
				       cli_keys[i].fixed ? cli_keys[i].fixed : optarg, why, sizeof(why)) < 0) {
				fprintf(stderr, "tierd: --%s: %s\n", cli_keys[i].option, why);
				return 2;
			}
			continue;
		}
		switch (c) {
		case O_UID:
		case O_GID: {
			unsigned *n = c == O_UID ? &cfg->n_allow_uids : &cfg->n_allow_gids;
			uint32_t v;

			if (*n >= TIERD_MAX_ALLOW) {
				fprintf(stderr, "tierd: at most %d --allow-uid/--allow-gid each\n",
					TIERD_MAX_ALLOW);
				return 2;
			}
			if (parse_u32(optarg, c == O_UID ? "--allow-uid" : "--allow-gid", 0, UINT32_MAX - 1,
				      &v) < 0)
				return 2;
			if (c == O_UID)
				cfg->allow_uids[(*n)++] = v;
			else
				cfg->allow_gids[(*n)++] = v;
			break;
		}
		case O_CHECK:
			*action = CHECK_SYSTEM;
			break;
		case O_CHECKCFG:
			*action = CHECK_CONFIG;
			break;
		case O_SYSFS:
			cfg->sysfs_root = optarg;
			break;
		case O_CONFIG:
			break;
		case O_PARAM:
			if (nparams == TIERD_MAX_POLICY_PARAMS || !strchr(optarg, '=')) {
				fprintf(stderr, "tierd: --policy-param KEY=VALUE (at most %d): '%s'\n",
					TIERD_MAX_POLICY_PARAMS, optarg);
				return 2;
			}
			params[nparams++] = optarg;
			break;
		case O_RECORD:
			record_path = optarg;
			break;
		case O_RECORD_MAX:
			if (parse_u32(optarg, "--record-max-mib", 1, 1u << 20, &record_max_mib) < 0)
				return 2;
			break;
		case O_DLOG:
			decision_log_path = optarg;
			break;
		case O_SEED: {
			uint32_t v;

			if (parse_u32(optarg, "--policy-seed", 0, UINT32_MAX - 1, &v) < 0)
				return 2;
			cfg->policy_seed = v;
			break;
		}
		case 'v':
			log_set_max_level(LOG_DEBUG);
			break;
		case 'h':
			*action = HELP;
			break;
		default:
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "tierd: unexpected argument '%s'\n", argv[optind]);
		return 2;
	}
	/* --policy-param applies to the policy tierd runs, whichever option or file named it. */
	for (unsigned i = 0; i < nparams; i++) {
		char key[64];
		const char *eq = strchr(params[i], '=');

		snprintf(key, sizeof(key), "%.*s", (int)(eq - params[i]), params[i]);
		snprintf(err, sizeof(err), "policy.%s", cfg->policy_name);
		if (config_set(cfg, err, key, eq + 1, why, sizeof(why)) < 0) {
			fprintf(stderr, "tierd: --policy-param %s: %s\n", params[i], why);
			return 2;
		}
	}
	if (config_validate(cfg, why, sizeof(why)) < 0) {
		fprintf(stderr, "tierd: %s\n", why);
		return 2;
	}
	return 0;
}

static int saved_argc;
static char **saved_argv;

/* SIGHUP: the same sources read again. */
static int reload(struct tierd_config *cfg)
{
	enum action a;

	return load_config(saved_argc, saved_argv, cfg, &a) ? -EINVAL : 0;
}

/* The configuration in force, logged at start in one line of section.key=value. */
static void log_effective_config(const struct tierd_config *cfg)
{
	char *text = NULL, line[4096] = "", section[64] = "";
	size_t len = 0, used = 0;
	FILE *f = open_memstream(&text, &len);

	if (!f)
		return;
	config_dump(cfg, f);
	fclose(f);
	for (char *save = NULL, *l = strtok_r(text, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
		char key[64], value[256];

		if (sscanf(l, "[%63[^]]]", section) == 1)
			continue;
		value[0] = '\0';
		if (sscanf(l, "%63s = %255[^\n]", key, value) >= 1 && used < sizeof(line))
			used += (size_t)snprintf(line + used, sizeof(line) - used, "%s%s.%s=%s",
						 used ? " " : "", section, key, value);
	}
	free(text);
	log_info("Configuration: %s", line);
}

/* The configured policy, and this run's decision log and recording. */
/* The files named on the command line, opened before the manager drops its capabilities: a path
 * root could write only through CAP_DAC_OVERRIDE (a user's directory) must work as before. */
static FILE *decision_log;
static int record_fd = -1;

static int open_outputs(void)
{
	if (decision_log_path) {
		decision_log = fopen(decision_log_path, "we");
		if (!decision_log)
			return log_error_errno(-errno, "--decision-log %s: %m", decision_log_path);
		/* Line-buffered: a test (or tail -f) reads decisions as they are made. */
		setvbuf(decision_log, NULL, _IOLBF, 0);
	}
	if (record_path) {
		record_fd = open(record_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
		if (record_fd < 0)
			return log_error_errno(-errno, "--record %s: %m", record_path);
	}
	return 0;
}

static int start_policy(struct manager *m)
{
	char why[300];
	int r;

	m->decision_log = decision_log;
	decision_log = NULL;
	r = manager_policy_switch(m, m->cfg.policy_name, NULL, 0, why, sizeof(why));
	if (r < 0) {
		log_error("Placement policy %s: %s", m->cfg.policy_name, why);
		return -EINVAL;
	}
	if (record_fd >= 0) {
		r = manager_record_start(m, record_fd, (uint64_t)record_max_mib << 20, why, sizeof(why));
		record_fd = -1;
		if (r < 0) {
			log_error("--record %s: %s", record_path, why);
			return r;
		}
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct tierd_config cfg;
	struct manager *m = NULL;
	enum action action;
	int r;

	log_open();
	/* Help needs no configuration: a broken file must not hide how to fix it. */
	for (int i = 1; i < argc && strcmp(argv[i], "--"); i++)
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			help();
			return 0;
		}
	if (load_config(argc, argv, &cfg, &action))
		return 2;
	switch (action) {
	case HELP:
		help();
		return 0;
	case CHECK_SYSTEM:
		return check_system(&cfg);
	case CHECK_CONFIG: {
		/* Only the policy knows its parameters: start it to check them. */
		struct policy *p;
		char why[300];

		if (manager_policy_open(&cfg, cfg.policy_name, NULL, 0, &p, why, sizeof(why)) < 0) {
			fprintf(stderr, "tierd: policy.name = %s: %s\n", cfg.policy_name, why);
			return 2;
		}
		policy_close(p);
		config_dump(&cfg, stdout);
		return 0;
	}
	case RUN:
		break;
	}
	saved_argc = argc;
	saved_argv = argv;
	if (open_outputs() < 0)
		return 1;
	r = manager_new(&cfg, &m);
	if (r < 0)
		return 1;
	m->reload = reload;
	log_effective_config(&m->cfg);
	r = start_policy(m);
	if (r < 0) {
		manager_free(m);
		return r == -EINVAL ? 2 : 1;
	}
	r = manager_run(m);
	manager_free(m);
	return r < 0 ? 1 : 0;
}
