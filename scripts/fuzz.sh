#!/bin/sh
# Runs each libFuzzer target for a bounded time from its seed corpus
# (tests/fuzz/corpus/NAME), new inputs and any crash going to build/fuzz/.
# Prints each target's execution count; fails on the first crash or leak.
# Usage: scripts/fuzz.sh SECONDS TARGET...
set -u
seconds=${1:?usage: scripts/fuzz.sh SECONDS TARGET...}
shift
top=$(cd "$(dirname "$0")/.." && pwd)
out="$top/build/fuzz"
export LSAN_OPTIONS="suppressions=$top/tests/fuzz/lsan.supp"
status=0
for t in "$@"; do
	mkdir -p "$out/corpus/$t" "$out/artifacts"
	echo "== $t for ${seconds}s"
	"$out/$t" -max_total_time="$seconds" -max_len=65536 -print_final_stats=1 \
	    -artifact_prefix="$out/artifacts/$t-" "$out/corpus/$t" "$top/tests/fuzz/corpus/$t" >"$out/$t.log" 2>&1
	rc=$?
	grep -E 'stat::number_of_executed_units|^SUMMARY' "$out/$t.log"
	if [ "$rc" -ne 0 ]; then
		echo "fuzz: $t failed (exit $rc); see $out/$t.log and $out/artifacts/"
		status=1
	fi
done
exit $status
