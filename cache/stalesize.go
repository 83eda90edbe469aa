package cache

import (
	"context"
	"errors"
)

// errRemeasured says a volume was acquired or released while its size was
// being measured: the measurement stands for the caller, the volume stays
// stale for the next.
var errRemeasured = errors.New("used while being measured")

// measureStale measures volume id, whose metadata md says its size is
// stale, and records the size unless the volume was acquired or released
// meanwhile (its metadata's last use moved). It returns the size
// measured, or md.Size, logged as a warning, if the walk failed (a job
// removing files from a volume it holds races with the walk).
func (m *Manager) measureStale(id string, md meta) int64 {
	n, err := diskSize(m.dataDir(id))
	if err != nil {
		m.log.Warn("cache volume size: measure failed; using the last size measured", "id", id, "size", md.Size, "error", err)
		return md.Size
	}
	err = m.withGuard(context.Background(), id, func() error {
		now, err := m.readMeta(id)
		if err != nil {
			return err
		}
		if !now.SizeStale || !now.LastUsed.Equal(md.LastUsed) {
			return errRemeasured
		}
		now.Size, now.SizeStale = n, false
		return m.writeMeta(id, now)
	})
	if err != nil && !errors.Is(err, errRemeasured) {
		m.log.Warn("cache volume size: record the size measured", "id", id, "error", err)
	}
	return n
}
