package sandbox

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/jobrun/jobrun/internal/lockfile"
)

// TestRunDir: the run dir is in memory, one per state dir, and a
// directory jobrun would use that someone else could write is refused.
func TestRunDir(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	ra, err := RunDir(a)
	if err != nil {
		t.Fatal(err)
	}
	rb, _ := RunDir(b)
	again, _ := RunDir(a + "/.")
	if ra == rb || ra != again {
		t.Errorf("run dirs %s (again %s) and %s: want one per state dir", ra, again, rb)
	}
	if inMemory("/run") || inMemory("/dev/shm") {
		// Every host this runs on has one of them.
		if strings.HasPrefix(ra, a) || !inMemory(filepath.Dir(filepath.Dir(filepath.Dir(ra)))) {
			t.Errorf("run dir %s is not on a tmpfs", ra)
		}
	} else {
		t.Logf("neither /run nor /dev/shm is a tmpfs: run dir %s", ra)
	}

	ok := filepath.Join(t.TempDir(), "ok")
	if err := privateDir(ok); err != nil {
		t.Errorf("new private dir: %v", err)
	}
	if err := privateDir(ok); err != nil {
		t.Errorf("existing private dir: %v", err)
	}
	open := filepath.Join(t.TempDir(), "open")
	if err := os.Mkdir(open, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(open, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := privateDir(open); err == nil {
		t.Error("a directory anyone can write was accepted")
	}
	link := filepath.Join(t.TempDir(), "link")
	if err := os.Symlink(ok, link); err != nil {
		t.Fatal(err)
	}
	if err := privateDir(link); err == nil {
		t.Error("a symbolic link was accepted")
	}
}

// TestSweepRunDirs: the run dir of a state dir that is gone goes, unless a
// live container (one whose lock is held) is in it; the run dir of a live
// state dir stays; a run dir without its note goes once it is old enough.
func TestSweepRunDirs(t *testing.T) {
	parent := t.TempDir()
	live := t.TempDir()
	mk := func(name, stateDir string, container bool) string {
		dir := filepath.Join(parent, name)
		for _, d := range []string{"runc", "containers"} {
			if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
				t.Fatal(err)
			}
		}
		if container {
			l, err := lockfile.TryAcquire(filepath.Join(dir, "containers", "job", "lock"))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { l.Release() })
		}
		if err := os.WriteFile(filepath.Join(dir, "state-dir"), []byte(stateDir+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	mine := mk("mine", filepath.Join(parent, "gone-too"), false)
	gone := mk("gone", filepath.Join(parent, "no-such-state-dir"), false)
	busy := mk("busy", filepath.Join(parent, "no-such-state-dir"), true)
	kept := mk("kept", live, false)
	// A run dir a live Runtime uses (its shared hold on the users lock).
	used := mk("used", t.TempDir(), false)
	u, err := lockfile.TryAcquireShared(filepath.Join(used, usersFile))
	if err != nil {
		t.Fatal(err)
	}
	defer u.Release()
	// Without a note (left by a process killed while another removed
	// it): one old enough is a dead run dir's and goes; a fresh one may
	// be being made and stays.
	unnamed := mk("unnamed", "", false)
	making := mk("making", "", false)
	for _, d := range []string{unnamed, making} {
		if err := os.Remove(filepath.Join(d, "state-dir")); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-2 * unnamedAge)
	if err := os.Chtimes(unnamed, old, old); err != nil {
		t.Fatal(err)
	}
	rt := &Runtime{run: mine, log: hclog.NewNullLogger()}
	orphans := rt.sweepRunDirs(context.Background())
	for dir, want := range map[string]bool{mine: true, gone: false, busy: true, kept: true, used: true, unnamed: false, making: true} {
		if _, err := os.Stat(dir); (err == nil) != want {
			t.Errorf("%s: exists %v, want %v", filepath.Base(dir), err == nil, want)
		}
	}
	// Only the swept run dir whose state dir is there reports it: the
	// rest of its dead process's leftovers are under it.
	if !slices.Equal(orphans, []string{live}) {
		t.Errorf("orphaned state dirs %q, want %q", orphans, []string{live})
	}
}

// TestCloseRemovesRunDirDuringOthersSweep: a Runtime closing while
// another process's Cleanup sweeps its run dir (holding the users lock
// exclusively, see sweepRunDir) still removes the run dir, once that
// sweep is done: the sweep leaves a run dir whose state dir is there.
// Before removeRunDir waited for it, the run dir stayed (a CI run's
// leak check found one). The control: a run dir another live Runtime
// uses (its shared hold) stays.
func TestCloseRemovesRunDirDuringOthersSweep(t *testing.T) {
	mk := func() string {
		dir := filepath.Join(t.TempDir(), "run")
		if err := makeRunDir(dir); err != nil {
			t.Fatal(err)
		}
		if err := writeNote(dir, t.TempDir()); err != nil {
			t.Fatal(err)
		}
		for _, d := range []string{"runc", "containers"} {
			if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
				t.Fatal(err)
			}
		}
		return dir
	}
	// A sweep (another open file description, as another process's)
	// holds the lock as Close comes, and lets go 50 ms later.
	dir := mk()
	sweep, err := lockfile.TryAcquire(filepath.Join(dir, usersFile))
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		time.Sleep(50 * time.Millisecond)
		sweep.Release()
	}()
	removeRunDir(dir)
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("run dir left after a sweep held it as Close came: %v", err)
	}

	// Control: a live Runtime's shared hold keeps it, at once.
	dir = mk()
	other, err := lockfile.TryAcquireShared(filepath.Join(dir, usersFile))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Release()
	removeRunDir(dir)
	if _, err := os.Stat(dir); err != nil {
		t.Errorf("run dir of a live Runtime removed: %v", err)
	}
}
