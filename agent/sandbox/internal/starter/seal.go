package starter

import (
	"fmt"
	"os"
	"strconv"
	"unsafe"

	"github.com/opencontainers/runc/libcontainer/exeseal"
	"golang.org/x/sys/unix"
)

// Seal makes the starter run from a sealed in-memory copy of its binary,
// re-executing itself from one if it does not already. It returns only if
// it already does, or on error.
//
// A container's setup process is a re-exec of the starter, and a job
// container must not be able to overwrite the binary that sets up the
// next one (CVE-2019-5736). Unless the running binary is a sealed memfd,
// libcontainer protects it per container, with a fresh overlay mount of
// its directory whose every mount and release costs time on every start;
// one sealed copy made here serves every container.
func Seal() error {
	if exeseal.IsSelfExeCloned() {
		// Named after the memfd's file descriptor otherwise.
		name := []byte("jobrun-starter\x00")
		_ = unix.Prctl(unix.PR_SET_NAME, uintptr(unsafe.Pointer(&name[0])), 0, 0, 0)
		return nil
	}
	self, err := os.Open("/proc/self/exe")
	if err != nil {
		return err
	}
	defer self.Close()
	st, err := self.Stat()
	if err != nil {
		return err
	}
	sealed, err := exeseal.CloneBinary(self, st.Size(), "jobrun-starter", os.TempDir())
	if err != nil {
		return err
	}
	defer sealed.Close()
	if !exeseal.IsCloned(sealed) {
		// Only a memfd counts as sealed (a temporary file is the
		// fallback where memfds are refused): re-executing from
		// anything else would gain nothing.
		return fmt.Errorf("no sealed memfd on this system")
	}
	// The fd is close-on-exec, which execve through /proc/self/fd
	// allows for a binary (not for a script).
	err = unix.Exec("/proc/self/fd/"+strconv.Itoa(int(sealed.Fd())), os.Args, os.Environ())
	return fmt.Errorf("re-execute: %w", err)
}
