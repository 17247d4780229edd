#!/bin/sh
# SPDX-License-Identifier: MIT
# Copyright (C) 2026 wggwd authors
#
# store-sqlite and resolver-http: prints `name value unit` lines.
#   store.sh [--check]
#
#   lookup_{p50,p99,p999,max}_us_1eK  cached-lookup latency of the store's
#       lookup op (replay check + timestamp write + peer read) with 10^K keys
#       in the store, measured in-process by bench/store_bench.c, which
#       compiles the plugin's source under a minimal host (real libuv loop,
#       timers and thread pool: batched commits land in p999/max), as fast
#       as it goes (200,000 lookups of random keys, each with a new
#       timestamp: a random-page write each); wal_mib_1eK is the WAL after
#       that (at saturation checkpoints cannot keep up and it grows);
#   paced_*_1eK  the same at a steady 20,000 lookups/s after a pause: the
#       WAL has started over and is cut back to journal_size_limit (64 MiB);
#   rss_mib_1eK  VmRSS of `wggwd run` on that database while serving cache
#       hits (1,000 keys knocking every 50 ms);
#   http_lookups_per_s_cN  lookups/s through resolver-http against the
#       loopback test API (tests/integration/http_api.py: Python's
#       http.server, which is the bottleneck) with max_concurrency N;
#   flood_*  10,000 fresh keys knocking every second for 5 s: requests/s
#       the API sees with the budget on (global only: rate 50, burst 100;
#       and the defaults, per-source budget included, one source address).
# --check exits 1 unless lookup_p99_us_1e6 <= 50 and rss_mib_1e6 <= 64.
# Environment: WGGWD_BUILD (default build/): wggwd and the plugins.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
check=0
[ "${1:-}" = "--check" ] && check=1
export WGGWD_BUILD="${WGGWD_BUILD:-$root/build}"
work=$(mktemp -d /tmp/bench-store.XXXXXX)
trap 'rm -rf "$work"' EXIT
out=$work/results

# shellcheck disable=SC2046 # word splitting of pkg-config output is wanted
${CC:-cc} -std=gnu11 -O2 -g -D_GNU_SOURCE -Wall -Wextra -Wno-missing-field-initializers \
	-I"$root/include" -I"$root/plugins/common" -I"$root/plugins/store-sqlite" \
	"$here/store_bench.c" "$root/plugins/store-sqlite/live.c" "$root/plugins/store-sqlite/command.c" \
	"$root/plugins/store-sqlite/preflight.c" "$root/plugins/common/wgutil.c" \
	$(pkg-config --cflags --libs sqlite3 libsodium libuv jansson) -lm -o "$work/store_bench"

for n in 10000 100000 1000000; do
	"$work/store_bench" "$work/store.db" "$n" 200000 | tee -a "$out"
	python3 "$here/store_http.py" rss "$work/store.db" "$n" | tee -a "$out"
done
python3 "$here/store_http.py" throughput 1 4 16 64 | tee -a "$out"
python3 "$here/store_http.py" flood | tee -a "$out"

[ "$check" -eq 1 ] || exit 0
awk '
	$1 == "lookup_p99_us_1e6" && $2 > 50 { print "FAIL " $0; bad = 1 }
	$1 == "rss_mib_1e6" && $2 > 64 { print "FAIL " $0; bad = 1 }
	END { exit bad }' "$out"
