# SPDX-License-Identifier: MIT
# Copyright (C) 2026 wggwd authors
#
# Shared by the kernel VM's scripts (tests/vm/test.sh, bench/*-vm.sh):
# sourced, busybox sh. tests/vm/run copies it to /opt/wggwd/vm/lib.sh.
#
# On the host, a bench script hands itself to the VM:
#   . "$(dirname "$0")/../tests/vm/lib.sh"; vm_bench NAME
# boots it (tests/vm/run --bench NAME), prints its `name value unit` lines
# on stdout and its diagnostics and failures on stderr, and exits with
# the VM's status. WGGWD_VM_BINS (more programs for the VM) is passed on.
vm_bench() { # name
	vm_root=$(cd "$(dirname "$0")/.." && pwd)
	"$vm_root/tests/vm/run" --bench "$1" >"/tmp/wggwd-bench-$1.tap" 2>&1
	vm_rc=$?
	sed -n '/^[a-z][a-z0-9_]* [0-9.e+-]* [a-z/%]*$/p' "/tmp/wggwd-bench-$1.tap"
	grep -E '^not ok|^#' "/tmp/wggwd-bench-$1.tap" >&2
	exit $vm_rc
}

# Inside the VM.
IP=/bin/ip                      # iproute2's, for netns
W=/opt/wggwd
now_ms() { awk '{ printf "%d\n", $1 * 1000 }' /proc/uptime; }
wait_for() { # tenths of a second, command...
	wf_t=$1
	shift
	while [ "$wf_t" -gt 0 ]; do
		"$@" && return 0
		sleep 0.1
		wf_t=$((wf_t - 1))
	done
	return 1
}
stat_of() { # counter name -> its value in $STATS (0 if absent)
	so_v=$(grep "\"$1\":" "$STATS" 2>/dev/null | sed 's/.*: *//; s/,.*//')
	echo "${so_v:-0}"
}
stat_ge() { # counter value: true if $STATS has it at value or more; no
	# fork (a bench polls it while it measures, and a fork under TCG
	# costs milliseconds of the vCPU it measures)
	while IFS= read -r sg_l; do
		case $sg_l in
		*"\"$1\":"*)
			sg_l=${sg_l#*: }
			[ "${sg_l%%,*}" -ge "$2" ] 2>/dev/null
			return
			;;
		esac
	done <"$STATS"
	return 1
}
pct() { # file p: the p-th percentile of its numbers (nearest rank, as bench/jit.py)
	sort -n "$1" | awk -v p="$2" '{ v[NR] = $1 } END {
		i = int(p / 100 * (NR - 1) + 0.5) + 1; if (i > NR) i = NR; print v[i] }'
}
out() { echo "BENCH $*"; }
vm_steady() { # a latency bench: no address randomisation. qemu's TCG
	# translates code per virtual address, so with ASLR every program a
	# bench runs (ip, wg, ping...) is translated afresh: the 1 GiB
	# translation buffer fills in a minute or two and is flushed, and for
	# a while after each flush everything runs several times slower (the
	# same knock, tens of ms). Nothing a real gateway has.
	echo 0 >/proc/sys/kernel/randomize_va_space
}
vm_pair() { # g c underlay tunnel client-key: a gateway and a client namespace,
	# a veth between (underlay .1 and .2 of a /24), a kernel wg0 in each: the
	# gateway's with the VM's key on port 51820 and tunnel .1, the client's
	# with client-key, the gateway as its peer
	$IP netns add $1 && $IP netns add $2 || return 1
	$IP link add v$1 type veth peer name v$2 || return 1
	$IP link set v$1 netns $1
	$IP link set v$2 netns $2
	for vp_ns in $1 $2; do $IP -n $vp_ns link set lo up; done
	$IP -n $1 addr add $3.1/24 dev v$1
	$IP -n $2 addr add $3.2/24 dev v$2
	$IP -n $1 link set v$1 up
	$IP -n $2 link set v$2 up
	$IP -n $1 link add wg0 type wireguard
	$IP netns exec $1 wg set wg0 private-key $W/vm/keys/gw.key listen-port 51820
	$IP -n $1 addr add $4.1/24 dev wg0
	$IP -n $1 link set wg0 up
	$IP -n $2 link add wg0 type wireguard
	$IP netns exec $2 wg set wg0 private-key "$5" listen-port 40000 \
		peer "$(cat $W/vm/keys/gw.pub)" endpoint $3.1:51820 allowed-ips $4.0/24
	$IP -n $2 link set wg0 up
} # a bench's `name value unit` line
