#!/bin/sh
# Benchmark: cached session lookups, llamachatd against nginx serving the same
# JSON as a static file, one worker each, access logs off, the same wrk load
# on loopback, alternating. Prints requests/s, p50/p99 latency and CPU time
# per request for both at each connection count. Not a test: numbers depend
# on the machine. Usage: bench/lookup.sh [seconds] [connection counts...]
set -eu
seconds=${1:-5}
[ $# -gt 0 ] && shift
counts=${*:-1 32 256}
top=$(cd "$(dirname "$0")/.." && pwd)
build="$top/build/cc"
. "$top/bench/common.sh"
bench_need wrk nginx python3
make -s -C "$top" all tests >/dev/null

bench_start_fake
bench_start_daemon
bench_cached_session
bench_start_nginx "    root $work/www;"

echo "cached summary lookup, ${seconds}s a run, $(nproc) CPUs, $(uname -r)"
echo "| server     | conns | requests/s |      p50 |      p99 | CPU us/req | non-2xx"
echo "|------------|-------|------------|----------|----------|--------|----"
for c in $counts; do
	bench_wrk llamachatd "$daemon" "http://127.0.0.1:$port$path" "$c" "$seconds"
	bench_wrk nginx "$nginx_pid" "http://127.0.0.1:$nginx_port$path" "$c" "$seconds"
done
bench_print_profiles
