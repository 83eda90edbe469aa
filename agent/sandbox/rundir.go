package sandbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/jobrun/jobrun/internal/rundir"
	"golang.org/x/sys/unix"

	"github.com/jobrun/jobrun/internal/lockfile"
)

// A container's runtime state (libcontainer's state, our lock and /etc
// files) lives only as long as the container, and never past a reboot, so
// it goes in memory, as runc's goes in /run/runc: creating a file on disk
// costs 0.7 ms on this project's test machine (some ten per container),
// on tmpfs some 20 µs. RunDir says where.

// runBases are where RunDir looks for a tmpfs, in order: /run as on any
// systemd host, else /dev/shm, which is a tmpfs nearly everywhere. top is
// the directory jobrun owns there.
var runBases = []struct{ fs, top string }{
	{"/run", "/run/jobrun"},
	{"/dev/shm", "/dev/shm/jobrun"},
}

// RunDir returns the directory holding the runtime state of the
// containers of the Runtime on stateDir: one named after stateDir
// (rundir.Path) below /run/jobrun if /run is a tmpfs, else below
// /dev/shm/jobrun, else stateDir/run.
func RunDir(stateDir string) (string, error) {
	abs, err := filepath.Abs(stateDir)
	if err != nil {
		return "", fmt.Errorf("sandbox state dir %s: %w", stateDir, err)
	}
	if d, ok, err := rootlessRunDir(abs); ok {
		return d, err
	}
	for _, b := range runBases {
		if inMemory(b.fs) {
			return rundir.Path(b.top, abs), nil
		}
	}
	return filepath.Join(abs, "run"), nil
}

// inMemory reports whether dir is on a tmpfs (or ramfs).
func inMemory(dir string) bool {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return false
	}
	return st.Type == unix.TMPFS_MAGIC || st.Type == unix.RAMFS_MAGIC
}

// makeRunDir creates dir (from RunDir). jobrun's directory in a
// world-writable /dev/shm must be root's alone: one made by someone else
// is refused. The caller records its state dir in it (writeNote) once it
// holds the users lock.
func makeRunDir(dir string) error {
	for _, b := range runBases {
		if !strings.HasPrefix(dir, b.top+"/") {
			continue
		}
		if err := privateDir(b.top); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("sandbox runtime dir: %w", err)
	}
	// A job in a user namespace is set up as its range's root, which
	// gets through to its container's files, never lists anything: the
	// dir and jobrun's dirs above it are 0711.
	chain := []string{dir}
	for _, b := range runBases {
		if strings.HasPrefix(dir, b.top+"/") {
			for d := filepath.Dir(dir); len(d) >= len(b.top); d = filepath.Dir(d) {
				chain = append(chain, d)
			}
		}
	}
	for _, d := range chain {
		if err := os.Chmod(d, 0o711); err != nil {
			return fmt.Errorf("sandbox runtime dir: %w", err)
		}
	}
	return nil
}

// writeNote records stateDir in its run dir dir, unless it is there, for
// whoever wonders whose it is (sweepRunDir). It is written under the
// users lock: a process that was removing the run dir before the lock
// was had may have taken the note with it.
func writeNote(dir, stateDir string) error {
	abs, _ := filepath.Abs(stateDir)
	note := filepath.Join(dir, "state-dir")
	if b, err := os.ReadFile(note); err != nil || string(b) != abs+"\n" {
		if err := os.WriteFile(note, []byte(abs+"\n"), 0o600); err != nil {
			return fmt.Errorf("sandbox runtime dir: %w", err)
		}
	}
	return nil
}

// usersFile is the lock, in a run dir, that each live Runtime on it holds
// shared from New to Close: a run dir whose lock is free is no live
// process's, whatever its containers' locks say.
const usersFile = "users"

// Hold keeps other processes' Cleanup away from stateDir's run dir, as a
// live Runtime on it does, until release is called: what a killed process
// left there stays for its own state dir's next Cleanup (or the caller's
// inspection) to find. It makes the run dir if there is none; release
// removes it if nobody uses it and it holds no container, as Close does.
func Hold(ctx context.Context, stateDir string) (release func(), err error) {
	run, err := RunDir(stateDir)
	if err != nil {
		return nil, err
	}
	if err := makeRunDir(run); err != nil {
		return nil, err
	}
	l, err := lockfile.AcquireShared(ctx, filepath.Join(run, usersFile))
	if err != nil {
		return nil, fmt.Errorf("sandbox runtime dir: %w", err)
	}
	if err := writeNote(run, stateDir); err != nil {
		l.Release()
		return nil, err
	}
	return func() {
		l.Release()
		removeRunDir(run)
	}, nil
}

// removeRunDir removes dir (from makeRunDir) if no live Runtime uses it
// and it holds no container. Its users lock held by another live Runtime
// (shared) leaves dir to that one; held by another process's sweep
// (sweepRunDir, exclusive, for milliseconds) it is waited for, up to
// runDirWait: that sweep leaves a run dir whose state dir is still there.
func removeRunDir(dir string) {
	path := filepath.Join(dir, usersFile)
	deadline := time.Now().Add(runDirWait)
	for {
		l, err := lockfile.TryAcquire(path)
		if err == nil {
			defer l.Release()
			removeRunDirLocked(dir)
			return
		}
		if !errors.Is(err, lockfile.ErrLocked) {
			return // gone already, with dir
		}
		s, err := lockfile.TryAcquireShared(path)
		if err == nil {
			s.Release()
			return // a live Runtime's
		}
		if !errors.Is(err, lockfile.ErrLocked) || time.Now().After(deadline) {
			return
		}
		time.Sleep(time.Millisecond)
	}
}

// runDirWait bounds how long removeRunDir waits for another process's
// sweep of the run dir.
const runDirWait = 5 * time.Second

// removeRunDirLocked is removeRunDir for a caller holding dir's users lock
// exclusively: os.Remove removes only empty directories, so a container
// left in it keeps it.
func removeRunDirLocked(dir string) {
	for _, d := range []string{"runc", "containers", "ns"} {
		if err := os.Remove(filepath.Join(dir, d)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return
		}
	}
	_ = os.Remove(filepath.Join(dir, "state-dir"))
	// Unlinked while held, as lockfile's holders remove what they guard.
	_ = os.Remove(filepath.Join(dir, usersFile))
	_ = os.Remove(dir)
}

// sweepRunDirs reclaims the run dirs beside this Runtime's (those of other
// state dirs) that no live Runtime uses (their users lock is free): their
// dead containers and namespaces go (cleanupRun), and then the run dir
// itself if its state dir is gone. That is what a process killed before
// Close left of a state dir no process has open, which may never be
// opened again (a killed test's, `jobrun local --state-dir`'s). It returns
// the state dirs of those run dirs that still exist: the rest of what
// their dead process left is there (OrphanedStateDirs).
func (rt *Runtime) sweepRunDirs(ctx context.Context) []string {
	parent := filepath.Dir(rt.run)
	ents, err := os.ReadDir(parent)
	if err != nil {
		return nil
	}
	var orphans []string
	for _, e := range ents {
		dir := filepath.Join(parent, e.Name())
		if dir == rt.run || !e.IsDir() {
			continue
		}
		state, err := rt.sweepRunDir(ctx, dir)
		if err != nil {
			rt.log.Warn("cleanup of another state dir's run dir", "dir", dir, "error", err)
		}
		if state != "" {
			orphans = append(orphans, state)
		}
	}
	return orphans
}

// sweepRunDir is sweepRunDirs for the run dir dir. It returns dir's state
// dir if it swept dir (no live Runtime uses it) and the state dir is
// still there.
func (rt *Runtime) sweepRunDir(ctx context.Context, dir string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dir, "state-dir"))
	if errors.Is(err, os.ErrNotExist) {
		return "", rt.sweepUnnamedRunDir(ctx, dir)
	}
	if err != nil {
		return "", nil // not a run dir
	}
	l, err := lockfile.TryAcquire(filepath.Join(dir, usersFile))
	if errors.Is(err, lockfile.ErrLocked) {
		return "", nil // a live Runtime's: its own Cleanup is its business
	}
	if err != nil {
		return "", err
	}
	defer l.Release()
	if _, err := os.Stat(filepath.Join(dir, "state-dir")); errors.Is(err, os.ErrNotExist) {
		// Its owner removed it meanwhile (removeRunDirLocked takes the
		// note first): the lock file this made goes, and so does dir.
		removeRunDirLocked(dir)
		return "", nil
	}
	err = rt.cleanupRun(ctx, dir)
	state := strings.TrimSpace(string(b))
	if _, serr := os.Stat(state); errors.Is(serr, os.ErrNotExist) {
		removeRunDirLocked(dir)
		if _, serr := os.Stat(dir); errors.Is(serr, os.ErrNotExist) {
			rt.log.Debug("removed the run dir of a state dir that is gone", "dir", dir)
		}
		return "", err
	}
	if !filepath.IsAbs(state) || state == rt.dir {
		return "", err // not a note makeRunDir wrote
	}
	return state, err
}

// unnamedAge is how old a run dir without its state-dir note must be
// before a sweep takes it for a dead one: makeRunDir writes the note
// microseconds after it makes the dir.
const unnamedAge = time.Minute

// sweepUnnamedRunDir is sweepRunDir for a run dir without its note (one
// left by a process killed while another was removing it): once it is
// older than unnamedAge and no live Runtime holds it, its dead containers
// and namespaces go, and then the dir. Its state dir is unknown, so it is
// not reported as an orphan.
func (rt *Runtime) sweepUnnamedRunDir(ctx context.Context, dir string) error {
	fi, err := os.Stat(dir)
	if err != nil || time.Since(fi.ModTime()) < unnamedAge {
		return nil
	}
	l, err := lockfile.TryAcquire(filepath.Join(dir, usersFile))
	if errors.Is(err, lockfile.ErrLocked) {
		return nil
	}
	if err != nil {
		return err
	}
	defer l.Release()
	if _, err := os.Stat(filepath.Join(dir, "state-dir")); err == nil {
		return nil // named meanwhile: the next sweep's
	}
	err = rt.cleanupRun(ctx, dir)
	removeRunDirLocked(dir)
	return err
}

// privateDir makes sure dir is a directory of this user's that nobody
// else can write, creating it if it is missing.
func privateDir(dir string) error {
	err := os.Mkdir(dir, 0o700)
	if err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("sandbox runtime dir: %w", err)
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("sandbox runtime dir: %w", err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !fi.IsDir() || !ok || int(st.Uid) != os.Geteuid() || fi.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("sandbox runtime dir: %s is not a directory only %d can write; remove it", dir, os.Geteuid())
	}
	return nil
}
