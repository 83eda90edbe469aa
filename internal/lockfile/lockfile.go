// Package lockfile guards what a live job holds (a snapshot, a cache volume,
// a container's state) with flock(2) locks, so that several jobrun processes
// can share one state directory and start-up clean-up removes only what no
// live process holds. The kernel drops a flock when its holder dies, so a
// killed process never leaves a lock behind.
package lockfile

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// Lock is a held exclusive lock on a file.
type Lock struct {
	f *os.File
}

// ErrLocked reports that another holder has the lock.
var ErrLocked = errors.New("locked by another process")

func open(path string) (*os.File, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return f, nil
}

// TryAcquire takes the lock at path without waiting. It returns ErrLocked
// if another holder (in this process or another) has it.
func TryAcquire(path string) (*Lock, error) {
	return try(path, unix.LOCK_EX)
}

// TryAcquireShared takes the lock at path in shared mode without waiting:
// any number of shared holders may hold it at once, but not alongside an
// exclusive holder.
func TryAcquireShared(path string) (*Lock, error) {
	return try(path, unix.LOCK_SH)
}

func try(path string, how int) (*Lock, error) {
	for {
		f, err := open(path)
		if err != nil {
			return nil, err
		}
		if err := unix.Flock(int(f.Fd()), how|unix.LOCK_NB); err != nil {
			f.Close()
			if errors.Is(err, unix.EWOULDBLOCK) {
				return nil, fmt.Errorf("lock %s: %w", path, ErrLocked)
			}
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		// A holder that removes the guarded entry unlinks the lock file
		// while holding it; we may have opened that file just before. Our
		// lock is good only if the path still names the file we locked.
		if same(f, path) {
			return &Lock{f: f}, nil
		}
		f.Close()
	}
}

func same(f *os.File, path string) bool {
	a, err := f.Stat()
	if err != nil {
		return false
	}
	b, err := os.Stat(path)
	return err == nil && os.SameFile(a, b)
}

// Acquire waits for the lock at path until ctx is done. Waiting polls, so
// that cancellation is prompt without a goroutine stuck in flock(2).
func Acquire(ctx context.Context, path string) (*Lock, error) {
	return wait(ctx, path, TryAcquire)
}

// AcquireShared waits for the lock at path in shared mode until ctx is done.
func AcquireShared(ctx context.Context, path string) (*Lock, error) {
	return wait(ctx, path, TryAcquireShared)
}

func wait(ctx context.Context, path string, try func(string) (*Lock, error)) (*Lock, error) {
	delay := time.Millisecond
	for {
		l, err := try(path)
		if !errors.Is(err, ErrLocked) {
			return l, err
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("lock %s: %w", path, ctx.Err())
		case <-time.After(delay):
		}
		if delay < 100*time.Millisecond {
			delay *= 2
		}
	}
}

// Held reports whether some live holder has the lock at path. A missing
// lock file is not held.
func Held(path string) bool {
	if _, err := os.Stat(path); err != nil {
		return false // a missing lock file is not created just to ask
	}
	l, err := TryAcquire(path)
	if err != nil {
		return errors.Is(err, ErrLocked)
	}
	l.Release()
	return false
}

// Release drops the lock. The lock file stays, so a waiter never races a
// holder that is unlinking it; whoever removes the guarded entry removes the
// lock file with it, while still holding the lock.
func (l *Lock) Release() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}

// Sweep is the start-up clean-up of a directory of per-job entries, each
// guarded by a lock file beside it (ENTRY.lock): for every entry whose
// lock no live process holds, it calls remove with the entry's path and
// the lock, which remove then owns. A missing base holds nothing. The
// errors of remove are joined; ctx stops the sweep between entries.
func Sweep(ctx context.Context, base string, remove func(dir string, l *Lock) error) error {
	ents, err := os.ReadDir(base)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range ents {
		if err := ctx.Err(); err != nil {
			return err
		}
		if !e.IsDir() {
			continue
		}
		dir := filepath.Join(base, e.Name())
		l, err := TryAcquire(dir + ".lock")
		if errors.Is(err, ErrLocked) {
			continue // live
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if err := remove(dir, l); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
