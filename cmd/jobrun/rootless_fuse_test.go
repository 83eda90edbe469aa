package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jobrun/jobrun/internal/testenv"
)

// fuseForUsers makes /dev/fuse usable by ordinary users, as Debian's udev
// rules do (mode 0666); this host has it 0600. Test set-up as root.
func fuseForUsers(t *testing.T) {
	t.Helper()
	testenv.RequireTool(t, "fuse-overlayfs")
	if err := os.Chmod("/dev/fuse", 0o666); err != nil {
		t.Fatalf("/dev/fuse: %v", err)
	}
}

// whiteoutImage is busybox plus a layer of files and a layer that deletes
// one (a whiteout, /a/.wh.gone) and makes a directory opaque
// (/o/.wh..wh..opq), readable by every user.
func whiteoutImage(t *testing.T) string {
	t.Helper()
	base := filepath.Join(testenv.RequireEnv(t, "JOBRUN_TEST_IMAGES", "test images built by scripts/testimages.sh"), "busybox")
	one := derivedImage(t, base, []layerFile{
		{name: "a", dir: true}, {name: "a/keep", body: "keep\n"}, {name: "a/gone", body: "gone\n"},
		{name: "o", dir: true}, {name: "o/old", body: "old\n"},
	})
	two := derivedImage(t, layoutDir(one), []layerFile{
		{name: "a/.wh.gone"},
		{name: "o", dir: true}, {name: "o/.wh..wh..opq"}, {name: "o/new", body: "new\n"},
	})
	for d := layoutDir(two); d != filepath.Dir(d) && d != os.TempDir(); d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := exec.Command("chmod", "-R", "a+rX", layoutDir(two)).CombinedOutput(); err != nil {
		t.Fatalf("chmod: %v\n%s", err, out)
	}
	return two
}

// layoutDir is the directory of an "oci-layout:DIR:TAG" reference.
func layoutDir(ref string) string {
	s := strings.TrimPrefix(ref, "oci-layout:")
	return s[:strings.LastIndex(s, ":")]
}

// layersJob reads the whiteout image's layers, writes and deletes in its
// root, and says what its root file system is.
const layersJob = `
job "layers" {
  image = "IMAGE"
  network = "none"
  cache "p" {
    path    = "/p"
    key     = "p"
    sharing = "private"
  }
  step "read" { run = "cat /a/keep; test ! -e /a/gone && test ! -e /o/old && test \"$(cat /o/new)\" = new && ls -a /o && echo LAYERS-OK" }
  step "write" { run = "rm /a/keep && test ! -e /a/keep && echo w > /o/w && test \"$(ls /o | tr '\\n' ' ')\" = 'new w ' && echo WRITES-OK" }
  step "nobody" { run = "su -s /bin/sh nobody -c 'cat /o/new && id -u && echo NOBODY-READS'" }
  step "cache" { run = "echo c > /p/c && cat /p/c && echo ws > /workspace/ws && echo OVERLAYS-OK" }
  step "root" { run = "echo root-fs=$(awk '$2 == \"/\" {print $3}' /proc/mounts); echo ws-fs=$(awk '$2 == \"/workspace\" {print $3}' /proc/mounts); echo cache-fs=$(awk '$2 == \"/p\" {print $3}' /proc/mounts)" }
}
`

// fuseProcs lists the user's fuse-overlayfs processes, waiting up to 10
// seconds for those of an ended run to go (each is killed as jobrun ends
// and may still be on its way out).
func fuseProcs(u *rlUser) []string {
	var left []string
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		left = left[:0]
		for _, p := range u.procs() {
			if strings.Contains(p, "fuse-overlayfs") {
				left = append(left, p)
			}
		}
		if len(left) == 0 {
			break
		}
	}
	return left
}

// TestRootlessFuseOverlay: with native overlayfs turned off
// (JOBRUN_ROOTLESS_OVERLAY=fuse), a job's root file system is a
// fuse-overlayfs mount of the layers as the store unpacked them (overlay
// whiteouts and user.overlay.opaque): a deleted file and an opaque
// directory read right, writes land, another user of the job reads
// too (allow_other), a private cache's and the workspace's overlays
// take writes, and nothing is left (no
// fuse-overlayfs process, no mount, no snapshot). The control: the same
// job on native overlayfs reads the same.
func TestRootlessFuseOverlay(t *testing.T) {
	fuseForUsers(t)
	img := whiteoutImage(t)
	u := newRLUser(t, true)
	file := u.write(t, strings.ReplaceAll(layersJob, "IMAGE", img))
	run := func(env ...string) localRun {
		cmd := u.command("local", "--artifacts", filepath.Join(u.home, "artifacts"), file)
		cmd.Env = append(cmd.Env, env...)
		var out, errb strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		t.Logf("as %s %v: exit %d\n%s%s", u.name, env, code, out.String(), errb.String())
		return localRun{out.String(), errb.String(), code}
	}
	for _, c := range []struct {
		name, env, fs string
	}{{"fuse", "JOBRUN_ROOTLESS_OVERLAY=fuse", "fuse.fuse-overlayfs"}, {"native", "", "overlay"}} {
		t.Run(c.name, func(t *testing.T) {
			r := run(c.env)
			if r.code != 0 {
				t.Fatalf("exit %d", r.code)
			}
			u.checkLeaks(t)
			for _, want := range []string{"LAYERS-OK", "WRITES-OK", "NOBODY-READS", "OVERLAYS-OK", "root-fs=" + c.fs + "\n", "ws-fs=" + c.fs + "\n", "cache-fs=" + c.fs + "\n"} {
				if !strings.Contains(r.out, want) {
					t.Errorf("no %q in the output", want)
				}
			}
			if left := fuseProcs(u); len(left) > 0 {
				t.Errorf("fuse-overlayfs left: %v", left)
			}
		})
	}
}

// TestRootlessNoOverlay: with native overlayfs turned off and no
// fuse-overlayfs in PATH, jobrun without root says it has neither, and
// what to install, before anything runs. The control is
// TestRootlessFuseOverlay's run with fuse-overlayfs in PATH.
func TestRootlessNoOverlay(t *testing.T) {
	u := newRLUser(t, true)
	file := u.write(t, example(t, "hello"))
	// A PATH with what jobrun needs (newuidmap, newgidmap) and no
	// fuse-overlayfs.
	bin := filepath.Join(u.home, "pathbin")
	if err := os.Mkdir(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tool := range []string{"newuidmap", "newgidmap"} {
		p, err := exec.LookPath(tool)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(p, filepath.Join(bin, tool)); err != nil {
			t.Fatal(err)
		}
	}
	cmd := u.command("local", "--artifacts", filepath.Join(u.home, "artifacts"), file)
	for i, e := range cmd.Env {
		if strings.HasPrefix(e, "PATH=") {
			cmd.Env[i] = "PATH=" + bin
		}
	}
	cmd.Env = append(cmd.Env, "JOBRUN_ROOTLESS_OVERLAY=fuse")
	out, err := cmd.CombinedOutput()
	t.Logf("%s", out)
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Fatalf("want exit 1, got %v", err)
	}
	for _, want := range []string{"native overlayfs is turned off", "fuse-overlayfs is not installed", "apt install fuse-overlayfs", "Linux 5.11"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("no %q in the message", want)
		}
	}
	if strings.Contains(string(out), "hello from jobrun") {
		t.Error("the job ran")
	}
}

// TestRootlessFuseKilledLeavesNothing: jobrun killed outright (SIGKILL)
// while a job runs on fuse-overlayfs takes its fuse-overlayfs processes
// with it (they hold the mount namespace, which would otherwise live on),
// and the next run, again on fuse-overlayfs, removes the dead snapshot.
// The control: fuse-overlayfs ran while the job did.
func TestRootlessFuseKilledLeavesNothing(t *testing.T) {
	fuseForUsers(t)
	u := newRLUser(t, true)
	file := u.write(t, `
job "long" {
  image = "IMAGE"
  network = "none"
  step "sleep" { run = "echo sleeping; sleep 307" }
}
`)
	run := u.start(t, []string{"JOBRUN_ROOTLESS_OVERLAY=fuse"}, "local", "--artifacts", filepath.Join(u.home, "artifacts"), file)
	run.waitOut(t, "| sleeping")
	var running []string
	for _, p := range u.procs() {
		if strings.Contains(p, "fuse-overlayfs") {
			running = append(running, p)
		}
	}
	if len(running) == 0 {
		t.Fatalf("no fuse-overlayfs of %s's while the job ran: %v", u.name, u.procs())
	}
	run.signal(syscall.SIGKILL)
	run.end(t)
	// The kernel delivers the parent-death signals on its own; wait for
	// them, boundedly.
	for deadline := time.Now().Add(30 * time.Second); len(u.procs()) > 0 && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
	}
	if left := u.procs(); len(left) > 0 {
		t.Fatalf("after SIGKILL: %v", left)
	}
	if b, _ := os.ReadFile("/proc/self/mountinfo"); strings.Contains(string(b), u.home) {
		t.Errorf("mounts left under %s:\n%s", u.home, b)
	}

	// The next run cleans up what the killed one left.
	file = u.write(t, `
job "quick" {
  image = "IMAGE"
  network = "none"
  step "s" { run = "true" }
}
`)
	if r := u.run(t, []string{"JOBRUN_ROOTLESS_OVERLAY=fuse"}, "local", "--artifacts", filepath.Join(u.home, "artifacts"), file); r.code != 0 {
		t.Fatalf("next run: exit %d\n%s%s", r.code, r.out, r.err)
	}
	snaps, _ := filepath.Glob(filepath.Join(u.stateDir(), "snapshots", "*"))
	if len(snaps) > 0 {
		t.Errorf("snapshots left after the next run: %v", snaps)
	}
	if left := fuseProcs(u); len(left) > 0 {
		t.Errorf("fuse-overlayfs left: %v", left)
	}
}
