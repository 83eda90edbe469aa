#!/usr/bin/env bash
# Image unpack and snapshot speed on the ≥200 MB debian-go test image:
# jobrun's first unpack against `umoci raw unpack` and `tar -xzf` of the same
# layers, and a snapshot's create+mount+unmount+remove against a full unpack.
# Prints medians and ratios and writes $BENCH_OUT/image.json (default
# bench/out). Needs root.
# usage: bench/image/run.sh   (env N unpack rounds, default 3; SNAPSHOTS, default 200;
#                              WORK, default /var/tmp: a dir on the disk jobs use;
#                              TINY=1: the busybox image, 1 round, 5 snapshots)
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ "$(id -u)" != 0 ]; then
	echo "bench/image: needs root (mounts, unpack as root)" >&2
	exit 1
fi
if [ -z "${JOBRUN_TEST_IMAGES:-}" ]; then
	# Not eval "$(...)" directly: that would hide the script's failure.
	images=$(scripts/testimages.sh)
	eval "$images"
fi
bin=$(mktemp -d /tmp/jobrun-bench-image-bin.XXXXXX)
trap 'rm -rf "$bin"' EXIT
. bench/lib.sh
bench_build ./bench/image "$bin/image-bench"
img=debian-go tag=1.26
if [ -n "${TINY:-}" ]; then
	img=busybox tag=latest
	: "${N:=1}" "${SNAPSHOTS:=5}"
fi
# A private copy: a rebuild of the test images replaces the shared set.
cp -a "$JOBRUN_TEST_IMAGES/$img" "$bin/$img"
out=${BENCH_OUT:-bench/out}
mkdir -p "$out"
"$bin/image-bench" -layout "$bin/$img" -tag "$tag" -json "$out/image.json" \
	-n "${N:-3}" -snapshots "${SNAPSHOTS:-200}" -work "${WORK:-/var/tmp}"
