package sandbox

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/moby/sys/user"
	"golang.org/x/sys/unix"
)

// User is a resolved user: the ids a step runs with.
type User struct {
	UID, GID int
	// Groups are the supplementary groups from the rootfs's /etc/group.
	Groups []int
	// Home is the home directory from /etc/passwd, or "/" if unknown.
	Home string
}

// ResolveUser resolves spec ("uid[:gid]", "name[:group]", or empty for
// root) against the /etc/passwd and /etc/group of rootfs. The files are
// opened with the lookup confined to rootfs (symbolic links cannot lead
// out of it), since a running job can rewrite its own rootfs.
func ResolveUser(rootfs, spec string) (User, error) {
	passwd, err := openInRoot(rootfs, "/etc/passwd")
	if err != nil && !errors.Is(err, unix.ENOENT) {
		return User{}, fmt.Errorf("resolve user %q: %w", spec, err)
	}
	group, err := openInRoot(rootfs, "/etc/group")
	if err != nil && !errors.Is(err, unix.ENOENT) {
		if passwd != nil {
			passwd.Close()
		}
		return User{}, fmt.Errorf("resolve user %q: %w", spec, err)
	}
	var p, g io.Reader
	if passwd != nil {
		defer passwd.Close()
		p = passwd
	}
	if group != nil {
		defer group.Close()
		g = group
	}
	defaults := &user.ExecUser{Home: "/"}
	u, err := user.GetExecUser(spec, defaults, p, g)
	if err != nil {
		return User{}, fmt.Errorf("resolve user %q in %s: %w", spec, rootfs, err)
	}
	return User{UID: u.Uid, GID: u.Gid, Groups: u.Sgids, Home: u.Home}, nil
}

// openInRoot opens the regular file name inside root, resolving every
// path component (symbolic links and "..") as if root were "/".
func openInRoot(root, name string) (*os.File, error) {
	dir, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", root, err)
	}
	defer unix.Close(dir)
	fd, err := unix.Openat2(dir, strings.TrimPrefix(name, "/"), &unix.OpenHow{
		// O_NONBLOCK: a FIFO planted at name must not hang the agent.
		Flags:   unix.O_RDONLY | unix.O_CLOEXEC | unix.O_NOCTTY | unix.O_NONBLOCK,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	})
	if err != nil {
		return nil, fmt.Errorf("open %s in %s: %w", name, root, err)
	}
	f := os.NewFile(uintptr(fd), root+name)
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("stat %s in %s: %w", name, root, err)
	}
	if !st.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%s in %s is not a regular file", name, root)
	}
	return f, nil
}

// hasFile reports whether the regular file name exists inside root.
func hasFile(root, name string) bool {
	f, err := openInRoot(root, name)
	if err != nil {
		return false
	}
	f.Close()
	return true
}

// Chown makes dir and everything below it owned by uid:gid, without
// following symbolic links. Each directory is opened relative to its
// parent's descriptor with O_NOFOLLOW, so a job that swaps a directory for
// a symbolic link while this runs (in a cache shared with a running job,
// say) cannot redirect the change to a host file. A dir already owned by
// uid:gid is taken as done and left alone, so a warm cache costs nothing.
func Chown(dir string, uid, gid int) error {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("chown %s: %w", dir, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return fmt.Errorf("chown %s: %w", dir, err)
	}
	if int(st.Uid) == uid && int(st.Gid) == gid {
		unix.Close(fd)
		return nil
	}
	if err := chownTree(fd, dir, uid, gid); err != nil {
		return fmt.Errorf("chown %s to %d:%d: %w", dir, uid, gid, err)
	}
	return nil
}

// chownTree chowns the directory open at fd and its contents, and closes fd.
func chownTree(fd int, name string, uid, gid int) error {
	d := os.NewFile(uintptr(fd), name)
	defer d.Close()
	if err := unix.Fchown(fd, uid, gid); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	ents, err := d.ReadDir(-1)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	for _, e := range ents {
		child := name + "/" + e.Name()
		if !e.IsDir() {
			if err := unix.Fchownat(fd, e.Name(), uid, gid, unix.AT_SYMLINK_NOFOLLOW); err != nil && !errors.Is(err, unix.ENOENT) {
				return fmt.Errorf("%s: %w", child, err)
			}
			continue
		}
		cfd, err := unix.Openat(fd, e.Name(), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			if errors.Is(err, unix.ENOENT) {
				continue
			}
			return fmt.Errorf("%s: %w", child, err)
		}
		if err := chownTree(cfd, child, uid, gid); err != nil {
			return err
		}
	}
	return nil
}
