package leakcheck

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jobrun/jobrun/internal/testenv"
	"golang.org/x/sys/unix"
)

// recorder is a testing.TB that records failures instead of failing, so a
// test can assert that Check fails.
type recorder struct {
	testing.TB
	msgs []string
}

func (r *recorder) Helper() {}

func (r *recorder) Errorf(format string, args ...any) {
	r.msgs = append(r.msgs, fmt.Sprintf(format, args...))
}

func (r *recorder) Fatalf(format string, args ...any) {
	r.msgs = append(r.msgs, fmt.Sprintf(format, args...))
	r.FailNow()
}

// expectLeak runs Check on s with a recorder and asserts that it failed
// with a message naming want.
func expectLeak(t *testing.T, s *Snapshot, want string) {
	t.Helper()
	s.settle = 200 * time.Millisecond
	r := &recorder{TB: t}
	s.Check(r)
	if len(r.msgs) == 0 {
		t.Fatalf("Check passed, want a failure naming %q", want)
	}
	if msg := strings.Join(r.msgs, "\n"); !strings.Contains(msg, want) {
		t.Fatalf("Check failed without naming %q:\n%s", want, msg)
	}
}

func expectClean(t *testing.T, s *Snapshot) {
	t.Helper()
	r := &recorder{TB: t}
	s.Check(r)
	if len(r.msgs) != 0 {
		t.Fatalf("Check failed on a clean state:\n%s", strings.Join(r.msgs, "\n"))
	}
}

func TestCleanRunPasses(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "before"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	s := Take(t, dir)
	// Work that leaves nothing behind: a file made and removed, a child
	// process started and reaped.
	tmp := filepath.Join(dir, "tmp")
	if err := os.WriteFile(tmp, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := exec.Command("true").Run(); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(tmp); err != nil {
		t.Fatal(err)
	}
	expectClean(t, s)
}

func TestFile(t *testing.T) {
	dir := t.TempDir()
	s := Take(t, dir)
	p := filepath.Join(dir, "left")
	if err := os.WriteFile(p, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	expectLeak(t, s, "new file (1): "+p)
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	expectClean(t, s)

	// Removing what was there is a difference too.
	if err := os.WriteFile(p, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	s = Take(t, dir)
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	expectLeak(t, s, "lost file (1): "+p)
}

// TestAlsoDirs: files in the extra directories given to Take count too.
func TestAlsoDirs(t *testing.T) {
	dir, run := t.TempDir(), t.TempDir()
	s := Take(t, dir, run)
	p := filepath.Join(run, "left")
	if err := os.WriteFile(p, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	expectLeak(t, s, "new file (1): "+p)
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	expectClean(t, s)
}

func TestMount(t *testing.T) {
	testenv.RequireRoot(t)
	dir := t.TempDir()
	m := filepath.Join(dir, "mnt")
	if err := os.Mkdir(m, 0o700); err != nil {
		t.Fatal(err)
	}
	s := Take(t, dir)
	if err := unix.Mount("leakcheck-test", m, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	unmounted := false
	defer func() {
		if !unmounted {
			unix.Unmount(m, unix.MNT_DETACH)
		}
	}()
	expectLeak(t, s, "new mount (1): "+m+" (tmpfs from leakcheck-test")
	if err := unix.Unmount(m, 0); err != nil {
		t.Fatal(err)
	}
	unmounted = true
	expectClean(t, s)
}

func TestCgroup(t *testing.T) {
	testenv.RequireRoot(t)
	roots, err := cgroupRoots()
	if err != nil || len(roots) == 0 {
		t.Fatalf("no cgroup hierarchy mounted: %v", err)
	}
	for _, root := range roots {
		t.Run(filepath.Base(root), func(t *testing.T) {
			s := Take(t, t.TempDir())
			cg := filepath.Join(root, fmt.Sprintf("jobrun-leakcheck-%d", os.Getpid()))
			if err := os.Mkdir(cg, 0o755); err != nil {
				t.Fatal(err)
			}
			defer os.Remove(cg)
			// A child of ours lives in it, so that other packages' leak
			// checks running at the same time see another test's live
			// cgroup, not an empty (leaked) one.
			child := exec.Command("sleep", "60")
			if err := child.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() { child.Process.Kill(); child.Wait() }()
			for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
				if b, err := os.ReadFile(filepath.Join(root, f)); err == nil {
					os.WriteFile(filepath.Join(cg, f), b, 0o644)
				}
			}
			if err := os.WriteFile(filepath.Join(cg, "cgroup.procs"), []byte(strconv.Itoa(child.Process.Pid)), 0o644); err != nil {
				t.Fatal(err)
			}
			expectLeak(t, s, "new cgroup (1): "+root+":/"+filepath.Base(cg))
			child.Process.Kill()
			child.Wait()
			if err := os.Remove(cg); err != nil {
				t.Fatal(err)
			}
			expectClean(t, s)
		})
	}
}

// TestCgroupScope checks that a jobrun cgroup holding only processes out
// of scope (another test's live container) is not counted, and one holding
// a process of ours is.
func TestCgroupScope(t *testing.T) {
	testenv.RequireRoot(t)
	root := "/sys/fs/cgroup/pids"
	if _, err := os.Stat(filepath.Join(root, "cgroup.procs")); err != nil {
		root = "/sys/fs/cgroup/unified"
		if _, err := os.Stat(filepath.Join(root, "cgroup.procs")); err != nil {
			root = "/sys/fs/cgroup"
		}
	}
	cg := filepath.Join(root, fmt.Sprintf("jobrun-leakcheck-scope-%d", os.Getpid()))
	if err := os.Mkdir(cg, 0o755); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(cg)
	// An orphan in another dir stands for another test's process.
	pidFile := filepath.Join(t.TempDir(), "pid")
	if err := exec.Command("sh", "-c", `sleep 60 </dev/null >/dev/null 2>&1 & echo $! >"$1"`, "sh", pidFile).Run(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	other := strings.TrimSpace(string(b))
	defer exec.Command("kill", "-9", other).Run()
	if err := os.WriteFile(filepath.Join(cg, "cgroup.procs"), []byte(other), 0o644); err != nil {
		t.Fatal(err)
	}
	s := Take(t, t.TempDir())
	expectClean(t, s)

	// A child of ours joins it: now it is ours, and new.
	child := exec.Command("sleep", "60")
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { child.Process.Kill(); child.Wait() }()
	if err := os.WriteFile(filepath.Join(cg, "cgroup.procs"), []byte(strconv.Itoa(child.Process.Pid)), 0o644); err != nil {
		t.Fatal(err)
	}
	expectLeak(t, s, "new cgroup (1): "+root+":/"+filepath.Base(cg))
	// Move both out before removal.
	for _, p := range []string{other, strconv.Itoa(child.Process.Pid)} {
		os.WriteFile(filepath.Join(root, "cgroup.procs"), []byte(p), 0o644)
	}
}

func TestChildProcess(t *testing.T) {
	dir := t.TempDir()
	s := Take(t, dir)
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	expectLeak(t, s, fmt.Sprintf("new process (1): pid %d ", cmd.Process.Pid))
	cmd.Process.Kill()
	cmd.Wait()
	expectClean(t, s)
}

// TestProcessExecs: a process that was there and executes another program
// (its command name changes) is the same process, not a new one; the
// report names the new ones' commands.
func TestProcessExecs(t *testing.T) {
	cmd := exec.Command("sh", "-c", "read x; exec sleep 60")
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	s := Take(t, t.TempDir())
	in.Write([]byte("go\n"))
	comm := fmt.Sprintf("/proc/%d/comm", cmd.Process.Pid)
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if b, _ := os.ReadFile(comm); strings.TrimSpace(string(b)) == "sleep" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the shell did not execute sleep")
		}
	}
	expectClean(t, s)
	other := exec.Command("sleep", "60")
	if err := other.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { other.Process.Kill(); other.Wait() }()
	expectLeak(t, s, fmt.Sprintf("new process (1): pid %d started ", other.Process.Pid))
	expectLeak(t, s, "(sleep)")
}

// TestOrphanInStateDir plants a process that is not a descendant (its
// parent exits at once) but runs in the state dir.
func TestOrphanInStateDir(t *testing.T) {
	dir := t.TempDir()
	work := filepath.Join(dir, "work")
	if err := os.Mkdir(work, 0o700); err != nil {
		t.Fatal(err)
	}
	pidFile := filepath.Join(t.TempDir(), "pid")
	s := Take(t, dir)
	sh := exec.Command("sh", "-c", `cd "$1" && sleep 60 </dev/null >/dev/null 2>&1 & echo $! >"$2"`, "sh", work, pidFile)
	if err := sh.Run(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Kill(pid, unix.SIGKILL)
	// $! is known before the background job has run its cd: wait until
	// it is in the state dir (a Check before that rightly found nothing).
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid)); err == nil && cwd == work {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("pid %d never got to %s", pid, work)
		}
	}
	// The sleep's parent has exited: it is no longer our descendant
	// unless this process is a subreaper, which the test is not.
	expectLeak(t, s, fmt.Sprintf("new process (1): pid %d ", pid))
	if err := unix.Kill(pid, unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	expectClean(t, s)
}

func TestUnescape(t *testing.T) {
	if got := unescape(`/a\040b\134c`); got != `/a b\c` {
		t.Fatalf("unescape = %q", got)
	}
}
