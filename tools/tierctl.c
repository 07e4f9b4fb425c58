/* SPDX-License-Identifier: MIT */
/*
 * tierctl: ask a running tierd what it sees, and tell it what to do.
 *   tierctl [--socket PATH] [--json] status
 *   tierctl policy                      the running policy (and the last one disabled, and why)
 *   tierctl policy set NAME [KEY=VALUE...]
 *   tierctl record FILE [--max-mib N]   record the policy's input (tierd-sim replays it)
 *   tierctl stop                        stop recording
 *   tierctl metrics                     Prometheus text format (what the textfile gets)
 * The human view is short; --json prints tierd's documents unchanged for scripts. Exit status:
 * 0 done, 1 tierd refused or cannot be reached (the reason on stderr), 2 usage.
 */
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tierd/proto.h"
#include "tierd/tier.h"

/* The integer value of "key": after position p; -1 when absent. */
static long long jint(const char *p, const char *key)
{
	char pat[64];
	const char *q;

	snprintf(pat, sizeof(pat), "\"%s\":", key);
	q = strstr(p, pat);
	return q ? strtoll(q + strlen(pat), NULL, 10) : -1;
}

static void jstr(const char *p, const char *key, char *out, size_t len)
{
	char pat[64];
	const char *q, *e;

	snprintf(pat, sizeof(pat), "\"%s\":\"", key);
	q = strstr(p, pat);
	out[0] = '\0';
	if (!q)
		return;
	q += strlen(pat);
	e = strchr(q, '"');
	if (e && (size_t)(e - q) < len) {
		memcpy(out, q, (size_t)(e - q));
		out[e - q] = '\0';
	}
}

static void print_human(const char *js)
{
	const char *seg = strstr(js, "\"segments\":[");

	printf("tierd pid %lld, epoch %lld, %lld NUMA node(s), %lld client(s)\n", jint(js, "pid"),
	       jint(js, "epoch"), jint(js, "numa_nodes"), jint(js, "clients"));
	printf("faults resolved %lld (first touches %lld), windows armed %lld, zaps %lld\n",
	       jint(js, "faults"), jint(js, "first_touch_faults"), jint(js, "windows_armed"),
	       jint(js, "zaps_sent"));
	printf("%-6s %-8s %10s %10s %8s %12s %10s %8s\n", "SEG", "KIND", "SIZE_MIB", "PAGES", "ATTACH",
	       "FAULTS", "HOT_PAGES", "REGIONS");
	for (const char *p = seg ? strstr(seg, "{\"id\":") : NULL; p; p = strstr(p + 1, "{\"id\":")) {
		char kind[16];

		jstr(p, "kind", kind, sizeof(kind));
		printf("%-6lld %-8s %10lld %10lld %8lld %12lld %10lld %8lld\n", jint(p, "id"), kind,
		       jint(p, "size_bytes") >> 20, jint(p, "pages"), jint(p, "attachments"),
		       jint(p, "faults"), jint(p, "hot_pages"), jint(p, "regions"));
	}
}

static const char *where(const char *socket_path)
{
	const char *env = getenv("TIERD_SOCKET");

	return socket_path ? socket_path : env && *env ? env : "/run/tierd/tierd.sock";
}

/* The "policy" object of the status document, as is. */
static int show_policy(const char *js, int json)
{
	const char *p = strstr(js, "\"policy\":{");
	char name[64], failed[300];

	if (!p) {
		fprintf(stderr, "tierctl: this tierd reports no policy\n");
		return 1;
	}
	if (json) {
		const char *e = strchr(p, '}');

		printf("%.*s\n", (int)(e + 1 - (p + 9)), p + 9); /* from '{' after "policy": to its '}' */
		return 0;
	}
	jstr(p, "name", name, sizeof(name));
	jstr(p, "failed", failed, sizeof(failed));
	printf("policy %s\n", name);
	if (failed[0])
		printf("disabled earlier: %s\n", failed);
	return 0;
}

static int control(const char *socket_path, uint32_t op, uint64_t arg, char **args, int nargs, int fd)
{
	char out[600] = "";
	int r = tier_control(socket_path, op, arg, (const char *const *)args, (unsigned)nargs, fd, out,
			     sizeof(out));

	if (r < 0) {
		if (out[0]) /* tierd's reason */
			fprintf(stderr, "tierctl: %s\n", out);
		else
			fprintf(stderr, "tierctl: cannot reach tierd at %s: %s\n", where(socket_path),
				strerror(-r));
		return 1;
	}
	printf("%s\n", out);
	return 0;
}

static int usage(void)
{
	fprintf(stderr, "Usage: tierctl [--socket PATH] [--json] status\n"
			"       tierctl policy [set NAME [KEY=VALUE...]]\n"
			"       tierctl record FILE [--max-mib N]\n"
			"       tierctl stop\n"
			"       tierctl metrics\n");
	return 2;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = { { "socket", 1, NULL, 's' }, { "json", 0, NULL, 'j' },
					      { "max-mib", 1, NULL, 'm' }, { "help", 0, NULL, 'h' }, {} };
	unsigned long max_mib = 256;
	const char *cmd;
	const char *socket_path = NULL;
	static char js[70000];
	int c, r, json = 0;

	while ((c = getopt_long(argc, argv, "+s:jh", opts, NULL)) >= 0) {
		switch (c) {
		case 's':
			socket_path = optarg;
			break;
		case 'j':
			json = 1;
			break;
		case 'h':
			usage();
			return 0;
		default:
			return 2;
		}
	}
	if (optind >= argc)
		return usage();
	cmd = argv[optind];
	/* Options may also follow the command (tierctl status --json): parse what follows it as
	 * its own argument vector, the command in the place of the program's name. */
	argv += optind;
	argc -= optind;
	optind = 0; /* glibc: start afresh on the new vector */
	while ((c = getopt_long(argc, argv, "s:jh", opts, NULL)) >= 0) {
		if (c == 's')
			socket_path = optarg;
		else if (c == 'j')
			json = 1;
		else if (c == 'm') {
			char *end;

			max_mib = strtoul(optarg, &end, 10);
			if (*end || !max_mib || max_mib > (1ul << 20))
				return usage();
		} else
			return usage();
	}
	if (!strcmp(cmd, "policy") && optind < argc) {
		if (strcmp(argv[optind], "set") || optind + 1 >= argc)
			return usage();
		return control(socket_path, TIERD_CTL_POLICY_SET, 0, argv + optind + 1,
			       argc - optind - 1, -1);
	}
	if (!strcmp(cmd, "record")) {
		int fd;

		if (optind + 1 != argc)
			return usage();
		/* tierctl opens the file, as its user: tierd writes where the caller may. */
		fd = open(argv[optind], O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (fd < 0) {
			fprintf(stderr, "tierctl: %s: %s\n", argv[optind], strerror(errno));
			return 1;
		}
		r = control(socket_path, TIERD_CTL_RECORD_START, (uint64_t)max_mib << 20, NULL, 0, fd);
		close(fd);
		if (r)
			unlink(argv[optind]); /* created above, empty: tierd refused */
		return r;
	}
	if (!strcmp(cmd, "metrics")) {
		static char text[70000];

		if (optind != argc)
			return usage();
		r = tier_control(socket_path, TIERD_CTL_METRICS, 0, NULL, 0, -1, text, sizeof(text));
		if (r < 0) {
			fprintf(stderr, "tierctl: %s\n", text[0] ? text : strerror(-r));
			return 1;
		}
		fputs(text, stdout);
		return 0;
	}
	if (!strcmp(cmd, "stop"))
		return optind == argc ? control(socket_path, TIERD_CTL_RECORD_STOP, 0, NULL, 0, -1) : usage();
	if ((strcmp(cmd, "status") && strcmp(cmd, "policy")) || optind != argc) {
		fprintf(stderr, "tierctl: unknown command '%s'\n", cmd);
		return usage();
	}
	r = tier_status_json(socket_path, js, sizeof(js));
	if (r < 0) {
		fprintf(stderr, "tierctl: cannot reach tierd at %s: %s\n", where(socket_path),
			strerror(-r));
		return 1;
	}
	if (!strcmp(cmd, "policy"))
		return show_policy(js, json);
	if (json)
		printf("%s\n", js);
	else
		print_human(js);
	return 0;
}
