// Package leakcheck lets a test prove that an operation left nothing behind:
// Take records the host state a jobrun operation could leak, Check compares
// it again and fails the test on any difference.
//
// Other engineers' tests run on the same machine at the same time, so a
// snapshot does not cover the whole host. It covers:
//
//   - mounts (from /proc/self/mountinfo) whose mount point or source lies
//     under the state dir (compared both ways: new or gone), and mounts
//     elsewhere whose mount point or source contains "jobrun" (new ones
//     only: other tests come and go there);
//   - cgroup directories, in every mounted hierarchy (cgroup v1 and v2),
//     whose path below the hierarchy root contains "jobrun", and which are
//     empty or hold a process in scope (below) — a cgroup holding only
//     other programs' processes is another test's live container. New
//     ones only, for the same reason;
//   - processes that descend from the test process, or whose cwd, root or
//     executable lies under the state dir (the test process itself is not
//     counted). New ones only: a process that ended since is fine;
//   - every file and directory under the state dir and the other
//     directories given to Take (path and type only: contents may change,
//     names may not), compared both ways;
//   - network links, addresses, namespaces and nftables rules of the state
//     dir's jobs, compared both ways (see netState for how they are told
//     from other state dirs').
//
// Processes are scoped by descent from the test binary, so a test that
// uses a Snapshot must not run in parallel (t.Parallel) with other tests
// of the same binary that start processes or containers.
//
// Teardown is allowed to be asynchronous (a killed process takes a moment to
// be reaped), and another test's container is briefly empty while it starts
// and stops, so Check polls for a few seconds for a clean state before it
// reports.
package leakcheck

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jobrun/jobrun/internal/rundir"
	"github.com/jobrun/jobrun/internal/testenv"
)

// defaultSettle is how long Check waits for asynchronous teardown to
// finish, stretched by a slow lane's JOBRUN_TEST_TIMESCALE.
const defaultSettle = 5 * time.Second

// Snapshot is the recorded state of everything in scope (see the package doc).
type Snapshot struct {
	stateDir string
	also     []string
	state    state
	settle   time.Duration
}

// state maps a description of each thing in scope to how many there are of
// it; mounts may be stacked, so a plain set would miss one. Things in the
// "both" maps must neither appear nor vanish; things in the "new" maps
// must not appear.
type state struct {
	mounts, looseMounts map[string]int
	cgroups             map[string]int
	// procs are keyed by pid and start time, which name a process for
	// good; its command name changes when it executes another program
	// (a helper that re-executes itself), so it is only in procNames,
	// for the report.
	procs     map[string]int
	procNames map[string]string
	files     map[string]int
	net       netState
}

// Take records the state in scope for stateDir. stateDir must be absolute
// and should be the directory the code under test was given; a missing
// stateDir counts as empty. The files of the directories also (absolute:
// state the code keeps elsewhere, such as the sandbox's run dir) are
// compared too.
func Take(t testing.TB, stateDir string, also ...string) *Snapshot {
	t.Helper()
	s := &Snapshot{settle: testenv.Scale(defaultSettle)}
	var err error
	if s.stateDir, err = canonical(stateDir); err != nil {
		t.Fatalf("leakcheck: %v", err)
	}
	for _, d := range also {
		c, err := canonical(d)
		if err != nil {
			t.Fatalf("leakcheck: %v", err)
		}
		s.also = append(s.also, c)
	}
	if s.state, err = s.read(); err != nil {
		t.Fatalf("leakcheck: %v", err)
	}
	return s
}

// Check fails t if the state in scope differs from the snapshot, listing
// every difference. It waits up to a few seconds for the difference to go
// away first.
func (s *Snapshot) Check(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(s.settle)
	for {
		now, err := s.read()
		if err != nil {
			t.Errorf("leakcheck: %v", err)
			return
		}
		diff := s.state.diff(now)
		if len(diff) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("leakcheck: %d leaked or lost since the snapshot:\n\t%s",
				len(diff), strings.Join(diff, "\n\t"))
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func canonical(dir string) (string, error) {
	if !filepath.IsAbs(dir) {
		return "", fmt.Errorf("state dir %q is not absolute", dir)
	}
	// Mountinfo and /proc links show resolved paths; /tmp may be a symlink.
	if r, err := filepath.EvalSymlinks(dir); err == nil {
		return r, nil
	}
	return filepath.Clean(dir), nil
}

// read records the state in scope for s.
func (s *Snapshot) read() (state, error) {
	st, err := read(s.stateDir)
	if err != nil {
		return st, err
	}
	for _, d := range s.also {
		more, err := files(d)
		if err != nil {
			return st, err
		}
		for k, n := range more {
			st.files[k] += n
		}
	}
	return st, nil
}

func read(stateDir string) (state, error) {
	var st state
	var err error
	if st.mounts, st.looseMounts, err = mounts(stateDir); err != nil {
		return st, err
	}
	pids, err := procs(stateDir)
	if err != nil {
		return st, err
	}
	st.procs, st.procNames = map[string]int{}, map[string]string{}
	for _, p := range pids {
		key, name, _ := strings.Cut(p, " (")
		st.procs[key]++
		st.procNames[key] = strings.TrimSuffix(name, ")")
	}
	if st.cgroups, err = cgroups(pids); err != nil {
		return st, err
	}
	if st.files, err = files(stateDir); err != nil {
		return st, err
	}
	nsfs, err := nsfsMounts(stateDir)
	if err != nil {
		return st, err
	}
	if st.net, err = readNet(stateDir, nsfs); err != nil {
		return st, err
	}
	return st, nil
}

// diff lists what differs between s (before) and now (after).
func (s state) diff(now state) []string {
	var out []string
	out = append(out, diffCounts("mount", s.mounts, now.mounts, true)...)
	out = append(out, diffCounts("mount", s.looseMounts, now.looseMounts, false)...)
	out = append(out, diffCounts("cgroup", s.cgroups, now.cgroups, false)...)
	for _, l := range diffCounts("process", s.procs, now.procs, false) {
		_, key, _ := strings.Cut(l, ": ")
		out = append(out, l+" ("+now.procNames[key]+")")
	}
	out = append(out, diffCounts("file", s.files, now.files, true)...)
	out = append(out, diffCounts("link", s.net.links, now.net.links, true)...)
	out = append(out, diffCounts("address", s.net.addrs, now.net.addrs, true)...)
	out = append(out, diffCounts("netns", s.net.netns, now.net.netns, true)...)
	out = append(out, diffCounts("nftables rule", s.net.rules, now.net.rules, true)...)
	return out
}

func diffCounts(kind string, before, after map[string]int, lost bool) []string {
	var out []string
	for k, n := range after {
		if d := n - before[k]; d > 0 {
			out = append(out, fmt.Sprintf("new %s (%d): %s", kind, d, k))
		}
	}
	if lost {
		for k, n := range before {
			if d := n - after[k]; d > 0 {
				out = append(out, fmt.Sprintf("lost %s (%d): %s", kind, d, k))
			}
		}
	}
	slices.Sort(out)
	return out
}

func under(path, dir string) bool {
	return path == dir || strings.HasPrefix(path, dir+"/")
}

// mounts reads /proc/self/mountinfo. Its fields are documented in proc(5):
// ID, parent ID, major:minor, root, mount point, options, optional fields
// ending with "-", fs type, source, super options.
func mounts(stateDir string) (strict, loose map[string]int, err error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, nil, fmt.Errorf("read mounts: %w", err)
	}
	defer f.Close()
	strict, loose = map[string]int{}, map[string]int{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		sep := slices.Index(fields, "-")
		if len(fields) < 5 || sep < 0 || sep+2 >= len(fields) {
			return nil, nil, fmt.Errorf("read mounts: malformed mountinfo line %q", sc.Text())
		}
		point := unescape(fields[4])
		fstype, source := fields[sep+1], unescape(fields[sep+2])
		key := fmt.Sprintf("%s (%s from %s, root %s)", point, fstype, source, unescape(fields[3]))
		switch {
		case under(point, stateDir) || under(source, stateDir):
			strict[key]++
		case rundir.Other(point, stateDir):
			// Another state dir's (another test's, another
			// process's): its own checker's business.
		case strings.Contains(point, "jobrun") || strings.Contains(source, "jobrun"):
			loose[key]++
		}
	}
	if err := sc.Err(); err != nil {
		return nil, nil, fmt.Errorf("read mounts: %w", err)
	}
	return strict, loose, nil
}

// unescape undoes mountinfo's octal escapes of space, tab, newline and "\".
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// cgroups walks every cgroup hierarchy mounted under /sys/fs/cgroup (a v2
// unified mount, v1 controller mounts, or both in hybrid mode) for jobrun
// cgroups that are empty or hold one of the processes in scope (mine, as
// listed by procs).
func cgroups(mine []string) (map[string]int, error) {
	roots, err := cgroupRoots()
	if err != nil {
		return nil, err
	}
	minePids := map[string]bool{}
	for _, p := range mine {
		minePids[strings.Fields(p)[1]] = true
	}
	out := map[string]int{}
	for _, root := range roots {
		err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				// A cgroup removed while walking is not an error of ours.
				if errors.Is(err, fs.ErrNotExist) {
					return nil
				}
				return err
			}
			if !d.IsDir() || p == root {
				return nil
			}
			rel := strings.TrimPrefix(p, root)
			if strings.Contains(rel, "jobrun") && ours(p, minePids) {
				out[root+":"+rel]++
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("read cgroups under %s: %w", root, err)
		}
	}
	return out, nil
}

// ours reports whether the cgroup dir is empty or holds a process in mine.
func ours(dir string, mine map[string]bool) bool {
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		return false
	}
	pids := strings.Fields(string(b))
	if len(pids) == 0 {
		return true
	}
	return slices.ContainsFunc(pids, func(p string) bool { return mine[p] })
}

func cgroupRoots() ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("read cgroup mounts: %w", err)
	}
	defer f.Close()
	var roots []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		sep := slices.Index(fields, "-")
		if sep < 0 || sep+1 >= len(fields) || len(fields) < 5 {
			continue
		}
		if t := fields[sep+1]; t == "cgroup" || t == "cgroup2" {
			roots = append(roots, unescape(fields[4]))
		}
	}
	return roots, sc.Err()
}

// procs lists processes in scope as "pid N started T (comm)", so that a
// reused pid is a different process.
func procs(stateDir string) ([]string, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("read processes: %w", err)
	}
	self := os.Getpid()
	type proc struct {
		ppid        int
		start, comm string
	}
	all := map[int]proc{}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		ppid, start, comm, ok := stat(pid)
		if ok {
			all[pid] = proc{ppid, start, comm}
		}
	}
	descends := func(pid int) bool {
		for seen := 0; pid > 1 && seen < len(all); seen++ {
			p, ok := all[pid]
			if !ok {
				return false
			}
			if p.ppid == self {
				return true
			}
			pid = p.ppid
		}
		return false
	}
	var out []string
	for pid, p := range all {
		if pid == self {
			continue
		}
		if descends(pid) || usesDir(pid, stateDir) {
			out = append(out, fmt.Sprintf("pid %d started %s (%s)", pid, p.start, p.comm))
		}
	}
	return out, nil
}

// stat reads the parent pid, start time and command name of pid; ok is false
// if the process is gone.
func stat(pid int) (ppid int, start, comm string, ok bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, "", "", false
	}
	s := string(b)
	// comm is in parentheses and may itself contain ") ".
	open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || end < open {
		return 0, "", "", false
	}
	comm = s[open+1 : end]
	rest := strings.Fields(s[end+1:])
	// rest[0] is field 3 (state): ppid is field 4, starttime field 22.
	if len(rest) < 20 {
		return 0, "", "", false
	}
	ppid, err = strconv.Atoi(rest[1])
	if err != nil {
		return 0, "", "", false
	}
	return ppid, rest[19], comm, true
}

func usesDir(pid int, dir string) bool {
	for _, l := range []string{"cwd", "root", "exe"} {
		p, err := os.Readlink(fmt.Sprintf("/proc/%d/%s", pid, l))
		if err == nil && under(strings.TrimSuffix(p, " (deleted)"), dir) {
			return true
		}
	}
	return false
}

func files(stateDir string) (map[string]int, error) {
	out := map[string]int{}
	err := filepath.WalkDir(stateDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if p == stateDir {
			return nil
		}
		// The sandbox's compiled seccomp filters, kept by design for
		// the next process (agent/sandbox/seccompstore.go).
		if d.IsDir() && p == filepath.Join(stateDir, "seccomp") {
			return filepath.SkipDir
		}
		// The user namespace probe's record of a pass, kept by design
		// for the next process (internal/idmap/probe_once.go).
		if p == filepath.Join(stateDir, "idmap-ok") {
			return nil
		}
		out[fmt.Sprintf("%s (%s)", p, d.Type())]++
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read state dir %s: %w", stateDir, err)
	}
	return out, nil
}
