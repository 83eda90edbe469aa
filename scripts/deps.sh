#!/usr/bin/env bash
# Installs what jobrun needs on a Debian 12 machine, by purpose:
#
#   scripts/deps.sh build   building and running jobrun (`make build`):
#                           cgo with libseccomp, make, git, CA certificates
#   scripts/deps.sh demo    build, and what `make demo` uses: the test images
#                           (busybox-static, debootstrap) and a local
#                           registry (docker-registry, skopeo, umoci;
#                           openssl, python3, iproute2 for the image-build
#                           example's TLS registry)
#   scripts/deps.sh [test]  everything `make test` needs: the above, the
#                           peers, PostgreSQL, chromium, ... and the Go tools
#                           (staticcheck, MinIO, mc), which take minutes
#
# Debian packages only, and only the missing ones; as root it installs them,
# otherwise it stops with the exact apt-get line to run. Go itself is not a
# Debian package here (Debian 12's is too old): it must be on PATH, at least
# the version go.mod names. Idempotent: a second run installs nothing and
# takes about a second.
set -euo pipefail
cd "$(dirname "$0")/.."
level=${1:-test}

# Pinned tool versions. MinIO and mc publish pseudo-versions only.
STATICCHECK_VERSION=v0.8.2
MINIO_VERSION=v0.0.0-20260212201848-7aac2a2c5b7c
MC_VERSION=v0.0.0-20250313080218-cf909e1063a9

BUILD_PACKAGES=(
	gcc libc6-dev pkg-config libseccomp-dev   # cgo and -tags seccomp (libseccomp2 at run time)
	make
	ca-certificates                           # Go's module downloads over HTTPS
)
# Go stamps the build with git's view of a checkout; a tree without .git
# (an archive, the Dockerfile's context) does not need git.
if [ -e .git ]; then BUILD_PACKAGES+=(git); fi
DEMO_PACKAGES=(
	busybox-static debootstrap util-linux     # scripts/testimages.sh (flock)
	docker-registry skopeo umoci              # the demo's local registry
	openssl python3 iproute2                  # scripts/example-registry.sh: its test CA, the login's bcrypt hash, its address
)
TEST_PACKAGES=(
	git                                       # tests make repositories
	curl                                      # a verifying TLS client in the CA tests' job image
	runc crun podman buildah                  # peers for bench/ (bench/imagebuild: podman and buildah build)
	postgresql                                # the scheduler's shared store
	containernetworking-plugins
	hyperfine
	systemd                                   # systemd-analyze verify of examples/deploy
	chromium                                  # headless browser for the web UI tests (chromedp)
	uidmap                                    # newuidmap/newgidmap: jobrun local without root (#18)
	passt slirp4netns fuse-overlayfs          # rootless networking; overlays where the kernel has none in a user namespace (#18)
)

log() { printf 'deps: %s\n' "$*" >&2; }
die() {
	log "$*"
	exit 1
}

case $level in
build) packages=("${BUILD_PACKAGES[@]}") ;;
demo) packages=("${BUILD_PACKAGES[@]}" "${DEMO_PACKAGES[@]}") ;;
test) packages=("${BUILD_PACKAGES[@]}" "${DEMO_PACKAGES[@]}" "${TEST_PACKAGES[@]}") ;;
*) die "unknown level $level: want build, demo or test" ;;
esac

# Go: any version at least go.mod's (an older go fetches that one itself
# unless GOTOOLCHAIN=local, so it only gets a note).
want=$(sed -n 's/^go \([0-9.]*\)$/\1/p' go.mod)
command -v go >/dev/null ||
	die "no go on PATH: install Go $want or later from https://go.dev/dl/ (Debian 12's golang package is too old)"
have=$(cd / && GOTOOLCHAIN=local go env GOVERSION | sed 's/^go//')
if [ "$(printf '%s\n%s\n' "$want" "$have" | sort -V | head -n1)" != "$want" ]; then
	log "go $have is older than go.mod's $want: go fetches $want unless GOTOOLCHAIN=local"
fi

if ! command -v dpkg-query >/dev/null; then
	log "not a Debian system: make sure the equivalents of ${packages[*]} are installed"
	missing=()
else
	missing=()
	for p in "${packages[@]}"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
	done
fi
if ((${#missing[@]})); then
	line="apt-get install -y --no-install-recommends ${missing[*]}"
	if [ "$(id -u)" != 0 ]; then
		log "missing Debian packages: ${missing[*]}; install them as root:"
		printf '  %s\n' "$line" >&2
		exit 1
	fi
	log "installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	# Installing postgresql starts a cluster by default; tests start their own.
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

[ "$level" = test ] || exit 0

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
