#!/bin/sh
# SPDX-License-Identifier: MIT
# Copyright (C) 2026 wggwd authors
#
# source-nats push into userspace WireGuard: prints `name value unit` lines.
#   push.sh
#
# A nats-server on 127.0.0.1 (JetStream, temp dir), a wireguard-go gateway
# in a network namespace, and `wggwd run` with source-nats -> installer-uapi
# (and source-nats -> store-sqlite -> installer-uapi when that plugin is
# built). N add messages for N fresh keys are published into the stream at
# once; each message's latency is publish -> its +ACK seen on $JS.ACK
# (the ACK is sent once the peer is installed).
#
#   push_per_s_1eK       messages installed and ACKed per second, 10^K
#                        messages published in one burst (first publish
#                        to last ACK)
#   push_p50_ms_1eK, push_p99_ms_1eK   per-message publish -> ACK in that
#                        burst (queueing included: the burst is published
#                        faster than it is installed)
#   push_paced_p50_ms, push_paced_p99_ms   1,000 messages at 200/s: the
#                        latency of one push when nothing waits
#   push_1000ips_p50_ms, push_1000ips_p99_ms   50 messages at 10/s, each
#                        a peer with 1,000 allowed IPs
#   push_store_*         the same through store-sqlite (fsync per group
#                        commit)
#   push_per_s_1e4, push_p99_ms  the headline numbers (no store, 10^4)
#   setconf_per_s_1e4    `wg setconf` of 10^4 fresh peers (the same allowed
#                        IPs) on the restarted, empty interface: peers per
#                        second; measured just before each 10^4 push (mean)
#   push_vs_setconf      push_store_per_s_1e4 / the setconf rate measured
#                        next to it (goal >= 0.8)
#   push_nostore_vs_setconf   push_per_s_1e4 / its neighbour setconf rate
#   leader_loss_stall_ms  (bench/failover.py, when there) a consumer's
#                        leader node killed: its death to the next delivery
# Environment: WGGWD_BUILD (default build/): wggwd and the plugins. Root.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
export WGGWD_BUILD="${WGGWD_BUILD:-$root/build}"
python3 "$here/push_bench.py" "$@"
# the failover figure, where its script is (the failover work)
[ ! -f "$here/failover.py" ] || python3 "$here/failover.py"
