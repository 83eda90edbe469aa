package cache

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// diskSize is what the tree at dir uses on disk (blocks, hard links
// counted once), as measure counts it. It walks by directory descriptor:
// each entry is a fstatat of one name in its open parent, each directory
// opened from its parent with O_NOFOLLOW, so nothing resolves a path
// twice (a lstat of every full path costs twice as much on a deep tree)
// and a job that swaps a directory for a symbolic link meanwhile (a
// shared volume) gets an error, never a walk outside dir.
func diskSize(dir string) (int64, error) {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return 0, fmt.Errorf("%s: %w", dir, err)
	}
	w := sizeWalk{seen: map[[2]uint64]bool{}}
	w.add(&st)
	if err := w.dir(fd, dir); err != nil {
		return 0, err
	}
	return w.size, nil
}

type sizeWalk struct {
	size int64
	seen map[[2]uint64]bool // dev, inode of entries with more than one link
}

func (w *sizeWalk) add(st *unix.Stat_t) {
	in := [2]uint64{st.Dev, st.Ino}
	if st.Nlink <= 1 || !w.seen[in] {
		w.size += st.Blocks * 512
	}
	if st.Nlink > 1 {
		w.seen[in] = true
	}
}

// dir adds the entries of the directory open at fd (named name, for
// errors), and closes fd.
func (w *sizeWalk) dir(fd int, name string) error {
	d := os.NewFile(uintptr(fd), name)
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	for _, n := range names {
		var st unix.Stat_t
		if err := unix.Fstatat(fd, n, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("%s/%s: %w", name, n, err)
		}
		w.add(&st)
		if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			continue
		}
		cfd, err := unix.Openat(fd, n, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("%s/%s: %w", name, n, err)
		}
		if err := w.dir(cfd, name+"/"+n); err != nil {
			return err
		}
	}
	return nil
}
