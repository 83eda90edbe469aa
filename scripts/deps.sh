#!/usr/bin/env bash
# Installs what building and testing jobrun needs on a Debian 12 machine.
# Idempotent: a second run installs nothing and takes about a second.
set -euo pipefail

# Pinned tool versions. MinIO and mc publish pseudo-versions only.
STATICCHECK_VERSION=v0.8.2
MINIO_VERSION=v0.0.0-20260212201848-7aac2a2c5b7c
MC_VERSION=v0.0.0-20250313080218-cf909e1063a9

APT_PACKAGES=(
	gcc libc6-dev pkg-config libseccomp-dev   # cgo and -tags seccomp
	git util-linux                            # flock(1) in tests
	curl                                      # a verifying TLS client in the CA tests' job image
	busybox-static debootstrap                # test images
	runc crun podman umoci skopeo             # peers for bench/, and podman build
	docker-registry                           # a real registry for integration tests
	postgresql                                # the scheduler's shared store
	containernetworking-plugins
	hyperfine
	systemd                                   # systemd-analyze verify of examples/deploy
	chromium                                  # headless browser for the web UI tests (chromedp)
)

log() { printf 'deps: %s\n' "$*" >&2; }

missing=()
for p in "${APT_PACKAGES[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
	if [ "$(id -u)" != 0 ]; then
		log "missing Debian packages: ${missing[*]} (run as root to install them)"
		exit 1
	fi
	log "installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	# Installing postgresql starts a cluster by default; tests start their own.
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

GOBIN=$(go env GOPATH)/bin
export PATH=$GOBIN:$PATH
# go_tool NAME MODULE@VERSION installs MODULE once per VERSION.
go_tool() {
	local name=$1 mod=$2 stamp="$GOBIN/.$1.version"
	if [ -x "$GOBIN/$name" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$mod" ]; then
		return
	fi
	log "go install $mod"
	(cd / && GOFLAGS= go install "$mod")
	echo "$mod" >"$stamp"
}
go_tool staticcheck honnef.co/go/tools/cmd/staticcheck@$STATICCHECK_VERSION
go_tool minio github.com/minio/minio@$MINIO_VERSION
go_tool mc github.com/minio/mc@$MC_VERSION
