#!/bin/sh
# SPDX-License-Identifier: MIT
# Copyright (C) 2026 wggwd authors
#
# Runs inside the kernel test VM (busybox sh; tests/vm/run boots it). A
# gateway and a client network namespace, each with a kernel WireGuard
# interface, joined by a veth pair. wggwd runs in the gateway's namespace:
# source-bpf -> decoder-noise -> resolver-static -> installer-netlink ->
# evictor-idle. The gateway does not know the client until it knocks.
# What the userspace tests assert on wireguard-go, this asserts on the
# kernel: the three completion modes, a collision recovered within
# stall_retry, the keepalive put back after the handshake and at stop, and
# a peer with 1,000 allowed IPs, a lease that ends while the client pings;
# and a peer with 1,000 allowed IPs pushed over NATS (nats-server in the
# VM): source-nats -> store-sqlite -> installer-netlink; the fast return of
# a client evicted with a live session, the cookie watch (a crafted cookie
# reply: tests/vm/cookie.c), shadow mode, and revocation through
# resolver-http (busybox httpd) and store-sqlite.
# TAP lines go to the console prefixed with "TAP ".
. /opt/wggwd/vm/lib.sh          # IP, W, now_ms, wait_for, stat_of
K=$W/vm/keys
GW_PUB=$(cat $K/gw.pub)
CL_PUB=$(cat $K/cl.pub)
STATS=/tmp/stats.json
LOG=/tmp/wggwd.log

ok() { echo "TAP ok - $*"; }
nok() { echo "TAP not ok - $*"; }
skip() { echo "TAP ok - $1 # SKIP $2"; }
diag() { echo "TAP # $*"; }
check() { # description, command...
	d=$1
	shift
	if "$@"; then ok "$d"; else nok "$d"; fi
}
gw() { $IP netns exec gw "$@"; }
cl() { $IP netns exec cl "$@"; }
show_log() { sed 's/^/TAP #   /' $LOG | tail -${1:-30}; }

# -------------------------------------------------------------- topology
$IP netns add gw && $IP netns add cl
$IP link add vg type veth peer name vc
$IP link set vg netns gw
$IP link set vc netns cl
gw $IP link set lo up
cl $IP link set lo up
gw $IP addr add 192.168.50.1/24 dev vg
cl $IP addr add 192.168.50.2/24 dev vc
gw $IP link set vg up
cl $IP link set vc up
gw $IP link add wg0 type wireguard
gw wg set wg0 private-key $K/gw.key listen-port 51820
gw $IP addr add 10.99.0.1/24 dev wg0
gw $IP link set wg0 up
cl $IP link add wg0 type wireguard
cl wg set wg0 private-key $K/cl.key listen-port 40000 peer "$GW_PUB" \
	endpoint 192.168.50.1:51820 allowed-ips 10.99.0.0/24
cl $IP addr add 10.99.0.2/24 dev wg0
cl $IP link set wg0 up
check "topology: gateway and client namespaces, kernel WireGuard on both, veth between" \
	gw wg show wg0 public-key

# ------------------------------------------------------ start the daemon
conf() { # config file, extra installer options (default: role inversion), peers file
	extra=$2
	peers="
      peers:
        - public_key: $CL_PUB
          allowed_ips: [10.99.0.2/32]"
	[ -z "${3:-}" ] || peers="
      peers_file: $3"
	[ -n "$extra" ] || extra="
      completion: inversion"
	cat >"$1" <<EOF
log_level: debug
stats_file: $STATS
stats_interval: 100ms
stages:
  sniff:
    plugin: source-bpf
    options:
      interface: vg
  noise:
    plugin: decoder-noise
  static:
    plugin: resolver-static
    options:$peers
  wg0:
    plugin: installer-netlink
    options:
      interface: wg0
      restore_poll: 100ms$extra
  idle:
    plugin: evictor-idle
    options:
      interval: 500ms
      idle: 6s
      grace: 3s
      evict_live: true
pipelines:
  pull: [sniff, noise, static, wg0, idle]
EOF
}
start_wggwd() { # config
	rm -f $STATS
	$IP netns exec gw $W/wggwd run -c "$1" >$LOG 2>&1 &
	WPID=$!                 # ip netns exec execs: this is wggwd
	wait_for 300 grep -q "decoding initiations" $LOG 2>/dev/null && wait_for 100 test -s $STATS
}
stop_wggwd() {
	kill -TERM $WPID
	wait $WPID
}
knock() { # the client starts over (new session, so it initiates) and pings
	cl $IP link set wg0 down
	cl $IP link set wg0 up
	t0=$(now_ms)
	cl ping -c 1 -W 9 10.99.0.1 >/tmp/ping 2>&1
	prc=$?
	dt=$(($(now_ms) - t0))
	sleep 0.3
	[ $prc = 0 ] || sed 's/^/TAP #   /' /tmp/ping
	return $prc
}
conf /tmp/gw.yaml ""
if start_wggwd /tmp/gw.yaml; then
	ok "wggwd started in the gateway namespace (installer-netlink read wg0: key, port)"
else
	nok "wggwd started"
	show_log
fi
grep -q "wg0: public key $GW_PUB, listen port 51820, 0 peers" $LOG
check "installer-netlink reports the interface's public key and port" test $? = 0
diag "$(grep 'installer-netlink' $LOG | head -1)"

# ------------------------------------------------ role inversion, timed
# The client's first initiation reaches a gateway that does not know it:
# the kernel drops it, wggwd installs the peer with the packet's source as
# endpoint + keepalive, the gateway initiates, and the client's ping (held
# in its queue) flows. Without inversion the client retries after 5 s.
t0=$(now_ms)
cl ping -c 1 -W 9 10.99.0.1 >/tmp/ping1 2>&1
prc=$?
t1=$(now_ms)
dt=$((t1 - t0))
check "the client's first ping got through (${dt} ms)" test $prc = 0
sleep 0.3
inits=$(stat_of sniff.received)
# Role inversion can collide with the client's own handshake (measured on
# wireguard-go: about 1 in 7): the installer then installs the peer afresh
# after stall_retry, so the client never waits for its own 5 s retry.
check "no 5 s client retry: in ${dt} ms, $inits initiations, $(stat_of wg0.stall_retries) collision retries" \
	test $dt -lt 4500
check "the installer installed with role inversion (wg0.inverted = $(stat_of wg0.inverted))" \
	test "$(stat_of wg0.inverted)" -ge 1
ep=$(gw wg show wg0 endpoints | awk '{ print $2 }')
check "the gateway's peer has the client's address as endpoint ($ep)" \
	test "$ep" = "192.168.50.2:40000"
hs=$(gw wg show wg0 latest-handshakes | awk '{ print $2 }')
check "the handshake completed on the gateway (latest handshake $hs)" test "${hs:-0}" != 0
grep "installed: seen at" $LOG | sed 's/^/TAP #   /'

# keepalive: 25 to make the kernel initiate, back to the configured 0
if wait_for 50 sh -c "$IP netns exec gw wg show wg0 persistent-keepalive | grep -q off"; then
	ok "the configured keepalive (off) was restored after the first handshake"
else
	nok "keepalive restored: $(gw wg show wg0 persistent-keepalive)"
fi
check "counter wg0.keepalive_restored >= 1 ($(stat_of wg0.keepalive_restored))" test "$(stat_of wg0.keepalive_restored)" -ge 1

# ------------------------------------------------------------- eviction
# idle 6s, grace 3s, interval 500ms: the peer goes about 6 s after its
# last handshake (the client sends nothing more); evict_live, for its
# session is still live (the rule: tests/integration/evictor.py)
# Meanwhile wg0 also holds 1,000 peers wggwd did not make: its dumps are
# judged in slices over several loop turns (the netlink backend's array
# kept meanwhile), and the evictor takes them slice by slice.
awk 'BEGIN { srand(7); b = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	for (i = 0; i < 1000; i++) { k = ""; for (j = 0; j < 42; j++) k = k substr(b, int(rand() * 64) + 1, 1)
		k = k substr("AEIMQUYcgkosw048", int(rand() * 16) + 1, 1) "="
		printf "[Peer]\nPublicKey = %s\nAllowedIPs = 10.%d.%d.1/32\n", k, 200 + int(i / 250), i % 250 } }' >/tmp/others.conf
gw wg addconf wg0 /tmp/others.conf
others=$(gw wg show wg0 peers | grep -vcF "$CL_PUB")
t0=$(now_ms)
if wait_for 200 sh -c "! $IP netns exec gw wg show wg0 peers | grep -qF '$CL_PUB'"; then
	ok "the evictor removed the idle peer ($(($(now_ms) - t0)) ms after the ping)"
else
	nok "the evictor removed the idle peer: $(gw wg show wg0 dump | grep -F "$CL_PUB")"
	show_log 20
fi
evicted() { test "$(stat_of idle.evicted_idle)" = 1 -a "$(stat_of wg0.removed)" = 1; }
wait_for 20 evicted
check "counter idle.evicted_idle = 1 (got $(stat_of idle.evicted_idle)), wg0.removed = $(stat_of wg0.removed)" \
	evicted
check "beside 1,000 peers not wggwd's (dumps judged in slices): those untouched ($others, now $(gw wg show wg0 peers | wc -l)), no sweep error ($(stat_of idle.sweep_errors))" \
	sh -c "[ $others = 1000 ] && [ \$($IP netns exec gw wg show wg0 peers | wc -l) = 1000 ] && [ $(stat_of idle.sweep_errors) = 0 ]"
gw wg set wg0 $(gw wg show wg0 peers | sed 's/.*/peer & remove/')

# the client comes back (its session is still valid on its side; make it
# start over so that it knocks): installed afresh, inverted again
knock
if [ $prc = 0 ] && [ "$(stat_of wg0.inverted)" -ge 2 ]; then
	ok "after eviction the client gets back in through a new knock (${dt} ms, inverted again)"
else
	nok "after eviction the client gets back in through a new knock (${dt} ms, rc $prc, inverted $(stat_of wg0.inverted))"
	show_log 40
fi

# ------------------------------------------------------ the fast return
# Evicted again with its session live (evict_live): source-bpf watches the
# client's endpoint, and the client's next data packet on that session
# (which the gateway can no longer read) re-installs the peer by role
# inversion; without the watch the client would wait ~15 s for its own
# retry. The client pings every 100 ms without starting over.
if wait_for 200 sh -c "[ -z \"\$($IP netns exec gw wg show wg0 peers)\" ]"; then
	ret0=$(stat_of sniff.returning)
	cl ping -c 80 -i 0.1 -w 8 10.99.0.1 >/tmp/fping 2>&1
	seq=$(awk -F'seq=' '/bytes from/ { split($2, a, " "); print a[1]; exit }' /tmp/fping)
	check "fast return: evicted with a live session, the client's next packets brought it back (first reply: ping seq ${seq:-none}, 100 ms apart; sniff.returning $ret0 -> $(stat_of sniff.returning))" \
		sh -c "[ -n '$seq' ] && [ '$seq' -le 20 ] && [ $(stat_of sniff.returning) -gt $ret0 ]"
	[ -n "$seq" ] && [ "$seq" -le 20 ] || { sed 's/^/TAP #   /' /tmp/fping | tail -3; show_log 20; }
else
	nok "fast return: the peer was evicted again"
fi

# ---------------------------------------------------- the cookie watch
# Under load the kernel answers a knock with a cookie reply; the client,
# holding the cookie now, answers an initiation of the gateway's. Load
# cannot be summoned on time, so tests/vm/cookie.c sends the gateway's
# reply (the same bytes, out of the same link): source-bpf sees it go to
# a client that just knocked and installer-netlink installs the peer
# afresh (removed and added: the kernel initiates); its tunnel works after.
if command -v cookie >/dev/null; then
	knock
	ca0=$(stat_of wg0.refused_afresh) cr0=$(stat_of sniff.cookie_reinstalls)
	gw cookie 192.168.50.1 192.168.50.2 51820 40000 7
	afresh() { [ "$(stat_of wg0.refused_afresh)" -gt "$ca0" ]; }
	wait_for 50 afresh
	cl ping -c 1 -W 5 10.99.0.1 >/dev/null 2>&1
	crc=$?
	check "cookie watch: a cookie reply to the client that just knocked (knock rc $prc) installed its peer afresh on the kernel (wg0.refused_afresh $ca0 -> $(stat_of wg0.refused_afresh), sniff.cookie_reinstalls $cr0 -> $(stat_of sniff.cookie_reinstalls)), and its tunnel works after (ping rc $crc)" \
		sh -c "[ $prc = 0 ] && [ $crc = 0 ] && [ $(stat_of wg0.refused_afresh) -gt $ca0 ] && [ $(stat_of sniff.cookie_reinstalls) -gt $cr0 ]"
else
	nok "cookie watch: tests/vm/cookie.c was not built"
fi

# ------------------------------------------- inversion, again and again
# Each round: the peer is taken off wg0 behind wggwd's back (the evictor's
# next dump tells the installer it is gone), and the client knocks afresh.
# A collision must be recovered by the stall retry, never by the client's
# own retry 5 s later.
slow=0
for round in 1 2 3 4 5; do
	gw wg set wg0 peer "$CL_PUB" remove
	sleep 1.2
	knock
	diag "round $round: ${dt} ms (rc $prc)"
	[ $prc = 0 ] && [ $dt -lt 4500 ] || {
		slow=$((slow + 1))
		gw wg show wg0 dump | sed 's/^/TAP #   wg0: /' | cut -c1-160
		show_log 40
	}
done
check "inversion, 5 fresh knocks: every one up in under 4.5 s ($slow slow; $(stat_of wg0.stall_retries) collisions installed afresh after stall_retry)" \
	test $slow = 0

# ------------------------------------------------------------- shutdown
kill -TERM $WPID
t=100
while [ $t -gt 0 ] && kill -0 $WPID 2>/dev/null; do sleep 0.1; t=$((t - 1)); done
wait $WPID
wrc=$?
check "SIGTERM: wggwd exits 0 (got $wrc), every handle closed" \
	sh -c "[ $wrc = 0 ] && ! grep -q 'not closed cleanly\|never completed' $LOG"
grep 'not closed cleanly\|never completed' $LOG | sed 's/^/TAP #   /' 
if grep -qF "$(cat $K/gw.key)" $LOG; then
	nok "the log shows no private key"
else
	ok "the log shows no private key"
fi
grep -E "ERROR|WARN" $LOG | head -5 | sed 's/^/TAP #   /'

# ------------------------------------ restart: the table from the interface
# The client's peer stays on wg0 across the restart; installer-netlink
# reads it at start, so the client's next knock (answered by the kernel,
# which knows it) changes nothing: no netlink SET at all.
if start_wggwd /tmp/gw.yaml && grep -q "port 51820, 1 peers" $LOG; then
	ok "restart: installer-netlink found the client's peer on wg0"
else
	nok "restart: the peer on wg0 was read at start"
	show_log 10
fi
knock
wait_for 20 sh -c "grep -q '\"wg0.unchanged\": 1' $STATS"
check "restart: the client's knock is an unchanged install (unchanged $(stat_of wg0.unchanged), installed $(stat_of wg0.installed), updated $(stat_of wg0.updated), ping $prc)" \
	test $prc = 0 -a "$(stat_of wg0.unchanged)" = 1 -a "$(stat_of wg0.installed)" = 0 -a "$(stat_of wg0.updated)" = 0
stop_wggwd

# The same peer with another endpoint (a roaming client, a pushed peer):
# the knock sets the endpoint and leaves the allowed IPs alone. Replacing
# them is a removal then adds: the client's first data packet, arriving
# between them, is dropped as from an unallowed source.
gw wg set wg0 peer "$CL_PUB" endpoint 192.0.2.99:9
ips0=$(gw wg show wg0 allowed-ips)
if start_wggwd /tmp/gw.yaml; then
	knock
	wait_for 20 sh -c "grep -q '\"wg0.updated\": 1' $STATS"
	same=no
	[ "$(gw wg show wg0 allowed-ips)" = "$ips0" ] && same=yes
	check "an endpoint-only update leaves the allowed IPs in place (updated $(stat_of wg0.updated), ips_kept $(stat_of wg0.ips_kept), ping $prc, allowed IPs as before: $same)" \
		sh -c "[ $prc = 0 ] && [ '$(stat_of wg0.updated)' = 1 ] && [ '$(stat_of wg0.ips_kept)' = 1 ] && [ $same = yes ]"
	stop_wggwd
else
	nok "wggwd started again"
	show_log 10
fi

# --------------------------------------------------- completion: reinject
gw wg set wg0 peer "$CL_PUB" remove
conf /tmp/re.yaml "
      completion: reinject"
if start_wggwd /tmp/re.yaml; then
	knock
	re_ok() { test "$(stat_of wg0.reinjected)" = 1 -a "$(stat_of sniff.reinjected)" = 1; }
	wait_for 20 re_ok
	check "completion: reinject: the client got in (${dt} ms, rc $prc) through the re-sent initiation (wg0.reinjected $(stat_of wg0.reinjected), sniff.reinjected $(stat_of sniff.reinjected)), no inversion ($(stat_of wg0.inverted))" \
		sh -c "[ $prc = 0 ] && [ $dt -lt 4500 ] && [ $(stat_of wg0.inverted) = 0 ] && [ $(stat_of wg0.reinjected) = 1 ] && [ $(stat_of sniff.reinjected) = 1 ]"
	stop_wggwd
else
	nok "wggwd started with completion: reinject"
	show_log 10
fi

# ------------------------------------------------------ completion: none
# public key and allowed IPs only: the client gets in on its own retry
gw wg set wg0 peer "$CL_PUB" remove
conf /tmp/none.yaml "
      completion: none"
sed -i 's/grace: 3s/grace: 10s/' /tmp/none.yaml # past the client's 5 s retry
if start_wggwd /tmp/none.yaml; then
	knock
	wait_for 20 sh -c "grep -q '\"wg0.installed\": 1' $STATS"
	check "completion: none: the client got in on its own retry (${dt} ms, rc $prc; installed $(stat_of wg0.installed), inverted $(stat_of wg0.inverted), reinjected $(stat_of wg0.reinjected))" \
		sh -c "[ $prc = 0 ] && [ $(stat_of wg0.installed) = 1 ] && [ $(stat_of wg0.inverted) = 0 ] && [ $(stat_of wg0.reinjected) = 0 ]"
	stop_wggwd
else
	nok "wggwd started with completion: none"
	show_log 10
fi

# ------------------------------------------------ 1,000 allowed IPs
# The client's peer with 10.99.0.2/32 and 999 more (IPv6: more than one
# SET_DEVICE message holds, so the peer is split across messages).
gw wg set wg0 peer "$CL_PUB" remove
awk -v k="$CL_PUB" 'BEGIN {
	printf "[{\"public_key\": \"%s\", \"allowed_ips\": [\"10.99.0.2/32\"", k
	for (i = 1; i < 1000; i++) printf ", \"fd00:99::%x/128\"", i
	print "]}]" }' >/tmp/wide.json
conf /tmp/wide.yaml "" /tmp/wide.json
if start_wggwd /tmp/wide.yaml; then
	knock
	n=$(gw wg show wg0 allowed-ips | awk -v k="$CL_PUB" '$1 == k { print NF - 1 }')
	check "1,000 allowed IPs: installed (ping rc $prc), and wg show lists ${n:-0} of them" \
		sh -c "[ $prc = 0 ] && [ '${n:-0}' = 1000 ] && $IP netns exec gw wg show wg0 allowed-ips | grep -q 'fd00:99::3e7/128'"
	diag "$(stat_of wg0.messages) SET_DEVICE messages"
	stop_wggwd
else
	nok "wggwd started with 1,000 allowed IPs"
	show_log 10
fi

# ------------------------------------------------------------ a lease
# resolver-static gives the client 3 s from its answer: installer-netlink
# removes the peer then (one timer for every lease), though the client
# keeps pinging; its pings stop being answered
gw wg set wg0 peer "$CL_PUB" remove
printf '[{"public_key": "%s", "allowed_ips": ["10.99.0.2/32"], "lease": 3}]\n' "$CL_PUB" >/tmp/lease.json
conf /tmp/lease.yaml "" /tmp/lease.json
if start_wggwd /tmp/lease.yaml; then
	knock
	cl ping -w 8 10.99.0.1 >/tmp/lping 2>&1 &
	lpid=$!
	t0=$(now_ms)
	gone=0
	wait_for 80 sh -c "[ -z \"\$($IP netns exec gw wg show wg0 peers)\" ]" && gone=$(($(now_ms) - t0))
	wait $lpid
	replies=$(grep -c "bytes from" /tmp/lping)
	wait_for 10 sh -c "grep -q '\"wg0.expired\": 1' $STATS"
	check "lease 3 s: installer-netlink removed the peer ${gone} ms into the client's pings (wg0.expired $(stat_of wg0.expired), first ping rc $prc); $replies of 8 pings answered, none after" \
		sh -c "[ $prc = 0 ] && [ $gone -gt 0 ] && [ $(stat_of wg0.expired) = 1 ] && [ $replies -ge 2 ] && [ $replies -le 5 ] && grep -q 'its lease ended' $LOG"
	stop_wggwd
else
	nok "wggwd started with a lease"
	show_log 10
fi
# what follows expects the client's peer on wg0, as the sections before left it
gw wg set wg0 peer "$CL_PUB" allowed-ips 10.99.0.2/32 endpoint 192.168.50.2:40000

# --------------------------------------- the keepalive put back at stop
# A knock from an address where nobody answers: inversion installs the
# peer with keepalive 25; the installer stops before any handshake and
# must put the configured keepalive (off) back on its way out.
if [ -x $W/netlink-bench ]; then
	gw $W/netlink-bench knock $W/plugins/installer-netlink.so 192.168.50.77:4444 \
		interface=wg0 completion=inversion >/tmp/nk.out 2>&1
	nrc=$?
	sed 's/^/TAP #   /' /tmp/nk.out
	kk=$(awk '$1 == "knock_peer" { print $2 }' /tmp/nk.out)
	ka=$(gw wg show wg0 persistent-keepalive | awk -v k="$kk" '$1 == k { print $2 }')
	check "stop: a peer still waiting for its first handshake had keepalive 25, and is back to off after the stop (now: ${ka:-none})" \
		sh -c "[ $nrc = 0 ] && grep -q 'knock_keepalive 25' /tmp/nk.out && [ '$ka' = off ]"
	[ -z "$kk" ] || gw wg set wg0 peer "$kk" remove
else
	skip "the keepalive put back at stop" "netlink-bench not built"
fi

# --------------------------------------------------- errors named clearly
conf /tmp/bad.yaml ""
sed -i 's/interface: wg0/interface: nosuch0/' /tmp/bad.yaml
gw $W/wggwd run -c /tmp/bad.yaml >/tmp/bad.log 2>&1
brc=$?
check "an interface that does not exist: start fails with 'no interface \"nosuch0\"' (exit $brc)" \
	sh -c "[ $brc != 0 ] && grep -q 'no interface \"nosuch0\"' /tmp/bad.log"
sed -i 's/interface: nosuch0/interface: vg/' /tmp/bad.yaml
gw $W/wggwd run -c /tmp/bad.yaml >/tmp/bad.log 2>&1
check "a non-WireGuard interface: 'is not a WireGuard interface'" \
	grep -q '"vg" is not a WireGuard interface' /tmp/bad.log

# ------------------------------------------- netns option, bulk, batches
# From the root namespace, through `netns: gw`: 2000 peers in batches,
# a dump of them, unchanged re-installs, one batch removal.
if [ -x $W/netlink-bench ]; then
	$W/netlink-bench run $W/plugins/installer-netlink.so 2000 7 interface=wg0 netns=gw \
		>/tmp/nb.out 2>&1
	nrc=$?
	sed 's/^/TAP #   /' /tmp/nb.out
	check "netns: gw from the root namespace: 2000 peers installed, dumped, re-installed unchanged, removed" \
		test $nrc = 0
	check "... and the gateway's wg0 holds only the client again" \
		test "$(gw wg show wg0 peers)" = "$CL_PUB"
	off=$(awk '$1 == "install_remove_offloaded_2e3" { print $2 }' /tmp/nb.out)
	check "... its big SET messages were sent from the thread pool (messages_offloaded ${off:-none})" \
		test "${off:-0}" -gt 0
	$W/netlink-bench wide $W/plugins/installer-netlink.so 300 64 interface=wg0 netns=gw \
		>/tmp/nw.out 2>&1
	nrc=$?
	sed 's/^/TAP #   /' /tmp/nw.out
	check "300 peers x 64 allowed IPs (a dump that cuts peers across messages): 300 in the dump, all unchanged for a second instance that read them at start (rc $nrc)" \
		test $nrc = 0
	$W/netlink-bench errors $W/plugins/installer-netlink.so interface=wg0 netns=gw >/tmp/ne.out 2>&1
	nrc=$?
	bad=$(awk '$1 == "bad_peer" { print $2 }' /tmp/ne.out)
	sed 's/^/TAP #   /' /tmp/ne.out
	check "a batch with a peer the kernel refuses: re-sent one by one, 3 installed, the bad one named (rc $nrc)" \
		sh -c "[ $nrc = 0 ] && grep -qF 'installing peer $bad on wg0: Invalid argument' /tmp/ne.out"
	# 240 new peers in messages of 4 KiB (~40 each): the thread pool sends
	# them back to back; the one with the bad peer stops that, is re-sent
	# one by one, and the messages built behind it go after
	$W/netlink-bench chain $W/plugins/installer-netlink.so 240 interface=wg0 netns=gw \
		message_size=4096 >/tmp/nc.out 2>&1
	nrc=$?
	bad=$(awk '$1 == "bad_peer" { print $2 }' /tmp/nc.out)
	sed 's/^/TAP #   /' /tmp/nc.out
	chained=$(awk '$1 == "chain_chained" { print $2 }' /tmp/nc.out)
	check "240 new peers, one refused at the middle: messages sent back to back from the pool (${chained:-no} chained), stopped at the error and re-sent one by one, 239 installed and in the dump, the bad one named, all removed (rc $nrc)" \
		sh -c "[ $nrc = 0 ] && grep -qF 'installing peer $bad on wg0: Invalid argument' /tmp/nc.out"
	check "... and the gateway's wg0 holds only the client again" \
		test "$(gw wg show wg0 peers)" = "$CL_PUB"
	$W/netlink-bench run $W/plugins/installer-netlink.so 10 7 interface=wg0 netns=nosuchns \
		>/tmp/nb.out 2>&1
	check "netns: a namespace that does not exist is named in the error" \
		grep -q "netns /var/run/netns/nosuchns: open: No such file" /tmp/nb.out
else
	skip "netns option and bulk paths" "netlink-bench not built"
fi

# ------------------------------------------- restart with the store's peer
# A control plane pushes a peer (source-pushgen stands in for it): the
# store keeps it (origin push) and installer-netlink installs it. The
# gateway reboots (the interface comes back empty); at start the store
# compares what it holds with the installer's dump and re-injects the
# pushed peer, which installer-netlink installs again.
if [ -f $W/plugins/store-sqlite.so ] && [ -f $W/plugins/source-pushgen.so ]; then
	cat >/tmp/push.yaml <<EOF
log_level: debug
stats_file: $STATS
stats_interval: 100ms
stages:
  gen:
    plugin: source-pushgen
    options:
      first: 4242
      count: 1
      ack_file: /tmp/acks
  store:
    plugin: store-sqlite
    options:
      path: /tmp/wg0.db
  wg0:
    plugin: installer-netlink
    options:
      interface: wg0
pipelines:
  push: [gen, store, wg0]
EOF
	rm -f /tmp/acks
	$IP netns exec gw $W/wggwd run -c /tmp/push.yaml >$LOG 2>&1 &
	WPID=$!
	wait_for 200 test -s /tmp/acks
	pk=$(awk '{ print $1; exit }' /tmp/acks 2>/dev/null)
	check "push: the pushed peer is on wg0 and acknowledged ($(cat /tmp/acks 2>/dev/null))" \
		sh -c "[ -n '$pk' ] && $IP netns exec gw wg show wg0 peers | grep -qF '$pk'"
	stop_wggwd
	# the reboot: wg0 comes back empty
	gw $IP link del wg0
	gw $IP link add wg0 type wireguard
	gw wg set wg0 private-key $K/gw.key listen-port 51820
	gw $IP link set wg0 up
	sed -e 's/  pull: \[sniff, noise, static, wg0, idle\]/  pull: [sniff, noise, store, static, wg0]/' \
		-e 's|^  wg0:|  store:\n    plugin: store-sqlite\n    options:\n      path: /tmp/wg0.db\n  wg0:|' \
		/tmp/gw.yaml >/tmp/pull-store.yaml
	t0=$(now_ms)
	start_wggwd /tmp/pull-store.yaml
	if wait_for 100 sh -c "$IP netns exec gw wg show wg0 peers | grep -qF '$pk'"; then
		ok "restart after a reboot: the store re-injected the pushed peer and installer-netlink installed it ($(($(now_ms) - t0)) ms)"
	else
		nok "restart after a reboot: the pushed peer is back on wg0"
		show_log 20
	fi
	grep "reconcile" $LOG | sed 's/^/TAP #   /'
	stop_wggwd
	# A narrowed policy (issue 12): the pushed peer's 10.0.16.146/32 is
	# outside allowed_prefixes. On wg0 at start: said so. After another
	# reboot the store re-injects it: refused at install, not on wg0.
	sed 's|^      interface: wg0$|      interface: wg0\n      allowed_prefixes: [10.99.0.0/24]|' \
		/tmp/pull-store.yaml >/tmp/pull-policy.yaml
	start_wggwd /tmp/pull-policy.yaml
	check "policy: a peer found on wg0 outside allowed_prefixes is reported at start" \
		grep -q "1 peers on wg0 have allowed IPs outside allowed_prefixes (the first: $pk)" $LOG
	stop_wggwd
	gw $IP link del wg0
	gw $IP link add wg0 type wireguard
	gw wg set wg0 private-key $K/gw.key listen-port 51820
	gw $IP link set wg0 up
	start_wggwd /tmp/pull-policy.yaml
	refused() { [ "$(stat_of wg0.policy_refused)" -ge 1 ]; }
	if wait_for 50 refused &&
		! $IP netns exec gw wg show wg0 peers | grep -qF "$pk" &&
		grep -q "peer $pk (re-installed by a stage): allowed IP 10.0.16.146/32 is outside allowed_prefixes: not installed" $LOG; then
		ok "policy: the store's re-installed pushed peer, outside a narrowed allowed_prefixes, is refused by installer-netlink"
	else
		nok "policy: the re-installed pushed peer is refused"
		show_log 20
	fi
	stop_wggwd
else
	skip "restart re-installs a push-origin peer from the store" "store-sqlite not built"
fi

# ------------------------------------- 1,000 allowed IPs pushed over NATS
# Issue 11, end to end on the kernel: a control plane publishes the
# client's peer with 1,000 allowed IPs (v4 hosts, v6 hosts, prefixes) to
# a JetStream stream (nats-server in the gateway's namespace, its store on
# tmpfs; the publisher speaks the NATS text protocol through busybox nc).
# source-nats -> store-sqlite -> installer-netlink: the kernel dumps all
# 1,000 back, the store's row holds all 1,000, the message is ACKed.
nats_req() { # subject, payload file: prints the server's lines (the reply too)
	{
		printf 'CONNECT {"verbose":false,"pedantic":false}\r\nSUB _r.vm 1\r\n'
		printf 'PUB %s _r.vm %d\r\n' "$1" "$(wc -c <"$2")"
		cat "$2"
		printf '\r\nPING\r\n'
		sleep 2
	} | $IP netns exec gw nc 127.0.0.1 4222 | tr -d '\r'
}
if [ -x /usr/bin/nats-server ] && [ -f $W/plugins/source-nats.so ] && [ -f $W/plugins/store-sqlite.so ]; then
	gw wg set wg0 peer "$CL_PUB" remove 2>/dev/null
	t0=$(now_ms)
	t_nats=$t0
	mkdir -p /tmp/js
	$IP netns exec gw nats-server -a 127.0.0.1 -p 4222 -js -sd /tmp/js >/tmp/nats.log 2>&1 &
	NPID=$!
	wait_for 300 grep -q "Server is ready" /tmp/nats.log 2>/dev/null
	echo '{"name":"PEERS","subjects":["wggwd.peers.>"]}' >/tmp/stream.json
	nats_req '$JS.API.STREAM.CREATE.PEERS' /tmp/stream.json >/tmp/stream.out
	check "nats-server with JetStream in the gateway's namespace ($(($(now_ms) - t0)) ms), stream PEERS created over the text protocol" \
		grep -q '"type":"io.nats.jetstream.api.v1.stream_create_response","config"' /tmp/stream.out
	grep -q stream_create_response /tmp/stream.out || { sed 's/^/TAP #   /' /tmp/stream.out /tmp/nats.log | tail -10; }
	# 10.99.0.2/32, 979 more v4 hosts, 10 v6 hosts, 9 /24s and a /16; and
	# each as the store's row has it: family/cidr/address in hex (v4: 4 bytes)
	awk 'function v4(a, b, c, n) {
			printf "10.%d.%d.%d/%d\n", a, b, c, n
			printf "4/%d/0a%02x%02x%02x\n", n, a, b, c >"/tmp/want.row"
		}
		BEGIN {
		v4(99, 0, 2, 32)
		for (i = 0; i < 979; i++) v4(100, int(i / 250), i % 250 + 1, 32)
		for (i = 1; i <= 10; i++) {
			printf "fd00:96::%x/128\n", i
			printf "6/128/fd00009600000000000000000000%04x\n", i >"/tmp/want.row"
		}
		for (i = 0; i < 9; i++) v4(101, i, 0, 24)
		v4(102, 0, 0, 16) }' >/tmp/nips
	awk -v k="$CL_PUB" 'BEGIN { printf "{\"op\":\"add\",\"public_key\":\"%s\",\"version\":1,\"allowed_ips\":[", k }
		{ printf "%s\"%s\"", (NR > 1 ? "," : ""), $1 } END { print "]}" }' /tmp/nips >/tmp/big.json
	cat >/tmp/nats.yaml <<EOC
log_level: debug
stats_file: $STATS
stats_interval: 100ms
stages:
  nats:
    plugin: source-nats
    options:
      servers: [nats://127.0.0.1:4222]
      subject: wggwd.peers.vm
      durable: vm
      ack_wait: 10s
      max_allowed_ips: 1000
      allowed_prefixes: [10.96.0.0/12, "fd00::/8"]
  store:
    plugin: store-sqlite
    options:
      path: /tmp/nats.db
  wg0:
    plugin: installer-netlink
    options:
      interface: wg0
pipelines:
  push: [nats, store, wg0]
EOC
	rm -f $STATS
	$IP netns exec gw $W/wggwd run -c /tmp/nats.yaml >$LOG 2>&1 &
	WPID=$!
	wait_for 300 grep -q "consuming wggwd.peers.vm" $LOG || show_log 10
	t0=$(now_ms)
	nats_req wggwd.peers.vm /tmp/big.json >/tmp/pub.out
	nats_ips() { gw wg show wg0 allowed-ips | awk -v k="$CL_PUB" '$1 == k { for (i = 2; i <= NF; i++) print $i }' | sort; }
	wait_for 300 sh -c "[ \"\$($IP netns exec gw wg show wg0 allowed-ips | awk -v k='$CL_PUB' '\$1 == k { print NF - 1 }')\" = 1000 ]"
	dt=$(($(now_ms) - t0))
	acked() { [ "$(stat_of nats.acked)" = 1 ]; }
	wait_for 50 acked
	nats_ips >/tmp/wg.ips
	sort /tmp/nips >/tmp/want.ips
	check "NATS push of 1,000 allowed IPs ($(wc -c </tmp/big.json) bytes, PubAck: $(grep -o '"seq":[0-9]*' /tmp/pub.out)): installed on the kernel, wg show lists $(wc -l </tmp/wg.ips), all as published (${dt} ms); acked $(stat_of nats.acked), stored $(stat_of store.saved), installed $(stat_of wg0.installed)" \
		sh -c "grep -q '\"stream\":\"PEERS\"' /tmp/pub.out && cmp -s /tmp/wg.ips /tmp/want.ips && [ $(stat_of nats.acked) = 1 ] && [ $(stat_of wg0.installed) = 1 ] && [ $(stat_of nats.poison) = 0 ]"
	cmp -s /tmp/wg.ips /tmp/want.ips || { diff /tmp/want.ips /tmp/wg.ips | head -5 | sed 's/^/TAP #   /'; show_log 10; }
	diag "$(stat_of wg0.messages) SET_DEVICE messages"
	stop_wggwd
	kill -TERM $NPID
	wait $NPID
	# the row: n x 18 bytes (family, cidr, addr[16]); as "family/cidr/addr hex"
	# (v4: its 4 bytes) against the same made from what was published
	if [ -x /usr/bin/sqlite3 ]; then
		kh=$(echo "$CL_PUB" | base64 -d | od -An -tx1 | tr -d ' \n' | tr a-f A-F)
		sqlite3 /tmp/nats.db "SELECT hex(allowed) FROM peer WHERE hex(key) = '$kh' AND removed = 0" |
			awk '{ for (i = 1; i + 35 <= length($0); i += 36) {
				f = substr($0, i, 2) + 0; c = 0; h = "0123456789ABCDEF"
				c = (index(h, substr($0, i + 2, 1)) - 1) * 16 + index(h, substr($0, i + 3, 1)) - 1
				print f "/" c "/" tolower(substr($0, i + 4, f == 4 ? 8 : 32)) } }' | sort >/tmp/row.ips
		sort /tmp/want.row -o /tmp/want.row
		check "... and store-sqlite's row for the peer holds the same 1,000 allowed IPs ($(wc -l </tmp/row.ips) in it)" \
			cmp -s /tmp/row.ips /tmp/want.row
		cmp -s /tmp/row.ips /tmp/want.row || diff /tmp/want.row /tmp/row.ips | head -5 | sed 's/^/TAP #   /'
	else
		skip "store-sqlite's row holds the 1,000 allowed IPs" "no sqlite3 shell in the VM"
	fi
	gw wg set wg0 peer "$CL_PUB" remove
	diag "the NATS push section took $(($(now_ms) - t_nats)) ms"
else
	skip "1,000 allowed IPs pushed over NATS, stored and installed" "nats-server or source-nats/store-sqlite missing"
fi

# --------------------------------------------------------- shadow mode
# The gateway before a move to JIT: its client's peer installed ahead of
# time (no endpoint). In shadow mode wggwd runs the whole pull path and
# only counts what it would do: the client's knock is "would install (on
# the interface already)", the interface is left as it was. A key that is
# not on the interface is counted as a would-install and still not added.
# (the reboots above made wg0 anew, without its tunnel address)
gw $IP addr add 10.99.0.1/24 dev wg0 2>/dev/null
gw wg set wg0 peer "$CL_PUB" remove 2>/dev/null
gw wg set wg0 peer "$CL_PUB" allowed-ips 10.99.0.2/32
conf /tmp/shadow.yaml "
      shadow: true"
wgdump() { gw wg show wg0 allowed-ips; gw wg show wg0 persistent-keepalive; }
if start_wggwd /tmp/shadow.yaml; then
	wgdump >/tmp/before
	knock
	wait_for 20 sh -c "grep -q 'shadow_decisions_total.present\": 1' $STATS"
	wgdump >/tmp/after
	check "shadow: the pre-installed client got in (${dt} ms, rc $prc), counted as would-install/present ($(stat_of wg0.shadow_decisions_total.present)), nothing installed ($(stat_of wg0.installed)), allowed IPs and keepalive unchanged" \
		sh -c "[ $prc = 0 ] && [ $(stat_of wg0.shadow_decisions_total.present) = 1 ] && [ $(stat_of wg0.installed) = 0 ] && cmp -s /tmp/before /tmp/after"
	gw wg set wg0 peer "$CL_PUB" remove
	# the installer learns it from its next dump (the evictor's sweep)
	nopeer() { [ "$(stat_of wg0.peers)" = 0 ]; }
	wait_for 100 nopeer
	cl $IP link set wg0 down
	cl $IP link set wg0 up
	cl ping -c 1 -W 2 10.99.0.1 >/dev/null 2>&1
	src=$?
	wait_for 20 sh -c "grep -q 'shadow_decisions_total.install\": 1' $STATS"
	check "shadow: a knock for a peer not on wg0 is counted as would-install ($(stat_of wg0.shadow_decisions_total.install)) and wg0 stays without it (ping rc $src)" \
		sh -c "[ $src != 0 ] && [ $(stat_of wg0.shadow_decisions_total.install) -ge 1 ] && [ -z \"\$($IP netns exec gw wg show wg0 peers)\" ]"
	stop_wggwd
else
	nok "wggwd started in shadow mode"
	show_log 10
fi

# ------------------------------------------------ revocation (pull path)
# resolver-http asks a control plane (busybox httpd and a CGI script on
# 127.0.0.1 in the gateway's namespace; a key is known while its file is
# there); store-sqlite caches the answer (ttl 2 s) and revalidates
# installed pulled peers every second. The key's file is deleted (the
# user removed): the next revalidation gets a 404 and the core retires the
# peer from the kernel as revoked.
if [ -f $W/plugins/resolver-http.so ] && [ -f $W/plugins/store-sqlite.so ]; then
	gw wg set wg0 peer "$CL_PUB" remove 2>/dev/null
	mkdir -p /tmp/cp/cgi-bin /tmp/cp/keys
	cat >/tmp/cp/cgi-bin/peer <<'EOC'
#!/bin/sh
k=${QUERY_STRING#k=}
case $k in */* | .*) k=none ;; esac
if [ -f "/tmp/cp/keys/$k" ]; then
	printf 'Content-Type: application/json\r\n\r\n'
	cat "/tmp/cp/keys/$k"
else
	printf 'HTTP/1.0 404 Not Found\r\nContent-Type: application/json\r\n\r\n{"error": "unknown key"}'
fi
EOC
	chmod 755 /tmp/cp/cgi-bin/peer
	esc=$(echo "$CL_PUB" | sed 's/+/%2B/g; s|/|%2F|g; s/=/%3D/g')
	printf '{"public_key": "%s", "allowed_ips": ["10.99.0.2/32"], "ttl": 2}\n' "$CL_PUB" >"/tmp/cp/keys/$esc"
	$IP netns exec gw httpd -f -p 127.0.0.1:8080 -h /tmp/cp &
	HPID=$!
	sed -e 's|  pull: \[sniff, noise, static, wg0, idle\]|  pull: [sniff, noise, store, api, wg0]|' \
		-e 's|^  wg0:|  store:\n    plugin: store-sqlite\n    options:\n      path: /tmp/rev.db\n      revalidate_interval: 1s\n      lookups_per_key: 0\n      negative_ttl: "0"\n      commit_interval: 20ms\n  api:\n    plugin: resolver-http\n    options:\n      url: "http://127.0.0.1:8080/cgi-bin/peer?k={public_key}"\n      allowed_prefixes: [10.99.0.0/24]\n      backoff: 100ms\n  wg0:|' \
		/tmp/gw.yaml >/tmp/rev.yaml
	if start_wggwd /tmp/rev.yaml; then
		knock
		check "revocation: the client got in through resolver-http and the store (${dt} ms, rc $prc)" \
			sh -c "[ $prc = 0 ] && $IP netns exec gw wg show wg0 peers | grep -qF '$CL_PUB'"
		sleep 3 # past the answer's ttl: revalidated, still known, still there
		check "revocation: after the answer's ttl the store asked again and the peer stayed (store.revalidations $(stat_of store.revalidations))" \
			sh -c "[ $(stat_of store.revalidations) -ge 1 ] && $IP netns exec gw wg show wg0 peers | grep -qF '$CL_PUB'"
		rm -f "/tmp/cp/keys/$esc"
		t0=$(now_ms)
		if wait_for 100 sh -c "[ -z \"\$($IP netns exec gw wg show wg0 peers)\" ]"; then
			gone=$(($(now_ms) - t0))
			wait_for 20 sh -c "[ \$(grep '\"store.revoked\":' $STATS | sed 's/.*: *//; s/,.*//') -ge 1 ] 2>/dev/null"
			check "revocation: the key unknown to the control plane, the kernel peer was removed ${gone} ms later (store.revoked $(stat_of store.revoked), logged)" \
				sh -c "[ $(stat_of store.revoked) -ge 1 ] && grep -q 'revoked' $LOG"
		else
			nok "revocation: the peer was removed once the control plane forgot the key"
			show_log 20
		fi
		stop_wggwd
	else
		nok "wggwd started with store-sqlite and resolver-http"
		show_log 10
	fi
	kill $HPID
	wait $HPID 2>/dev/null
else
	skip "revocation through resolver-http and store-sqlite" "resolver-http or store-sqlite not built"
fi
