package idmap

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/jobrun/jobrun/internal/mount"
	"golang.org/x/sys/unix"
)

// Overlay is a writable root for one id range: an overlay whose lower
// layers are read-only idmapped mounts of unpacked layers, and whose upper
// and work directories belong to the range's root. The layers stay as they
// are on disk, shared by every range.
type Overlay struct {
	dir     string
	mounted bool
}

// Rootfs is the mounted overlay.
func (o *Overlay) Rootfs() string { return filepath.Join(o.dir, "rootfs") }

// Upper is the overlay's upper directory, where writes land.
func (o *Overlay) Upper() string { return filepath.Join(o.dir, "upper") }

// NewOverlay makes dir (which must not exist; its parent must) and mounts
// at dir/rootfs an overlay of lowers (top layer first) seen through u's
// mapping, with upper and work directories owned by the mapping's id 0.
// The idmapped mounts of the layers' parent directories are attached
// under dir/lower only until the overlay has taken them (it keeps private
// clones of the layers), then taken off again: a live Overlay is one
// mount. On error nothing is left.
func NewOverlay(u *Userns, lowers []string, dir string) (_ *Overlay, err error) {
	if len(lowers) == 0 {
		return nil, fmt.Errorf("idmapped overlay %s: no lower layers", dir)
	}
	o := &Overlay{dir: dir}
	if err := os.Mkdir(dir, 0o711); err != nil {
		return nil, fmt.Errorf("idmapped overlay: %w", err)
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, o.Remove())
		}
	}()
	m := u.Mapping()
	for _, d := range []string{"upper", "work", "rootfs", "lower"} {
		p := filepath.Join(dir, d)
		if err := os.Mkdir(p, 0o755); err != nil {
			return nil, fmt.Errorf("idmapped overlay: %w", err)
		}
		if d == "upper" || d == "work" {
			if err := os.Chown(p, int(m.UID), int(m.GID)); err != nil {
				return nil, fmt.Errorf("idmapped overlay: %w", err)
			}
		}
	}
	// One idmapped mount per directory holding layers (the image store
	// keeps them all in one), not one per layer: a job's cost does not
	// grow with its image's layer count.
	mounts := map[string]string{}
	mapped := make([]string, len(lowers))
	for i, l := range lowers {
		l = filepath.Clean(l)
		if fi, err := os.Lstat(l); err != nil {
			return nil, fmt.Errorf("idmapped overlay %s: layer: %w", dir, err)
		} else if !fi.IsDir() {
			return nil, fmt.Errorf("idmapped overlay %s: layer %s is not a directory", dir, l)
		}
		parent := filepath.Dir(l)
		if ownMount(l) {
			// A clone of the parent's mount would show what is under
			// the layer's mount: map the layer's own.
			parent = l
		}
		at, ok := mounts[parent]
		if !ok {
			at = filepath.Join(dir, "lower", strconv.Itoa(len(mounts)))
			if err := os.Mkdir(at, 0o700); err != nil {
				return nil, fmt.Errorf("idmapped overlay: %w", err)
			}
			if err := Mount(u, parent, at, unix.MOUNT_ATTR_RDONLY); err != nil {
				return nil, fmt.Errorf("idmapped overlay %s: %w", dir, err)
			}
			mounts[parent] = at
		}
		mapped[i] = at
		if parent != l {
			mapped[i] = filepath.Join(at, filepath.Base(l))
		}
	}
	if err := mount.Overlay(o.Rootfs(), mapped, o.Upper(), filepath.Join(dir, "work"), 0); err != nil {
		return nil, fmt.Errorf("idmapped overlay (%s): %w", m, err)
	}
	o.mounted = true
	if err := removeLowers(dir); err != nil {
		return nil, fmt.Errorf("idmapped overlay %s: %w", dir, err)
	}
	return o, nil
}

// ownMount reports whether something is mounted on p, a bind mount from
// the same filesystem included (its mount id differs from its parent's).
func ownMount(p string) bool {
	var st, parent unix.Statx_t
	const how = unix.AT_SYMLINK_NOFOLLOW | unix.AT_STATX_DONT_SYNC
	if unix.Statx(unix.AT_FDCWD, p, how, unix.STATX_MNT_ID, &st) != nil ||
		unix.Statx(unix.AT_FDCWD, filepath.Dir(p), how, unix.STATX_MNT_ID, &parent) != nil {
		return false
	}
	if st.Mask&parent.Mask&unix.STATX_MNT_ID == 0 {
		return mount.IsMountpoint(p) // before Linux 5.8
	}
	return st.Mnt_id != parent.Mnt_id
}

// removeLowers takes the idmapped layer mounts off dir/lower and removes
// it; a directory that was never mounted on is just removed.
func removeLowers(dir string) error {
	base := filepath.Join(dir, "lower")
	ents, err := os.ReadDir(base)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range ents {
		p := filepath.Join(base, e.Name())
		if err := mount.Unmount(p); err != nil {
			return err
		}
		// Remove, not RemoveAll: a directory still mounted on holds a
		// layer, and must never be emptied.
		if err := os.Remove(p); err != nil {
			return err
		}
	}
	return os.Remove(base)
}

// Remove unmounts the overlay and deletes dir with its upper and work
// directories. It never touches a layer. Calling it again does nothing.
func (o *Overlay) Remove() error {
	if o.mounted {
		if err := mount.Unmount(o.Rootfs()); err != nil {
			return fmt.Errorf("remove idmapped overlay: %w", err)
		}
		o.mounted = false
	}
	if err := removeLowers(o.dir); err != nil {
		return fmt.Errorf("remove idmapped overlay: %w", err)
	}
	if mount.IsMountpoint(o.Rootfs()) {
		return fmt.Errorf("remove idmapped overlay: %s is still mounted", o.Rootfs())
	}
	if err := os.RemoveAll(o.dir); err != nil {
		return fmt.Errorf("remove idmapped overlay: %w", err)
	}
	return nil
}
