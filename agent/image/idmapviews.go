package image

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/jobrun/jobrun/internal/idmap"
	"github.com/jobrun/jobrun/internal/lockfile"
)

// idmapViews are the idmapped views of the layer directories this Store
// has shown to jobs in user namespaces: one idmap.Layers per mapping (an
// id range), made by the first SnapshotFor of that range and kept until
// Close, so that the next job of the range builds its overlay on it as a
// plain snapshot does, without mounting and unmounting a view per layer
// directory per job. A view is read-only and shows the layers as its
// range's ids see them, which every job of that range is shown anyway; its
// mounts are host-side, under the store's root-only directory
// (DIR/idmapped/<process>/<n>), and the overlays built on it hold clones
// of them, not the view itself.
//
// The directory of one process's views is guarded by a lock it holds
// (DIR/idmapped/<process>.lock) while the Store is open: Cleanup takes off
// the views of a process that died with its Store open.
type idmapViews struct {
	dir   string // DIR/idmapped/<process>, made with the first view
	lock  *lockfile.Lock
	byMap map[idmap.Mapping]*idmap.Layers
}

// viewsBase is where every process's views of the store live.
func (s *Store) viewsBase() string { return filepath.Join(s.dir, "idmapped") }

// view is the kept view of the layer directories for u's mapping.
func (s *Store) view(u *idmap.Userns) (*idmap.Layers, error) {
	s.viewsMu.Lock()
	defer s.viewsMu.Unlock()
	v := &s.views
	if l := v.byMap[u.Mapping()]; l != nil {
		return l, nil
	}
	if v.dir == "" {
		base := s.viewsBase()
		if err := os.MkdirAll(base, 0o700); err != nil {
			return nil, fmt.Errorf("idmapped views: %w", err)
		}
		var b [8]byte
		rand.Read(b[:])
		dir := filepath.Join(base, hex.EncodeToString(b[:]))
		lock, err := lockfile.TryAcquire(dir + ".lock")
		if err != nil {
			return nil, fmt.Errorf("idmapped views: %w", err)
		}
		if err := os.Mkdir(dir, 0o700); err != nil {
			os.Remove(dir + ".lock")
			lock.Release()
			return nil, fmt.Errorf("idmapped views: %w", err)
		}
		v.dir, v.lock, v.byMap = dir, lock, map[idmap.Mapping]*idmap.Layers{}
	}
	l, err := idmap.NewLayers(u, filepath.Join(v.dir, fmt.Sprint(len(v.byMap))))
	if err != nil {
		return nil, err
	}
	v.byMap[u.Mapping()] = l
	return l, nil
}

// Close takes off the idmapped views of the layers SnapshotFor kept (live
// snapshots keep working: their overlays hold their own clones). Call it
// when the store's last job is done. The store stays usable: a later
// SnapshotFor makes its range's view again. Calling it again does nothing.
func (s *Store) Close() error {
	s.viewsMu.Lock()
	defer s.viewsMu.Unlock()
	v := &s.views
	if v.dir == "" {
		return nil
	}
	var errs []error
	for m, l := range v.byMap {
		if err := l.Close(); err != nil {
			errs = append(errs, err)
			continue
		}
		delete(v.byMap, m)
	}
	if len(errs) > 0 {
		// A view may still be mounted: leave its dir (and the lock
		// file) for Cleanup, which unmounts before it deletes.
		return fmt.Errorf("close image store: %w", errors.Join(errs...))
	}
	if err := os.Remove(v.dir); err != nil {
		return fmt.Errorf("close image store: %w", err)
	}
	os.Remove(v.dir + ".lock") // while still holding it, see lockfile.Release
	err := v.lock.Release()
	*v = idmapViews{}
	return err
}

// cleanupViews takes off the views of processes that died with their
// store open, and removes their directories.
func (s *Store) cleanupViews(ctx context.Context) error {
	return lockfile.Sweep(ctx, s.viewsBase(), func(dir string, lock *lockfile.Lock) error {
		defer lock.Release()
		ents, err := os.ReadDir(dir)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("idmapped views of a dead process: %w", err)
		}
		for _, e := range ents {
			// Each one an idmap.Layers dir: its mounts come off before
			// anything is deleted, so no layer is ever reached.
			if err := idmap.RemoveLowers(filepath.Join(dir, e.Name())); err != nil {
				return fmt.Errorf("idmapped views of a dead process: %w", err)
			}
		}
		if err := os.Remove(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("idmapped views of a dead process: %w", err)
		}
		os.Remove(dir + ".lock")
		s.log.Info("removed the idmapped layer views of a killed process", "dir", filepath.Base(dir))
		return nil
	})
}
