package mount

import (
	"fmt"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/jobrun/jobrun/internal/proberecord"
)

// ProbedFile is the file in a state dir that records where
// ProbeUserOverlayOnce last passed: the kernel's release and the state
// dir's file system.
const ProbedFile = "rootless-overlay-ok"

// ProbeUserOverlayOnce is ProbeUserOverlay(dir) once per kernel and file
// system: a pass is recorded in dir (ProbedFile) and a later call on the
// same kernel release and the same file system under dir returns at once,
// without the probe's directories, mount and unmount (some 5 to 30 ms of
// every `jobrun local` without root, issue #18). Anything else (no
// record, another kernel, the dir moved to another file system, a record
// that cannot be read) probes again.
func ProbeUserOverlayOnce(dir string) error {
	return proberecord.Once(filepath.Join(dir, ProbedFile),
		func() (string, error) { return ProbeKey(dir) },
		func() error { return ProbeUserOverlay(dir) })
}

// ProbeKey names the kernel and the file system under dir: its release,
// the file system's type and id. A probe's record of a pass holds it.
func ProbeKey(dir string) (string, error) {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "", err
	}
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return "", err
	}
	return fmt.Sprintf("kernel %s\nfs %#x %x:%x\n", unix.ByteSliceToString(u.Release[:]), st.Type, uint32(st.Fsid.Val[0]), uint32(st.Fsid.Val[1])), nil
}
