#!/bin/sh
# SPDX-License-Identifier: MIT
# Copyright (C) 2026 wggwd authors
#
# installer-netlink against `wg setconf`, on the kernel's WireGuard.
#
# On the host: boots the kernel test VM (tests/vm/run --bench; qemu TCG, so
# absolute times are ~9x native, MEASUREMENTS.md) and prints what it prints.
# Inside the VM: for each N (default 10^3, 10^4, 10^5; WGGWD_BENCH_NS on the
# host), on a fresh interface with a private key each time:
#   - the installer's bulk path (netlink-bench: N process() calls at once,
#     batched into SET_DEVICE messages), a dump, unchanged re-installs, one
#     remove() of all N (one eviction sweep): cold_* (the first N peers the
#     kernel allocates), then after wg (warm, like wg) the main numbers;
#   - `wg setconf` of the same N peers, `wg show dump`, setconf of none.
# Output: `name value unit` lines: install_s_1e5, wg_setconf_s_1e5,
# remove_s_1e5, dump_s_1e5, setconf_to_install_1e5 (>= 1.0: the installer
# is at least as fast), remove_to_install_1e5 (target <= 2), ...
set -u
if [ -z "${WGGWD_VM:-}" ]; then
	root=$(cd "$(dirname "$0")/.." && pwd)
	"$root/tests/vm/run" --bench >/tmp/wggwd-bench-netlink.tap 2>&1
	rc=$?
	sed -n '/^[a-z][a-z0-9_]* [0-9.e+-]* [a-z/%]*$/p' /tmp/wggwd-bench-netlink.tap
	grep -E '^not ok|^#' /tmp/wggwd-bench-netlink.tap >&2
	exit $rc
fi

W=/opt/wggwd
IP=/bin/ip
B=$W/netlink-bench
P=$W/plugins/installer-netlink.so
out() { echo "BENCH $*"; }

# A new interface for every run, never deleted: deleting one that has
# held many peers waits on RCU for minutes under TCG.
port=51900
fresh() { # name: a new, empty interface with a private key
	port=$((port + 1))
	$IP link add "$1" type wireguard || return 1
	wg set "$1" private-key $W/vm/keys/gw.key listen-port $port || return 1
	$IP link set "$1" up
}
val() { awk -v k="$1" '$1 == k { print $2 }' /tmp/bench.out; }

for n in $(cat $W/bench/ns); do
	case $n in
	1000) s=1e3 ;; 10000) s=1e4 ;; 100000) s=1e5 ;; 1000000) s=1e6 ;; *) s=$n ;;
	esac
	: >/tmp/bench.out
	echo "BENCH # t=$(cut -d' ' -f1 /proc/uptime) start $n"
	# the installer, cold: the first N peers this kernel ever held (its
	# allocations come from fresh pages); reported as cold_*
	fresh "wc$n" || { out "error_$s 1 interface"; continue; }
	# shellcheck disable=SC2046 # the options are words
	if $B run $P "$n" 1 interface="wc$n" $(cat $W/bench/opts) >/tmp/cold.out 2>/tmp/bench.err; then
		sed 's/^/cold_/' /tmp/cold.out >>/tmp/bench.out
	else
		sed 's/^/BENCH # /' /tmp/bench.err | head -20
		out "error_cold_$s 1 installer"
	fi
	echo "BENCH # t=$(cut -d' ' -f1 /proc/uptime) ours (cold) done"
	# wg setconf of the same peers, on a fresh interface
	fresh "ww$n" || continue
	# the [Interface] too: setconf without it would clear the private key,
	# and with no key the kernel skips each peer's X25519 precomputation
	printf '[Interface]\nPrivateKey = %s\nListenPort = %s\n\n' "$(cat $W/vm/keys/gw.key)" $port \
		>/tmp/peers.conf
	$B genconf "$n" 1 /tmp/peers.conf
	echo "BENCH # t=$(cut -d' ' -f1 /proc/uptime) genconf done"
	$B time "wg_setconf_s_$s" wg setconf "ww$n" /tmp/peers.conf >>/tmp/bench.out 2>/tmp/bench.err ||
		sed 's/^/BENCH # /' /tmp/bench.err
	[ "$(wg show "ww$n" private-key)" = "$(cat $W/vm/keys/gw.key)" ] ||
		out "# wg setconf left the interface without its private key"
	$B time "wg_show_dump_s_$s" sh -c "wg show ww$n dump >/tmp/wgdump" >>/tmp/bench.out 2>&1
	echo "wg_show_dump_lines_$s $(($(wc -l </tmp/wgdump) - 1)) peers" >>/tmp/bench.out
	rm -f /tmp/peers.conf /tmp/wgdump
	# and empty it again (one REPLACE_PEERS), for the memory
	printf '[Interface]\nPrivateKey = %s\nListenPort = %s\n' "$(cat $W/vm/keys/gw.key)" $port >/tmp/empty.conf
	$B time "wg_setconf_empty_s_$s" wg setconf "ww$n" /tmp/empty.conf >>/tmp/bench.out 2>&1
	# the installer again, after wg: both measured on warm memory
	fresh "wa$n" || { out "error_$s 1 interface"; continue; }
	# shellcheck disable=SC2046 # the options are words
	if ! $B run $P "$n" 1 interface="wa$n" $(cat $W/bench/opts) >>/tmp/bench.out 2>/tmp/bench.err; then
		sed 's/^/BENCH # /' /tmp/bench.err | head -20
		out "error_$s 1 installer"
	fi
	echo "BENCH # t=$(cut -d' ' -f1 /proc/uptime) wg done"
	i=$(val "install_s_$s")
	w=$(val "wg_setconf_s_$s")
	if [ -n "$i" ] && [ -n "$w" ]; then
		echo "setconf_to_install_$s $(awk -v a="$w" -v b="$i" 'BEGIN { printf "%.2f", a / b }') ratio" >>/tmp/bench.out
	fi
	while read -r line; do out "$line"; done </tmp/bench.out
done
