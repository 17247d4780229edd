#!/bin/sh
# SPDX-License-Identifier: MIT
# Copyright (C) 2026 wggwd authors
#
# Builds and runs bench/decode.c (same flags as meson's debugoptimized).
#   decode.sh [--check] [seconds per metric]
# --check exits 1 if a target is missed: decode_first_ratio <= 2.3,
# decode_repeat_ratio <= 1.2, reject_mac1_pps >= 2000000, and with two
# CPUs or more decode_workers_ratio >= 1.8 (decoder-noise's threads against
# one: decode_inline_per_s is one thread, decode_workers_per_s one per CPU).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
src=$root/plugins/decoder-noise
check=0
if [ "${1:-}" = "--check" ]; then
	check=1
	shift
fi
out=$(mktemp /tmp/bench-decode.XXXXXX)
trap 'rm -f "$out"' EXIT

# shellcheck disable=SC2046 # word splitting of pkg-config output is wanted
${CC:-cc} -std=gnu11 -O2 -g -D_GNU_SOURCE -pthread -Wall -Wextra -I"$src" \
	"$here/decode.c" "$src/noise.c" \
	$(pkg-config --cflags --libs libsodium libb2 jansson) -o "$out"

res=$("$out" "$root/tests/vectors/vectors-dev.json" "${1:-1}")
echo "$res"
[ "$check" -eq 1 ] || exit 0

echo "$res" | awk '
	$1 == "decode_first_ratio" && $2 > 2.3 { print "FAIL " $0; bad = 1 }
	$1 == "decode_repeat_ratio" && $2 > 1.2 { print "FAIL " $0; bad = 1 }
	$1 == "reject_mac1_pps" && $2 < 2000000 { print "FAIL " $0; bad = 1 }
	$1 == "decode_workers_threads" { n = $2 }
	$1 == "decode_workers_ratio" && n >= 2 && $2 < 1.8 { print "FAIL " $0; bad = 1 }
	END { exit bad }'
