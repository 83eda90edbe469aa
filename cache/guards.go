package cache

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/jobrun/jobrun/internal/lockfile"
)

// sweepGuards removes the guard lock files (locks/ID.lock) of volumes that
// are gone and whose guard no live process holds: what agents older than
// eviction's removal of the guard left of every evicted key, and what a
// process killed while evicting or before a volume's first metadata left.
// A held guard stays, whatever the volume: its holder may be making the
// volume this moment. A guard is removed while held, and only if its
// volume is still missing then (no one makes a volume without its guard).
func (m *Manager) sweepGuards(ctx context.Context) error {
	dir := filepath.Join(m.dir, "locks")
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("cache cleanup: %w", err)
	}
	gone := func(id string) bool {
		_, err := os.Lstat(m.volDir(id))
		return errors.Is(err, os.ErrNotExist)
	}
	var errs []error
	n := 0
	for _, e := range ents {
		if err := ctx.Err(); err != nil {
			return errors.Join(append(errs, err)...)
		}
		id, ok := strings.CutSuffix(e.Name(), ".lock")
		if !ok || !e.Type().IsRegular() || !gone(id) {
			continue
		}
		g, err := lockfile.TryAcquire(m.guardPath(id))
		if errors.Is(err, lockfile.ErrLocked) {
			continue
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("cache cleanup: %w", err))
			continue
		}
		if !gone(id) {
			g.Release()
			continue
		}
		if err := removeLock(g, m.guardPath(id)); err != nil {
			errs = append(errs, fmt.Errorf("cache cleanup: %w", err))
			continue
		}
		n++
	}
	if n > 0 {
		m.log.Info("removed the lock files of cache volumes that are gone", "count", n)
	}
	return errors.Join(errs...)
}
