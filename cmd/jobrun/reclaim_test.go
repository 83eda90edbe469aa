package main

import (
	"bufio"
	"context"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/jobrun/jobrun/agent/sandbox"
	"github.com/jobrun/jobrun/internal/lockfile"
	"github.com/jobrun/jobrun/internal/owner"
	"github.com/jobrun/jobrun/internal/testenv"
)

// TestStartReclaimsKilledStateDirs: a `jobrun local` SIGKILLed mid-job on
// a state dir that is never opened again leaves its jobs' mounts on the
// host (snapshots, idmapped layer views, workspaces, a private cache's
// overlay, a network namespace); the next `jobrun local`, on another state
// dir, removes them at its start, with the jobs' directories, links and
// rules. Two killed processes: one with jobs in user namespaces (one on
// the bridge, one with network "none"), one without (its job's network
// namespace is bind-mounted under its state dir). The positive control is
// a live job on a third state dir, whose process has it open: its mounts
// stay through that start, and its job goes on to its own teardown.
func TestStartReclaimsKilledStateDirs(t *testing.T) {
	bin := buildJobrun(t)
	sleepers := project(t, `
job "bridge" {
  image = "IMAGE"
  cache "deps" {
    path    = "/deps"
    key     = "k"
    sharing = "private"
  }
  step "sleep" { run = "echo c > /deps/c; echo sleeping; sleep 300" }
}
job "offline" {
  image   = "IMAGE"
  network = "none"
  step "sleep" { run = "echo sleeping-offline; sleep 300" }
}
`, map[string]string{})
	bridged := project(t, `
job "bridge" {
  image = "IMAGE"
  step "sleep" { run = "echo sleeping; sleep 300" }
}
`, map[string]string{})

	// The live one, first: a jobrun's start is what reclaims the killed
	// ones' leftovers.
	live := newTestHost(t)
	c := startChild(t, exec.Command(bin, "--state-dir", live.state, "local", "--artifacts", live.artifacts, bridged))
	c.line(t, c.stdout, ends("| sleeping"))

	// The killed ones (newTestHost's leak checks see their snapshots,
	// workspaces, cache overlays, networks and containers gone at the
	// end; no process opens their state dirs again). Both run before
	// either is killed: a start would reclaim what the other left.
	userns, plain := newTestHost(t), newTestHost(t)
	var killed []*child
	run := func(h *testHost, file string, args []string, markers ...func(string) bool) {
		t.Helper()
		argv := append([]string{"--state-dir", h.state, "local", "--artifacts", h.artifacts, "--parallel", "2"}, args...)
		c := startChild(t, exec.Command(bin, append(argv, file)...))
		for _, m := range markers {
			c.line(t, c.stdout, m)
		}
		killed = append(killed, c)
		// Should the next start leave mounts, they must not outlive the
		// test (nor make its temp dirs unremovable).
		t.Cleanup(func() { unmountUnder(h.state) })
		// Their run dirs stay while their state dirs do: tidied here,
		// as the first start after the state dir's removal would.
		t.Cleanup(func() { removeRunDirOf(h.state) })
	}
	run(userns, sleepers, nil, ends("| sleeping"), ends("| sleeping-offline"))
	run(plain, bridged, []string{"--userns", "off"}, ends("| sleeping"))
	// Held until the next start below: a jobrun started meanwhile (by
	// another package's tests too) would reclaim what we look at first.
	releases := []func(){holdStateDir(t, userns.state), holdStateDir(t, plain.state)}
	for _, c := range killed {
		c.signal(t, syscall.SIGKILL)
	}

	// What the killed processes left, as the test means it to be.
	want := map[string][]string{
		userns.state: {"snapshots", "images/idmapped", "work/workspaces", "caches/private"},
		plain.state:  {"snapshots", "work/workspaces", "network"},
		live.state:   {"snapshots", "work/workspaces"},
	}
	before := map[string][]string{}
	for dir, parts := range want {
		before[dir] = mountsUnder(t, dir)
		for _, p := range parts {
			if !hasPrefixed(before[dir], filepath.Join(dir, p)+"/") {
				t.Fatalf("no mount under %s before the next start: the test proves nothing; mounts: %q", p, before[dir])
			}
		}
	}
	for _, h := range []*testHost{userns, plain} {
		if len(links(t, h.state)) == 0 {
			t.Fatalf("the killed job on the bridge left no link of %s: the test proves nothing", h.state)
		}
	}

	quick := project(t, `
job "quick" {
  image = "IMAGE"
  step "x" { run = "echo quick" }
}
`, map[string]string{})
	other := newTestHost(t)
	for _, release := range releases {
		release()
	}
	if r := other.local(t, quick); r.code != 0 {
		t.Fatalf("jobrun local on another state dir: exit %d", r.code)
	}

	for _, h := range []*testHost{userns, plain} {
		if left := mountsUnder(t, h.state); len(left) != 0 {
			t.Errorf("mounts left under the killed process's %s: %q", h.state, left)
		}
		if left := links(t, h.state); len(left) != 0 {
			t.Errorf("links of the killed process's jobs left: %q", left)
		}
		for _, d := range []string{"snapshots", "images/idmapped", "work/workspaces", "caches/private", "network"} {
			if left, _ := filepath.Glob(filepath.Join(h.state, d, "*")); len(left) != 0 {
				t.Errorf("left in the killed process's state dir: %q", left)
			}
		}
	}
	// The live job's mounts are all there, and it goes on to be cancelled
	// (its teardown is newTestHost's leak check).
	if now := mountsUnder(t, live.state); strings.Join(now, "\n") != strings.Join(before[live.state], "\n") {
		t.Errorf("the live job's mounts changed through another jobrun's start:\nbefore %q\nafter  %q", before[live.state], now)
	}
	err := c.signal(t, syscall.SIGINT)
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Errorf("the live jobrun exited with %v, want exit status 1 (cancelled)", err)
	}
	order(t, c.stdout.String(), `sleep ■ cancelled`, `bridge +cancelled`)
}

// mountsUnder lists the mount points under dir on the host, in the order
// of /proc/self/mountinfo.
func mountsUnder(t *testing.T, dir string) []string {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		// Spaces and the like are octal escapes (\040).
		point := strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`).Replace(fields[4])
		if strings.HasPrefix(point, dir+"/") {
			out = append(out, point)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// ends matches a line ending in s.
func ends(s string) func(string) bool {
	return func(l string) bool { return strings.HasSuffix(strings.TrimSpace(l), s) }
}

// unmountUnder detaches every mount under dir, innermost first.
func unmountUnder(dir string) {
	b, _ := os.ReadFile("/proc/self/mountinfo")
	var points []string
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
			points = append(points, f[4])
		}
	}
	for i := len(points) - 1; i >= 0; i-- {
		unix.Unmount(points[i], unix.MNT_DETACH)
	}
}

// hasPrefixed reports whether one of ps starts with prefix.
func hasPrefixed(ps []string, prefix string) bool {
	for _, p := range ps {
		if strings.HasPrefix(p, prefix) {
			return true
		}
	}
	return false
}

// links lists the host's links of the jobs of the state dir: the host
// ends of their veth pairs, whose alias names the state dir's tag.
func links(t *testing.T, stateDir string) []string {
	t.Helper()
	ls, err := netlink.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	tag := "jobrun " + owner.Tag(filepath.Join(stateDir, "network")) + " "
	var out []string
	for _, l := range ls {
		if strings.HasPrefix(l.Attrs().Alias, tag) {
			out = append(out, l.Attrs().Name+" ("+l.Attrs().Alias+")")
		}
	}
	return out
}

// removeRunDirOf removes the run dir of stateDir if it is empty by now:
// what the next sandbox's sweep does once the state dir is gone (which
// also reclaims what a failed test left in it).
func removeRunDirOf(stateDir string) {
	// Taken and let go as a Runtime's New and Close do: the release
	// removes the run dir under its lock if nobody uses it and it holds
	// no container.
	if release, err := sandbox.Hold(context.Background(), stateDir); err == nil {
		release()
	}
}

// TestReclaimOrphansOpensNothing: reclaiming another state dir makes
// nothing there (no store, no network or cache directory, no config): a
// state dir with only its config is as it was.
func TestReclaimOrphansOpensNothing(t *testing.T) {
	testenv.RequireRoot(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "config.hcl"), []byte("userns = \"off\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	before := tree(t, dir)
	reclaimOrphans(context.Background(), hclog.NewNullLogger(), []string{dir}, false)
	if after := tree(t, dir); !slices.Equal(after, before) {
		t.Errorf("reclaiming a state dir changed it:\nbefore %q\nafter  %q", before, after)
	}
}

// TestReclaimOrphansOnlyOwnStateDirs: what a dead process left (entries
// whose lock is free) goes from a state dir of this user's, and stays in
// one another user owns now (the path is no longer jobrun's); an entry
// whose lock a live process holds stays in both.
func TestReclaimOrphansOnlyOwnStateDirs(t *testing.T) {
	testenv.RequireRoot(t)
	dead := []string{"snapshots/dead", "work/workspaces/dead", "work/nocache/dead", "network/dead", "caches/private/dead"}
	mk := func(uid int) string {
		dir := t.TempDir()
		for _, e := range append(dead, "snapshots/live", "work/workspaces/live") {
			if err := os.MkdirAll(filepath.Join(dir, e), 0o700); err != nil {
				t.Fatal(err)
			}
		}
		for _, e := range []string{"snapshots/live", "work/workspaces/live"} {
			l, err := lockfile.TryAcquire(filepath.Join(dir, e) + ".lock")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { l.Release() })
		}
		if err := os.Chown(dir, uid, uid); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	mine, theirs := mk(os.Geteuid()), mk(65534)
	reclaimOrphans(context.Background(), hclog.NewNullLogger(), []string{mine, theirs}, false)
	for _, e := range dead {
		if _, err := os.Stat(filepath.Join(mine, e)); err == nil {
			t.Errorf("%s: a dead process's entry stayed", e)
		}
		if _, err := os.Stat(filepath.Join(theirs, e)); err != nil {
			t.Errorf("%s in another user's dir: %v", e, err)
		}
	}
	for _, e := range []string{"snapshots/live", "work/workspaces/live"} {
		for _, dir := range []string{mine, theirs} {
			if _, err := os.Stat(filepath.Join(dir, e)); err != nil {
				t.Errorf("%s, held by a live process: %v", e, err)
			}
		}
	}
}

// tree lists the paths under dir.
func tree(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		out = append(out, p)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
