#!/bin/bash
# pgbench_numa: PostgreSQL's huge page buffer pool starting on the slow node of a machine with
# several NUMA nodes (the 2-node QEMU guest: make bench-vm-pg, ~12 min), select-only TPS and where the pool's
# pages end up, for four variants run interleaved, PG_ROUNDS (3) rounds each:
#   plain  no shim, no tierd, kernel.numa_balancing=0
#   tierd  the LD_PRELOAD shim + tierd (default settings: epoch 100 ms, migration every 5 epochs;
#          PG_TIERD_ARGS adds options)
#   track  the shim + tierd --no-migrate: sampling only, what tracking itself costs
#   nb     kernel.numa_balancing=1, no shim, no tierd (it cannot move hugetlb pages)
# The slow start: huge pages are taken from the pools at fault time, so before each run the fast
# node's (0) pool is emptied and the slow node's (the highest) holds the buffer pool and a little
# headroom (no overcommit): every page of the pool is faulted in on the slow node whatever the
# faulting task's policy. tierd's migrations take fresh huge pages on the fast node (TESTBED.md: a
# huge page move needs free memory there, not a pool page). All CPUs are on node 0.
# Each run: start PostgreSQL (and tierd), pg_prewarm pgbench_accounts and its index (the pool's
# pages are faulted in on the slow node), PG_WARM_SECONDS (20) of select-only pgbench for tierd to
# find and move the hot pages, then PG_SECONDS (12) measured, and the huge pages in use per node
# (sysfs pools: only PostgreSQL uses huge pages here), and tierd's counters, faults and CPU time.
# Appends JSON lines (ARCHITECTURE.md §6) to PG_RESULTS: tps_ratio_tierd (tierd vs plain),
# tps_ratio_track (track vs plain), tps_ratio_numa_balancing (nb vs plain), pool_on_fast (share of
# the pool's pages on the fast node at the end, tierd vs the best other variant). Exit 77 with fewer than two nodes or no PostgreSQL.
set -u
cd "$(dirname "$0")/../.." || exit 1
PG_WHO=bench/pgbench_numa
nodes=$(ls -d /sys/devices/system/node/node[0-9]* 2>/dev/null | wc -l)
if [ "$nodes" -lt 2 ]; then
	echo "$PG_WHO: SKIPPED: one NUMA node (make bench-vm-pg runs this in the 2-node guest)"
	exit 77
fi
PG_SHARED_BUFFERS=${PG_SHARED_BUFFERS:-128MB}
PG_SCALE=${PG_SCALE:-4}
tierd_args=${PG_TIERD_ARGS:-}
# No LLVM JIT in the guest's initramfs.
PG_EXTRA_CONF="jit = off"
. tests/pg/lib.sh
BENCH_NAME=pgbench_numa
ROUNDS=${PG_ROUNDS:-3}
WARM=${PG_WARM_SECONDS:-20}
SECS=${PG_SECONDS:-12}
RESULTS=${PG_RESULTS:-bench/results/core.jsonl}
COMMIT=${BENCH_COMMIT:-$(git rev-parse --short --verify -q HEAD 2>/dev/null || echo uncommitted)}
WHERE=${BENCH_WHERE:-host}
NB=/proc/sys/kernel/numa_balancing
fast=0
slow=$(ls -d /sys/devices/system/node/node[0-9]* | sed 's/.*node//' | sort -n | tail -1)
hp() { echo "/sys/devices/system/node/node$1/hugepages/hugepages-${HUGE_KB}kB/$2"; }
[ -w "$NB" ] || skip "no $NB"
nb0=$(cat $NB)

pg_setup
trap 'echo "$nb0" >$NB; cleanup' EXIT
pgenv=()
pgctl start || die "PostgreSQL did not start: $(tail -5 "$pgdir/pg.log")"
t0=$SECONDS
pgb -i -q -s "$SCALE" >"$tmp/init.log" 2>&1 || die "pgbench -i failed: $(tail -3 "$tmp/init.log")"
q "create extension if not exists pg_prewarm" >/dev/null
say "pgbench -i -s $SCALE took $((SECONDS - t0)) s; pgbench_accounts $(q "select pg_size_pretty(pg_relation_size('pgbench_accounts'))"), index $(q "select pg_size_pretty(pg_relation_size('pgbench_accounts_pkey'))")"
pgstop || die "PostgreSQL did not stop"

# Huge pages in use (allocated) on node $1.
used_on() { echo $(($(cat "$(hp "$1" nr_hugepages)") - $(cat "$(hp "$1" free_hugepages)"))); }
# The pools for a run: none on the fast node, the buffer pool + headroom on the slow one.
pools_slow() {
	local n
	for n in $(ls -d /sys/devices/system/node/node[0-9]* | sed 's/.*node//'); do
		[ "$n" = "$slow" ] || echo 0 >"$(hp "$n" nr_hugepages)"
	done
	echo "$want" >"$(hp "$slow" nr_hugepages)"
	[ "$(cat "$(hp "$slow" free_hugepages)")" -ge "$want" ] && [ "$(cat "$(hp $fast free_hugepages)")" = 0 ] ||
		die "could not put $want huge pages on node $slow only (node $slow: $(cat "$(hp "$slow" nr_hugepages)"), node $fast: $(cat "$(hp $fast nr_hugepages)"))"
}
# "N0=a N1=b" of the postmaster's huge page mapping(s) in numa_maps (pages of 2 MiB).
pool_maps() {
	local pid
	pid=$(head -1 "$data/postmaster.pid" 2>/dev/null) || return
	awk '/ huge / { for (i = 1; i <= NF; i++) if ($i ~ /^N[0-9]+=/) { split(substr($i, 2), a, "="); n[a[1]] += a[2] } }
		END { s = ""; for (k in n) s = s (s ? " " : "") "N" k "=" n[k]; print s }' "/proc/$pid/numa_maps"
}
jkey() { sed -n "s/.*\"$1\":\([0-9-]*\).*/\1/p" | head -1; }

# One run of variant $1: sets RES to "TPS WARM_TPS FAST SLOW PROMOTED DEMOTED FAULTS TIERD_CPU_S".
run_once() {
	local v=$1 js promoted=0 demoted=0 faults=0 cpu=0 f s maps st
	pools_slow
	if [ "$v" = nb ]; then echo 1 >$NB; else echo 0 >$NB; fi
	pgenv=()
	if [ "$v" = tierd ] || [ "$v" = track ]; then
		if [ "$v" = track ]; then
			PG_TIERD_ARGS="$tierd_args --no-migrate" tierd_start
		else
			PG_TIERD_ARGS=$tierd_args tierd_start
		fi
		pgenv=(LD_PRELOAD="$SHIM" TIERD_SOCKET="$sock")
	fi
	pgctl start || die "PostgreSQL ($v) did not start: $(tail -5 "$pgdir/pg.log")"
	if [ ${#pgenv[@]} -gt 0 ]; then
		wait_attached 6 >/dev/null || die "the shim's segment was not attached by 6 processes"
	fi
	q "select pg_prewarm('pgbench_accounts') + pg_prewarm('pgbench_accounts_pkey')" >/dev/null
	say "  $v: after pg_prewarm: huge pages in use node $fast $(used_on $fast), node $slow $(used_on "$slow")"
	pgb -S -c 2 -j 2 -T "$WARM" -n >"$tmp/warm.log" 2>&1 || die "pgbench -S ($v, warm-up) failed: $(tail -3 "$tmp/warm.log")"
	say "  $v: after ${WARM} s warm-up ($(tps_of "$tmp/warm.log") tps): node $fast $(used_on $fast), node $slow $(used_on "$slow")"
	pgb -S -c 2 -j 2 -T "$SECS" -n >"$tmp/run.log" 2>&1 || die "pgbench -S ($v) failed: $(tail -3 "$tmp/run.log")"
	f=$(used_on $fast) s=$(used_on "$slow") maps=$(pool_maps)
	if [ -n "$tierd_pid" ]; then
		js=$(tctl --json status)
		promoted=$(jkey promoted <<<"$js") demoted=$(jkey demoted <<<"$js")
		# (--no-migrate: tierd runs no placement pass and counts no pages per node)
		st=$(sed -n 's/.*"pages_on_node":{\([^}]*\)}.*/\1/p' <<<"$js" | tr -d '"')
		faults=$(tctl segments | awk 'NR == 2 {print $6}')
		# utime + stime of tierd, in seconds
		cpu=$(awk -v hz="$(getconf CLK_TCK 2>/dev/null || echo 100)" '{sub(/.*\) /, ""); printf "%.1f", ($12 + $13) / hz}' "/proc/$tierd_pid/stat")
		say "  $v: tierd: promoted $promoted, demoted $demoted, faults $faults, ${cpu} s CPU, pages_on_node {$st}"
	fi
	say "  $v: at the end: huge pages in use node $fast $f, node $slow $s (the postmaster's own page tables map $maps)"
	echo 0 >$NB
	pgstop || die "PostgreSQL ($v) did not stop"
	if [ -n "$tierd_pid" ]; then
		kill "$tierd_pid" 2>/dev/null
		wait "$tierd_pid" 2>/dev/null
		tierd_pid=
	fi
	RES="$(tps_of "$tmp/run.log") $(tps_of "$tmp/warm.log") $f $s ${promoted:-0} ${demoted:-0} ${faults:-0} $cpu"
}


declare -A tps warm share desc
variants=(plain tierd track nb)
for r in $(seq "$ROUNDS"); do
	# Rotate the order so that no variant always runs first.
	order=()
	for i in "${!variants[@]}"; do
		order+=("${variants[(i + r - 1) % ${#variants[@]}]}")
	done
	for v in "${order[@]}"; do
		RES=
		run_once "$v"
		read -r t w f s p d fl c <<<"$RES"
		[ -n "$t" ] && [ -n "$s" ] || die "no result from the $v run"
		extra=
		[ "$v" = tierd ] || [ "$v" = track ] &&
			extra=" (tierd promoted $p, demoted $d, $fl faults, $c s CPU)"
		say "round $r $v: $t tps (warm-up $w tps); pool pages node $fast $f, node $slow $s$extra"
		tps[$v]+="$(printf '%.1f' "$t") " warm[$v]+="$(printf '%.1f' "$w") "
		share[$v]+="$(awk -v f="$f" -v s="$s" 'BEGIN {printf "%.3f", f + s ? f / (f + s) : 0}') "
		desc[$v]+="${desc[$v]:+; }round $r: $(printf '%.1f' "$t") tps (warm-up $(printf '%.1f' "$w")), pages node $fast $f / node $slow $s$extra"
	done
done

list() { echo "$1" | sed 's/ *$//; s/ /, /g'; }
setup="select-only pgbench, 2 clients, ${SECS} s measured after ${WARM} s warm-up, scale $SCALE, shared_buffers $PG_SHARED_BUFFERS (huge_pages=on, $need 2 MiB pages), pool pre-faulted by pg_prewarm on the slow node $slow (its huge page pool only), CPUs on node $fast; $nodes nodes; under TCG the nodes' memory is equally fast, so TPS shows costs, not the gain of placement"
emit tps_ratio_tierd "$(median <<<"${tps[tierd]}")" "$(median <<<"${tps[plain]}")" tps "$ROUNDS" \
	"tierd $(list "${tps[tierd]}"); plain $(list "${tps[plain]}") (interleaved)" \
	"$setup; value: shim + tierd (${tierd_args:-default settings}), baseline: no shim, no tierd; tierd: ${desc[tierd]}; plain: ${desc[plain]}"
emit tps_ratio_track "$(median <<<"${tps[track]}")" "$(median <<<"${tps[plain]}")" tps "$ROUNDS" \
	"track-only $(list "${tps[track]}"); plain $(list "${tps[plain]}") (interleaved)" \
	"$setup; value: shim + tierd ${tierd_args:+$tierd_args }--no-migrate (sampling only: what tracking costs here), baseline: no shim, no tierd; track: ${desc[track]}"
emit tps_ratio_numa_balancing "$(median <<<"${tps[nb]}")" "$(median <<<"${tps[plain]}")" tps "$ROUNDS" \
	"numa_balancing=1 $(list "${tps[nb]}"); plain $(list "${tps[plain]}") (interleaved)" \
	"$setup; value: kernel.numa_balancing=1 without shim or tierd, baseline: no shim, no tierd; nb: ${desc[nb]}"
best=$(median <<<"${share[plain]}")
nbs=$(median <<<"${share[nb]}")
awk -v a="$nbs" -v b="$best" 'BEGIN {exit !(a > b)}' && best=$nbs
emit pool_on_fast "$(median <<<"${share[tierd]}")" "$best" share "$ROUNDS" \
	"tierd $(list "${share[tierd]}"); plain $(list "${share[plain]}"); numa_balancing=1 $(list "${share[nb]}")" \
	"share of the buffer pool's huge pages in use on the fast node $fast at the end of the run (sysfs per-node pools; only PostgreSQL uses huge pages); value: shim + tierd, baseline: the better of plain and kernel.numa_balancing=1; $setup"
exit 0
