#!/usr/bin/env bash
# The server's memory while 8 clients read a 64 MiB log at once: the job
# page, the text download and the live log from the start, each measured
# on its own, 3 rounds alternating (peak VmRSS of a real `jobrun server` on
# SQLite). The target is under 100 MiB; the log's size is the peer.
# Writes $BENCH_OUT/logread.json (default bench/out).
# usage: bench/logread/run.sh [JOBRUN_BINARY]
#        (env TINY=1: a 4 MiB log, 2 clients, 2 rounds)
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH=$(go env GOPATH)/bin:$PATH
work=$(mktemp -d /tmp/jobrun-bench-logread.XXXXXX)
trap 'rm -rf "$work"' EXIT
. bench/lib.sh
bin=${1:-}
if [ -z "$bin" ]; then
	bin=$work/jobrun
	bench_build ./cmd/jobrun "$bin"
fi
bench_build ./bench/logread "$work/logread-bench"
echo "load: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores"
out=${BENCH_OUT:-bench/out}
mkdir -p "$out"
size=(-log 64MiB -clients 8 -rounds 3)
if [ -n "${TINY:-}" ]; then size=(-log 4MiB -clients 2 -rounds 2); fi
"$work/logread-bench" -jobrun "$bin" "${size[@]}" -json "$out/logread.json"
