// Package mount is the one place jobrun mounts and unmounts overlays on the
// host: image snapshots, copy-on-write workspaces and private caches.
package mount

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// MaxData is what the kernel takes as mount options: one page, with its
// terminating NUL.
const MaxData = 4096

// OverlayData is the overlay mount options for lowers (top layer first),
// upper and work, with overlayfs's separators escaped in every path.
func OverlayData(lowers []string, upper, work string) string {
	esc := make([]string, len(lowers))
	for i, l := range lowers {
		esc[i] = escape(l)
	}
	return fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", strings.Join(esc, ":"), escape(upper), escape(work))
}

func escape(p string) string {
	return strings.NewReplacer(`\`, `\\`, `,`, `\,`, `:`, `\:`).Replace(p)
}

// Overlay mounts an overlay of lowers (top layer first) with upper and work
// on target. flags are mount flags such as unix.MS_NOSUID|unix.MS_NODEV.
func Overlay(target string, lowers []string, upper, work string, flags uintptr) error {
	if fuseOverlay() { // jobrun without root, on fuse-overlayfs: fuse.go
		return mountFuse(target, lowers, upper, work, flags)
	}
	data := OverlayData(lowers, upper, work) + userXattr()
	if len(data)+len(",volatile") >= MaxData {
		return fmt.Errorf("mount overlay on %s: %d lower directories need %d bytes of options, the kernel takes %d",
			target, len(lowers), len(data), MaxData-1)
	}
	// Every overlay jobrun makes is thrown away with its job, and start-up
	// clean-up removes what a crash left, so none needs its writes synced:
	// "volatile" (Linux 5.10) skips the sync that otherwise makes each
	// unmount wait for the upper layer's filesystem.
	err := unix.Mount("overlay", target, "overlay", flags, data+",volatile")
	if errors.Is(err, unix.EINVAL) {
		err = unix.Mount("overlay", target, "overlay", flags, data) // an older kernel
	}
	if err != nil {
		return fmt.Errorf("mount overlay on %s: %w", target, err)
	}
	return nil
}

// Unmount takes every mount off dir (mounts may be stacked). While one is
// busy (a container's last process still exiting) it retries for half a
// second, then detaches it, so nothing stays mounted; the kernel frees a
// detached mount when its last user goes. A dir with nothing mounted on it,
// or none at all, is fine.
func Unmount(dir string) error {
	busy := 0
	for {
		err := unix.Unmount(dir, 0)
		switch {
		case err == nil:
			continue
		case errors.Is(err, unix.EINVAL), errors.Is(err, unix.ENOENT):
			return nil
		case errors.Is(err, unix.EBUSY) && busy < 25:
			busy++
			time.Sleep(20 * time.Millisecond)
		case errors.Is(err, unix.EBUSY):
			if derr := unix.Unmount(dir, unix.MNT_DETACH); derr != nil && !errors.Is(derr, unix.EINVAL) {
				return fmt.Errorf("unmount %s: %w (detach: %w)", dir, err, derr)
			}
			return nil
		default:
			return fmt.Errorf("unmount %s: %w", dir, err)
		}
	}
}

// IsMountpoint reports whether something is mounted on p (a different
// device from its parent's; overlay mounts always are).
func IsMountpoint(p string) bool {
	var st, parent unix.Stat_t
	if unix.Lstat(p, &st) != nil || unix.Lstat(filepath.Dir(p), &parent) != nil {
		return false
	}
	return st.Dev != parent.Dev
}
