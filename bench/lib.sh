# Sourced by the benches, from the repo root. bench_result_tool, called
# after a bench has made its work dir, sets BENCHRESULT (package bench/internal/result's command, which
# writes a bench's JSON), building it into DIR unless bench/run.sh has,
# and makes BENCH_OUT (default bench/out).
# usage: . bench/lib.sh; bench_result_tool DIR
# BENCH_BIN (set by bench/run.sh): a directory with jobrun, its helpers
# and every bench's command, built once for all benches.
bench_result_tool() {
	if [ -z "${BENCHRESULT:-}" ]; then
		go build -o "$1/benchresult" ./bench/internal/result/benchresult
		BENCHRESULT=$1/benchresult
	fi
	BENCH_OUT=${BENCH_OUT:-bench/out}
	mkdir -p "$BENCH_OUT"
}

# bench_build PKG OUT: puts the command PKG (./cmd/jobrun, ./bench/NAME)
# at OUT: a hard link to $BENCH_BIN/<PKG's last element> when bench/run.sh
# (or the tiny test) built it there for all benches, else built here.
bench_build() {
	local b=${BENCH_BIN:+$BENCH_BIN/${1##*/}}
	mkdir -p "$(dirname "$2")"
	if [ -n "$b" ] && [ -x "$b" ]; then
		ln -f "$b" "$2" 2>/dev/null || cp "$b" "$2"
	else
		CGO_ENABLED=1 go build -tags seccomp -o "$2" "$1"
	fi
}

# bench_helpers DIR: puts jobrun's helpers (scripts/helpers.sh) in DIR,
# linked from $BENCH_BIN when they are there.
bench_helpers() {
	local h
	if [ -n "${BENCH_BIN:-}" ] && [ -x "$BENCH_BIN/jobrun-launcher" ] && [ -x "$BENCH_BIN/jobrun-starter" ]; then
		mkdir -p "$1"
		for h in jobrun-launcher jobrun-starter; do
			ln -f "$BENCH_BIN/$h" "$1/$h" 2>/dev/null || cp "$BENCH_BIN/$h" "$1/$h"
		done
	else
		scripts/helpers.sh "$1"
	fi
}
