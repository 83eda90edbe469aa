package cache

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/hashicorp/go-hclog"
)

// CleanupDir is the part of Cleanup that unmounts, for the caches at dir
// (STATE_DIR/caches) without opening them: the private overlays whose
// owner is gone, mounts and directories. It is for a process that does
// not use those caches, reclaiming what a killed process left in a state
// dir that may never be opened again. Like Cleanup it removes only what no
// live process holds, so it is safe while another process opens or uses
// the caches; it creates no directory and reaches no remote. The volumes
// (no mounts of their own) are left to the state dir's own Cleanup.
// Missing caches have nothing to clean.
func CleanupDir(dir string, log hclog.Logger) error {
	if !filepath.IsAbs(dir) {
		return fmt.Errorf("cache dir %q: not an absolute path", dir)
	}
	if _, err := os.Stat(filepath.Join(dir, "private")); errors.Is(err, os.ErrNotExist) {
		return nil // never opened: nothing of a job's is there
	}
	if log == nil {
		log = hclog.NewNullLogger()
	}
	m := &Manager{dir: filepath.Clean(dir), log: log, readOnly: true}
	return m.cleanupPrivate()
}
