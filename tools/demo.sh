#!/bin/bash
# make demo: start a private tierd, run tierd-demo against it, stop it. Reserves a few huge pages
# for the hugetlb segment and restores vm.nr_hugepages afterwards.
set -eu
BUILD=${BUILD:-build}
if [ "$(id -u)" -ne 0 ]; then
	echo "make demo needs root (userfaultfd device, huge pages). Try: sudo make demo" >&2
	exit 1
fi
dir=$(mktemp -d /tmp/tierd-demo.XXXXXX)
# 64 MiB of 2 MiB pages for the demo's hugetlb segment. With several nodes the demo starts its
# memory on the slowest node, so the pages must be in that node's pool.
nodes=(/sys/devices/system/node/node[0-9]*)
if [ ${#nodes[@]} -gt 1 ]; then
	pool=${nodes[-1]}/hugepages/hugepages-2048kB
else
	pool=/sys/kernel/mm/hugepages/hugepages-2048kB
fi
old_nr=$(cat "$pool/nr_hugepages")
tierd_pid=
cleanup() {
	[ -n "$tierd_pid" ] && kill "$tierd_pid" 2>/dev/null && wait "$tierd_pid" 2>/dev/null
	echo "$old_nr" > "$pool/nr_hugepages"
	rm -rf "$dir"
}
trap cleanup EXIT INT TERM
free_huge=$(cat "$pool/free_hugepages")
[ "$free_huge" -lt 32 ] && echo $((old_nr + 32 - free_huge)) > "$pool/nr_hugepages"

echo "== tierd demo: tracking shared memory with userfaultfd minor faults"
echo "   kernel $(uname -r); $("$BUILD"/tierd --check-system | grep -c '^OK *uffd\.minor_') of 2 segment kinds trackable"
# TIERD_ARGS: extra options for tierd (e.g. -v, --migrate-mode mapped).
# shellcheck disable=SC2086
"$BUILD"/tierd --socket "$dir/tierd.sock" --epoch-ms 50 ${TIERD_ARGS:-} >"$dir/tierd.log" 2>&1 &
tierd_pid=$!
for _ in $(seq 100); do [ -S "$dir/tierd.sock" ] && break; sleep 0.05; done
echo "   tierd pid $tierd_pid on $dir/tierd.sock (log: tierd.log)"
echo
"$BUILD"/tierd-demo --socket "$dir/tierd.sock" --seconds 5
echo
echo "== tierd's counters after the demo detached (tierctl status):"
"$BUILD"/tierctl --socket "$dir/tierd.sock" status | sed 's/^/   /'
echo
echo "== tierd's log"
sed 's/^/   /' "$dir/tierd.log" | head -"${DEMO_LOG_LINES:-20}"
