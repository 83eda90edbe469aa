package idmap

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// Mount attaches at target (an existing directory) an idmapped clone of
// the mount tree at src, its top mount only: through it, a file owned by
// id n on src (n below the mapping's size) shows as owned by host id
// UID+n (GID+n), and a file created through it by host id UID+n is stored
// owned by n. Ids outside the mapping show as the overflow id (65534) and
// cannot be written. attrs are further MOUNT_ATTR_* flags, such as
// unix.MOUNT_ATTR_RDONLY. src itself is untouched.
func Mount(u *Userns, src, target string, attrs uint64) error {
	fd, err := unix.OpenTree(unix.AT_FDCWD, src, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
	if err != nil {
		return fmt.Errorf("idmapped mount of %s: clone: %w", src, err)
	}
	defer unix.Close(fd)
	attr := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_IDMAP | attrs, Userns_fd: uint64(u.Fd())}
	if err := unix.MountSetattr(fd, "", unix.AT_EMPTY_PATH, &attr); err != nil {
		return fmt.Errorf("idmapped mount of %s: set id mapping: %w", src, err)
	}
	if err := unix.MoveMount(fd, "", unix.AT_FDCWD, target, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("idmapped mount of %s: attach on %s: %w", src, target, err)
	}
	return nil
}
