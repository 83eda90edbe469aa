package agent

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"

	"github.com/jobrun/jobrun/internal/lockfile"
)

// scratchBase is where --no-cache puts each cache's empty directory:
// WorkDir/nocache/NAME, guarded by NAME.lock while its job lives.
func scratchBase(workDir string) string { return filepath.Join(workDir, "nocache") }

// scratch is an empty directory standing in for a cache under --no-cache,
// thrown away with its job.
type scratch struct {
	dir  string
	lock *lockfile.Lock
}

// newScratch makes a scratch directory under workDir, its lock taken
// before the directory exists, so CleanupScratch never takes a live one.
func newScratch(workDir string) (*scratch, error) {
	base := scratchBase(workDir)
	if err := os.MkdirAll(base, 0o700); err != nil {
		return nil, fmt.Errorf("scratch dir: %w", err)
	}
	var b [6]byte
	rand.Read(b[:])
	dir := filepath.Join(base, hex.EncodeToString(b[:]))
	lock, err := lockfile.TryAcquire(dir + ".lock")
	if err != nil {
		return nil, fmt.Errorf("scratch dir: %w", err)
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		os.Remove(dir + ".lock")
		lock.Release()
		return nil, fmt.Errorf("scratch dir: %w", err)
	}
	return &scratch{dir: dir, lock: lock}, nil
}

// remove deletes the directory, then its lock file, then drops the lock.
func (s *scratch) remove() error {
	if err := os.RemoveAll(s.dir); err != nil {
		return fmt.Errorf("remove scratch dir: %w", err)
	}
	os.Remove(s.dir + ".lock")
	return s.lock.Release()
}

// CleanupScratch removes the --no-cache scratch directories under workDir
// that no live process holds: what a killed run left behind.
func CleanupScratch(ctx context.Context, workDir string) error {
	err := lockfile.Sweep(ctx, scratchBase(workDir), func(dir string, l *lockfile.Lock) error {
		return (&scratch{dir: dir, lock: l}).remove()
	})
	if err != nil {
		return fmt.Errorf("scratch dirs cleanup: %w", err)
	}
	return nil
}
