package agent

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/jobrun/jobrun/agent/idrange"
	"github.com/jobrun/jobrun/agent/image"
	"github.com/jobrun/jobrun/agent/network"
	"github.com/jobrun/jobrun/agent/sandbox"
	"github.com/jobrun/jobrun/cache"
	"github.com/jobrun/jobrun/internal/leakcheck"
	"github.com/jobrun/jobrun/internal/testenv"
	"github.com/jobrun/jobrun/jobs"
)

// firstRange is where the test pool's ranges start: ids no process or
// file on the host uses.
const firstRange = 3_300_000_000

// usernsRunner returns a Runner on a fresh state dir whose jobs run in user
// namespaces, on a pool of n ranges of its own (an etc/subuid and
// etc/subgid of a test root), with a bridge network and, if caches, a
// cache manager, and img (busybox if empty) pulled; when the test ends it checks that nothing is left behind
// but cache volumes.
func usernsRunner(t *testing.T, n int, caches bool, img string) *Runner {
	t.Helper()
	testenv.RequireRoot(t)
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	if err := os.Mkdir(state, 0o711); err != nil {
		t.Fatal(err)
	}
	// The state dir's path must be traversable by a range's root.
	for d := state; strings.HasPrefix(d, os.TempDir()+"/"); d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	root := filepath.Join(dir, "root")
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	sub := fmt.Sprintf("jobrun:%d:%d\n", firstRange, n*idrange.Size)
	for name, s := range map[string]string{"passwd": "root:x:0:0::/root:/bin/sh\njobrun:x:999:999::/:/bin/false\n", "subuid": sub, "subgid": sub} {
		if err := os.WriteFile(filepath.Join(root, "etc", name), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ids, err := idrange.Open(context.Background(), idrange.Options{Root: root, LockDir: filepath.Join(dir, "locks"), Slots: n})
	if err != nil {
		t.Fatal(err)
	}
	images, err := image.Open(filepath.Join(state, "images"), image.Options{})
	if err != nil {
		t.Fatal(err)
	}
	sb, err := sandbox.New(state, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sb.Close() })
	nm, err := network.New(network.Options{StateDir: state})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nm.Close() })
	r := &Runner{Images: images, Sandbox: sb, WorkDir: filepath.Join(state, "work"), Network: nm, IDs: ids}
	var also []string
	if caches {
		if r.Caches, err = cache.Open(filepath.Join(state, "caches"), cache.Options{}); err != nil {
			t.Fatal(err)
		}
	}
	// A first job pulls the image and makes the stores' directories,
	// which stay; the leak check starts after it.
	warm := `job "warm" {
  image   = "IMAGE"
  network = "none"
  step "x" { run = "true" }
}`
	if caches {
		// The test's cache volume exists before the leak check too.
		warm = strings.Replace(warm, "step", `cache "c" { path = "/cache" }
  step`, 1)
	}
	if img == "" {
		img = busybox(t)
	}
	f := parseJobs(t, img, warm)
	var ev events
	if res := r.Run(context.Background(), job(t, f, "warm"), &ev); res.Status != Succeeded {
		t.Fatalf("warm-up job: %s %s\n%s", res.Status, res.Reason, ev.text())
	}
	// Its range's idmapped view of the layers, which the store keeps,
	// comes off: the check counts the jobs' own.
	if err := images.Close(); err != nil {
		t.Fatal(err)
	}
	run, err := sandbox.RunDir(state)
	if err != nil {
		t.Fatal(err)
	}
	snap := leakcheck.Take(t, state, append(also, run)...)
	t.Cleanup(func() { snap.Check(t) })
	// Before the check (cleanups run last first): the store's kept
	// idmapped views of the layers, one per range, come off.
	t.Cleanup(func() {
		if err := images.Close(); err != nil {
			t.Error(err)
		}
	})
	return r
}

// busybox is the oci-layout reference of the busybox test image.
func busybox(t *testing.T) string {
	return "oci-layout:" + testenv.RequireEnv(t, "JOBRUN_TEST_IMAGES_BUSYBOX", "the busybox test image of scripts/testimages.sh") + ":latest"
}

// parseJobs parses a job file with IMAGE standing for img.
func parseJobs(t *testing.T, img, src string) *jobs.File {
	t.Helper()
	f, diags := jobs.Parse("test.ci.hcl", []byte(strings.ReplaceAll(src, "IMAGE", img)))
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	return f
}

// events records a job's output lines and notices.
type events struct {
	mu    sync.Mutex
	lines []string
}

func (e *events) Event(ev Event) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if ev.Kind == Output || ev.Kind == Notice {
		e.lines = append(e.lines, ev.Text)
	}
}

func (e *events) text() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return strings.Join(e.lines, "\n")
}

func job(t *testing.T, f *jobs.File, name string) *Job {
	t.Helper()
	jb := f.Job(name)
	if jb == nil {
		t.Fatalf("no job %q", name)
	}
	return &Job{Job: jb, Repo: "test", Run: "1", Attempt: 1, Source: t.TempDir(), BaseDir: t.TempDir()}
}

// initUID is the host uid of a container's init, from /proc.
func initUID(t *testing.T, c *sandbox.Container) string {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", c.Pid()))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "Uid:"); ok {
			return strings.Join(strings.Fields(v), " ")
		}
	}
	t.Fatal("no Uid line")
	return ""
}

// TestUsernsJobsGetDisjointRanges: two jobs running at once each run in a
// range of their own: inside, root with the range in uid_map; on the
// host, the range's first uid, never 0. A third job, while both ranges are
// held, waits for one and fails clearly when its timeout ends.
func TestUsernsJobsGetDisjointRanges(t *testing.T) {
	r := usernsRunner(t, 2, false, "")
	f := parseJobs(t, busybox(t), `
job "a" {
  image   = "IMAGE"
  network = "none"
  step "ids" { run = "id -u; cat /proc/self/uid_map; exit 1" }
}
job "b" {
  image   = "IMAGE"
  network = "none"
  step "ids" { run = "id -u; cat /proc/self/uid_map; exit 1" }
}
job "c" {
  image   = "IMAGE"
  network = "none"
  timeout = "2s"
  step "x" { run = "echo MUST-NOT-RUN" }
}
`)
	var a, b, c events
	hostUIDs := map[string]string{}
	var resC Result
	// Inspect runs while a failed job's container (and its lease) is
	// live: a's starts b, b's starts c, so all three overlap.
	r.Inspect = func(ctx context.Context, name string, ct *sandbox.Container) {
		hostUIDs[name] = initUID(t, ct)
		switch name {
		case "a":
			r.Run(ctx, job(t, f, "b"), &b)
		case "b":
			resC = r.Run(ctx, job(t, f, "c"), &c)
		}
	}
	if res := r.Run(context.Background(), job(t, f, "a"), &a); res.Status != Failed {
		t.Fatalf("a: %s %s\n%s", res.Status, res.Reason, a.text())
	}
	ranges := map[string]uint32{}
	for name, ev := range map[string]*events{"a": &a, "b": &b} {
		var uid, host, size uint32
		out := ev.text()
		if _, err := fmt.Sscanf(out[strings.Index(out, "0\n"):], "0\n%d %d %d", &uid, &host, &size); err != nil || uid != 0 || size != idrange.Size {
			t.Fatalf("%s: output %q: %v", name, out, err)
		}
		if host != firstRange && host != firstRange+idrange.Size {
			t.Errorf("%s: range %d, not one of the pool's", name, host)
		}
		ranges[name] = host
		if want := fmt.Sprintf("%d %d %d %d", host, host, host, host); hostUIDs[name] != want {
			t.Errorf("%s: init's host uids %q, want %q", name, hostUIDs[name], want)
		}
	}
	if ranges["a"] == ranges["b"] {
		t.Errorf("a and b share range %d", ranges["a"])
	}
	if resC.Status != Failed || !strings.Contains(resC.Reason, "while waiting for a free id range") {
		t.Errorf("c: %s %q, want a timeout while waiting for a range", resC.Status, resC.Reason)
	}
	if strings.Contains(c.text(), "MUST-NOT-RUN") {
		t.Error("c ran without a range")
	}
}

// TestUsernsBridgeServiceOnPort80: a bridge job in a user namespace (its
// network namespace owned by the job's, so the container mounts its own
// sysfs) reaches its service on port 80, a root service binding a low
// port in the job's namespace; the service runs in the job's range too.
func TestUsernsBridgeServiceOnPort80(t *testing.T) {
	r := usernsRunner(t, 1, false, "")
	f := parseJobs(t, busybox(t), `
job "web" {
  image = "IMAGE"
  service "svc" {
    image   = "IMAGE"
    command = ["sh", "-c", "mkdir -p /www && echo hello-from-svc > /www/index.html && httpd -f -p 80 -h /www"]
    port    = 80
  }
  step "get" { run = "wget -qO- http://svc:80/ && cat /proc/self/uid_map && ls /sys/class/net" }
}
`)
	var ev events
	res := r.Run(context.Background(), job(t, f, "web"), &ev)
	out := ev.text()
	if res.Status != Succeeded {
		t.Fatalf("%s %s\n%s", res.Status, res.Reason, out)
	}
	want := fmt.Sprintf("hello-from-svc\n0 %d %d", firstRange, idrange.Size)
	if got := strings.Join(strings.Fields(out), " "); !strings.Contains(got, strings.Join(strings.Fields(want), " ")) || !strings.Contains(got, "eth0") {
		t.Errorf("output %q, want %q and eth0", out, want)
	}
}

// TestUsernsCacheSharedAcrossRanges: a shared cache volume (a plain
// directory, mounted idmapped) written by a job in one range, as root and
// as a non-root user, is hit and extended by a job in another range; on
// the host its files belong to container ids, not to a range.
func TestUsernsCacheSharedAcrossRanges(t *testing.T) {
	r := usernsRunner(t, 2, true, "")
	f := parseJobs(t, busybox(t), `
job "a" {
  image   = "IMAGE"
  network = "none"
  cache "c" { path = "/cache" }
  step "w" { run = "echo a >> /cache/log && mkdir /cache/u && chown 1000:1000 /cache/u && su -s /bin/sh -c 'echo u > /cache/u/f' nobody || true; cat /proc/self/uid_map; exit 1" }
}
job "b" {
  image   = "IMAGE"
  network = "none"
  cache "c" { path = "/cache" }
  step "r" { run = "cat /cache/log && echo b >> /cache/log && cat /proc/self/uid_map" }
}
`)
	var a, b events
	// b runs while a holds its range: another range.
	var resB Result
	r.Inspect = func(ctx context.Context, name string, _ *sandbox.Container) {
		if name == "a" {
			resB = r.Run(ctx, job(t, f, "b"), &b)
		}
	}
	r.Run(context.Background(), job(t, f, "a"), &a)
	if resB.Status != Succeeded {
		t.Fatalf("b: %s %s\n%s\na:\n%s", resB.Status, resB.Reason, b.text(), a.text())
	}
	if !strings.Contains(b.text(), "a\n") {
		t.Errorf("b did not read a's write: %q", b.text())
	}
	if strings.Contains(a.text(), fmt.Sprintf("0 %d", firstRange)) == strings.Contains(b.text(), fmt.Sprintf("0 %d", firstRange)) {
		t.Errorf("a and b in the same range:\n%s\n%s", a.text(), b.text())
	}
	var seen int
	var logs []string
	filepath.WalkDir(filepath.Join(filepath.Dir(r.WorkDir), "caches"), func(p string, d os.DirEntry, err error) error {
		if err != nil || d.Name() != "log" && d.Name() != "u" {
			return nil
		}
		seen++
		logs = append(logs, p)
		fi, _ := d.Info()
		st := fi.Sys().(*syscall.Stat_t)
		want := uint32(0)
		if d.Name() == "u" {
			want = 1000
		}
		if st.Uid != want || st.Gid != want {
			t.Errorf("%s on the host: %d:%d, want %d", p, st.Uid, st.Gid, want)
		}
		if d.Name() == "log" {
			if bs, _ := os.ReadFile(p); string(bs) != "a\nb\n" {
				t.Errorf("log: %q", bs)
			}
		}
		return nil
	})
	if seen != 2 {
		t.Errorf("found %d of the cache's files on the host", seen)
	}
	// The volume as the warm-up job left it, for the leak check.
	for _, p := range logs {
		os.RemoveAll(p)
	}
}

// TestUsernsDebianPackaging: in a Debian image in a user namespace,
// `dpkg -i` of a local package with files owned by a non-root user
// installs them with that owner, and apt's privilege drop to _apt works.
func TestUsernsDebianPackaging(t *testing.T) {
	img := "oci-layout:" + testenv.RequireEnv(t, "JOBRUN_TEST_IMAGES_DEBIAN", "the debian test image of scripts/testimages.sh") + ":bookworm"
	r := usernsRunner(t, 1, false, img)
	f := parseJobs(t, img, `
job "deb" {
  image   = "IMAGE"
  network = "none"
  step "dpkg" {
    run = <<-EOT
      mkdir -p /tmp/pkg/DEBIAN /tmp/pkg/opt/demo
      printf 'Package: demo\nVersion: 1\nArchitecture: all\nMaintainer: t <t@example.com>\nDescription: d\n' > /tmp/pkg/DEBIAN/control
      echo hi > /tmp/pkg/opt/demo/file
      chown -R 1000:1000 /tmp/pkg/opt/demo
      dpkg-deb --build /tmp/pkg /tmp/demo.deb >/dev/null
      dpkg -i /tmp/demo.deb >/dev/null
      echo "owner $(stat -c %u:%g /opt/demo/file)"
      echo "apt $(/usr/lib/apt/apt-helper drop-privs -- id -un)"
    EOT
  }
}
`)
	var ev events
	res := r.Run(context.Background(), job(t, f, "deb"), &ev)
	out := ev.text()
	if res.Status != Succeeded {
		t.Fatalf("%s %s\n%s", res.Status, res.Reason, out)
	}
	for _, want := range []string{"owner 1000:1000", "apt _apt"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

// TestUsernsSudoFromImageUser: in the debian-sudo image (user builder,
// passwordless sudo), a job in a user namespace runs sudo (no
// no_new_privs): root by it, `dpkg -i` of a package whose files are
// builder's, and `apt-get update` with apt's drop to _apt. The control,
// the same job without a user namespace, cannot sudo (no_new_privs).
func TestUsernsSudoFromImageUser(t *testing.T) {
	img := testenv.Image(t, testenv.DebianSudo)
	r := usernsRunner(t, 1, false, img)
	f := parseJobs(t, img, `
job "sudo" {
  image   = "IMAGE"
  network = "none"
  step "s" {
    run = <<-EOT
      echo "user $(id -u)"
      echo "sudo $(sudo -n id -u)"
      sudo -n dpkg -i /opt/test.deb >/dev/null
      echo "owner $(stat -c %u:%g /opt/jobrun-test)"
      sudo -n apt-get update >/dev/null 2>&1 && echo "apt ok"
    EOT
  }
}
`)
	var ev events
	res := r.Run(context.Background(), job(t, f, "sudo"), &ev)
	out := ev.text()
	if res.Status != Succeeded {
		t.Fatalf("%s %s\n%s", res.Status, res.Reason, out)
	}
	for _, want := range []string{"user 1000", "sudo 0", "owner 1000:1000", "apt ok"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	// The control: without a user namespace no_new_privs stops sudo.
	r.IDs = nil
	var off events
	r.Run(context.Background(), job(t, f, "sudo"), &off)
	if out := off.text(); !strings.Contains(out, "user 1000") || strings.Contains(out, "sudo 0") {
		t.Errorf("without a user namespace, want the step run and sudo refused:\n%s", out)
	}
}
