#!/bin/sh
# Benchmark: the shared group (Redis on a unix socket) against the same
# daemon without it, both serving the same team client, alternating, the
# same wrk load on loopback: cached lookups (the hit path must not change:
# it never asks Redis), creates (the owner record and stream entry go to
# Redis in parallel with the commit, and the answer waits for both: at
# most one round trip more; the client's totals are written in the
# background), creates of a client with a rate limit (its bucket in Redis:
# one round trip before upstream), and the Redis calls each kind of
# request made, from llamachatd_shared_op_duration_seconds_count. Each
# pair runs three times, alternating (this machine's spread from run to
# run is larger than the effects), and the median ratio is printed with
# the three. Not a test. Usage: bench/shared.sh [seconds] [connection counts...]
set -eu
seconds=${1:-5}
[ $# -gt 0 ] && shift
counts=${*:-32 256}
top=$(cd "$(dirname "$0")/.." && pwd)
build="$top/build/cc"
. "$top/bench/common.sh"
bench_need wrk nginx python3 curl redis-server
make -s -C "$top" all tests >/dev/null

bench_start_fake
redis-server --port 0 --unixsocket "$work/redis.sock" --unixsocketperm 700 --save "" --appendonly no \
	--dir "$work" >/dev/null 2>&1 &
pids="$pids $!"
while [ ! -S "$work/redis.sock" ]; do sleep 0.05; done

token=bench-token-5b1
sha=$(printf '%s' "$token" | sha256sum | cut -d' ' -f1)
rated=bench-token-rated-9e2
rated_sha=$(printf '%s' "$rated" | sha256sum | cut -d' ' -f1)
# Two daemons, each with its own store: one plain, one with the shared group.
start_one() { # NAME EXTRA: sets the NAME_pid and NAME_port variables
	mkdir -p "$work/$1"
	cat >"$work/$1/llamachatd.conf" <<CONF
listen = [ "127.0.0.1:0" ];
upstream = { base_url = "http://127.0.0.1:$fake_port"; };
store = { path = "$work/$1/store"; };
log = { level = "info"; access_log = "off"; };
clients = ( { name = "bench"; token_sha256 = "$sha"; max_sessions_per_day = 100000000; metrics = true; },
            { name = "rated"; token_sha256 = "$rated_sha"; rate_per_s = 1000000; burst = 1000000; } );
$2
CONF
	LLAMA_CLOUD_API_KEY=bench-key "$build/llamachatd" -c "$work/$1/llamachatd.conf" 2>"$work/$1/daemon.log" &
	eval "$1_pid=$!"
	pids="$pids $!"
	while ! grep -q " ready: " "$work/$1/daemon.log" 2>/dev/null; do sleep 0.05; done
	eval "$1_port=$(sed -n 's/.*listening on 127.0.0.1:\([0-9]*\).*/\1/p' "$work/$1/daemon.log" | head -n 1)"
}
start_one off ""
start_one on "shared = { redis = \"unix:$work/redis.sock\"; instance = \"bench-a\"; };"

cat >"$work/get.lua" <<LUA
wrk.headers["Authorization"] = "Bearer $token"
LUA
cat >"$work/post.lua" <<LUA
wrk.method = "POST"
wrk.body = "{}"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $token"
LUA
sed "s/$token/$rated/" "$work/post.lua" >"$work/post-rated.lua"
session() { curl -s -X POST -H "Authorization: Bearer $token" "http://127.0.0.1:$1/api/v1/chat" |
	sed -n 's/.*"session_id":"\([^"]*\)".*/\1/p'; }
off_path="/api/v1/chat/$(session "$off_port")/summary"
on_path="/api/v1/chat/$(session "$on_port")/summary"

# The Redis calls the shared daemon has made, all operations together.
redis_calls() {
	curl -s -H "Authorization: Bearer $token" "http://127.0.0.1:$on_port/metrics" |
		awk '/^llamachatd_shared_op_duration_seconds_count/ { n += $2 } END { print n + 0 }'
}

echo "shared on (Redis on a unix socket) and off, ${seconds}s a run, $(nproc) CPUs, $(uname -r)"
echo "| server     | conns | requests/s |      p50 |      p99 | CPU us/req | non-2xx"
echo "|------------|-------|------------|----------|----------|--------|----"
for kind in lookup create create-rated; do
	for c in $counts; do
		if [ "$kind" = lookup ]; then
			off_url="http://127.0.0.1:$off_port$off_path" on_url="http://127.0.0.1:$on_port$on_path" lua="$work/get.lua"
		else
			off_url="http://127.0.0.1:$off_port/api/v1/chat" on_url="http://127.0.0.1:$on_port/api/v1/chat" lua="$work/post.lua"
			[ "$kind" = create-rated ] && lua="$work/post-rated.lua"
		fi
		ratios=""
		for round in 1 2 3; do
			bench_wrk "$kind-off" "$off_pid" "$off_url" "$c" "$seconds" "$lua"
			off_rps=$rps off_p50=$p50 off_p99=$p99
			calls=$(redis_calls)
			bench_wrk "$kind-on" "$on_pid" "$on_url" "$c" "$seconds" "$lua"
			on_requests=$requests
			calls=$(($(redis_calls) - calls))
			ratio=$(awk -v on="$rps" -v off="$off_rps" 'BEGIN { printf "%.3f", on / off }')
			ratios="$ratios $ratio"
			awk -v r="$ratio" -v c="$c" -v k="$kind" -v calls="$calls" -v n="$on_requests" \
				-v p50a="$off_p50" -v p50b="$p50" -v p99a="$off_p99" -v p99b="$p99" 'BEGIN {
				printf "  %s at %s connection(s): on/off requests/s %s, p50 %s -> %s, p99 %s -> %s, Redis calls per request %.3f\n",
					k, c, r, p50a, p50b, p99a, p99b, calls / n }'
		done
		median=$(printf '%s\n' $ratios | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }')
		echo "  $kind at $c connection(s): median on/off $median of$ratios"
	done
done
