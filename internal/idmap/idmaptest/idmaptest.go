// Package idmaptest holds what the tests of jobs in user namespaces share:
// a namespace for a range that goes with the test, a process run as a
// range's host id, a process run as root of a new namespace, and the
// checks of who owns what and what is left mounted.
package idmaptest

import (
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/jobrun/jobrun/internal/idmap"
)

// NewUserns makes a user namespace holding mapping m, closed when the test
// ends.
func NewUserns(t testing.TB, m idmap.Mapping) *idmap.Userns {
	t.Helper()
	u, err := idmap.NewUserns(m)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { u.Close() })
	return u
}

// RunAs runs a shell script as host uid and gid id, in dir, and returns
// its output. The process gets dir as an open file, not by its path: like
// a container's process, it need not be able to reach dir from the host's
// root.
func RunAs(t testing.TB, id uint32, dir, script string) (string, error) {
	t.Helper()
	f, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd := exec.Command("/bin/sh", "-c", "cd /proc/self/fd/3 && "+script)
	cmd.ExtraFiles = []*os.File{f}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: id, Gid: id}}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// MustRunAs is RunAs, failing the test if the script fails.
func MustRunAs(t testing.TB, id uint32, dir, script string) string {
	t.Helper()
	out, err := RunAs(t, id, dir, script)
	if err != nil {
		t.Fatalf("as %d in %s: %s: %v\n%s", id, dir, script, err, out)
	}
	return out
}

// AsRoot runs script in /bin/sh -e as root of a new user namespace with
// mapping m (on the host, m's first ids) and returns its output, trimmed.
func AsRoot(m idmap.Mapping, script string) (string, error) {
	cmd := exec.Command("/bin/sh", "-ec", script)
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: int(m.UID), Size: int(m.Size)}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: int(m.GID), Size: int(m.Size)}},
		// Become the namespace's root once the maps are written.
		Credential:                 &syscall.Credential{},
		GidMappingsEnableSetgroups: true,
	}
	out, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// Owner is the host uid and gid of p (not following a symbolic link).
func Owner(t testing.TB, p string) (uid, gid uint32) {
	t.Helper()
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	return st.Uid, st.Gid
}

// WantOwner fails the test unless p belongs to host uid and gid id.
func WantOwner(t testing.TB, p string, id uint32) {
	t.Helper()
	if uid, gid := Owner(t, p); uid != id || gid != id {
		t.Errorf("%s owned by %d:%d, want %d:%d", p, uid, gid, id, id)
	}
}

// AssertNoRangeIDs fails the test for every file under dir (dir too) owned
// by an id of the ranges: nothing a job leaves on the host may belong to
// one. A dir with no file in it proves nothing, and fails the test.
func AssertNoRangeIDs(t testing.TB, dir string, ranges ...idmap.Mapping) {
	t.Helper()
	in := func(id uint32) bool {
		for _, m := range ranges {
			if id >= m.UID && id < m.UID+m.Size || id >= m.GID && id < m.GID+m.Size {
				return true
			}
		}
		return false
	}
	n := 0
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		n++
		if uid, gid := Owner(t, p); in(uid) || in(gid) {
			t.Errorf("%s is owned by range id %d:%d", p, uid, gid)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 2 {
		t.Fatalf("walked %d files under %s; the check proves nothing", n, dir)
	}
}

// MountsUnder lists the mount points below dir (not dir itself), as this
// process's mount namespace has them.
func MountsUnder(t testing.TB, dir string) []string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
			out = append(out, f[4])
		}
	}
	return out
}
