#!/usr/bin/env bash
# What idmapping adds to a job's root by number of layers (1, 5, 20): a
# plain overlay (today's snapshot) against one on a kept idmapped view of
# the layers and one made with its own user namespace and idmapped mount,
# alternating round by round; prints medians and differences and writes
# $BENCH_OUT/idmap.json (default bench/out), each variant's ratio to plain.
# Needs root.
# usage: bench/idmap/run.sh   (env N rounds, default 200; TINY=1: 5 rounds;
#                              WORK, default /var/tmp: a dir on the disk
#                              jobs use)
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ "$(id -u)" != 0 ]; then
	echo "bench/idmap: needs root (namespaces, mounts)" >&2
	exit 1
fi
bin=$(mktemp -d /tmp/jobrun-bench-idmap-bin.XXXXXX)
trap 'rm -rf "$bin"' EXIT
. bench/lib.sh
bench_build ./bench/idmap "$bin/idmap-bench"
if [ -n "${TINY:-}" ]; then
	: "${N:=5}"
fi
out=${BENCH_OUT:-bench/out}
mkdir -p "$out"
echo "load: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores"
"$bin/idmap-bench" -n "${N:-200}" -work "${WORK:-/var/tmp}" -json "$out/idmap.json"
