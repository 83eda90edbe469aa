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

# bench_minio DIR: the MinIO and bucket the S3 benches write to. Uses the
# one the test services started (JOBRUN_TEST_MINIO), else starts its own
# with its data in DIR/minio (minio_pid; bench_stop_minio stops it).
# Exports AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY and MC_CONFIG_DIR=DIR/mc,
# makes the mc alias "bench" and a new bucket, named in $bucket.
minio_pid=
bench_minio() {
	if [ -z "${JOBRUN_TEST_MINIO:-}" ]; then
		# Only MinIO is needed, so start it alone, as scripts/services.sh does.
		local port
		port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' 2>/dev/null || echo $((30000 + RANDOM % 20000)))
		export JOBRUN_TEST_MINIO=http://127.0.0.1:$port JOBRUN_TEST_MINIO_ACCESS_KEY=bench JOBRUN_TEST_MINIO_SECRET_KEY=bench-secret-$RANDOM$RANDOM
		MINIO_ROOT_USER=$JOBRUN_TEST_MINIO_ACCESS_KEY MINIO_ROOT_PASSWORD=$JOBRUN_TEST_MINIO_SECRET_KEY MINIO_BROWSER=off MINIO_UPDATE=off \
			minio server --quiet --address "127.0.0.1:$port" "$1/minio" >"$1/minio.log" 2>&1 &
		minio_pid=$!
		for _ in $(seq 1 200); do
			(exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
			sleep 0.05
		done
	fi
	export AWS_ACCESS_KEY_ID=$JOBRUN_TEST_MINIO_ACCESS_KEY AWS_SECRET_ACCESS_KEY=$JOBRUN_TEST_MINIO_SECRET_KEY
	bucket=bench-$RANDOM$RANDOM
	export MC_CONFIG_DIR=$1/mc
	mc alias set bench "$JOBRUN_TEST_MINIO" "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY" >/dev/null
	mc mb "bench/$bucket" >/dev/null
}

# bench_stop_minio stops the MinIO bench_minio started, if it started one.
bench_stop_minio() {
	if [ -n "$minio_pid" ]; then
		kill "$minio_pid" 2>/dev/null || true
		wait "$minio_pid" 2>/dev/null || true
	fi
}
