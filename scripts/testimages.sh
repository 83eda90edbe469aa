#!/usr/bin/env bash
# Builds the test images from Debian packages, once per machine, into a cache
# outside the repo (JOBRUN_TESTIMAGES_DIR, default /var/cache/jobrun-testimages),
# and prints on stdout only `export NAME=VALUE` lines, for
# `eval "$(scripts/testimages.sh)"`:
#
#   JOBRUN_TEST_IMAGES=DIR   a directory of OCI image layouts, one image each:
#     DIR/busybox:latest         one layer from busybox-static: /bin/busybox, a link
#                                per applet, passwd/group (root, nobody, builder 1000)
#     DIR/busybox-user:latest    busybox plus a layer with /home/builder and a
#                                whiteout of /etc/motd; User 1000:1000
#     DIR/busybox-nobody:latest  busybox's layer; User nobody, WorkingDir /tmp
#     DIR/golang:latest          debootstrap --variant=minbase bookworm, plus the
#                                host's /usr/local/go (≥ 200 MB); used as golang:1.26
#     DIR/debian-go:1.26         the same image as golang, tagged with the Go version
#     DIR/debian:bookworm        the debootstrap minbase root alone (the runtime
#                                stage of the Dockerfile, as debian:bookworm-slim)
#     DIR/debian-build:latest    debootstrap minbase with what scripts/deps.sh build
#                                wants (gcc, make, pkg-config, libseccomp-dev,
#                                ca-certificates), plus Go (the Dockerfile's build
#                                stage, as golang:1.26-bookworm with libseccomp-dev)
#     DIR/debian-sudo:latest     the debian image plus one layer: Debian's sudo
#                                (apt-get download, dpkg -i), a user builder
#                                1000:1000 (home /home/builder, bash) with
#                                passwordless sudo (/etc/sudoers.d/builder), and
#                                /opt/test.deb (package jobrun-test, built with
#                                dpkg-deb: /opt/jobrun-test owned by builder,
#                                0750, with a file owned by builder:builder)
#                                in a flat apt repository /opt (/opt/Packages),
#                                the image's only apt source (file:, trusted):
#                                `sudo apt-get update` and `sudo apt-get install
#                                jobrun-test` work offline, apt's file method
#                                running as _apt. User builder, WorkingDir
#                                /home/builder (user-namespace tests: sudo,
#                                setuid, dpkg -i, apt's privilege drop)
#     DIR/debian-buildah:latest  debootstrap minbase with Debian's buildah,
#                                podman and busybox-static (no recommends):
#                                image builders for jobs with builds_images
#                                = true
#   JOBRUN_TEST_IMAGES_BUSYBOX, _BUSYBOX_USER, _GOLANG, _DEBIAN, _DEBIAN_BUILD,
#   _DEBIAN_SUDO, _DEBIAN_BUILDAH the layout paths
#   JOBRUN_TEST_ROOT_MINBASE=DIR the debootstrap minbase root itself (read
#                                only: a fresh Debian machine, for tests that
#                                put an overlay on it, scripts/freshmachine_test.go)
#   JOBRUN_TEST_ROOT_BUILDAH=DIR the debian-buildah image's root (read only:
#                                agent/sandbox's builder tests)
#
# The layouts are written by plain bash, tar, gzip -n and sha256sum (no jq or
# python on a fresh machine) and are checked with `umoci stat`. Layers are
# reproducible: sorted, mtime 0, numeric owners, gzip without names or times.
#
# debian-sudo's layer is made on an overlay over the minbase root (left as
# it is): sudo's .deb comes from this machine's apt (`apt-get download`, so
# its package lists must be there), dpkg, useradd and dpkg-deb run in a
# chroot, and the overlay's upper dir, whiteouts as .wh. files, is the layer.
#
# Idempotent and cheap to rerun: a finished set is kept under a stamp of this
# script and its inputs (busybox, Go, the debootstrap root) and reused; the
# debootstrap root and the big layers are cached on their own, since they are
# the slow part. Writes are atomic (temp dir, then rename) and serialised by a
# lock, so concurrent runs wait for one build. Needs root. Logs to stderr.
set -euo pipefail
self=$(realpath "$0")
cd "$(dirname "$self")/.."
exec 3>&1 1>&2 # stdout is for the export lines only
umask 022
export LC_ALL=C

cache=${JOBRUN_TESTIMAGES_DIR:-/var/cache/jobrun-testimages}
suite=bookworm
goroot=/usr/local/go
epoch=1970-01-01T00:00:00Z
path_default=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

log() { echo "testimages: $*" >&2; }
die() {
	log "$*"
	exit 1
}
[ "$(id -u)" = 0 ] || die "needs root (debootstrap, file ownership in layers)"
for t in busybox debootstrap flock tar gzip sha256sum awk apt-get apt-cache; do
	command -v "$t" >/dev/null || die "needs $t (scripts/deps.sh installs it)"
done
[ -x "$goroot/bin/go" ] || die "needs the Go toolchain in $goroot"

# The Debian mirror this machine's apt uses for $suite: the first deb822
# stanza or one-line entry of type deb that lists the suite itself.
mirror() {
	local files=() f
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
		[ -f "$f" ] && files+=("$f")
	done
	((${#files[@]})) || return 0
	awk -v suite="$suite" '
		function flush() {
			if (types ~ /(^| )deb( |$)/ && (" " suites " ") ~ (" " suite " ") && uri != "" && found == "")
				found = uri
			types = ""; suites = ""; uri = ""
		}
		FNR == 1 { flush() }
		/^[[:space:]]*#/ { next }
		/^[[:space:]]*$/ { flush(); next }
		/^Types:/  { sub(/^Types:[[:space:]]*/, ""); types = $0; next }
		/^Suites:/ { sub(/^Suites:[[:space:]]*/, ""); suites = $0; next }
		/^URIs:/   { uri = $2; next }
		/^deb[[:space:]]/ {
			i = 2
			if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
			if ($(i + 1) == suite && found == "") found = $i
		}
		END { flush(); if (found != "") print found }
	' "${files[@]}"
}

arch=$(dpkg --print-architecture 2>/dev/null || go env GOARCH)
case $arch in armhf) arch=arm ;; i386) arch=386 ;; esac
busybox_version=$(busybox | sed -n 1p)
go_version=$(sed -n 1p "$goroot/VERSION")                   # go1.26.8
go_minor=$(echo "$go_version" | sed -n 's/^go\([0-9]*\.[0-9]*\).*/\1/p') # 1.26
[ -n "$go_minor" ] || die "cannot read the Go version from $goroot/VERSION"
m=$(mirror)
[ -n "$m" ] || die "no Debian mirror for $suite in /etc/apt/sources.list{,.d}"

mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9 # one builder per machine; the others wait and reuse its result

# The sudo package the debian-sudo image installs: the version this
# machine's apt would fetch (a point release makes a new layer).
sudo_version=$(apt-cache policy sudo 2>/dev/null | awk '/Candidate:/ { print $2; exit }')
case $sudo_version in "" | "(none)") die "apt knows no sudo package (apt-get update?)" ;; esac

# The buildah and podman packages the debian-buildah image installs (with their
# dependencies, by apt in a chroot over the minbase root, from this
# machine's package lists; the .debs stay in $cache/debs-buildah, so a
# rebuild is offline).
buildah_version=$(apt-cache policy buildah 2>/dev/null | awk '/Candidate:/ { print $2; exit }')
case $buildah_version in "" | "(none)") die "apt knows no buildah package (apt-get update?)" ;; esac
podman_version=$(apt-cache policy podman 2>/dev/null | awk '/Candidate:/ { print $2; exit }')
case $podman_version in "" | "(none)") die "apt knows no podman package (apt-get update?)" ;; esac

# The debootstrap roots, cached by suite, variant, mirror and extra packages:
# minbase, and minbase with what building jobrun needs (cgo and libseccomp).
build_packages=gcc,libc6-dev,make,pkg-config,libseccomp-dev,ca-certificates # scripts/deps.sh build
root=$cache/debootstrap-$suite-minbase-$(echo "$m" | sha256sum | cut -c1-8)
build_root=$cache/debootstrap-$suite-build-$(echo "$m $build_packages" | sha256sum | cut -c1-8)
buildah_root=$cache/root-$suite-buildah-$(echo "$m $buildah_version $podman_version" | sha256sum | cut -c1-8)
stamp=$({
	cat "$self"
	echo "$busybox_version|$go_version|$arch|$root|$build_root|$sudo_version|$buildah_root"
	# A host Go toolchain updated in place has a new VERSION; this catches
	# a rebuilt one of the same version too.
	stat -c '%Y %s' "$goroot/bin/go" "$(command -v busybox)"
} | sha256sum | cut -c1-16)
out=$cache/images-$stamp

exports() {
	{
		echo "export JOBRUN_TEST_IMAGES=$out"
		echo "export JOBRUN_TEST_IMAGES_BUSYBOX=$out/busybox"
		echo "export JOBRUN_TEST_IMAGES_BUSYBOX_USER=$out/busybox-user"
		echo "export JOBRUN_TEST_IMAGES_GOLANG=$out/golang"
		echo "export JOBRUN_TEST_IMAGES_DEBIAN=$out/debian"
		echo "export JOBRUN_TEST_IMAGES_DEBIAN_BUILD=$out/debian-build"
		echo "export JOBRUN_TEST_IMAGES_DEBIAN_SUDO=$out/debian-sudo"
		echo "export JOBRUN_TEST_IMAGES_DEBIAN_BUILDAH=$out/debian-buildah"
		echo "export JOBRUN_TEST_ROOT_MINBASE=$root"
		echo "export JOBRUN_TEST_ROOT_BUILDAH=$buildah_root"
	} >&3
}
if [ -f "$out/.done" ]; then
	log "up to date: $out"
	exports
	exit 0
fi

tmp=$(mktemp -d "$cache/.build.XXXXXX")
# An overlay or apt binds left mounted by a failed build (sudo_upper,
# buildah_root_make) go first; none is the usual case, and under set -e a
# failed umount would end the trap (exit 32) before the temp dir goes.
trap 'umount "$tmp/sudo/mnt" "$buildah_root.tmp/var/cache/apt/archives" "$buildah_root.tmp/var/lib/apt/lists" 2>/dev/null || true; rm -rf "$tmp"' EXIT

# debootstrap_root DIR [--include=PKGS] makes the minbase root DIR once.
debootstrap_root() {
	local dir=$1
	shift
	[ ! -f "$dir.done" ] || return 0
	log "debootstrap --variant=minbase $* $suite from $m (a few minutes, once per machine)"
	rm -rf "$dir" "$dir.tmp"
	debootstrap --variant=minbase "$@" "$suite" "$dir.tmp" "$m" >"$tmp/debootstrap.log" 2>&1 || {
		tail -n 30 "$tmp/debootstrap.log"
		rm -rf "$dir.tmp"
		die "debootstrap failed (log above)"
	}
	# What a container image does not ship: package caches and lists.
	rm -rf "$dir.tmp"/var/cache/apt/archives/*.deb "$dir.tmp"/var/lib/apt/lists/* \
		"$dir.tmp"/var/log/*.log "$dir.tmp"/var/cache/debconf/*-old
	mv "$dir.tmp" "$dir"
	touch "$dir.done"
}
debootstrap_root "$root"
debootstrap_root "$build_root" --include="$build_packages"

# buildah_root_make makes $buildah_root once: a copy of the minbase root
# with buildah, podman and busybox-static installed by apt in a chroot, from this
# machine's package lists (bound read-only) and sources.
buildah_root_make() {
	[ ! -f "$buildah_root.done" ] || return 0
	local d=$buildah_root.tmp debs=$cache/debs-buildah
	log "root with buildah $buildah_version and podman $podman_version (cached as $buildah_root)"
	rm -rf "$d"
	cp -a "$root" "$d"
	mkdir -p "$debs/partial" "$d/var/lib/apt/lists"
	rm -f "$d/etc/apt/sources.list" "$d"/etc/apt/sources.list.d/*
	cp -a /etc/apt/sources.list* "$d/etc/apt/"
	mount --bind -o ro /var/lib/apt/lists "$d/var/lib/apt/lists"
	mount --bind "$debs" "$d/var/cache/apt/archives"
	chroot "$d" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
		-o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache= \
		"buildah=$buildah_version" "podman=$podman_version" busybox-static >"$tmp/buildah.log" 2>&1 || {
		umount "$d/var/cache/apt/archives" "$d/var/lib/apt/lists"
		cat "$tmp/buildah.log"
		die "apt-get install buildah podman in the debian-buildah root failed (log above)"
	}
	umount "$d/var/cache/apt/archives" "$d/var/lib/apt/lists"
	rm -rf "$d"/etc/apt/sources.list* "$d"/var/log/*.log "$d"/var/log/apt/* "$d"/var/cache/debconf/*-old
	cp -a "$root/etc/apt/sources.list"* "$d/etc/apt/" 2>/dev/null || true
	mv "$d" "$buildah_root"
	touch "$buildah_root.done"
}
buildah_root_make

# tar_layer OUT [tar options and members...] writes the reproducible layer
# OUT.tar.gz and its DiffID (sha256 of the uncompressed tar) to OUT.diffid.
tar_layer() {
	local out=$1
	shift
	rm -f "$out.fifo"
	mkfifo "$out.fifo"
	sha256sum <"$out.fifo" | cut -d' ' -f1 >"$out.diffid" &
	local sum=$!
	tar --create --file=- --sort=name --mtime=@0 --numeric-owner --format=pax \
		--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime "$@" |
		tee "$out.fifo" | gzip -n >"$out.tar.gz"
	wait "$sum"
	rm -f "$out.fifo"
	[ -s "$out.diffid" ] || die "no DiffID for $out"
}

# cached_layer NAME KEY [tar args...] makes a layer once per KEY (and per
# layer recipe) under $cache/layers and prints its path without extension.
cached_layer() {
	local name=$1 key
	key=$(printf '%s\n' "$2" "$(declare -f tar_layer)" | sha256sum | cut -c1-16)
	shift 2
	local l=$cache/layers/$name-$key
	if [ ! -f "$l.done" ]; then
		log "layer $name (cached as $l)"
		mkdir -p "$cache/layers"
		rm -f "$cache/layers/$name"-*
		tar_layer "$tmp/$name" "$@"
		mv "$tmp/$name.tar.gz" "$l.tar.gz"
		mv "$tmp/$name.diffid" "$l.diffid"
		touch "$l.done"
	fi
	echo "$l"
}

# JSON helpers: q quotes a string, arr makes an array of strings.
q() {
	local s=${1//\\/\\\\}
	s=${s//\"/\\\"}
	printf '"%s"' "$s"
}
arr() {
	local out="" s
	for s in "$@"; do out+=${out:+,}$(q "$s"); done
	printf '[%s]' "$out"
}

# put_blob LAYOUT FILE [link] stores FILE in LAYOUT's blob dir (by a hard link
# when asked, else by moving it) and prints "sha256:HEX SIZE".
put_blob() {
	local dir=$1 f=$2 hex size
	hex=$(sha256sum "$f" | cut -d' ' -f1)
	size=$(stat -c %s "$f")
	mkdir -p "$dir/blobs/sha256"
	if [ -n "${3:-}" ]; then
		ln -f "$f" "$dir/blobs/sha256/$hex" 2>/dev/null || cp "$f" "$dir/blobs/sha256/$hex"
	else
		mv "$f" "$dir/blobs/sha256/$hex"
	fi
	echo "sha256:$hex $size"
}

# image DIR TAG USER WORKDIR CMD ENV... -- LAYER... writes the OCI layout DIR
# holding one image tagged TAG; each LAYER is a path without .tar.gz whose
# .diffid sits next to it and whose .by names what made it.
image() {
	local dir=$1 tag=$2 user=$3 workdir=$4 cmd=$5
	shift 5
	local env=()
	while [ "$1" != -- ]; do
		env+=("$1")
		shift
	done
	shift
	mkdir -p "$dir/blobs/sha256"
	printf '{"imageLayoutVersion":"1.0.0"}' >"$dir/oci-layout"

	local l d s diffids="" layers="" history=""
	for l in "$@"; do
		read -r d s < <(put_blob "$dir" "$l.tar.gz" link)
		layers+=${layers:+,}$(printf '{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"%s","size":%s}' "$d" "$s")
		diffids+=${diffids:+,}$(q "sha256:$(cat "$l.diffid")")
		history+=${history:+,}$(printf '{"created":"%s","created_by":%s}' "$epoch" "$(q "$(cat "$l.by")")")
	done

	local conf=$tmp/config.json
	{
		printf '{"created":"%s","architecture":"%s","os":"linux",' "$epoch" "$arch"
		printf '"config":{'
		[ -n "$user" ] && printf '"User":%s,' "$(q "$user")"
		printf '"Env":%s,"Cmd":%s' "$(arr "${env[@]}")" "$(arr $cmd)"
		[ -n "$workdir" ] && printf ',"WorkingDir":%s' "$(q "$workdir")"
		printf '},"rootfs":{"type":"layers","diff_ids":[%s]},"history":[%s]}' "$diffids" "$history"
	} >"$conf"
	read -r d s < <(put_blob "$dir" "$conf")

	local man=$tmp/manifest.json
	printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%s},"layers":[%s]}' \
		"$d" "$s" "$layers" >"$man"
	read -r d s < <(put_blob "$dir" "$man")

	printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"%s","size":%s,"platform":{"architecture":"%s","os":"linux"},"annotations":{"org.opencontainers.image.ref.name":%s}}]}' \
		"$d" "$s" "$arch" "$(q "$tag")" >"$dir/index.json"
	if command -v umoci >/dev/null; then
		umoci stat --image "$dir:$tag" >/dev/null || die "umoci rejects $dir:$tag"
	fi
	log "$(basename "$dir"):$tag $d"
}

log "busybox ($busybox_version)"
bb=$tmp/busybox-root
mkdir -p "$bb"/{bin,sbin,usr/bin,usr/sbin,etc,root,home,tmp,var/tmp,dev,proc,sys}
chmod 1777 "$bb/tmp" "$bb/var/tmp"
chmod 700 "$bb/root"
cp "$(command -v busybox)" "$bb/bin/busybox"
chmod 755 "$bb/bin/busybox"
busybox --list-full | while read -r applet; do
	[ -e "$bb/$applet" ] || [ -L "$bb/$applet" ] || ln -s /bin/busybox "$bb/$applet"
done
[ -L "$bb/bin/sh" ] || die "busybox has no sh applet"
cat >"$bb/etc/passwd" <<-EOT
	root:x:0:0:root:/root:/bin/sh
	builder:x:1000:1000:builder:/home/builder:/bin/sh
	nobody:x:65534:65534:nobody:/nonexistent:/bin/sh
EOT
cat >"$bb/etc/group" <<-EOT
	root:x:0:
	builder:x:1000:
	nogroup:x:65534:
EOT
echo "jobrun test image (busybox-static)" >"$bb/etc/motd"
tar_layer "$tmp/busybox" --owner=0 --group=0 -C "$bb" $(cd "$bb" && ls -A)
echo "busybox-static $busybox_version" >"$tmp/busybox.by"

# The non-root image's own layer: a home owned by the user, and a whiteout
# that deletes the first layer's /etc/motd.
ul=$tmp/user-root
mkdir -p "$ul/etc" "$ul/home/builder"
: >"$ul/etc/.wh.motd"
echo 'export PS1="builder$ "' >"$ul/home/builder/.profile"
chown -R 1000:1000 "$ul/home/builder"
chmod 750 "$ul/home/builder"
tar_layer "$tmp/user" -C "$ul" etc home
echo "home for builder (1000:1000), rm /etc/motd" >"$tmp/user.by"

bbpath=PATH=$path_default
image "$tmp/out/busybox" latest "" "" sh "$bbpath" -- "$tmp/busybox"
image "$tmp/out/busybox-user" latest 1000:1000 /home/builder sh "$bbpath" -- "$tmp/busybox" "$tmp/user"
image "$tmp/out/busybox-nobody" latest nobody /tmp sh "$bbpath" -- "$tmp/busybox"

log "golang ($suite minbase + $go_version)"
# Ownership inside the Debian root is real; device nodes are the runtime's.
base=$(cached_layer debootstrap "$root" --anchored --exclude='dev/*' --exclude='proc/*' --exclude='sys/*' \
	-C "$root" $(cd "$root" && ls -A))
echo "debootstrap --variant=minbase $suite $m" >"$base.by"
gp=$tmp/gopath
mkdir -p "$gp/go/bin" "$gp/go/pkg" "$gp/go/src"
chmod -R 1777 "$gp/go"
golayer=$(cached_layer go "$go_version $(stat -c '%Y %s' "$goroot/bin/go")" --owner=0 --group=0 \
	-C / "${goroot#/}" -C "$gp" go)
echo "$goroot ($go_version) and GOPATH /go" >"$golayer.by"
goenv=(
	PATH=/go/bin:$goroot/bin:$path_default
	GOPATH=/go
	GOTOOLCHAIN=local
	GOLANG_VERSION=${go_version#go}
)
image "$tmp/out/golang" latest "" /go bash "${goenv[@]}" -- "$base" "$golayer"
image "$tmp/out/debian-go" "$go_minor" "" /go bash "${goenv[@]}" -- "$base" "$golayer"
image "$tmp/out/debian" "$suite" "" "" bash "PATH=$path_default" -- "$base"

log "debian-build ($suite minbase + $build_packages + $go_version)"
buildbase=$(cached_layer buildroot "$build_root" --anchored --exclude='dev/*' --exclude='proc/*' --exclude='sys/*' \
	-C "$build_root" $(cd "$build_root" && ls -A))
echo "debootstrap --variant=minbase --include=$build_packages $suite $m" >"$buildbase.by"
image "$tmp/out/debian-build" latest "" /go bash "${goenv[@]}" -- "$buildbase" "$golayer"

log "debian-sudo ($suite minbase + sudo $sudo_version, user builder, /opt/test.deb)"
# sudo_upper DIR installs sudo and adds builder and the test package on an
# overlay over the minbase root (left as it is) and turns the overlay's
# upper dir DIR/upper into a layer's tree: whiteouts as .wh. files.
sudo_upper() {
	local d=$1 mnt=$1/mnt f
	mkdir -p "$d"/{upper,work,mnt,debs}
	(cd "$d/debs" && apt-get download -qq "sudo=$sudo_version" >"$d/apt.log" 2>&1) || {
		cat "$d/apt.log"
		die "apt-get download sudo=$sudo_version failed (log above)"
	}
	mount -t overlay -o "lowerdir=$root,upperdir=$d/upper,workdir=$d/work" debian-sudo "$mnt"
	mkdir "$mnt/tmp/debs"
	cp "$d"/debs/*.deb "$mnt/tmp/debs/"
	chroot "$mnt" sh -c 'dpkg -i /tmp/debs/*.deb' >"$d/dpkg.log" 2>&1 || {
		cat "$d/dpkg.log"
		die "dpkg -i sudo in the debian-sudo root failed (log above)"
	}
	chroot "$mnt" useradd --create-home --uid 1000 --user-group --shell /bin/bash builder
	echo 'builder ALL=(ALL:ALL) NOPASSWD: ALL' >"$mnt/etc/sudoers.d/builder"
	chmod 0440 "$mnt/etc/sudoers.d/builder"
	chroot "$mnt" visudo -cq -f /etc/sudoers.d/builder || die "visudo rejects /etc/sudoers.d/builder"
	# The test package, built in the root so its owner is builder by
	# name too: a dir and a file owned by a non-root user.
	local p=$mnt/tmp/pkg
	mkdir -p "$p/DEBIAN" "$p/opt/jobrun-test"
	cat >"$p/DEBIAN/control" <<-EOT
		Package: jobrun-test
		Version: 1.0
		Architecture: all
		Maintainer: jobrun <jobrun@localhost>
		Description: jobrun's test package: files owned by a non-root user
	EOT
	echo "owned by builder" >"$p/opt/jobrun-test/owned"
	chown -R 1000:1000 "$p/opt/jobrun-test"
	chmod 0750 "$p/opt/jobrun-test"
	chmod 0640 "$p/opt/jobrun-test/owned"
	find "$p" -exec touch -h -d @0 {} +
	chroot "$mnt" env SOURCE_DATE_EPOCH=0 dpkg-deb -Zgzip --build /tmp/pkg /opt/test.deb >/dev/null
	chroot "$mnt" sh -ec 'cd /opt
		{ dpkg-deb -f test.deb; echo "Filename: ./test.deb"; echo "Size: $(stat -c %s test.deb)"
		  echo "SHA256: $(sha256sum test.deb | cut -d" " -f1)"; echo; } >Packages'
	echo "deb [trusted=yes] file:/opt ./" >"$mnt/etc/apt/sources.list"
	# Does apt read the repository (as _apt)? Then back to no lists.
	chroot "$mnt" apt-get update -qq >"$d/apt.log" 2>&1 &&
		chroot "$mnt" apt-get install --simulate -qq jobrun-test >>"$d/apt.log" 2>&1 || {
		cat "$d/apt.log"
		die "apt-get update from file:/opt in the debian-sudo root failed (log above)"
	}
	rm -rf "$mnt/tmp/debs" "$mnt/tmp/pkg" "$mnt"/var/lib/apt/lists/* "$mnt"/var/cache/apt/*.bin \
		"$mnt"/var/log/*.log "$mnt"/var/log/apt/* "$mnt"/var/cache/debconf/*-old
	umount "$mnt"
	# overlayfs's whiteouts (0:0 character devices) are .wh. files in a
	# layer; an opaque directory (a directory removed and made again)
	# has no place here.
	find "$d/upper" -type c | while read -r f; do
		[ "$(stat -c %t:%T "$f")" = 0:0 ] || die "a device in the debian-sudo layer: $f"
		rm "$f"
		: >"$(dirname "$f")/.wh.$(basename "$f")"
	done
	if command -v getfattr >/dev/null && getfattr -R -m trusted.overlay.opaque --absolute-names "$d/upper" 2>/dev/null | grep -q opaque; then
		die "an opaque directory in the debian-sudo layer"
	fi
}
sudokey=$(printf '%s\n' "$root" "$sudo_version" "$(declare -f sudo_upper tar_layer)" | sha256sum | cut -c1-16)
sudolayer=$cache/layers/sudo-$sudokey
if [ ! -f "$sudolayer.done" ]; then
	log "layer sudo (cached as $sudolayer)"
	sudo_upper "$tmp/sudo"
	tar_layer "$tmp/sudo-layer" -C "$tmp/sudo/upper" $(cd "$tmp/sudo/upper" && ls -A)
	mkdir -p "$cache/layers"
	rm -f "$cache/layers/sudo-"*
	mv "$tmp/sudo-layer.tar.gz" "$sudolayer.tar.gz"
	mv "$tmp/sudo-layer.diffid" "$sudolayer.diffid"
	touch "$sudolayer.done"
fi
echo "sudo $sudo_version, user builder (1000, passwordless sudo), /opt/test.deb in a file: apt repository" >"$sudolayer.by"
image "$tmp/out/debian-sudo" latest builder /home/builder bash "PATH=$path_default" -- "$base" "$sudolayer"

log "debian-buildah ($suite minbase + buildah $buildah_version, podman $podman_version)"
buildahlayer=$(cached_layer buildah "$buildah_root" --anchored --exclude='dev/*' --exclude='proc/*' --exclude='sys/*' \
	-C "$buildah_root" $(cd "$buildah_root" && ls -A))
echo "debootstrap --variant=minbase $suite $m; apt-get install --no-install-recommends buildah=$buildah_version podman=$podman_version busybox-static" >"$buildahlayer.by"
image "$tmp/out/debian-buildah" latest "" "" bash "PATH=$path_default" -- "$buildahlayer"

touch "$tmp/out/.done"
mv "$tmp/out" "$out"
# Older sets (a changed script or toolchain) go an hour after they were
# replaced, so a test run that evaluated their path before keeps them.
for old in "$cache"/images-*; do
	[ "$old" != "$out" ] || continue
	if [ ! -f "$old/.replaced" ]; then
		touch "$old/.replaced"
	elif [ -n "$(find "$old/.replaced" -mmin +60)" ]; then
		rm -rf "$old"
	fi
done
du -shl --apparent-size "$out"/* | sed 's/^/testimages: /'
exports
