package sandbox

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/opencontainers/cgroups"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Limits without root (issue #18). A user may make cgroups only where
// someone with the right gave them a subtree: on cgroup v2, a cgroup whose
// directory, cgroup.procs and cgroup.subtree_control are theirs, as
// systemd's user manager makes for a unit with Delegate=yes
// (`systemd-run --user --scope -p Delegate=yes jobrun local`), or as an
// administrator makes by chown. jobrun without root is root of a user
// namespace mapped from the user's uid, so those files are its own there.
//
// When jobrun's cgroup is such a subtree and holds no process but
// jobrun's (the parent outside the namespace and this child), the Runtime
// does what it does in an agent's unit with Delegate=yes (cgroupbase.go):
// it moves those processes into the supervisor leaf, enables the
// controllers for children and makes each job's cgroup beside the leaf,
// through libcontainer's cgroup v2 manager (rootless, which ignores only
// the device filter it cannot attach). Limits, OOM reports, CPU and peak
// memory then work as with root, and a job's processes are killed through
// its cgroup (frozen, then SIGKILL). A controller the subtree lacks only
// leaves its limit unenforced.
//
// Elsewhere (cgroup v1, a cgroup not delegated, one shared with other
// processes) jobs get no cgroup: the pid namespace stands in for it
// (pidnsGroup) and the summary says per job which limits were not
// enforced and why.

// limitControllers maps the job limits the summary names to the cgroup v2
// controller each needs.
var limitControllers = []struct{ limit, controller string }{
	{"cpus", "cpu"}, {"memory", "memory"}, {"pids", "pids"},
}

// rootlessCgroups is what a Runtime without root found it may do with
// cgroups.
type rootlessCgroups struct {
	// base is the delegated cgroup (a path from the hierarchy's root)
	// jobs' cgroups go under, "" when jobs get none.
	base string
	// unenforced says, per limit ("cpus", "memory", "pids"), why it is
	// not enforced; empty when all are.
	unenforced map[string]string
}

// notDelegatedHint is what a user does to get limits.
const notDelegatedHint = "run under systemd-run --user --scope -p Delegate=yes"

// probeRootlessCgroups decides, without changing anything, whether the
// cgroup v2 hierarchy mounted at mnt lets this user's jobs have cgroups
// under own (this process's cgroup, from /proc/self/cgroup), which holds
// no process but those in ours. uid is this process's effective uid.
// It returns the delegated cgroup, or "" and why not; and, for a
// delegated one, why each limit whose controller it lacks is not
// enforced.
func probeRootlessCgroups(mnt, own string, uid int, ours []int) (base string, unenforced map[string]string, why string) {
	if path.Base(own) == supervisorLeaf {
		// Another Runtime of this process moved it already.
		own = path.Dir(own)
	}
	dir := filepath.Join(mnt, own)
	for _, f := range []string{"", "cgroup.procs", "cgroup.subtree_control"} {
		if err := ownedWritable(filepath.Join(dir, f), uid); err != nil {
			return "", nil, fmt.Sprintf("cgroup v2 is mounted but %s is not delegated to you (%v; %s)", dir, err, notDelegatedHint)
		}
	}
	procs, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		return "", nil, fmt.Sprintf("cgroup v2: cannot read the processes of your cgroup %s: %v", dir, err)
	}
	for _, p := range strings.Fields(string(procs)) {
		if n, err := strconv.Atoi(p); err != nil || !slices.Contains(ours, n) {
			return "", nil, fmt.Sprintf("cgroup v2: your cgroup %s is delegated but holds processes other than jobrun's (process %s), which jobrun will not move (%s: a cgroup of jobrun's own)", dir, p, notDelegatedHint)
		}
	}
	missing, _, err := missingControllers(dir)
	if err != nil {
		return "", nil, fmt.Sprintf("cgroup v2: your cgroup %s: %v", dir, err)
	}
	unenforced = map[string]string{}
	for _, lc := range limitControllers {
		if slices.Contains(missing, lc.controller) {
			unenforced[lc.limit] = fmt.Sprintf("the %s controller is not delegated to your cgroup %s (with systemd, user@.service's Delegate= must name it: systemctl edit user@.service)", lc.controller, dir)
		}
	}
	return own, unenforced, ""
}

// ownedWritable says why the file p is not one the user uid may write as
// its owner, or nil.
func ownedWritable(p string, uid int) error {
	fi, err := os.Stat(p)
	if err != nil {
		return err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fmt.Errorf("%s: no owner", p)
	}
	name := filepath.Base(p)
	if fi.IsDir() {
		name = "the directory"
	}
	if int(st.Uid) != uid {
		return fmt.Errorf("%s is owned by another user", name)
	}
	if fi.Mode().Perm()&0o200 == 0 {
		return fmt.Errorf("%s is not writable", name)
	}
	return nil
}

// rootlessCgroupBase is cgroupBase without root: it probes this process's
// cgroup and, when it is delegated, moves jobrun's processes into the
// supervisor leaf and enables the controllers for children. A failure
// there is an error; a cgroup that is not delegated is not (the jobs run
// without cgroups, and the result says why).
func rootlessCgroupBase() (rootlessCgroups, error) {
	none := func(why string) (rootlessCgroups, error) {
		u := map[string]string{}
		for _, lc := range limitControllers {
			u[lc.limit] = why
		}
		return rootlessCgroups{unenforced: u}, nil
	}
	if !cgroups.IsCgroup2UnifiedMode() {
		return none("jobrun runs without root on cgroup v1, which cannot delegate cgroups to a user (limits need cgroup v2 with a delegated subtree)")
	}
	own, err := ownUnifiedCgroup()
	if err != nil {
		return rootlessCgroups{}, err
	}
	base, unenforced, why := probeRootlessCgroups(unifiedMount, own, os.Geteuid(), []int{os.Getpid(), os.Getppid()})
	if why != "" {
		return none(why)
	}
	dir := filepath.Join(unifiedMount, base)
	leaf := filepath.Join(dir, supervisorLeaf)
	if err := os.Mkdir(leaf, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return rootlessCgroups{}, fmt.Errorf("cgroup v2 delegation of %s: make jobrun's leaf: %w", base, err)
	}
	if err := moveAll(dir, leaf); err != nil {
		return rootlessCgroups{}, fmt.Errorf("cgroup v2 delegation of %s: %w", base, err)
	}
	_, avail, err := missingControllers(dir)
	if err != nil {
		return rootlessCgroups{}, fmt.Errorf("cgroup v2 delegation of %s: %w", base, err)
	}
	ctl := filepath.Join(dir, "cgroup.subtree_control")
	for _, c := range avail {
		if err := os.WriteFile(ctl, []byte("+"+c), 0); err != nil {
			for _, lc := range limitControllers {
				if lc.controller == c {
					unenforced[lc.limit] = fmt.Sprintf("enabling the %s controller in %s failed: %v", c, ctl, err)
				}
			}
		}
	}
	return rootlessCgroups{base: base, unenforced: unenforced}, nil
}

// rootlessResources takes out of r the limits whose controller the
// delegated cgroup lacks (libcontainer would fail to write their files).
func (rc rootlessCgroups) rootlessResources(r *specs.LinuxResources) {
	if r == nil {
		return
	}
	if _, ok := rc.unenforced["cpus"]; ok {
		r.CPU = nil
	}
	if _, ok := rc.unenforced["memory"]; ok {
		r.Memory = nil
	}
	if _, ok := rc.unenforced["pids"]; ok {
		r.Pids = nil
	}
}

// RootlessLimits says, for a Runtime without root, which job limits
// ("cpus", "memory", "pids") it does not enforce and why, and whether jobs
// have cgroups at all (then CPU and peak memory are measured). With root
// every limit is enforced.
func (rt *Runtime) RootlessLimits() (unenforced map[string]string, measured bool) {
	if !rt.rootless {
		return nil, true
	}
	return rt.rlCgroups.unenforced, rt.rlCgroups.base != ""
}
