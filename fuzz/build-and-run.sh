#!/bin/sh
# SPDX-License-Identifier: MIT
# Copyright (C) 2026 wggwd authors
#
# Builds fuzz-noise with libFuzzer + ASan + UBSan and runs it.
# Needs clang and libFuzzer (Debian 12: apt-get install clang libclang-rt-14-dev).
#   FUZZ_SECONDS   run time (default 20)
#   FUZZ_WORKDIR   build/corpus directory, kept (default: a mktemp -d that
#                  is removed after a clean run and kept after a crash)
# Exits non-zero if the build fails or the fuzzer finds a crash.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
src=$root/plugins/decoder-noise
vectors=$root/tests/vectors/vectors-dev.json
secs=${FUZZ_SECONDS:-20}
if [ -n "${FUZZ_WORKDIR:-}" ]; then
	work=$FUZZ_WORKDIR
	keep=1
else
	work=$(mktemp -d /tmp/fuzz-noise.XXXXXX)
	keep=0
fi
cc=${CLANG:-clang}

mkdir -p "$work/corpus" "$work/artifacts"

# shellcheck disable=SC2046 # word splitting of pkg-config output is wanted
"$cc" -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
	-std=gnu11 -Wall -Wextra -D_GNU_SOURCE -I"$src" \
	"$here/fuzz-noise.c" "$src/noise.c" \
	$(pkg-config --cflags --libs libsodium libb2) \
	-o "$work/fuzz-noise"

# Seed: every packet in the vectors file, named by vector id.
python3 - "$vectors" "$work/corpus" <<'PY'
import json, os, sys
vectors, out = sys.argv[1], sys.argv[2]
for v in json.load(open(vectors))["vectors"]:
    with open(os.path.join(out, v["id"]), "wb") as f:
        f.write(bytes.fromhex(v["packet"]))
PY

echo "fuzz-noise: ${secs}s, corpus and artifacts in $work"
rc=0
"$work/fuzz-noise" -max_total_time="$secs" -max_len=512 -timeout=10 \
	-print_final_stats=1 -artifact_prefix="$work/artifacts/" \
	"$work/corpus" || rc=$?

if [ "$rc" -ne 0 ] || [ -n "$(ls -A "$work/artifacts")" ]; then
	echo "fuzz-noise: FAILED (exit $rc); artifacts:" >&2
	ls -l "$work/artifacts" >&2
	exit 1
fi
echo "fuzz-noise: no crash"
[ "$keep" -eq 1 ] || rm -rf "$work"
