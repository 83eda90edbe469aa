// Package pdeath starts child processes that die with this process, and
// not before.
//
// The parent-death signal (prctl PR_SET_PDEATHSIG, exec.Cmd's
// SysProcAttr.Pdeathsig) is sent when the thread that forked the child
// ends, not when the process does. Go ends an OS thread when a goroutine
// exits while locked to it, as namespace code does on purpose (setns,
// unshare) so a tainted thread is never reused; a child forked earlier
// from that thread by any goroutine would be killed mid-work. Start forks
// from a thread it keeps locked, doing nothing else, until the child has
// ended.
package pdeath

import (
	"os/exec"
	"runtime"
	"syscall"
)

// Start starts cmd with SIGKILL as its parent-death signal, from an OS
// thread that lives until cmd has ended, so cmd dies with this process
// (even one killed without clean-up) but with no thread of it. Wait for
// cmd with the returned func, never cmd.Wait: it returns cmd.Wait's
// error, and may be called any number of times, from any goroutine.
func Start(cmd *exec.Cmd) (wait func() error, err error) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	started, ended := make(chan error, 1), make(chan struct{})
	var werr error
	go func() {
		runtime.LockOSThread()
		// Unlocked only once the child has ended: the thread did nothing
		// but start and wait for it, so it may go back to work.
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		werr = cmd.Wait()
		close(ended)
	}()
	if err := <-started; err != nil {
		return nil, err
	}
	return func() error {
		<-ended
		return werr
	}, nil
}
