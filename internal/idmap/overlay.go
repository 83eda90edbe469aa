package idmap

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"

	"github.com/jobrun/jobrun/internal/mount"
	"golang.org/x/sys/unix"
)

// Layers is a read-only idmapped view, for one mapping, of the
// directories unpacked layers live in: one mount per directory (the image
// store keeps them all in one), made when a layer there is first asked
// for and kept until Close. Layers unpacked later show through it too.
// Overlays built on a kept Layers cost what a plain overlay does; its
// mounts are host-side only, in a root-only directory.
type Layers struct {
	dir    string
	u      *Userns
	mu     sync.Mutex
	mounts map[string]string // directory of layers -> its idmapped mount
}

// NewLayers makes dir (which must not exist; its parent must) to hold the
// idmapped mounts of u's mapping. It keeps a reference to u's namespace of
// its own: u may be closed.
func NewLayers(u *Userns, dir string) (*Layers, error) {
	f, err := dupFile(u.f)
	if err != nil {
		return nil, fmt.Errorf("idmapped layers %s: %w", dir, err)
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		f.Close()
		return nil, fmt.Errorf("idmapped layers: %w", err)
	}
	return &Layers{dir: dir, u: &Userns{f: f, m: u.m}, mounts: map[string]string{}}, nil
}

func dupFile(f *os.File) (*os.File, error) {
	fd, err := unix.FcntlInt(f.Fd(), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), f.Name()), nil
}

// Mapping is the mapping the layers are seen through.
func (l *Layers) Mapping() Mapping { return l.u.m }

// path is where the layer at p (a directory) shows through the mapping.
func (l *Layers) path(p string) (string, error) {
	p = filepath.Clean(p)
	if fi, err := os.Lstat(p); err != nil {
		return "", fmt.Errorf("layer: %w", err)
	} else if !fi.IsDir() {
		return "", fmt.Errorf("layer %s is not a directory", p)
	}
	src := filepath.Dir(p)
	if ownMount(p) {
		// A clone of the parent's mount would show what is under the
		// layer's mount: map the layer's own.
		src = p
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.mounts == nil {
		return "", errors.New("idmapped layers closed")
	}
	at, ok := l.mounts[src]
	if !ok {
		at = filepath.Join(l.dir, strconv.Itoa(len(l.mounts)))
		if err := os.Mkdir(at, 0o700); err != nil {
			return "", err
		}
		if err := Mount(l.u, src, at, unix.MOUNT_ATTR_RDONLY); err != nil {
			os.Remove(at)
			return "", err
		}
		l.mounts[src] = at
	}
	if src == p {
		return at, nil
	}
	return filepath.Join(at, filepath.Base(p)), nil
}

// Close takes the mounts off and removes the directory. Overlays built on
// the layers keep working: overlayfs holds clones of its lower layers'
// mounts. Calling it again does nothing.
func (l *Layers) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.mounts == nil {
		return nil
	}
	for src, at := range l.mounts {
		if err := mount.Unmount(at); err != nil {
			return fmt.Errorf("close idmapped layers: %w", err)
		}
		// Remove, not RemoveAll: a directory still mounted on shows
		// layers, which must never be emptied.
		if err := os.Remove(at); err != nil {
			return fmt.Errorf("close idmapped layers: %w", err)
		}
		delete(l.mounts, src)
	}
	if err := os.Remove(l.dir); err != nil {
		return fmt.Errorf("close idmapped layers: %w", err)
	}
	l.mounts = nil
	return l.u.Close()
}

// Overlay is a writable root for one id range: an overlay whose lower
// layers are seen through the range's mapping, and whose upper and work
// directories belong to the range's root. The layers stay as they are on
// disk, shared by every range.
type Overlay struct {
	dir     string
	mounted bool
}

// Rootfs is the mounted overlay.
func (o *Overlay) Rootfs() string { return filepath.Join(o.dir, "rootfs") }

// Upper is the overlay's upper directory, where writes land.
func (o *Overlay) Upper() string { return filepath.Join(o.dir, "upper") }

// Overlay makes dir (which must not exist; its parent must) and mounts at
// dir/rootfs an overlay of lowers (top layer first) seen through the
// layers' mapping, with upper and work directories owned by the mapping's
// id 0. On error nothing is left in dir, though the layers' mounts stay
// until Close.
func (l *Layers) Overlay(lowers []string, dir string) (*Overlay, error) {
	mapped, err := l.paths(lowers, dir)
	if err != nil {
		return nil, err
	}
	if err := os.Mkdir(dir, 0o711); err != nil {
		return nil, fmt.Errorf("idmapped overlay: %w", err)
	}
	o := &Overlay{dir: dir}
	if err := o.mount(l.Mapping(), mapped); err != nil {
		return nil, errors.Join(err, o.Remove())
	}
	return o, nil
}

func (l *Layers) paths(lowers []string, dir string) ([]string, error) {
	if len(lowers) == 0 {
		return nil, fmt.Errorf("idmapped overlay %s: no lower layers", dir)
	}
	mapped := make([]string, len(lowers))
	for i, p := range lowers {
		var err error
		if mapped[i], err = l.path(p); err != nil {
			return nil, fmt.Errorf("idmapped overlay %s: %w", dir, err)
		}
	}
	return mapped, nil
}

// mount makes the upper, work and rootfs directories in o.dir and mounts
// the overlay of mapped.
func (o *Overlay) mount(m Mapping, mapped []string) error {
	for _, d := range []string{"upper", "work", "rootfs"} {
		p := filepath.Join(o.dir, d)
		if err := os.Mkdir(p, 0o755); err != nil {
			return fmt.Errorf("idmapped overlay: %w", err)
		}
		if d != "rootfs" {
			if err := os.Chown(p, int(m.UID), int(m.GID)); err != nil {
				return fmt.Errorf("idmapped overlay: %w", err)
			}
		}
	}
	if err := mount.Overlay(o.Rootfs(), mapped, o.Upper(), filepath.Join(o.dir, "work"), 0); err != nil {
		return fmt.Errorf("idmapped overlay (%s): %w", m, err)
	}
	o.mounted = true
	return nil
}

// NewOverlay is Overlay on layers mapped for this one overlay: their
// idmapped mounts, under dir/lower, come off again once overlayfs holds
// them, so a live Overlay is one mount. On error nothing is left.
func NewOverlay(u *Userns, lowers []string, dir string) (*Overlay, error) {
	if err := os.Mkdir(dir, 0o711); err != nil {
		return nil, fmt.Errorf("idmapped overlay: %w", err)
	}
	o := &Overlay{dir: dir}
	l, err := NewLayers(u, filepath.Join(dir, "lower"))
	if err != nil {
		return nil, errors.Join(err, o.Remove())
	}
	mapped, err := l.paths(lowers, dir)
	if err == nil {
		err = o.mount(u.m, mapped)
	}
	if cerr := l.Close(); cerr != nil {
		// A layer may still show under dir/lower: leave dir alone.
		return nil, errors.Join(err, fmt.Errorf("idmapped overlay %s left behind: %w", dir, cerr))
	}
	if err != nil {
		return nil, errors.Join(err, o.Remove())
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

// Remove unmounts the overlay and deletes its directory with the upper and
// work directories. It never touches a layer. Calling it again does
// nothing.
func (o *Overlay) Remove() error {
	if o.mounted {
		if err := mount.Unmount(o.Rootfs()); err != nil {
			return fmt.Errorf("remove idmapped overlay: %w", err)
		}
		o.mounted = false
	}
	// Never recurse through a root still mounted: deleting there would
	// write whiteouts over the layers.
	if mount.IsMountpoint(o.Rootfs()) {
		return fmt.Errorf("remove idmapped overlay: %s is still mounted", o.Rootfs())
	}
	if err := os.RemoveAll(o.dir); err != nil {
		return fmt.Errorf("remove idmapped overlay: %w", err)
	}
	return nil
}
