#!/bin/sh
# SPDX-License-Identifier: MIT
# Copyright (C) 2026 wggwd authors
#
# The flood benchmark (issue 14) on the kernel's WireGuard: completion
# reinject against adaptive, side by side.
#
# On the host: builds bench/flood_gen.c (flood-gen, into $WGGWD_BUILD),
# boots the kernel test VM (tests/vm/run --bench flood-vm, flood-gen passed
# with WGGWD_VM_BINS; qemu TCG and 1 vCPU, so absolute times are slow:
# compare the modes, and count the clients locked out) and prints what it
# prints. Or by hand:
#   cc -std=gnu11 -O2 -pthread bench/flood_gen.c $(pkg-config --cflags \
#     --libs libsodium libb2) -o $B/flood-gen
#   WGGWD_BUILD=$B WGGWD_VM_BINS=$B/flood-gen tests/vm/run --bench flood-vm
# Settings, as words in WGGWD_BENCH_OPTS (defaults): rate=150 (fresh-key
# authenticated initiations/s) garbage=6000 (wrong-mac1 initiations/s)
# pulse=0 (s of every second flood-gen is stopped, then catches up in a
# burst) sources=300 returning=4 new=4 gap=1.5 (s between knocks)
# modes=reinject,adaptive.
#
# Inside the VM: namespaces gw (kernel wg0 and wggwd: source-bpf ->
# decoder-noise -> resolver-static -> installer-netlink, on its uplink vg),
# sw (a router between vg and the clients, which also runs flood-gen: no
# bridge module in the VM, and one hop less for the flood), sink (where the
# cookie replies to the flood's 10.250.0.0/16 go: the kernel's cookie
# replies to the flood are sk's tx packets) and c1..cN, one kernel
# WireGuard client each, known to resolver-static. For each mode: the
# returning clients knock before the flood (installed by the pipeline);
# then the flood (minted first, then paced), 3 s for the interface to go
# under load, and the clients knock one after another, every gap s, each
# with an 8 s limit: returning ones restart (`ip link set wg0 down/up`:
# their peer is still on wg0, so the kernel must answer them itself) and
# new ones were never seen. Time to first ping reply: from the client's
# first echo request (held by WireGuard until its handshake completes).
#   reinject: completion reinject, invert_above 0, cookie_watch false
#   adaptive: completion reinject, source-bpf's defaults (invert_above,
#             invert_hold, cookie_watch if the build has it)
# Output (`name value unit`, per mode M):
#   flood_vm_M_{returning,new}_{p50,max}_ms, _locked_out (not in within 8 s)
#   flood_vm_M_kernel_cookies_to_flood   cookie replies the kernel sent
#                                        to the flood (it was under load)
#   flood_vm_M_<stage>_<counter>         wggwd's counters that explain it
#   flood_vm_M_flood_pps, _flood_s       what flood-gen sent a second, over
#                                        how long (a TCG VM falls behind)
set -u
if [ -z "${WGGWD_VM:-}" ]; then
	root=$(cd "$(dirname "$0")/.." && pwd)
	b=${WGGWD_BUILD:-$root/build}
	mkdir -p "$b" || exit 1
	# shellcheck disable=SC2046 # word splitting of pkg-config output is wanted
	cc -std=gnu11 -O2 -pthread "$root/bench/flood_gen.c" \
		$(pkg-config --cflags --libs libsodium libb2) -o "$b/flood-gen" || exit 1
	export WGGWD_VM_BINS="${WGGWD_VM_BINS:-} $b/flood-gen"
	. "$root/tests/vm/lib.sh"
	vm_bench flood-vm
fi
. /opt/wggwd/vm/lib.sh

GEN=$W/bin/flood-gen
K=$W/vm/keys
note() { echo "BENCH # $*"; }
STATS=/tmp/flood.json           # one a mode
ns() { n=$1; shift; $IP netns exec "$n" "$@"; }
txp() { ns "$1" cat "/sys/class/net/$2/statistics/tx_packets"; } # namespace, link

rate=150 garbage=6000 pulse=0 sources=300 n_ret=4 n_new=4 gap=1.5 modes=reinject,adaptive
for w in $(cat $W/bench/opts 2>/dev/null); do
	case $w in
	rate=*) rate=${w#*=} ;;
	garbage=*) garbage=${w#*=} ;;
	sources=*) sources=${w#*=} ;;
	pulse=*) pulse=${w#*=} ;;
	returning=*) n_ret=${w#*=} ;;
	new=*) n_new=${w#*=} ;;
	gap=*) gap=${w#*=} ;;
	modes=*) modes=${w#*=} ;;
	esac
done
n_cl=$((n_ret + n_new))
# the flood lasts: 3 s, the knocks, the last one's 8 s and a margin
secs=$(awk -v n=$n_cl -v g=$gap 'BEGIN { printf "%d\n", 3 + n * g + 10 }')
if [ ! -x $GEN ]; then
	out "# skipped: no $GEN (WGGWD_VM_BINS=.../flood-gen; see the head of bench/flood-vm.sh)"
	exit 0
fi
note "rate $rate/s fresh-key initiations + $garbage/s garbage from $sources sources, bursts after ${pulse}s stops, $secs s a mode; $n_ret returning + $n_new new clients, one every ${gap}s"

# -------------------------------------------------------------- topology
GW_PUB=$(cat $K/gw.pub)
$IP netns add gw && $IP netns add sw && $IP netns add sink
for n in gw sw sink; do ns $n $IP link set lo up; done
ns sw sysctl -qw net.ipv4.ip_forward=1
ns sw sysctl -qw net.ipv4.conf.all.rp_filter=0
$IP link add vg netns gw type veth peer name vs netns sw
ns gw $IP addr add 192.168.50.1/24 dev vg
ns sw $IP addr add 192.168.50.254/24 dev vs
ns gw $IP link set vg up
ns sw $IP link set vs up
ns gw $IP route add default via 192.168.50.254
$IP link add sk netns sw type veth peer name sk0 netns sink
ns sw $IP addr add 192.168.59.1/24 dev sk
ns sink $IP addr add 192.168.59.2/24 dev sk0
ns sw $IP link set sk up
ns sink $IP link set sk0 up
ns sw $IP route add 10.250.0.0/16 via 192.168.59.2
ns gw $IP link add wg0 type wireguard
ns gw wg set wg0 private-key $K/gw.key listen-port 51820
ns gw $IP addr add 10.99.0.1/24 dev wg0
ns gw $IP link set wg0 up
PEERS=/tmp/peers.yaml
: >$PEERS
i=1
while [ $i -le $n_cl ]; do
	c=c$i
	$IP netns add $c
	ns $c $IP link set lo up
	$IP link add s$i netns sw type veth peer name v netns $c
	ns sw $IP addr add 192.168.$((60 + i)).1/24 dev s$i
	ns sw $IP link set s$i up
	ns $c $IP addr add 192.168.$((60 + i)).2/24 dev v
	ns $c $IP link set v up
	ns $c $IP route add default via 192.168.$((60 + i)).1
	wg genkey >/tmp/$c.key
	pub=$(wg pubkey </tmp/$c.key)
	echo "$pub" >/tmp/$c.pub
	ns $c $IP link add wg0 type wireguard
	ns $c wg set wg0 private-key /tmp/$c.key listen-port 40000 peer "$GW_PUB" \
		endpoint 192.168.50.1:51820 allowed-ips 10.99.0.1/32
	ns $c $IP addr add 10.99.0.$((10 + i))/24 dev wg0
	ns $c $IP link set wg0 up
	printf '        - public_key: %s\n          allowed_ips: [10.99.0.%d/32]\n' \
		"$pub" $((10 + i)) >>$PEERS
	i=$((i + 1))
done
ns c1 ping -c 1 -W 5 192.168.50.1 >/dev/null 2>&1 || note "c1 cannot reach the gateway's uplink"
has_cw=false
$W/wggwd plugins source-bpf 2>/dev/null | grep -q cookie_watch && has_cw=true
note "source-bpf has cookie_watch: $has_cw"

# ------------------------------------------------------------ the daemon
conf() { # mode
	case $1 in
	reinject)
		sniff="
      invert_above: 0"
		$has_cw && sniff="$sniff
      cookie_watch: false" ;;
	*) sniff="" ;;
	esac
	cat <<EOF
log_level: info
stats_file: $STATS
stats_interval: 200ms
stages:
  sniff:
    plugin: source-bpf
    options:
      interface: vg$sniff
  noise:
    plugin: decoder-noise
  static:
    plugin: resolver-static
    options:
      peers:
$(cat $PEERS)
  wg0:
    plugin: installer-netlink
    options:
      interface: wg0
      restore_poll: 100ms
pipelines:
  pull: [sniff, noise, static, wg0]
EOF
}

knock() { # client number, kind: writes "kind ms" ("kind out": not in within 8 s)
	c=c$1
	ns $c $IP link set wg0 down
	ns $c $IP link set wg0 up
	t0=$(now_ms)
	if ns $c ping -c 1 -W 8 10.99.0.1 >/dev/null 2>&1; then
		dt=$(($(now_ms) - t0))
		[ $dt -le 8000 ] && echo "$2 $dt" >/tmp/knock.$1 && return
	fi
	echo "$2 out" >/tmp/knock.$1
	# why: the client's transfer (rx: it heard from the gateway) and the
	# gateway's view of its peer (endpoint, latest handshake, transfer)
	echo "c$1 $2: client $(ns $c wg show wg0 transfer | cut -f2-); gw $(ns gw wg show wg0 dump |
		grep "^$(cat /tmp/$c.pub)" | cut -f3,5-7 | tr '\t' ' ')" >/tmp/why.$1
}

summary() { # mode kind: p50, max, locked out from /tmp/knock.*
	cat /tmp/knock.* 2>/dev/null | awk -v k=$2 -v p="flood_vm_$1_$2" '
		$1 == k && $2 == "out" { out++ }
		$1 == k && $2 != "out" { v[++n] = $2 + 0 }
		END {
			for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
			if (n) {
				printf "BENCH %s_p50_ms %d ms\n", p, v[int((n + 1) / 2)]
				printf "BENCH %s_max_ms %d ms\n", p, v[n]
			}
			printf "BENCH %s_locked_out %d clients\n", p, out
			printf "BENCH # %s: %s\n", p, n ? "in" : "none in"
		}'
}

for mode in $(echo $modes | tr , ' '); do
	note "t=$(cut -d' ' -f1 /proc/uptime) mode $mode"
	# a gateway with none of the clients on it
	for f in /tmp/c*.pub; do ns gw wg set wg0 peer "$(cat $f)" remove; done
	sleep 2                 # the interface's under-load state lasts 1 s
	STATS=/tmp/flood-$mode.json
	conf $mode >/tmp/flood.yaml
	rm -f $STATS /tmp/knock.*
	$IP netns exec gw $W/wggwd run -c /tmp/flood.yaml >/tmp/flood-$mode.log 2>&1 &
	WPID=$!                 # ip netns exec execs: this is wggwd
	if ! wait_for 300 grep -q '"sniff.received"' $STATS; then
		note "wggwd did not start"
		sed 's/^/BENCH #   /' /tmp/flood-$mode.log | tail
		kill $WPID
		continue
	fi
	# returning clients: in before the flood, their peers stay on wg0
	i=1 warm=""
	while [ $i -le $n_ret ]; do
		knock $i warm
		warm="$warm $(cut -d' ' -f2 /tmp/knock.$i)"
		i=$((i + 1))
	done
	rm -f /tmp/knock.*
	note "$mode: returning clients in before the flood (ms):$warm; peers on wg0: $(ns gw wg show wg0 peers | wc -l)"
	# counters before the flood (the loop may be too busy to write them during it)
	for k in received kernel_drops inverted_under_load cookie_replies cookie_reinstalls; do
		eval "s0_$k=$(stat_of sniff.$k)"
	done
	dec0=$(stat_of noise.decoded)
	# the flood: minted first (slow under TCG), then paced
	GEN_OUT=/tmp/gen-$mode.out
	: >$GEN_OUT
	$IP netns exec sw $GEN "$GW_PUB" 192.168.50.1 51820 $rate $garbage $secs $sources >>$GEN_OUT 2>&1 &
	GPID=$!
	wait_for 3000 grep -q flooding $GEN_OUT || note "flood-gen did not start: $(cat $GEN_OUT)"
	note "$mode: $(head -1 $GEN_OUT)"
	ck0=$(txp sw sk)
	t0=$(now_ms)
	# pulse: flood-gen stopped `pulse` s of every second catches up at once
	# (it sends what the clock says it owes): bursts, to reach the 512
	# waiting handshake packets of "under load" at a lower mean rate (on a
	# TCG VM at 1.5-3k packets/s that was seldom enough; the default flood,
	# ~6k/s, keeps the kernel under load by saturating the one vCPU)
	PPID_=""
	if [ "$pulse" != 0 ]; then
		rest=$(awk -v p=$pulse 'BEGIN { print 1 - p }')
		(while kill -STOP $GPID 2>/dev/null; do
			sleep $pulse
			kill -CONT $GPID 2>/dev/null
			sleep $rest
		done) &
		PPID_=$!
	fi
	# the kernel's cookie replies to the flood, second by second (under load)
	(while kill -0 $GPID 2>/dev/null; do txp sw sk; sleep 1; done >/tmp/cookies.t) &
	SPID=$!
	sleep 3
	# knocks, one every gap s, alternating returning and new
	r=1 nw=1
	while [ $r -le $n_ret ] || [ $nw -le $n_new ]; do
		if [ $r -le $n_ret ]; then
			knock $r returning &
			r=$((r + 1))
			sleep $gap
		fi
		if [ $nw -le $n_new ]; then
			knock $((n_ret + nw)) new &
			nw=$((nw + 1))
			sleep $gap
		fi
	done
	wait_for 120 sh -c "[ \$(ls /tmp/knock.* 2>/dev/null | wc -l) -ge $n_cl ]"
	knocks_s=$((($(now_ms) - t0) / 1000))
	wait $GPID
	[ -z "$PPID_" ] || wait $PPID_
	wait $SPID
	sleep 1                 # the last counters
	sent=$(tail -1 $GEN_OUT)
	cookies=$(($(txp sw sk) - ck0))
	for k in received kernel_drops inverted_under_load cookie_replies cookie_reinstalls; do
		eval "d=\$(( \$(stat_of sniff.$k) - s0_$k ))"
		out "flood_vm_${mode}_sniff_$k $d items"
	done
	dec=$(($(stat_of noise.decoded) - dec0))
	summary $mode returning
	summary $mode new
	out "flood_vm_${mode}_kernel_cookies_to_flood $cookies packets"
	# what the VM sustained: packets flood-gen sent a second (of rate + garbage)
	out "flood_vm_${mode}_flood_pps $(echo "$sent" | sed -n 's/.*"sent": \([0-9]*\).*"seconds": \([0-9.]*\).*/\1 \2/p' | awk '{ printf "%d", $1 / $2 }') packets/s"
	out "flood_vm_${mode}_flood_s $(echo "$sent" | sed -n 's/.*"seconds": \([0-9.]*\).*/\1/p') s"
	out "flood_vm_${mode}_noise_decoded $dec items"
	for k in noise.drop_overloaded wg0.installed wg0.rearmed wg0.stall_retries \
		wg0.refused_afresh wg0.inverted; do
		out "flood_vm_${mode}_$(echo $k | tr . _) $(stat_of $k) items"
	done
	note "$mode: knocks over in $knocks_s s of flood; flood-gen: $sent"
	note "$mode: kernel cookies to the flood per second: $(awk -v c=$ck0 '{ printf "%d ", $1 - c; c = $1 }' /tmp/cookies.t)"
	note "$mode: knocks: $(cat /tmp/knock.* | tr '\n' ' ')"
	for f in /tmp/why.*; do [ -f "$f" ] && note "$mode: not in: $(cat "$f")"; done
	rm -f /tmp/why.*
	note "$mode: softnet drops (per cpu): $(awk '{ printf "0x%s ", $2 }' /proc/net/softnet_stat 2>/dev/null)"
	note "$mode: $(grep -c 'cookie\|under load' /tmp/flood-$mode.log) log lines on cookies/load; last lines:"
	tail -4 /tmp/flood-$mode.log | sed 's/^/BENCH #   /'
	kill -TERM $WPID
	wait $WPID
done
