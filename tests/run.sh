#!/bin/bash
# Runs cmocka test binaries one after another, each under a deadline, and prints one closing
# line: "tests: N passed, N failed, N skipped". Exit status 1 when any test failed or a binary
# crashed or timed out.
set -u
BUILD=${BUILD:-build}
export BUILD
TIMEOUT=${TEST_TIMEOUT:-300}
passed=0 failed=0 skipped=0 bad_bins=()
for t in "$@"; do
	echo "=== $t"
	out=$(mktemp)
	timeout --kill-after=10 "$TIMEOUT" "$t" 2>&1 | tee "$out"
	rc=${PIPESTATUS[0]}
	p=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' "$out" | tail -1)
	f=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' "$out" | tail -1)
	s=$(sed -n 's/^\[  SKIPPED \] \([0-9]*\) test.*/\1/p' "$out" | tail -1)
	passed=$((passed + ${p:-0})); failed=$((failed + ${f:-0})); skipped=$((skipped + ${s:-0}))
	if [ "$rc" -ne 0 ] && [ -z "$f" ]; then
		# Crashed, timed out or died before cmocka could count: that is a failure too.
		echo "!!! $t exited with status $rc"
		failed=$((failed + 1))
	fi
	[ "$rc" -ne 0 ] && bad_bins+=("$t")
	rm -f "$out"
done
[ ${#bad_bins[@]} -gt 0 ] && echo "failing: ${bad_bins[*]}"
echo "tests: $passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ] && [ ${#bad_bins[@]} -eq 0 ]
