/* SPDX-License-Identifier: MIT */
/* tierd entry point: options, feature probe, then the manager's loop. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../lib/uffd.h"
#include "log.h"
#include "manager.h"

static void help(void)
{
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
	       "      --check-system         report the kernel features tierd needs and exit\n"
	       "  -v, --verbose              debug logging\n"
	       "  -h, --help                 this help\n",
	       TIERD_DEFAULT_SOCKET);
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

static int check_system(void)
{
	static const struct {
		uint32_t kind;
		const char *what;
	} kinds[] = { { TIERD_SEG_SHMEM, "shmem (memfd)" }, { TIERD_SEG_HUGETLB, "hugetlbfs" } };
	struct uffd_handshake hs;
	char names[512], why[256];
	int devfd = -1, bad = 0;
	struct uffd_ops ops = uffd_ops_real(&devfd);
	int fd = uffd_negotiate(&ops, 0, 0, &hs);

	if (fd < 0) {
		printf("userfaultfd: unavailable (%s)\n", strerror(-fd));
		return 1;
	}
	close(fd);
	uffd_feature_names(hs.offered, names, sizeof(names));
	printf("userfaultfd features offered: 0x%" PRIx64 " (%s)\n", hs.offered, names);
	printf("second UFFDIO_API on one fd: %s\n",
	       hs.second_call_refused ? "refused (probe on a throwaway fd)" : "accepted");
	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
		uint64_t need = uffd_required_for_kind(kinds[i].kind);

		if (hs.offered & need) {
			printf("tracking %s: yes\n", kinds[i].what);
		} else {
			uffd_describe_missing(need & ~hs.offered, why, sizeof(why));
			printf("tracking %s: no: %s\n", kinds[i].what, why);
			bad = 1;
		}
	}
	return bad;
}

int main(int argc, char **argv)
{
	enum { O_EPOCH = 256, O_MAXWIN, O_WINKIB, O_MAXREG, O_HOT, O_HB, O_REG, O_UID, O_GID, O_CHECK,
	       O_NOMIG, O_BUDGET, O_RATE, O_MIGEVERY, O_RESERVE, O_SYSFS, O_MIGMODE };
	static const struct option opts[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "epoch-ms", required_argument, NULL, O_EPOCH },
		{ "max-windows", required_argument, NULL, O_MAXWIN },
		{ "window-kib", required_argument, NULL, O_WINKIB },
		{ "max-regions", required_argument, NULL, O_MAXREG },
		{ "hot-threshold", required_argument, NULL, O_HOT },
		{ "heartbeat-ms", required_argument, NULL, O_HB },
		{ "shmem-registration", required_argument, NULL, O_REG },
		{ "allow-uid", required_argument, NULL, O_UID },
		{ "allow-gid", required_argument, NULL, O_GID },
		{ "check-system", no_argument, NULL, O_CHECK },
		{ "no-migrate", no_argument, NULL, O_NOMIG },
		{ "fast-budget-mib", required_argument, NULL, O_BUDGET },
		{ "rate-limit-mbps", required_argument, NULL, O_RATE },
		{ "migrate-every", required_argument, NULL, O_MIGEVERY },
		{ "reserve-mib", required_argument, NULL, O_RESERVE },
		{ "migrate-mode", required_argument, NULL, O_MIGMODE },
		{ "sysfs-root", required_argument, NULL, O_SYSFS }, /* tests: a fixture topology */
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{}
	};
	struct tierd_config cfg;
	struct manager *m = NULL;
	uint32_t v;
	int c, r;

	tierd_config_defaults(&cfg);
	log_open();
	while ((c = getopt_long(argc, argv, "s:vh", opts, NULL)) >= 0) {
		switch (c) {
		case 's':
			if (strlen(optarg) >= sizeof(cfg.socket_path)) {
				fprintf(stderr, "tierd: --socket: path longer than %zu bytes\n",
					sizeof(cfg.socket_path) - 1);
				return 2;
			}
			snprintf(cfg.socket_path, sizeof(cfg.socket_path), "%s", optarg);
			break;
		case O_EPOCH:
			if (parse_u32(optarg, "--epoch-ms", 1, 60000, &cfg.epoch_ms) < 0)
				return 2;
			break;
		case O_MAXWIN:
			if (parse_u32(optarg, "--max-windows", 0, 4096, &cfg.max_windows) < 0)
				return 2;
			break;
		case O_WINKIB:
			if (parse_u32(optarg, "--window-kib", 4, 1 << 20, &v) < 0)
				return 2;
			cfg.window_bytes = (uint64_t)v * 1024;
			break;
		case O_MAXREG:
			if (parse_u32(optarg, "--max-regions", cfg.min_regions, 65536, &cfg.max_regions) < 0)
				return 2;
			break;
		case O_HOT: {
			char *end;
			float f = strtof(optarg, &end);

			if (*optarg == '\0' || *end != '\0' || !(f > 0.0f && f <= 1.0f)) {
				fprintf(stderr, "tierd: --hot-threshold: '%s' is not in (0, 1]\n", optarg);
				return 2;
			}
			cfg.hot_threshold = f;
			break;
		}
		case O_HB:
			if (parse_u32(optarg, "--heartbeat-ms", 10, 60000, &cfg.heartbeat_ms) < 0)
				return 2;
			break;
		case O_REG:
			if (strcmp(optarg, "window") == 0)
				cfg.shmem_register_whole = false;
			else if (strcmp(optarg, "whole") == 0)
				cfg.shmem_register_whole = true;
			else {
				fprintf(stderr, "tierd: --shmem-registration: '%s' is not window or whole\n",
					optarg);
				return 2;
			}
			break;
		case O_UID:
		case O_GID: {
			unsigned *n = c == O_UID ? &cfg.n_allow_uids : &cfg.n_allow_gids;

			if (*n >= TIERD_MAX_ALLOW) {
				fprintf(stderr, "tierd: at most %d --allow-uid/--allow-gid each\n",
					TIERD_MAX_ALLOW);
				return 2;
			}
			if (parse_u32(optarg, c == O_UID ? "--allow-uid" : "--allow-gid", 0, UINT32_MAX - 1,
				      &v) < 0)
				return 2;
			if (c == O_UID)
				cfg.allow_uids[(*n)++] = v;
			else
				cfg.allow_gids[(*n)++] = v;
			break;
		}
		case O_CHECK:
			return check_system();
		case O_NOMIG:
			cfg.migrate = false;
			break;
		case O_BUDGET:
			if (parse_u32(optarg, "--fast-budget-mib", 1, UINT32_MAX - 1, &v) < 0)
				return 2;
			cfg.fast_budget_bytes = (uint64_t)v << 20;
			break;
		case O_RATE:
			if (parse_u32(optarg, "--rate-limit-mbps", 1, 1000000, &cfg.rate_limit_mbps) < 0)
				return 2;
			break;
		case O_MIGEVERY:
			if (parse_u32(optarg, "--migrate-every", 1, 10000, &cfg.migrate_every_epochs) < 0)
				return 2;
			break;
		case O_RESERVE:
			if (parse_u32(optarg, "--reserve-mib", 0, UINT32_MAX - 1, &v) < 0)
				return 2;
			cfg.reserve_bytes = (uint64_t)v << 20;
			break;
		case O_SYSFS:
			cfg.sysfs_root = optarg;
			break;
		case O_MIGMODE:
			if (strcmp(optarg, "zap") == 0)
				cfg.migrate_how = MIGRATE_ZAPPED;
			else if (strcmp(optarg, "mapped") == 0)
				cfg.migrate_how = MIGRATE_MAPPED;
			else {
				fprintf(stderr, "tierd: --migrate-mode: '%s' is not zap or mapped\n", optarg);
				return 2;
			}
			break;
		case 'v':
			log_set_max_level(LOG_DEBUG);
			break;
		case 'h':
			help();
			return 0;
		default:
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "tierd: unexpected argument '%s'\n", argv[optind]);
		return 2;
	}

	r = manager_new(&cfg, &m);
	if (r < 0)
		return 1;
	r = manager_run(m);
	manager_free(m);
	return r < 0 ? 1 : 0;
}
