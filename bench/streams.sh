#!/bin/sh
# Benchmark: many message streams held open at once, through llamachatd and
# through nginx (proxy_pass with proxy_buffering off) to the same fake
# upstream, which holds each stream after its first event. Prints, per
# count, errors, first-event latency p50/p99 (the first event of streams that
# all start at once, so it measures the setup of a crowd, not one stream)
# and the proxy's memory per stream (PSS delta). Needs python3. Not a test.
# Usage: bench/streams.sh [counts...]
set -eu
counts=${*:-1000 5000 8000}
top=$(cd "$(dirname "$0")/.." && pwd)
build="$top/build/cc"
. "$top/bench/common.sh"
bench_need python3 nginx
make -s -C "$top" all tests >/dev/null
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
echo "streams held at once, $(nproc) CPUs, open-file limit $(ulimit -n)"
echo "| proxy      | count | errors | first p50 | first p99 | per stream |"
echo "|------------|-------|--------|-----------|-----------|------------|"
for n in $counts; do
	rm -rf "$work/store"
	bench_start_fake
	bench_start_daemon
	printf '| %-10s ' llamachatd
	python3 "$top/bench/streams.py" "$port" "$fake_port" "$daemon" "$n"
	bench_start_nginx '    location / {
      proxy_pass http://fake;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Authorization "Bearer bench-key";
      proxy_buffering off;
      proxy_read_timeout 600s;
    }'
	printf '| %-10s ' nginx
	python3 "$top/bench/streams.py" "$nginx_port" "$fake_port" "$nginx_pid" "$n"
	kill "$daemon" "$fake" "$nginx_pid"
	wait "$daemon" "$fake" "$nginx_pid" 2>/dev/null || true
done
