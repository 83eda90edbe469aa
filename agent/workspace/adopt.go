package workspace

import (
	"fmt"
	"os"
	"path"
	"syscall"
)

// Adopt gives what the host's root placed in the workspace at dir (a
// Workspace's Path) to the workspace's owner: each of paths (slash
// separated, relative to dir) and the directories between it and dir that
// belong to root:root are given to dir's owner. In the overlay of a job
// in a user namespace dir belongs to the range's root, and a file the
// agent writes there (the artifacts of needed jobs) would otherwise show
// to the job as the overflow id, which even its root cannot change or
// delete; everything else there shows as a range id, never as root. A
// workspace owned by root (no user namespace; a plain directory the
// runner binds idmapped) is left as it is. It never follows a symbolic
// link.
func Adopt(dir string, paths []string) error {
	r, err := os.OpenRoot(dir)
	if err != nil {
		return fmt.Errorf("workspace %s: %w", dir, err)
	}
	defer r.Close()
	uid, gid, err := ownerOf(r, ".")
	if err != nil {
		return fmt.Errorf("workspace %s: %w", dir, err)
	}
	if uid == 0 && gid == 0 {
		return nil
	}
	done := map[string]bool{}
	for _, p := range paths {
		for p = path.Clean(p); p != "." && p != "/" && !done[p]; p = path.Dir(p) {
			done[p] = true
			u, g, err := ownerOf(r, p)
			if err != nil {
				return fmt.Errorf("workspace %s: %w", dir, err)
			}
			if u != 0 || g != 0 {
				continue
			}
			if err := r.Lchown(p, uid, gid); err != nil {
				return fmt.Errorf("workspace %s: %w", dir, err)
			}
		}
	}
	return nil
}

func ownerOf(r *os.Root, p string) (uid, gid int, err error) {
	fi, err := r.Lstat(p)
	if err != nil {
		return 0, 0, err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, 0, fmt.Errorf("%s: no owner", p)
	}
	return int(st.Uid), int(st.Gid), nil
}
