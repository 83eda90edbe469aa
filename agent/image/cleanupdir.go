package image

import (
	"context"
	"path/filepath"

	"github.com/hashicorp/go-hclog"
)

// CleanupDir is Cleanup of the store at dir, with its snapshots at the
// default place (DIR/../snapshots), without opening it: for a process that
// does not use that store, reclaiming what a killed process left in a
// state dir that may never be opened again. Like Cleanup it removes only
// what no live process holds (each snapshot and each process's idmapped
// views behind a lock of its own, unfinished downloads behind the gc
// lock), so it is safe while another process opens or uses the store. It
// makes nothing there (no directory, no config): a missing store has
// nothing to clean.
func CleanupDir(ctx context.Context, dir string, log hclog.Logger) error {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	s := &Store{dir: dir, snaps: filepath.Join(filepath.Dir(dir), "snapshots"), log: log}
	return s.Cleanup(ctx)
}
