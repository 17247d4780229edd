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
out() { echo "BENCH $*"; } # a bench's `name value unit` line
