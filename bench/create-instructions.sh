#!/bin/sh
# Benchmark: user-space instructions per session create on the event loop,
# llamachatd against nginx proxy_pass, each under valgrind's callgrind (which
# counts instructions, not seconds: the figure holds on a busy or noisy
# machine, where bench/create.sh's rates do not). The kernel's share (the
# sockets, the commit's fsync) is not counted. Prints instructions per create
# for both and the top of llamachatd's profile by function, inclusive.
# Not a test. Usage: bench/create-instructions.sh [seconds]
set -eu
seconds=${1:-10}
top=$(cd "$(dirname "$0")/.." && pwd)
build="$top/build/cc"
. "$top/bench/common.sh"
bench_need wrk nginx python3 callgrind_annotate
make -s -C "$top" all tests >/dev/null

bench_start_fake
bench_post_script

# callgrind NAME TOGGLE COMMAND...: starts COMMAND under callgrind, counting
# only inside the function TOGGLE, its stderr into $work/NAME.log: sets vg.
callgrind() {
	name=$1 toggle=$2
	shift 2
	: >"$work/$name.log"
	valgrind --tool=callgrind --callgrind-out-file="$work/$name.cg" --toggle-collect="$toggle" "$@" \
	    2>"$work/$name.log" &
	vg=$!
	pids="$pids $vg"
}

# per_create LABEL NAME PID URL: loads URL with creates, stops PID (the
# callgrind run NAME) and prints the instructions it counted per create.
per_create() {
	label=$1 name=$2 pid=$3 url=$4
	requests=$(wrk -t1 -c8 -d"${seconds}s" -s "$work/post.lua" "$url" | awk '/requests in/ { print $1 }')
	kill "$pid"
	wait "$pid" 2>/dev/null || true
	total=$(callgrind_annotate "$work/$name.cg" 2>/dev/null | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1 }')
	printf '| %-10s | %8s | %12s |\n' "$label" "$requests" "$(awk -v t="$total" -v n="$requests" 'BEGIN { printf "%.0f", t / n }')"
}

echo "instructions per session create (user space, the event loop), wrk -c8 for ${seconds}s each"
echo "| server     | creates  | instructions |"
echo "|------------|----------|--------------|"
bench_daemon_conf
LLAMA_CLOUD_API_KEY=bench-key callgrind daemon event_base_loop "$build/llamachatd" -c "$work/llamachatd.conf"
bench_wait_daemon "$vg"
per_create llamachatd daemon "$daemon" "http://127.0.0.1:$port/api/v1/chat"
bench_nginx_conf "$(bench_nginx_proxy /)"
callgrind nginx ngx_process_events_and_timers nginx -c "$work/nginx.conf" -p "$work"
bench_wait_port "$nginx_port"
per_create nginx nginx "$vg" "http://127.0.0.1:$nginx_port/api/v1/chat"
echo "== llamachatd, inclusive, top 30"
callgrind_annotate --inclusive=yes "$work/daemon.cg" 2>/dev/null | grep -E '^ *[0-9,]+ \(' | head -n 31 | tail -n 30 |
    cut -c1-120
