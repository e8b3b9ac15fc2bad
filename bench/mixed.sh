#!/bin/sh
# Benchmark: does anything block the loop? Cached lookups at 32 connections
# alone, then the same lookups while creates run at 8 connections, for
# llamachatd (whose creates each wait for a durable commit) and for nginx
# (static lookups of the same JSON, creates by proxy_pass to the same fake),
# in the same run. Prints both runs and the share of its lookup rate each
# keeps under the mix, with the p99 growth. Not a test.
# Usage: bench/mixed.sh [seconds]
set -eu
seconds=${1:-5}
top=$(cd "$(dirname "$0")/.." && pwd)
build="$top/build/cc"
. "$top/bench/common.sh"
bench_need wrk nginx python3
make -s -C "$top" all tests >/dev/null

bench_start_fake
bench_start_daemon
bench_cached_session
bench_start_nginx "    root $work/www;
$(bench_nginx_proxy '= /api/v1/chat')"
bench_post_script

# mixed NAME PID BASE_URL: lookups alone, then with creates beside them.
mixed() {
	server=$1 pid=$2 base=$3
	bench_wrk "$server" "$pid" "$base$path" 32 "$seconds" >"$work/alone"
	alone_rps=$rps alone_p99=$p99
	wrk -t1 -c8 -d"$((seconds + 2))s" -s "$work/post.lua" "$base/api/v1/chat" >"$work/creates" &
	creates=$!
	sleep 1
	bench_wrk "$server+mix" "$pid" "$base$path" 32 "$seconds" >"$work/mixed"
	wait "$creates"
	cat "$work/alone" "$work/mixed"
	awk -v a="$alone_rps" -v m="$rps" -v pa="$(bench_us "$alone_p99")" -v pm="$(bench_us "$p99")" \
	    -v c="$(awk '/Requests\/sec/ { print $2 }' "$work/creates")" -v n="$server" \
	    'BEGIN { printf "  %s keeps %.2fx of its lookup rate, p99 %.2fx, while doing %.0f creates/s\n", n, m / a, pm / pa, c }' \
	    >>"$work/summary"
}

echo "lookups at 32 connections, alone and beside creates at 8, ${seconds}s a run, $(nproc) CPUs"
echo "| server     | conns | requests/s |      p50 |      p99 | CPU us/req | non-2xx"
echo "|------------|-------|------------|----------|----------|--------|----"
: >"$work/summary"
mixed llamachatd "$daemon" "http://127.0.0.1:$port"
mixed nginx "$nginx_pid" "http://127.0.0.1:$nginx_port"
cat "$work/summary"
