package mount

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/jobrun/jobrun/internal/pdeath"
	"github.com/jobrun/jobrun/internal/rootless"
)

// The root file systems of jobrun without root (issue #18): native
// overlayfs in the user's namespace when the kernel allows it (Linux
// 5.11), else fuse-overlayfs (Debian's fuse-overlayfs) when it is
// installed, else a clear error. The choice is made once, when `jobrun
// local` starts (ChooseUserOverlay, which probes in a temporary
// directory), and kept in this process's environment, which Overlay
// reads.
//
// fuse-overlayfs reads the layers as the store unpacked them: whiteouts
// as 0/0 character devices and opaque directories marked with
// user.overlay.opaque (it reads trusted.overlay.*, user.overlay.* and its
// own user.fuseoverlayfs.* names). It runs in the foreground as this
// process's child, dies with it (parent-death SIGKILL from a thread kept
// for it), and ends by itself when its mount is taken off.

// OverlayEnv holds the choice: "native" or "fuse". Set by
// ChooseUserOverlay; set by hand (JOBRUN_ROOTLESS_OVERLAY=fuse) it forces
// fuse-overlayfs, for tests and diagnosis.
const OverlayEnv = "JOBRUN_ROOTLESS_OVERLAY"

// fuseOverlay reports whether overlays are fuse-overlayfs mounts: jobrun
// without root that chose them.
func fuseOverlay() bool {
	return os.Getenv(OverlayEnv) == "fuse" && rootless.InUserNS()
}

// ChooseUserOverlay picks, in a temporary directory under dir, how this
// process (root of a user namespace) mounts overlays, and records it in
// OverlayEnv: native overlayfs if the kernel mounts it here, else
// fuse-overlayfs if it is in PATH and mounts. OverlayEnv=fuse set by the
// caller skips native overlayfs. The error names both and what is
// missing.
func ChooseUserOverlay(dir string) (string, error) {
	forced := os.Getenv(OverlayEnv)
	var nativeErr error
	switch forced {
	case "", "native":
		if nativeErr = ProbeUserOverlayOnce(dir); nativeErr == nil {
			return "native", os.Setenv(OverlayEnv, "native")
		}
		if forced == "native" || errors.Is(nativeErr, errNoUserXattr) {
			return "", nativeErr
		}
	case "fuse":
		nativeErr = fmt.Errorf("native overlayfs is turned off (%s=fuse)", OverlayEnv)
	default:
		return "", fmt.Errorf("%s=%q: want native or fuse", OverlayEnv, forced)
	}
	if _, err := exec.LookPath("fuse-overlayfs"); err != nil {
		return "", fmt.Errorf("no overlay for the jobs' root file systems: %w; and fuse-overlayfs is not installed (%w): "+
			"jobrun without root needs native overlayfs in a user namespace (Linux 5.11 or later) or fuse-overlayfs (Debian/Ubuntu: apt install fuse-overlayfs)", nativeErr, err)
	}
	if err := probeFuse(dir); err != nil {
		return "", fmt.Errorf("no overlay for the jobs' root file systems: %w; and fuse-overlayfs does not mount: %w", nativeErr, err)
	}
	return "fuse", os.Setenv(OverlayEnv, "fuse")
}

// probeFuse mounts and unmounts a fuse-overlayfs in a temporary directory
// under dir.
func probeFuse(dir string) error {
	tmp, ds, err := probeDirs(dir)
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if err := mountFuse(ds[3], ds[:1], ds[1], ds[2], 0); err != nil {
		return err
	}
	return Unmount(ds[3])
}

// mountFuse is Overlay with fuse-overlayfs: it starts it in the
// foreground and returns once target is mounted, or with its error
// output if it ends first.
func mountFuse(target string, lowers []string, upper, work string, flags uintptr) error {
	bin, err := exec.LookPath("fuse-overlayfs")
	if err != nil {
		return fmt.Errorf("mount fuse-overlayfs on %s: %w", target, err)
	}
	opts := OverlayData(lowers, upper, work) + ",allow_other"
	if flags&unix.MS_NOSUID != 0 {
		opts += ",nosuid"
	}
	if flags&unix.MS_NODEV != 0 {
		opts += ",nodev"
	}
	cmd := exec.Command(bin, "-f", "-o", opts, target)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	// fuse-overlayfs serves the mount until it is unmounted; it dies
	// with this process but with no thread of it (see pdeath).
	wait, err := pdeath.Start(cmd)
	if err != nil {
		return fmt.Errorf("mount fuse-overlayfs on %s: %w", target, err)
	}
	ended := make(chan struct{})
	go func() {
		_ = wait()
		close(ended)
	}()
	for deadline := time.Now().Add(30 * time.Second); ; {
		if IsMountpoint(target) {
			return nil
		}
		select {
		case <-ended:
			return fmt.Errorf("mount fuse-overlayfs on %s: %s: %s", target, cmd.ProcessState, strings.TrimSpace(stderr.String()))
		case <-time.After(2 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-ended
			return errors.New("mount fuse-overlayfs on " + target + ": not mounted after 30s")
		}
	}
}
