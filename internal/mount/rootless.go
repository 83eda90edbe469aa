package mount

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/jobrun/jobrun/internal/rootless"
)

// userXattr is the overlay option for a jobrun without root (in a user
// namespace of its own, issue #18): overlayfs then keeps and reads its
// metadata (opaque dirs, redirects) in user.overlay.* xattrs, as the
// image store unpacked the layers, because trusted.* ones are the host
// root's only. The kernel allows overlayfs in a user namespace from 5.11.
func userXattr() string {
	if rootless.InUserNS() {
		return ",userxattr"
	}
	return ""
}

// errNoUserXattr is a state dir's file system that keeps no user.*
// xattrs: neither overlay can read layers there.
var errNoUserXattr = errors.New("takes no user.* xattrs")

// ProbeUserOverlay checks, in a temporary directory under dir, that this
// process (root of a user namespace) can mount an overlay with userxattr
// there: Linux 5.11 or later, and a filesystem under dir that takes
// user.* xattrs. The error says what is missing.
func ProbeUserOverlay(dir string) error {
	tmp, ds, err := probeDirs(dir)
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if err := unix.Setxattr(ds[0], "user.jobrun.probe", []byte("1"), 0); err != nil {
		return fmt.Errorf("the file system of %s %w (%w): jobrun without root keeps overlay metadata in them; use a state dir on ext4, xfs or btrfs (--state-dir)", dir, errNoUserXattr, err)
	}
	err = unix.Mount("overlay", ds[3], "overlay", 0, OverlayData(ds[:1], ds[1], ds[2])+",userxattr")
	if err != nil {
		var u unix.Utsname
		_ = unix.Uname(&u)
		return fmt.Errorf("this kernel (%s) does not mount overlayfs in a user namespace (%w)", unix.ByteSliceToString(u.Release[:]), err)
	}
	return Unmount(ds[3])
}

// probeDirs makes a temporary directory under dir for an overlay probe,
// with its lower, upper, work and merged directories (ds, in that order).
// The caller removes tmp.
func probeDirs(dir string) (tmp string, ds []string, err error) {
	tmp, err = os.MkdirTemp(dir, ".overlay-probe-")
	if err != nil {
		return "", nil, fmt.Errorf("overlay probe: %w", err)
	}
	for _, d := range []string{"lower", "upper", "work", "merged"} {
		ds = append(ds, filepath.Join(tmp, d))
		if err := os.Mkdir(ds[len(ds)-1], 0o700); err != nil {
			os.RemoveAll(tmp)
			return "", nil, fmt.Errorf("overlay probe: %w", err)
		}
	}
	return tmp, ds, nil
}
