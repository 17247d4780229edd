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
#   # t+MS ms: received … acked …   every 4 s, the push's progress
# Then the replay (host_nats below): the same N peers, already in a stream
# of a nats-server on the host, read by a fresh daemon:
#   push_vm_replay_s_1eK     the daemon's start to the N-th ACK
#   push_vm_replay_to_setconf_1eK   push_vm_replay_s / wg_setconf_s
#   push_vm_replay_cpu_s_1eK, push_vm_replay_idle_s_1eK, push_vm_replay_rss_kb_1eK
# Then the push through that server (NATS off the gateway, as in a fleet):
# a daemon bound to an empty subject, then the host publishes the N
# messages when the VM asks (10.0.2.100:4223):
#   push_vm_hostnats_s_1eK   the asking to the N-th ACK
#   push_vm_hostnats_to_setconf_1eK  push_vm_hostnats_s / wg_setconf_s
#                            (goal at 10^5: <= 1.25; the first push's
#                            nats-server runs on the VM's vCPUs under TCG)
#   push_vm_hostnats_cpu_s_1eK, push_vm_hostnats_idle_s_1eK
# With WGGWD_VM_BINS=/usr/bin/perf on the host, a profile of the daemon over
# each push follows as comments, the loop thread's own last (the perf
# record slows the push: its figures are then not the bench's).
set -u
# PUB lines of the NATS text protocol for the peers of a genconf file: one
# add message a peer (its key, its one allowed IP), on subject $1
pub_lines() { # subject, peers file
	awk -v subj="$1" '
		$1 == "PublicKey" { k = $3 }
		$1 == "AllowedIPs" {
			m = sprintf("{\"op\":\"add\",\"public_key\":\"%s\",\"version\":1,\"allowed_ips\":[\"%s\"]}", k, $3)
			printf "PUB %s %d\r\n%s\r\n", subj, length(m), m
		}' "$2"
}
stream_create() { # name, subjects, nc command...: 0 if created
	sc_name=$1 sc_subj=$2
	shift 2
	printf '{"name":"%s","subjects":["%s"],"max_msgs":-1,"max_bytes":-1}' "$sc_name" "$sc_subj" >/tmp/stream.$$.json
	{
		printf 'CONNECT {"verbose":false,"pedantic":false}\r\nSUB _r.vm 1\r\n'
		printf 'PUB $JS.API.STREAM.CREATE.%s _r.vm %d\r\n' "$sc_name" "$(wc -c </tmp/stream.$$.json)"
		cat /tmp/stream.$$.json
		printf '\r\nPING\r\n'
		sleep 2
	} | "$@" | tr -d '\r' >/tmp/stream.$$.out
	grep -q stream_create_response /tmp/stream.$$.out && ! grep -q '"error"' /tmp/stream.$$.out
	sc_rc=$?
	rm -f /tmp/stream.$$.json /tmp/stream.$$.out
	return $sc_rc
}

# The replay: a gateway that joins a fleet reads a stream the fleet's
# NATS holds already, and that server is not on the gateway. It runs here,
# on the host (native: about a second of CPU for 10^5 messages, against
# some 20 s under TCG in the VM), holds the N messages before the VM boots,
# and the VM reaches it through qemu's user network, restricted to that
# one forwarded port. WGGWD_PUSH_REPLAY=0 leaves it out.
host_nats() {
	[ "${WGGWD_PUSH_REPLAY:-1}" = 1 ] && command -v nats-server >/dev/null &&
		command -v busybox >/dev/null || return 0
	hn_root=$(cd "$(dirname "$0")/.." && pwd)
	hn_bld=${WGGWD_BUILD:-$hn_root/build}
	hn_nb=$hn_bld/plugins/installer-netlink/netlink-bench
	[ -x "$hn_nb" ] || ninja -C "$hn_bld" plugins/installer-netlink/netlink-bench >/dev/null 2>&1 ||
		return 0
	hn=$(mktemp -d /tmp/wggwd-push-nats.XXXXXX)
	hn_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
	nats-server -a 127.0.0.1 -p "$hn_port" -js -sd "$hn/js" >"$hn/nats.log" 2>&1 &
	hn_pid=$!
	trap 'kill $hn_pid 2>/dev/null; wait $hn_pid 2>/dev/null; rm -rf "$hn"' EXIT
	for _ in $(seq 100); do
		grep -q "Server is ready" "$hn/nats.log" && break
		sleep 0.1
	done
	stream_create REPLAY "replay.>" busybox nc 127.0.0.1 "$hn_port" &&
		stream_create HPUSH "hpush.>" busybox nc 127.0.0.1 "$hn_port" || {
		echo "# replay: the host's nats-server did not take the streams" >&2
		return 0
	}
	for n in ${WGGWD_BENCH_NS:-1000 10000 100000}; do
		rm -f "$hn/peers.conf"
		"$hn_nb" genconf "$n" 1 "$hn/peers.conf" >/dev/null || return 0
		{
			printf 'CONNECT {"verbose":false,"pedantic":false}\r\n'
			pub_lines "replay.n$n" "$hn/peers.conf"
			printf 'PING\r\n'
			sleep 1
		} | busybox nc 127.0.0.1 "$hn_port" >/dev/null
		# the same messages for the push through this server, published
		# when the VM asks (pub below) to a daemon already bound
		{
			printf 'CONNECT {"verbose":false,"pedantic":false}\r\n'
			pub_lines "hpush.n$n" "$hn/peers.conf"
			printf 'PING\r\n'
		} >"$hn/hpush.$n"
	done
	rm -f "$hn/peers.conf"
	printf '#!/bin/sh\nexec busybox nc 127.0.0.1 %s\n' "$hn_port" >"$hn/fwd"
	# a connection to 10.0.2.100:4223 that writes N publishes those N here
	cat >"$hn/pub" <<EOP
#!/bin/sh
read -r n
[ -f "$hn/hpush.\$n" ] || exit 0
{ cat "$hn/hpush.\$n"; sleep 2; } | busybox nc 127.0.0.1 $hn_port >/dev/null
echo published
EOP
	chmod 755 "$hn/fwd" "$hn/pub"
	export WGGWD_VM_QEMU_OPTS="${WGGWD_VM_QEMU_OPTS:-} -netdev user,id=n0,restrict=on,guestfwd=tcp:10.0.2.100:4222-cmd:$hn/fwd,guestfwd=tcp:10.0.2.100:4223-cmd:$hn/pub -device virtio-net-pci,netdev=n0"
}

if [ -z "${WGGWD_VM:-}" ]; then
	# two vCPUs: the kernel's SETs run beside the loop (and, in the first
	# push, beside the nats-server the VM runs too)
	export WGGWD_VM_SMP="${WGGWD_VM_SMP:-2}"
	. "$(dirname "$0")/../tests/vm/lib.sh"
	host_nats
	vm_bench push-vm
fi
. /opt/wggwd/vm/lib.sh

B=$W/netlink-bench
# WGGWD_BENCH_OPTS on the host: max_in_flight=N (source-nats), cache_size=S
# (store-sqlite), message_size=S (installer-netlink), replay_in_flight=N
# (the replay's max_in_flight: its ACKs and the next messages cross qemu's
# user network, so a larger window covers the round trip: 1.49 at 1024
# against 1.37 at 8192 for 10^5)
mif=1024 cache=4MiB msize=32k rmif=8192
for w in $(cat $W/bench/opts 2>/dev/null); do
	case $w in
	max_in_flight=*) mif=${w#*=} ;;
	cache_size=*) cache=${w#*=} ;;
	message_size=*) msize=${w#*=} ;;
	replay_in_flight=*) rmif=${w#*=} ;;
	esac
done
STATS=/tmp/push.json
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
idle_ticks() { awk '$1 == "cpu" { print $5 + $6 }' /proc/stat; } # idle + iowait, all CPUs
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; } # user + system, 1/100 s
ms_s() { awk -v m="$1" 'BEGIN { printf "%.3f", m / 1000 }'; }
ticks_s() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b - a) / 100 }'; } # from, to

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
stream_create PUSH "push.>" nc 127.0.0.1 4222 || { out "# the VM's nats-server did not take the stream"; exit 0; }
# the host's server, for the replay (host_nats): through a virtio NIC
replay=
if [ -s /modules/net/order ] && [ -z "${WGGWD_NO_REPLAY:-}" ]; then
	for m in $(cat /modules/net/order); do
		insmod "/modules/net/$m" 2>/dev/null
	done
	if $IP link set eth0 up 2>/dev/null && $IP addr add 10.0.2.15/24 dev eth0 2>/dev/null; then
		printf 'PING\r\n' | nc -w 5 10.0.2.100 4222 2>/dev/null | grep -q '^INFO' && replay=1
	fi
fi
[ -n "$replay" ] || out "# no replay: the host's nats-server is not reachable (WGGWD_PUSH_REPLAY=0, or no nats-server or busybox on the host)"

# A new interface for every run, never deleted (RCU waits under TCG).
port=51900
fresh() { # name: a new, empty interface with a private key
	port=$((port + 1))
	$IP link add "$1" type wireguard || return 1
	wg set "$1" private-key $W/vm/keys/gw.key listen-port $port || return 1
	$IP link set "$1" up
}

push_yaml() { # server, subject, durable, database, interface, max_in_flight
	cat >/tmp/push.yaml <<EOC
log_level: warn
stats_file: $STATS
stats_interval: 100ms
stages:
  nats:
    plugin: source-nats
    options:
      servers: [nats://$1:4222]
      subject: $2
      durable: $3
      max_in_flight: $6
      ack_wait: 60s
      allowed_prefixes: [any]
  store:
    plugin: store-sqlite
    options:
      path: $4
      cache_size: $cache
  wg:
    plugin: installer-netlink
    options:
      interface: $5
      allowed_prefixes: [any]
      message_size: $msize
pipelines:
  push: [nats, store, wg]
EOC
}

out "push_vm_vcpus $(grep -c '^processor' /proc/cpuinfo) cpus"
out "# clocksource $(cat /sys/devices/system/clocksource/clocksource0/current_clocksource); max_in_flight $mif (replay $rmif), cache_size $cache, message_size $msize"
for n in $(cat $W/bench/ns); do
	case $n in
	1000) s=1e3 ;; 10000) s=1e4 ;; 100000) s=1e5 ;; 1000000) s=1e6 ;; *) s=$n ;;
	esac
	echo "BENCH # t=$(cut -d' ' -f1 /proc/uptime) start $n"
	rm -f /tmp/peers.conf
	$B genconf "$n" 1 /tmp/peers.conf || { out "error_$s 1 genconf"; continue; }
	# the same peers as messages (the host's replay stream has them too:
	# genconf's keys follow from its seed)
	pub_lines "push.n$n" /tmp/peers.conf >/tmp/msgs
	fresh "wp$n" || { out "error_$s 1 interface"; continue; }
	push_yaml 127.0.0.1 "push.n$n" "d$n" "/tmp/push$n.db" "wp$n" "$mif"
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
	# the push's shape: every 4 s, what was received, stored, installed, ACKed
	(
		while sleep 4; do
			echo "BENCH # t+$(($(now_ms) - t0)) ms: received $(stat_of nats.received)" \
				"stored $(stat_of store.saved) installed $(stat_of wg.installed)" \
				"acked $(stat_of nats.acked)"
		done
	) &
	SHAPEPID=$!
	acked() { stat_ge nats.acked "$n"; }
	if wait_for 36000 acked; then
		t1=$(now_ms)
		kill $SHAPEPID
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
			# the loop thread's own: where its time goes, self
			perf report -i /tmp/perf.data --stdio --no-children --no-inline --sort dso,sym \
				--tid $WPID --percent-limit 0.4 -g none 2>/dev/null | grep -v '^#' | grep . |
				head -60 | sed 's/^/BENCH # perf loop /'
			rm -f /tmp/perf.data
		fi
		rss1=$(rss_kb $WPID)
		cpu1=$(cpu_ticks $WPID)
		ncpu1=$(cpu_ticks $NPID)
		idle1=$(idle_ticks)
		ms=$((t1 - t0))
		out "push_vm_s_$s $(ms_s $ms) s"
		out "push_vm_rss_kb_$s $rss1 kB"
		out "push_vm_cpu_s_$s $(ticks_s $cpu0 $cpu1) s"
		out "push_vm_nats_cpu_s_$s $(ticks_s $ncpu0 $ncpu1) s"
		out "push_vm_idle_s_$s $(ticks_s $idle0 $idle1) s"
		out "push_vm_rss_per_peer_$s $(awk -v a=$rss0 -v b=$rss1 -v n=$n 'BEGIN { printf "%.0f", (b - a) * 1024 / n }') bytes"
		out "# installed $(stat_of wg.installed), stored $(stat_of store.saved), poison $(stat_of nats.poison), peers on wp$n: $(wg show wp$n peers | wc -l)"
	else
		kill $SHAPEPID
		out "error_$s 1 acked $(stat_of nats.acked)/$n"
		sed 's/^/BENCH # /' /tmp/push.log | tail -5
		ms=0
	fi
	kill $PUBPID 2>/dev/null
	kill $WPID
	wait $WPID
	echo "BENCH # t=$(cut -d' ' -f1 /proc/uptime) push done"
	# the replay: the stream on the host's server holds the same peers;
	# from the daemon's start (it connects, binds, reads) to the N-th ACK
	rms=0
	if [ -n "$replay" ] && fresh "wr$n"; then
		push_yaml 10.0.2.100 "replay.n$n" "r$n" "/tmp/replay$n.db" "wr$n" "$rmif"
		rm -f $STATS /tmp/replay$n.db*
		idle0=$(idle_ticks)
		t0=$(now_ms)
		$W/wggwd run -c /tmp/push.yaml >/tmp/replay.log 2>&1 &
		WPID=$!
		if wait_for 36000 acked; then
			t1=$(now_ms)
			rms=$((t1 - t0))
			out "push_vm_replay_s_$s $(ms_s $rms) s"
			out "push_vm_replay_cpu_s_$s $(ticks_s 0 "$(cpu_ticks $WPID)") s"
			out "push_vm_replay_idle_s_$s $(ticks_s $idle0 "$(idle_ticks)") s"
			out "push_vm_replay_rss_kb_$s $(rss_kb $WPID) kB"
			out "# replay: installed $(stat_of wg.installed), stored $(stat_of store.saved), peers on wr$n: $(wg show wr$n peers | wc -l)"
		else
			out "error_replay_$s 1 acked $(stat_of nats.acked)/$n"
			sed 's/^/BENCH # /' /tmp/replay.log | tail -5
		fi
		kill $WPID
		wait $WPID
		rm -f /tmp/replay$n.db*
		echo "BENCH # t=$(cut -d' ' -f1 /proc/uptime) replay done"
	fi
	# the push through the host's server: NATS off the gateway, as in a
	# fleet (the first push runs it in this VM, where TCG makes its work
	# some 20 times dearer, on the vCPUs the kernel and the daemon need). A
	# daemon bound to an empty subject; then the host publishes the N
	# messages (its pub, asked through 10.0.2.100:4223); from the asking to
	# the N-th ACK
	hms=0
	if [ -n "$replay" ] && fresh "wh$n"; then
		push_yaml 10.0.2.100 "hpush.n$n" "h$n" "/tmp/hpush$n.db" "wh$n" "$rmif"
		rm -f $STATS /tmp/hpush$n.db*
		$W/wggwd run -c /tmp/push.yaml >/tmp/hpush.log 2>&1 &
		WPID=$!
		if wait_for 600 test -s $STATS && sleep 2; then
			cpu0=$(cpu_ticks $WPID)
			idle0=$(idle_ticks)
			t0=$(now_ms)
			echo "$n" | nc 10.0.2.100 4223 >/dev/null 2>&1 &
			PUBPID=$!
			if wait_for 36000 acked; then
				t1=$(now_ms)
				hms=$((t1 - t0))
				out "push_vm_hostnats_s_$s $(ms_s $hms) s"
				out "push_vm_hostnats_cpu_s_$s $(ticks_s $cpu0 "$(cpu_ticks $WPID)") s"
				out "push_vm_hostnats_idle_s_$s $(ticks_s $idle0 "$(idle_ticks)") s"
				out "# push through the host's server: installed $(stat_of wg.installed), stored $(stat_of store.saved), peers on wh$n: $(wg show wh$n peers | wc -l)"
			else
				out "error_hostnats_$s 1 acked $(stat_of nats.acked)/$n"
				sed 's/^/BENCH # /' /tmp/hpush.log | tail -5
			fi
			kill $PUBPID 2>/dev/null
		fi
		kill $WPID
		wait $WPID
		rm -f /tmp/hpush$n.db*
		echo "BENCH # t=$(cut -d' ' -f1 /proc/uptime) push through the host's server done"
	fi
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
	if [ "$rms" -gt 0 ] && [ -n "$sc" ]; then
		out "push_vm_replay_to_setconf_$s $(awk -v m=$rms -v s=$sc 'BEGIN { printf "%.2f", m / 1000 / s }') ratio"
	fi
	if [ "$hms" -gt 0 ] && [ -n "$sc" ]; then
		out "push_vm_hostnats_to_setconf_$s $(awk -v m=$hms -v s=$sc 'BEGIN { printf "%.2f", m / 1000 / s }') ratio"
	fi
	rm -f /tmp/setconf.conf /tmp/msgs /tmp/push$n.db*
done
kill $NPID
