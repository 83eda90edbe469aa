#!/usr/bin/env bash
# What bridge networking adds to a job container's start over network
# "none": median of N starts each (default 50), alternating; bridge on an
# idle host (bridge and table made and removed per job) and on a busy one.
# Writes $BENCH_OUT/network.json (default bench/out).
# Needs root. usage: bench/network/run.sh   (env N, default 50; TINY=1: 3)
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ "$(id -u)" != 0 ]; then
	echo "bench/network: needs root (containers, links, nftables)" >&2
	exit 1
fi
bin=$(mktemp -d /tmp/jobrun-bench-network-bin.XXXXXX)
trap 'rm -rf "$bin"' EXIT
# The binary lives in its own directory, as an installed jobrun does.
. bench/lib.sh
bench_build ./bench/network "$bin/network-bench"
# The containers' init and starter, found next to the binary as next to
# jobrun.
bench_helpers "$bin"
if [ -n "${TINY:-}" ]; then
	: "${N:=3}"
fi
out=${BENCH_OUT:-bench/out}
mkdir -p "$out"
"$bin/network-bench" -n "${N:-50}" -json "$out/network.json"
