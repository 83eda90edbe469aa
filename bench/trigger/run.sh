#!/usr/bin/env bash
# Webhook received -> first step running on an idle agent with a warm
# image: the real `jobrun server` and `jobrun agent`, a real git repository
# pushed to 100 branches (one run each, so no supersede or affinity wait),
# each push announced by a signed GitHub webhook. p50 and p99, with the
# same job posted to the runs API without a checkout as the baseline and
# the ratio of the two. Target: p50 under 300 ms.
# Writes $BENCH_OUT/trigger.json (default bench/out).
# Needs root (containers). usage: bench/trigger/run.sh   (env N pushes,
# default 100; BASELINE API runs, default 30; TINY=1: 3 and 2)
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ -n "${TINY:-}" ]; then
	: "${N:=3}" "${BASELINE:=2}"
fi
N=${N:-100}
out=${BENCH_OUT:-bench/out}
mkdir -p "$out"
if [ "$(id -u)" != 0 ]; then
	echo "bench/trigger: needs root (containers)" >&2
	exit 1
fi
images=$(scripts/testimages.sh)
eval "$images"
work=$(mktemp -d /tmp/jobrun-bench-trigger.XXXXXX)
trap 'rm -rf "$work"' EXIT
. bench/lib.sh
bench_build ./cmd/jobrun "$work/bin/jobrun"
bench_helpers "$work/bin"
bench_build ./bench/trigger "$work/trigger-bench"
echo "load: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores"
PATH="$work/bin:$PATH" "$work/trigger-bench" -jobrun "$work/bin/jobrun" \
	-image "oci-layout:$JOBRUN_TEST_IMAGES_BUSYBOX:latest" -pushes "$N" -baseline "${BASELINE:-30}" -json "$out/trigger.json"
