package sandbox

import (
	"fmt"
	"path"
	"regexp"
	"strings"
	"time"

	"github.com/jobrun/jobrun/internal/units"
)

// Spec describes one job's container.
type Spec struct {
	// ID names the container, its hostname and its cgroup. The caller
	// sanitises it once (letters, digits and "-", at most 63 characters,
	// not starting or ending with "-"); Start rejects anything else. It
	// must be unique on the host while the container lives.
	ID string
	// Hostname defaults to ID.
	Hostname string
	// Rootfs is the directory (a mounted snapshot) that becomes "/".
	Rootfs string
	// Workspace, if set, is bind-mounted read-write at /workspace.
	Workspace string
	// WorkspaceIDMap mounts Workspace idmapped through UserNS (a plain
	// host directory, owned by container ids on disk); without it, in
	// user-namespace mode, the workspace is one already built for the
	// range (an overlay whose upper the range owns). See Mount.IDMap.
	WorkspaceIDMap bool
	// Mounts are further bind mounts: cache volumes and the like.
	Mounts []Mount
	// Env is every step's base environment (the image's merged with the
	// job's), KEY=value. Process.Env overrides it key by key.
	Env []string
	// User is every step's default user: "uid[:gid]", "name[:group]", or
	// empty for root. Names are resolved from the rootfs's /etc/passwd
	// and /etc/group.
	User string
	// Cwd is every step's default working directory; it defaults to
	// /workspace if Workspace is set, else to "/".
	Cwd string
	// Resources are the cgroup limits; zero means unlimited.
	Resources Resources
	// Network is "none" (the default: a loopback device only) or "host".
	Network string
	// NetNS, if set, is the path of a network namespace (a bind-mounted
	// nsfs file) the container joins instead of making its own with a
	// loopback device: a job's bridge network, which its service
	// containers share. Network must be "none" then; whoever made the
	// namespace configures it, loopback included.
	NetNS string
	// Hosts are extra /etc/hosts lines, "address name...", after the
	// defaults: service names on a job's network.
	Hosts []string
	// ResolvConf, if set, is the container's /etc/resolv.conf; unset it
	// is empty ("none") or the host's ("host").
	ResolvConf string
	// ShmSize is the size limit of /dev/shm; zero means 64 MiB.
	ShmSize int64
	// StopGrace is how long a timed-out or cancelled step's processes get
	// between SIGTERM and SIGKILL; zero means 10 s.
	StopGrace time.Duration
	// Compat32 lets 32-bit binaries run: the seccomp filter then also
	// covers the compat system call tables (i386, x32), as Docker's does,
	// at about 15 ms more per process started. Off, the filter allows
	// the native architecture only and a 32-bit binary dies of SIGSYS.
	Compat32 bool
	// CACerts, if set, are PEM certificates the container trusts on top of
	// its image's: a bundle of the image's own system bundle and these is
	// mounted read-only over each of the image's bundle paths that holds
	// a file (Debian, Alpine, RHEL and openSUSE locations) and at
	// CABundlePath, and these alone at CAExtraPath. The image is read
	// inside its root only; see writeCABundle.
	CACerts []byte
	// CABundles are further paths of the image's own bundles, read
	// and covered like the distributions' (the files its environment
	// names in SSL_CERT_FILE and the like), so pointing those variables
	// at the new bundle loses none of its certificates.
	CABundles []string
	// UserNS, if set, is the path of the job's user namespace (an nsfs
	// bind mount, Namespaces.UserPath), which the container joins, with
	// the mapping it holds: root in the container is the first id of the
	// job's range on the host, never host root. Its other namespaces
	// (NetNS included, if set) must be owned by it. Steps may then gain
	// privileges by execve (no no_new_privs: sudo and set-uid binaries
	// work, up to the range's root). The rootfs must be built for the
	// range (image.Store.SnapshotFor). Empty: no user namespace, root is
	// host root (behind capabilities and seccomp) and no_new_privs is set.
	UserNS string
	// Privileged turns the isolation off: all capabilities, no seccomp
	// filter, no masked or read-only paths, all devices, and the host's
	// pid, ipc and uts namespaces. Tests use it as the positive control of
	// every escape probe; jobs must never get it.
	Privileged bool
	// Builder lets the container build images with rootless builders
	// (buildah, podman build) inside its user namespace: nested user
	// namespaces, and mounts in them, through the seccomp filter, and an
	// unmasked /proc; its capabilities stay, but its root steps run as
	// root of a user namespace of their own nested in the job's.
	// builder.go lists and justifies each. Needs UserNS.
	Builder bool

	caTargets []string // set by Start: where the CA bundle goes
}

// Mount is a bind mount into the container. Every bind mount is nosuid and
// nodev: a directory shared between jobs must not carry a set-uid binary
// or a device node from one job to the next.
type Mount struct {
	// Source is the host directory or file.
	Source string
	// Target is the absolute path in the container.
	Target string
	// ReadOnly mounts it read-only.
	ReadOnly bool
	// Options are extra mount options ("noexec", say).
	Options []string
	// Chown makes Source (recursively, without following symbolic links)
	// owned by the resolved Spec.User before the container starts, so a
	// non-root image user can write it: by the user's container ids if
	// there is no user namespace or with IDMap, by their host ids in the
	// job's range otherwise.
	Chown bool
	// IDMap mounts Source idmapped through Spec.UserNS (libcontainer's
	// "idmap" bind option): a plain host directory shared between jobs,
	// in no range (a shared cache volume), whose files a job's root reads
	// and writes as its own and which stays owned by container ids on
	// disk. Without it, in user-namespace mode, Source is one built for
	// the range (an overlay over idmapped lowers, upper owned by the
	// range). No effect without Spec.UserNS.
	IDMap bool
}

// Resources are a container's cgroup limits. Zero means unlimited.
type Resources struct {
	// CPUs is the CPU bandwidth in CPUs (CFS quota over a 100 ms period).
	CPUs float64
	// Memory is the memory limit in bytes; swap is limited to the same
	// total, so a job cannot spill into swap.
	Memory int64
	// Pids limits the number of processes and threads.
	Pids int64
}

const (
	defaultShmSize   = 64 << 20
	defaultStopGrace = 10 * time.Second
	// initPath is where the container's init, the launcher, is bound,
	// read-only: in the container's own /dev (a tmpfs), so that no job's
	// root filesystem gets a directory and a file made for it.
	initPath = "/dev/.jobrun/init"
	// workspacePath is where Spec.Workspace appears.
	workspacePath = "/workspace"
)

var idPattern = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$`)

// validate checks s and fills in its defaults.
func (s *Spec) validate() error {
	if !idPattern.MatchString(s.ID) {
		return fmt.Errorf("container id %q: want 1 to 63 letters, digits or \"-\", not starting or ending with \"-\"", s.ID)
	}
	if s.Hostname == "" {
		s.Hostname = s.ID
	}
	if !path.IsAbs(s.Rootfs) {
		return fmt.Errorf("container %s: rootfs %q is not an absolute path", s.ID, s.Rootfs)
	}
	if s.Workspace != "" && !path.IsAbs(s.Workspace) {
		return fmt.Errorf("container %s: workspace %q is not an absolute path", s.ID, s.Workspace)
	}
	for i, m := range s.Mounts {
		if !path.IsAbs(m.Source) || !path.IsAbs(m.Target) {
			return fmt.Errorf("container %s: mount %d (%s on %s): source and target must be absolute paths", s.ID, i, m.Source, m.Target)
		}
		if path.Clean(m.Target) == "/" {
			return fmt.Errorf("container %s: mount %d (%s): cannot mount on /", s.ID, i, m.Source)
		}
	}
	for _, e := range s.Env {
		if !strings.Contains(e, "=") {
			return fmt.Errorf("container %s: environment entry %q is not KEY=value", s.ID, e)
		}
	}
	switch s.Network {
	case "":
		s.Network = "none"
	case "none", "host":
	default:
		return fmt.Errorf("container %s: network %q: want \"none\" or \"host\"", s.ID, s.Network)
	}
	if s.UserNS != "" && !path.IsAbs(s.UserNS) {
		return fmt.Errorf("container %s: user namespace %q is not an absolute path", s.ID, s.UserNS)
	}
	if s.Builder && s.UserNS == "" {
		return fmt.Errorf("container %s: builds images (builds_images) only in a user namespace; this runner has none (userns = \"off\" or rootless)", s.ID)
	}
	if s.UserNS != "" && s.Privileged {
		return fmt.Errorf("container %s: a privileged container cannot have a user namespace", s.ID)
	}
	if s.NetNS != "" && (s.Network != "none" || !path.IsAbs(s.NetNS)) {
		return fmt.Errorf("container %s: network namespace %q: want an absolute path, with network \"none\"", s.ID, s.NetNS)
	}
	for _, h := range s.Hosts {
		if len(strings.Fields(h)) < 2 || strings.ContainsAny(h, "\n#") {
			return fmt.Errorf("container %s: hosts line %q: want \"address name...\"", s.ID, h)
		}
	}
	if s.Cwd == "" {
		s.Cwd = "/"
		if s.Workspace != "" {
			s.Cwd = workspacePath
		}
	}
	if !path.IsAbs(s.Cwd) {
		return fmt.Errorf("container %s: working directory %q is not an absolute path", s.ID, s.Cwd)
	}
	r := s.Resources
	if r.CPUs < 0 || r.Memory < 0 || r.Pids < 0 {
		return fmt.Errorf("container %s: negative resource limit (cpus %g, memory %d, pids %d)", s.ID, r.CPUs, r.Memory, r.Pids)
	}
	if r.Memory > 0 && r.Memory < 6<<20 {
		return fmt.Errorf("container %s: memory limit %s is below the minimum of 6 MiB", s.ID, units.FormatSize(r.Memory))
	}
	if s.ShmSize == 0 {
		s.ShmSize = defaultShmSize
	}
	if s.ShmSize < 0 {
		return fmt.Errorf("container %s: negative /dev/shm size %d", s.ID, s.ShmSize)
	}
	if s.StopGrace == 0 {
		s.StopGrace = defaultStopGrace
	}
	return nil
}

// cgroupPath is the container's cgroup in every hierarchy: a direct child
// of parent (the Runtime's cgroupBase: the root, or the agent's delegated
// cgroup v2 subtree), so creating it leaves no parent behind, and its name
// marks it as jobrun's for humans and for the leak checker.
func cgroupPath(parent, id string) string {
	return path.Join(parent, "jobrun-"+id)
}
