#!/bin/sh
# Benchmark: many message streams held open at once, through llamachatd and
# through nginx (proxy_pass with proxy_buffering off) to the same fake
# upstream, which holds each stream after its first event. Prints, per
# count, errors, first-event latency p50/p99 (the first event of streams that
# all start at once, so it measures the setup of a crowd, not one stream)
# and the proxy's memory per stream (PSS delta). Needs python3. Not a test.
# TLS=1 adds a row for llamachatd whose upstream is TLS and HTTP/2, as
# LlamaCloud is: an nginx front (a certificate made for the run, 128
# streams per connection) before the same fake.
# Usage: [TLS=1] bench/streams.sh [counts...]
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
	kill "$daemon" "$nginx_pid"
	wait "$daemon" "$nginx_pid" 2>/dev/null || true
	if [ "${TLS:-0}" = 1 ]; then
		[ -e "$work/cert.pem" ] || openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=127.0.0.1 \
		    -addext subjectAltName=IP:127.0.0.1 -keyout "$work/key.pem" -out "$work/cert.pem" >/dev/null 2>&1
		bench_start_nginx '    location / {
      proxy_pass http://fake;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
      proxy_read_timeout 600s;
    }' "ssl http2" "ssl_certificate $work/cert.pem; ssl_certificate_key $work/key.pem; http2_max_concurrent_streams 128;"
		rm -rf "$work/store"
		bench_start_daemon "https://127.0.0.1:$nginx_port" "ca_file = \"$work/cert.pem\";"
		printf '| %-10s ' "tls+h2"
		python3 "$top/bench/streams.py" "$port" "$fake_port" "$daemon" "$n"
		kill "$daemon" "$nginx_pid"
		wait "$daemon" "$nginx_pid" 2>/dev/null || true
	fi
	kill "$fake"
	wait "$fake" 2>/dev/null || true
done
