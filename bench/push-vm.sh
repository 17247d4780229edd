#!/bin/sh
# SPDX-License-Identifier: MIT
# Copyright (C) 2026 wggwd authors
#
# Bulk push on the kernel's WireGuard against `wg setconf` (issue 17).
#
# On the host: boots the kernel test VM (tests/vm/run --bench push-vm; qemu
# TCG, so absolute times are slow: compare the ratios) and prints what it
# prints. Needs nats-server on the host (copied into the VM).
# Inside the VM, for each N (default 10^3 10^4 10^5; WGGWD_BENCH_NS on the
# host): N add messages (one fresh key and one /32 each, the peers of
# `netlink-bench genconf`) are published at once into a JetStream stream
# over the NATS text protocol (busybox nc), and `wggwd run` with
# source-nats -> store-sqlite -> installer-netlink on a fresh interface
# replays them; then `wg setconf` of the same N peers on another fresh one.
# Output (`name value unit`):
#   push_vm_s_1eK            first publish to the N-th ACK (nats.acked)
#   wg_setconf_s_1eK         `wg setconf` of the same peers
#   push_vm_to_setconf_1eK   push_vm_s / wg_setconf_s (goal at 10^5: <= 1.25)
#   push_vm_rss_per_peer_1eK the daemon's RSS growth over the push / N (bytes)
#   push_vm_rss_kb_1eK       its RSS after the push
#   push_vm_cpu_s_1eK, push_vm_nats_cpu_s_1eK   CPU time (user + system) of
#                            wggwd and of nats-server over the push
#   push_vm_idle_s_1eK       the VM's idle time over the push, all vCPUs
#   push_vm_vcpus            the VM's vCPUs (WGGWD_VM_SMP on the host;
#                            default 2 here; `wg setconf` uses one)
# With WGGWD_VM_BINS=/usr/bin/perf on the host, a profile of the daemon over
# each push follows as comments (the perf record slows the push: its
# figures are then not the bench's).
set -u
if [ -z "${WGGWD_VM:-}" ]; then
	# two vCPUs: nats-server, which a real gateway does not host, gets
	# one of its own, and the kernel's SETs run beside the loop
	export WGGWD_VM_SMP="${WGGWD_VM_SMP:-2}"
	. "$(dirname "$0")/../tests/vm/lib.sh"
	vm_bench push-vm
fi
. /opt/wggwd/vm/lib.sh

B=$W/netlink-bench
STATS=/tmp/push.json
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
idle_ticks() { awk '$1 == "cpu" { print $5 + $6 }' /proc/stat; } # idle + iowait, all CPUs
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; } # user + system, 1/100 s

if [ ! -x /usr/bin/nats-server ] || [ ! -f $W/plugins/source-nats.so ] ||
	[ ! -f $W/plugins/store-sqlite.so ] || [ ! -x $B ]; then
	out "# skipped: nats-server (on the host), source-nats, store-sqlite or netlink-bench missing"
	exit 0
fi
$IP link set lo up
mkdir -p /tmp/js
nats-server -a 127.0.0.1 -p 4222 -js -sd /tmp/js >/tmp/nats.log 2>&1 &
NPID=$!
wait_for 600 grep -q "Server is ready" /tmp/nats.log || { out "# nats-server did not start"; exit 0; }
# the stream, over the text protocol (no nats CLI in the VM)
printf '{"name":"PUSH","subjects":["push.>"],"max_msgs":-1,"max_bytes":-1}' >/tmp/stream.json
{
	printf 'CONNECT {"verbose":false,"pedantic":false}\r\nSUB _r.vm 1\r\n'
	printf 'PUB $JS.API.STREAM.CREATE.PUSH _r.vm %d\r\n' "$(wc -c </tmp/stream.json)"
	cat /tmp/stream.json
	printf '\r\nPING\r\n'
	sleep 2
} | nc 127.0.0.1 4222 | tr -d '\r' >/tmp/stream.out
grep -q stream_create_response /tmp/stream.out || { sed 's/^/BENCH # /' /tmp/stream.out; exit 0; }

# A new interface for every run, never deleted (RCU waits under TCG).
port=51900
fresh() { # name: a new, empty interface with a private key
	port=$((port + 1))
	$IP link add "$1" type wireguard || return 1
	wg set "$1" private-key $W/vm/keys/gw.key listen-port $port || return 1
	$IP link set "$1" up
}

out "push_vm_vcpus $(grep -c '^processor' /proc/cpuinfo) cpus"
for n in $(cat $W/bench/ns); do
	case $n in
	1000) s=1e3 ;; 10000) s=1e4 ;; 100000) s=1e5 ;; 1000000) s=1e6 ;; *) s=$n ;;
	esac
	echo "BENCH # t=$(cut -d' ' -f1 /proc/uptime) start $n"
	rm -f /tmp/peers.conf
	$B genconf "$n" 1 /tmp/peers.conf || { out "error_$s 1 genconf"; continue; }
	# the same peers as messages: PUB lines of the text protocol
	awk -v subj="push.n$n" '
		$1 == "PublicKey" { k = $3 }
		$1 == "AllowedIPs" {
			m = sprintf("{\"op\":\"add\",\"public_key\":\"%s\",\"version\":1,\"allowed_ips\":[\"%s\"]}", k, $3)
			printf "PUB %s %d\r\n%s\r\n", subj, length(m), m
		}' /tmp/peers.conf >/tmp/msgs
	fresh "wp$n" || { out "error_$s 1 interface"; continue; }
	cat >/tmp/push.yaml <<EOC
log_level: warn
stats_file: $STATS
stats_interval: 100ms
stages:
  nats:
    plugin: source-nats
    options:
      servers: [nats://127.0.0.1:4222]
      subject: push.n$n
      durable: d$n
      max_in_flight: 1024
      ack_wait: 60s
      allowed_prefixes: [any]
  store:
    plugin: store-sqlite
    options:
      path: /tmp/push$n.db
  wg:
    plugin: installer-netlink
    options:
      interface: wp$n
      allowed_prefixes: [any]
pipelines:
  push: [nats, store, wg]
EOC
	rm -f $STATS /tmp/push$n.db*
	$W/wggwd run -c /tmp/push.yaml >/tmp/push.log 2>&1 &
	WPID=$!
	# bound and idle (log_level warn: wait for its first stats instead)
	wait_for 600 test -s $STATS || { sed 's/^/BENCH # /' /tmp/push.log | tail; kill $WPID; continue; }
	sleep 1
	rss0=$(rss_kb $WPID)
	cpu0=$(cpu_ticks $WPID)
	ncpu0=$(cpu_ticks $NPID)
	idle0=$(idle_ticks)
	t0=$(now_ms)
	{
		printf 'CONNECT {"verbose":false,"pedantic":false}\r\n'
		cat /tmp/msgs
		printf 'PING\r\n'
		sleep 3
	} | nc 127.0.0.1 4222 >/dev/null &
	PUBPID=$!
	# a profile of the daemon over the push, when perf was brought in
	# (WGGWD_VM_BINS=/usr/bin/perf on the host; cpu-clock: TCG has no PMU)
	PERFPID=
	if [ -x $W/bin/perf ]; then
		perf record -e cpu-clock -F 99 --call-graph dwarf,16384 -p $WPID -o /tmp/perf.data \
			>/tmp/perf.out 2>&1 &
		PERFPID=$!
	fi
	acked() { stat_ge nats.acked "$n"; }
	if wait_for 36000 acked; then
		t1=$(now_ms)
		if [ -n "$PERFPID" ]; then
			kill -INT $PERFPID
			wait $PERFPID
			for k in dso pid; do
				perf report -i /tmp/perf.data --stdio --no-children --sort $k -g none 2>/dev/null |
					grep -v '^#' | grep . | head -12 | sed "s/^/BENCH # perf $k /"
			done
			perf report -i /tmp/perf.data --stdio --children --no-inline --sort sym \
				--percent-limit 1.5 -g none 2>/dev/null | grep -v '^#' | grep . | head -80 |
				sed 's/^/BENCH # perf /'
			rm -f /tmp/perf.data
		fi
		rss1=$(rss_kb $WPID)
		cpu1=$(cpu_ticks $WPID)
		ncpu1=$(cpu_ticks $NPID)
		idle1=$(idle_ticks)
		ms=$((t1 - t0))
		out "push_vm_s_$s $(awk -v m=$ms 'BEGIN { printf "%.3f", m / 1000 }') s"
		out "push_vm_rss_kb_$s $rss1 kB"
		out "push_vm_cpu_s_$s $(awk -v a=$cpu0 -v b=$cpu1 'BEGIN { printf "%.2f", (b - a) / 100 }') s"
		out "push_vm_nats_cpu_s_$s $(awk -v a=$ncpu0 -v b=$ncpu1 'BEGIN { printf "%.2f", (b - a) / 100 }') s"
		out "push_vm_idle_s_$s $(awk -v a=$idle0 -v b=$idle1 'BEGIN { printf "%.2f", (b - a) / 100 }') s"
		out "push_vm_rss_per_peer_$s $(awk -v a=$rss0 -v b=$rss1 -v n=$n 'BEGIN { printf "%.0f", (b - a) * 1024 / n }') bytes"
		out "# installed $(stat_of wg.installed), stored $(stat_of store.saved), poison $(stat_of nats.poison), peers on wp$n: $(wg show wp$n peers | wc -l)"
	else
		out "error_$s 1 acked $(stat_of nats.acked)/$n"
		sed 's/^/BENCH # /' /tmp/push.log | tail -5
		ms=0
	fi
	kill $PUBPID 2>/dev/null
	kill $WPID
	wait $WPID
	echo "BENCH # t=$(cut -d' ' -f1 /proc/uptime) push done"
	# wg setconf of the same peers, on a fresh interface (the [Interface]
	# too: without a private key the kernel skips each peer's precomputation)
	fresh "ws$n" || continue
	printf '[Interface]\nPrivateKey = %s\nListenPort = %s\n\n' "$(cat $W/vm/keys/gw.key)" $port \
		>/tmp/setconf.conf
	cat /tmp/peers.conf >>/tmp/setconf.conf
	$B time "wg_setconf_s_$s" wg setconf "ws$n" /tmp/setconf.conf >/tmp/sc.out 2>&1
	sc=$(awk '$1 == "wg_setconf_s_'$s'" { print $2 }' /tmp/sc.out)
	out "wg_setconf_s_$s ${sc:-0} s"
	if [ "$ms" -gt 0 ] && [ -n "$sc" ]; then
		out "push_vm_to_setconf_$s $(awk -v m=$ms -v s=$sc 'BEGIN { printf "%.2f", m / 1000 / s }') ratio"
	fi
	rm -f /tmp/setconf.conf /tmp/msgs /tmp/push$n.db*
done
kill $NPID
