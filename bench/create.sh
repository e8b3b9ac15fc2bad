#!/bin/sh
# Benchmark: session creates (POST /api/v1/chat) through llamachatd, which
# commits each session durably before its answer, against nginx proxy_pass
# (keep-alive upstream, the key set by proxy_set_header Authorization) to
# the same fake upstream, and against the fake directly. One worker each,
# access logs off, the same wrk load on loopback, alternating. Prints
# requests/s, p50/p99 and CPU per request (of llamachatd or nginx, not the
# fake). Not a test. Usage: bench/create.sh [seconds] [connection counts...]
# PERF=1 also records llamachatd's runs with perf (call graphs) and prints
# the top of each profile at the end (needs linux-perf).
set -eu
seconds=${1:-5}
[ $# -gt 0 ] && shift
counts=${*:-1 32 256}
top=$(cd "$(dirname "$0")/.." && pwd)
build="$top/build/cc"
. "$top/bench/common.sh"
bench_need wrk nginx python3 curl
make -s -C "$top" all tests >/dev/null

bench_start_fake
bench_start_daemon
bench_start_nginx "$(bench_nginx_proxy /)"
bench_post_script

# The commit histogram's sum and count from llamachatd's /metrics.
commit_totals() {
	curl -s "http://127.0.0.1:$port/metrics" | awk '
		/^llamachatd_store_commit_duration_seconds_sum / { sum = $2 }
		/^llamachatd_store_commit_duration_seconds_count / { count = $2 }
		END { print sum + 0, count + 0 }'
}

echo "session creates, ${seconds}s a run, $(nproc) CPUs"
echo "| path       | conns | requests/s |      p50 |      p99 | CPU us/req | non-2xx"
echo "|------------|-------|------------|----------|----------|--------|----"
: >"$work/added"
for c in $counts; do
	bench_wrk direct "$fake" "http://127.0.0.1:$fake_port/api/v1/chat" "$c" "$seconds" "$work/post.lua"
	direct_p50=$(bench_us "$p50")
	commits_before=$(commit_totals)
	bench_wrk llamachatd "$daemon" "http://127.0.0.1:$port/api/v1/chat" "$c" "$seconds" "$work/post.lua"
	ours=$(bench_us "$p50")
	commit_us=$(printf '%s %s\n' "$commits_before" "$(commit_totals)" |
	    awk '{ n = $4 - $2; printf "%.0f", (n > 0 ? ($3 - $1) / n * 1e6 : 0) }')
	bench_wrk nginx "$nginx_pid" "http://127.0.0.1:$nginx_port/api/v1/chat" "$c" "$seconds" "$work/post.lua"
	awk -v c="$c" -v d="$direct_p50" -v o="$ours" -v n="$(bench_us "$p50")" -v k="$commit_us" \
	    'BEGIN { printf "  %s connection(s): p50 added over going direct: llamachatd %+.0f us (a commit: %.0f us on average), nginx %+.0f us\n", c, o - d, k, n - d }' \
	    >>"$work/added"
done
cat "$work/added"
bench_print_profiles
