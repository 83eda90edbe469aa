#!/usr/bin/env bash
# Cache sharing through a local MinIO: package cache's Remote (a volume
# saved as one S2-compressed tar stream by a trusted job's Release, restored by the
# Acquire of a host that lacks it, streamed, no temporary archive) against
# MinIO's own client `mc mirror` of the same tree, up and down, in the same
# run, on the same server and data:
#   - BIG_MB (default 1024) MiB of random data in ten files
#   - with SMALL=1, also SMALL_FILES (default 100,000) files of 1-5 KiB
#     (about 300 MB)
# Each case runs REPS times per tool, alternating, and which tool goes
# first alternates from one rep to the next; the median is reported
# with MiB/s and the ratio jobrun/mc (time; below 1: jobrun is faster).
# jobrun's times are the save (Release) and restore (Acquire) calls alone;
# mc's are wall times of the command. It starts its own MinIO (the pinned
# binary from scripts/deps.sh) unless JOBRUN_TEST_MINIO is set.
# Writes $BENCH_OUT/cacheremote.json (default bench/out).
# usage: bench/cacheremote/run.sh   (env REPS, default 3; SMALL=1; BIG_MB;
#                                    SMALL_FILES; TINY=1: 1 rep, 10 MiB,
#                                    SMALL=1 with 200 files)
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH=$(go env GOPATH)/bin:$PATH
if [ -n "${TINY:-}" ]; then
	: "${REPS:=1}" "${BIG_MB:=10}" "${SMALL:=1}" "${SMALL_FILES:=200}"
fi
REPS=${REPS:-3} BIG_MB=${BIG_MB:-1024} SMALL_FILES=${SMALL_FILES:-100000}
work=$(mktemp -d /tmp/jobrun-bench-cacheremote.XXXXXX)
cleanup() {
	bench_stop_minio
	rm -rf "$work"
}
trap cleanup EXIT
. bench/lib.sh
bench_result_tool "$work"
res=$work/result.json
"$BENCHRESULT" new -param reps="$REPS" -param "big MiB=$BIG_MB" -param "small files=${SMALL:+$SMALL_FILES}" "$res" cacheremote \
	"Cache sharing through a local MinIO: package cache's Remote (one S2-compressed tar stream, saved by Release, restored by Acquire) against MinIO's client \`mc mirror\` of the same tree, same server and data"

bench_minio "$work"
bench_build ./bench/cacheremote "$work/cacheremote-bench"
b() { "$work/cacheremote-bench" -endpoint "$JOBRUN_TEST_MINIO" -bucket "$bucket" "$@"; }

echo "minio: $(sed -n 's/^MINIO_VERSION=//p' scripts/deps.sh) (github.com/minio/minio)"
echo "mc:    $(sed -n 's/^MC_VERSION=//p' scripts/deps.sh) (github.com/minio/mc)"
echo "load:  $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores"
b -make-big "$work/big" -big-mib "$BIG_MB"
if [ "${SMALL:-}" = 1 ]; then b -make-small "$work/small" -small-files "$SMALL_FILES"; fi
sync

now() { date +%s.%N; }
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
row() { # NAME BYTES JOBRUN_TIMES MC_TIMES
	local jm mm
	jm=$(printf '%s\n' $3 | median)
	mm=$(printf '%s\n' $4 | median)
	printf '%-32s jobrun %7.2fs %8.1f MiB/s | mc %7.2fs %8.1f MiB/s | jobrun/mc time ratio %.2f\n' \
		"$1" "$jm" "$(echo "$2 / 1048576 / $jm" | bc -l)" "$mm" "$(echo "$2 / 1048576 / $mm" | bc -l)" "$(echo "$jm / $mm" | bc -l)"
	echo "  runs: jobrun $3; mc $4"
}

# bench NAME DIR: saves and restores with both tools REPS times, alternating.
bench() {
	local name=$1 dir=$2 bytes js=() jr=() ms=() mr=() t0 t1
	bytes=$(du -sb --apparent-size "$dir" | cut -f1)
	ours() {
		sync
		js+=("$(b -mode save -state "$work/a/caches" -src "$dir" -key "$i")")
		# The save wrote the volume (a copy of the tree) on this host
		# first, mc's reads it only: write those dirty pages back before
		# the restore, untimed, as before mc's.
		sync
		jr+=("$(b -mode restore -state "$work/b/caches" -key "$i")")
		rm -rf "$work/a" "$work/b"
	}
	theirs() {
		sync
		t0=$(now)
		mc mirror --quiet "$dir" "bench/$bucket/mc/$i" >/dev/null
		t1=$(now)
		ms+=("$(echo "$t1 - $t0" | bc -l)")
		sync
		t0=$(now)
		mc mirror --quiet "bench/$bucket/mc/$i" "$work/down" >/dev/null
		t1=$(now)
		mr+=("$(echo "$t1 - $t0" | bc -l)")
		rm -rf "$work/down"
	}
	for i in $(seq 1 "$REPS"); do
		# Who goes first alternates, so neither tool always inherits
		# the other's page cache and dirty pages.
		if [ $((i % 2)) = 1 ]; then ours; theirs; else theirs; ours; fi
		mc rm --recursive --force "bench/$bucket/" >/dev/null # keep the disk small
	done
	row "$name: save (upload)" "$bytes" "${js[*]}" "${ms[*]}"
	row "$name: restore (download)" "$bytes" "${jr[*]}" "${mr[*]}"
	printf '%s\n' "${js[@]}" | "$BENCHRESULT" add -chart bars -peer "mc mirror" -target "ratio<=1" "$res" "save $name" jobrun s
	printf '%s\n' "${ms[@]}" | "$BENCHRESULT" add "$res" "save $name" "mc mirror" s
	printf '%s\n' "${jr[@]}" | "$BENCHRESULT" add -chart bars -peer "mc mirror" -target "ratio<=1" "$res" "restore $name" jobrun s
	printf '%s\n' "${mr[@]}" | "$BENCHRESULT" add "$res" "restore $name" "mc mirror" s
}

echo "== median of $REPS runs each"
bench "$BIG_MB MiB in ten files" "$work/big"
if [ "${SMALL:-}" = 1 ]; then bench "$SMALL_FILES small files" "$work/small"; fi
mc rb --force "bench/$bucket" >/dev/null
"$BENCHRESULT" finish "$res" "$BENCH_OUT/cacheremote.json"
