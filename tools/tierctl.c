/* SPDX-License-Identifier: MIT */
/*
 * tierctl: ask a running tierd what it sees.
 *   tierctl [--socket PATH] status [--json]
 * The human view is a short table; --json prints tierd's status document unchanged for scripts.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

int main(int argc, char **argv)
{
	static const struct option opts[] = { { "socket", 1, NULL, 's' }, { "json", 0, NULL, 'j' },
					      { "help", 0, NULL, 'h' }, {} };
	const char *socket_path = NULL;
	static char js[70000];
	int c, r, json = 0;

	while ((c = getopt_long(argc, argv, "s:jh", opts, NULL)) >= 0) {
		switch (c) {
		case 's':
			socket_path = optarg;
			break;
		case 'j':
			json = 1;
			break;
		case 'h':
			printf("Usage: tierctl [--socket PATH] status [--json]\n");
			return 0;
		default:
			return 2;
		}
	}
	if (optind >= argc || strcmp(argv[optind], "status") != 0) {
		fprintf(stderr, "tierctl: unknown or missing command (try: tierctl status)\n");
		return 2;
	}
	r = tier_status_json(socket_path, js, sizeof(js));
	if (r < 0) {
		fprintf(stderr, "tierctl: cannot reach tierd at %s: %s\n",
			socket_path ? socket_path : getenv("TIERD_SOCKET") ? getenv("TIERD_SOCKET")
									   : "/run/tierd/tierd.sock",
			strerror(-r));
		return 1;
	}
	if (json)
		printf("%s\n", js);
	else
		print_human(js);
	return 0;
}
