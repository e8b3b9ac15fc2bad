#!/bin/sh
# Benchmark: many message streams held open at once through llamachatd (the
# fake upstream holds each one after its first event). Prints, per count,
# errors, first-event latency p50/p99 (the first event of streams that all
# start at once, so it measures the setup of a crowd, not one stream) and
# the daemon's memory per stream (PSS delta). Needs python3. Not a test.
# Usage: bench/streams.sh [counts...]
set -eu
counts=${*:-1000 5000 8000}
top=$(cd "$(dirname "$0")/.." && pwd)
build="$top/build/cc"
work=$(mktemp -d "${TMPDIR:-/tmp}/llamachatd-streams-XXXXXX")
pids=""
cleanup() {
	for pid in $pids; do kill "$pid" 2>/dev/null || true; done
	for pid in $pids; do wait "$pid" 2>/dev/null || true; done
	rm -rf "$work"
}
trap cleanup EXIT INT TERM
command -v python3 >/dev/null || { echo "bench: needs python3" >&2; exit 1; }
make -s -C "$top" all tests >/dev/null
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
echo "streams held at once through llamachatd, $(nproc) CPUs, open-file limit $(ulimit -n)"
echo "| count | errors | first p50 | first p99 | per stream |"
echo "|-------|--------|-----------|-----------|------------|"
for n in $counts; do
	rm -rf "$work"/*
	"$build/tests/fake_upstream" --port-file "$work/fake.port" --key bench-key >/dev/null 2>&1 &
	fake=$!
	while [ ! -s "$work/fake.port" ]; do sleep 0.05; done
	cat >"$work/llamachatd.conf" <<CONF
listen = [ "127.0.0.1:0" ];
upstream = { base_url = "http://127.0.0.1:$(cat "$work/fake.port")"; };
store = { path = "$work/store"; };
log = { level = "info"; access_log = "off"; };
CONF
	LLAMA_CLOUD_API_KEY=bench-key "$build/llamachatd" -c "$work/llamachatd.conf" 2>"$work/daemon.log" &
	daemon=$!
	pids="$fake $daemon"
	while ! grep -q " ready: " "$work/daemon.log" 2>/dev/null; do sleep 0.05; done
	port=$(sed -n 's/.*listening on 127.0.0.1:\([0-9]*\).*/\1/p' "$work/daemon.log" | head -n 1)
	python3 "$top/bench/streams.py" "$port" "$(cat "$work/fake.port")" "$daemon" "$n"
	kill "$daemon" "$fake"; wait "$daemon" "$fake" 2>/dev/null || true
done
