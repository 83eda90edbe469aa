#!/usr/bin/env bash
# Wall time of `jobrun local` of the hello example run by an ordinary user
# (no root: jobrun re-executes itself in the user's namespace, issue #18)
# against rootless `podman run --rm` of the same command on the same image
# by the same user, in the same run, alternating round by round so that
# load from other processes hits both alike. Two network modes, the same
# on both sides: `none`, then bridge (jobrun: pasta; podman: pasta where
# it has it, else its rootless default slirp4netns, named in the output).
# Prints the medians and the ratios jobrun/podman (target: at most 0.5).
#
# The bench (run as root) makes the user, as cmd/jobrun/rootless_test.go
# does: useradd without ranges, then one free 65536-id range in
# /etc/subuid and /etc/subgid (usermod --add-subuids/--add-subgids), and
# removes it at the end with its home, its ranges and any process of its.
# Both sides run as that user with the same clean environment (HOME, USER,
# PATH, XDG_RUNTIME_DIR a 0700 dir of its own) and keep their state under
# its home: jobrun its default ~/.local/share/jobrun, podman its default
# ~/.local/share/containers with storage.conf's driver "overlay" (native
# overlay in the user namespace) and containers.conf's events_logger
# "file", cgroup_manager "cgroupfs" and runtime "runc" (crun refuses this
# machine's cgroup v1 hybrid mode; --cgroups=disabled needs crun).
#
# The job file is examples/hello/.ci.hcl with `network = "none"` or
# `"bridge"` added; its image `busybox` comes from a local docker-registry
# set up as docker.io's mirror in a --config file, filled from the test
# images' OCI layout (scripts/testimages.sh); podman pulls the same image
# from it. One untimed run of each first (image pulled and unpacked).
# Each command's output is checked on every run.
# Writes $BENCH_OUT/rootless.json (default bench/out).
# Needs root (to make the user), newuidmap, pasta.
# usage: bench/rootless/run.sh   (env N rounds, default 20; TINY=1: 2)
set -euo pipefail
cd "$(dirname "$0")/../.."
export LC_ALL=C
if [ -n "${TINY:-}" ]; then
	: "${N:=2}"
fi
N=${N:-20}
if [ "$(id -u)" != 0 ]; then
	echo "bench/rootless: needs root (to make the bench's user)" >&2
	exit 1
fi
for t in docker-registry skopeo podman runc newuidmap newgidmap useradd usermod userdel pasta setpriv; do
	command -v "$t" >/dev/null || {
		echo "bench/rootless: needs $t" >&2
		exit 1
	}
done
# pasta opens /dev/net/tun as the user: Debian's udev rule makes it 0666;
# some hosts (this one) have it 0600.
if [ "$(stat -c %a /dev/net/tun)" != 666 ]; then
	chmod 0666 /dev/net/tun
fi
images=$(scripts/testimages.sh)
eval "$images"

work=$(mktemp -d /tmp/jobrun-bench-rootless.XXXXXX)
chmod 755 "$work"
name=jrb$(($$ % 100000))
made=
# as CMD...: runs CMD as the bench's user with its clean environment.
as() {
	setpriv --reuid "$name" --regid "$name" --clear-groups \
		env -i HOME="$home" USER="$name" LOGNAME="$name" PATH=/usr/local/bin:/usr/bin:/bin XDG_RUNTIME_DIR="$run" NO_COLOR=1 "$@"
}
cleanup() {
	if [ -n "$made" ]; then
		as podman rm -af >/dev/null 2>&1 || true
		# The user's processes, all the bench's: rootless podman's pause
		# process (which holds its namespace) and any left by a failure.
		local pids
		pids=$(ps -o pid= -u "$uid" 2>/dev/null || true)
		if [ -n "$pids" ]; then
			# shellcheck disable=SC2086
			kill -9 $pids 2>/dev/null || true
			sleep 0.2
		fi
		# As root, userdel -r removes the home with both stores, whose
		# layers hold files of the user's subordinate ids.
		userdel -r "$name" >/dev/null 2>&1 || echo "bench/rootless: userdel $name failed" >&2
	fi
	bench_stop_registry
	rm -rf "$work"
}
trap cleanup EXIT
. bench/lib.sh
bench_result_tool "$work"
res=$work/result.json

# The user, with one free range (FreeRange's rule: above every entry of
# both files and 100000, aligned to 65536).
useradd -m -s /bin/sh -K SUB_UID_COUNT=0 -K SUB_GID_COUNT=0 "$name"
made=1
uid=$(id -u "$name")
home=$(getent passwd "$name" | cut -d: -f6)
start=$(cat /etc/subuid /etc/subgid | awk -F: 'BEGIN {e = 100000} NF == 3 && $2 + $3 > e {e = $2 + $3} END {printf "%d", int((e + 65535) / 65536) * 65536}')
usermod --add-subuids "$start-$((start + 65535))" --add-subgids "$start-$((start + 65535))" "$name"
run=$work/run
mkdir -m 700 "$run"
chown "$name:" "$run"

# jobrun where the user can run it, away from its state, as installed.
bench_build ./cmd/jobrun "$work/bin/jobrun"
bench_helpers "$work/bin"

bench_registry "$work"
port=${reg#*:}
image=$reg/library/busybox:latest

# The user's files: the job files, jobrun's --config, podman's configs.
proj=$home/project
mkdir -p "$proj" "$home/.config/containers"
file=examples/hello/.ci.hcl
grep -q '^  image = "busybox"$' "$file" || {
	echo "bench/rootless: no 'image = \"busybox\"' line in $file" >&2
	exit 1
}
step=$(sed -n 's/^[[:space:]]*run[[:space:]]*=[[:space:]]*"\(.*\)"[[:space:]]*$/\1/p' "$file")
for m in none bridge; do
	sed "s/^  image = \"busybox\"\$/&\n  network = \"$m\"/" "$file" >"$proj/$m.hcl"
done
cat >"$proj/config.hcl" <<EOT
registry "docker.io" {
  mirrors = ["127.0.0.1:$port"]
}
registry "127.0.0.1:$port" {
  insecure = true
}
EOT
cat >"$home/.config/containers/storage.conf" <<EOT
[storage]
driver = "overlay"
EOT
cat >"$home/.config/containers/containers.conf" <<EOT
[engine]
events_logger = "file"
cgroup_manager = "cgroupfs"
runtime = "runc"
EOT
chown -R "$name:" "$proj" "$home/.config"

# podman's bridge: pasta if this podman has it (4.4 and later), else
# slirp4netns, its rootless default before 5.0.
as podman pull -q --tls-verify=false "$image" >/dev/null
pnet=pasta
if ! as podman run --rm --network pasta "$image" true >"$work/out" 2>&1; then
	pnet=slirp4netns
fi
echo "podman $(podman --version | awk '{print $3}'): bridge side --network $pnet"
"$BENCHRESULT" new -param rounds="$N" -param podman_network="$pnet" "$res" rootless \
	"Wall time of \`jobrun local\` of the hello example as an ordinary user (no root, image warm) against rootless \`podman run --rm\` of the same command on the same image by the same user (runc, overlay), network none and bridge (jobrun: pasta; podman: --network $pnet)"

want="hello from jobrun on Linux"
jr() { as "$work/bin/jobrun" local --config "$proj/config.hcl" --artifacts "$home/artifacts" "$proj/$1.hcl"; }
pm() { as podman run --rm --network "$1" "$image" sh -c "$step"; }

# Warm-up, untimed: jobrun pulls the image into the user's store and
# unpacks it; podman has pulled it.
for m in none bridge; do
	jr "$m" >"$work/out" 2>&1 || {
		cat "$work/out" >&2
		exit 1
	}
done
for m in none "$pnet"; do
	pm "$m" >"$work/out" 2>&1 || {
		cat "$work/out" >&2
		exit 1
	}
done

bench=bench/rootless # names the bench in bench_timed's messages
for i in $(seq 1 "$N"); do
	# Rotate which goes first, so none always follows another.
	case $((i % 4)) in
	1) bench_timed jobrun-none jr none; bench_timed podman-none pm none; bench_timed jobrun-bridge jr bridge; bench_timed podman-bridge pm "$pnet" ;;
	2) bench_timed podman-none pm none; bench_timed jobrun-bridge jr bridge; bench_timed podman-bridge pm "$pnet"; bench_timed jobrun-none jr none ;;
	3) bench_timed jobrun-bridge jr bridge; bench_timed podman-bridge pm "$pnet"; bench_timed jobrun-none jr none; bench_timed podman-none pm none ;;
	0) bench_timed podman-bridge pm "$pnet"; bench_timed jobrun-none jr none; bench_timed podman-none pm none; bench_timed jobrun-bridge jr bridge ;;
	esac
done

echo "as user $name (no root): jobrun local hello vs podman run --rm (rootless, runc, overlay), same busybox image, warm; $N rounds, rotating; load $(cut -d' ' -f1-3 /proc/loadavg)"
for m in none bridge; do
	jm=$(bench_median "$work/jobrun-$m.us")
	pmed=$(bench_median "$work/podman-$m.us")
	pn=$m
	[ "$m" = bridge ] && pn=$pnet
	printf '%-36s median %7.1f ms  (quartiles %s)\n' "jobrun local, network $m" "$(echo "$jm / 1000" | bc -l)" "$(bench_quartiles "$work/jobrun-$m.us")"
	printf '%-36s median %7.1f ms  (quartiles %s)\n' "podman run --rm --network $pn" "$(echo "$pmed / 1000" | bc -l)" "$(bench_quartiles "$work/podman-$m.us")"
	printf 'ratio jobrun/podman, %s: %.2fx (target <= 0.5x)\n' "$m" "$(echo "$jm / $pmed" | bc -l)"
	metric="hello job as a user, network $m"
	"$BENCHRESULT" add -scale 0.001 -peer "podman run --rm --network $pn" -target 'ratio<=0.5' "$res" "$metric" "jobrun local" ms <"$work/jobrun-$m.us"
	"$BENCHRESULT" add -scale 0.001 "$res" "$metric" "podman run --rm --network $pn" ms <"$work/podman-$m.us"
done
"$BENCHRESULT" finish "$res" "$BENCH_OUT/rootless.json"
