package sandbox

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/moby/profiles/seccomp"
	"github.com/moby/sys/capability"
	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/cgroups/devices/config"
	"github.com/opencontainers/runc/libcontainer/configs"
	"github.com/opencontainers/runc/libcontainer/specconv"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// defaultCaps is Docker's default capability set without CAP_NET_RAW: a
// build has no need to forge packets, and dropping it closes a class of
// network attacks on the host's neighbours.
var defaultCaps = []string{
	"CAP_CHOWN",
	"CAP_DAC_OVERRIDE",
	"CAP_FSETID",
	"CAP_FOWNER",
	"CAP_MKNOD",
	"CAP_SETGID",
	"CAP_SETUID",
	"CAP_SETFCAP",
	"CAP_SETPCAP",
	"CAP_NET_BIND_SERVICE",
	"CAP_SYS_CHROOT",
	"CAP_KILL",
	"CAP_AUDIT_WRITE",
}

// maskedPaths and readonlyPaths are Docker's: kernel interfaces that leak
// host information or change host state.
var (
	maskedPaths = []string{
		"/proc/acpi",
		"/proc/asound",
		"/proc/interrupts",
		"/proc/kcore",
		"/proc/keys",
		"/proc/latency_stats",
		"/proc/sched_debug",
		"/proc/scsi",
		"/proc/timer_list",
		"/proc/timer_stats",
		"/sys/devices/virtual/powercap",
		"/sys/firmware",
	}
	readonlyPaths = []string{
		"/proc/bus",
		"/proc/fs",
		"/proc/irq",
		"/proc/sys",
		"/proc/sysrq-trigger",
	}
)

// allCaps lists every capability in this process's bounding set, for
// Privileged: a container cannot get more than its creator holds.
func allCaps() ([]string, error) {
	self, err := capability.NewPid2(0)
	if err == nil {
		err = self.Load()
	}
	if err != nil {
		return nil, fmt.Errorf("read own capabilities: %w", err)
	}
	list, err := capability.ListSupported()
	if err != nil {
		return nil, fmt.Errorf("list capabilities: %w", err)
	}
	var caps []string
	for _, c := range list {
		if self.Get(capability.BOUNDING, c) {
			caps = append(caps, "CAP_"+strings.ToUpper(c.String()))
		}
	}
	return caps, nil
}

// swapAccounting reports whether the memory cgroup can limit swap: always
// on cgroup v2, only with swap accounting on v1.
func swapAccounting() bool {
	if cgroups.IsCgroup2UnifiedMode() {
		return true
	}
	_, err := os.Stat("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes")
	return err == nil
}

// ociSpec builds the OCI runtime spec of the container. files holds the
// per-container /etc files (hosts, hostname, resolv.conf); cgroupParent
// is the cgroup the container's goes under (cgroupPath); initBin is the
// host path of the launcher, the container's static init.
func ociSpec(s *Spec, cgroupParent, files, initBin string) (*specs.Spec, error) {
	caps := defaultCaps
	if s.Privileged {
		var err error
		if caps, err = allCaps(); err != nil {
			return nil, err
		}
	}
	bindOpts := func(ro bool, extra ...string) []string {
		o := []string{"rbind", "nosuid", "nodev"}
		if ro {
			o = append(o, "ro")
		}
		return append(o, extra...)
	}
	// idmapped binds a plain host directory shared between jobs through
	// the joined user namespace (libcontainer takes its mapping).
	idmapped := func(opts []string, idmap bool) []string {
		if idmap && s.UserNS != "" {
			return append(opts, "idmap")
		}
		return opts
	}
	mounts := []specs.Mount{
		{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
		{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
		{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", fmt.Sprintf("size=%d", s.ShmSize)}},
		{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
	}
	sysRO := "ro"
	if s.Privileged {
		sysRO = "rw"
	}
	if s.Network == "host" {
		// A sysfs instance belongs to a network namespace; without one
		// of our own, bind the host's, as Docker does.
		mounts = append(mounts, specs.Mount{Destination: "/sys", Type: "bind", Source: "/sys", Options: []string{"rbind", "nosuid", "noexec", "nodev", sysRO}})
	} else {
		mounts = append(mounts, specs.Mount{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", sysRO}})
	}
	mounts = append(mounts,
		specs.Mount{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: []string{"nosuid", "noexec", "nodev", "relatime", sysRO}},
		specs.Mount{Destination: initPath, Type: "bind", Source: initBin, Options: bindOpts(true)},
		specs.Mount{Destination: "/etc/hosts", Type: "bind", Source: filepath.Join(files, "hosts"), Options: bindOpts(false, "noexec")},
		specs.Mount{Destination: "/etc/hostname", Type: "bind", Source: filepath.Join(files, "hostname"), Options: bindOpts(false, "noexec")},
		specs.Mount{Destination: "/etc/resolv.conf", Type: "bind", Source: filepath.Join(files, "resolv.conf"), Options: bindOpts(false, "noexec")},
	)
	if s.Workspace != "" {
		mounts = append(mounts, specs.Mount{Destination: workspacePath, Type: "bind", Source: s.Workspace, Options: idmapped(bindOpts(false), s.WorkspaceIDMap)})
	}
	if len(s.CACerts) > 0 {
		ca := filepath.Join(files, caBundleFile)
		for _, t := range append([]string{CABundlePath}, s.caTargets...) {
			mounts = append(mounts, specs.Mount{Destination: t, Type: "bind", Source: ca, Options: bindOpts(true, "noexec")})
		}
		mounts = append(mounts, specs.Mount{Destination: CAExtraPath, Type: "bind", Source: filepath.Join(files, caExtraFile), Options: bindOpts(true, "noexec")})
	}
	for _, m := range s.Mounts {
		mounts = append(mounts, specs.Mount{Destination: m.Target, Type: "bind", Source: m.Source, Options: idmapped(bindOpts(m.ReadOnly, m.Options...), m.IDMap)})
	}

	ns := []specs.LinuxNamespace{{Type: specs.MountNamespace}, {Type: specs.CgroupNamespace}}
	if !s.Privileged {
		ns = append(ns, specs.LinuxNamespace{Type: specs.PIDNamespace},
			specs.LinuxNamespace{Type: specs.IPCNamespace},
			specs.LinuxNamespace{Type: specs.UTSNamespace})
	}
	if s.Network != "host" {
		// With a Path libcontainer joins that namespace; without, it
		// makes one and brings its loopback device up.
		ns = append(ns, specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: s.NetNS})
	}
	if s.UserNS != "" {
		// Joined by path: libcontainer reads the mapping from the
		// namespace (no UIDMappings here, it would refuse a mismatch)
		// and makes the other namespaces inside it, so they are owned
		// by it.
		ns = append(ns, specs.LinuxNamespace{Type: specs.UserNamespace, Path: s.UserNS})
	}

	spec := &specs.Spec{
		Version: specs.Version,
		Root:    &specs.Root{Path: s.Rootfs},
		Process: &specs.Process{
			// specconv takes only the security settings from here; the
			// processes themselves are built in Start and Exec.
			Capabilities: &specs.LinuxCapabilities{
				Bounding:  caps,
				Effective: caps,
				Permitted: caps,
			},
			// In a user namespace execve may raise a step to the
			// range's root (sudo, set-uid binaries), never further.
			NoNewPrivileges: !s.Privileged && s.UserNS == "",
		},
		Mounts: mounts,
		Linux: &specs.Linux{
			CgroupsPath: cgroupPath(cgroupParent, s.ID),
			Namespaces:  ns,
			Resources:   resources(s),
		},
	}
	if !s.Privileged {
		spec.Hostname = s.Hostname
		getProfile := seccomp.GetDefaultProfile
		if s.Builder {
			getProfile = builderSeccomp // no masks: see builder.go
		} else {
			spec.Linux.MaskedPaths = maskedPaths
			spec.Linux.ReadonlyPaths = readonlyPaths
		}
		sc, err := getProfile(spec)
		if err != nil {
			return nil, fmt.Errorf("container %s: seccomp profile: %w", s.ID, err)
		}
		if !s.Compat32 {
			// Only the native system call table: libseccomp is then
			// about 15 ms faster per process, and the 32-bit compat
			// entry points (a frequent home of kernel bugs) are
			// closed; a 32-bit binary dies of SIGSYS.
			sc.Architectures = sc.Architectures[:min(1, len(sc.Architectures))]
		}
		spec.Linux.Seccomp = sc
	}
	return spec, nil
}

func resources(s *Spec) *specs.LinuxResources {
	r := &specs.LinuxResources{}
	if s.Privileged {
		r.Devices = []specs.LinuxDeviceCgroup{{Allow: true, Access: "rwm"}}
	}
	if s.Resources.CPUs > 0 {
		period := uint64(100_000)
		quota := int64(s.Resources.CPUs * float64(period))
		r.CPU = &specs.LinuxCPU{Period: &period, Quota: &quota}
	}
	if m := s.Resources.Memory; m > 0 {
		r.Memory = &specs.LinuxMemory{Limit: &m}
		if swapAccounting() {
			swap := m
			r.Memory.Swap = &swap
		}
	}
	if p := s.Resources.Pids; p > 0 {
		r.Pids = &specs.LinuxPids{Limit: &p}
	}
	return r
}

// libcontainerConfig converts spec and tightens what specconv leaves open.
func libcontainerConfig(s *Spec, spec *specs.Spec) (*configs.Config, error) {
	cfg, err := specconv.CreateLibcontainerConfig(&specconv.CreateOpts{
		CgroupName:   s.ID,
		NoNewKeyring: false,
		Spec:         spec,
	})
	if err != nil {
		return nil, fmt.Errorf("container %s: convert runtime spec: %w", s.ID, err)
	}
	// The init dies with the thread that started it, so a killed agent
	// never leaves a job running.
	cfg.ParentDeathSignal = int(unix.SIGKILL)
	if s.Builder && s.Network != "host" && s.NetNS == "" {
		cfg.Sysctl = builderSysctls(cfg.GIDMappings)
	}
	if !s.Privileged {
		// specconv allows mknod of any block device; a job needs none,
		// and with the rule gone the devices cgroup refuses mknod of
		// one with EPERM even though CAP_MKNOD is held.
		cfg.Cgroups.Resources.Devices = slices.DeleteFunc(cfg.Cgroups.Resources.Devices, func(r *config.Rule) bool {
			return r.Type == config.BlockDevice && r.Allow
		})
	}
	return cfg, nil
}
