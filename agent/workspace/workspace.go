// Package workspace prepares a job's source tree on the host, to be mounted
// at /workspace in the job's container: a copy-on-write view of a local
// directory (the user's files are never modified by the job), or a clean
// export of a commit.
//
// Each workspace lives in its own directory under a base directory (one per
// state dir) and holds a file lock while in use, so Cleanup after a crash
// removes only what no live process holds.
package workspace

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/jobrun/jobrun/git"
	"github.com/jobrun/jobrun/internal/idmap"
	"github.com/jobrun/jobrun/internal/lockfile"
	"github.com/jobrun/jobrun/internal/mount"
)

// Workspace is a job's source tree on the host.
type Workspace struct {
	dir     string // base/<name>
	path    string // what the job sees
	mounted bool
	lock    *lockfile.Lock
}

// Path is the directory to mount at /workspace.
func (w *Workspace) Path() string { return w.path }

// Overlay makes a copy-on-write view of src named name under base: the job
// sees src's files, and what it writes lands in a private upper directory
// that Remove discards. Where overlayfs cannot stack on src, it falls back
// to a copy.
//
// u is the job's user namespace, nil for a job without one. With it, the
// overlay's lower is an idmapped view of src (src's files show as the
// range's ids, so the job's root owns what the host's root owns) and the
// upper belongs to the range's root: the runner binds the workspace as it
// is. Where src cannot be idmapped or stacked on, src is copied (owned by
// the host's root, as without a namespace) and the same overlay is made
// over an idmapped view of the copy: never a chowned copy. Nothing owned by
// a range id stays on the host after Remove.
func Overlay(ctx context.Context, base, name, src string, u *idmap.Userns) (*Workspace, error) {
	w, err := create(base, name)
	if err != nil {
		return nil, err
	}
	merged := filepath.Join(w.dir, "merged")
	for _, d := range []string{"upper", "work", "merged"} {
		if err := os.Mkdir(filepath.Join(w.dir, d), 0o755); err != nil {
			return nil, w.fail(err)
		}
	}
	err = w.mount(src, u)
	switch {
	case err == nil:
		w.mounted = true
	case cannotStack(err) && u != nil:
		copied := filepath.Join(w.dir, "copy")
		if err := os.Mkdir(copied, 0o755); err != nil {
			return nil, w.fail(err)
		}
		if err := copyTree(ctx, src, copied); err != nil {
			return nil, w.fail(fmt.Errorf("copy %s: %w", src, err))
		}
		if err := w.mount(copied, u); err != nil {
			return nil, w.fail(fmt.Errorf("workspace over a copy of %s: %w", src, err))
		}
		w.mounted = true
	case cannotStack(err):
		if err := copyTree(ctx, src, merged); err != nil {
			return nil, w.fail(fmt.Errorf("copy %s: %w", src, err))
		}
	default:
		return nil, w.fail(err)
	}
	w.path = merged
	return w, nil
}

// mount mounts the overlay of lower on w.dir/merged, for u's range if u is
// set (the idmapped view of lower is made under w.dir/lower).
func (w *Workspace) mount(lower string, u *idmap.Userns) error {
	upper, work, merged := filepath.Join(w.dir, "upper"), filepath.Join(w.dir, "work"), filepath.Join(w.dir, "merged")
	if u != nil {
		// The idmapped view is of a directory, not of a link to one.
		real, err := filepath.EvalSymlinks(lower)
		if err != nil {
			return fmt.Errorf("workspace: %w", err)
		}
		return idmap.MountOverlay(u, []string{real}, upper, work, merged, filepath.Join(w.dir, "lower"), 0)
	}
	return mount.Overlay(merged, []string{lower}, upper, work, 0)
}

// cannotStack reports whether err says src is on a filesystem overlayfs
// cannot stack on (overlayfs itself, say) or that cannot be idmapped.
func cannotStack(err error) bool {
	return errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EPERM) || errors.Is(err, unix.ENODEV) ||
		errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOSYS)
}

// Checkout exports rev of the repository containing dir under base: only
// committed files, no history. The workspace is dir's place in that tree
// (the job file's directory, not the repository's top), as Overlay's is
// dir itself.
func Checkout(ctx context.Context, base, name, dir, rev string) (*Workspace, string, error) {
	rel, err := inRepo(dir)
	if err != nil {
		return nil, "", err
	}
	w, err := create(base, name)
	if err != nil {
		return nil, "", err
	}
	tree := filepath.Join(w.dir, "tree")
	if err := os.Mkdir(tree, 0o755); err != nil {
		return nil, "", w.fail(err)
	}
	commit, err := git.Export(ctx, dir, rev, tree)
	if err != nil {
		return nil, "", w.fail(err)
	}
	w.path = filepath.Join(tree, rel)
	// The exported tree is the commit's: its rel must be a directory of
	// it, not a link out of it.
	realTree, err := filepath.EvalSymlinks(tree)
	if err != nil {
		return nil, "", w.fail(err)
	}
	real, err := filepath.EvalSymlinks(w.path)
	if err == nil && real != filepath.Join(realTree, rel) {
		err = fmt.Errorf("it is a symbolic link in commit %s", commit[:12])
	}
	if err == nil {
		var fi os.FileInfo
		if fi, err = os.Stat(real); err == nil && !fi.IsDir() {
			err = fmt.Errorf("it is not a directory in commit %s", commit[:12])
		}
	}
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			err = fmt.Errorf("commit %s does not have it (is it committed?)", commit[:12])
		}
		return nil, "", w.fail(fmt.Errorf("workspace %s of %s: %w", rel, dir, err))
	}
	return w, commit, nil
}

// inRepo returns dir's path relative to the top of its work tree: "." for
// a bare repository (the pool's mirrors), whose whole tree is exported.
func inRepo(dir string) (string, error) {
	top, err := git.WorkTreeRoot(dir)
	if err != nil {
		return "", err
	}
	if top == "" {
		return ".", nil
	}
	realTop, err := filepath.EvalSymlinks(top)
	if err != nil {
		return "", fmt.Errorf("workspace: %w", err)
	}
	realDir, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return "", fmt.Errorf("workspace: %w", err)
	}
	rel, err := filepath.Rel(realTop, realDir)
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		return "", fmt.Errorf("workspace: %s is not in the work tree at %s", dir, top)
	}
	return rel, nil
}

// Chown gives the workspace's top directory to uid:gid, so an image with a
// non-root USER can create files in it. Files below keep their owners:
// changing them all would copy every file up through the overlay.
func (w *Workspace) Chown(uid, gid int) error {
	return os.Lchown(w.path, uid, gid)
}

func create(base, name string) (*Workspace, error) {
	if name == "" || strings.ContainsAny(name, "/\x00") || name == "." || name == ".." {
		return nil, fmt.Errorf("workspace name %q: must be a plain file name", name)
	}
	dir := filepath.Join(base, name)
	lock, err := lockfile.TryAcquire(dir + ".lock")
	if err != nil {
		return nil, fmt.Errorf("workspace %s: %w", name, err)
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		lock.Release()
		return nil, fmt.Errorf("workspace %s: %w", name, err)
	}
	return &Workspace{dir: dir, lock: lock}, nil
}

func (w *Workspace) fail(err error) error {
	if rerr := w.Remove(); rerr != nil {
		return errors.Join(err, rerr)
	}
	return err
}

// Remove unmounts the workspace and deletes everything it wrote. The source
// directory of an overlay is untouched.
func (w *Workspace) Remove() error {
	if w.lock == nil {
		return nil
	}
	if w.mounted {
		if err := mount.Unmount(filepath.Join(w.dir, "merged")); err != nil {
			return fmt.Errorf("remove workspace %s: %w", w.dir, err)
		}
		w.mounted = false
	}
	// An idmapped view of the source that a crash left mounted comes off
	// before anything is deleted: deletion must never reach the source.
	if err := idmap.RemoveLowers(filepath.Join(w.dir, "lower")); err != nil {
		return fmt.Errorf("remove workspace %s: %w", w.dir, err)
	}
	if err := os.RemoveAll(w.dir); err != nil {
		return fmt.Errorf("remove workspace %s: %w", w.dir, err)
	}
	os.Remove(w.dir + ".lock")
	err := w.lock.Release()
	w.lock = nil
	return err
}

// Cleanup removes workspaces under base that no live process holds: what a
// killed jobrun left behind.
func Cleanup(ctx context.Context, base string) error {
	err := lockfile.Sweep(ctx, base, func(dir string, lock *lockfile.Lock) error {
		w := &Workspace{dir: dir, lock: lock, mounted: mount.IsMountpoint(filepath.Join(dir, "merged"))}
		return w.Remove()
	})
	if err != nil {
		return fmt.Errorf("workspace cleanup: %w", err)
	}
	return nil
}
