# Sourced by the shell benches, from the repo root, after making their work
# dir: sets BENCHRESULT (package bench/internal/result's command, which
# writes a bench's JSON), building it into DIR unless bench/run.sh has,
# and makes BENCH_OUT (default bench/out).
# usage: . bench/lib.sh; bench_result_tool DIR
bench_result_tool() {
	if [ -z "${BENCHRESULT:-}" ]; then
		go build -o "$1/benchresult" ./bench/internal/result/benchresult
		BENCHRESULT=$1/benchresult
	fi
	BENCH_OUT=${BENCH_OUT:-bench/out}
	mkdir -p "$BENCH_OUT"
}
