package agent

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/jobrun/jobrun/agent/sandbox"
	"github.com/jobrun/jobrun/internal/idmap"
	"github.com/jobrun/jobrun/internal/lockfile"
	"github.com/jobrun/jobrun/internal/mount"
)

// jobWorkspace is what a job's workspace gives the runner: the directory
// mounted at /workspace, and its removal.
type jobWorkspace interface {
	Path() string
	Remove() error
}

// rangeWorkspace is the copy-on-write workspace of a job in a user
// namespace: an overlay over an idmapped view of the source, its upper
// owned by the job's range, so the job's root owns the source's files as
// host root does and its writes stay in the upper (mounted without idmap:
// overlayfs cannot be idmapped itself).
//
// Interim (uns-core): workspace.Overlay takes the job's user namespace in
// the workspace package's own change (with its crash clean-up and copy
// fallback); this stands in for it until then.
type rangeWorkspace struct {
	o    *idmap.Overlay
	dir  string
	lock *lockfile.Lock // dir.lock, held while live: CleanupScratch
}

func (w *rangeWorkspace) Path() string { return w.o.Rootfs() }

// Remove takes the overlay down, then its lock. Calling it again does
// nothing.
func (w *rangeWorkspace) Remove() error {
	if w.lock == nil {
		return nil
	}
	if err := w.o.Remove(); err != nil {
		return fmt.Errorf("remove workspace: %w", err)
	}
	os.Remove(w.dir + ".lock") // while still holding it, see lockfile.Release
	err := w.lock.Release()
	w.lock = nil
	return err
}

// rangeWorkspaces is where rangeWorkspace overlays live.
func rangeWorkspaces(workDir string) string { return filepath.Join(workDir, "workspaces-userns") }

// cleanupRangeWorkspaces removes the range workspaces of dead processes:
// their overlay and the idmapped views of their source a kill may have
// left under it.
func cleanupRangeWorkspaces(ctx context.Context, workDir string) error {
	return lockfile.Sweep(ctx, rangeWorkspaces(workDir), func(dir string, l *lockfile.Lock) error {
		defer l.Release()
		mounts := []string{filepath.Join(dir, "rootfs")}
		if ents, err := os.ReadDir(filepath.Join(dir, "lower")); err == nil {
			for _, e := range ents {
				mounts = append(mounts, filepath.Join(dir, "lower", e.Name()))
			}
		}
		for _, m := range mounts {
			if err := mount.Unmount(m); err != nil {
				return fmt.Errorf("workspace %s: %w", dir, err)
			}
		}
		if err := os.RemoveAll(dir); err != nil {
			return fmt.Errorf("workspace %s: %w", dir, err)
		}
		os.Remove(dir + ".lock")
		return nil
	})
}

// workspaceFor makes j's workspace: a plain directory (a clean export,
// mounted idmapped in a user namespace) or a copy-on-write view of its
// source. It reports whether the container mounts it idmapped.
func (r *Runner) workspaceFor(ctx context.Context, j *Job, ns *sandbox.Namespaces) (jobWorkspace, bool, error) {
	if ns == nil || j.Clean {
		ws, err := r.workspace(ctx, j)
		if err != nil {
			return nil, false, err
		}
		return ws, true, nil
	}
	dir := filepath.Join(rangeWorkspaces(r.WorkDir), j.instance)
	lock, err := lockfile.TryAcquire(dir + ".lock")
	if err != nil {
		return nil, false, fmt.Errorf("workspace: %w", err)
	}
	o, err := idmap.NewOverlay(ns.Userns(), []string{j.Source}, dir)
	if err != nil {
		os.Remove(dir + ".lock")
		lock.Release()
		return nil, false, fmt.Errorf("workspace: %w", err)
	}
	return &rangeWorkspace{o: o, dir: dir, lock: lock}, false, nil
}
