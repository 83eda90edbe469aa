#!/usr/bin/env bash
# Container start + run `true` + teardown on one busybox rootfs: jobrun's
# sandbox (in process, seccomp on; also with a fresh overlay snapshot per
# run, and on a job's image snapshot without and with a user namespace:
# see README.md for what each includes) against `runc run` (Debian's runc
# CLI) and `podman --runtime runc run --rm`, alternating round by round;
# prints medians and ratios to runc.
# Writes $BENCH_OUT/sandbox.json (default bench/out).
# Needs root. usage: bench/sandbox/run.sh   (env N, default 200; PODMAN_N,
# default 30; TINY=1: 4 and 2)
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ "$(id -u)" != 0 ]; then
	echo "bench/sandbox: needs root (containers)" >&2
	exit 1
fi
bin=$(mktemp -d /tmp/jobrun-bench-sandbox-bin.XXXXXX)
trap 'rm -rf "$bin"' EXIT
# The binary lives in its own directory, as an installed jobrun does.
. bench/lib.sh
bench_build ./bench/sandbox "$bin/sandbox-bench"
# The containers' init and starter, found next to the binary as next to
# jobrun.
bench_helpers "$bin"
if [ -n "${TINY:-}" ]; then
	: "${N:=4}" "${PODMAN_N:=2}"
fi
out=${BENCH_OUT:-bench/out}
mkdir -p "$out"
"$bin/sandbox-bench" -n "${N:-200}" -podman-n "${PODMAN_N:-30}" -json "$out/sandbox.json"
