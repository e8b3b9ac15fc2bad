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
work=$(mktemp -d "${TMPDIR:-/tmp}/llamachatd-bench-XXXXXX")
pids=""

cleanup() {
	for pid in $pids; do kill "$pid" 2>/dev/null || true; done
	for pid in $pids; do wait "$pid" 2>/dev/null || true; done
	rm -rf "$work"
}
trap cleanup EXIT INT TERM

for tool in wrk nginx; do
	if ! command -v $tool >/dev/null 2>&1; then
		echo "bench: needs wrk and nginx: apt-get install -y wrk nginx-light" >&2
		exit 1
	fi
done
make -s -C "$top" all >/dev/null

"$build/tests/fake_upstream" --port-file "$work/fake.port" --key bench-key >/dev/null 2>&1 &
pids="$pids $!"
while [ ! -s "$work/fake.port" ]; do sleep 0.05; done
cat >"$work/llamachatd.conf" <<CONF
listen = [ "127.0.0.1:0" ];
upstream = { base_url = "http://127.0.0.1:$(cat "$work/fake.port")"; };
store = { path = "$work/store"; };
log = { level = "info"; access_log = "off"; };
CONF
LLAMA_CLOUD_API_KEY=bench-key "$build/llamachatd" -c "$work/llamachatd.conf" 2>"$work/daemon.log" &
daemon=$!
pids="$pids $daemon"
while ! grep -q " ready: " "$work/daemon.log" 2>/dev/null; do sleep 0.05; done
port=$(sed -n 's/.*listening on 127.0.0.1:\([0-9]*\).*/\1/p' "$work/daemon.log" | head -n 1)
id=$(curl -s -X POST "http://127.0.0.1:$port/api/v1/chat" | sed -n 's/.*"session_id":"\([^"]*\)".*/\1/p')
path="/api/v1/chat/$id/summary"
mkdir -p "$work/www$(dirname "$path")"
curl -s "http://127.0.0.1:$port$path" >"$work/www$path"

nginx_port=$((port + 1))
cat >"$work/nginx.conf" <<CONF
daemon off;
master_process off;
worker_processes 1;
error_log $work/nginx.err;
pid $work/nginx.pid;
events { worker_connections 4096; }
http {
  access_log off;
  default_type application/json;
  server { listen 127.0.0.1:$nginx_port; root $work/www; }
}
CONF
nginx -c "$work/nginx.conf" -p "$work" &
nginx_pid=$!
pids="$pids $nginx_pid"
sleep 0.3

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

run() {
	name=$1 pid=$2 url=$3 connections=$4
	before=$(cpu_ticks "$pid")
	out=$(wrk -t1 -c"$connections" -d"${seconds}s" --latency "$url")
	after=$(cpu_ticks "$pid")
	requests=$(printf '%s\n' "$out" | awk '/requests in/ { print $1 }')
	rps=$(printf '%s\n' "$out" | awk '/Requests\/sec/ { print $2 }')
	p50=$(printf '%s\n' "$out" | awk '$1 == "50%" { print $2 }')
	p99=$(printf '%s\n' "$out" | awk '$1 == "99%" { print $2 }')
	hz=$(getconf CLK_TCK)
	cpu=$(awk -v t=$((after - before)) -v hz="$hz" -v n="$requests" 'BEGIN { printf "%.1f", t / hz / n * 1e6 }')
	printf '| %-10s | %5s | %10s | %8s | %8s | %6s |\n' "$name" "$connections" "$rps" "$p50" "$p99" "$cpu"
}

echo "cached summary lookup, ${seconds}s a run, $(nproc) CPUs, $(uname -r)"
echo "| server     | conns | requests/s |      p50 |      p99 | CPU us/req |"
echo "|------------|-------|------------|----------|----------|--------|"
for c in $counts; do
	run "llamachatd" "$daemon" "http://127.0.0.1:$port$path" "$c"
	run "nginx" "$nginx_pid" "http://127.0.0.1:$nginx_port$path" "$c"
done
