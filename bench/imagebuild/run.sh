#!/usr/bin/env bash
# Cold and warm image builds in a jobrun job (builds_images = true, buildah
# in the debian-buildah test image, its storage on a cache volume) against
# `podman build` of the same Dockerfile on the host (root podman, runc), and
# for reference `buildah build` on the host, the job's builder outside a job.
#
# The Dockerfile (bench/imagebuild/Dockerfile) is multi-stage with three RUN
# steps and a COPY --from, on the test images' Debian base, which every side
# loads first from its OCI layout as localhost/bench-base:latest (untimed).
# Each repetition starts from empty builder storage on every side (a new
# cache volume for the job, a new --root on the host): a cold build (no
# layer in the storage but the base's), then a warm one of the unchanged
# Dockerfile (every step "Using cache"); both are checked. The sides
# alternate their order from one repetition to the next.
#
# Timed: jobrun's whole `jobrun local` run (job start and teardown
# included), the build alone inside the job (the step measures it), and
# each host build. Target: jobrun's warm run at most 1.2x podman's warm
# build. Writes $BENCH_OUT/imagebuild.json (default bench/out).
# Needs root. usage: bench/imagebuild/run.sh   (env N repetitions, default
# 5; TINY=1: 1)
set -euo pipefail
cd "$(dirname "$0")/../.."
export LC_ALL=C
if [ -n "${TINY:-}" ]; then
	: "${N:=1}"
fi
N=${N:-5}
if [ "$(id -u)" != 0 ]; then
	echo "bench/imagebuild: needs root (containers)" >&2
	exit 1
fi
for t in podman buildah skopeo; do
	command -v "$t" >/dev/null || {
		echo "bench/imagebuild: needs $t on the host" >&2
		exit 1
	}
done
# Not eval "$(...)" directly: that would hide the script's failure.
images=$(scripts/testimages.sh)
eval "$images"

work=$(mktemp -d /tmp/jobrun-bench-imagebuild.XXXXXX)
# mktemp's 0700 would stop a job's range root on its way to the state
# dir's snapshots (it must get through, never list).
chmod 711 "$work"
# The host builders' run roots: short paths (buildah refuses one over 50
# characters).
runs=$(mktemp -d /tmp/ib.XXXXXX)
# unmount_under DIR: takes off whatever a host builder left mounted under
# DIR (its storage's own bind and layer mounts), deepest first.
unmount_under() {
	findmnt -rn -o TARGET | awk -v d="$1/" 'index($0, d) == 1' | sort -r | while read -r m; do
		umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
	done
}
cleanup() {
	local r i
	for r in "$work"/host-*; do
		[ -d "$r" ] || continue
		i=${r##*-}
		podman --root "$r/podman" --runroot "$runs/$i-podman" rmi -af >/dev/null 2>&1 || true
		buildah --root "$r/buildah" --runroot "$runs/$i-buildah" rm -a >/dev/null 2>&1 || true
	done
	unmount_under "$work"
	unmount_under "$runs"
	rm -rf "$work" "$runs"
}
trap cleanup EXIT
. bench/lib.sh
bench_result_tool "$work"
res=$work/result.json
"$BENCHRESULT" new -param reps="$N" "$res" imagebuild \
	"Cold and warm build of a multi-stage Dockerfile (3 RUN steps, COPY --from, Debian base) in a jobrun job (builds_images, buildah, storage on a cache volume) against podman build on the host"

# The binary lives away from the state dir, as an installed jobrun does.
bench_build ./cmd/jobrun "$work/bin/jobrun"
bench_helpers "$work/bin"

# Private copies of the layouts (hard links: blobs are never rewritten),
# since a rebuild of the test images removes the old set mid-run.
cp -al "$JOBRUN_TEST_IMAGES_DEBIAN_BUILDAH" "$work/buildah" 2>/dev/null || cp -a "$JOBRUN_TEST_IMAGES_DEBIAN_BUILDAH" "$work/buildah"
proj=$work/proj
mkdir -p "$proj/ctx"
cp -al "$JOBRUN_TEST_IMAGES_DEBIAN" "$proj/base" 2>/dev/null || cp -a "$JOBRUN_TEST_IMAGES_DEBIAN" "$proj/base"
base_tag=$(sed -n 's/.*"org.opencontainers.image.ref.name":"\([^"]*\)".*/\1/p' "$proj/base/index.json")
[ -n "$base_tag" ] || {
	echo "bench/imagebuild: no tag in $proj/base/index.json" >&2
	exit 1
}
cp bench/imagebuild/Dockerfile "$proj/ctx/Dockerfile"
# The steps that are not the base's: 3 RUN and a COPY; a warm build takes
# each from the cache.
steps=$(grep -cE '^(RUN|COPY) ' "$proj/ctx/Dockerfile")

# Both sides build with the same flags: layers kept (podman's default,
# buildah's --layers), no registry look-up for the base (--pull=never:
# it is in the storage) and no network for the RUN steps (the job's
# network = "none"; --network none for the host's podman, which would
# otherwise set one up per RUN step; the Dockerfile needs none). The
# host's buildah, with chroot isolation, refuses --network (its RUN steps
# share the host's network, as the job's share the job's: none). The job's buildah runs
# with chroot isolation, as builds_images documents; the host's podman
# with runc, since crun refuses this host's hybrid cgroup v1 mode.
load='buildah pull -q oci:/workspace/base:'$base_tag' >/dev/null && buildah tag $(buildah images -q | head -1) localhost/bench-base:latest'
build='t0=$(date +%s%N); buildah build --layers --pull=never --isolation chroot -t localhost/bench:1 /workspace/ctx; t1=$(date +%s%N); echo "build-us $(((t1 - t0) / 1000))"'
# jobfile I: the project's job file for repetition I, whose cache volume
# (its builder storage) is new.
jobfile() {
	cat >"$proj/.ci.hcl" <<EOT
job "load" {
  image         = "oci-layout:$work/buildah:latest"
  network       = "none"
  builds_images = true
  cache "containers-$1" { path = "/var/lib/containers" }
  step "load" {
    run = <<-EOS
      $load
    EOS
  }
}
job "build" {
  image         = "oci-layout:$work/buildah:latest"
  network       = "none"
  builds_images = true
  cache "containers-$1" { path = "/var/lib/containers" }
  step "build" {
    run = <<-EOS
      $build
    EOS
  }
}
EOT
}

jobrun=("$work/bin/jobrun" local --state-dir "$work/state" --artifacts "$work/artifacts")
# host TOOL I ARGS...: TOOL (podman or buildah) with repetition I's storage.
host() {
	local t=$1 i=$2
	shift 2
	"$t" --root "$work/host-$i/$t" --runroot "$runs/$i-$t" "$@"
}
host_build() {
	case $1 in
	podman) host podman "$2" --runtime runc build --pull=never --network none -t localhost/bench:1 "$proj/ctx" ;;
	buildah) host buildah "$2" build --layers --pull=never --isolation chroot -t localhost/bench:1 "$proj/ctx" ;;
	esac
}

# check NAME COLD|WARM: the build's output in $work/out built the image,
# and used the layer cache for every step when warm, for none when cold.
check() {
	local n
	grep -q "Successfully tagged localhost/bench:1" "$work/out" || {
		echo "bench/imagebuild: $1 did not build the image:" >&2
		cat "$work/out" >&2
		return 1
	}
	n=$(grep -c "Using cache" "$work/out" || true)
	if { [ "$2" = cold ] && [ "$n" != 0 ]; } || { [ "$2" = warm ] && [ "$n" -lt "$steps" ]; }; then
		echo "bench/imagebuild: $1, $2: $n steps from the cache (want $([ "$2" = cold ] && echo 0 || echo "$steps")):" >&2
		cat "$work/out" >&2
		return 1
	fi
}
# timed NAME KIND CMD...: runs CMD, checks it, and appends its wall time
# in microseconds to $work/NAME-KIND.us.
timed() {
	local name=$1 kind=$2 t0 t1
	shift 2
	t0=${EPOCHREALTIME/./}
	if ! "$@" >"$work/out" 2>&1; then
		echo "bench/imagebuild: $name ($kind) failed:" >&2
		cat "$work/out" >&2
		return 1
	fi
	t1=${EPOCHREALTIME/./}
	check "$name" "$kind"
	echo $((t1 - t0)) >>"$work/$name-$kind.us"
}
# side NAME I KIND: one timed build of side NAME in repetition I.
side() {
	case $1 in
	jobrun)
		timed jobrun "$3" "${jobrun[@]}" --job build "$proj/.ci.hcl"
		sed -n 's/.*build-us \([0-9]*\).*/\1/p' "$work/out" >>"$work/jobrun-build-$3.us"
		;;
	*) timed "$1" "$3" host_build "$1" "$2" ;;
	esac
}

# Untimed: jobrun unpacks its image into the store once.
jobfile 0
"${jobrun[@]}" --job load "$proj/.ci.hcl" >"$work/out" 2>&1 || {
	cat "$work/out" >&2
	exit 1
}
order=(jobrun podman buildah)
for i in $(seq 1 "$N"); do
	# Empty storage on every side, the base loaded (untimed).
	jobfile "$i"
	"${jobrun[@]}" --job load "$proj/.ci.hcl" >"$work/out" 2>&1 || {
		cat "$work/out" >&2
		exit 1
	}
	for t in podman buildah; do
		skopeo copy -q "oci:$proj/base:$base_tag" "containers-storage:[overlay@$work/host-$i/$t+$runs/$i-$t]localhost/bench-base:latest"
	done
	for kind in cold warm; do
		for s in "${order[@]}"; do
			side "$s" "$i" "$kind"
		done
	done
	order=("${order[@]:1}" "${order[0]}")
	printf 'rep %d: cold jobrun %.2f s (build %.2f s), podman %.2f s, buildah %.2f s; warm jobrun %.2f s (build %.2f s), podman %.2f s, buildah %.2f s\n' "$i" \
		"$(echo "$(tail -1 "$work/jobrun-cold.us") / 1000000" | bc -l)" "$(echo "$(tail -1 "$work/jobrun-build-cold.us") / 1000000" | bc -l)" \
		"$(echo "$(tail -1 "$work/podman-cold.us") / 1000000" | bc -l)" "$(echo "$(tail -1 "$work/buildah-cold.us") / 1000000" | bc -l)" \
		"$(echo "$(tail -1 "$work/jobrun-warm.us") / 1000000" | bc -l)" "$(echo "$(tail -1 "$work/jobrun-build-warm.us") / 1000000" | bc -l)" \
		"$(echo "$(tail -1 "$work/podman-warm.us") / 1000000" | bc -l)" "$(echo "$(tail -1 "$work/buildah-warm.us") / 1000000" | bc -l)"
	# This repetition's host storage goes now (disk).
	host podman "$i" rmi -af >/dev/null 2>&1 || true
	host buildah "$i" rm -a >/dev/null 2>&1 || true
	host buildah "$i" rmi -af >/dev/null 2>&1 || true
	unmount_under "$work/host-$i"
	unmount_under "$runs"
	rm -rf "$work/host-$i" "$runs"/*
done

median() { sort -n "$1" | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : int((a[NR / 2] + a[NR / 2 + 1]) / 2)}'; }
echo "image build, $N repetitions, medians; load $(cut -d' ' -f1-3 /proc/loadavg)"
for kind in cold warm; do
	jm=$(median "$work/jobrun-$kind.us")
	bm=$(median "$work/jobrun-build-$kind.us")
	pm=$(median "$work/podman-$kind.us")
	hm=$(median "$work/buildah-$kind.us")
	printf '%s: jobrun local %.2f s (buildah build in the job %.2f s), podman build %.2f s, buildah build on the host %.2f s; jobrun/podman %.2fx%s, in-job build/podman %.2fx\n' \
		"$kind" "$(echo "$jm / 1000000" | bc -l)" "$(echo "$bm / 1000000" | bc -l)" "$(echo "$pm / 1000000" | bc -l)" "$(echo "$hm / 1000000" | bc -l)" \
		"$(echo "$jm / $pm" | bc -l)" "$([ "$kind" = warm ] && echo " (target <= 1.2x)")" "$(echo "$bm / $pm" | bc -l)"
done
for kind in cold warm; do
	target=()
	[ "$kind" = warm ] && target=(-target 'ratio<=1.2')
	"$BENCHRESULT" add -chart bars -scale 0.000001 -peer "podman build (host)" "${target[@]}" "$res" "image build, $kind" "jobrun local (builds_images)" s <"$work/jobrun-$kind.us"
	"$BENCHRESULT" add -chart bars -scale 0.000001 -peer "podman build (host)" "$res" "image build, $kind" "buildah build in the job" s <"$work/jobrun-build-$kind.us"
	"$BENCHRESULT" add -chart bars -scale 0.000001 "$res" "image build, $kind" "podman build (host)" s <"$work/podman-$kind.us"
	"$BENCHRESULT" add -chart bars -scale 0.000001 -peer "podman build (host)" "$res" "image build, $kind" "buildah build (host)" s <"$work/buildah-$kind.us"
done
"$BENCHRESULT" finish "$res" "$BENCH_OUT/imagebuild.json"
