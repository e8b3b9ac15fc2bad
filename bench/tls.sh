#!/bin/sh
# Benchmark: TLS on the listeners, llamachatd against nginx with the same
# certificate (P-256, from a CA this script makes) and ssl_session_cache, one
# worker each, in the same run: cached lookups over TLS with keep-alive
# (wrk), then new full handshakes per second (openssl s_time -new, each
# connection one handshake and one small GET). Not a test: numbers depend
# on the machine. Usage: bench/tls.sh [seconds] [connection counts...]
set -eu
seconds=${1:-5}
[ $# -gt 0 ] && shift
counts=${*:-1 32}
top=$(cd "$(dirname "$0")/.." && pwd)
build="$top/build/cc"
. "$top/bench/common.sh"
bench_need wrk nginx python3 openssl
make -s -C "$top" all tests >/dev/null

(
	cd "$work"
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key -out ca.pem \
	    -days 30 -subj /CN=bench-ca 2>/dev/null
	openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout tls.key -out tls.csr \
	    -subj /CN=localhost 2>/dev/null
	printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >tls.ext
	openssl x509 -req -in tls.csr -CA ca.pem -CAkey ca.key -set_serial 1 -days 30 -extfile tls.ext \
	    -out tls.pem 2>/dev/null
	chmod 600 tls.key
)

bench_start_fake
bench_daemon_conf
cat >>"$work/llamachatd.conf" <<CONF
tls = { listen = [ "127.0.0.1:0" ]; cert_file = "$work/tls.pem"; key_file = "$work/tls.key"; };
CONF
: >"$work/daemon.log"
LLAMA_CLOUD_API_KEY=bench-key "$build/llamachatd" -c "$work/llamachatd.conf" 2>"$work/daemon.log" &
bench_wait_daemon $!
tls_port=$(sed -n 's/.*listening on 127.0.0.1:\([0-9]*\) (TLS).*/\1/p' "$work/daemon.log" | head -n 1)
bench_cached_session
bench_start_nginx "    root $work/www;" "ssl" \
    "ssl_certificate $work/tls.pem; ssl_certificate_key $work/tls.key; ssl_session_cache shared:SSL:10m;"

echo "cached summary lookup over TLS (keep-alive), ${seconds}s a run, $(nproc) CPUs, $(uname -r)"
echo "| server     | conns | requests/s |      p50 |      p99 | CPU us/req | non-2xx"
echo "|------------|-------|------------|----------|----------|--------|----"
for c in $counts; do
	bench_wrk llamachatd "$daemon" "https://127.0.0.1:$tls_port$path" "$c" "$seconds"
	bench_wrk nginx "$nginx_pid" "https://127.0.0.1:$nginx_port$path" "$c" "$seconds"
done

# s_time -new: one full handshake per connection, for seconds; prints
# "N connections in T real seconds".
handshakes() {
	before=$(cpu_ticks "$2")
	out=$(openssl s_time -connect "127.0.0.1:$3" -new -time "$seconds" -CAfile "$work/ca.pem" -www "$path" 2>/dev/null |
	    awk '/connections in/ && /real/ { print $1, $4; exit }')
	after=$(cpu_ticks "$2")
	n=${out%% *}
	t=${out##* }
	awk -v name="$1" -v n="$n" -v t="$t" -v ticks=$((after - before)) -v hz="$(getconf CLK_TCK)" \
	    'BEGIN { printf "| %-10s | %10.0f | %10.1f\n", name, n / t, ticks / hz / n * 1e6 }'
}
echo
echo "new full TLS handshakes (openssl s_time -new, one client), ${seconds}s a run"
echo "| server     | handshakes/s | CPU us/handshake"
echo "|------------|------------|-----------"
handshakes llamachatd "$daemon" "$tls_port"
handshakes nginx "$nginx_pid" "$nginx_port"
