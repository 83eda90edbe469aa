#!/usr/bin/env bash
# Scheduler dispatch with 50 simulated agents (real HTTP clients on
# loopback, one slot each, finishing every job at once), SQLite against
# PostgreSQL in the same run:
#   - idle pool: 200 single-job runs posted one at a time; dispatch latency
#     (run posted -> lease in the agent's hands) p50 and p99
#   - busy pool: 40 runs of 50 jobs posted at once; jobs per second until
#     the last is leased
# PostgreSQL is the one scripts/services.sh starts, unless
# JOBRUN_TEST_POSTGRES is set (bench/run.sh starts them once for all).
# Writes $BENCH_OUT/dispatch.json (default bench/out).
# usage: bench/dispatch/run.sh   (env TINY=1: 5 agents, 10 idle runs, 2 busy runs of 5 jobs)
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH=$(go env GOPATH)/bin:$PATH
work=$(mktemp -d /tmp/jobrun-bench-dispatch.XXXXXX)
started=
cleanup() {
	if [ -n "$started" ]; then scripts/services.sh stop "$work/svc" || true; fi
	rm -rf "$work"
}
trap cleanup EXIT
if [ -z "${JOBRUN_TEST_POSTGRES:-}" ]; then
	scripts/services.sh start "$work/svc" >/dev/null
	started=1
	# shellcheck disable=SC1091
	. "$work/svc/env"
fi
db=jobrun_bench_dispatch_$RANDOM
psql "$JOBRUN_TEST_POSTGRES" -qc "CREATE DATABASE $db"
trap 'psql "$JOBRUN_TEST_POSTGRES" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" || true; cleanup' EXIT
pg=$(echo "$JOBRUN_TEST_POSTGRES" | sed -E "s#/[^/?]*(\?|$)#/$db\1#")
. bench/lib.sh
bench_build ./bench/dispatch "$work/dispatch-bench"
echo "load: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores; postgres: $(psql "$JOBRUN_TEST_POSTGRES" -Atc 'SHOW server_version')"
out=${BENCH_OUT:-bench/out}
mkdir -p "$out"
size=(-runs 40 -jobs 50)
if [ -n "${TINY:-}" ]; then size=(-agents 5 -idle 10 -runs 2 -jobs 5); fi
"$work/dispatch-bench" -postgres "$pg" "${size[@]}" -json "$out/dispatch.json"
