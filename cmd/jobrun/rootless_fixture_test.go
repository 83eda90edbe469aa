package main

import (
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jobrun/jobrun/internal/leakcheck"
	"github.com/jobrun/jobrun/internal/rootless"
	"github.com/jobrun/jobrun/internal/testenv"
)

// The fixture of the TestRootless* tests (issue #18): a real unprivileged
// user made for one test, with or without subordinate id ranges, and
// `jobrun` run as that user. Every run is started with
// testenv.StartChild, so a test binary that dies leaves no jobrun of the
// user's behind; every run's output goes to files, not pipes, so a
// process of the job's that outlives jobrun cannot hold a test up.

// rlUser is a real unprivileged user made for one test, removed after it.
type rlUser struct {
	name     string
	uid, gid int
	home     string
	sub      rootless.Range // zero without ranges
	bin      string         // jobrun and its helpers, in a directory the user can read
	project  string         // a directory of the user's for job files
}

// newRLUser makes the user. Its processes are checked when the test ends:
// none may be left, its own or its subordinate ids'.
func newRLUser(t *testing.T, ranges bool) *rlUser {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.RequireTool(t, "newuidmap")
	testenv.RequireTool(t, "newgidmap")
	testenv.RequireTool(t, "useradd")
	name := fmt.Sprintf("jrl%d", os.Getpid()%100000)
	if !ranges {
		name += "n"
	}
	// useradd gives a new user ranges of its own unless told not to.
	if out, err := exec.Command("useradd", "-m", "-s", "/bin/sh", "-K", "SUB_UID_COUNT=0", "-K", "SUB_GID_COUNT=0", name).CombinedOutput(); err != nil {
		t.Fatalf("useradd: %v\n%s", err, out)
	}
	u := &rlUser{name: name}
	t.Cleanup(func() {
		if out, err := exec.Command("userdel", "-r", name).CombinedOutput(); err != nil {
			t.Errorf("userdel: %v\n%s", err, out)
		}
		for _, f := range []string{"/etc/subuid", "/etc/subgid"} {
			if r, _ := rootless.SubIDs(f, name, u.uid); len(r) > 0 {
				t.Errorf("%s still has %s's ranges %v", f, name, r)
			}
		}
	})
	pu, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	u.uid, _ = strconv.Atoi(pu.Uid)
	u.gid, _ = strconv.Atoi(pu.Gid)
	u.home = pu.HomeDir
	if ranges {
		r, err := rootless.FreeRange(65536, "/etc/subuid", "/etc/subgid")
		if err != nil {
			t.Fatal(err)
		}
		span := fmt.Sprintf("%d-%d", r.Start, r.Start+r.Count-1)
		if out, err := exec.Command("usermod", "--add-subuids", span, "--add-subgids", span, name).CombinedOutput(); err != nil {
			t.Fatalf("usermod: %v\n%s", err, out)
		}
		u.sub = r
	}
	t.Cleanup(func() {
		if left := u.procs(); len(left) > 0 {
			t.Errorf("processes of %s left: %v", name, left)
		}
		// The runtime dir stays between runs, as podman's does; the
		// next test's user may get the same uid.
		os.RemoveAll(u.runDir())
	})

	// jobrun and its helpers where the user can run them.
	u.bin = filepath.Join(u.home, "bin")
	if err := os.MkdirAll(u.bin, 0o755); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(buildJobrun(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(u.bin, "jobrun"), b, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := testenv.InstallHelpers(u.bin); err != nil {
		t.Fatal(err)
	}
	u.project = filepath.Join(u.home, "project")
	return u
}

// owns reports whether host uid belongs to the user: its own or one of
// its subordinate ids.
func (u *rlUser) owns(uid int) bool {
	return uid == u.uid || u.sub.Count > 0 && uid >= int(u.sub.Start) && uid < int(u.sub.Start+u.sub.Count)
}

// procs lists the processes running as the user or as one of its
// subordinate ids.
func (u *rlUser) procs() []string {
	ents, _ := os.ReadDir("/proc")
	var out []string
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		if uid, ok := procUID(e.Name()); ok && u.owns(uid) {
			cmd, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
			out = append(out, e.Name()+":"+strings.ReplaceAll(string(cmd), "\x00", " "))
		}
	}
	return out
}

// procUID is the real uid of process pid, from the host.
func procUID(pid string) (int, bool) {
	b, err := os.ReadFile(filepath.Join("/proc", pid, "status"))
	if err != nil {
		return 0, false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "Uid:" {
			n, err := strconv.Atoi(f[1])
			return n, err == nil
		}
	}
	return 0, false
}

// write puts a job file in the user's project directory, owned by the
// user (a workspace's files are the user's, as on a laptop), with IMAGE
// replaced by the busybox test image.
func (u *rlUser) write(t *testing.T, ci string) string {
	t.Helper()
	return u.writeFile(t, ".ci.hcl", strings.ReplaceAll(ci, "IMAGE", busybox(t)))
}

// writeFile puts a file of the user's at name under the project
// directory, making its directories, and returns its path.
func (u *rlUser) writeFile(t *testing.T, name, body string) string {
	t.Helper()
	p := filepath.Join(u.project, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	for d := p; strings.HasPrefix(d, u.project); d = filepath.Dir(d) {
		if err := os.Chown(d, u.uid, u.gid); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

// command is jobrun run as the user, with a clean environment: HOME, PATH
// and nothing of XDG's, so the defaults apply (~/.local/share/jobrun, a
// runtime dir under /tmp).
func (u *rlUser) command(args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(u.bin, "jobrun"), args...)
	cmd.Dir = u.project
	cmd.Env = []string{"HOME=" + u.home, "USER=" + u.name, "PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "NO_COLOR=1"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(u.uid), Gid: uint32(u.gid), Groups: []uint32{}}}
	return cmd
}

// localArgs are the arguments of `jobrun local` on file, its artifacts
// under the user's home.
func (u *rlUser) localArgs(file string, args ...string) []string {
	return append([]string{"local", "--artifacts", u.artifacts(), file}, args...)
}

// artifacts is where the user's runs put their artifacts.
func (u *rlUser) artifacts() string { return filepath.Join(u.home, "artifacts") }

// local runs `jobrun local` as the user on file, to its end.
func (u *rlUser) local(t *testing.T, file string, args ...string) localRun {
	t.Helper()
	return u.start(t, nil, u.localArgs(file, args...)...).end(t)
}

// run runs jobrun as the user with args, env added to its environment, to
// its end.
func (u *rlUser) run(t *testing.T, env []string, args ...string) localRun {
	t.Helper()
	return u.start(t, env, args...).end(t)
}

// rlRun is jobrun running as the user.
type rlRun struct {
	u         *rlUser
	args      []string
	cmd       *exec.Cmd
	out, errf string // files of its stdout and stderr
	done      chan struct{}
	err       error // of Wait, once done is closed
}

// start starts jobrun as the user with args, env added to its
// environment. It is killed when the test ends if it is still running.
func (u *rlUser) start(t *testing.T, env []string, args ...string) *rlRun {
	t.Helper()
	cmd := u.command(args...)
	cmd.Env = append(cmd.Env, env...)
	return u.startCmd(t, cmd)
}

// startCmd starts cmd, a command of the user's, as start does.
func (u *rlUser) startCmd(t *testing.T, cmd *exec.Cmd) *rlRun {
	t.Helper()
	dir := t.TempDir()
	r := &rlRun{u: u, args: cmd.Args[1:], cmd: cmd, out: filepath.Join(dir, "stdout"), errf: filepath.Join(dir, "stderr"), done: make(chan struct{})}
	for _, p := range []string{r.out, r.errf} {
		f, err := os.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if p == r.out {
			r.cmd.Stdout = f
		} else {
			r.cmd.Stderr = f
		}
	}
	wait, err := testenv.StartChild(r.cmd)
	if err != nil {
		t.Fatalf("start jobrun as %s: %v", u.name, err)
	}
	go func() {
		r.err = wait()
		close(r.done)
	}()
	t.Cleanup(func() {
		select {
		case <-r.done:
		default:
			r.cmd.Process.Kill()
			<-r.done
		}
	})
	return r
}

// output is what the run has written so far to stdout and to stderr.
func (r *rlRun) output() (string, string) {
	o, _ := os.ReadFile(r.out)
	e, _ := os.ReadFile(r.errf)
	return string(o), string(e)
}

// waitLine waits until a line of the run's stdout or stderr satisfies ok,
// and returns it; it fails t if the run ends first or none comes within
// a minute.
func (r *rlRun) waitLine(t *testing.T, ok func(string) bool) string {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		o, e := r.output()
		for _, l := range strings.Split(o+"\n"+e, "\n") {
			if ok(l) {
				return l
			}
		}
		select {
		case <-r.done:
			t.Fatalf("jobrun %s ended (%v) before the line awaited:\n%s%s", strings.Join(r.args, " "), r.err, o, e)
		default:
		}
		if time.Now().After(deadline) {
			r.cmd.Process.Kill()
			<-r.done
			t.Fatalf("jobrun %s: no line awaited within a minute:\n%s%s", strings.Join(r.args, " "), o, e)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitOut waits for s in the run's output (see waitLine).
func (r *rlRun) waitOut(t *testing.T, s string) {
	t.Helper()
	r.waitLine(t, func(l string) bool { return strings.Contains(l, s) })
}

// signal sends sig to jobrun.
func (r *rlRun) signal(sig syscall.Signal) { r.cmd.Process.Signal(sig) }

// end waits for the command to exit, at most ten minutes (then it is killed
// and t fails), logs its output and returns it with the exit code.
func (r *rlRun) end(t *testing.T) localRun {
	t.Helper()
	select {
	case <-r.done:
	case <-time.After(10 * time.Minute):
		r.cmd.Process.Kill()
		<-r.done
		o, e := r.output()
		t.Fatalf("as %s: jobrun %s did not end:\n%s%s", r.u.name, strings.Join(r.args, " "), o, e)
	}
	code := 0
	if ee, ok := r.err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if r.err != nil {
		t.Fatal(r.err)
	}
	o, e := r.output()
	t.Logf("as %s: jobrun %s: exit %d\n%s%s", r.u.name, strings.Join(r.args, " "), code, o, e)
	return localRun{o, e, code}
}

// stateDir is the user's default state dir.
func (u *rlUser) stateDir() string { return filepath.Join(u.home, ".local", "share", "jobrun") }

// runDir is the user's runtime dir for jobrun's containers (no
// XDG_RUNTIME_DIR: the private one under /tmp).
func (u *rlUser) runDir() string {
	return filepath.Join(os.TempDir(), "jobrun-run-"+strconv.Itoa(u.uid))
}

// checkLeaks takes a leak checker snapshot of the user's state dir now
// (after a first run made it) and checks it when the test ends, with the
// user's runtime dir holding no container.
func (u *rlUser) checkLeaks(t *testing.T) {
	t.Helper()
	for _, d := range []string{"snapshots", "work/workspaces", "caches/private"} {
		leaks := leakcheck.Take(t, filepath.Join(u.stateDir(), d))
		t.Cleanup(func() { leaks.Check(t) })
	}
	t.Cleanup(func() {
		var left []string
		filepath.WalkDir(u.runDir(), func(p string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				left = append(left, p)
			}
			return nil
		})
		if len(left) > 0 {
			t.Errorf("runtime state left: %v", left)
		}
		os.RemoveAll(u.runDir())
		b, _ := os.ReadFile("/proc/self/mountinfo")
		if strings.Contains(string(b), u.home) {
			t.Errorf("mounts left under %s on the host:\n%s", u.home, b)
		}
	})
}

// waitSleep finds the process `sleep ARG` and its host uid.
func waitSleep(t *testing.T, arg string, d time.Duration) (int, int) {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		ents, _ := os.ReadDir("/proc")
		for _, e := range ents {
			pid, err := strconv.Atoi(e.Name())
			if err != nil {
				continue
			}
			b, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
			if string(b) == "sleep\x00"+arg+"\x00" {
				if uid, ok := procUID(e.Name()); ok {
					return pid, uid
				}
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return 0, 0
}

// summary is the summary table of a run, without the columns that differ
// between runs (duration) and between root and a user (CPU and PEAK MEM,
// which need a cgroup).
func summary(t *testing.T, out string) []string {
	t.Helper()
	var rows []string
	in := false
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "JOB ") {
			in = true
			continue
		}
		if !in {
			continue
		}
		if strings.TrimSpace(line) == "" {
			break
		}
		c := regexp.MustCompile(`\s{2,}`).Split(strings.TrimRight(line, " "), -1)
		if len(c) < 7 {
			t.Fatalf("summary row %q", line)
		}
		rows = append(rows, strings.Join(append([]string{c[0], c[1], c[5], c[6]}, c[7:]...), " | "))
	}
	if len(rows) == 0 {
		t.Fatalf("no summary in:\n%s", out)
	}
	return rows
}

// example is the example's job file for the user's test, with busybox the
// test image and network "none".
func example(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("../../examples", name, ".ci.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.ReplaceAll(string(b), `image = "busybox"`, "image = \"IMAGE\"\n  network = \"none\"")
}
