package sandbox

import (
	"fmt"
	"slices"

	"github.com/moby/profiles/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// A building container (Spec.Builder) runs rootless image builders
// (buildah, podman build) as the root of its own user namespace. Side by
// side with a default container in a user namespace:
//
//	                  default                    building
//	capabilities      defaultCaps                defaultCaps + CAP_SYS_ADMIN
//	seccomp           Docker's default           Docker's default with
//	                                             CAP_SYS_ADMIN, less
//	                                             builderDenied
//	masked paths      maskedPaths                none
//	read-only paths   readonlyPaths              readonlyPaths
//	no_new_privs      off (on with userns off)   off
//
// Each relaxation and the builder step that needs it:
//
//   - CAP_SYS_ADMIN: buildah running as root (the job's) does not take its
//     rootless path; it mounts the layers of its overlay storage, the
//     bind mounts of a RUN step and the RUN step's own /proc, /sys and
//     /dev itself, and unshares mount, pid, uts and ipc namespaces for
//     the step (buildah --isolation chroot). The capability is held in the
//     job's user namespace only: it covers the namespaces that namespace
//     owns (the job's mount, pid, uts, ipc, cgroup and network ones) and
//     nothing owned by the host's; a kernel check against the initial
//     namespace (loading modules, raw I/O, host sysctls, devices, the
//     host's mounts) still fails.
//   - seccomp: the rules Docker's profile opens with CAP_SYS_ADMIN are
//     mount and umount (old and new mount API: fsopen, fsconfig, fsmount,
//     move_mount, open_tree, fspick, mount_setattr), unshare, setns, clone
//     with namespace flags and clone3 (namespaces for a RUN step, nested
//     user namespaces for podman's rootless mode), sethostname and
//     setdomainname (the RUN step's uts namespace). builderDenied closes
//     the rest of that set again, which no builder needs: bpf,
//     perf_event_open, fanotify_init, lookup_dcookie, quotactl,
//     quotactl_fd, syslog and the lsm_* calls.
//   - masked paths: a fresh procfs (the RUN step's) may be mounted only
//     where the kernel sees the container's /proc fully visible, with
//     nothing mounted over any of its files (fs/namespace.c,
//     mnt_already_visible); a masked /proc makes that mount EPERM. The
//     /proc is the job's own pid namespace's, and what the masks hide is
//     guarded in a user namespace by the kernel itself: /proc/kcore needs
//     CAP_SYS_RAWIO in the host's namespace, /proc/keys lists only keys
//     the range may see, /proc/timer_list and /proc/sched_debug are root
//     only on this kernel (0400) and host root is not the job's root, and
//     /proc/acpi, /proc/asound, /proc/scsi and /proc/interrupts are
//     read-only descriptions of the hardware (0444 on the host for every
//     user). /sys/firmware and powercap are root-only files of the host's
//     root, nobody's in the range. The read-only paths stay, but with
//     CAP_SYS_ADMIN over its own mount namespace the job may remount
//     them: /proc/sys's host-wide files and /proc/sysrq-trigger belong to
//     host root, which the job's root is not (EACCES, escape battery).
//
// A building container must have a user namespace (Spec.validate refuses it
// otherwise): without one, CAP_SYS_ADMIN is the host's.
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

// builderCaps is a building container's capability set.
func builderCaps() []string {
	return append(slices.Clone(defaultCaps), "CAP_SYS_ADMIN")
}

// builderSeccomp is a building container's filter for spec (whose
// capabilities are builderCaps): Docker's default with CAP_SYS_ADMIN,
// less the system calls of builderDenied.
func builderSeccomp(spec *specs.Spec) (*specs.LinuxSeccomp, error) {
	sc, err := seccomp.GetDefaultProfile(spec)
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
