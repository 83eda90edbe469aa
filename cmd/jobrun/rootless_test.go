package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jobrun/jobrun/internal/leakcheck"
	"github.com/jobrun/jobrun/internal/testenv"
)

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
	run := u.start(t, nil, u.localArgs(file)...)
	// From the host: the sleeps' owners; each is killed once seen.
	// The namespace maps 0 to the user and 1.. to the range: busybox's
	// nobody, 65534, is the range's 65533rd id.
	want := map[string]int{"4242": u.uid, "4243": int(u.sub.Start) + 65534 - 1}
	for _, arg := range []string{"4242", "4243"} {
		pid, uid := waitSleep(t, arg, 60*time.Second)
		if pid == 0 {
			o, e := run.output()
			t.Fatalf("no sleep %s seen from the host:\n%s\n%s", arg, o, e)
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
	r := run.end(t)
	if r.code != 0 {
		t.Fatalf("exit %d", r.code)
	}
	if !strings.Contains(r.out, "| uid=0") {
		t.Errorf("the job's id -u is not 0:\n%s", r.out)
	}
}

// TestRootlessInterruptAndTimeout: without cgroups, a job's pid namespace
// still takes every process down, daemons included, at a timeout and at
// Ctrl-C (SIGINT to jobrun, as a script sends it: passed on to the child
// in the namespace). Ctrl-C comes mid-job on a bridge network with a
// service and a cache: afterwards the leak checker finds nothing, run as
// the user (their runtime dir and the job's part of their state dir, the
// processes of their ids, pasta's included) and as root (mounts, cgroups,
// network namespaces, links and rules, files of the whole state dir, the
// processes of the test's).
func TestRootlessInterruptAndTimeout(t *testing.T) {
	tunForUsers(t)
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

	// The job holds only when the project has a file "hold": a first
	// run makes what stays by design (the image, the cache's volume).
	file = u.write(t, `
job "long" {
  image = "IMAGE"
  service "web" {
    image   = "IMAGE"
    command = ["sh", "-c", "mkdir -p /www && echo healthy > /www/health && exec httpd -f -p 8080 -h /www"]
    port    = 8080
  }
  cache "stamps" { path = "/cache" }
  step "sleep" { run = "wget -q -O - http://web:8080/health && date > /cache/stamp && if [ -f hold ]; then echo sleeping; setsid sleep 304 & sleep 305; fi" }
}
`)
	if r := u.local(t, file); r.code != 0 || !strings.Contains(r.out, "| healthy") {
		t.Fatalf("first run: exit %d", r.code)
	}
	root := leakcheck.Take(t, u.stateDir(), u.runDir())
	user := u.userLeakcheck(t)
	u.writeFile(t, "hold", "")
	run := u.start(t, nil, u.localArgs(file)...)
	run.waitOut(t, "| sleeping")
	if pid, _ := waitSleep(t, "304", 10*time.Second); pid == 0 {
		t.Error("the daemon never ran")
	}
	// Controls: the service, the cache and pasta were there.
	if o, _ := run.output(); !strings.Contains(o, "| healthy") || !strings.Contains(o, "cache stamps: warm") {
		t.Errorf("the job did not reach its service or its cache was not warm:\n%s", o)
	}
	if !hasPasta(u.procs()) {
		t.Errorf("no pasta of %s's while the bridge job ran: %v", u.name, u.procs())
	}
	run.signal(syscall.SIGINT)
	r = run.end(t)
	if r.code != 1 {
		t.Errorf("jobrun exited with %d after SIGINT, want 1", r.code)
	}
	order(t, r.out, `sleep ■ cancelled`, `long +cancelled`)
	user()
	if left := u.procs(); len(left) > 0 {
		t.Errorf("after Ctrl-C: %v", left)
	}
	root.Check(t)
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
		r := u.run(t, nil, args...)
		if r.code != 0 {
			t.Fatalf("jobrun %s: exit %d", strings.Join(args, " "), r.code)
		}
		if args[1] == "ls" && !strings.Contains(r.out, ref) {
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
	run := u.start(t, nil, u.localArgs(file, "--keep")...)
	line := strings.TrimSpace(run.waitLine(t, func(l string) bool { return strings.HasPrefix(strings.TrimSpace(l), "nsenter ") }))
	f := strings.Fields(line)
	in := exec.Command(f[0], append(f[1:], "-c", "cat /workspace/marker; id -u")...)
	in.Env = []string{"PATH=/usr/bin:/bin:/usr/sbin:/sbin"}
	in.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(u.uid), Gid: uint32(u.gid), Groups: []uint32{}}}
	got, err := in.CombinedOutput()
	if err != nil || string(got) != "state-at-failure\n0\n" {
		t.Errorf("as %s: %s: %v\n%s", u.name, line, err, got)
	}
	run.signal(syscall.SIGINT)
	if r := run.end(t); r.code == 0 {
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
	if r := u.run(t, []string{"XDG_DATA_HOME=" + data, "XDG_RUNTIME_DIR=" + run}, u.localArgs(file)...); r.code != 0 {
		t.Fatalf("exit %d", r.code)
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
