package sandbox

import (
	"fmt"
	"slices"

	"github.com/moby/profiles/seccomp"
	"github.com/opencontainers/runc/libcontainer/configs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// A building container (Spec.Builder) runs image builders (buildah,
// podman build) as the root of user namespaces nested in the job's. Side
// by side with a default container in a user namespace:
//
//	                  default                    building
//	capabilities      defaultCaps                defaultCaps (no CAP_SYS_ADMIN)
//	                                             for the launcher and non-root
//	                                             steps; root steps: all, as
//	                                             root of a nested user
//	                                             namespace (below)
//	seccomp           Docker's default           Docker's default as with
//	                                             CAP_SYS_ADMIN, less
//	                                             builderDenied
//	masked paths      maskedPaths                none
//	read-only paths   readonlyPaths              none
//	no_new_privs      off (on with userns off)   off
//	own netns's       none (a job's network:     ip_unprivileged_port_start=0,
//	sysctls           the two at right)          ping_group_range: all mapped
//	                                             groups (builderSysctls)
//
// What the builders need, measured with Debian's buildah 1.28 (`buildah
// build --isolation chroot` of a multi-stage Dockerfile with RUN steps,
// TestBuilderBuildsImage): buildah, root without CAP_SYS_ADMIN, takes its
// rootless path: it re-executes itself in a user namespace of its own
// under the job's (the job's root holds CAP_SETUID and CAP_SETGID over the
// job's 65536 ids, so it writes the nested uid_map and gid_map itself: no
// newuidmap, no setuid helper) and, as that namespace's root, mounts its
// overlay storage and each RUN step's /proc, /sys and /dev in mount
// namespaces of its own. That re-exec cost ~14 ms per buildah command, so
// the launcher does it once per step instead: a building container's root
// steps (wire.Proc.Nest; not non-root steps, nor an interactive shell)
// start as root of a new user namespace nested in the job's, with the
// identity mapping of the job's ids ("0 0 65536") and a new mount
// namespace owned by it. The launcher forks the step with CLONE_NEWUSER
// and writes its maps from the job's namespace (the kernel lets only a
// process of the parent namespace holding CAP_SETUID and CAP_SETGID there
// map more than one id), then the step unshares its mount namespace; if
// any of it fails the step fails, saying what failed, and never runs
// un-nested. There a root step holds every capability, CAP_SYS_ADMIN
// included (buildah takes its rootful path at once, storage at
// /var/lib/containers: TestBuilderBuildahTakesNoReexec), over its own
// namespaces only: the job's mount, network, uts, ipc and pid namespaces
// stay owned by the job's user namespace, where it holds nothing more
// than before (TestBuilderRootStepCannotChangeJobsNamespaces: its mounts
// are its own mount namespace's, it cannot take off the runtime's mounts,
// set the job's hostname or change the job's network). That is what
// `unshare -Urm` gives any step of a building job anyway (nested user
// namespaces are allowed here by design), and the seccomp filter, loaded
// by the launcher, holds in it. As these steps hold no CAP_NET_BIND_SERVICE
// or CAP_NET_RAW over the job's network namespace, a building container's
// own network namespace gets the sysctls Docker sets in every container
// (builderSysctls; a job's network, Spec.NetNS, has them from package
// network) so that its steps bind ports below 1024 and ping
// (TestBuilderStepsBindLowPortsAndPing).
// podman build (4.3), rootless, maps its nested namespace from
// /etc/subuid and /etc/subgid through the set-uid newuidmap (which works:
// no no_new_privs), so a job running it as non-root or in an interactive
// shell gives its root the other 65535 ids there first (`root:1:65535`);
// as a nested root step it takes its rootful path. With its default
// isolation crun's pivot_root fails with EPERM inside the nested
// namespaces, and `--isolation chroot` (buildah's, as above) works. So
// the job keeps Docker's capability set: CAP_SYS_ADMIN over the job's
// namespaces stays dropped (TestUsernsStepsNeverHoldSysAdmin,
// TestBuilderStepsNeverHoldSysAdmin), and no step mounts straight in the
// job's mount namespace (TestBuilderRootStepCannotChangeJobsNamespaces);
// the runtime's mounts (/sys read-only, /etc/hosts, the
// init) are locked in every nested namespace: no step can take them off
// or remount them read-write (TestEscapesBuilder). Each relaxation:
//
//   - seccomp: the rules Docker's profile opens only with CAP_SYS_ADMIN, so
//     that the kernel, not the filter, decides by the namespace's owner:
//     unshare, setns, clone with namespace flags and clone3 (the nested
//     user namespace and a RUN step's namespaces), mount and umount (old
//     and new mount API: fsopen, fsconfig, fsmount, move_mount, open_tree,
//     fspick, mount_setattr), inside the nested namespaces, and
//     sethostname and setdomainname (a RUN step's uts namespace).
//     builderDenied closes the rest of that set again, which no builder
//     needs: bpf, perf_event_open, fanotify_init, lookup_dcookie,
//     quotactl, quotactl_fd, syslog and the lsm_* calls. The filter
//     holds in every nested namespace too (it is inherited).
//   - masked and read-only paths: a fresh procfs (a RUN step's, in
//     nested user and pid namespaces) may be mounted only where the
//     kernel sees the container's /proc fully visible, nothing mounted
//     over any of its files or non-empty directories (fs/namespace.c,
//     mnt_already_visible); a masked file or a read-only bind over
//     /proc/sys makes that mount EPERM. This /proc is the job's own pid namespace's, and
//     what the masks hide is guarded in a user namespace by the kernel
//     itself: /proc/kcore is host root's, 0400, and the job's root's
//     CAP_DAC_OVERRIDE does not reach a file whose owner its namespace
//     does not map (EACCES at open, before kcore's own CAP_SYS_RAWIO
//     check; escape battery, on a kernel with /proc/kcore such as
//     test-vm's Debian 6.1), /proc/keys lists only keys the range may
//     see, /proc/timer_list and /proc/sched_debug are host root's alone
//     (0400; the job's root is not host root), and /proc/acpi,
//     /proc/asound, /proc/scsi and /proc/interrupts are read-only
//     descriptions of the hardware that every user on the host reads.
//     /sys/firmware and powercap are host root's files, nobody's in the
//     range. Of the read-only paths, /proc/sys's host-wide files,
//     /proc/sysrq-trigger, /proc/irq, /proc/bus and /proc/fs belong to
//     host root, which the job's root is not: writes fail with EACCES
//     (escape battery: /proc/sys/kernel/domainname); what becomes
//     writable is the sysctls of namespaces the job owns (its network
//     namespace's net.*), as under rootless podman.
//
// Builder storage goes on a shared or locked cache volume (a plain
// directory, idmapped), never on the job's root or a private cache: an
// overlay's upper dir cannot sit on another overlay (the job's root, or a
// private volume, which is an overlay over the volume's data), and the
// private volume's outer overlay would read the builder's whiteouts (0:0
// character devices) as deletions of its own. The job file's parser
// refuses a building job's private cache at a builder's default storage
// path (jobs.checkBuilderCaches).
//
// A building container must have a user namespace (Spec.validate refuses
// it otherwise): without one the job's root is host root, and nested
// namespaces and mounts would be the host's.
var builderDenied = []string{
	"bpf",
	"fanotify_init",
	"lookup_dcookie",
	"lsm_get_self_attr",
	"lsm_list_modules",
	"lsm_set_self_attr",
	"perf_event_open",
	"quotactl",
	"quotactl_fd",
	"syslog",
}

// builderSeccomp is a building container's filter for spec: Docker's
// default as if its capabilities held CAP_SYS_ADMIN (they do not), less
// the system calls of builderDenied.
func builderSeccomp(spec *specs.Spec) (*specs.LinuxSeccomp, error) {
	caps := *spec.Process.Capabilities
	caps.Bounding = append(slices.Clone(caps.Bounding), "CAP_SYS_ADMIN")
	as := *spec
	proc := *spec.Process
	proc.Capabilities = &caps
	as.Process = &proc
	sc, err := seccomp.GetDefaultProfile(&as)
	if err != nil {
		return nil, fmt.Errorf("builder seccomp profile: %w", err)
	}
	rules := sc.Syscalls[:0]
	for _, r := range sc.Syscalls {
		if r.Action == specs.ActAllow {
			r.Names = slices.DeleteFunc(slices.Clone(r.Names), func(n string) bool { return slices.Contains(builderDenied, n) })
			if len(r.Names) == 0 {
				continue
			}
		}
		rules = append(rules, r)
	}
	sc.Syscalls = rules
	return sc, nil
}

// builderSysctls are the sysctls of a building container's own network
// namespace (one libcontainer makes: a job's network, Spec.NetNS, gets the
// same from package network, which makes it): Docker's defaults for every
// container, ports below 1024 for every user and ICMP echo sockets for
// every group the container maps (gids, the container's group mappings;
// the kernel refuses a range naming unmapped groups). A building job's
// root steps hold no capability over the job's network namespace (they
// are root of a nested user namespace: see the comment above), so
// without these they could not bind port 80 or ping.
func builderSysctls(gids []configs.IDMap) map[string]string {
	var top int64
	for _, m := range gids {
		top = max(top, m.ContainerID+m.Size-1)
	}
	return map[string]string{
		"net.ipv4.ip_unprivileged_port_start": "0",
		"net.ipv4.ping_group_range":           fmt.Sprintf("0 %d", top),
	}
}
