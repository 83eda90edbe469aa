#!/usr/bin/env bash
# Builds the test images from Debian packages, once per machine, into a cache
# outside the repo (JOBRUN_TESTIMAGES_DIR, default /var/cache/jobrun-testimages),
# and prints on stdout only the `export NAME=VALUE` lines scripts/test.sh evals:
#
#   JOBRUN_TEST_IMAGES=DIR   OCI layouts DIR/busybox (tag latest, from busybox-static),
#                            DIR/busybox-nobody (latest, USER nobody) and
#                            DIR/debian-go (tag 1.26: debootstrap minbase bookworm
#                            plus the Go toolchain from /usr/local/go, ≥ 200 MB)
#
# Idempotent: a build is kept under a version stamp (this script, the layer
# writer, busybox's and Go's versions) and reused; the debootstrap root is
# cached on its own, since it is the slow part. Needs root. Logs to stderr.
set -euo pipefail
cd "$(dirname "$0")/.."
exec 3>&1 1>&2 # stdout is for the export lines only

cache=${JOBRUN_TESTIMAGES_DIR:-/var/cache/jobrun-testimages}
suite=bookworm
goroot=/usr/local/go

log() { echo "testimages: $*"; }
die() {
	log "$*"
	exit 1
}
[ "$(id -u)" = 0 ] || die "needs root (debootstrap, device-free chroot)"
for t in busybox debootstrap flock go sha256sum; do
	command -v "$t" >/dev/null || die "needs $t"
done
[ -x "$goroot/bin/go" ] || die "needs the Go toolchain in $goroot"

# The Debian mirror this machine's apt uses (deb822 or one-line sources).
mirror() {
	local m
	m=$(cat /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null |
		sed -n -e 's/^URIs:[[:space:]]*\([^[:space:]]*\).*/\1/p' \
			-e 's/^deb[[:space:]]\+\(\[[^]]*\][[:space:]]\+\)\?\([^[:space:]]*\).*/\2/p' |
		grep -v -- "-security" | sed -n 1p)
	echo "${m:-http://deb.debian.org/debian}"
}

mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9 # one builder per machine; the others wait and reuse its result

busybox_version=$(busybox | sed -n 1p)
go_version=$(head -n1 "$goroot/VERSION")
stamp=$({
	cat scripts/testimages.sh agent/image/internal/mkimage/main.go
	echo "$busybox_version" "$go_version" "$(go env GOARCH)"
} | sha256sum | cut -c1-16)
out=$cache/images-$stamp
if [ -f "$out/.done" ]; then
	log "up to date: $out"
	echo "export JOBRUN_TEST_IMAGES=$out" >&3
	exit 0
fi

tmp=$(mktemp -d "$cache/.build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
mkimage=$tmp/mkimage
go build -o "$mkimage" ./agent/image/internal/mkimage

# debootstrap: cached by suite, variant and mirror only.
m=$(mirror)
root=$cache/debootstrap-$suite-minbase-$(echo "$m" | sha256sum | cut -c1-8)
if [ ! -f "$root.done" ]; then
	log "debootstrap --variant=minbase $suite from $m (a few minutes, once)"
	rm -rf "$root" "$root.tmp" "$root.done"
	debootstrap --variant=minbase "$suite" "$root.tmp" "$m" >"$tmp/debootstrap.log" 2>&1 ||
		{
			tail -n 30 "$tmp/debootstrap.log"
			rm -rf "$root.tmp"
			die "debootstrap failed"
		}
	# What a container image does not ship: package caches and lists.
	rm -rf "$root.tmp"/var/cache/apt/archives/*.deb "$root.tmp"/var/lib/apt/lists/* \
		"$root.tmp"/var/log/*.log "$root.tmp"/var/cache/debconf/*-old
	mv "$root.tmp" "$root"
	touch "$root.done"
fi

log "busybox image ($busybox_version)"
bb=$tmp/busybox-root
mkdir -p "$bb"/{bin,sbin,usr/bin,usr/sbin,etc,root,home,tmp,var/tmp,dev,proc,sys,work}
chmod 1777 "$bb/tmp" "$bb/var/tmp"
chmod 700 "$bb/root"
cp "$(command -v busybox)" "$bb/bin/busybox"
busybox --list-full | while read -r applet; do
	[ "$applet" = bin/busybox ] || [ -e "$bb/$applet" ] || ln -s /bin/busybox "$bb/$applet"
done
cat >"$bb/etc/passwd" <<-EOT
	root:x:0:0:root:/root:/bin/sh
	nobody:x:65534:65534:nobody:/nonexistent:/bin/sh
EOT
cat >"$bb/etc/group" <<-EOT
	root:x:0:
	nogroup:x:65534:
EOT
path=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
"$mkimage" -out "$tmp/out/busybox" -tag latest -env "$path" -cmd sh "$bb"
"$mkimage" -out "$tmp/out/busybox-nobody" -tag latest -env "$path" -user nobody -workdir /tmp -cmd sh "$bb"

log "debian-go image ($suite minbase + $go_version)"
gopath=$tmp/gopath
mkdir -p "$gopath/go/bin" "$gopath/go/pkg" "$gopath/go/src"
chmod -R 777 "$gopath/go"
"$mkimage" -out "$tmp/out/debian-go" -tag 1.26 \
	-env PATH=/usr/local/go/bin:/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
	-env GOPATH=/go -env GOTOOLCHAIN=local -workdir /go -cmd bash \
	"$root" "$goroot=usr/local/go" "$gopath"

touch "$tmp/out/.done"
mv "$tmp/out" "$out"
# Older builds of the images are not used any more.
for old in "$cache"/images-*; do
	[ "$old" = "$out" ] || rm -rf "$old"
done
du -sh "$out"/* | sed 's/^/testimages: /'
echo "export JOBRUN_TEST_IMAGES=$out" >&3
