#!/bin/sh
# Makes sure the Debian packages needed to build, run and test llamachatd are
# installed: installs the missing ones when run as root, otherwise prints the
# exact apt-get line to run and fails, so nothing half-builds.
set -eu

packages="gcc make pkg-config ca-certificates libevent-dev libcurl4-openssl-dev \
libjansson-dev liblmdb-dev libconfig-dev libcmocka-dev libssl-dev libsystemd-dev libhiredis-dev node-llhttp \
systemd man-db"
for flag in "$@"; do
	case "$flag" in
	--with-clang) packages="$packages clang clang-format" ;;
	--for-tests) packages="$packages prometheus haproxy nginx-light openssl redis-server" ;; # promtool; the balancer test; a TLS upstream; shared state
	--for-package) packages="$packages debhelper dpkg-dev lintian" ;; # make deb, make test-package
	*) echo "deps: unknown flag $flag" >&2; exit 2 ;;
	esac
done

missing=""
for p in $packages; do
	if ! dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
		missing="$missing $p"
	fi
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" -eq 0 ]; then
	echo "deps: installing:$missing"
	apt-get update
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $missing
	# The tests want the nginx, haproxy and promtool programs, not their system
	# services: the ones this installed (and so started) are stopped again.
	if [ -d /run/systemd/system ]; then
		for p in $missing; do
			case "$p" in
			nginx-light) systemctl disable --now nginx.service >/dev/null 2>&1 || true ;;
			haproxy) systemctl disable --now haproxy.service >/dev/null 2>&1 || true ;;
			prometheus) systemctl disable --now prometheus.service >/dev/null 2>&1 || true ;;
			redis-server) systemctl disable --now redis-server.service >/dev/null 2>&1 || true ;;
			esac
		done
	fi
	exit 0
fi

echo "deps: missing Debian packages:$missing" >&2
echo "deps: install them as root with:" >&2
echo "  apt-get update && apt-get install -y --no-install-recommends$missing" >&2
exit 1
