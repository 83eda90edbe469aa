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
		port=$(bench_free_port 2>/dev/null || echo $((30000 + RANDOM % 20000)))
		export JOBRUN_TEST_MINIO=http://127.0.0.1:$port JOBRUN_TEST_MINIO_ACCESS_KEY=bench JOBRUN_TEST_MINIO_SECRET_KEY=bench-secret-$RANDOM$RANDOM
		MINIO_ROOT_USER=$JOBRUN_TEST_MINIO_ACCESS_KEY MINIO_ROOT_PASSWORD=$JOBRUN_TEST_MINIO_SECRET_KEY MINIO_BROWSER=off MINIO_UPDATE=off \
			minio server --quiet --address "127.0.0.1:$port" "$1/minio" >"$1/minio.log" 2>&1 &
		minio_pid=$!
		bench_wait_port "$port"
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

# bench_free_port prints a TCP port of 127.0.0.1 that nothing listens on.
bench_free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# bench_wait_port PORT waits until something listens on 127.0.0.1:PORT,
# for 10 s at the most (the bench's next step says what is missing).
bench_wait_port() {
	for _ in $(seq 1 200); do
		(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
		sleep 0.05
	done
}

# bench_registry DIR: a loopback registry holding the busybox test image.
# Starts Debian's docker-registry on a free port of 127.0.0.1 (plain
# HTTP) with its storage and log in DIR (reg_pid; bench_stop_registry
# stops it), pushes the busybox layout of $JOBRUN_TEST_IMAGES
# (scripts/testimages.sh) to it as library/busybox:latest with skopeo,
# and sets reg to its host:port. Needs docker-registry and skopeo.
reg_pid=
bench_registry() {
	local port
	port=$(bench_free_port)
	mkdir -p "$1/registry"
	cat >"$1/registry.yml" <<EOT
version: 0.1
storage:
  filesystem:
    rootdirectory: $1/registry
http:
  addr: 127.0.0.1:$port
EOT
	docker-registry serve "$1/registry.yml" >"$1/registry.log" 2>&1 &
	reg_pid=$!
	bench_wait_port "$port"
	reg=127.0.0.1:$port
	# A private copy of the layout (hard links: blobs are never
	# rewritten), since a rebuild of the test images removes the old set.
	cp -al "$JOBRUN_TEST_IMAGES/busybox" "$1/busybox" 2>/dev/null || cp -a "$JOBRUN_TEST_IMAGES/busybox" "$1/busybox"
	skopeo copy -q --dest-tls-verify=false "oci:$1/busybox:latest" \
		"docker://$reg/library/busybox:latest"
}

# bench_stop_registry stops the registry bench_registry started, if any.
bench_stop_registry() {
	if [ -n "$reg_pid" ]; then
		kill "$reg_pid" 2>/dev/null || true
		wait "$reg_pid" 2>/dev/null || true
	fi
}

# bench_timed NAME CMD...: runs CMD once, appends its wall time in
# microseconds to $work/NAME.us, and fails unless it succeeded and
# printed $want; its messages start with $bench (bench/local, ...).
# (timed_label: a name CMD's functions do not read, as they may $name.)
bench_timed() {
	local timed_label=$1 t0 t1
	shift
	t0=${EPOCHREALTIME/./}
	if ! "$@" >"$work/out" 2>&1; then
		echo "$bench: $timed_label failed:" >&2
		cat "$work/out" >&2
		return 1
	fi
	t1=${EPOCHREALTIME/./}
	grep -q "$want" "$work/out" || {
		echo "$bench: $timed_label did not print \"$want\":" >&2
		cat "$work/out" >&2
		return 1
	}
	echo $((t1 - t0)) >>"$work/$timed_label.us"
}

# bench_median FILE prints the median of the whole numbers in FILE, one a
# line (of two middle ones, their mean, rounded down).
bench_median() { sort -n "$1" | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : int((a[NR / 2] + a[NR / 2 + 1]) / 2)}'; }

# bench_quartiles FILE prints the first and third quartiles of FILE's
# microseconds, in ms: "A..B ms".
bench_quartiles() { sort -n "$1" | awk '{a[NR] = $1} END {printf "%.1f..%.1f ms", a[int((NR + 3) / 4)] / 1000, a[int((3 * NR + 3) / 4)] / 1000}'; }
