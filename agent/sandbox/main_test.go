package sandbox

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/jobrun/jobrun/internal/idmap"
	"github.com/jobrun/jobrun/internal/leakcheck"
	"github.com/jobrun/jobrun/internal/testenv"
)

// probeBin and probe386Bin are the static probe program built by
// TestMain, for this machine and for 32-bit x86.
var probeBin, probe386Bin string

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	if os.Getenv(helperEnv) != "" {
		helper()
		return 0
	}
	if os.Getenv(delegatedEnv) != "" {
		delegatedHelper()
		return 0
	}
	dir, err := os.MkdirTemp("", "sandbox-probe")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	if err := testenv.InstallHelpers(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	probeBin = filepath.Join(dir, "probe")
	probe386Bin = filepath.Join(dir, "probe386")
	if pre := os.Getenv("JOBRUN_TEST_PROBES"); pre != "" {
		// Built beforehand by a lane too slow to build (`make test-vm`).
		probeBin, probe386Bin = filepath.Join(pre, "probe"), filepath.Join(pre, "probe386")
		return m.Run()
	}
	for bin, arch := range map[string]string{probeBin: runtime.GOARCH, probe386Bin: "386"} {
		build := exec.Command("go", "build", "-o", bin, "./internal/probe")
		build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOARCH="+arch)
		if out, err := build.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "build probe for %s: %v\n%s", arch, err, out)
			return 1
		}
	}
	return m.Run()
}

// rootfs builds a busybox root filesystem with the probe, a root user and
// a non-root user "builder" (1000:1000), and returns its path.
func rootfs(t testing.TB) string {
	t.Helper()
	testenv.RequireRoot(t)
	bb := "/bin/busybox"
	if _, err := os.Stat(bb); err != nil {
		t.Skip("needs /bin/busybox (Debian package busybox-static): `make test` installs it")
	}
	dir := t.TempDir()
	root := filepath.Join(dir, "rootfs")
	for _, d := range []string{"bin", "etc", "tmp", "usr/local/bin", "root", "home/builder"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(filepath.Join(root, "tmp"), 0o1777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(filepath.Join(root, "home/builder"), 1000, 1000); err != nil {
		t.Fatal(err)
	}
	copyFile(t, bb, filepath.Join(root, "bin/busybox"))
	copyFile(t, probeBin, filepath.Join(root, "usr/local/bin/probe"))
	copyFile(t, probe386Bin, filepath.Join(root, "usr/local/bin/probe386"))
	out, err := exec.Command(bb, "--list").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range strings.Fields(string(out)) {
		if name == "busybox" {
			continue
		}
		if err := os.Symlink("busybox", filepath.Join(root, "bin", name)); err != nil {
			t.Fatal(err)
		}
	}
	write(t, filepath.Join(root, "etc/passwd"), "root:x:0:0:root:/root:/bin/sh\nbuilder:x:1000:1000:builder:/home/builder:/bin/sh\n")
	write(t, filepath.Join(root, "etc/group"), "root:x:0:\nbuilder:x:1000:\ntools:x:1001:builder\n")
	return root
}

func copyFile(t testing.TB, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o755); err != nil {
		t.Fatal(err)
	}
}

func write(t testing.TB, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

// newRuntime returns a Runtime on a fresh state dir and checks, when the
// test ends, that nothing is left behind.
func newRuntime(t *testing.T) (*Runtime, string) {
	t.Helper()
	return newRuntimeLog(t, hclog.NewNullLogger())
}

// newRuntimeLog is newRuntime with the Runtime logging to log.
func newRuntimeLog(t *testing.T, log hclog.Logger) (*Runtime, string) {
	t.Helper()
	testenv.RequireRoot(t)
	dir := filepath.Join(t.TempDir(), "state")
	run, err := RunDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	// Taken before New: the Runtime's starter and run dir must go with
	// Close.
	snap := leakcheck.Take(t, dir, run)
	t.Cleanup(func() { snap.Check(t) })
	rt, err := New(dir, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close() })
	// Its starter is there before any later snapshot of the test.
	if err := rt.Ready(); err != nil {
		t.Fatal(err)
	}
	// Every container of a test gets the filter the launcher loads (see
	// seccomp.go), not, by timing, libcontainer's for the first ones;
	// TestSeccompFilterIsLibcontainers shows the two are the same.
	rt.waitFilters = true
	return rt, dir
}

// start starts a container and destroys it when the test ends.
func start(t *testing.T, rt *Runtime, s Spec) *Container {
	t.Helper()
	c, err := rt.Start(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Destroy(); err != nil {
			t.Error(err)
		}
	})
	return c
}

// syncBuffer is a bytes.Buffer safe for the copier's goroutine and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// sh runs script with /bin/sh in c and returns its exit and output.
func sh(t *testing.T, c *Container, p Process, script string) (*Exit, string, string) {
	t.Helper()
	var stdout, stderr syncBuffer
	p.Args = []string{"/bin/sh", "-c", script}
	p.Stdout, p.Stderr = &stdout, &stderr
	exit, err := c.Exec(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	return exit, stdout.String(), stderr.String()
}

// helperEnv makes the test binary act as a helper process (see helper);
// with helperUsernsEnv set too, its job is in a user namespace.
const (
	helperEnv       = "JOBRUN_SANDBOX_TEST_HELPER"
	helperUsernsEnv = "JOBRUN_SANDBOX_TEST_HELPER_USERNS"
)

// helper starts a container in the state dir and rootfs named by
// helperEnv ("STATEDIR:ROOTFS"), runs a daemonised process in it, prints
// "ready INITPID" and waits to be killed: an agent dying mid-job.
func helper() {
	stateDir, root, _ := strings.Cut(os.Getenv(helperEnv), ":")
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, "helper:", err)
		os.Exit(1)
	}
	rt, err := New(stateDir, hclog.NewNullLogger())
	if err != nil {
		fail(err)
	}
	spec := Spec{ID: "orphaned", Rootfs: root}
	if os.Getenv(helperUsernsEnv) != "" {
		// A job in a user namespace: its namespaces and an idmapped
		// root in the state dir (snap-orphaned), left for the test.
		ns, err := rt.NewNamespaces("orphaned", rangeB, false)
		if err != nil {
			fail(err)
		}
		o, err := idmap.NewOverlay(ns.Userns(), []string{root}, filepath.Join(stateDir, "snap-orphaned"))
		if err != nil {
			fail(err)
		}
		spec.Rootfs, spec.UserNS = o.Rootfs(), ns.UserPath()
	}
	c, err := rt.Start(context.Background(), spec)
	if err != nil {
		fail(err)
	}
	exit, err := c.Exec(context.Background(), Process{Args: []string{"/bin/sh", "-c", "setsid sleep 1000 >/dev/null 2>&1 &"}})
	if err != nil || !exit.Success() {
		fail(fmt.Errorf("exec: %v %v", exit, err))
	}
	fmt.Printf("ready %d\n", c.initPid)
	select {}
}
