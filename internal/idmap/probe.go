package idmap

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/jobrun/jobrun/internal/mount"
	"golang.org/x/sys/unix"
)

// Probe checks once that this kernel and the filesystem of dir (the state
// directory, where layers and upper directories live) can give a job a
// root without chown: a user namespace, an idmapped mount of a directory
// in dir, and an overlay taking it as a lower layer with an upper
// directory in dir. It works in a temporary directory in dir and leaves
// nothing. The error says which of the three is missing and why.
func Probe(dir string) (err error) {
	// Nothing is written through this mapping.
	probeMap := Mapping{UID: 4_000_000_000, GID: 4_000_000_000, Size: 65536}
	tmp, err := os.MkdirTemp(dir, "idmap-probe-")
	if err != nil {
		return fmt.Errorf("idmap probe: %w", err)
	}
	defer func() {
		if rerr := probeCleanup(tmp); rerr != nil {
			err = errors.Join(err, fmt.Errorf("idmap probe: clean up: %w", rerr))
		}
	}()
	layers := filepath.Join(tmp, "layers")
	for _, d := range []string{"layers/l", "lower", "upper", "work", "rootfs"} {
		if err := os.MkdirAll(filepath.Join(tmp, d), 0o700); err != nil {
			return fmt.Errorf("idmap probe: %w", err)
		}
	}
	if err := os.WriteFile(filepath.Join(layers, "l", "f"), nil, 0o600); err != nil {
		return fmt.Errorf("idmap probe: %w", err)
	}
	u, err := NewUserns(probeMap)
	if err != nil {
		return fmt.Errorf("user namespaces are unavailable: %w", err)
	}
	defer u.Close()
	lower := filepath.Join(tmp, "lower")
	if err := Mount(u, layers, lower, unix.MOUNT_ATTR_RDONLY); err != nil {
		return fmt.Errorf("idmapped mounts are unavailable on %s: %s: %w", dir, whyNoIdmap(dir, err), err)
	}
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(lower, "l", "f"), &st); err != nil {
		return fmt.Errorf("idmap probe: %w", err)
	}
	if st.Uid != probeMap.UID || st.Gid != probeMap.GID {
		return fmt.Errorf("idmapped mounts do not map on %s: a root-owned file shows as %d:%d, want %d:%d", dir, st.Uid, st.Gid, probeMap.UID, probeMap.GID)
	}
	root := filepath.Join(tmp, "rootfs")
	if err := mount.Overlay(root, []string{filepath.Join(lower, "l")}, filepath.Join(tmp, "upper"), filepath.Join(tmp, "work"), 0); err != nil {
		reason := "overlayfs cannot use it"
		if errors.Is(err, unix.EINVAL) {
			reason = "overlayfs refuses idmapped lower layers (Linux 5.19 takes them)"
		}
		return fmt.Errorf("idmapped layers are unavailable on %s: %s: %w", dir, reason, err)
	}
	if err := unix.Stat(filepath.Join(root, "f"), &st); err != nil {
		return fmt.Errorf("idmap probe: %w", err)
	}
	if st.Uid != probeMap.UID {
		return fmt.Errorf("overlayfs on %s drops the id mapping of its lower layer: a root-owned file shows as uid %d, want %d", dir, st.Uid, probeMap.UID)
	}
	return nil
}

// whyNoIdmap names the likely cause of a failed idmapped mount of a
// directory in dir.
func whyNoIdmap(dir string, err error) string {
	switch {
	case errors.Is(err, unix.ENOSYS):
		return "the kernel has no mount_setattr (Linux 5.12 brings idmapped mounts)"
	case errors.Is(err, unix.EINVAL), errors.Is(err, unix.EPERM):
		var fs unix.Statfs_t
		if unix.Statfs(dir, &fs) == nil {
			name := fsName(int64(fs.Type))
			if name == "tmpfs" {
				return "its filesystem is tmpfs, which takes idmapped mounts from Linux 6.3"
			}
			return "its filesystem (" + name + ") does not take idmapped mounts"
		}
		return "its filesystem does not take idmapped mounts"
	}
	return "cannot make one"
}

// fsName names the filesystems a state dir is likely on (statfs(2)).
func fsName(magic int64) string {
	switch magic {
	case unix.EXT4_SUPER_MAGIC:
		return "ext4"
	case unix.XFS_SUPER_MAGIC:
		return "xfs"
	case unix.BTRFS_SUPER_MAGIC:
		return "btrfs"
	case unix.TMPFS_MAGIC:
		return "tmpfs"
	case unix.OVERLAYFS_SUPER_MAGIC:
		return "overlayfs"
	case unix.NFS_SUPER_MAGIC:
		return "nfs"
	case unix.RAMFS_MAGIC:
		return "ramfs"
	case unix.FUSE_SUPER_MAGIC:
		return "fuse"
	}
	return fmt.Sprintf("filesystem type %#x", magic)
}

// probeCleanup unmounts what Probe mounted in tmp and removes it.
func probeCleanup(tmp string) error {
	for _, d := range []string{"rootfs", "lower"} {
		if err := mount.Unmount(filepath.Join(tmp, d)); err != nil {
			return err
		}
		if mount.IsMountpoint(filepath.Join(tmp, d)) {
			return fmt.Errorf("%s is still mounted", filepath.Join(tmp, d))
		}
	}
	return os.RemoveAll(tmp)
}
