#!/usr/bin/env bash
# Two network namespaces joined by a veth pair whose bandwidth and latency are shaped with tc, as
# a stand-in for two CPU nodes on Ethernet (two-batch-overlap benchmarks, docs/benchmarks.md).
# Nothing leaves the namespaces: the veth has no route outside them.
#
#   sudo scripts/netns_link.sh up [RATE] [DELAY]   # default 25gbit 30us (each direction; tbf
#                                                  # and no delay where the kernel lacks netem)
#   sudo ip netns exec eps-node0 CMD ...           # node 0 is 10.77.0.1, node 1 is 10.77.0.2
#   sudo scripts/netns_link.sh down
set -euo pipefail

NS0=eps-node0
NS1=eps-node1
ADDR0=10.77.0.1
ADDR1=10.77.0.2

up() {
  local rate=${1:-25gbit} delay=${2:-30us}
  down 2>/dev/null || true
  ip netns add "$NS0"
  ip netns add "$NS1"
  ip link add eps-veth0 type veth peer name eps-veth1
  ip link set eps-veth0 netns "$NS0"
  ip link set eps-veth1 netns "$NS1"
  ip -n "$NS0" addr add "$ADDR0/24" dev eps-veth0
  ip -n "$NS1" addr add "$ADDR1/24" dev eps-veth1
  for ns in "$NS0" "$NS1"; do
    ip -n "$ns" link set lo up
  done
  ip -n "$NS0" link set eps-veth0 up
  ip -n "$NS1" link set eps-veth1 up
  # netem shapes egress: the delay and the rate apply in each direction. Kernels without
  # sch_netem (some containers) get tbf: the rate only, and the script says so.
  local ns dev shaped="$rate, $delay each way"
  for ns in "$NS0" "$NS1"; do
    dev=eps-veth${ns: -1}
    if ! ip netns exec "$ns" tc qdisc add dev "$dev" root netem delay "$delay" rate "$rate" \
        limit 100000 2>/dev/null; then
      ip netns exec "$ns" tc qdisc add dev "$dev" root tbf rate "$rate" burst 4mb latency 10ms
      shaped="$rate (tbf; no netem in this kernel: delay not applied)"
    fi
  done
  echo "up: $NS0 ($ADDR0) <-> $NS1 ($ADDR1), $shaped"
}

down() {
  ip netns del "$NS0" 2>/dev/null || true
  ip netns del "$NS1" 2>/dev/null || true
  # Deleting a namespace deletes its end of the veth, and with it the pair.
}

case "${1:-}" in
  up) shift; up "$@" ;;
  down) down ;;
  *) echo "usage: $0 up [RATE] [DELAY] | down" >&2; exit 2 ;;
esac
