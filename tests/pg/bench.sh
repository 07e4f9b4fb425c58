#!/bin/bash
# pgbench with PostgreSQL under the LD_PRELOAD shim and tierd tracking its buffer pool, against the
# same cluster without the shim, in one run: PG_ROUNDS (3) rounds, the two alternating which goes
# first, for 2 MiB huge pages (huge_pages=on) and then 4 KiB shmem (huge_pages=off). Each run: start
# PostgreSQL, pg_prewarm pgbench_accounts, select-only pgbench (-S, 2 clients, PG_SECONDS = 8 s), then
# a connection storm (-S -C: a new backend, so a fork and an attach, per transaction, 5 s), stop.
# tierd runs (idle for the runs without the shim) throughout. Appends JSON lines (ARCHITECTURE.md
# §6) to PG_RESULTS (bench/results/core.jsonl): pgbench tps_ratio and connect_ratio per page size,
# value = median with the shim, baseline = median without, spread = every run.
# PG_PAGES="huge" (or "4k") runs one page size only.
# Called by tools/bench.sh (make bench); exit 77 when PostgreSQL is not installed.
set -u
cd "$(dirname "$0")/../.." || exit 1
PG_WHO=bench/pgbench
. tests/pg/lib.sh
BENCH_NAME=pgbench
ROUNDS=${PG_ROUNDS:-3}
SECS=${PG_SECONDS:-8}
RESULTS=${PG_RESULTS:-bench/results/core.jsonl}
COMMIT=${BENCH_COMMIT:-$(git rev-parse --short --verify -q HEAD 2>/dev/null || echo uncommitted)}
WHERE=${BENCH_WHERE:-host}

pg_setup
# tierd on its defaults (the tests' private tierd samples twice as often).
PG_TIERD_ARGS=${PG_TIERD_ARGS-}
tierd_start
pgenv=()
pgctl start || die "PostgreSQL did not start: $(tail -5 "$pgdir/pg.log")"
pgb -i -q -s "$SCALE" >"$tmp/init.log" 2>&1 || die "pgbench -i failed: $(tail -3 "$tmp/init.log")"
q "create extension if not exists pg_prewarm" >/dev/null
pgstop || die "PostgreSQL did not stop"


# One run: "TPS CONNECT_TPS FAULTS MAPS" for mode plain|shim; MAPS = the postmaster's most
# /proc/PID/maps lines seen during the select-only run (sampling windows split its VMAs, and fork
# copies every VMA).
run_once() {
	local mode=$1 faults=0 maps=0 pm n
	if [ "$mode" = shim ]; then
		# TIERD_PRELOAD_KINDS=all: the 4 KiB rounds measure what tracking them costs.
		pgenv=(LD_PRELOAD="$SHIM" TIERD_SOCKET="$sock" TIERD_PRELOAD_KINDS=all)
	else
		pgenv=()
	fi
	pgctl start || die "PostgreSQL ($mode) did not start: $(tail -5 "$pgdir/pg.log")"
	if [ "$mode" = shim ]; then
		wait_attached 6 >/dev/null || die "the shim's segment was not attached by 6 processes"
	fi
	q "select pg_prewarm('pgbench_accounts')" >/dev/null
	pm=$(head -1 "$data/postmaster.pid")
	pgb -S -c 2 -j 2 -T "$SECS" -n >"$tmp/run.log" 2>&1 &
	for _ in $(seq $((SECS * 2 - 2))); do
		sleep 0.5
		n=$(wc -l <"/proc/$pm/maps")
		[ "$n" -gt "$maps" ] && maps=$n
	done
	wait $! || die "pgbench -S ($mode) failed: $(tail -3 "$tmp/run.log")"
	pgb -S -C -c 2 -j 2 -T 5 -n >"$tmp/conn.log" 2>&1 || die "pgbench -S -C ($mode) failed: $(tail -3 "$tmp/conn.log")"
	[ "$mode" = shim ] && faults=$(tctl segments | awk 'NR == 2 {print $6}')
	pgstop || die "PostgreSQL ($mode) did not stop"
	wait_no_segment || die "tierd still tracks a segment after PostgreSQL stopped"
	echo "$(tps_of "$tmp/run.log") $(tps_of "$tmp/conn.log") ${faults:-0} $maps" >"$tmp/once"
}

range() { tr ' ' '\n' | sort -g | awk 'NR == 1 {lo = $1} {hi = $1} END {printf "%.0f-%.0f", lo, hi}'; }


mkdir -p "$(dirname "$RESULTS")"
for pages in ${PG_PAGES:-huge 4k}; do
	if [ $pages = huge ]; then
		sed -i 's/^\(\s*\)huge_pages = .*/\1huge_pages = on/' "$data/postgresql.conf"
	else
		sed -i 's/^\(\s*\)huge_pages = .*/\1huge_pages = off/' "$data/postgresql.conf"
	fi
	plain=() shim=() plain_c=() shim_c=() faults=() maps_plain=() maps_shim=()
	for r in $(seq "$ROUNDS"); do
		order="plain shim"
		[ $((r % 2)) = 0 ] && order="shim plain"
		for mode in $order; do
			# Not in $( ): die must end the bench, not a subshell.
			rm -f "$tmp/once"
			run_once $mode
			read -r tps conn f maps <"$tmp/once"
			[ -n "$tps" ] && [ -n "$conn" ] || die "no tps from the $mode run"
			say "$pages round $r $mode: $tps tps, $conn tps connecting, $f faults, postmaster maps $maps lines"
			if [ $mode = shim ]; then
				shim+=("$tps") shim_c+=("$conn") faults+=("$f") maps_shim+=("$maps")
			else
				plain+=("$tps") plain_c+=("$conn") maps_plain+=("$maps")
			fi
		done
	done
	label=$([ $pages = huge ] && echo "2 MiB huge pages (huge_pages=on)" || echo "4 KiB shmem (huge_pages=off)")
	suffix=$([ $pages = huge ] && echo "" || echo "_4k")
	emit "tps_ratio$suffix" "$(echo "${shim[*]}" | median)" "$(echo "${plain[*]}" | median)" tps "$ROUNDS" \
		"with the shim $(echo "${shim[*]}" | range), without $(echo "${plain[*]}" | range) ($ROUNDS interleaved runs each)" \
		"select-only pgbench, 2 clients, ${SECS} s, scale $SCALE, shared_buffers 256MB in $label; shim + tierd tracking vs no shim; tierd faults per run: ${faults[*]}; postmaster maps lines (most seen) with the shim ${maps_shim[*]}, without ${maps_plain[*]}"
	emit "connect_ratio$suffix" "$(echo "${shim_c[*]}" | median)" "$(echo "${plain_c[*]}" | median)" tps "$ROUNDS" \
		"with the shim $(echo "${shim_c[*]}" | range), without $(echo "${plain_c[*]}" | range)" \
		"pgbench -S -C (a new backend per transaction: fork + attach), 2 clients, 5 s, $label"
done
exit 0
