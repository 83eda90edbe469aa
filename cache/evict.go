package cache

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/jobrun/jobrun/internal/lockfile"
)

// Info describes one volume, for listing and pruning.
type Info struct {
	ID   string
	Repo string
	Name string
	Key  string
	// Size is the disk use measured at the last release that uploaded
	// the volume, or by List since the last release.
	Size     int64
	Created  time.Time
	LastUsed time.Time
	Uses     int64
	// InUse says a live job holds the volume now.
	InUse bool
}

// List returns every volume, most recently used first. A volume whose
// size is stale (released since it was last measured) is measured first
// and the size recorded, so that no eviction decision, all of which read
// List, sums an old size; if it cannot be measured List says so in the
// log and reports the last size it had.
func (m *Manager) List() ([]Info, error) {
	ents, err := os.ReadDir(filepath.Join(m.dir, "vols"))
	if err != nil {
		return nil, fmt.Errorf("list caches: %w", err)
	}
	var out []Info
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".evicting") {
			continue
		}
		md, err := m.readMeta(e.Name())
		if err != nil {
			// Being created, or a leftover Cleanup will handle.
			continue
		}
		if md.SizeStale {
			md.Size = m.measureStale(e.Name(), md)
		}
		out = append(out, Info{
			ID: e.Name(), Repo: md.Repo, Name: md.Name, Key: md.Key, Size: md.Size,
			Created: md.Created, LastUsed: md.LastUsed, Uses: md.Uses, InUse: m.inUse(e.Name()),
		})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].LastUsed.After(out[j].LastUsed) })
	return out, nil
}

// Prune evicts the least recently used volumes that no job holds until the
// total size is at most keep bytes; keep <= 0 evicts every volume not in
// use. It returns the volumes it removed.
func (m *Manager) Prune(ctx context.Context, keep int64) ([]Info, error) {
	all, err := m.List()
	if err != nil {
		return nil, err
	}
	var total int64
	for _, v := range all {
		total += v.Size
	}
	var removed []Info
	var errs []error
	for i := len(all) - 1; i >= 0; i-- { // oldest first
		if keep > 0 && total <= keep {
			break
		}
		if err := ctx.Err(); err != nil {
			return removed, err
		}
		v := all[i]
		if v.InUse {
			continue
		}
		ok, err := m.evict(v.ID)
		if err != nil {
			errs = append(errs, err)
		}
		if ok {
			total -= v.Size
			removed = append(removed, v)
			m.log.Info("evicted cache volume", "id", v.ID, "repo", v.Repo, "name", v.Name, "size", v.Size)
		}
	}
	return removed, errors.Join(errs...)
}

// evict removes volume id unless a job holds it or is acquiring it. The
// guard is only tried: a volume someone is busy with is not a candidate.
func (m *Manager) evict(id string) (bool, error) {
	g, err := lockfile.TryAcquire(m.guardPath(id))
	if errors.Is(err, lockfile.ErrLocked) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if m.inUse(id) {
		g.Release()
		return false, nil
	}
	// Rename first so a crash mid-removal leaves no half volume that
	// looks whole.
	trash := filepath.Join(m.dir, "vols", id+".evicting")
	if err := os.RemoveAll(trash); err != nil { // left by a crashed eviction
		g.Release()
		return false, fmt.Errorf("evict cache %s: %w", id, err)
	}
	if err := os.Rename(m.volDir(id), trash); err != nil {
		g.Release()
		return false, fmt.Errorf("evict cache %s: %w", id, err)
	}
	// The volume is gone: its guard goes too, unlinked while held (a
	// waiter that opened it retries on the path; see lockfile), or every
	// key ever used would leave a lock file behind.
	if err := errors.Join(os.RemoveAll(trash), removeLock(g, m.guardPath(id))); err != nil {
		return true, fmt.Errorf("evict cache %s: %w", id, err)
	}
	return true, nil
}

// Cleanup removes what killed processes left behind: private overlays
// (mounts and directories) whose owner is gone, stale user locks, volumes
// whose creation or eviction was interrupted, and the guard lock files of
// volumes that are gone (sweepGuards). It never touches what a live
// process holds, so it is safe at any time.
func (m *Manager) Cleanup(ctx context.Context) error {
	errs := []error{m.cleanupPrivate()}
	ents, err := os.ReadDir(filepath.Join(m.dir, "vols"))
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("cache cleanup: %w", err))...)
	}
	for _, e := range ents {
		if err := ctx.Err(); err != nil {
			return err
		}
		name := e.Name()
		if strings.HasSuffix(name, ".evicting") {
			errs = append(errs, os.RemoveAll(filepath.Join(m.dir, "vols", name)))
			continue
		}
		errs = append(errs, m.cleanupVolume(name))
	}
	// After the volumes: an interrupted one removed above leaves its guard.
	errs = append(errs, m.sweepGuards(ctx))
	return errors.Join(errs...)
}

func (m *Manager) cleanupVolume(id string) error {
	g, err := lockfile.TryAcquire(m.guardPath(id))
	if errors.Is(err, lockfile.ErrLocked) {
		return nil
	}
	if err != nil {
		return err
	}
	defer g.Release()
	var errs []error
	if users, err := os.ReadDir(m.usersDir(id)); err == nil {
		for _, u := range users {
			p := filepath.Join(m.usersDir(id), u.Name())
			if l, err := lockfile.TryAcquire(p); err == nil {
				errs = append(errs, removeLock(l, p))
			}
		}
	}
	if _, err := m.readMeta(id); err != nil {
		// Killed before its first metadata: never handed out, remove.
		m.log.Info("removing incomplete cache volume", "id", id)
		return errors.Join(append(errs, os.RemoveAll(m.volDir(id)))...)
	}
	errs = append(errs, os.RemoveAll(filepath.Join(m.volDir(id), "data.partial")))
	// Temp files of an interrupted metadata write (atomicfile.Write).
	if tmps, err := filepath.Glob(filepath.Join(m.volDir(id), "write-*")); err == nil {
		for _, t := range tmps {
			errs = append(errs, os.Remove(t))
		}
	}
	return errors.Join(errs...)
}
