package network

import (
	"errors"
	"fmt"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// makeNetNS creates a new network namespace and binds it to path (a new
// file), so that it outlives the thread that made it and containers can
// join it by path.
func makeNetNS(path string) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_RDONLY, 0o444)
	if err != nil {
		return fmt.Errorf("network namespace %s: %w", path, err)
	}
	f.Close()
	err = onThreadIn(func() error { return unix.Unshare(unix.CLONE_NEWNET) }, func() error {
		self := fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid())
		if err := unix.Mount(self, path, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind %s: %w", self, err)
		}
		return nil
	})
	if err != nil {
		os.Remove(path)
		return fmt.Errorf("network namespace %s: %w", path, err)
	}
	return nil
}

// onThreadIn runs f on a locked thread after enter has moved the thread
// into another network namespace, then moves the thread back to the one it
// was in. Only a thread back home is unlocked for other goroutines; one
// that cannot go back is ended with its goroutine. Ending it is not enough
// on its own: Go cannot end the process's main thread, which it parks for
// good instead, and a thread parked in a job's namespace would keep the
// namespace, and the job's veth pair, alive after teardown.
func onThreadIn(enter, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		home, err := unix.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()), unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread() // not moved: it may go back to work
			errc <- fmt.Errorf("open this thread's network namespace: %w", err)
			return
		}
		defer unix.Close(home)
		if err := enter(); err != nil {
			errc <- err
			if unix.Setns(home, unix.CLONE_NEWNET) == nil {
				runtime.UnlockOSThread()
			}
			return
		}
		err = f()
		if unix.Setns(home, unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}

// removeNetNS unmounts and removes a namespace made by makeNetNS. The
// namespace itself ends when its last process leaves it. A missing path is
// not an error.
func removeNetNS(path string) error {
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmount network namespace %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove network namespace %s: %w", path, err)
	}
	return nil
}

// inNetNS runs f on a thread that has joined the namespace at path (and
// goes back afterwards: see onThreadIn). Sockets f opens stay in that
// namespace.
func inNetNS(path string, f func() error) error {
	return onThreadIn(func() error {
		fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("open network namespace %s: %w", path, err)
		}
		defer unix.Close(fd)
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			return fmt.Errorf("join network namespace %s: %w", path, err)
		}
		return nil
	}, f)
}
