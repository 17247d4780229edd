#!/bin/sh
# SPDX-License-Identifier: MIT
# Copyright (C) 2026 wggwd authors
#
# WireGuard over WebSockets vs plain UDP, in one run: prints `name value unit`.
#   wsock.sh [ROUNDS]
#
# Two wireguard-go gateways in network namespaces, one client each. The
# WebSocket client has its UDP to the gateway blocked and goes through
# wggwd-wsbridge -> source-wsock; the UDP client is sniffed by source-bpf.
# Both pipelines continue decoder-noise -> resolver-static -> installer-uapi.
#
#   wsock_p50_ms, wsock_p99_ms   first ping with a fresh session (peer
#                                removed on both sides first): JIT install
#                                over the WebSocket included
#   udp_p50_ms, udp_p99_ms       the same on the UDP path (source-bpf)
#   wsock_mbps, udp_mbps         iperf3 TCP through the tunnel, 3 s
#   wsock_vs_udp_ratio           wsock_mbps / udp_mbps
# Environment: WGGWD_BUILD (default build/, with source-wsock and
# wggwd-wsbridge built). Root, wireguard-go, wg, nft, iperf3.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
export WGGWD_BUILD="${WGGWD_BUILD:-$root/build}"
exec python3 "$here/wsock_bench.py" "${1:-20}"
