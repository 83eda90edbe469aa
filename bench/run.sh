#!/usr/bin/env bash
# Runs every benchmark under bench/*/run.sh, each comparing jobrun with its
# real peers on this machine, side by side, then writes the report
# (bench/report): BENCH_OUT/REPORT.md, report.html and SVG charts.
#
# A bench is a directory with a run.sh that writes its figures to
# $BENCH_OUT/<dir>.json (package bench/internal/result; shell benches use
# its command, benchresult, built here as $BENCHRESULT). A bench that fails
# or writes no JSON is reported and the others still run; the exit status
# is then 1 with "N of M benches failed".
#
# The services (MinIO, registry, PostgreSQL) are started once for all
# benches unless JOBRUN_TEST_POSTGRES and JOBRUN_TEST_MINIO are set, and
# stopped at the end.
# usage: bench/run.sh [NAME...]   (default: all)
# env: BENCH_OUT (default bench/out); TINY=1 a few rounds each (the test's
#      mode); BENCH_NO_DEPS=1 skips scripts/deps.sh; BENCH_NOTE a line for
#      the report (e.g. on the machine's load); BENCH_DIR, default bench:
#      where the benches' directories are; BENCH_BIN: a directory with
#      jobrun, its helpers and the benches' commands already built.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
export PATH=$(go env GOPATH)/bin:$root/bin:$PATH
export CGO_ENABLED=1
if [ -z "${BENCH_NO_DEPS:-}" ]; then
	scripts/deps.sh || exit 1
fi
export BENCH_OUT=${BENCH_OUT:-$root/bench/out}
mkdir -p "$BENCH_OUT"
BENCH_OUT=$(cd "$BENCH_OUT" && pwd -P)
JOBRUN_COMMIT=${JOBRUN_COMMIT:-$(git describe --always --dirty 2>/dev/null || echo unknown)}
export JOBRUN_COMMIT

dir=${BENCH_DIR:-bench}
names=("$@")
if ((${#names[@]} == 0)); then
	for d in "$dir"/*/run.sh; do
		[ -e "$d" ] && names+=("$(basename "$(dirname "$d")")")
	done
fi
if ((${#names[@]} == 0)); then
	echo "bench/run.sh: no $dir/*/run.sh" >&2
	exit 2
fi
for n in "${names[@]}"; do
	[ -x "$dir/$n/run.sh" ] || {
		echo "bench/run.sh: no bench $n (want a directory $dir/$n with an executable run.sh)" >&2
		exit 2
	}
done

tools=$(mktemp -d /tmp/jobrun-bench-tools.XXXXXX)
svc=
cleanup() {
	if [ -n "$svc" ]; then scripts/services.sh stop "$svc" || true; fi
	rm -rf "$tools" ${svc:+"$svc"}
}
trap cleanup EXIT
trap 'exit 130' INT TERM
# One build of jobrun, its helpers and every bench's command for all
# benches (bench/lib.sh's bench_build links them from BENCH_BIN), unless
# the caller made BENCH_BIN already.
if [ -z "${BENCH_BIN:-}" ]; then
	export BENCH_BIN=$tools/bin
	mkdir -p "$BENCH_BIN"
	if [ "$dir" = bench ]; then
		CGO_ENABLED=1 go build -tags seccomp -o "$BENCH_BIN/" ./cmd/jobrun ./bench/... || exit 1
		scripts/helpers.sh "$BENCH_BIN" || exit 1
	fi
fi
# The report and benchresult: from BENCH_BIN, else built here.
report=$BENCH_BIN/report
export BENCHRESULT=$BENCH_BIN/benchresult
if [ ! -x "$report" ] || [ ! -x "$BENCHRESULT" ]; then
	go build -o "$tools/" ./bench/internal/result/benchresult ./bench/report || exit 1
	report=$tools/report BENCHRESULT=$tools/benchresult
fi

if [ -z "${JOBRUN_TEST_POSTGRES:-}" ] || [ -z "${JOBRUN_TEST_MINIO:-}" ]; then
	svc=$(mktemp -d /tmp/jobrun-bench-services.XXXXXX)
	scripts/services.sh start "$svc" >/dev/null || exit 1
	# shellcheck disable=SC1091
	. "$svc/env"
fi

failed=()
for n in "${names[@]}"; do
	echo "== $dir/$n"
	rm -f "$BENCH_OUT/$n.json"
	"$dir/$n/run.sh"
	rc=$?
	if [ "$rc" != 0 ]; then
		echo "$dir/$n: FAILED (exit status $rc)" >&2
		failed+=("$n")
	elif [ ! -s "$BENCH_OUT/$n.json" ]; then
		echo "$dir/$n: FAILED: it wrote no $BENCH_OUT/$n.json" >&2
		failed+=("$n")
	fi
	echo
done

fl=$(
	IFS=,
	echo "${failed[*]}"
)
ok=1
if "$report" -in "$BENCH_OUT" -out "$BENCH_OUT" -failed "$fl" -note "${BENCH_NOTE:-}"; then
	echo "report: $BENCH_OUT/REPORT.md, $BENCH_OUT/report.html"
else
	echo "bench/run.sh: the report failed" >&2
	ok=
fi
if ((${#failed[@]} > 0)); then
	echo "${#failed[@]} of ${#names[@]} benches failed: ${failed[*]}" >&2
	exit 1
fi
[ -n "$ok" ] || exit 1
echo "all ${#names[@]} benches ran"
