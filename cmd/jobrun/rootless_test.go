package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jobrun/jobrun/internal/leakcheck"
	"github.com/jobrun/jobrun/internal/rootless"
	"github.com/jobrun/jobrun/internal/testenv"
)

// rlUser is a real unprivileged user made for one test (issue #18), with
// or without subordinate id ranges, and removed after it.
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

// procs lists the processes running as the user or as one of its
// subordinate ids.
func (u *rlUser) procs() []string {
	ents, _ := os.ReadDir("/proc")
	var out []string
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		uid, ok := procUID(e.Name())
		if ok && (uid == u.uid || u.sub.Count > 0 && uid >= int(u.sub.Start) && uid < int(u.sub.Start+u.sub.Count)) {
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
// user (a workspace's files are the user's, as on a laptop).
func (u *rlUser) write(t *testing.T, ci string) string {
	t.Helper()
	if err := os.MkdirAll(u.project, 0o755); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(u.project, ".ci.hcl")
	if err := os.WriteFile(file, []byte(strings.ReplaceAll(ci, "IMAGE", busybox(t))), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{u.project, file} {
		if err := os.Chown(p, u.uid, u.gid); err != nil {
			t.Fatal(err)
		}
	}
	return file
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

// local runs `jobrun local` as the user on file.
func (u *rlUser) local(t *testing.T, file string, args ...string) localRun {
	t.Helper()
	cmd := u.command(append([]string{"local", "--artifacts", filepath.Join(u.home, "artifacts"), file}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	t.Logf("as %s: jobrun local %s: exit %d\n%s%s", u.name, file, code, out.String(), errb.String())
	return localRun{out.String(), errb.String(), code}
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
// test image and network "none" (bridge needs root for now).
func example(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("../../examples", name, ".ci.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.ReplaceAll(string(b), `image = "busybox"`, "image = \"IMAGE\"\n  network = \"none\"")
}

// TestRootlessHello runs the hello and matrix examples as an ordinary user
// with subordinate ranges: the same summary as root's, the image in the
// user's state dir, the job root in its namespace and the user on the
// host, nothing left behind.
func TestRootlessHello(t *testing.T) {
	u := newRLUser(t, true)
	for _, ex := range []string{"hello", "matrix"} {
		t.Run(ex, func(t *testing.T) {
			file := u.write(t, example(t, ex))
			r := u.local(t, file)
			if r.code != 0 {
				t.Fatalf("as %s: exit %d", u.name, r.code)
			}
			u.checkLeaks(t)
			// Root's run of the same file, for the summary.
			h := newTestHost(t)
			// Traversable by a job's id range: root's jobs run in user
			// namespaces of their own (issue #17).
			for _, d := range []string{filepath.Dir(h.state), h.state} {
				if err := os.Chmod(d, 0o711); err != nil {
					t.Fatal(err)
				}
			}
			root := h.local(t, file)
			if root.code != 0 {
				t.Fatalf("as root: exit %d", root.code)
			}
			if got, want := summary(t, r.out), summary(t, root.out); strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Errorf("summary as %s:\n%s\nas root:\n%s", u.name, strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
			if !strings.Contains(r.out, "limits not enforced: ") || strings.Contains(root.out, "limits not enforced") {
				t.Error("only the user's run says limits are not enforced")
			}
			// A second run finds the image unpacked in the user's store.
			again := u.local(t, file)
			if again.code != 0 || strings.Contains(again.out, "done in") {
				t.Errorf("second run: exit %d, or it unpacked a layer again", again.code)
			}
		})
	}
	layers, _ := filepath.Glob(filepath.Join(u.stateDir(), "images", "layers", "*"))
	if len(layers) == 0 {
		t.Errorf("no layer in the user's store %s", u.stateDir())
	}
	for _, l := range layers {
		var st syscall.Stat_t
		if err := syscall.Stat(l, &st); err != nil || int(st.Uid) != u.uid {
			t.Errorf("layer %s: not the user's (%v, uid %d)", l, err, st.Uid)
		}
	}
}

// TestRootlessIDs checks whose the job's processes are: root in the job,
// the user itself on the host (the namespace's 0 is the user's uid), and a
// subordinate id for the image's other users.
func TestRootlessIDs(t *testing.T) {
	u := newRLUser(t, true)
	file := u.write(t, `
job "ids" {
  image = "IMAGE"
  network = "none"
  step "probe" { run = "echo uid=$(id -u); sleep 4242 || true; su -s /bin/sh nobody -c 'sleep 4243' || true; echo done" }
}
`)
	cmd := u.command("local", "--artifacts", filepath.Join(u.home, "artifacts"), file)
	stdout, _ := cmd.StdoutPipe()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	var mu sync.Mutex
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			mu.Lock()
			fmt.Fprintln(&out, sc.Text())
			mu.Unlock()
		}
		io.Copy(io.Discard, stdout)
	}()
	// From the host: the sleeps' owners; each is killed once seen.
	// The namespace maps 0 to the user and 1.. to the range: busybox's
	// nobody, 65534, is the range's 65533rd id.
	want := map[string]int{"4242": u.uid, "4243": int(u.sub.Start) + 65534 - 1}
	for _, arg := range []string{"4242", "4243"} {
		pid, uid := waitSleep(t, arg, 60*time.Second)
		if pid == 0 {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("no sleep %s seen from the host:\n%s\n%s", arg, out.String(), stderr.String())
		}
		if uid != want[arg] {
			t.Errorf("sleep %s runs as host uid %d, want %d", arg, uid, want[arg])
		}
		// Its capabilities are over the user's namespace, not the host's.
		own, _ := os.Readlink(filepath.Join("/proc", strconv.Itoa(pid), "ns", "user"))
		host, _ := os.Readlink("/proc/1/ns/user")
		if own == "" || own == host {
			t.Errorf("sleep %s is in user namespace %q, the host's is %q", arg, own, host)
		}
		syscall.Kill(pid, syscall.SIGTERM)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("jobrun: %v\n%s\n%s", err, out.String(), stderr.String())
	}
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(out.String(), "| uid=0") {
		t.Errorf("the job's id -u is not 0:\n%s", out.String())
	}
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

// TestRootlessInterruptAndTimeout: without cgroups, a job's pid namespace
// still takes every process down, daemons included, at a timeout and at
// Ctrl-C (SIGINT to jobrun, as a script sends it: passed on to the child
// in the namespace).
func TestRootlessInterruptAndTimeout(t *testing.T) {
	u := newRLUser(t, true)
	file := u.write(t, `
job "slow" {
  image = "IMAGE"
  network = "none"
  timeout = "2s"
  step "hang" { run = "setsid sleep 301 & (sleep 302 &); sleep 303" }
}
`)
	r := u.local(t, file)
	if r.code != 1 || !strings.Contains(r.out, "timed out after 2s") {
		t.Errorf("timeout: exit %d", r.code)
	}
	u.checkLeaks(t)
	if left := u.procs(); len(left) > 0 {
		t.Errorf("after the timeout: %v", left)
	}

	file = u.write(t, `
job "long" {
  image = "IMAGE"
  network = "none"
  step "sleep" { run = "echo sleeping; setsid sleep 304 & sleep 305" }
}
`)
	cmd := u.command("local", "--artifacts", filepath.Join(u.home, "artifacts"), file)
	stdout, _ := cmd.StdoutPipe()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	var mu sync.Mutex
	started := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		once := sync.Once{}
		for sc.Scan() {
			mu.Lock()
			fmt.Fprintln(&out, sc.Text())
			mu.Unlock()
			if strings.Contains(sc.Text(), "| sleeping") {
				once.Do(func() { close(started) })
			}
		}
		io.Copy(io.Discard, stdout)
	}()
	select {
	case <-started:
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("the job never started:\n%s", stderr.String())
	}
	if pid, _ := waitSleep(t, "304", 10*time.Second); pid == 0 {
		t.Error("the daemon never ran")
	}
	cmd.Process.Signal(syscall.SIGINT)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
			t.Errorf("jobrun exited with %v, want exit status 1", err)
		}
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		t.Fatal("jobrun did not stop after SIGINT")
	}
	mu.Lock()
	defer mu.Unlock()
	order(t, out.String(), `sleep ■ cancelled`, `long +cancelled`)
	if left := u.procs(); len(left) > 0 {
		t.Errorf("after Ctrl-C: %v", left)
	}
}

// TestRootlessImageCommands: `jobrun image` works on the user's store
// without root, run in the user's namespace like local: a layer whose
// files belong to a subordinate id (busybox-user's /home/builder, 1000 in
// the image) is listed, then removed by rm and prune.
func TestRootlessImageCommands(t *testing.T) {
	u := newRLUser(t, true)
	ref := "oci-layout:" + filepath.Join(testenv.RequireEnv(t, "JOBRUN_TEST_IMAGES", "test images built by scripts/testimages.sh"), "busybox-user") + ":latest"
	file := u.write(t, `
job "user" {
  image = "`+ref+`"
  network = "none"
  step "who" { run = "id -u; ls -ln /home" }
}
`)
	if r := u.local(t, file); r.code != 0 || !strings.Contains(r.out, "| 1000") {
		t.Fatalf("exit %d", r.code)
	}
	ranged := func() []string {
		var out []string
		filepath.WalkDir(u.stateDir(), func(p string, d os.DirEntry, err error) error {
			var st syscall.Stat_t
			if err == nil && syscall.Lstat(p, &st) == nil && int(st.Uid) == int(u.sub.Start)+1000-1 {
				out = append(out, p)
			}
			return nil
		})
		return out
	}
	if len(ranged()) == 0 {
		t.Fatal("no file of the image's user 1000 on disk as the range's id")
	}
	for _, args := range [][]string{{"image", "ls"}, {"image", "rm", ref}, {"image", "prune"}} {
		cmd := u.command(args...)
		out, err := cmd.CombinedOutput()
		t.Logf("as %s: jobrun %s:\n%s", u.name, strings.Join(args, " "), out)
		if err != nil {
			t.Fatalf("jobrun %s: %v", strings.Join(args, " "), err)
		}
		if args[1] == "ls" && !strings.Contains(string(out), ref) {
			t.Errorf("image ls lacks %s", ref)
		}
	}
	if left := ranged(); len(left) > 0 {
		t.Errorf("files of the range left after rm and prune: %v", left)
	}
}

// TestRootlessJobConfined: a job without root sees none of the host's
// processes and none of the user's files outside its workspace, though it
// runs as the user's uid on the host, and cannot mount or make a user
// namespace of its own. Positive controls: it sees its own processes and
// its workspace.
func TestRootlessJobConfined(t *testing.T) {
	u := newRLUser(t, true)
	secret := filepath.Join(u.home, "secret.txt")
	if err := os.WriteFile(secret, []byte("TOPSECRET-rootless\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	os.Chown(secret, u.uid, u.gid)
	file := u.write(t, `
job "confined" {
  image = "IMAGE"
  network = "none"
  step "procs" { run = "sleep 100 & ps -o pid,args; test $(ls -d /proc/[0-9]* | wc -l) -le 6 && ! ps -o args | grep -q '[j]obrun local' && kill %1 && echo procs-ok" }
  step "files" { run = "echo 'PLANT''ED' > /tmp/p && grep -rqs PLANTED /tmp && rm /tmp/p && test -f /workspace/.ci.hcl && test ! -e `+u.home+` && ! grep -rqs 'TOPSECRET-root''less' /bin /etc /home /root /tmp /var /workspace /mnt && echo files-ok" }
  step "mount" { run = "! mount -t tmpfs none /mnt 2>/dev/null && ! unshare -U true 2>/dev/null && ! unshare -m true 2>/dev/null && echo mount-ok" }
}
`)
	r := u.local(t, file)
	if r.code != 0 {
		t.Fatalf("exit %d", r.code)
	}
	for _, ok := range []string{"| procs-ok", "| files-ok", "| mount-ok"} {
		if !strings.Contains(r.out, ok) {
			t.Errorf("no %q", ok)
		}
	}
}

// TestRootlessKeep: --keep without root prints a command that the user,
// without root, can enter the kept container with; Ctrl-C then cleans up.
func TestRootlessKeep(t *testing.T) {
	u := newRLUser(t, true)
	file := u.write(t, `
job "broken" {
  image = "IMAGE"
  network = "none"
  step "break" { run = "echo state-at-failure > /workspace/marker; exit 9" }
}
`)
	cmd := u.command("local", "--keep", "--artifacts", filepath.Join(u.home, "artifacts"), file)
	stderr, _ := cmd.StderrPipe()
	var out bytes.Buffer
	cmd.Stdout = &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	enter := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if l := strings.TrimSpace(sc.Text()); strings.HasPrefix(l, "nsenter ") {
				enter <- l
			}
		}
	}()
	var line string
	select {
	case line = <-enter:
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("no nsenter line:\n%s", out.String())
	}
	f := strings.Fields(line)
	in := exec.Command(f[0], append(f[1:], "-c", "cat /workspace/marker; id -u")...)
	in.Env = []string{"PATH=/usr/bin:/bin:/usr/sbin:/sbin"}
	in.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(u.uid), Gid: uint32(u.gid), Groups: []uint32{}}}
	got, err := in.CombinedOutput()
	if err != nil || string(got) != "state-at-failure\n0\n" {
		t.Errorf("as %s: %s: %v\n%s", u.name, line, err, got)
	}
	cmd.Process.Signal(syscall.SIGINT)
	if err := cmd.Wait(); err == nil {
		t.Error("jobrun succeeded with a failed job")
	}
	u.checkLeaks(t)
}

// TestRootlessXDGDirs: with XDG_DATA_HOME and XDG_RUNTIME_DIR set, the
// state and the runtime state go there, and nothing to the defaults.
func TestRootlessXDGDirs(t *testing.T) {
	u := newRLUser(t, true)
	data, run := filepath.Join(u.home, "data"), filepath.Join(u.home, "run")
	for _, d := range []string{data, run} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
		os.Chown(d, u.uid, u.gid)
	}
	file := u.write(t, example(t, "hello"))
	cmd := u.command("local", "--artifacts", filepath.Join(u.home, "artifacts"), file)
	cmd.Env = append(cmd.Env, "XDG_DATA_HOME="+data, "XDG_RUNTIME_DIR="+run)
	out, err := cmd.CombinedOutput()
	t.Logf("%s", out)
	if err != nil {
		t.Fatal(err)
	}
	if layers, _ := filepath.Glob(filepath.Join(data, "jobrun", "images", "layers", "*")); len(layers) == 0 {
		t.Errorf("no layer under %s", data)
	}
	if _, err := os.Stat(filepath.Join(run, "jobrun", "sandbox")); err != nil {
		t.Errorf("runtime dir: %v", err)
	}
	for _, d := range []string{u.stateDir(), u.runDir()} {
		if _, err := os.Stat(d); err == nil {
			t.Errorf("%s made though XDG dirs are set", d)
		}
	}
}
