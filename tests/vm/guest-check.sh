#!/bin/bash
# Runs inside the multi-node test guest (make check-vm → tests/vm/run-vm.sh … -- this script):
# shows the NUMA topology the guest sees, then runs the test binaries through tests/run.sh and
# exits with its status. Tests: $GUEST_TESTS (space separated) if set, else $BUILD/tests/vm/test_*,
# else $BUILD/tests/kernel/test_track as a smoke test of the guest itself.
set -euo pipefail
BUILD=${BUILD:-build}
export BUILD

nodes=(/sys/devices/system/node/node[0-9]*)
echo "== guest: kernel $(uname -r), $(nproc) CPUs, ${#nodes[@]} NUMA nodes: ${nodes[*]##*/}"
for n in "${nodes[@]}"; do
	printf '%s: cpus [%s] distance [%s] %s MiB\n' "${n##*/}" "$(cat "$n/cpulist")" \
		"$(cat "$n/distance")" "$(awk '/MemTotal/ { print int($4 / 1024) }' "$n/meminfo")"
done
"$BUILD/tierd" --check-system || true

if [ -n "${GUEST_TESTS:-}" ]; then
	read -ra tests <<<"$GUEST_TESTS"
else
	shopt -s nullglob
	tests=("$BUILD"/tests/vm/test_*)
	[ ${#tests[@]} -gt 0 ] || tests=("$BUILD/tests/kernel/test_track")
fi
exec tests/run.sh "${tests[@]}"
