#!/bin/sh
# The Debian package, installed: builds nothing, takes the .deb that
# `make deb` built, and on this machine (as root: a scratch machine, since it
# installs, removes and purges llamachatd) checks that
#  - lintian reports no errors on it;
#  - apt-get installs it, with the binaries, units, conffile, man pages and
#    README.Debian in place, and one version everywhere;
#  - `llamachatd -t -c /etc/llamachatd/llamachatd.conf` passes, and the unit
#    passes systemd-analyze verify (and, where systemd runs, the socket is
#    enabled);
#  - the installed binary, started the way the unit starts it (foreground,
#    the installed config and store, only the upstream and the listen
#    address pointed at the fake upstream), serves a create and a lookup;
#  - apt-get remove keeps the config and the store, apt-get purge removes
#    them.
# Ends with "N passed, M failed". Usage: tests/package/test-package.sh DEB
set -u
deb=$(readlink -f "${1:?usage: tests/package/test-package.sh path/to/llamachatd_VERSION_ARCH.deb}")
top=$(cd "$(dirname "$0")/../.." && pwd)
fake_bin="$top/build/cc/tests/fake_upstream"
version=$(cat "$top/VERSION")
passed=0
failed=0

if [ "$(id -u)" -ne 0 ]; then
	echo "test-package: needs root on a scratch machine (it installs and purges llamachatd): skipped"
	exit 0
fi

check() { # check NAME COMMAND...: runs the command, counts and says the result
	name=$1
	shift
	if "$@" >"$work/out" 2>&1; then
		passed=$((passed + 1))
		echo "ok   $name"
	else
		failed=$((failed + 1))
		echo "FAIL $name"
		sed 's/^/     /' "$work/out" | tail -n 20
	fi
}

work=$(mktemp -d "${TMPDIR:-/tmp}/llamachatd-package-XXXXXX")
pids=""
cleanup() {
	for pid in $pids; do kill "$pid" 2>/dev/null || true; done
	for pid in $pids; do wait "$pid" 2>/dev/null || true; done
	rm -rf "$work"
}
trap cleanup EXIT INT TERM
export DEBIAN_FRONTEND=noninteractive

# A package left by an earlier run goes first, with its state.
apt-get purge -y -q llamachatd >/dev/null 2>&1 || true

lintian_clean() {
	lintian --allow-root "$deb" >"$work/lintian" 2>&1
	cat "$work/lintian"
	! grep -q '^E:' "$work/lintian"
}
check "lintian reports no errors" lintian_clean
check "apt-get install ./llamachatd_${version}_*.deb" apt-get install -y -q "$deb"

installed() {
	for f in /usr/sbin/llamachatd /usr/bin/llamachatctl /lib/systemd/system/llamachatd.service \
	    /lib/systemd/system/llamachatd.socket /etc/llamachatd/llamachatd.conf \
	    /usr/share/man/man8/llamachatd.8.gz /usr/share/man/man5/llamachatd.conf.5.gz \
	    /usr/share/man/man1/llamachatctl.1.gz /usr/share/doc/llamachatd/README.Debian \
	    /usr/share/doc/llamachatd/haproxy.cfg /usr/share/doc/llamachatd/grafana/llamachatd.json \
	    /usr/share/doc/llamachatd/prometheus/llamachatd-rules.yml; do
		[ -e "$f" ] || { echo "missing: $f"; return 1; }
	done
	dpkg-query -W -f='${Conffiles}\n' llamachatd | grep -q '/etc/llamachatd/llamachatd.conf'
}
check "files in place, the config a conffile" installed

one_version() {
	/usr/sbin/llamachatd --version | grep -qx "llamachatd $version" &&
	    /usr/bin/llamachatctl --version | grep -qx "llamachatctl $version" &&
	    zcat /usr/share/man/man8/llamachatd.8.gz | head -n 1 | grep -q "llamachatd $version" &&
	    dpkg-query -W -f='${Version}' llamachatd | grep -qx "$version"
}
check "one version ($version): binaries, man pages, package" one_version
check "llamachatd -t -c /etc/llamachatd/llamachatd.conf" /usr/sbin/llamachatd -t -c /etc/llamachatd/llamachatd.conf

verify_units() {
	command -v systemd-analyze >/dev/null || { echo "no systemd-analyze"; return 1; }
	systemd-analyze verify --man=no /lib/systemd/system/llamachatd.socket /lib/systemd/system/llamachatd.service
}
check "systemd-analyze verify of the units" verify_units
if [ -d /run/systemd/system ]; then
	check "llamachatd.socket enabled" systemctl is-enabled llamachatd.socket
else
	echo "skip llamachatd.socket enabled (systemd is not PID 1 here)"
fi

# The installed binary as the unit runs it, but against the fake upstream
# and on a free loopback port; its store is the installed one.
serve() {
	"$fake_bin" --port-file "$work/fake.port" --key package-test-key >"$work/fake.log" 2>&1 &
	pids="$pids $!"
	for _ in $(seq 100); do [ -s "$work/fake.port" ] && break; sleep 0.05; done
	sed -e 's|^listen = .*|listen = [ "127.0.0.1:0" ];|' \
	    -e "s|base_url = .*|base_url = \"http://127.0.0.1:$(cat "$work/fake.port")\";|" \
	    /etc/llamachatd/llamachatd.conf >"$work/llamachatd.conf"
	LLAMA_CLOUD_API_KEY=package-test-key /usr/sbin/llamachatd -c "$work/llamachatd.conf" 2>"$work/daemon.log" &
	daemon=$!
	pids="$pids $daemon"
	for _ in $(seq 200); do grep -q " ready: " "$work/daemon.log" && break; sleep 0.05; done
	port=$(sed -n 's/.*listening on 127.0.0.1:\([0-9]*\).*/\1/p' "$work/daemon.log" | head -n 1)
	[ -n "$port" ] || { cat "$work/daemon.log"; return 1; }
	id=$(curl -sf -X POST -H 'Content-Type: application/json' -d '{}' "http://127.0.0.1:$port/api/v1/chat" |
	    sed -n 's/.*"session_id":"\([^"]*\)".*/\1/p')
	[ -n "$id" ] || { echo "no session created"; cat "$work/daemon.log"; return 1; }
	curl -sf -D "$work/headers" -o /dev/null "http://127.0.0.1:$port/api/v1/chat/$id/summary" &&
	    grep -qi '^x-cache: HIT' "$work/headers" || { echo "the lookup was not a store hit"; return 1; }
	kill -TERM "$daemon"
	wait "$daemon"
}
check "the installed binary serves a create and a lookup" serve
check "the store is where the unit keeps it" test -e /var/lib/llamachatd/data.mdb

removed_keeps() {
	apt-get remove -y -q llamachatd || return 1
	[ ! -e /usr/sbin/llamachatd ] && [ -e /etc/llamachatd/llamachatd.conf ] && [ -e /var/lib/llamachatd/data.mdb ]
}
check "apt-get remove keeps the config and the store" removed_keeps
purged() {
	apt-get purge -y -q llamachatd || return 1
	[ ! -e /etc/llamachatd ] && [ ! -e /var/lib/llamachatd ]
}
check "apt-get purge removes them" purged

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
