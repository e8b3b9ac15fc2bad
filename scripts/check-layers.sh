#!/bin/sh
# Checks the include rules of daemon/ and ctl/: each module (a .c, its .h
# and its _private.h, by name) may include its own layer's modules and
# those of the layers below it, never a layer above nor a sibling, and no
# modules may include each other in a circle. Prints every breach and exits
# 1, else says so and exits 0. Run by `make check-style`, and so by CI.
#
# The layers, top to bottom (rank: a layer may include lower ranks only,
# and its own layer):
#   6  top       daemon/*.c (main, metrics, health, notify) and ctl/
#   5  server    daemon/server/
#   4  chat      daemon/chat/
#   3  gate      daemon/gate/       3  upstream  daemon/upstream/    3  shared  daemon/shared/
#   2  http      daemon/http/       2  store     daemon/store/
#   1  base      daemon/base/
set -eu
cd "$(dirname "$0")/.."

for f in $(find daemon ctl -name '*.[ch]' | sort); do
	grep '^#include "' "$f" | sed 's/^#include "\([^"]*\)".*/\1/' | while read -r inc; do
		printf '%s %s\n' "$f" "$inc"
	done
done | awk '
function layer_of(path,   n, parts) {
	n = split(path, parts, "/")
	if (parts[1] == "ctl") return "top"
	if (parts[1] == "daemon" && n == 2) return "top"
	if (parts[1] == "daemon") return parts[2]
	if (n == 1) return "top"          # a bare include: a file of daemon/ itself
	return parts[1]                    # "layer/name.h" as included
}
function module_of(path,   n, parts, name) {
	n = split(path, parts, "/")
	name = parts[n]
	sub(/\.[ch]$/, "", name)
	sub(/_private$/, "", name)
	return layer_of(path) "/" name
}
BEGIN {
	rank["top"] = 6; rank["server"] = 5; rank["chat"] = 4; rank["gate"] = 3; rank["upstream"] = 3; rank["shared"] = 3
	rank["http"] = 2; rank["store"] = 2; rank["base"] = 1
	bad = 0
}
{
	from = $1; inc = $2
	fl = layer_of(from); tl = layer_of(inc)
	if (!(fl in rank) || !(tl in rank)) {
		printf "%s: includes \"%s\": no known layer\n", from, inc; bad = 1; next
	}
	if (fl != tl && rank[tl] >= rank[fl]) {
		printf "%s (layer %s) includes \"%s\" (layer %s): up or across a layer\n", from, fl, inc, tl
		bad = 1
	}
	fm = module_of(from); tm = module_of(inc)
	if (fm != tm && !((fm, tm) in edge)) {
		edge[fm, tm] = 1
		out[fm] = out[fm] " " tm
		nodes[fm] = 1; nodes[tm] = 1
	}
}
function visit(m,   i, j, k, n, next_of, t, cycle) {
	state[m] = 1
	stack[++depth] = m
	n = split(out[m], next_of, " ")
	for (i = 1; i <= n; i++) {
		t = next_of[i]
		if (state[t] == 1) {
			for (j = depth; j > 1 && stack[j] != t; j--)
				;
			cycle = ""
			for (k = j; k <= depth; k++)
				cycle = cycle stack[k] " -> "
			printf "include circle: %s%s\n", cycle, t
			bad = 1
		} else if (state[t] == 0) {
			visit(t)
		}
	}
	depth--
	state[m] = 2
}
END {
	for (m in nodes) state[m] = 0
	for (m in nodes) if (state[m] == 0) visit(m)
	if (bad) exit 1
	print "include rules: OK (no upward include, no circle)"
}'
