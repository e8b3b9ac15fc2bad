#!/bin/sh
# Benchmark: session creates (POST /api/v1/chat) through llamachatd, which
# commits each session durably before its answer, against nginx proxy_pass
# (keep-alive upstream, the key set by proxy_set_header Authorization) to
# the same fake upstream, and against the fake directly. One worker each,
# access logs off, the same wrk load on loopback, alternating. Prints
# requests/s, p50/p99 and CPU per request (of llamachatd or nginx, not the
# fake). Not a test. Usage: bench/create.sh [seconds] [connection counts...]
set -eu
seconds=${1:-5}
[ $# -gt 0 ] && shift
counts=${*:-1 32 256}
top=$(cd "$(dirname "$0")/.." && pwd)
build="$top/build/cc"
work=$(mktemp -d "${TMPDIR:-/tmp}/llamachatd-create-XXXXXX")
pids=""
cleanup() {
	for pid in $pids; do kill "$pid" 2>/dev/null || true; done
	for pid in $pids; do wait "$pid" 2>/dev/null || true; done
	rm -rf "$work"
}
trap cleanup EXIT INT TERM
for tool in wrk nginx; do
	command -v $tool >/dev/null 2>&1 || { echo "bench: needs wrk and nginx: apt-get install -y wrk nginx-light" >&2; exit 1; }
done
make -s -C "$top" all tests >/dev/null

"$build/tests/fake_upstream" --port-file "$work/fake.port" --key bench-key >/dev/null 2>&1 &
fake=$!
pids="$pids $fake"
while [ ! -s "$work/fake.port" ]; do sleep 0.05; done
fake_port=$(cat "$work/fake.port")
cat >"$work/llamachatd.conf" <<CONF
listen = [ "127.0.0.1:0" ];
upstream = { base_url = "http://127.0.0.1:$fake_port"; };
store = { path = "$work/store"; };
log = { level = "info"; access_log = "off"; };
CONF
LLAMA_CLOUD_API_KEY=bench-key "$build/llamachatd" -c "$work/llamachatd.conf" 2>"$work/daemon.log" &
daemon=$!
pids="$pids $daemon"
while ! grep -q " ready: " "$work/daemon.log" 2>/dev/null; do sleep 0.05; done
port=$(sed -n 's/.*listening on 127.0.0.1:\([0-9]*\).*/\1/p' "$work/daemon.log" | head -n 1)
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
  upstream fake { server 127.0.0.1:$fake_port; keepalive 64; }
  server {
    listen 127.0.0.1:$nginx_port;
    location / {
      proxy_pass http://fake;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Authorization "Bearer bench-key";
    }
  }
}
CONF
nginx -c "$work/nginx.conf" -p "$work" &
nginx_pid=$!
pids="$pids $nginx_pid"
sleep 0.3
cat >"$work/post.lua" <<'LUA'
wrk.method = "POST"
wrk.body = "{}"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer bench-key"
LUA

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
run() {
	name=$1 pid=$2 url=$3 connections=$4
	before=$(cpu_ticks "$pid")
	out=$(wrk -t1 -c"$connections" -d"${seconds}s" --latency -s "$work/post.lua" "$url")
	after=$(cpu_ticks "$pid")
	requests=$(printf '%s\n' "$out" | awk '/requests in/ { print $1 }')
	rps=$(printf '%s\n' "$out" | awk '/Requests\/sec/ { print $2 }')
	p50=$(printf '%s\n' "$out" | awk '$1 == "50%" { print $2 }')
	p99=$(printf '%s\n' "$out" | awk '$1 == "99%" { print $2 }')
	errors=$(printf '%s\n' "$out" | awk '/Non-2xx/ { print $4 }')
	hz=$(getconf CLK_TCK)
	cpu=$(awk -v t=$((after - before)) -v hz="$hz" -v n="$requests" 'BEGIN { printf "%.1f", t / hz / n * 1e6 }')
	printf '| %-10s | %5s | %10s | %8s | %8s | %6s | %s\n' "$name" "$connections" "$rps" "$p50" "$p99" "$cpu" "${errors:-0}"
}
echo "session creates, ${seconds}s a run, $(nproc) CPUs"
echo "| path       | conns | requests/s |      p50 |      p99 | CPU us/req | non-2xx"
echo "|------------|-------|------------|----------|----------|--------|----"
for c in $counts; do
	run "direct" "$fake" "http://127.0.0.1:$fake_port/api/v1/chat" "$c"
	run "llamachatd" "$daemon" "http://127.0.0.1:$port/api/v1/chat" "$c"
	run "nginx" "$nginx_pid" "http://127.0.0.1:$nginx_port/api/v1/chat" "$c"
done
