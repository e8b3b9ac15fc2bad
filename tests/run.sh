#!/bin/sh
# Runs every test binary of a build tree and ends with one line of totals,
# "N passed, M failed", for people and for CI. A suite that crashes or is
# stopped by a sanitizer counts as one failure at least.
set -u
build=${1:?usage: tests/run.sh BUILD_DIR}
top=$(cd "$(dirname "$0")/.." && pwd)

LLAMACHATD_BIN="$top/$build/llamachatd"
FAKE_UPSTREAM_BIN="$top/$build/tests/fake_upstream"
LLAMACHATD_TEST_BIN="$top/$build/tests/llamachatd-test"
LLAMACHATD_TOP="$top"
LLAMACHATD_BUILD="$top/$build"
export LLAMACHATD_BIN FAKE_UPSTREAM_BIN LLAMACHATD_TEST_BIN LLAMACHATD_TOP LLAMACHATD_BUILD
# A sanitizer report must fail the run, in the suites and in the daemons they start.
export ASAN_OPTIONS="abort_on_error=0:halt_on_error=1:detect_leaks=1:exitcode=86"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:exitcode=86"
export LSAN_OPTIONS="exitcode=86"

passed=0
failed=0
for t in "$top/$build"/tests/test_* "$top/$build"/tests/it_*; do
	[ -x "$t" ] || continue
	name=$(basename "$t")
	echo "== $name"
	out=$("$t" 2>&1)
	rc=$?
	printf '%s\n' "$out"
	p=$(printf '%s\n' "$out" | sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' | tail -n 1)
	f=$(printf '%s\n' "$out" | sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' | tail -n 1)
	p=${p:-0}
	f=${f:-0}
	if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
		echo "!! $name exited with status $rc"
		f=1
	fi
	# cmocka reports a failed group setup or teardown without counting it.
	if printf '%s\n' "$out" | grep -q -e '^\[  FAILED  \] GROUP' -e '^\[  ERROR   \]'; then
		[ "$f" -eq 0 ] && f=1
	fi
	if printf '%s\n' "$out" | grep -q -e 'ERROR: AddressSanitizer' -e 'ERROR: LeakSanitizer' -e 'runtime error:'; then
		echo "!! $name: sanitizer report"
		[ "$f" -eq 0 ] && f=1
	fi
	passed=$((passed + p))
	failed=$((failed + f))
done
if [ $((passed + failed)) -eq 0 ]; then
	echo "no test binaries found in $build/tests"
	failed=1
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
