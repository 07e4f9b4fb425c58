#!/bin/bash
# Runs tierd's core benchmarks (tools/tierd-bench.c), one process per bench, and appends their JSON
# lines to bench/results/core.jsonl (ARCHITECTURE.md §6). Usage: tools/bench.sh [BENCH...]
# (default: all of them; migration_throughput and placement skip on a machine with one NUMA node:
# make bench-vm runs them in a 2-node QEMU guest; sim_policy is tools/tierd-sim.c --bench, pure
# simulation; pgbench is tests/pg/bench.sh, PostgreSQL under the LD_PRELOAD shim, skipped without
# PostgreSQL; pgbench_numa is tests/pg/bench-numa.sh, PostgreSQL's buffer pool starting on the slow
# node, skipped with one node: make bench-vm-pg runs it in the guest). Environment: BUILD (default
# build), BENCH_WHERE (host|guest, default host), BENCH_COMMIT (the "commit" field; default: git's
# HEAD). Exit status is non-zero only when a bench could not run (harness or daemon failure): a
# missed target is reported in the summary, never an error.
set -u
cd "$(dirname "$0")/.." || exit 1
BUILD=${BUILD:-build}
WHERE=${BENCH_WHERE:-host}
RESULTS=bench/results/core.jsonl
BENCH_BIN=$BUILD/tierd-bench
benches=("$@")
[ ${#benches[@]} -eq 0 ] &&
	benches=(fault_roundtrip window_close page_state daemon_cpu bpf_overhead fork_attach
		migration_throughput placement sim_policy pgbench pgbench_numa)

for f in "$BENCH_BIN" "$BUILD/tierd" "$BUILD/tierd-sim"; do
	if [ ! -x "$f" ]; then
		echo "bench: $f is missing: build it first (make BUILD=$BUILD)" >&2
		exit 1
	fi
done
mkdir -p "$(dirname "$RESULTS")" || exit 1
commit=${BENCH_COMMIT:-$(git rev-parse --short --verify -q HEAD 2>/dev/null)} || commit=uncommitted
[ -n "$commit" ] || commit=uncommitted
tmp=$(mktemp -d /tmp/tierd-bench.XXXXXX) || exit 1
# tierd and the helper processes die with tierd-bench (PR_SET_PDEATHSIG); only files are left here.
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM

# Share of CPU time others used over one second: the fault benches pin to one CPU and are noisy when
# something else runs there.
busy_pct() {
	local a b
	read -r -a a </proc/stat
	sleep 1
	read -r -a b </proc/stat
	local i total=0 idle=$(( (b[4] + b[5]) - (a[4] + a[5]) ))
	for i in 1 2 3 4 5 6 7 8; do total=$((total + b[i] - a[i])); done
	echo $(( total > 0 ? 100 * (total - idle) / total : 0 ))
}

busy=$(busy_pct)
echo "tierd bench: commit $commit, $(nproc) CPUs, $(uname -r), CPUs ${busy}% busy before the run"
[ "$busy" -ge 10 ] && echo "bench: warning: other processes are using the CPUs: expect noisy numbers"
before=$(wc -l 2>/dev/null <"$RESULTS" || echo 0)
failed=() skipped=()
start=$SECONDS
for b in "${benches[@]}"; do
	mkdir -p "$tmp/$b"
	if [ "$b" = pgbench ]; then
		# PostgreSQL under the LD_PRELOAD shim vs without it (tests/pg/bench.sh; ~5 min).
		PG_RESULTS=$RESULTS BENCH_COMMIT=$commit BENCH_WHERE=$WHERE BUILD=$BUILD tests/pg/bench.sh
	elif [ "$b" = pgbench_numa ]; then
		# The buffer pool on the slow node: tierd vs nothing vs NUMA balancing (several nodes).
		PG_RESULTS=$RESULTS BENCH_COMMIT=$commit BENCH_WHERE=$WHERE BUILD=$BUILD tests/pg/bench-numa.sh
	elif [ "$b" = sim_policy ]; then
		# Pure simulation (tools/tierd-sim.c --bench): policy quality against the hindsight
		# optimum, the simulator's throughput and hotness's decide() time.
		"$BUILD/tierd-sim" --bench --bench-json "$RESULTS" --dir "$tmp/$b" --commit "$commit" \
			--where "$WHERE"
	else
		"$BENCH_BIN" --tierd "$BUILD/tierd" --dir "$tmp/$b" --json "$RESULTS" --commit "$commit" \
			--where "$WHERE" "$b"
	fi
	case $? in
	0) ;;
	77) skipped+=("$b") ;;
	*) failed+=("$b") ;;
	esac
done
after=$(wc -l 2>/dev/null <"$RESULTS" || echo 0)
echo "bench: $((after - before)) results appended to $RESULTS in $((SECONDS - start)) s" \
	"(${#failed[@]} failed, ${#skipped[@]} skipped)"
[ ${#skipped[@]} -gt 0 ] && echo "bench: skipped: ${skipped[*]}"
if [ ${#failed[@]} -gt 0 ]; then
	echo "bench: FAILED: ${failed[*]}"
	exit 1
fi
exit 0
