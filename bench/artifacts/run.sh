#!/usr/bin/env bash
# Artifact upload throughput to a local MinIO: jobrun's S3 store (Collect +
# parallel Upload + sha256 manifest) against MinIO's own client `mc cp`, in
# the same run, on the same server and data:
#   - one 1 GiB file (multipart)
#   - 10,000 small files (1-8 KiB)
# Each case runs REPS times per tool, alternating; the median wall time is
# reported with MiB/s and the ratio jobrun/mc (below 1: jobrun is faster).
# It starts its own MinIO (the pinned binary from scripts/deps.sh) unless
# JOBRUN_TEST_MINIO is set.
# Writes $BENCH_OUT/artifacts.json (default bench/out).
# usage: bench/artifacts/run.sh   (env REPS, default 3; BIG_MB, default 1024;
#                                  SMALL_FILES, default 10000; TINY=1: 1, 8, 200)
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH=$(go env GOPATH)/bin:$PATH
if [ -n "${TINY:-}" ]; then
	: "${REPS:=1}" "${BIG_MB:=8}" "${SMALL_FILES:=200}"
fi
REPS=${REPS:-3} BIG_MB=${BIG_MB:-1024} SMALL_FILES=${SMALL_FILES:-10000}
work=$(mktemp -d /tmp/jobrun-bench-artifacts.XXXXXX)
cleanup() {
	bench_stop_minio
	rm -rf "$work"
}
trap cleanup EXIT
. bench/lib.sh
bench_result_tool "$work"
res=$work/result.json
"$BENCHRESULT" new -param reps="$REPS" -param "big file MiB=$BIG_MB" -param "small files=$SMALL_FILES" "$res" artifacts \
	"Artifact upload to a local MinIO: jobrun's S3 store (Collect + parallel Upload + sha256 manifest) against MinIO's client \`mc cp\`, same server and data"

bench_minio "$work"
bench_build ./bench/artifacts "$work/artifacts-bench"

# go install builds report no version; the pins live in scripts/deps.sh.
echo "minio: $(sed -n 's/^MINIO_VERSION=//p' scripts/deps.sh) (github.com/minio/minio)"
echo "mc:    $(sed -n 's/^MC_VERSION=//p' scripts/deps.sh) (github.com/minio/mc)"
echo "load:  $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores"
echo "data:  making $BIG_MB MiB of random data and $SMALL_FILES small files"
mkdir -p "$work/big" "$work/small"
head -c "${BIG_MB}M" /dev/urandom >"$work/big/blob.bin"
"$work/artifacts-bench" -make-small "$work/small" -small-files "$SMALL_FILES"
sync

now() { date +%s.%N; }
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# bench NAME DIR: times both tools REPS times, alternating.
bench() {
	local name=$1 dir=$2 bytes j=() m=() t0 t1
	bytes=$(du -sb --apparent-size "$dir" | cut -f1)
	for i in $(seq 1 "$REPS"); do
		t0=$(now)
		"$work/artifacts-bench" -endpoint "$JOBRUN_TEST_MINIO" -bucket "$bucket" -dir "$dir" -run "$name-$i" 2>/dev/null
		t1=$(now)
		j+=("$(echo "$t1 - $t0" | bc -l)")
		t0=$(now)
		mc cp --quiet --recursive "$dir/" "bench/$bucket/mc/$name-$i/" >/dev/null
		t1=$(now)
		m+=("$(echo "$t1 - $t0" | bc -l)")
		mc rm --recursive --force "bench/$bucket/" >/dev/null # keep the disk small
	done
	local jm mm
	jm=$(printf '%s\n' "${j[@]}" | median)
	mm=$(printf '%s\n' "${m[@]}" | median)
	printf '%-22s jobrun %7.2fs %8.1f MiB/s | mc %7.2fs %8.1f MiB/s | jobrun/mc time ratio %.2f\n' \
		"$name" "$jm" "$(echo "$bytes / 1048576 / $jm" | bc -l)" "$mm" "$(echo "$bytes / 1048576 / $mm" | bc -l)" \
		"$(echo "$jm / $mm" | bc -l)"
	echo "  runs: jobrun ${j[*]}; mc ${m[*]}"
	printf '%s\n' "${j[@]}" | "$BENCHRESULT" add -chart bars -peer "mc cp" "$res" "upload $name" jobrun s
	printf '%s\n' "${m[@]}" | "$BENCHRESULT" add "$res" "upload $name" "mc cp" s
}

echo "== median of $REPS runs each"
bench "one $BIG_MB MiB file" "$work/big"
bench "$SMALL_FILES small files" "$work/small"
mc rb --force "bench/$bucket" >/dev/null
"$BENCHRESULT" finish "$res" "$BENCH_OUT/artifacts.json"
