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

	"github.com/hashicorp/go-hclog"
	"github.com/opencontainers/cgroups"
	"golang.org/x/sys/unix"
)

// Where jobs' cgroups go.
//
// On cgroup v1, and on a cgroup v2 host where this process is in the
// hierarchy's real root (no systemd: a plain VM, a container host of old),
// every container's cgroup is /jobrun-<id>, a child of the root.
//
// On a cgroup v2 host with systemd the agent runs in its unit's cgroup
// (Delegate=yes hands that subtree to it), and v2 allows processes only in
// leaves once controllers are enabled for children ("no internal
// processes"). So the Runtime moves the processes of its own cgroup into a
// leaf beside the jobs, supervisorLeaf, enables the controllers jobs need
// in its cgroup's cgroup.subtree_control, and makes each job's cgroup
// there: /system.slice/jobrun-agent.service/{supervisor,jobrun-<id>}.
// `systemctl stop` then kills the jobs with the agent, and limits work
// because the unit's cgroup delegates the controllers. The same holds in a
// cgroup namespace whose root is not the hierarchy's (a container with its
// own cgroupns): its root is not exempt from the rule either.

// supervisorLeaf is the leaf cgroup the agent's processes move into on a
// delegated cgroup v2 subtree. Its name lacks "jobrun": the leak checker
// looks for jobs' cgroups, and this one lives as long as the agent's unit.
const supervisorLeaf = "supervisor"

// unifiedMount is where the cgroup v2 hierarchy is mounted.
const unifiedMount = "/sys/fs/cgroup"

// jobControllers are the controllers a job's limits and stats use; they
// must be enabled for the jobs' parent cgroup. Others (io, cpuset,
// hugetlb) are enabled when available, without complaint.
var jobControllers = []string{"cpu", "memory", "pids"}

// cgroupBase returns the cgroup under which this process's jobs' cgroups
// go, as a path from the hierarchy's root ("/" for the root), moving this
// process's cgroup's processes into a leaf first where cgroup v2 needs it.
func cgroupBase(log hclog.Logger) (string, error) {
	if !cgroups.IsCgroup2UnifiedMode() {
		return "/", nil
	}
	own, err := ownUnifiedCgroup()
	if err != nil {
		return "", err
	}
	return delegate(unifiedMount, own, log)
}

// ownUnifiedCgroup returns this process's cgroup v2 path from
// /proc/self/cgroup (the "0::PATH" line).
func ownUnifiedCgroup() (string, error) {
	m, err := cgroups.ParseCgroupFile("/proc/self/cgroup")
	if err != nil {
		return "", fmt.Errorf("find own cgroup: %w", err)
	}
	own, ok := m[""]
	if !ok || !strings.HasPrefix(own, "/") {
		return "", fmt.Errorf("find own cgroup: no cgroup v2 entry in /proc/self/cgroup")
	}
	return own, nil
}

// delegate makes the v2 cgroup own (a path under mnt) ready to hold jobs'
// cgroups and returns it, or "/" when own is the hierarchy's real root.
// A process already in the supervisor leaf (another Runtime of this
// process, a restarted agent) uses the leaf's parent.
func delegate(mnt, own string, log hclog.Logger) (string, error) {
	if path.Base(own) == supervisorLeaf {
		return path.Dir(own), nil
	}
	dir := filepath.Join(mnt, own)
	if own == "/" {
		// Only non-root cgroups have cgroup.type: without it this is
		// the real root, where processes and children may mix. With
		// it, a cgroup namespace's root, which obeys the rule.
		if _, err := os.Stat(filepath.Join(dir, "cgroup.type")); errors.Is(err, os.ErrNotExist) {
			return "/", nil
		}
	}
	if missing, avail, err := missingControllers(dir); err != nil {
		return "", fmt.Errorf("cgroup v2 delegation of %s: %w", own, err)
	} else if len(missing) > 0 {
		// Not delegated (a login session's scope under sudo): jobs go
		// to the root as on a host without systemd, where root may
		// still set their limits.
		log.Warn("cgroup controllers not delegated to the agent's cgroup; jobs' cgroups go to the hierarchy's root (with systemd: Delegate=yes in the unit)",
			"cgroup", own, "missing", strings.Join(missing, ","), "available", strings.Join(avail, ","))
		return "/", nil
	}
	leaf := filepath.Join(dir, supervisorLeaf)
	if err := os.Mkdir(leaf, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return "", fmt.Errorf("cgroup v2 delegation: make the agent's leaf: %w", err)
	}
	if err := moveAll(dir, leaf); err != nil {
		return "", fmt.Errorf("cgroup v2 delegation of %s: %w", own, err)
	}
	if err := enableControllers(dir); err != nil {
		return "", fmt.Errorf("cgroup v2 delegation of %s: %w", own, err)
	}
	log.Debug("jobs' cgroups go beside the agent's leaf", "parent", own, "leaf", path.Join(own, supervisorLeaf))
	return own, nil
}

// moveAll moves every process of the cgroup dir into leaf, until none is
// left (a process may fork while the list is read).
func moveAll(dir, leaf string) error {
	procs := filepath.Join(leaf, "cgroup.procs")
	for range 100 {
		b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
		if err != nil {
			return fmt.Errorf("list processes: %w", err)
		}
		pids := strings.Fields(string(b))
		if len(pids) == 0 {
			return nil
		}
		for _, p := range pids {
			if _, err := strconv.Atoi(p); err != nil {
				return fmt.Errorf("list processes: bad pid %q in %s", p, dir)
			}
			// A process that exited meanwhile is ESRCH: not ours to mind.
			if err := os.WriteFile(procs, []byte(p), 0); err != nil && !errors.Is(err, os.ErrNotExist) && !isESRCH(err) {
				return fmt.Errorf("move process %s into %s: %w", p, leaf, err)
			}
		}
	}
	return fmt.Errorf("processes keep appearing in %s", dir)
}

// missingControllers returns which of jobControllers the cgroup dir's
// parent did not give it, and those it has.
func missingControllers(dir string) (missing, avail []string, err error) {
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.controllers"))
	if err != nil {
		return nil, nil, fmt.Errorf("read controllers: %w", err)
	}
	avail = strings.Fields(string(b))
	for _, c := range jobControllers {
		if !slices.Contains(avail, c) {
			missing = append(missing, c)
		}
	}
	return missing, avail, nil
}

// enableControllers enables, for the children of the cgroup dir, every
// controller its parent gave it; those jobs need must be enabled.
func enableControllers(dir string) error {
	_, avail, err := missingControllers(dir)
	if err != nil {
		return err
	}
	ctl := filepath.Join(dir, "cgroup.subtree_control")
	for _, c := range avail {
		err := os.WriteFile(ctl, []byte("+"+c), 0)
		if err != nil && slices.Contains(jobControllers, c) {
			return fmt.Errorf("enable %s for children: %w", c, err)
		}
	}
	return nil
}

// isESRCH reports whether err is a write to cgroup.procs of a process that
// is gone.
func isESRCH(err error) bool {
	return errors.Is(err, unix.ESRCH)
}
