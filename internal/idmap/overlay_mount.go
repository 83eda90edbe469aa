package idmap

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/jobrun/jobrun/internal/mount"
)

// MountOverlay mounts on target an overlay of lowers (top first), each
// seen through u's mapping, with the existing directories upper and work
// given to the mapping's root first, so that the range's root can write
// through it. flags are further mount flags (unix.MS_NOSUID|unix.MS_NODEV,
// say). It is NewOverlay for callers that keep their own layout, such as
// cache volumes and workspaces: the lowers' idmapped mounts are made under
// tmp (which must not exist; its parent must) and come off again, with
// tmp, once overlayfs holds them, so a live overlay is one mount. The
// lowers stay as they are on disk. On error nothing is left mounted and
// tmp is gone, unless the error says tmp was left behind.
func MountOverlay(u *Userns, lowers []string, upper, work, target, tmp string, flags uintptr) error {
	l, err := NewLayers(u, tmp)
	if err != nil {
		return err
	}
	mapped, err := l.paths(lowers, target)
	for _, d := range []string{upper, work} {
		if err == nil {
			err = os.Chown(d, int(u.m.UID), int(u.m.GID))
		}
	}
	if err == nil {
		if err = mount.Overlay(target, mapped, upper, work, flags); err != nil {
			err = fmt.Errorf("idmapped overlay (%s): %w", u.m, err)
		}
	}
	if cerr := l.Close(); cerr != nil {
		if err == nil {
			err = mount.Unmount(target)
		}
		// A lower may still show under tmp: leave it for the caller's
		// clean-up, which must unmount before it deletes.
		return errors.Join(err, fmt.Errorf("idmapped overlay on %s: %s left behind: %w", target, tmp, cerr))
	}
	return err
}

// RemoveLowers undoes what MountOverlay may have left under tmp when its
// process died half-way: it takes the idmapped views off, then removes
// tmp. Nothing is deleted while it is mounted, so the lowers are never
// reached. A missing tmp is fine.
func RemoveLowers(tmp string) error {
	ents, err := os.ReadDir(tmp)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("remove idmapped lowers: %w", err)
	}
	for _, e := range ents {
		p := filepath.Join(tmp, e.Name())
		if err := mount.Unmount(p); err != nil {
			return fmt.Errorf("remove idmapped lowers: %w", err)
		}
		if mount.IsMountpoint(p) {
			return fmt.Errorf("remove idmapped lowers: %s is still mounted", p)
		}
		if err := os.Remove(p); err != nil {
			return fmt.Errorf("remove idmapped lowers: %w", err)
		}
	}
	if err := os.Remove(tmp); err != nil {
		return fmt.Errorf("remove idmapped lowers: %w", err)
	}
	return nil
}
