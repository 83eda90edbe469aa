#!/usr/bin/env bash
# `make test-vm`: the container-facing tests that differ between cgroup
# hierarchies and kernels, run as root in a qemu guest on Debian 12's stock
# kernel (linux-image-amd64, 6.1) with a pure cgroup v2 hierarchy, whatever
# the host runs. Reports through bin/testreport with `make test`'s rule: under
# CI=true a skipped test fails the lane.
#
# The guest (qemu TCG: nested KVM is unusably slow on the CI machines) boots
# the package's vmlinuz into a busybox-static initramfs (scripts/vm-init.sh)
# that mounts the host's / read-only over 9p with a tmpfs overlay and
# switches its root there, so it runs the host's binaries and the test binaries built
# here (`go test -c`). The kernel's modules are bound at /lib/modules, an
# ext4 scratch disk (virtio-blk, a sparse image made here with mkfs.ext4,
# one per guest and run) holds TMPDIR and so every state dir, the systemd
# guest's /var/lib/jobrun too (an overlay's upper dir cannot sit on
# overlayfs; idmapped mounts need ext4 on 6.1, tmpfs takes them from 6.3),
# and a writable 9p share carries the tests' JSON and the guest's status
# back. The root's /etc is writable (the tmpfs overlay): useradd and
# /etc/subuid, /etc/subgid work as on a machine, and vanish with the guest.
#
# Everything the tests wait for is scaled by JOBRUN_TEST_TIMESCALE
# (internal/testenv.Scale): TCG runs about 20x slower than the host.
#
# Environment:
#   JOBRUN_VM_DIR       cache of the kernel and initramfs (default /var/cache/jobrun-vm)
#   JOBRUN_VM_TIMEOUT   seconds before the tests guest is killed (default 3600: its user-namespace tests take some 10 minutes under TCG,
#                       the builder tests as much again (agent TestBuildsImagesBuilds alone 9), the image-build example 5 under jobrun local and 4 on a pool agent)
#   JOBRUN_VM_CPUS, JOBRUN_VM_MEM   guest cpus (default 2) and MiB (default 4096)
#   JOBRUN_VM_FAIL_DEMO=1   also runs a test that fails on purpose, to show
#                           that a failure inside the guest makes the lane red
#   JOBRUN_VM_RUN=REGEX     only the subset's entries whose package matches
#   JOBRUN_VM_TESTS=REGEX   the -run pattern for the packages chosen, in place
#                           of the subset's (one run per package), e.g.
#                           JOBRUN_VM_RUN='^cmd/jobrun$' JOBRUN_VM_TESTS='^TestImageBuildExamplePool$'
#   JOBRUN_VM_SYSTEMD=0     without the second guest, which boots systemd
#                           (a debootstrap root, cached) and runs `jobrun
#                           local` as a service with Delegate=yes, then
#                           examples/deploy's jobrun-server and jobrun-agent
#                           units and a run through the server's API, then
#                           `jobrun local` as an ordinary user under its
#                           user manager (systemd-run --user --scope -p
#                           Delegate=yes): limits enforced, OOM reported
#   JOBRUN_VM_SYSTEMD_TIMEOUT   seconds for that guest (default 900)
# usage: scripts/test-vm.sh            (the host side)
#        scripts/test-vm.sh guest      (inside the guest; vm-init.sh runs it)
set -euo pipefail

# The subset: package, -run pattern (a Go regexp matched against each
# test's name, as `go test -run` takes it; "." runs every test of the
# package). What differs between hierarchies and kernels: the container's
# cgroup (limits, OOM, pids, freeze and kill, stats, the attach warmer,
# start-up clean-up), bridge networking, overlay snapshots on ext4, the leak
# checker's cgroup scan, `jobrun local` end to end, and user namespaces with
# idmapped layers (6.1 takes idmapped mounts on ext4, not on tmpfs).
#
# This list is the one place to add tests: a package already listed gets
# its new tests by a wider pattern, a new package by a new line (it is
# built with `go test -c` and run from its own directory). One package
# alone, quickly: JOBRUN_VM_RUN=idmap JOBRUN_VM_SYSTEMD=0 make test-vm.
SUBSET=(
	"agent/sandbox|^(TestPidsLimit|TestMemoryLimit|TestCPULimit|TestTimeoutKillsEverything|TestCancel|TestFailedStartLeavesNothing|TestKilledAgent|TestWarmer|TestExitCodes|TestParallelJobs|TestMounts|TestCgroupDelegation|TestCgroupUndelegated|TestUsernsStepRunsAsRangeRoot|TestUsernsChownAnyID|TestUsernsSetuidWorks|TestUsernsRootCannotReadHostRootFile|TestUsernsJobCannotSignalOtherRange|TestNamespacesCleanup|TestUsernsLimitsAndKillStillWork|TestUsernsNsenterEntersJob|TestUsernsNetNSOwnedByJob|TestEscapesUserns|TestUsernsStepsNeverHoldSysAdmin|TestKilledAgentUserns|TestBuilder.*|TestPrepareBuilderCompilesBuildersFilter|TestEscapesBuilder)$"
	"agent/network|^(TestOutbound|TestIsolation|TestTeardown|TestCleanupAfterCrash|TestSetupInJobUserns|TestSetupSysctls|TestAllowOpensOnlyThatPort|TestAllowOffByDefault|TestAllowRulesGoWithCrashedJob)$"
	"agent/image|^(TestSnapshotLifecycle|TestCleanupAfterCrash|TestSnapshotForShiftsOwnersWithoutChown|TestCheckIDsRefusesUnmappableOwners)$"
	"internal/leakcheck|^(TestCgroup|TestCgroupScope|TestMount|TestLink|TestNetNS)$"
	"cmd/jobrun|^(TestLocalDAGAndMatrix|TestLocalLimitsAndUnsupported|TestLocalServices|TestLocalKilledMidJob|TestLocalAllowFlag|TestImageBuildExampleLocal|TestImageBuildExamplePool|TestRootless(Hello|IDs|InterruptAndTimeout|ImageCommands|JobConfined|Keep|XDGDirs|Bridge.*|Limits.*|Escapes|OwnUID.*|AllowOpensOnlyThatPort|PastaFailureErrorsTheJob|NoOverlay))$"
	# The examples without root, but the go one (its toolchain's first
	# build takes most of an hour under TCG; the host lane runs it).
	"cmd/jobrun|^TestRootlessExamples$/^(hello|matrix|services|artifacts)$"
	# #18, `jobrun local` without root (TestRootless*, above): real users
	# made with useradd and subordinate ranges, their homes (state dirs)
	# on the scratch disk, newuidmap and pasta from the host's root; on
	# cgroup v2 the limits are reported not enforced in root's cgroup and
	# enforced in one delegated to the user. The systemd guest runs the
	# same under a user manager (systemd-run --user --scope -p Delegate=yes).
	# #17, user namespaces: the probe (ext4 passes, tmpfs names 6.3), the
	# idmapped mounts and overlays, the id ranges (useradd, subuid and
	# subgid in the guest's writable /etc), jobs in a user namespace
	# (the sandbox's Userns tests above; cmd/jobrun's jobs run in one by
	# default), caches and workspaces built for a range.
	# #19, builds_images: buildah and podman build in a job (agent: the
	# debian-buildah image; sandbox: its root, copied to the scratch disk
	# in the guest, as 9p takes no idmapped mount), the profile, its
	# filter compiled ahead, and the escape battery of a building job; the
	# allow entry's input-chain rule (network, and --allow end to end in
	# cmd/jobrun); examples/image-build as written under `jobrun local`
	# and on a pool agent (a real server and agent process, the agent's
	# config with the allow entry, ca_file and the registry login).
	"agent|^(TestUsernsJobsGetDisjointRanges|TestUsernsBridgeServiceOnPort80|TestUsernsCacheSharedAcrossRanges|TestUsernsDebianPackaging|TestUsernsSudoFromImageUser|TestBuildsImagesBuilds|TestBuildsImagesRefusedWithoutUserns)$"
	"cache|^(TestPrivateOverlayForRange|TestSharedVolumeAcrossRanges|TestSetuidInCacheReachableByRootOnly)$"
	"agent/workspace|^(TestOverlayForRange)$"
	"internal/idmap|."
	"agent/idrange|."
)
TIMESCALE=${JOBRUN_TEST_TIMESCALE:-20}

log() { echo "test-vm: $*" >&2; }
die() {
	log "$*"
	exit 1
}

# The guests' own checks, reported as tests of package $pkg in test2json's
# events: json ACTION TEST OUTPUT appends one event, check NAME COMMAND...
# runs one test with its output in the report.
json() { printf '{"Action":"%s","Package":"%s","Test":"%s","Output":"%s"}\n' "$1" "$pkg" "$2" "$3" >>"$out/test.json"; }
check() {
	local name=$1 o rc
	shift
	json run "$name" ""
	o=$("$@" 2>&1)
	rc=$?
	case $name in *Placed | *BesideLeaf | *InAgentUnit | *Ext4) echo "$o" >&2 ;; esac
	while IFS= read -r line; do
		line=${line//\\/\\\\}
		line=${line//\"/\\\"}
		json output "$name" "    ${line//	/ }\\n"
	done <<<"$o"
	if [ "$rc" = 0 ]; then json pass "$name" ""; else json fail "$name" ""; fi
	return "$rc"
}

# ---------------------------------------------------------------- guest side
# guest_ext4: TMPDIR is on the ext4 scratch disk.
guest_ext4() {
	local fs
	fs=$(stat -f -c %T "$TMPDIR")
	echo "TMPDIR=$TMPDIR on ${fs}: $(df -h "$TMPDIR" | sed -n 2p)"
	[ "$fs" = ext2/ext3 ] # how stat names ext4's magic
}
# guest_subids: the guest's /etc takes a system user and subordinate ids,
# as agent/idrange creates them (the user and entries are removed after).
guest_subids() {
	local u=jobrun-vm-check f
	for f in /etc/subuid /etc/subgid; do
		[ -f $f ] || : >>$f || return 1
		cp -p $f $f.vm-check || return 1
	done
	ls -l /etc/passwd /etc/subuid /etc/subgid
	useradd --system --no-create-home --shell /usr/sbin/nologin --user-group $u || return 1
	echo "useradd: $(getent passwd $u)"
	echo "$u:4000000000:65536" >>/etc/subuid && echo "$u:4000000000:65536" >>/etc/subgid || return 1
	grep -H "^$u:" /etc/subuid /etc/subgid || return 1
	userdel $u || return 1
	for f in /etc/subuid /etc/subgid; do mv $f.vm-check $f || return 1; done
	! getent passwd $u
}
# guest_registry: the plain-HTTP docker-registry on loopback that
# scripts/services.sh starts on a host (JOBRUN_TEST_REGISTRY), for
# cmd/jobrun's image-build example tests (#19): they push the builder image
# there and the agent pulls it as a mirror of quay.io. The example's own
# registry (TLS, htpasswd, an address on lo) the tests start themselves
# with scripts/example-registry.sh. Its data is on the scratch disk.
guest_registry() {
	local d=/scratch/registry
	mkdir -p $d/data
	printf 'version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: %s\n' \
		"$d/data" "$GUEST_REGISTRY" >$d/registry.yml
	docker-registry serve $d/registry.yml >$d/registry.log 2>&1 </dev/null &
}
guest_registry_up() {
	for _ in $(seq 600); do
		(exec 3<>"/dev/tcp/${GUEST_REGISTRY%:*}/${GUEST_REGISTRY#*:}") 2>/dev/null && {
			echo "docker-registry on $GUEST_REGISTRY"
			return 0
		}
		sleep 0.1
	done
	cat /scratch/registry/registry.log
	return 1
}
if [ "${1:-}" = guest ]; then
	# vm-init.sh switches its root here with the output dir at the same path as on
	# the host; its env file says the rest.
	out=$(sed -n 's/.*jobrun\.out=\([^ ]*\).*/\1/p' /proc/cmdline)
	# shellcheck disable=SC1091
	. "$out/env"
	export PATH=/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
	export HOME=/root CI=true JOBRUN_TEST_TIMESCALE="$TIMESCALE"
	# Built on the host: the guest would take minutes to build them.
	export JOBRUN_TEST_HELPERS="$out/bin" JOBRUN_TEST_JOBRUN="$out/bin/jobrun" JOBRUN_TEST_PROBES="$out/bin"
	status() { echo "$*" >"$out/status"; }
	finish() {
		sync
		busybox poweroff -f
	}
	trap finish EXIT
	status "started"
	mkdir -p /lib/modules
	mount --bind "$KERNEL/lib/modules" /lib/modules
	echo /sbin/modprobe >/proc/sys/kernel/modprobe
	# The scratch disk (ext4 and virtio_blk came in with the initramfs)
	# holds TMPDIR, so every t.TempDir() and the state dirs made in one:
	# idmapped mounts need ext4 on 6.1 (tmpfs takes them from 6.3).
	mkdir -p /scratch
	mount -t ext4 /dev/vda /scratch || {
		status "failed: mount the scratch disk"
		exit 1
	}
	mkdir -p /scratch/tmp
	chmod 1777 /scratch/tmp
	export TMPDIR=/scratch/tmp
	ip link set lo up
	# The rootless tests' homes hold their state dirs: on ext4, not on
	# the overlay root (an overlay's upper dir cannot sit on overlayfs).
	mkdir -p /scratch/home
	mount --bind /scratch/home /home
	# pasta (rootless bridge jobs) opens /dev/net/tun, there once tun is
	# loaded (no udev here), and copies the host's routable interface
	# into a job's namespace: the guest has no NIC, so a dummy link with
	# a default route stands in for one.
	modprobe tun || echo "no tun module: rootless bridge tests will fail" >&2
	ip link add jr0 type dummy && ip addr add 10.251.0.2/24 dev jr0 && ip link set jr0 up &&
		ip route add default via 10.251.0.1 dev jr0 || echo "no dummy link: rootless bridge tests will fail" >&2
	echo "cgroup: $(cat /sys/fs/cgroup/cgroup.controllers)" >&2
	echo "kernel: $(uname -r)" >&2
	# What the tests take for granted in this root (the host's, overlaid
	# on a tmpfs): state on ext4, and an /etc where agent/idrange.Open can
	# create its user (useradd) and add subuid and subgid entries.
	pkg=test-vm-guest
	json start "" ""
	ok=pass
	check TestGuestStateOnExt4 guest_ext4 || ok=fail
	check TestGuestUseraddAndSubIDs guest_subids || ok=fail
	# The builder tests' root (sandbox TestBuilder*): from the 9p root to
	# the scratch disk, where it can be idmapped.
	if [ -n "${JOBRUN_TEST_ROOT_BUILDAH:-}" ] && [[ "${RUNS[*]}" == *TestBuilder* ]]; then
		check TestGuestBuilderRootOnExt4 cp -a "$JOBRUN_TEST_ROOT_BUILDAH" /scratch/root-buildah || ok=fail
		export JOBRUN_TEST_ROOT_BUILDAH=/scratch/root-buildah
	fi
	GUEST_REGISTRY=127.0.0.1:35000
	guest_registry
	check TestGuestRegistry guest_registry_up || ok=fail
	export JOBRUN_TEST_REGISTRY=$GUEST_REGISTRY
	json $ok "" ""
	# Each package within 40 minutes: agent's builder tests take some 10
	# under TCG, cmd/jobrun's image-build example some 9 (local and pool).
	for entry in "${RUNS[@]}"; do
		pkg=${entry%%|*}
		pattern=${entry#*|}
		name=${pkg//\//_}
		echo "== $pkg $pattern" >&2
		(cd "$REPO/$pkg" && "$out/bin/test2json" -t -p "$MODULE/$pkg" "$out/bin/$name.test" \
			-test.v=test2json -test.count=1 -test.timeout=40m -test.run "$pattern" \
			>>"$out/test.json" 2>&1) || true
	done
	status "done"
	exit 0
fi

# ------------------------------------------------- the systemd guest's side
# Runs as a unit of the systemd guest (vm-init.sh with jobrun.root=): `jobrun
# local` as a transient service with Delegate=yes, then examples/deploy's
# units, a real jobrun server and agent, and a run through the API. Each
# time jobs' cgroups must be inside the unit beside the agent's leaf, OOM
# must be reported at the limit, and `systemctl stop` must leave no job
# cgroup or process. Reports test2json events itself.
if [ "${1:-}" = systemd-guest ]; then
	out=$(sed -n 's/.*jobrun\.out=\([^ ]*\).*/\1/p' /proc/cmdline)
	# shellcheck disable=SC1091
	. "$out/env"
	status() { echo "$*" >"$out/status-systemd"; }
	finish() {
		sync
		systemctl poweroff --no-block
	}
	trap finish EXIT
	status started
	pkg=systemd-guest
	echo "systemd $(systemctl --version | sed -n 1p), cgroup: $(cat /sys/fs/cgroup/cgroup.controllers)" >&2
	state=/var/lib/jobrun
	mkdir -p $state /run/lane
	# Not on the overlay root (overlay upper dirs cannot sit on overlayfs)
	# and not on tmpfs (6.1 idmaps ext4, not tmpfs): the scratch disk.
	mkdir -p /scratch
	mount -t ext4 /dev/vda /scratch || {
		status "failed: mount the scratch disk"
		exit 1
	}
	mkdir -p /scratch/state /scratch/home
	mount --bind /scratch/state $state
	chmod 0700 $state
	image="oci-layout:/host$JOBRUN_TEST_IMAGES/busybox:latest"
	cat >/run/lane/.ci.hcl <<EOT
job "hog" {
  image   = "$image"
  network = "none"
  resources { memory = "32MiB" }
  step "eat" { run = "head -c 200m /dev/zero | tail > /dev/null" }
}
job "sleeper" {
  image   = "$image"
  network = "none"
  step "sleep" { run = "echo sleeping; sleep 600" }
}
EOT
	unit=lane-local.service
	cg=/sys/fs/cgroup/system.slice/$unit
	systemd-run --unit=$unit -p Delegate=yes -p StandardOutput=file:/run/lane/out -p StandardError=file:/run/lane/out \
		"$out/bin/jobrun" --state-dir $state local --parallel 2 --artifacts $state/artifacts /run/lane/.ci.hcl
	running() {
		for _ in $(seq 600); do
			grep -q "sleeping" /run/lane/out 2>/dev/null && grep -q "hog .*out of memory" /run/lane/out 2>/dev/null && return 0
			sleep 1
		done
		cat /run/lane/out
		return 1
	}
	placed() {
		echo "the service's cgroup: $(cd $cg && ls -d */ | tr '\n' ' ')"
		echo "jobrun is in: $(cat /proc/"$(systemctl show -P MainPID $unit)"/cgroup)"
		grep -q "^0::/system.slice/$unit/supervisor$" /proc/"$(systemctl show -P MainPID $unit)"/cgroup &&
			ls -d $cg/jobrun-* >/dev/null && [ -z "$(cat $cg/cgroup.procs)" ] &&
			grep -qw memory $cg/cgroup.subtree_control
	}
	stopped() {
		systemctl stop $unit
		local left
		left=$(find /sys/fs/cgroup -name 'jobrun-*' -type d)
		cat /run/lane/out
		echo "jobrun cgroups left after systemctl stop: ${left:-none}"
		[ -z "$left" ] || return 1
		for f in /proc/[0-9]*/cmdline; do
			if [ "$(tr '\0' ' ' <"$f" 2>/dev/null)" = "sleep 600 " ]; then
				echo "the job's sleep survived: ${f%/cmdline}"
				return 1
			fi
		done
	}
	# The pool as examples/deploy installs it: jobrun-server and
	# jobrun-agent from their units (the agent with Delegate=yes), a run
	# through the API. Its jobs' cgroups must be inside the agent's unit.
	cp "$out/bin/jobrun" "$out/bin/jobrun-launcher" "$out/bin/jobrun-starter" /usr/local/bin/
	cp "/host$REPO/examples/deploy/jobrun-server.service" "/host$REPO/examples/deploy/jobrun-agent.service" /etc/systemd/system/
	mkdir -p /etc/jobrun
	printf '%s\n' JOBRUN_REGISTRATION_TOKEN=reg-vm JOBRUN_ADMIN_TOKEN=admin-vm JOBRUN_DATABASE=sqlite >/etc/jobrun/server.env
	printf '%s\n' JOBRUN_SERVER=http://127.0.0.1:8080 JOBRUN_TOKEN=reg-vm JOBRUN_LABELS=linux,vm JOBRUN_JOBS=2 JOBRUN_DRAIN_TIMEOUT=5s >/etc/jobrun/agent.env
	chmod 600 /etc/jobrun/*.env
	systemctl daemon-reload
	# http METHOD PATH [BODY]: the response's body (bash's /dev/tcp: the
	# minbase root has no curl).
	http() {
		local body=${3:-} resp
		exec 3<>/dev/tcp/127.0.0.1/8080 || return 1
		printf '%s %s HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer admin-vm\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s' \
			"$1" "$2" "${#body}" "$body" >&3
		resp=$(cat <&3)
		exec 3<&-
		printf '%s' "${resp#*$'\r\n\r\n'}"
	}
	acg=/sys/fs/cgroup/system.slice/jobrun-agent.service
	pool_runs() {
		systemctl start jobrun-server || return 1
		for _ in $(seq 300); do
			[ "$(http GET /healthz 2>/dev/null)" = ok ] && break
			sleep 1
		done
		systemctl start jobrun-agent || return 1
		local src body
		src='job \"hog\" {\n  image = \"'$image'\"\n  agent = [\"vm\"]\n  network = \"none\"\n  resources { memory = \"32MiB\" }\n  step \"eat\" { run = \"head -c 200m /dev/zero | tail > /dev/null\" }\n}\njob \"sleeper\" {\n  image = \"'$image'\"\n  agent = [\"vm\"]\n  network = \"none\"\n  step \"sleep\" { run = \"echo sleeping; sleep 600\" }\n}\n'
		body='{"repo":"vm","branch":"main","file":".ci.hcl","source":"'$src'"}'
		http POST /api/v1/runs "$body" >/run/lane/run.json
		run=$(sed -n 's/^[^{]*{"id":\([0-9]*\).*/\1/p' /run/lane/run.json)
		echo "run: ${run:-none}: $(head -c 300 /run/lane/run.json)"
		[ -n "$run" ] || return 1
		for _ in $(seq 600); do
			ls -d $acg/jobrun-* >/dev/null 2>&1 && http GET "/api/v1/runs/$run" | grep -q 'out of memory (limit 32 MiB)' && return 0
			sleep 1
		done
		http GET "/api/v1/runs/$run"
		journalctl -u jobrun-agent --no-pager | tail -30
		return 1
	}
	pool_placed() {
		local pid
		pid=$(systemctl show -P MainPID jobrun-agent)
		echo "the agent's unit cgroup: $(cd $acg && ls -d */ | tr '\n' ' ')"
		echo "the agent is in: $(cat /proc/"$pid"/cgroup)"
		grep -q "^0::/system.slice/jobrun-agent.service/supervisor$" /proc/"$pid"/cgroup &&
			ls -d $acg/jobrun-* >/dev/null && [ -z "$(cat $acg/cgroup.procs)" ]
	}
	pool_stopped() {
		systemctl stop jobrun-agent
		local left
		left=$(find /sys/fs/cgroup -name 'jobrun-*' -type d ! -name '*.service')
		journalctl -u jobrun-agent --no-pager | tail -15
		echo "job cgroups left after systemctl stop jobrun-agent: ${left:-none}"
		[ -z "$left" ] || return 1
		for f in /proc/[0-9]*/cmdline; do
			if [ "$(tr '\0' ' ' <"$f" 2>/dev/null)" = "sleep 600 " ]; then
				echo "the job's sleep survived: ${f%/cmdline}"
				return 1
			fi
		done
	}
	# `jobrun local` without root (issue #18) under the user manager of
	# a real user with subordinate ranges (useradd gives them) and
	# linger: systemd-run --user --scope -p Delegate=yes hands jobrun a
	# cgroup v2 subtree with cpu, memory and pids (user@.service
	# delegates them), so the limits are enforced as with root. Its
	# state is in its home on the scratch disk; newuidmap and newgidmap
	# (set-uid) come from the host's root, as the guest's minbase lacks
	# uidmap.
	rl=jrsd
	rl_setup() {
		cp -p /host/usr/bin/newuidmap /host/usr/bin/newgidmap /usr/local/bin/ || return 1
		# jobrun and its helpers are in /usr/local/bin since the pool's
		# checks.
		useradd -m -b /scratch/home -s /bin/bash $rl || return 1
		grep -H "^$rl:" /etc/subuid /etc/subgid || return 1
		# The minbase root has no libpam-systemd, whose pam_systemd
		# gives the user manager its XDG_RUNTIME_DIR: a drop-in does.
		mkdir -p /etc/systemd/system/user@.service.d
		printf '[Service]\nEnvironment=XDG_RUNTIME_DIR=/run/user/%%i\n' >/etc/systemd/system/user@.service.d/lane-runtime-dir.conf
		systemctl daemon-reload
		loginctl enable-linger $rl || return 1
		local rl_uid
		rl_uid=$(id -u $rl)
		for _ in $(seq 300); do
			[ -S /run/user/$rl_uid/systemd/private ] && break
			systemctl -q is-failed "user@$rl_uid.service" && break
			sleep 1
		done
		systemctl status --no-pager "user@$rl_uid.service" | head -5
		if [ ! -S /run/user/$rl_uid/systemd/private ]; then
			journalctl -b --no-pager -o cat -u "user@$rl_uid.service" -u "user-runtime-dir@$rl_uid.service" | tail -40
			journalctl -b --no-pager -o cat _UID=$rl_uid | tail -20
			return 1
		fi
		local home=/scratch/home/$rl
		mkdir -p $home/project
		cat >$home/project/.ci.hcl <<EOT
job "hog" {
  image   = "$image"
  network = "none"
  resources { memory = "32MiB" }
  step "eat" { run = "head -c 200m /dev/zero | tail > /dev/null" }
}
job "forks" {
  image   = "$image"
  network = "none"
  resources { pids = 16 }
  step "fork" { run = "i=0; while [ \$i -lt 40 ]; do sleep 60 & i=\$((i+1)); done; echo all 40 started" }
}
job "spin" {
  image   = "$image"
  network = "none"
  resources { cpus = 0.5 }
  step "count" { run = "i=0; while [ \$i -lt 20000 ]; do i=\$((i+1)); done; echo cpu.max \$(cat /sys/fs/cgroup/cpu.max)" }
}
EOT
		chown -R $rl: $home/project
		cat $home/project/.ci.hcl
	}
	rl_run() {
		local home=/scratch/home/$rl rc rl_uid
		rl_uid=$(id -u $rl)
		runuser -u $rl -- env -i HOME=$home USER=$rl PATH=/usr/local/bin:/usr/bin:/bin XDG_RUNTIME_DIR=/run/user/$rl_uid NO_COLOR=1 \
			systemd-run --user --scope --unit=lane-rootless -p Delegate=yes \
			/usr/local/bin/jobrun local --artifacts $home/artifacts $home/project/.ci.hcl >/run/lane/rl.out 2>&1
		rc=$?
		cat /run/lane/rl.out
		echo "exit $rc (want 1: hog and forks fail at their limits)"
		[ "$rc" = 1 ] && grep -q "^JOB " /run/lane/rl.out
	}
	rl_pids() {
		grep "forks .*failed" /run/lane/rl.out && grep "can't fork" /run/lane/rl.out && ! grep "all 40 started" /run/lane/rl.out
	}
	rl_measured() {
		sed -n '/^JOB /,/^$/p' /run/lane/rl.out
		grep -q "cpu.max 50000 100000" /run/lane/rl.out || return 1
		sed -n '/^JOB /,/^$/p' /run/lane/rl.out | awk 'NR > 1 && NF > 0 && ($4 == "-" || $5 == "-") { bad = 1 } END { exit bad }'
	}
	rl_left() {
		local left f pids=""
		left=$(find /sys/fs/cgroup/user.slice -name 'jobrun-*' -type d)
		echo "job cgroups left under user.slice: ${left:-none}"
		# No pgrep in the minbase root: the user's processes from /proc.
		for f in /proc/[0-9]*/status; do
			[ "$(awk '/^Uid:/ { print $2 }' "$f" 2>/dev/null)" = "$(id -u $rl)" ] || continue
			f=${f%/status}
			pids="$pids ${f#/proc/}:$(tr '\0' ' ' <"$f/cmdline" 2>/dev/null)"
		done
		echo "processes of $rl (its user manager's only):$pids"
		[ -z "$left" ] && [[ $pids != *"sleep 60"* ]] && [[ $pids != *jobrun* ]]
	}
	json start "" ""
	ok=pass
	check TestSystemdDelegateJobRuns running || ok=fail
	check TestSystemdDelegateJobsBesideLeaf placed || ok=fail
	check TestSystemdDelegateOOMReported grep "hog .*out of memory (limit 32 MiB)" /run/lane/out || ok=fail
	check TestSystemdDelegateStopLeavesNothing stopped || ok=fail
	check TestSystemdPoolRunLeased pool_runs || ok=fail
	check TestSystemdPoolJobsInAgentUnit pool_placed || ok=fail
	check TestSystemdPoolStopLeavesNothing pool_stopped || ok=fail
	check TestSystemdRootlessUserManager rl_setup || ok=fail
	check TestSystemdRootlessJobsRun rl_run || ok=fail
	check TestSystemdRootlessOOMReported grep "hog .*out of memory (limit 32 MiB)" /run/lane/rl.out || ok=fail
	check TestSystemdRootlessPidsLimit rl_pids || ok=fail
	check TestSystemdRootlessCPUAndPeakMem rl_measured || ok=fail
	check TestSystemdRootlessLimitsEnforced sh -c 'grep -q "^JOB " /run/lane/rl.out && ! grep "limits not enforced" /run/lane/rl.out' || ok=fail
	check TestSystemdRootlessLeavesNothing rl_left || ok=fail
	json $ok "" ""
	status done
	exit 0
fi

# ----------------------------------------------------------------- host side
self=$(realpath "$0")
cd "$(dirname "$self")/.."
repo=$PWD
export CGO_ENABLED=1
TAGS=${TAGS:-seccomp}
[ "$(id -u)" = 0 ] || die "needs root (apt-get, the guest's files)"

cache=${JOBRUN_VM_DIR:-/var/cache/jobrun-vm}
timeout=${JOBRUN_VM_TIMEOUT:-3600}
mkdir -p "$cache"

# Debian packages: qemu, kmod (depmod for the guest's modules), busybox-static
# (the initramfs), e2fsprogs (the scratch disk), cpio.
missing=()
for p in qemu-system-x86 kmod busybox-static e2fsprogs cpio; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
	log "installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

exec 9>"$cache/.lock"
flock 9 # one kernel download and initramfs build per machine at a time

# The kernel: the package Debian's linux-image-amd64 depends on, extracted
# (no install) with its modules indexed by depmod.
kpkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ { print $2; exit }')
[ -n "$kpkg" ] || die "apt-cache knows no linux-image-amd64 (apt-get update?)"
kdir=$cache/$kpkg
if [ ! -f "$kdir.done" ]; then
	log "kernel $kpkg (apt-get download, dpkg-deb -x; once per machine)"
	rm -rf "$kdir" "$kdir.tmp"
	mkdir -p "$kdir.tmp/deb"
	(cd "$kdir.tmp/deb" && apt-get download -q "$kpkg" 2>&1 | grep -v unsandboxed >&2) || die "apt-get download $kpkg"
	dpkg-deb -x "$kdir.tmp"/deb/*.deb "$kdir.tmp"
	rm -rf "$kdir.tmp/deb"
	kver=$(ls "$kdir.tmp/lib/modules")
	depmod -b "$kdir.tmp" "$kver"
	mv "$kdir.tmp" "$kdir"
	touch "$kdir.done"
fi
kver=$(ls "$kdir/lib/modules")
vmlinuz=$kdir/boot/vmlinuz-$kver

# The initramfs: busybox-static, vm-init.sh as /init, the modules that reach
# the host's root. Rebuilt when either script or busybox changes.
istamp=$({
	cat scripts/vm-init.sh
	echo "$kpkg"
	stat -c '%Y %s' /bin/busybox
} | sha256sum | cut -c1-16)
initrd=$cache/initramfs-$istamp.cpio.gz
if [ ! -f "$initrd" ]; then
	log "initramfs $initrd"
	t=$(mktemp -d "$cache/.initramfs.XXXXXX")
	mkdir -p "$t"/{bin,mods,proc,sys,dev,tmp,run}
	cp /bin/busybox "$t/bin/busybox"
	cp scripts/vm-init.sh "$t/init"
	chmod 755 "$t/init"
	for m in $(sed -n 's/^mods="\(.*\)"$/\1/p' scripts/vm-init.sh); do
		f=$(find "$kdir/lib/modules/$kver/kernel" -name "$m.ko" | head -n1)
		[ -n "$f" ] || die "no module $m.ko in $kpkg"
		cp "$f" "$t/mods/"
	done
	(cd "$t" && find . | cpio -o -H newc --quiet | gzip -1) >"$initrd.tmp"
	mv "$initrd.tmp" "$initrd"
	rm -rf "$t"
	find "$cache" -maxdepth 1 -name 'initramfs-*.cpio.gz' ! -name "${initrd##*/}" -delete
fi
# The systemd guest's root: debootstrap minbase with systemd as init.
sysroot=$cache/systemd-bookworm
if [ "${JOBRUN_VM_SYSTEMD:-1}" = 1 ] && [ ! -f "$sysroot.done" ]; then
	command -v debootstrap >/dev/null || die "needs debootstrap (scripts/deps.sh installs it)"
	mirror=$(awk '/^URIs:/ { print $2; exit }' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
	log "debootstrap --include=systemd-sysv,dbus bookworm (once per machine)"
	rm -rf "$sysroot.tmp"
	debootstrap --variant=minbase --include=systemd-sysv,dbus bookworm "$sysroot.tmp" "${mirror:-http://deb.debian.org/debian}" >"$cache/debootstrap.log" 2>&1 ||
		die "debootstrap failed: $cache/debootstrap.log"
	rm -rf "$sysroot"
	mv "$sysroot.tmp" "$sysroot"
	touch "$sysroot.done"
fi
flock -u 9

# This run's directory: the test binaries, the guest's env and output, the
# scratch disk (not under /tmp: the guest mounts a tmpfs there). Removed at
# exit, with qemu.
work=$(mktemp -d "$cache/run.XXXXXX")
qpid=
cleanup() {
	[ -z "$qpid" ] || kill "$qpid" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
mkdir -p "$work/bin"

if [ -x scripts/testimages.sh ]; then
	eval "$(scripts/testimages.sh)"
fi

runs=()
for entry in "${SUBSET[@]}"; do
	p=${entry%%|*}
	[[ $p =~ ${JOBRUN_VM_RUN:-.} ]] || continue
	if [ -n "${JOBRUN_VM_TESTS:-}" ]; then
		# The package once, with the given pattern.
		for r in ${runs[@]+"${runs[@]}"}; do
			[ "${r%%|*}" != "$p" ] || continue 2
		done
		entry="$p|$JOBRUN_VM_TESTS"
	fi
	runs+=("$entry")
done
if [ "${JOBRUN_VM_FAIL_DEMO:-}" = 1 ]; then
	runs+=("internal/testenv|^TestFailsOnPurposeInVM$")
fi
((${#runs[@]})) || [ "${JOBRUN_VM_SYSTEMD:-1}" = 1 ] || die "JOBRUN_VM_RUN=$JOBRUN_VM_RUN matches no package of the subset"

log "building the test binaries"
module=$(go list -m)
go build -o bin/testreport ./internal/tools/testreport
go build -o "$work/bin/test2json" cmd/test2json
TAGS=$TAGS scripts/helpers.sh "$work/bin" >/dev/null
go build -tags "$TAGS" -o "$work/bin/jobrun" ./cmd/jobrun
CGO_ENABLED=0 go build -o "$work/bin/probe" ./agent/sandbox/internal/probe
CGO_ENABLED=0 GOARCH=386 go build -o "$work/bin/probe386" ./agent/sandbox/internal/probe
for entry in ${runs[@]+"${runs[@]}"}; do
	pkg=${entry%%|*}
	go test -c -tags "$TAGS" -o "$work/bin/${pkg//\//_}.test" "./$pkg"
done

{
	echo "REPO=$(printf %q "$repo")"
	echo "MODULE=$module"
	echo "KERNEL=$(printf %q "$kdir")"
	echo "TIMESCALE=$TIMESCALE"
	printf 'RUNS=('
	printf '%q ' ${runs[@]+"${runs[@]}"}
	echo ')'
	env | grep -E '^(JOBRUN_TEST_IMAGES[A-Z_]*|JOBRUN_TEST_ROOT_BUILDAH|JOBRUN_VM_FAIL_DEMO)=' | sed 's/^/export /'
} >"$work/env"

# scratch NAME makes a scratch disk, an ext4 image file, and prints its
# qemu -drive: sparse, so its size costs nothing until written; made on the
# host (mkfs.ext4 here, lazy init: milliseconds), one per guest.
scratch() {
	truncate -s 32G "$work/$1.img"
	mkfs.ext4 -q -F -E lazy_itable_init=1,lazy_journal_init=1 "$work/$1.img"
	echo "file=$work/$1.img,if=virtio,format=raw,cache=unsafe"
}

# boot NAME APPEND [QEMU ARGS...] boots a guest and waits for it, or kills
# it after the timeout; qrc is qemu's exit (124: killed).
boot() {
	local name=$1 append=$2
	shift 2
	log "booting $kpkg under qemu TCG: $name (timeout ${timeout}s)"
	local start=$(date +%s)
	timeout --kill-after=10 "$timeout" qemu-system-x86_64 \
		-accel tcg,thread=multi -cpu max -m "${JOBRUN_VM_MEM:-4096}" -smp "${JOBRUN_VM_CPUS:-2}" \
		-display none -no-reboot -nodefaults -serial stdio \
		-kernel "$vmlinuz" -initrd "$initrd" \
		-append "console=ttyS0 panic=-1 quiet loglevel=3 jobrun.script=$self jobrun.out=$work $append" \
		-virtfs local,path=/,mount_tag=host,security_model=passthrough,readonly=on,multidevs=remap \
		-virtfs "local,path=$work,mount_tag=out,security_model=passthrough" \
		"$@" </dev/null &
	qpid=$!
	set +e
	wait "$qpid"
	qrc=$?
	set -e
	qpid=
	log "$name ran $(($(date +%s) - start))s (qemu exit $qrc)"
	[ "$qrc" != 124 ] || log "qemu killed after ${timeout}s"
}
: >"$work/test.json"
ok=1
if ((${#runs[@]})); then
	boot "tests" "" -drive "$(scratch scratch)"
	if [ "$(cat "$work/status" 2>/dev/null)" != done ]; then
		log "the guest did not finish its tests ($(cat "$work/status" 2>/dev/null || echo no status)): the lane fails"
		ok=
	fi
fi
if [ "${JOBRUN_VM_SYSTEMD:-1}" = 1 ]; then
	timeout=${JOBRUN_VM_SYSTEMD_TIMEOUT:-900}
	boot "systemd: jobrun local and the deploy units under Delegate=yes" "jobrun.root=$sysroot systemd.show_status=false" \
		-drive "$(scratch scratch-systemd)"
	if [ "$(cat "$work/status-systemd" 2>/dev/null)" != done ]; then
		log "the systemd guest did not finish ($(cat "$work/status-systemd" 2>/dev/null || echo no status)): the lane fails"
		ok=
	fi
fi

set +e
bin/testreport <"$work/test.json"
rc=$?
set -e
[ -n "$ok" ] || exit 1
exit "$rc"
