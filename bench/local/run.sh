#!/usr/bin/env bash
# Wall time of `jobrun local examples/hello/.ci.hcl` (one job, one `echo`
# step, image warm in the store) against `podman run --rm` of the same
# command on the same image, in the same run, alternating round by round so
# that load from other processes hits both alike. Prints the medians and the
# ratio jobrun/podman (target: at most 0.5). jobrun runs twice a round: with
# --userns on (the default: the job in a user namespace of an id range
# leased from the host's jobrun entries in /etc/subuid and /etc/subgid) and
# with --userns off (the job's root is the host's root, as before user
# namespaces), both compared with podman; it also prints what on adds.
#
# The job file runs as written: its image `busybox` comes from a local
# docker-registry set up as docker.io's mirror in a --config file, filled
# from the test images' OCI layout (scripts/testimages.sh). podman pulls the
# same image from the same registry into a storage of its own under the
# bench's temp dir, and runs with --network none (a jobrun job has no
# network by default), runc (crun refuses cgroup v1 hybrid mode here) and
# nofile/nproc ulimits of 1024 (podman's defaults need CAP_SYS_RESOURCE,
# which this machine lacks). Each command's output is checked on every run.
# Writes $BENCH_OUT/local.json (default bench/out).
# Needs root. usage: bench/local/run.sh   (env N rounds, default 50; TINY=1: 2)
set -euo pipefail
cd "$(dirname "$0")/../.."
export LC_ALL=C
if [ -n "${TINY:-}" ]; then
	: "${N:=2}"
fi
N=${N:-50}
if [ "$(id -u)" != 0 ]; then
	echo "bench/local: needs root (containers)" >&2
	exit 1
fi
for t in docker-registry skopeo podman; do
	command -v "$t" >/dev/null || {
		echo "bench/local: needs $t" >&2
		exit 1
	}
done
# Not eval "$(...)" directly: that would hide the script's failure.
images=$(scripts/testimages.sh)
eval "$images"

work=$(mktemp -d /tmp/jobrun-bench-local.XXXXXX)
# mktemp's 0700 would stop a job's range root on its way to the state
# dir's snapshots (it must get through, never list).
chmod 711 "$work"
podman=(podman --root "$work/podman/root" --runroot "$work/podman/run" --runtime runc)
cleanup() {
	bench_stop_registry
	"${podman[@]}" rm -af >/dev/null 2>&1 || true
	"${podman[@]}" rmi -af >/dev/null 2>&1 || true
	rm -rf "$work"
}
trap cleanup EXIT
. bench/lib.sh
bench_result_tool "$work"
res=$work/result.json
"$BENCHRESULT" new -param rounds="$N" "$res" local \
	"Wall time of \`jobrun local examples/hello/.ci.hcl\` (one echo step, image warm; --userns on, the default, and off) against \`podman run --rm\` of the same command on the same image (runc, --network none)"

# The binary lives away from the state dir, as an installed jobrun does.
bench_build ./cmd/jobrun "$work/bin/jobrun"
bench_helpers "$work/bin"

bench_registry "$work"
port=${reg#*:}
cat >"$work/config.hcl" <<EOT
registry "docker.io" {
  mirrors = ["127.0.0.1:$port"]
}
registry "127.0.0.1:$port" {
  insecure = true
}
EOT

file=examples/hello/.ci.hcl
step=$(sed -n 's/^[[:space:]]*run[[:space:]]*=[[:space:]]*"\(.*\)"[[:space:]]*$/\1/p' "$file")
[ -n "$step" ] || {
	echo "bench/local: no run = \"...\" line in $file" >&2
	exit 1
}
want="hello from jobrun on Linux"
jobrun_cmd=("$work/bin/jobrun" local --state-dir "$work/state" --config "$work/config.hcl" --artifacts "$work/artifacts" --userns on "$file")
jobrun_off_cmd=("$work/bin/jobrun" local --state-dir "$work/state" --config "$work/config.hcl" --artifacts "$work/artifacts" --userns off "$file")
podman_cmd=("${podman[@]}" run --rm --network none --ulimit nofile=1024:1024 --ulimit nproc=1024:1024
	"127.0.0.1:$port/library/busybox:latest" sh -c "$step")

# Warm-up, untimed: jobrun pulls the image through the mirror into its store;
# podman pulls it into its storage.
"${jobrun_cmd[@]}" >"$work/out" 2>&1 || {
	cat "$work/out" >&2
	exit 1
}
"${jobrun_off_cmd[@]}" >"$work/out" 2>&1 || {
	cat "$work/out" >&2
	exit 1
}
"${podman[@]}" pull -q --tls-verify=false "127.0.0.1:$port/library/busybox:latest" >/dev/null
"${podman_cmd[@]}" >"$work/out" 2>&1 || {
	cat "$work/out" >&2
	exit 1
}

bench=bench/local # names the bench in bench_timed's messages
for i in $(seq 1 "$N"); do
	# Rotate which goes first, so none always follows another.
	case $((i % 3)) in
	1)
		bench_timed jobrun "${jobrun_cmd[@]}"
		bench_timed jobrun-off "${jobrun_off_cmd[@]}"
		bench_timed podman "${podman_cmd[@]}"
		;;
	2)
		bench_timed jobrun-off "${jobrun_off_cmd[@]}"
		bench_timed podman "${podman_cmd[@]}"
		bench_timed jobrun "${jobrun_cmd[@]}"
		;;
	0)
		bench_timed podman "${podman_cmd[@]}"
		bench_timed jobrun "${jobrun_cmd[@]}"
		bench_timed jobrun-off "${jobrun_off_cmd[@]}"
		;;
	esac
done

jm=$(bench_median "$work/jobrun.us")
om=$(bench_median "$work/jobrun-off.us")
pm=$(bench_median "$work/podman.us")
echo "jobrun local $file vs podman run --rm (runc, --network none), same busybox image, warm; $N rounds, rotating; load $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-36s median %7.1f ms  (quartiles %s)\n' "jobrun local --userns on" "$(echo "$jm / 1000" | bc -l)" "$(bench_quartiles "$work/jobrun.us")"
printf '%-36s median %7.1f ms  (quartiles %s)\n' "jobrun local --userns off" "$(echo "$om / 1000" | bc -l)" "$(bench_quartiles "$work/jobrun-off.us")"
printf '%-36s median %7.1f ms  (quartiles %s)\n' "podman run --rm" "$(echo "$pm / 1000" | bc -l)" "$(bench_quartiles "$work/podman.us")"
printf 'ratio jobrun/podman: on %.2fx, off %.2fx (target <= 0.5x); on - off: %.1f ms\n' "$(echo "$jm / $pm" | bc -l)" "$(echo "$om / $pm" | bc -l)" "$(echo "($jm - $om) / 1000" | bc -l)"
"$BENCHRESULT" add -scale 0.001 -peer "podman run --rm" -target 'ratio<=0.5' "$res" "hello job wall time" "jobrun local" ms <"$work/jobrun.us"
"$BENCHRESULT" add -scale 0.001 -peer "podman run --rm" -target 'ratio<=0.5' "$res" "hello job wall time" "jobrun local --userns off" ms <"$work/jobrun-off.us"
"$BENCHRESULT" add -scale 0.001 "$res" "hello job wall time" "podman run --rm" ms <"$work/podman.us"
"$BENCHRESULT" add -scale 0.001 -peer "jobrun local --userns off" "$res" "hello job, userns on vs off" "jobrun local --userns on" ms <"$work/jobrun.us"
"$BENCHRESULT" add -scale 0.001 "$res" "hello job, userns on vs off" "jobrun local --userns off" ms <"$work/jobrun-off.us"
"$BENCHRESULT" finish "$res" "$BENCH_OUT/local.json"
