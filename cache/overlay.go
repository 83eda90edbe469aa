package cache

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jobrun/jobrun/internal/idmap"
	"github.com/jobrun/jobrun/internal/lockfile"
	"github.com/jobrun/jobrun/internal/mount"
	"golang.org/x/sys/unix"
)

// overlay is a private, copy-on-write view of a volume: the shared data
// directory is the read-only lower layer, and the job's writes go to a
// fresh upper directory that is removed with the mount. For a job in a
// user namespace the lower is an idmapped view of the data (its files show
// as the range's ids) and the upper belongs to the range's root; the
// idmapped mount is made under private/N/lower and comes off once the
// overlay holds it.
type overlay struct {
	dir     string // private/N
	lockDir string // private/N.lock
	lock    *lockfile.Lock
	merged  string
}

// mountPrivate mounts an overlay of volume id's data, for u's range if u
// is set. The owner lock is taken before the directory exists, so Cleanup
// never mistakes a private overlay being set up for one left by a dead
// process.
func (m *Manager) mountPrivate(id string, u *idmap.Userns) (*overlay, error) {
	n := id + "-" + nonce()
	o := &overlay{
		dir:     filepath.Join(m.dir, "private", n),
		lockDir: filepath.Join(m.dir, "private", n+".lock"),
	}
	var err error
	if o.lock, err = lockfile.TryAcquire(o.lockDir); err != nil {
		return nil, err
	}
	upper, work := filepath.Join(o.dir, "upper"), filepath.Join(o.dir, "work")
	o.merged = filepath.Join(o.dir, "merged")
	for _, d := range []string{upper, work, o.merged} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, errors.Join(fmt.Errorf("private overlay: %w", err), o.remove())
		}
	}
	const flags = unix.MS_NODEV | unix.MS_NOSUID
	if u != nil {
		err = idmap.MountOverlay(u, []string{m.dataDir(id)}, upper, work, o.merged, o.lower(), flags)
	} else {
		err = mount.Overlay(o.merged, []string{m.dataDir(id)}, upper, work, flags)
	}
	if err != nil {
		return nil, errors.Join(fmt.Errorf("private overlay: %w", err), o.remove())
	}
	return o, nil
}

// lower is where the idmapped view of the data is mounted while the
// overlay is made.
func (o *overlay) lower() string { return filepath.Join(o.dir, "lower") }

// remove unmounts the overlay and deletes its directories and lock. An
// idmapped lower that a crash left mounted comes off first: the deletion
// must never reach the volume's data through it.
func (o *overlay) remove() error {
	err := mount.Unmount(o.merged)
	if err == nil {
		err = idmap.RemoveLowers(o.lower())
	}
	if err == nil {
		err = os.RemoveAll(o.dir)
	}
	return errors.Join(err, removeLock(o.lock, o.lockDir))
}

// cleanupPrivate removes the private overlays whose owner is gone. A lock
// file without a directory is left for a minute: its owner may be between
// taking the lock and making the directory.
func (m *Manager) cleanupPrivate() error {
	pdir := filepath.Join(m.dir, "private")
	ents, err := os.ReadDir(pdir)
	if err != nil {
		return fmt.Errorf("cache cleanup: %w", err)
	}
	var errs []error
	for _, e := range ents {
		name := e.Name()
		if strings.HasSuffix(name, ".lock") {
			if _, err := os.Lstat(filepath.Join(pdir, strings.TrimSuffix(name, ".lock"))); err == nil {
				continue // handled with its directory
			}
			if info, err := e.Info(); err != nil || time.Since(info.ModTime()) < time.Minute {
				continue
			}
		}
		lockPath := filepath.Join(pdir, strings.TrimSuffix(name, ".lock")+".lock")
		l, err := lockfile.TryAcquire(lockPath)
		if err != nil {
			if !errors.Is(err, lockfile.ErrLocked) {
				errs = append(errs, err)
			}
			continue
		}
		o := &overlay{dir: filepath.Join(pdir, strings.TrimSuffix(name, ".lock")), lockDir: lockPath, lock: l}
		o.merged = filepath.Join(o.dir, "merged")
		m.log.Info("removing private cache overlay left by a dead process", "dir", o.dir)
		errs = append(errs, o.remove())
	}
	return errors.Join(errs...)
}
