# Set-up shared by the benchmarks (sourced, POSIX sh): a scratch directory
# removed at exit with every process started, the fake upstream, llamachatd,
# nginx on a free port, and one wrk run printed as a table row.
# Each script sets `top` and `build` before sourcing this.

work=$(mktemp -d "${TMPDIR:-/tmp}/llamachatd-bench-XXXXXX")
pids=""

bench_cleanup() {
	[ -n "${BENCH_KEEP:-}" ] && cp -r "$work" "$BENCH_KEEP" 2>/dev/null
	for pid in $pids; do kill "$pid" 2>/dev/null || true; done
	for pid in $pids; do wait "$pid" 2>/dev/null || true; done
	rm -rf "$work"
}
trap bench_cleanup EXIT INT TERM

# bench_need TOOL...: stop with the apt-get line when one is missing.
bench_need() {
	missing=""
	for tool in "$@"; do
		command -v "$tool" >/dev/null 2>&1 && continue
		case $tool in
		nginx) missing="$missing nginx-light" ;;
		callgrind_annotate) missing="$missing valgrind" ;;
		perf) missing="$missing linux-perf" ;;
		*) missing="$missing $tool" ;;
		esac
	done
	if [ -n "$missing" ]; then
		echo "bench: needs $*: apt-get install -y$missing" >&2
		exit 1
	fi
}

# A TCP port on loopback nobody listens on now.
bench_free_port() {
	python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Starts the fake upstream: sets fake (its pid) and fake_port.
bench_start_fake() {
	rm -f "$work/fake.port"
	"$build/tests/fake_upstream" --port-file "$work/fake.port" --key bench-key >/dev/null 2>&1 &
	fake=$!
	pids="$pids $fake"
	while [ ! -s "$work/fake.port" ]; do sleep 0.05; done
	fake_port=$(cat "$work/fake.port")
}

# bench_cached_session: creates a session through the daemon and copies its
# summary into $work/www, for nginx to serve the same JSON as a static file:
# sets path (the summary's path).
bench_cached_session() {
	id=$(curl -s -X POST "http://127.0.0.1:$port/api/v1/chat" | sed -n 's/.*"session_id":"\([^"]*\)".*/\1/p')
	path="/api/v1/chat/$id/summary"
	mkdir -p "$work/www$(dirname "$path")"
	curl -s "http://127.0.0.1:$port$path" >"$work/www$path"
}

# bench_daemon_conf [BASE_URL [UPSTREAM_SETTINGS]]: writes $work/llamachatd.conf
# for llamachatd against the fake (or BASE_URL), access log off, its store in
# the scratch directory, on a port of its choosing.
bench_daemon_conf() {
	cat >"$work/llamachatd.conf" <<CONF
listen = [ "127.0.0.1:0" ];
upstream = { base_url = "${1:-http://127.0.0.1:$fake_port}"; ${2:-} };
store = { path = "$work/store"; };
log = { level = "info"; access_log = "off"; };
CONF
}

# bench_wait_daemon PID: waits until the daemon whose stderr goes to
# $work/daemon.log is ready: sets daemon (PID) and port.
bench_wait_daemon() {
	daemon=$1
	pids="$pids $daemon"
	while ! grep -q " ready: " "$work/daemon.log" 2>/dev/null; do sleep 0.05; done
	port=$(sed -n 's/.*listening on 127.0.0.1:\([0-9]*\).*/\1/p' "$work/daemon.log" | head -n 1)
}

# bench_start_daemon [BASE_URL [UPSTREAM_SETTINGS]]: starts llamachatd with
# bench_daemon_conf's config: sets daemon (its pid) and port.
bench_start_daemon() {
	bench_daemon_conf "$@"
	: >"$work/daemon.log"
	LLAMA_CLOUD_API_KEY=bench-key "$build/llamachatd" -c "$work/llamachatd.conf" 2>"$work/daemon.log" &
	bench_wait_daemon $!
}

# bench_nginx_conf SERVER_BODY [LISTEN_FLAGS [SERVER_SETTINGS]]: writes
# $work/nginx.conf for one nginx worker, access log off, serving SERVER_BODY
# (the inside of a server block; "@PORT@" and "@FAKE@" are replaced) on a
# free port, with an upstream "fake" kept alive: sets nginx_port.
bench_nginx_conf() {
	nginx_port=$(bench_free_port)
	body=$(printf '%s\n' "$1" | sed -e "s|@PORT@|$nginx_port|g" -e "s|@FAKE@|$fake_port|g")
	cat >"$work/nginx.conf" <<CONF
daemon off;
master_process off;
worker_processes 1;
error_log $work/nginx.err;
pid $work/nginx.pid;
worker_rlimit_nofile 20000;
events { worker_connections 16384; }
http {
  access_log off;
  default_type application/json;
  upstream fake { server 127.0.0.1:$fake_port; keepalive 64; }
  server {
    listen 127.0.0.1:$nginx_port ${2:-};
    ${3:-}
$body
  }
}
CONF
}

# bench_wait_port PORT: waits until something listens on 127.0.0.1:PORT.
bench_wait_port() {
	while ! python3 -c "import socket; socket.create_connection(('127.0.0.1', $1)).close()" 2>/dev/null; do
		sleep 0.05
	done
}

# bench_start_nginx SERVER_BODY [LISTEN_FLAGS [SERVER_SETTINGS]]: starts
# nginx with bench_nginx_conf's config: sets nginx_pid and nginx_port.
bench_start_nginx() {
	bench_nginx_conf "$@"
	nginx -c "$work/nginx.conf" -p "$work" &
	nginx_pid=$!
	pids="$pids $nginx_pid"
	bench_wait_port "$nginx_port"
}

# bench_nginx_proxy MATCH: the nginx location (e.g. "/" or "= /api/v1/chat")
# that passes calls to the fake with keep-alive and the key, as llamachatd
# does, for bench_start_nginx's SERVER_BODY.
bench_nginx_proxy() {
	cat <<LOCATION
    location $1 {
      proxy_pass http://fake;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Authorization "Bearer bench-key";
    }
LOCATION
}

# A wrk script that POSTs an empty create body with a client token.
bench_post_script() {
	cat >"$work/post.lua" <<'LUA'
wrk.method = "POST"
wrk.body = "{}"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer bench-key"
LUA
}

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

# wrk's latency ("812.00us", "3.19ms", "1.02s") in microseconds.
bench_us() {
	printf '%s\n' "$1" | awk '/us$/ { print $1 + 0; next } /ms$/ { print $1 * 1000; next } /s$/ { print $1 * 1000000 }'
}

# bench_wrk NAME PID URL CONNECTIONS SECONDS [LUA]: one wrk run; prints a
# table row (requests/s, p50, p99, CPU of PID per request, non-2xx) and
# leaves rps, p50 and p99 (text) in those variables.
bench_wrk() {
	name=$1 pid=$2 url=$3 connections=$4 secs=$5
	script=${6:+-s $6}
	before=$(cpu_ticks "$pid")
	if [ "${PERF:-0}" = 1 ] && [ "$pid" = "${daemon:-}" ]; then
		perf record -q -g -o "$work/perf.$connections" -p "$pid" -- sleep "$secs" >/dev/null 2>&1 &
		perf_pid=$!
	fi
	# shellcheck disable=SC2086
	out=$(wrk -t1 -c"$connections" -d"${secs}s" --latency $script "$url")
	after=$(cpu_ticks "$pid")
	[ -n "${perf_pid:-}" ] && wait "$perf_pid" 2>/dev/null
	perf_pid=""
	requests=$(printf '%s\n' "$out" | awk '/requests in/ { print $1 }')
	rps=$(printf '%s\n' "$out" | awk '/Requests\/sec/ { print $2 }')
	p50=$(printf '%s\n' "$out" | awk '$1 == "50%" { print $2 }')
	p99=$(printf '%s\n' "$out" | awk '$1 == "99%" { print $2 }')
	errors=$(printf '%s\n' "$out" | awk '/Non-2xx/ { print $4 }')
	hz=$(getconf CLK_TCK)
	cpu=$(awk -v t=$((after - before)) -v hz="$hz" -v n="$requests" 'BEGIN { printf "%.1f", t / hz / n * 1e6 }')
	printf '| %-10s | %5s | %10s | %8s | %8s | %6s | %s\n' "$name" "$connections" "$rps" "$p50" "$p99" "$cpu" "${errors:-0}"
}

# With PERF=1, the top of each recorded profile (self time).
bench_print_profiles() {
	[ "${PERF:-0}" = 1 ] || return 0
	for f in "$work"/perf.*; do
		[ -e "$f" ] || continue
		echo "== llamachatd's profile at ${f##*.} connection(s): self time, top 25"
		perf report -i "$f" --no-children --sort symbol --stdio 2>/dev/null | grep -E '^ +[0-9]' | head -n 25
	done
}
