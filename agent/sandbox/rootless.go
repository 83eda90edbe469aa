package sandbox

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/runc/libcontainer/configs"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/jobrun/jobrun/internal/rootless"
	"github.com/jobrun/jobrun/internal/rundir"
)

// Rootless mode: the Runtime runs as root of a user namespace that an
// unprivileged `jobrun local` made (internal/rootless, issue #18). The
// containers are made as today, inside that namespace, with what only the
// host's root may do left out:
//
//   - cgroups only in a delegated cgroup v2 subtree (rootless_cgroup.go);
//     without one (always on cgroup v1) the user cannot make any, so a
//     job's CPU, memory and pids limits are not enforced
//     (Runtime.RootlessLimits says why, for the summary), and libcontainer
//     runs with RootlessCgroups, which ignores the cgroups it cannot make;
//   - without a cgroup, a job's processes are found by their pid namespace
//     (pidnsGroup); every job has its own, so killing its init still kills
//     all of them, at a timeout and at Ctrl-C alike;
//   - the runtime state goes under $XDG_RUNTIME_DIR/jobrun (the parent
//     process makes it a private dir under /tmp where that is unset).

// rootlessRunDir is RunDir in rootless mode: below $XDG_RUNTIME_DIR/jobrun,
// which must be the user's alone.
func rootlessRunDir(stateDir string) (string, bool, error) {
	if !rootless.InUserNS() {
		return "", false, nil
	}
	base := os.Getenv("XDG_RUNTIME_DIR")
	if !filepath.IsAbs(base) {
		return "", true, errors.New("sandbox runtime dir: XDG_RUNTIME_DIR is not set (jobrun without root sets it)")
	}
	top := filepath.Join(base, "jobrun")
	if err := privateDir(top); err != nil {
		return "", true, err
	}
	return rundir.Path(top, stateDir), true, nil
}

// rootlessSpec takes out of spec what a user namespace's root cannot have.
// In a delegated cgroup (rootless_cgroup.go): the limits whose controller
// it lacks. Elsewhere: the cgroup and its limits, and the cgroup file
// system (the job has no cgroup of its own to see). The cgroup namespace
// stays: it is the user's, so `nsenter --all` (--keep) can enter it.
func (rc rootlessCgroups) rootlessSpec(spec *specs.Spec) {
	if rc.base != "" {
		rc.rootlessResources(spec.Linux.Resources)
		return
	}
	spec.Mounts = slices.DeleteFunc(spec.Mounts, func(m specs.Mount) bool { return m.Destination == "/sys/fs/cgroup" })
	spec.Linux.CgroupsPath = ""
	spec.Linux.Resources = &specs.LinuxResources{}
	unmappedOwners(spec)
}

// unmappedOwners takes the uid= and gid= options off the mounts (devpts's
// gid=5) whose id the user's namespace does not map: with only the
// user's own uid mapped (own-uid mode), the kernel refuses them with
// EINVAL. The files are then the namespace's root's, as in rootless
// podman.
func unmappedOwners(spec *specs.Spec) {
	n, err := rootless.MappedIDs()
	if err != nil || n == 0 {
		return
	}
	for i := range spec.Mounts {
		spec.Mounts[i].Options = slices.DeleteFunc(spec.Mounts[i].Options, func(o string) bool {
			k, v, ok := strings.Cut(o, "=")
			if !ok || (k != "uid" && k != "gid") {
				return false
			}
			id, err := strconv.ParseUint(v, 10, 32)
			return err != nil || id >= uint64(n)
		})
	}
}

// rootlessConfig makes libcontainer ignore the cgroups it cannot make (the
// device rules stay: they keep cfg.Cgroups.Resources non-empty on its way
// to the starter, and libcontainer ignores the devices cgroup's errors
// when rootless).
func rootlessConfig(cfg *configs.Config) {
	cfg.RootlessCgroups = true
	cfg.Cgroups.Rootless = true
}

// pidnsGroup stands in for a container's cgroup in rootless mode: its
// processes are those in the pid namespace of its init. It cannot freeze,
// limit or account; a process is signalled by pid right after it is seen
// in the namespace.
type pidnsGroup struct {
	c  *Container
	mu sync.Mutex
	ns string // the init's /proc/PID/ns/pid link, once read
}

var _ cgroups.Manager = (*pidnsGroup)(nil)

// namespace returns the pid namespace of the container's init, or "" if
// it never ran or is gone before it was read.
func (g *pidnsGroup) namespace() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.ns == "" && g.c.initPid > 0 {
		g.ns, _ = os.Readlink(filepath.Join("/proc", strconv.Itoa(g.c.initPid), "ns", "pid"))
	}
	return g.ns
}

// GetAllPids lists the processes in the container's pid namespace.
func (g *pidnsGroup) GetAllPids() ([]int, error) {
	ns := g.namespace()
	if ns == "" {
		return nil, nil
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("list processes: %w", err)
	}
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if l, err := os.Readlink(filepath.Join("/proc", e.Name(), "ns", "pid")); err == nil && l == ns {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// GetPids is GetAllPids: the namespace has no sub-groups.
func (g *pidnsGroup) GetPids() ([]int, error) { return g.GetAllPids() }

// Exists reports whether a process is left in the namespace.
func (g *pidnsGroup) Exists() bool {
	pids, err := g.GetAllPids()
	return err == nil && len(pids) > 0
}

// Freeze does nothing: there is no freezer without a cgroup.
func (g *pidnsGroup) Freeze(cgroups.FreezerState) error { return nil }

// GetFreezerState is always thawed.
func (g *pidnsGroup) GetFreezerState() (cgroups.FreezerState, error) { return cgroups.Thawed, nil }

// GetStats is empty: nothing accounts a namespace's use.
func (g *pidnsGroup) GetStats() (*cgroups.Stats, error) { return cgroups.NewStats(), nil }

// Stats is GetStats.
func (g *pidnsGroup) Stats(*cgroups.StatsOptions) (*cgroups.Stats, error) { return g.GetStats() }

// OOMKillCount is 0: without a memory cgroup there is no job OOM kill.
func (g *pidnsGroup) OOMKillCount() (uint64, error) { return 0, nil }

// Apply, AddPid, Set and Destroy do nothing: there is no cgroup.
func (g *pidnsGroup) Apply(int) error                      { return nil }
func (g *pidnsGroup) AddPid(string, int) error             { return nil }
func (g *pidnsGroup) Set(*cgroups.Resources) error         { return nil }
func (g *pidnsGroup) Destroy() error                       { return nil }
func (g *pidnsGroup) Path(string) string                   { return "" }
func (g *pidnsGroup) GetPaths() map[string]string          { return map[string]string{} }
func (g *pidnsGroup) GetCgroups() (*cgroups.Cgroup, error) { return &cgroups.Cgroup{}, nil }
