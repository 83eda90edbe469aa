package image

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/jobrun/jobrun/internal/lockfile"
)

// Snapshot is a job's writable root: an overlay of the image's layers with
// a fresh upper directory of its own. It holds a file lock while it lives.
type Snapshot struct {
	dir     string
	lock    *lockfile.Lock
	mounted bool
}

// Rootfs is the mounted root directory.
func (sn *Snapshot) Rootfs() string { return filepath.Join(sn.dir, "rootfs") }

// maxMountData is what the kernel accepts as mount options: one page.
const maxMountData = 4096

// Snapshot mounts a fresh snapshot of img named id (a plain name, unique on
// the host while it lives). Only its own upper and work directories are
// ever written or deleted; the layers are shared and read-only.
func (s *Store) Snapshot(ctx context.Context, img *Image, id string) (*Snapshot, error) {
	if id == "" || strings.ContainsAny(id, "/\x00") || id == "." || id == ".." {
		return nil, fmt.Errorf("snapshot %q: must be a plain file name", id)
	}
	gc, err := s.sharedGC(ctx)
	if err != nil {
		return nil, err
	}
	defer gc.Release()
	lowers := make([]string, 0, len(img.Layers))
	for i := len(img.Layers) - 1; i >= 0; i-- { // overlay lists the top layer first
		p := s.layerPath(img.Layers[i].DiffID)
		if _, err := os.Stat(p); err != nil {
			return nil, fmt.Errorf("snapshot of %s: layer %s is not unpacked (pruned?): %w", img.Ref, short(img.Layers[i].DiffID), err)
		}
		lowers = append(lowers, p)
	}
	dir := filepath.Join(s.snaps, id)
	lock, err := lockfile.TryAcquire(dir + ".lock")
	if err != nil {
		return nil, fmt.Errorf("snapshot %s: %w", id, err)
	}
	sn := &Snapshot{dir: dir, lock: lock}
	if err := sn.mount(img, lowers); err != nil {
		return nil, errors.Join(fmt.Errorf("snapshot of %s: %w", img.Ref, err), sn.Remove())
	}
	return sn, nil
}

func (sn *Snapshot) mount(img *Image, lowers []string) error {
	if err := os.Mkdir(sn.dir, 0o700); err != nil {
		return err
	}
	for _, d := range []string{"upper", "work", "rootfs"} {
		if err := os.Mkdir(filepath.Join(sn.dir, d), 0o755); err != nil {
			return err
		}
	}
	// Prune reads which layers a live snapshot uses from here.
	var ids []string
	for _, l := range img.Layers {
		ids = append(ids, l.DiffID)
	}
	if err := os.WriteFile(filepath.Join(sn.dir, "layers"), []byte(strings.Join(ids, "\n")), 0o600); err != nil {
		return err
	}
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s",
		strings.Join(lowers, ":"), filepath.Join(sn.dir, "upper"), filepath.Join(sn.dir, "work"))
	if len(opts) >= maxMountData {
		return fmt.Errorf("%d layers do not fit in one overlay mount (%d bytes of options, the kernel takes %d)", len(lowers), len(opts), maxMountData-1)
	}
	if err := unix.Mount("overlay", sn.Rootfs(), "overlay", 0, opts); err != nil {
		return fmt.Errorf("mount overlay: %w", err)
	}
	sn.mounted = true
	return nil
}

// Remove unmounts the snapshot and deletes its upper and work directories.
// It never touches a layer.
func (sn *Snapshot) Remove() error {
	if sn.lock == nil {
		return nil
	}
	if sn.mounted {
		if err := unmount(sn.Rootfs()); err != nil {
			return fmt.Errorf("remove snapshot %s: %w", filepath.Base(sn.dir), err)
		}
		sn.mounted = false
	}
	if err := os.RemoveAll(sn.dir); err != nil {
		return fmt.Errorf("remove snapshot %s: %w", filepath.Base(sn.dir), err)
	}
	os.Remove(sn.dir + ".lock")
	err := sn.lock.Release()
	sn.lock = nil
	return err
}

func unmount(p string) error {
	for i := 0; ; i++ {
		err := unix.Unmount(p, 0)
		if err == nil || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
			return nil
		}
		if !errors.Is(err, unix.EBUSY) || i == 50 {
			// Still busy after a second: detach, so nothing stays mounted.
			if derr := unix.Unmount(p, unix.MNT_DETACH); derr != nil {
				return fmt.Errorf("unmount %s: %w", p, err)
			}
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func isMountpoint(p string) bool {
	var st, parent unix.Stat_t
	if unix.Lstat(p, &st) != nil || unix.Lstat(filepath.Dir(p), &parent) != nil {
		return false
	}
	return st.Dev != parent.Dev
}

// Cleanup removes what killed processes left: snapshots whose lock no live
// process holds, and unfinished downloads and unpacks when no pull is under
// way. Call it when an agent or `jobrun local` starts.
func (s *Store) Cleanup(ctx context.Context) error {
	var errs []error
	ents, err := os.ReadDir(s.snaps)
	if err != nil {
		return fmt.Errorf("snapshot cleanup: %w", err)
	}
	for _, e := range ents {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if !e.IsDir() {
			continue
		}
		dir := filepath.Join(s.snaps, e.Name())
		lock, err := lockfile.TryAcquire(dir + ".lock")
		if err != nil {
			continue // live
		}
		sn := &Snapshot{dir: dir, lock: lock, mounted: isMountpoint(filepath.Join(dir, "rootfs"))}
		if err := sn.Remove(); err != nil {
			errs = append(errs, err)
		} else {
			s.log.Info("removed a snapshot left by a killed process", "snapshot", e.Name())
		}
	}
	// With the gc lock exclusive, no pull or import is writing to tmp/.
	if gc, err := lockfile.TryAcquire(s.gcLock()); err == nil {
		tmp, _ := os.ReadDir(filepath.Join(s.dir, "tmp"))
		for _, e := range tmp {
			if !strings.HasSuffix(e.Name(), ".lock") {
				if err := os.RemoveAll(filepath.Join(s.dir, "tmp", e.Name())); err != nil {
					errs = append(errs, err)
				}
			}
		}
		gc.Release()
	}
	return errors.Join(errs...)
}

func (s *Store) sharedGC(ctx context.Context) (*lockfile.Lock, error) {
	l, err := lockfile.AcquireShared(ctx, s.gcLock())
	if err != nil {
		return nil, fmt.Errorf("image store: %w", err)
	}
	return l, nil
}
