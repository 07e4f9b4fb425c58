#!/bin/bash
# make bench-vm: runs the benches that need several NUMA nodes (migration_throughput, placement) in
# the 2-node QEMU guest of tests/vm/run-vm.sh and appends their JSON lines to the host's
# bench/results/core.jsonl, with "where": "guest".
#   tools/bench-vm.sh [BENCH...]          (default: migration_throughput placement)
# pgbench_numa (make bench-vm-pg: PostgreSQL's buffer pool starting on the slow node) boots the
# guest with the host's PostgreSQL in it (run-vm.sh's VM_WITH_PG=1).
# The guest's filesystem is an initramfs that goes away with it: inside the guest this script (run
# as `tools/bench-vm.sh --guest BENCH...`) runs tools/bench.sh there and then prints each result
# line on the console as "BENCH-JSON <line>"; the host side picks those lines out of run-vm.sh's
# output. Environment: BUILD (default build), VM_TIMEOUT (seconds, default 900).
set -u
cd "$(dirname "$0")/.." || exit 1
BUILD=${BUILD:-build}
RESULTS=bench/results/core.jsonl
tag='BENCH-JSON '

if [ "${1:-}" = --guest ]; then
	shift
	BENCH_WHERE=guest tools/bench.sh "$@"
	rc=$?
	if [ -f "$RESULTS" ]; then
		while IFS= read -r line; do printf '%s%s\n' "$tag" "$line"; done <"$RESULTS"
	fi
	exit $rc
fi

benches=("$@")
[ ${#benches[@]} -eq 0 ] && benches=(migration_throughput placement)
BENCH_COMMIT=$(git rev-parse --short --verify -q HEAD 2>/dev/null) || BENCH_COMMIT=uncommitted
export BENCH_COMMIT BUILD
mkdir -p "$(dirname "$RESULTS")" || exit 1
got=$(mktemp /tmp/tierd-bench-vm.XXXXXX) || exit 1
trap 'rm -f "$got"' EXIT
trap 'exit 130' INT TERM

for b in "${benches[@]}"; do
	if [ "$b" = pgbench_numa ]; then
		export VM_WITH_PG=1
		VM_ENV="${VM_ENV:-} PG_ROUNDS PG_WARM_SECONDS PG_SECONDS PG_SCALE PG_SHARED_BUFFERS PG_TIERD_ARGS"
	fi
done
VM_ENV="${VM_ENV:-} BENCH_COMMIT" tests/vm/run-vm.sh --nodes 2 --timeout "${VM_TIMEOUT:-900}" -- \
	tools/bench-vm.sh --guest "${benches[@]}" |
	while IFS= read -r line; do
		case $line in
		"$tag"*) printf '%s\n' "${line#"$tag"}" >>"$got" ;;
		*) printf '%s\n' "$line" ;;
		esac
	done
rc=${PIPESTATUS[0]}

# A kernel message on the console could cut into a line: keep only whole JSON objects.
good=0 bad=0
while IFS= read -r line; do
	if [[ $line == '{"bench":'*'}' ]]; then
		printf '%s\n' "$line" >>"$RESULTS"
		good=$((good + 1))
	else
		echo "bench-vm: dropped a garbled result line: $line" >&2
		bad=$((bad + 1))
	fi
done <"$got"
echo "bench-vm: $good guest results appended to $RESULTS$([ $bad -eq 0 ] || echo " ($bad dropped)")"
if [ "$rc" -ne 0 ]; then
	echo "bench-vm: the guest run failed (status $rc)" >&2
	exit "$rc"
fi
[ "$good" -gt 0 ] || { echo "bench-vm: no results came back" >&2; exit 1; }
exit 0
