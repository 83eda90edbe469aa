package image

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/jobrun/jobrun/internal/idmap"
	"github.com/jobrun/jobrun/internal/lockfile"
	"github.com/jobrun/jobrun/internal/mount"
)

// Snapshot is a job's writable root: an overlay of the image's layers with
// a fresh upper directory of its own. It holds a file lock while it lives,
// so that Cleanup in any process leaves it alone and Prune keeps its
// layers.
type Snapshot struct {
	dir     string
	lock    *lockfile.Lock
	mounted bool
}

// Rootfs is the mounted root directory.
func (sn *Snapshot) Rootfs() string { return filepath.Join(sn.dir, "rootfs") }

const (
	// MaxSnapshotID is the longest snapshot id; the store decides whether
	// an image must be flattened assuming ids this long. A snapshot is
	// named by its container (a job's instance, a service's), whose id the
	// sandbox takes up to 63 bytes long; every byte more here is one less
	// per layer in the overlay's one page of options, twice over with
	// SnapshotFor's idmapped lower paths.
	MaxSnapshotID = 63
)

// topFirst reverses lowers (bottom first, as images list them) into the
// order overlay takes them.
func topFirst(lowers []string) []string {
	top := make([]string, len(lowers))
	for i, l := range lowers {
		top[len(lowers)-1-i] = l
	}
	return top
}

// mountData is the overlay mount's options for a snapshot in dir.
func mountData(lowers []string, dir string) string {
	return mount.OverlayData(topFirst(lowers), filepath.Join(dir, "upper"), filepath.Join(dir, "work"))
}

// fits reports whether an overlay of lowers fits in one mount for any
// snapshot id, with the layers as they are (Snapshot) or through their
// idmapped view (SnapshotFor: the store's kept view of the range,
// DIR/idmapped/<process>/<n>/ in front of each layer's name, see
// idmapviews.go). With the default state dir, images of up to 32 layers
// fit.
func (s *Store) fits(lowers []string) bool {
	dir := filepath.Join(s.snaps, strings.Repeat("x", MaxSnapshotID))
	mapped := make([]string, len(lowers))
	for i, l := range lowers {
		mapped[i] = filepath.Join(s.viewsBase(), strings.Repeat("x", 16), "9999", filepath.Base(l))
	}
	return len(mountData(lowers, dir)) < mount.MaxData && len(mountData(mapped, dir)) < mount.MaxData
}

// Snapshot mounts a fresh snapshot of img named id (a plain name of at most
// MaxSnapshotID bytes, unique on the host while it lives) at
// SNAPSHOTS/id/rootfs. Only its own upper and work directories are ever
// written or deleted; the layers are shared and read-only.
func (s *Store) Snapshot(ctx context.Context, img *Image, id string) (*Snapshot, error) {
	return s.SnapshotFor(ctx, img, id, nil)
}

// SnapshotFor is Snapshot for a job in the user namespace u (nil: none,
// Snapshot): the overlay's lower layers are idmapped views of the layers
// through u's mapping (the store's kept view for the range, idmapviews.go), its upper and work directories
// belong to the range's root, and its directory is traversable (0711) by
// the range, as the path from the state dir down to it must be. Files
// show owned by the range's ids; no layer is written or chowned.
func (s *Store) SnapshotFor(ctx context.Context, img *Image, id string, u *idmap.Userns) (*Snapshot, error) {
	if id == "" || len(id) > MaxSnapshotID || strings.ContainsAny(id, "/:,\x00") || id == "." || id == ".." || strings.HasSuffix(id, ".lock") {
		return nil, fmt.Errorf("snapshot %q: want a plain file name of at most %d bytes without ':' or ','", id, MaxSnapshotID)
	}
	// Shared: Prune waits until the snapshot's layers are recorded.
	gc, err := s.sharedGC(ctx)
	if err != nil {
		return nil, err
	}
	defer gc.Release()
	lowers := s.lowerDirs(img)
	for _, p := range lowers {
		if !exists(p) {
			return nil, fmt.Errorf("snapshot of %s: %s is not unpacked (pruned?): pull the image again", img.Ref, filepath.Base(p))
		}
	}
	dir := filepath.Join(s.snaps, id)
	lock, err := lockfile.TryAcquire(dir + ".lock")
	if err != nil {
		return nil, fmt.Errorf("snapshot %s: in use by a live job: %w", id, err)
	}
	if !exists(dir + ".lock") {
		// A remover unlinked the file between our open and flock.
		lock.Release()
		return nil, fmt.Errorf("snapshot %s: removed while being created; try again", id)
	}
	sn := &Snapshot{dir: dir, lock: lock}
	if exists(dir) { // left by a killed process; ours now that we hold the lock
		sn.mounted = mount.IsMountpoint(sn.Rootfs())
		if err := sn.clear(); err != nil {
			lock.Release()
			return nil, fmt.Errorf("snapshot %s: %w", id, err)
		}
	}
	if err := sn.mount(s, lowers, u); err != nil {
		return nil, errors.Join(fmt.Errorf("snapshot of %s: %w", img.Ref, err), sn.Remove())
	}
	return sn, nil
}

func (sn *Snapshot) mount(s *Store, lowers []string, u *idmap.Userns) error {
	if u != nil {
		// Its dir, 0711, with upper, work and the mounted rootfs, on the
		// range's kept view of the layers.
		l, err := s.view(u)
		if err != nil {
			return err
		}
		if _, err := l.Overlay(topFirst(lowers), sn.dir); err != nil {
			return err
		}
		sn.mounted = true
		return sn.writeLowers(s, lowers)
	}
	if err := os.Mkdir(sn.dir, 0o700); err != nil {
		return err
	}
	for _, d := range []string{"upper", "work", "rootfs"} {
		if err := os.Mkdir(filepath.Join(sn.dir, d), 0o755); err != nil {
			return err
		}
	}
	if err := sn.writeLowers(s, lowers); err != nil {
		return err
	}
	if err := mount.Overlay(sn.Rootfs(), topFirst(lowers), filepath.Join(sn.dir, "upper"), filepath.Join(sn.dir, "work"), 0); err != nil {
		return err
	}
	sn.mounted = true
	return nil
}

// writeLowers records the layers the snapshot uses: Prune reads them from
// here.
func (sn *Snapshot) writeLowers(s *Store, lowers []string) error {
	var rel []string
	for _, l := range lowers {
		r, err := filepath.Rel(s.dir, l)
		if err != nil {
			return err
		}
		rel = append(rel, r)
	}
	return os.WriteFile(filepath.Join(sn.dir, "lowers"), []byte(strings.Join(rel, "\n")+"\n"), 0o600)
}

// Remove unmounts the snapshot and deletes its upper and work directories.
// It never touches a layer. Calling it again does nothing.
func (sn *Snapshot) Remove() error {
	if sn.lock == nil {
		return nil
	}
	if err := sn.clear(); err != nil {
		return fmt.Errorf("remove snapshot %s: %w", filepath.Base(sn.dir), err)
	}
	os.Remove(sn.dir + ".lock") // while still holding it, see lockfile.Release
	err := sn.lock.Release()
	sn.lock = nil
	return err
}

// clear unmounts and deletes the snapshot's directory.
func (sn *Snapshot) clear() error {
	if sn.mounted {
		if err := mount.Unmount(sn.Rootfs()); err != nil {
			return err
		}
		sn.mounted = false
	}
	// Never recurse through a root still mounted: deleting there would
	// write whiteouts, or worse, through to a bind mount inside it.
	if mount.IsMountpoint(sn.Rootfs()) {
		return fmt.Errorf("%s is still mounted", sn.Rootfs())
	}
	// The idmapped views of the layers a SnapshotFor killed while making
	// its overlay left (idmap.NewOverlay's dir/lower/N): they show the
	// layers themselves.
	lower := filepath.Join(sn.dir, "lower")
	ents, _ := os.ReadDir(lower)
	for _, e := range ents {
		p := filepath.Join(lower, e.Name())
		if err := mount.Unmount(p); err != nil {
			return err
		}
		if mount.IsMountpoint(p) {
			return fmt.Errorf("%s is still mounted", p)
		}
	}
	return removeTree(sn.dir)
}

// Cleanup removes what killed processes left: snapshots whose lock no live
// process holds (unmounting them), and unfinished downloads and unpacks
// when no pull is under way. Call it when an agent or `jobrun local`
// starts; a snapshot a live process holds is never touched.
func (s *Store) Cleanup(ctx context.Context) error {
	var errs []error
	if err := s.cleanupSnapshots(ctx); err != nil {
		errs = append(errs, err)
	}
	if err := s.cleanupViews(ctx); err != nil {
		errs = append(errs, err)
	}
	// With the gc lock exclusive, no pull or import is writing to tmp/.
	// A store without tmp/ (CleanupDir's of a store never opened) has
	// nothing there, and gets no gc lock file made.
	if _, err := os.Stat(s.tmpDir()); err != nil {
		return errors.Join(errs...)
	}
	if gc, err := lockfile.TryAcquire(s.gcLock()); err == nil {
		tmp, _ := os.ReadDir(s.tmpDir())
		for _, e := range tmp {
			if err := removeTree(filepath.Join(s.tmpDir(), e.Name())); err != nil {
				errs = append(errs, err)
			}
		}
		gc.Release()
	}
	return errors.Join(errs...)
}

// cleanupSnapshots is Cleanup's part for the snapshots: those whose lock
// no live process holds are unmounted and removed.
func (s *Store) cleanupSnapshots(ctx context.Context) error {
	err := lockfile.Sweep(ctx, s.snaps, func(dir string, lock *lockfile.Lock) error {
		sn := &Snapshot{dir: dir, lock: lock, mounted: mount.IsMountpoint(filepath.Join(dir, "rootfs"))}
		if err := sn.Remove(); err != nil {
			return err
		}
		s.log.Info("removed a snapshot left by a killed process", "snapshot", filepath.Base(dir))
		return nil
	})
	if err != nil {
		return fmt.Errorf("snapshot cleanup: %w", err)
	}
	return nil
}
