/* SPDX-License-Identifier: MIT */
/*
 * tierctl: ask a running tierd what it sees, and tell it what to do.
 *   tierctl [--socket PATH] [--json] COMMAND [ARGS]
 *   status                            a summary (--json: tierd's whole status document)
 *   tiers                             memory tiers, node by node
 *   segments                          tracked segments: size, clients, faults, heat, placement
 *   clients                           connected processes
 *   top [--interval S] [--count N]    segments by fault rate, refreshing (--json: JSON Lines)
 *   policy                            the running policy (and the last one disabled, and why)
 *   policy set NAME [KEY=VALUE...]    switch the placement policy (root)
 *   record FILE [--max-mib N]         record the policy's input for tierd-sim (root)
 *   stop                              stop recording (root)
 *   metrics                           Prometheus text format (what the textfile gets)
 *   events [--count N]                why pages did or did not move, latest last (JSON Lines)
 *   migrations                        what moved, by node and reason, beside the kernel's counters
 *   mode enforce|advise|observe       what plans do (root); pause = advise, resume = enforce
 *   release --all                     every client lets go of its memory now (root)
 *   config                            the configuration in force
 *   diagnose                          one JSON document for a bug report
 *   heatmap SEG [--interval S] [--count N] [--svg FILE]
 *                                     hot pages over time: page offset x time
 *   hot SEG                           the pages tierd rates hot now, as ranges of page numbers
 * Human tables by default; --json prints tierd's documents (raw integers, documented in
 * man/tierctl.8). Exit status: 0 done, 1 tierd refused or cannot be reached (the reason on
 * stderr), 2 usage.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <json-c/json.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tierd/proto.h"
#include "tierd/tier.h"

static const char *socket_path;
static int json;

static const char *where(void)
{
	const char *env = getenv("TIERD_SOCKET");

	return socket_path ? socket_path : env && *env ? env : "/run/tierd/tierd.sock";
}

static int usage(void)
{
	fprintf(stderr,
		"Usage: tierctl [--socket PATH] [--json] COMMAND\n"
		"  status | tiers | segments | clients | top [--interval S] [--count N]\n"
		"  policy [set NAME [KEY=VALUE...]] | record FILE [--max-mib N] | stop | metrics\n"
		"  events [--count N] | migrations | mode enforce|advise|observe | pause | resume\n"
		"  release --all | config | diagnose\n"
		"  heatmap SEG [--interval S] [--count N] [--svg FILE] | hot SEG\n");
	return 2;
}

/* tierd's status document, parsed. NULL after saying why. */
static struct json_object *fetch_status(void)
{
	static char js[70000];
	struct json_object *o;
	int r = tier_status_json(socket_path, js, sizeof(js));

	if (r < 0) {
		fprintf(stderr, "tierctl: cannot reach tierd at %s: %s\n", where(), strerror(-r));
		return NULL;
	}
	o = json_tokener_parse(js);
	if (!o)
		fprintf(stderr, "tierctl: tierd's status is not valid JSON\n");
	return o;
}

static struct json_object *get(struct json_object *o, const char *key)
{
	struct json_object *v = NULL;

	return o && json_object_object_get_ex(o, key, &v) ? v : NULL;
}

static int64_t num(struct json_object *o, const char *key)
{
	struct json_object *v = get(o, key);

	return v ? json_object_get_int64(v) : -1;
}

static const char *str(struct json_object *o, const char *key)
{
	struct json_object *v = get(o, key);

	return v && json_object_is_type(v, json_type_string) ? json_object_get_string(v) : "";
}

static void print_json(struct json_object *o)
{
	puts(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
}

static double mib(int64_t bytes)
{
	return (double)bytes / 1048576.0;
}

static int cmd_status(struct json_object *st)
{
	struct json_object *stats = get(st, "stats"), *mig = get(st, "migration"), *pol = get(st, "policy");

	if (json) {
		print_json(st);
		return 0;
	}
	printf("tierd pid %lld, epoch %lld, %lld NUMA node(s) in %lld tier(s), %lld client(s), "
	       "policy %s%s\n",
	       (long long)num(st, "pid"), (long long)num(st, "epoch"), (long long)num(st, "numa_nodes"),
	       (long long)num(st, "tiers"), (long long)num(st, "clients"), str(pol, "name"),
	       get(st, "recording") && json_object_get_boolean(get(st, "recording")) ? ", recording"
										    : "");
	printf("faults resolved %lld (first touches %lld), windows armed %lld, zaps %lld\n",
	       (long long)num(stats, "faults"), (long long)num(stats, "first_touch_faults"),
	       (long long)num(stats, "windows_armed"), (long long)num(stats, "zaps_sent"));
	printf("migration %s: promoted %lld, demoted %lld pages (%.1f MiB), failed %lld\n",
	       get(mig, "enabled") && json_object_get_boolean(get(mig, "enabled")) ? "on" : "off",
	       (long long)num(mig, "promoted"), (long long)num(mig, "demoted"),
	       mib(num(mig, "bytes_moved")),
	       (long long)(num(mig, "failed_nomem") + num(mig, "failed_busy") + num(mig, "failed_access") +
			   num(mig, "failed_noent") + num(mig, "failed_other")));
	if (num(mig, "held_mems") > 0)
		printf("moves held back by cpusets: %lld pages (a node outside the cpuset mems of a "
		       "process mapping them; tierctl events says which)\n",
		       (long long)num(mig, "held_mems"));
	if (num(get(st, "misbehaving"), "hello_timeouts") > 0 ||
	    num(get(st, "misbehaving"), "attach_peer_exited") > 0)
		printf("misbehaving clients: %lld closed without HELLO in time, %lld attaches refused "
		       "(the process that connected had exited)\n",
		       (long long)num(get(st, "misbehaving"), "hello_timeouts"),
		       (long long)num(get(st, "misbehaving"), "attach_peer_exited"));
	if (*str(pol, "failed"))
		printf("policy disabled earlier: %s\n", str(pol, "failed"));
	/* A tierd from before the samplers has no "samplers": say nothing rather than "off". */
	if (get(st, "samplers"))
		printf("eBPF page-fault sampler: %s%s%s (%lld samples, %lld overflow, %lld first touches)\n",
		       str(get(st, "samplers"), "page_fault"),
		       *str(get(st, "samplers"), "counters") ? ", counters: " : "",
		       str(get(st, "samplers"), "counters"), (long long)num(get(st, "samplers"), "samples"),
		       (long long)num(get(st, "samplers"), "overflow"),
		       (long long)num(get(st, "samplers"), "first_touch"));
	if (get(st, "samplers") && get(get(st, "samplers"), "perf"))
		printf("eBPF perf sampler: %s (%lld samples)\n", str(get(st, "samplers"), "perf"),
		       (long long)num(get(st, "samplers"), "perf_samples"));
	if (get(st, "privileges"))
		printf("privileges: uid %lld, capabilities %s%s\n", (long long)num(get(st, "privileges"), "uid"),
		       str(get(st, "privileges"), "capabilities"),
		       json_object_get_boolean(get(get(st, "privileges"), "no_new_privs")) ? ", no_new_privs"
										     : "");
	if (get(st, "kernel_migrations")) {
		struct json_object *k = get(st, "kernel_migrations");

		printf("kernel migrations for tierd: %s (%lld calls, %lld pages succeeded, %lld failed, "
		       "%lld THP split)\n",
		       str(get(st, "samplers"), "migrate"), (long long)num(k, "calls"),
		       (long long)num(k, "succeeded"), (long long)num(k, "failed"),
		       (long long)num(k, "thp_split"));
	}
	return 0;
}

static int cmd_tiers(struct json_object *st)
{
	struct json_object *tl = get(st, "tier_list");

	if (json) {
		print_json(tl ? tl : json_object_new_array());
		return 0;
	}
	printf("%-5s %-5s %-5s %10s %10s %14s %12s\n", "TIER", "NODE", "CPUS", "TOTAL_MIB", "FREE_MIB",
	       "HUGE_2M_FREE", "TRACKED_MIB");
	for (size_t t = 0; tl && t < json_object_array_length(tl); t++) {
		struct json_object *tier = json_object_array_get_idx(tl, t), *nodes = get(tier, "nodes");

		for (size_t i = 0; nodes && i < json_object_array_length(nodes); i++) {
			struct json_object *n = json_object_array_get_idx(nodes, i);
			char huge[32];

			snprintf(huge, sizeof(huge), "%lld/%lld", (long long)num(n, "huge_2m_free"),
				 (long long)num(n, "huge_2m_total"));
			printf("%-5lld %-5lld %-5s %10.0f %10.0f %14s ", (long long)num(tier, "tier"),
			       (long long)num(n, "node"),
			       json_object_get_boolean(get(n, "cpus")) ? "yes" : "no",
			       mib(num(n, "total_bytes")), mib(num(n, "free_bytes")), huge);
			if (i == 0)
				printf("%12.1f\n", mib(num(tier, "tracked_bytes")));
			else
				printf("%12s\n", "");
		}
	}
	return 0;
}

static void print_nodes(struct json_object *seg)
{
	struct json_object *on = get(seg, "pages_on_node");
	int first = 1;

	json_object_object_foreach(on, node, v)
	{
		printf("%s%s:%lld", first ? "" : " ", node, (long long)json_object_get_int64(v));
		first = 0;
	}
	if (first)
		printf("-");
}

static int cmd_segments(struct json_object *st)
{
	struct json_object *segs = get(st, "segments");

	if (json) {
		print_json(segs ? segs : json_object_new_array());
		return 0;
	}
	printf("%-5s %-8s %9s %8s %6s %12s %10s %7s  %s\n", "SEG", "KIND", "SIZE_MIB", "PAGE_KIB",
	       "ATTACH", "FAULTS", "HOT_PAGES", "REGIONS", "PAGES_ON_NODE");
	for (size_t i = 0; segs && i < json_object_array_length(segs); i++) {
		struct json_object *s = json_object_array_get_idx(segs, i);

		printf("%-5lld %-8s %9.0f %8lld %6lld %12lld %10lld %7lld  ", (long long)num(s, "id"),
		       str(s, "kind"), mib(num(s, "size_bytes")), (long long)num(s, "page_size") / 1024,
		       (long long)num(s, "attachments"), (long long)num(s, "faults"),
		       (long long)num(s, "hot_pages"), (long long)num(s, "regions"));
		print_nodes(s);
		putchar('\n');
	}
	if (!strcmp(str(st, "scope"), "own"))
		printf("(segments mapped by your uid's processes only; root sees all)\n");
	return 0;
}

static int cmd_clients(struct json_object *st)
{
	struct json_object *cl = get(st, "client_list");

	if (json) {
		print_json(cl ? cl : json_object_new_array());
		return 0;
	}
	printf("%-6s %-8s %-6s %7s %12s\n", "ID", "PID", "UID", "ATTACH", "FAULTS");
	for (size_t i = 0; cl && i < json_object_array_length(cl); i++) {
		struct json_object *c = json_object_array_get_idx(cl, i);

		printf("%-6lld %-8lld %-6lld %7lld %12lld\n", (long long)num(c, "id"),
		       (long long)num(c, "pid"), (long long)num(c, "uid"),
		       (long long)num(c, "attachments"), (long long)num(c, "faults"));
	}
	if (!strcmp(str(st, "scope"), "own"))
		printf("(your uid's clients only; root sees all)\n");
	return 0;
}

/* Faults of segment `id` in a status document; -1 when it is not there. */
static int64_t seg_faults(struct json_object *st, int64_t id)
{
	struct json_object *segs = get(st, "segments");

	for (size_t i = 0; segs && i < json_object_array_length(segs); i++)
		if (num(json_object_array_get_idx(segs, i), "id") == id)
			return num(json_object_array_get_idx(segs, i), "faults");
	return -1;
}

struct rate {
	struct json_object *seg;
	double per_s;
};

static int by_rate(const void *a, const void *b)
{
	double x = ((const struct rate *)a)->per_s, y = ((const struct rate *)b)->per_s;

	return (x < y) - (x > y);
}

/* Segments by fault rate (faults per second between two looks), refreshing every interval. */
static int cmd_top(double interval_s, long count)
{
	struct json_object *prev = fetch_status(), *cur;
	struct timespec ts = { (time_t)interval_s, (long)((interval_s - (time_t)interval_s) * 1e9) };
	int tty = isatty(1);

	if (!prev)
		return 1;
	for (long k = 0; count <= 0 || k < count; k++) {
		struct json_object *segs;
		struct rate r[256];
		size_t n = 0;

		nanosleep(&ts, NULL);
		cur = fetch_status();
		if (!cur) {
			json_object_put(prev);
			return 1;
		}
		segs = get(cur, "segments");
		for (size_t i = 0; segs && i < json_object_array_length(segs) && n < 256; i++) {
			struct json_object *s = json_object_array_get_idx(segs, i);
			int64_t before = seg_faults(prev, num(s, "id"));

			r[n++] = (struct rate){ s, before < 0 ? 0 : (double)(num(s, "faults") - before) /
								    interval_s };
		}
		qsort(r, n, sizeof(r[0]), by_rate);
		if (json) {
			/* JSON Lines: one object per refresh. */
			printf("{\"epoch\":%lld,\"segments\":[", (long long)num(cur, "epoch"));
			for (size_t i = 0; i < n; i++)
				printf("%s{\"id\":%lld,\"faults_per_s\":%.1f,\"hot_pages\":%lld}", i ? "," : "",
				       (long long)num(r[i].seg, "id"), r[i].per_s,
				       (long long)num(r[i].seg, "hot_pages"));
			printf("]}\n");
		} else {
			if (tty)
				printf("\033[H\033[2J");
			printf("tierd epoch %lld, %zu segment(s), policy %s\n", (long long)num(cur, "epoch"), n,
			       str(get(cur, "policy"), "name"));
			printf("%-5s %-8s %9s %12s %10s  %s\n", "SEG", "KIND", "SIZE_MIB", "FAULTS/S",
			       "HOT_PAGES", "PAGES_ON_NODE");
			for (size_t i = 0; i < n; i++) {
				printf("%-5lld %-8s %9.0f %12.1f %10lld  ", (long long)num(r[i].seg, "id"),
				       str(r[i].seg, "kind"), mib(num(r[i].seg, "size_bytes")), r[i].per_s,
				       (long long)num(r[i].seg, "hot_pages"));
				print_nodes(r[i].seg);
				putchar('\n');
			}
		}
		fflush(stdout);
		json_object_put(prev);
		prev = cur;
	}
	json_object_put(prev);
	return 0;
}

static int cmd_policy_show(struct json_object *st)
{
	struct json_object *p = get(st, "policy");

	if (!p) {
		fprintf(stderr, "tierctl: this tierd reports no policy\n");
		return 1;
	}
	if (json) {
		print_json(p);
		return 0;
	}
	printf("policy %s\n", str(p, "name"));
	if (*str(p, "failed"))
		printf("disabled earlier: %s\n", str(p, "failed"));
	return 0;
}

static int control(uint32_t op, uint64_t arg, char **args, int nargs, int fd)
{
	static char out[70000];
	int r;

	out[0] = '\0';
	r = tier_control(socket_path, op, arg, (const char *const *)args, (unsigned)nargs, fd, out,
			 sizeof(out));
	if (r < 0) {
		if (out[0]) /* tierd's reason */
			fprintf(stderr, "tierctl: %s\n", out);
		else
			fprintf(stderr, "tierctl: cannot reach tierd at %s: %s\n", where(), strerror(-r));
		return 1;
	}
	fputs(out, stdout);
	if (out[0] && out[strlen(out) - 1] != '\n')
		putchar('\n');
	return 0;
}

static int cmd_record(const char *path, unsigned long max_mib)
{
	int fd, r;

	/* tierctl opens the file, as its user: tierd writes where the caller may. */
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		fprintf(stderr, "tierctl: %s: %s\n", path, strerror(errno));
		return 1;
	}
	r = control(TIERD_CTL_RECORD_START, (uint64_t)max_mib << 20, NULL, 0, fd);
	close(fd);
	if (r)
		unlink(path); /* created above, empty: tierd refused */
	return r;
}

/* A read-only request's text (metrics, events, config) into a static buffer; NULL after saying
 * why. */
static const char *fetch_text(uint32_t op, uint64_t arg)
{
	static char out[70000];
	int r;

	out[0] = '\0';
	r = tier_control(socket_path, op, arg, NULL, 0, -1, out, sizeof(out));
	if (r < 0) {
		if (out[0])
			fprintf(stderr, "tierctl: %s\n", out);
		else
			fprintf(stderr, "tierctl: cannot reach tierd at %s: %s\n", where(), strerror(-r));
		return NULL;
	}
	return out;
}

static int cmd_events(long count)
{
	const char *t = fetch_text(TIERD_CTL_EVENTS, (uint64_t)(count > 0 ? count : 50));

	if (!t)
		return 1;
	if (json) {
		fputs(t, stdout);
		return 0;
	}
	printf("%-9s %-6s %-8s %-10s %5s %-18s %10s %-9s %s\n", "T_S", "EPOCH", "KIND", "POLICY", "SEG",
	       "PAGES", "BYTES", "NODES", "DETAIL");
	for (const char *p = t; *p;) {
		const char *e = strchr(p, '\n');
		char line[600], range[48], nodes[24], detail[160];
		struct json_object *o;

		if (!e)
			break;
		snprintf(line, sizeof(line), "%.*s", (int)(e - p), p);
		p = e + 1;
		o = json_tokener_parse(line);
		if (!o)
			continue;
		if (!strcmp(str(o, "kind"), "skipped")) {
			snprintf(range, sizeof(range), "%lld pass(es)", (long long)num(o, "pages"));
			snprintf(nodes, sizeof(nodes), "-");
			snprintf(detail, sizeof(detail), "%s", str(o, "why"));
		} else if (!strcmp(str(o, "kind"), "moved")) {
			snprintf(range, sizeof(range), "%lld planned", (long long)num(o, "pages"));
			snprintf(nodes, sizeof(nodes), "->%lld", (long long)num(o, "to"));
			snprintf(detail, sizeof(detail), "%lld moved%s%s", (long long)num(o, "moved"),
				 *str(o, "why") ? "; " : "", str(o, "why"));
		} else {
			snprintf(range, sizeof(range), "%lld+%lld", (long long)num(o, "page"),
				 (long long)num(o, "pages"));
			snprintf(nodes, sizeof(nodes), "%lld->%lld", (long long)num(o, "from"),
				 (long long)num(o, "to"));
			snprintf(detail, sizeof(detail), "score %.3f",
				 json_object_get_double(get(o, "score")));
		}
		printf("%-9.3f %-6lld %-8s %-10s %5lld %-18s %10lld %-9s %s\n",
		       json_object_get_double(get(o, "t_s")), (long long)num(o, "epoch"), str(o, "kind"),
		       str(o, "policy"), (long long)num(o, "seg"), range, (long long)num(o, "bytes"),
		       nodes, detail);
		json_object_put(o);
	}
	return 0;
}

/* The kernel's own migration counters (/proc/vmstat), beside tierd's: operators compare. */
static struct json_object *vmstat_counters(void)
{
	static const char *const prefixes[] = { "pgpromote_", "pgdemote_", "pgmigrate_", "numa_", "thp_migration" };
	struct json_object *o = json_object_new_object();
	FILE *f = fopen("/proc/vmstat", "re");
	char name[128];
	unsigned long long v;

	while (f && fscanf(f, "%127s %llu", name, &v) == 2)
		for (size_t i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++)
			if (!strncmp(name, prefixes[i], strlen(prefixes[i])))
				json_object_object_add(o, name, json_object_new_int64((int64_t)v));
	if (f)
		fclose(f);
	return o;
}

static int cmd_migrations(void)
{
	struct json_object *st = fetch_status(), *mig, *out, *moved, *vm;
	const char *metrics;

	if (!st)
		return 1;
	metrics = fetch_text(TIERD_CTL_METRICS, 0);
	if (!metrics) {
		json_object_put(st);
		return 1;
	}
	mig = get(st, "migration");
	moved = json_object_new_array();
	/* tierd_pages_migrated_total{from="0",to="1",page_size="4096",reason="demote"} 12 */
	for (const char *p = strstr(metrics, "\ntierd_pages_migrated_total{"); p;
	     p = strstr(p + 1, "\ntierd_pages_migrated_total{")) {
		int from, to;
		char ps[16], reason[16];
		unsigned long long n;

		if (sscanf(p + 1, "tierd_pages_migrated_total{from=\"%d\",to=\"%d\",page_size=\"%15[^\"]\","
			   "reason=\"%15[^\"]\"} %llu", &from, &to, ps, reason, &n) == 5) {
			struct json_object *e = json_object_new_object();

			json_object_object_add(e, "from", json_object_new_int(from));
			json_object_object_add(e, "to", json_object_new_int(to));
			json_object_object_add(e, "page_size", json_object_new_string(ps));
			json_object_object_add(e, "reason", json_object_new_string(reason));
			json_object_object_add(e, "pages", json_object_new_int64((int64_t)n));
			json_object_array_add(moved, e);
		}
	}
	vm = vmstat_counters();
	if (json) {
		out = json_object_new_object();
		json_object_object_add(out, "tierd", json_object_get(mig));
		json_object_object_add(out, "moved", moved);
		json_object_object_add(out, "kernel", vm);
		print_json(out);
		json_object_put(out);
	} else {
		printf("tierd: promoted %lld, demoted %lld pages (%.1f MiB) in %lld batches; mode %s\n",
		       (long long)num(mig, "promoted"), (long long)num(mig, "demoted"),
		       mib(num(mig, "bytes_moved")), (long long)num(mig, "batches"), str(st, "mode"));
		printf("not moved: nomem %lld, busy %lld, mapped %lld, gone %lld, other %lld\n",
		       (long long)num(mig, "failed_nomem"), (long long)num(mig, "failed_busy"),
		       (long long)num(mig, "failed_access"), (long long)num(mig, "failed_noent"),
		       (long long)num(mig, "failed_other"));
		printf("%-6s %-4s %-10s %-8s %12s\n", "FROM", "TO", "PAGE_SIZE", "REASON", "PAGES");
		for (size_t i = 0; i < json_object_array_length(moved); i++) {
			struct json_object *e = json_object_array_get_idx(moved, i);

			printf("%-6lld %-4lld %-10s %-8s %12lld\n", (long long)num(e, "from"),
			       (long long)num(e, "to"), str(e, "page_size"), str(e, "reason"),
			       (long long)num(e, "pages"));
		}
		printf("kernel (/proc/vmstat):");
		json_object_object_foreach(vm, k, v)
		{
			if (!strncmp(k, "pgpromote", 9) || !strncmp(k, "pgdemote", 8) ||
			    !strcmp(k, "pgmigrate_success") || !strcmp(k, "pgmigrate_fail"))
				printf(" %s %lld", k, (long long)json_object_get_int64(v));
		}
		printf("\n");
		json_object_put(moved);
		json_object_put(vm);
	}
	json_object_put(st);
	return 0;
}

/* Everything a bug report needs, in one JSON document. */
static int cmd_diagnose(void)
{
	struct json_object *st = fetch_status(), *out = json_object_new_object(), *ev = json_object_new_array();
	const char *t;
	char buf[512];
	FILE *f;

	if (!st) {
		json_object_put(out);
		json_object_put(ev);
		return 1;
	}
	json_object_object_add(out, "diagnose_version", json_object_new_int(1));
	f = fopen("/proc/sys/kernel/osrelease", "re");
	if (f && fgets(buf, sizeof(buf), f)) {
		buf[strcspn(buf, "\n")] = '\0';
		json_object_object_add(out, "kernel", json_object_new_string(buf));
	}
	if (f)
		fclose(f);
	json_object_object_add(out, "status", st);
	if ((t = fetch_text(TIERD_CTL_CONFIG, 0)))
		json_object_object_add(out, "config", json_object_new_string(t));
	if ((t = fetch_text(TIERD_CTL_METRICS, 0)))
		json_object_object_add(out, "metrics", json_object_new_string(t));
	if ((t = fetch_text(TIERD_CTL_EVENTS, 0)))
		for (const char *p = t, *e; (e = strchr(p, '\n')); p = e + 1) {
			char line[600];
			struct json_object *o;

			snprintf(line, sizeof(line), "%.*s", (int)(e - p), p);
			if ((o = json_tokener_parse(line)))
				json_object_array_add(ev, o);
		}
	json_object_object_add(out, "events", ev);
	json_object_object_add(out, "vmstat", vmstat_counters());
	puts(json_object_to_json_string_ext(out, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED));
	json_object_put(out);
	return 0;
}

/* Width of the heat map in columns: each is a slice of the segment's pages. */
#define HEAT_COLS 64

/* Share of hot pages in each of `cols` slices of the bitmap. */
static void heat_row(const uint8_t *bits, uint64_t npages, double *row, unsigned cols)
{
	for (unsigned c = 0; c < cols; c++) {
		uint64_t a = npages * c / cols, b = npages * (c + 1) / cols, hot = 0;

		for (uint64_t p = a; p < b; p++)
			hot += (bits[p >> 3] >> (p & 7)) & 1;
		row[c] = b > a ? (double)hot / (double)(b - a) : 0;
	}
}

static void write_svg(FILE *f, int64_t seg, uint64_t npages, const double *rows, long nrows,
		      double interval)
{
	const int cw = 10, rh = 12, left = 60, top = 30;
	int w = left + HEAT_COLS * cw + 20, h = top + (int)nrows * rh + 40;

	fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
		   "font-family=\"sans-serif\" font-size=\"11\">\n", w, h);
	fprintf(f, "<text x=\"%d\" y=\"18\">tierd segment %lld: share of hot pages, page offset "
		   "(x, %llu pages) over time (y, every %.1f s)</text>\n", left, (long long)seg,
		(unsigned long long)npages, interval);
	for (long r = 0; r < nrows; r++) {
		fprintf(f, "<text x=\"4\" y=\"%d\">%.1f s</text>\n", top + (int)r * rh + rh - 2,
			(double)r * interval);
		for (int c = 0; c < HEAT_COLS; c++) {
			double v = rows[r * HEAT_COLS + c];
			/* White (cold) to red (every page of the slice hot). */
			int g = (int)(255 * (1 - v));

			fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" "
				   "fill=\"rgb(255,%d,%d)\"><title>pages %llu-%llu: %.0f%% hot</title></rect>\n",
				left + c * cw, top + (int)r * rh, cw, rh, g, g,
				(unsigned long long)(npages * (uint64_t)c / HEAT_COLS),
				(unsigned long long)(npages * (uint64_t)(c + 1) / HEAT_COLS), v * 100);
		}
	}
	fprintf(f, "<text x=\"%d\" y=\"%d\">page 0</text>\n", left, top + (int)nrows * rh + 14);
	fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"end\">page %llu</text>\n",
		left + HEAT_COLS * cw, top + (int)nrows * rh + 14, (unsigned long long)npages);
	fprintf(f, "</svg>\n");
}

/* Hot pages of a segment over time: a terminal view (one row per look, shaded), JSON Lines, or an
 * SVG of page offset x time. */
/* The page count of segment `segarg` from tierd's status, or -1 after saying why. */
static int64_t segment_pages(const char *segarg, int64_t *id)
{
	struct json_object *st = fetch_status(), *segs;
	int64_t npages = -1;
	char *end;

	*id = strtoll(segarg, &end, 10);
	if (!st)
		return -1;
	segs = get(st, "segments");
	for (size_t i = 0; !*end && segs && i < json_object_array_length(segs); i++)
		if (num(json_object_array_get_idx(segs, i), "id") == *id)
			npages = num(json_object_array_get_idx(segs, i), "pages");
	json_object_put(st);
	if (npages <= 0)
		fprintf(stderr, "tierctl: tierd tracks no segment %s (tierctl segments lists them)\n", segarg);
	return npages;
}

/* The pages tierd rates hot right now, as ranges of page numbers. */
static int cmd_hot(const char *segarg)
{
	int64_t id, npages = segment_pages(segarg, &id), nhot = 0;
	uint8_t *bits;
	int r;

	if (npages <= 0)
		return 1;
	bits = malloc(((size_t)npages + 7) / 8);
	if (!bits)
		return 1;
	r = tier_heat_query(socket_path, (uint32_t)id, bits, (uint64_t)npages, NULL);
	if (r < 0) {
		fprintf(stderr, "tierctl: heat of segment %lld: %s\n", (long long)id, strerror(-r));
		free(bits);
		return 1;
	}
	printf(json ? "{\"seg\":%lld,\"pages\":%lld,\"hot\":[" : "segment %lld, %lld pages; hot:",
	       (long long)id, (long long)npages);
	for (int64_t p = 0; p < npages;) {
		int64_t q = p;

		if (!(bits[p >> 3] & (1u << (p & 7)))) {
			p++;
			continue;
		}
		while (q + 1 < npages && (bits[(q + 1) >> 3] & (1u << ((q + 1) & 7))))
			q++;
		if (json)
			printf("%s[%lld,%lld]", nhot ? "," : "", (long long)p, (long long)q);
		else if (p == q)
			printf(" %lld", (long long)p);
		else
			printf(" %lld-%lld", (long long)p, (long long)q);
		nhot += q - p + 1;
		p = q + 1;
	}
	if (json)
		printf("],\"hot_pages\":%lld}\n", (long long)nhot);
	else
		printf("%s (%lld pages)\n", nhot ? "" : " none", (long long)nhot);
	free(bits);
	return 0;
}

static int cmd_heatmap(const char *segarg, double interval, long count, const char *svg)
{
	static const char shades[] = " .:-=+*#%@";
	struct timespec ts = { (time_t)interval, (long)((interval - (time_t)interval) * 1e9) };
	int64_t id, npages = segment_pages(segarg, &id);
	double *rows;
	uint8_t *bits;
	long n = count > 0 ? count : (svg ? 20 : 0);

	if (npages <= 0)
		return 1;
	bits = malloc(((size_t)npages + 7) / 8);
	rows = calloc((size_t)(n ? n : 1), HEAT_COLS * sizeof(*rows));
	if (!bits || !rows)
		return 1;
	if (!json && !svg)
		printf("segment %lld, %lld pages; each column %lld pages; shade = share hot (' ' none .. '@' all)\n",
		       (long long)id, (long long)npages, (long long)(npages + HEAT_COLS - 1) / HEAT_COLS);
	for (long k = 0; n == 0 || k < n; k++) {
		double *row = rows + (n ? k : 0) * HEAT_COLS;
		int r = tier_heat_query(socket_path, (uint32_t)id, bits, (uint64_t)npages, NULL);

		if (r < 0) {
			fprintf(stderr, "tierctl: heat of segment %lld: %s\n", (long long)id, strerror(-r));
			free(bits);
			free(rows);
			return 1;
		}
		heat_row(bits, (uint64_t)npages, row, HEAT_COLS);
		if (json) {
			printf("{\"t_s\":%.1f,\"seg\":%lld,\"pages\":%lld,\"hot_share\":[", (double)k * interval,
			       (long long)id, (long long)npages);
			for (int c = 0; c < HEAT_COLS; c++)
				printf("%s%.3f", c ? "," : "", row[c]);
			printf("]}\n");
		} else if (!svg) {
			printf("%7.1fs |", (double)k * interval);
			for (int c = 0; c < HEAT_COLS; c++)
				putchar(shades[(int)(row[c] * 9 + 0.5)]);
			printf("|\n");
		}
		fflush(stdout);
		if (n == 0 || k + 1 < n)
			nanosleep(&ts, NULL);
	}
	if (svg) {
		FILE *f = fopen(svg, "we");

		if (!f) {
			fprintf(stderr, "tierctl: %s: %s\n", svg, strerror(errno));
			free(bits);
			free(rows);
			return 1;
		}
		write_svg(f, id, (uint64_t)npages, rows, n, interval);
		fclose(f);
	}
	free(bits);
	free(rows);
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = { { "socket", 1, NULL, 's' },   { "json", 0, NULL, 'j' },
					      { "max-mib", 1, NULL, 'm' },  { "interval", 1, NULL, 'i' },
					      { "count", 1, NULL, 'c' },    { "help", 0, NULL, 'h' },
					      { "all", 0, NULL, 'a' },      { "svg", 1, NULL, 'g' },
					      {} };
	const char *svg = NULL;
	int all = 0;
	unsigned long max_mib = 256;
	double interval = 1.0;
	long count = 0;
	struct json_object *st;
	const char *cmd;
	int c, r;

	signal(SIGPIPE, SIG_DFL);
	/* Options before the command ("+": stop at it), then again after it. */
	for (int pass = 0; pass < 2; pass++) {
		while ((c = getopt_long(argc, argv, pass ? "s:jh" : "+s:jh", opts, NULL)) >= 0) {
			char *end = NULL;

			switch (c) {
			case 's':
				socket_path = optarg;
				break;
			case 'j':
				json = 1;
				break;
			case 'm':
				max_mib = strtoul(optarg, &end, 10);
				if (*end || !max_mib || max_mib > (1ul << 20))
					return usage();
				break;
			case 'i':
				interval = strtod(optarg, &end);
				if (*end || !(interval >= 0.1 && interval <= 3600))
					return usage();
				break;
			case 'c':
				count = strtol(optarg, &end, 10);
				if (*end || count < 0)
					return usage();
				break;
			case 'a':
				all = 1;
				break;
			case 'g':
				svg = optarg;
				break;
			case 'h':
				usage();
				return 0;
			default:
				return usage();
			}
		}
		if (pass == 0) {
			if (optind >= argc)
				return usage();
			/* Parse what follows the command as its own argument vector, the command
			 * in the place of the program's name. */
			argv += optind;
			argc -= optind;
			optind = 0; /* glibc: start afresh on the new vector */
		}
	}
	cmd = argv[0];
	argv += optind;
	argc -= optind;

	if (!strcmp(cmd, "policy") && argc > 0) {
		if (strcmp(argv[0], "set") || argc < 2)
			return usage();
		return control(TIERD_CTL_POLICY_SET, 0, argv + 1, argc - 1, -1);
	}
	if (!strcmp(cmd, "record"))
		return argc == 1 ? cmd_record(argv[0], max_mib) : usage();
	if (!strcmp(cmd, "stop"))
		return argc == 0 ? control(TIERD_CTL_RECORD_STOP, 0, NULL, 0, -1) : usage();
	if (!strcmp(cmd, "metrics"))
		return argc == 0 ? control(TIERD_CTL_METRICS, 0, NULL, 0, -1) : usage();
	if (!strcmp(cmd, "top"))
		return argc == 0 ? cmd_top(interval, count) : usage();
	if (!strcmp(cmd, "hot"))
		return argc == 1 ? cmd_hot(argv[0]) : usage();
	if (!strcmp(cmd, "heatmap"))
		return argc == 1 ? cmd_heatmap(argv[0], interval, count, svg) : usage();
	if (!strcmp(cmd, "events"))
		return argc == 0 ? cmd_events(count) : usage();
	if (!strcmp(cmd, "migrations"))
		return argc == 0 ? cmd_migrations() : usage();
	if (!strcmp(cmd, "diagnose"))
		return argc == 0 ? cmd_diagnose() : usage();
	if (!strcmp(cmd, "config")) {
		const char *t = argc == 0 ? fetch_text(TIERD_CTL_CONFIG, 0) : NULL;

		if (argc)
			return usage();
		return t ? (fputs(t, stdout), 0) : 1;
	}
	if (!strcmp(cmd, "mode"))
		return argc == 1 ? control(TIERD_CTL_MODE, 0, argv, 1, -1) : usage();
	if (!strcmp(cmd, "pause") || !strcmp(cmd, "resume")) {
		char *m[] = { (char *)(cmd[0] == 'p' ? "advise" : "enforce") };

		return argc == 0 ? control(TIERD_CTL_MODE, 0, m, 1, -1) : usage();
	}
	if (!strcmp(cmd, "release")) /* --all: nothing narrower exists yet, and it must be said */
		return argc == 0 && all ? control(TIERD_CTL_RELEASE_ALL, 0, NULL, 0, -1) : usage();
	if (argc)
		return usage();
	if (strcmp(cmd, "status") && strcmp(cmd, "tiers") && strcmp(cmd, "segments") &&
	    strcmp(cmd, "clients") && strcmp(cmd, "policy")) {
		fprintf(stderr, "tierctl: unknown command '%s'\n", cmd);
		return usage();
	}
	st = fetch_status();
	if (!st)
		return 1;
	if (!strcmp(cmd, "status"))
		r = cmd_status(st);
	else if (!strcmp(cmd, "tiers"))
		r = cmd_tiers(st);
	else if (!strcmp(cmd, "segments"))
		r = cmd_segments(st);
	else if (!strcmp(cmd, "clients"))
		r = cmd_clients(st);
	else
		r = cmd_policy_show(st);
	json_object_put(st);
	return r;
}
