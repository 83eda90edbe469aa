#!/usr/bin/env bash
# What `make demo` runs after `make build`: a real job in a real container,
# with nothing from the internet. It installs what is missing
# (scripts/deps.sh demo), builds the test images (scripts/testimages.sh), serves
# them from Debian's docker-registry on loopback as docker.io's
# library/busybox:latest and library/golang:1.26 (the registry is configured
# as a mirror of docker.io), and runs
#
#   bin/jobrun --config CONFIG local examples/hello/.ci.hcl
#
# exiting with its status. A job file that builds images (builds_images =
# true, examples/image-build) gets the registry it pushes to as well:
# scripts/example-registry.sh starts one with TLS (a test CA) and a login on
# a host address jobs reach through --allow, and jobrun runs with --allow,
# --ca-file, the REGISTRY_PASSWORD secret, the agent's login for it, and
# --env REGISTRY and BASE_IMAGE pointing the job at it (the file's
# registry.jobrun.test name maps onto it by the config's mirrors). The
# registries, the address and the temp files go away on exit, whatever
# happens. The state dir is JOBRUN_STATE_DIR (default
# /var/lib/jobrun). usage: scripts/demo.sh [JOB FILE] (default examples/hello)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$(go env GOPATH 2>/dev/null || echo /root/go)/bin:$PATH

bin=${JOBRUN_BIN:-bin/jobrun}
state=${JOBRUN_STATE_DIR:-/var/lib/jobrun}
jobfile=${1:-examples/hello/.ci.hcl}

say() { echo "demo: $*" >&2; }
die() {
	say "$*"
	exit 1
}
[ "$(id -u)" = 0 ] || die "needs root (containers, mounts, cgroups): sudo make demo"
[ -x "$bin" ] || die "no $bin: run make build first"
[ -f "$jobfile" ] || die "no job file $jobfile"

say "checking dependencies (scripts/deps.sh demo)"
scripts/deps.sh demo
say "test images (scripts/testimages.sh; the first run takes a few minutes)"
eval "$(scripts/testimages.sh)"
: "${JOBRUN_TEST_IMAGES:?scripts/testimages.sh printed no JOBRUN_TEST_IMAGES}"

tmp=$(mktemp -d /tmp/jobrun-demo.XXXXXX)
reg_pid=
cleanup() {
	if [ -d "$tmp/example-registry" ]; then
		scripts/example-registry.sh stop "$tmp/example-registry" || true
	fi
	if [ -n "$reg_pid" ]; then
		kill "$reg_pid" 2>/dev/null || true
		wait "$reg_pid" 2>/dev/null || true
	fi
	rm -rf "$tmp"
}
trap cleanup EXIT
# Ctrl-C reaches jobrun too (same process group), which cancels its jobs
# cleanly; these run once it has exited, so cleanup still happens.
trap 'exit 130' INT
trap 'exit 143' TERM HUP

free_port() { # a port nothing listens on now
	local p
	while :; do
		p=$((20000 + RANDOM % 20000))
		(exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null || {
			echo "$p"
			return
		}
	done
}

port=$(free_port)
reg=127.0.0.1:$port
mkdir -p "$tmp/registry"
cat >"$tmp/registry.yml" <<-EOT
	version: 0.1
	log:
	  level: warn
	storage:
	  filesystem:
	    rootdirectory: $tmp/registry
	http:
	  addr: $reg
EOT
say "starting docker-registry on $reg"
docker-registry serve "$tmp/registry.yml" >"$tmp/registry.log" 2>&1 &
reg_pid=$!
for i in $(seq 1 200); do
	(exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null && break
	if [ "$i" = 200 ] || ! kill -0 "$reg_pid" 2>/dev/null; then
		cat "$tmp/registry.log" >&2
		die "docker-registry did not start on $reg (its log is above)"
	fi
	sleep 0.05
done

# Our own signature policy, so skopeo does not depend on /etc/containers.
printf '{"default":[{"type":"insecureAcceptAnything"}]}\n' >"$tmp/policy.json"
push() { # push LAYOUT:TAG REPO:TAG
	say "pushing $2 to $reg"
	skopeo --policy "$tmp/policy.json" copy -q --dest-tls-verify=false \
		"oci:$JOBRUN_TEST_IMAGES/$1" "docker://$reg/$2" >&2
}
push busybox:latest library/busybox:latest
push golang:latest library/golang:1.26

cat >"$tmp/config.hcl" <<-EOT
	# docker.io images come from the demo's registry on loopback.
	registry "docker.io" {
	  mirrors = ["$reg"]
	}
	registry "$reg" {
	  insecure = true
	}
EOT

args=()
if grep -Eq '^[[:space:]]*builds_images[[:space:]]*=[[:space:]]*true' "$jobfile"; then
	say "the job file builds images: starting the registry it pushes to (scripts/example-registry.sh)"
	scripts/example-registry.sh start "$tmp/example-registry"
	. "$tmp/example-registry/env"
	ex=$EXAMPLE_REGISTRY
	# The builder image, by the name the example uses, and the Dockerfile's
	# base in the example registry (jobs have no internet here).
	push debian-buildah:latest buildah/stable:latest
	say "pushing library/busybox:latest to $ex"
	skopeo --policy "$tmp/policy.json" copy -q --dest-cert-dir "$EXAMPLE_REGISTRY_CERTS" \
		--dest-creds "$EXAMPLE_REGISTRY_USER:$EXAMPLE_REGISTRY_PASSWORD" \
		"oci:$JOBRUN_TEST_IMAGES/busybox:latest" "docker://$ex/library/busybox:latest" >&2
	printf '%s' "$EXAMPLE_REGISTRY_PASSWORD" >"$tmp/example-registry.pass"
	chmod 600 "$tmp/example-registry.pass"
	cat >>"$tmp/config.hcl" <<-EOT
		# The example's builder image, and its registry: the name in the
		# job file is this registry's address; the agent logs in to pull.
		registry "quay.io" {
		  mirrors = ["$reg"]
		}
		registry "registry.jobrun.test" {
		  mirrors = ["$ex"]
		}
		registry "$ex" {
		  username      = "$EXAMPLE_REGISTRY_USER"
		  password_file = "$tmp/example-registry.pass"
		}
	EOT
	export REGISTRY_PASSWORD=$EXAMPLE_REGISTRY_PASSWORD
	args=(--allow "$ex" --ca-file "$EXAMPLE_REGISTRY_CA" --secret REGISTRY_PASSWORD
		--env "REGISTRY=$ex" --env "BASE_IMAGE=$ex/library/busybox:latest")
fi

say "running: $bin --state-dir $state --config $tmp/config.hcl local ${args[*]} $jobfile"
set +e
"$bin" --state-dir "$state" --config "$tmp/config.hcl" local "${args[@]}" "$jobfile"
rc=$?
set -e
say "jobrun exited with status $rc"
exit "$rc"
