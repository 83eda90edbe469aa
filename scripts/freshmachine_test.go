// Package scripts_test checks the repository's scripts as a new user meets
// them: `make build` on a fresh Debian machine, in a debootstrap root.
package scripts_test

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jobrun/jobrun/internal/testenv"
)

// freshRoot is a fresh Debian machine: an overlay on the debootstrap
// minbase root of scripts/testimages.sh (left as it is), with the Go
// toolchain bind-mounted in and a copy of the source tree. Everything else
// the machine gets it gets from Debian's mirror, as a user's would.
type freshRoot struct {
	t                       *testing.T
	lower, upper, work, mnt string
	goroot, gomod, gobc     string // the host's toolchain, module and build caches
	src                     string // the tree, at the same path as on the host
	debs                    string // the host's copy of the root's /var/cache/apt/archives
}

// newFreshRoot prepares the overlay's directories and copies the tree
// (what git tracks plus untracked files it does not ignore, as a clone
// with the working tree's changes) into it as a repository of its own.
func newFreshRoot(t *testing.T) *freshRoot {
	t.Helper()
	testenv.RequireRoot(t)
	lower := testenv.RequireEnv(t, "JOBRUN_TEST_ROOT_MINBASE", "the debootstrap minbase root of scripts/testimages.sh")
	for _, tool := range []string{"unshare", "git", "go"} {
		testenv.RequireTool(t, tool)
	}
	repo, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("go", "env", "GOROOT", "GOMODCACHE", "GOCACHE").Output()
	if err != nil {
		t.Fatalf("go env: %v", err)
	}
	env := strings.Fields(string(out))
	if len(env) != 3 {
		t.Fatalf("go env GOROOT GOMODCACHE GOCACHE: %q", out)
	}
	// Every module the build needs is in the host's cache: the root
	// builds with GOPROXY=off.
	dl := exec.Command("go", "mod", "download")
	dl.Dir = repo
	if out, err := dl.CombinedOutput(); err != nil {
		t.Fatalf("go mod download: %v\n%s", err, out)
	}

	// The Debian packages the root downloads are kept on the host for the
	// next run (they change nothing but the time to fetch them); one run at
	// a time uses them, as apt locks that directory.
	cache, err := os.UserCacheDir()
	if err != nil {
		t.Fatal(err)
	}
	debs := filepath.Join(cache, "jobrun-freshmachine", "apt-archives")
	if err := os.MkdirAll(filepath.Join(debs, "partial"), 0o755); err != nil {
		t.Fatal(err)
	}
	lock, err := os.OpenFile(filepath.Join(debs, "..", "lock"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lock.Close() })
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	r := &freshRoot{debs: debs, t: t, lower: lower, upper: filepath.Join(dir, "upper"), work: filepath.Join(dir, "work"),
		mnt: filepath.Join(dir, "mnt"), goroot: env[0], gomod: env[1], gobc: env[2], src: repo}
	for _, d := range []string{r.upper, r.work, r.mnt} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// As Debian's container images do: dpkg skips its fsyncs, which here
	// are most of the time the packages take (the root is thrown away).
	speedup := filepath.Join(r.upper, "etc", "dpkg", "dpkg.cfg.d", "unsafe-io")
	if err := os.MkdirAll(filepath.Dir(speedup), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(speedup, []byte("force-unsafe-io\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ls := exec.Command("git", "ls-files", "-z", "--cached", "--others", "--exclude-standard")
	ls.Dir = repo
	names, err := ls.Output()
	if err != nil {
		t.Fatalf("git ls-files: %v", err)
	}
	dst := filepath.Join(r.upper, repo)
	n := 0
	for _, name := range strings.Split(strings.TrimRight(string(names), "\x00"), "\x00") {
		if copyFile(t, filepath.Join(repo, name), filepath.Join(dst, name)) {
			n++
		}
	}
	if n < 100 {
		t.Fatalf("copied %d files of the tree", n)
	}
	// The tree's parents made in the upper dir hide the root's own (an
	// upper dir's mode wins in the overlay): give them the root's modes,
	// so a clone under /tmp leaves the root's /tmp world-writable.
	for d := filepath.Dir(repo); d != "/"; d = filepath.Dir(d) {
		if fi, err := os.Stat(filepath.Join(lower, d)); err == nil && fi.IsDir() {
			if err := os.Chmod(filepath.Join(r.upper, d), fi.Mode()&(os.ModePerm|os.ModeSticky|os.ModeSetgid)); err != nil {
				t.Fatal(err)
			}
		}
	}
	git := func(args ...string) {
		cmd := exec.Command("git", append([]string{"-c", "user.name=fresh", "-c", "user.email=fresh@example.com"}, args...)...)
		cmd.Dir = dst
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	git("init", "-q")
	git("add", "-A")
	git("commit", "-q", "-m", "the tree as the user has it")
	return r
}

// copyFile copies a regular file or a symbolic link, keeping its mode; a
// tracked file deleted in the working tree is skipped.
func copyFile(t *testing.T, from, to string) bool {
	t.Helper()
	fi, err := os.Lstat(from)
	if os.IsNotExist(err) {
		return false
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSymlink != 0 {
		target, err := os.Readlink(from)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, to); err != nil {
			t.Fatal(err)
		}
		return true
	}
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, fi.Mode().Perm())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	return true
}

// run runs script with sh -e in the root, as root or as nobody, in the tree's directory, and returns its combined output. The
// mounts live in a mount namespace of their own and go with it.
func (r *freshRoot) run(script string, asNobody bool) (string, error) {
	r.t.Helper()
	var setup strings.Builder
	fmt.Fprintf(&setup, "set -e\nm=%s\n", r.mnt)
	fmt.Fprintf(&setup, "mount -t overlay overlay -o lowerdir=%s,upperdir=%s,workdir=%s \"$m\"\n", r.lower, r.upper, r.work)
	fmt.Fprintf(&setup, "mount --rbind /dev \"$m/dev\"\nmount -t proc proc \"$m/proc\"\n")
	for _, b := range []struct {
		dir string
		ro  bool
	}{{r.goroot, true}, {r.gomod, true}, {r.gobc, false}} {
		fmt.Fprintf(&setup, "mkdir -p \"$m%[1]s\"\nmount --bind %[1]s \"$m%[1]s\"\n", b.dir)
		if b.ro {
			fmt.Fprintf(&setup, "mount -o remount,bind,ro \"$m%s\"\n", b.dir)
		}
	}
	fmt.Fprintf(&setup, "mount --bind %s \"$m/var/cache/apt/archives\"\n", r.debs)
	fmt.Fprintf(&setup, "cp /etc/resolv.conf \"$m/etc/resolv.conf\"\n")
	user := ""
	if asNobody {
		user = "setpriv --reuid=65534 --regid=65534 --clear-groups "
	}
	env := []string{
		"PATH=" + r.goroot + "/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME=/root", "LANG=C.UTF-8", "GOPROXY=off", "GOTOOLCHAIN=local", "GOFLAGS=",
		"GOMODCACHE=" + r.gomod, "GOCACHE=" + r.gobc,
	}
	if asNobody {
		env[1] = "HOME=/tmp"
	}
	fmt.Fprintf(&setup, "exec chroot \"$m\" %s/usr/bin/env -i -C %s %s sh -ec %s\n",
		user, r.src, strings.Join(env, " "), shellQuote(script))
	cmd := exec.Command("unshare", "--mount", "--propagation", "private", "sh", "-c", setup.String())
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// TestMakeBuildOnFreshDebian is the first command of the README on a fresh
// Debian 12 machine that has only make and Go (what the README asks for):
// `make build` as a user stops with the exact apt-get line to run; as root
// it installs the build packages first and builds. Control: the root lacks
// them, so a build that ran before installing them fails. The demo's and
// the tests' package lists resolve on the same machine.
func TestMakeBuildOnFreshDebian(t *testing.T) {
	r := newFreshRoot(t)
	must := func(what, script string, asNobody bool) string {
		t.Helper()
		start := time.Now()
		out, err := r.run(script, asNobody)
		if err != nil {
			t.Fatalf("%s: %v\n%s", what, err, tail(out, 40))
		}
		t.Logf("%s: %s", what, time.Since(start).Round(100*time.Millisecond))
		return out
	}

	// The user's part: make, from Debian (Go is bind-mounted).
	must("install make", "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends make >/dev/null", false)

	// Control: no build package, and Go cannot build jobrun yet.
	out, err := r.run(`for p in gcc libc6-dev pkg-config libseccomp-dev git; do
  if dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then echo "installed: $p"; fi
done
CGO_ENABLED=1 go build -tags seccomp -o /tmp/control ./cmd/jobrun`, false)
	if err == nil || strings.Contains(out, "installed: ") || !regexp.MustCompile(`gcc|libseccomp`).MatchString(out) {
		t.Fatalf("control: the fresh root builds jobrun or has build packages already (err %v):\n%s", err, tail(out, 20))
	}

	// Not root: make build stops before building, with the line to run.
	out, err = r.run("make build", true)
	if err == nil {
		t.Fatalf("make build as nobody on a fresh machine succeeded:\n%s", out)
	}
	line := lineRE.FindStringSubmatch(out)
	if line == nil {
		t.Fatalf("make build as nobody: no apt-get install line:\n%s", out)
	}
	t.Logf("make build as nobody:\n%s", out)
	for _, p := range []string{"gcc", "libc6-dev", "pkg-config", "libseccomp-dev", "git"} {
		if !slices.Contains(strings.Fields(line[1]), p) {
			t.Errorf("the apt-get line lacks %s: %s", p, line[1])
		}
	}
	if strings.Contains(out, "go build") {
		t.Errorf("make build as nobody ran go build before the packages were there:\n%s", out)
	}
	// The line is one apt-get takes (simulated: installing is the next part's).
	must("the printed line", line[1]+" --simulate >/dev/null", false)

	// Root: make build installs, then builds jobrun and its helpers.
	out = must("make build as root", "make build && bin/jobrun version && ldd bin/jobrun && ls bin", false)
	for _, want := range []string{"deps: installing ", "jobrun ", "libseccomp.so.2 => /", "jobrun-launcher", "jobrun-starter"} {
		if !strings.Contains(out, want) {
			t.Errorf("make build as root: output lacks %q:\n%s", want, tail(out, 40))
		}
	}
	// A second run has nothing to install.
	if out := must("deps again", "scripts/deps.sh build", false); strings.TrimSpace(out) != "" {
		t.Errorf("scripts/deps.sh build after make build: %s", out)
	}

	// make demo's and make test's levels name packages this Debian has,
	// beyond the build's (what is left to install; simulated: downloading
	// PostgreSQL and chromium is not this test's business).
	for _, level := range []struct{ name, pkg string }{{"demo", "skopeo"}, {"test", "postgresql"}} {
		out, err := r.run("scripts/deps.sh "+level.name, true)
		m := lineRE.FindStringSubmatch(out)
		if err == nil || m == nil {
			t.Fatalf("scripts/deps.sh %s as nobody: err %v, no apt-get line:\n%s", level.name, err, out)
		}
		if f := strings.Fields(m[1]); !slices.Contains(f, level.pkg) || slices.Contains(f, "gcc") {
			t.Errorf("scripts/deps.sh %s wants %q: want %s and no build package", level.name, m[1], level.pkg)
		}
		must("the line of "+level.name, m[1]+" --simulate >/dev/null", false)
	}
}

// lineRE finds the apt-get line scripts/deps.sh prints when not root.
var lineRE = regexp.MustCompile(`(?m)^\s+(apt-get install -y --no-install-recommends [a-z0-9 .+-]+)$`)

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = append([]string{"..."}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}
