package testenv

import (
	"os/exec"
	"runtime"
	"syscall"
)

// StartChild starts cmd so that it dies with the test binary, even when
// the binary ends without running its clean-ups (a -timeout panic, a
// fatal signal): the child gets SIGKILL when its parent thread exits. The
// kernel ties that signal to the thread that forked, not the process, so
// cmd is started from a thread locked to a goroutine that lives until cmd
// has exited. Wait for cmd through the returned func, never cmd.Wait.
func StartChild(cmd *exec.Cmd) (wait func() error, err error) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	started, done := make(chan error, 1), make(chan error, 1)
	go func() {
		// Never unlocked: the thread ends with this goroutine, after
		// the child.
		runtime.LockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		done <- cmd.Wait()
	}()
	if err := <-started; err != nil {
		return nil, err
	}
	return func() error { return <-done }, nil
}
