package pdeath

import (
	"errors"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// onEndingThread runs fn on a goroutine locked to its OS thread, which
// then exits still locked, so Go ends the thread; it returns once the
// thread is gone. The kernel sends a child's parent-death signal while
// the forking thread exits, before the thread leaves /proc: once it is
// gone, the signal was sent, if it was to be.
func onEndingThread(t *testing.T, fn func()) {
	t.Helper()
	tid, ran := make(chan int, 1), make(chan struct{})
	var run func()
	run = func() {
		runtime.LockOSThread()
		if unix.Gettid() == unix.Getpid() {
			// Go never ends the main thread: run fn on another one, which
			// this goroutine's hold on the main thread keeps off it.
			inner := make(chan struct{})
			go func() {
				defer close(inner)
				run()
			}()
			<-inner
			runtime.UnlockOSThread()
			return
		}
		tid <- unix.Gettid()
		fn()
		close(ran)
		// Returning locked ends the thread.
	}
	go run()
	task := "/proc/self/task/" + strconv.Itoa(<-tid)
	<-ran
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(10 * time.Millisecond) {
		if _, err := os.Stat(task); errors.Is(err, os.ErrNotExist) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still there a minute after its goroutine exited locked", task)
		}
	}
}

// endedBy is the signal that ended a child, from its wait status.
func endedBy(t *testing.T, cmd *exec.Cmd, werr error) syscall.Signal {
	t.Helper()
	if cmd.ProcessState == nil {
		t.Fatalf("no exit status: %v", werr)
	}
	ws := cmd.ProcessState.Sys().(syscall.WaitStatus)
	if !ws.Signaled() {
		t.Fatalf("the child was not killed by a signal: %v", cmd.ProcessState)
	}
	return ws.Signal()
}

// TestStartOutlivesStartingThread: a child started through Start from a
// thread that then ends is still alive; only the SIGTERM the test sends
// afterwards ends it. (A child killed by its parent-death signal has a
// SIGKILL pending, and then the later SIGTERM does not count.)
func TestStartOutlivesStartingThread(t *testing.T) {
	cmd := exec.Command("sleep", "60")
	var wait func() error
	var err error
	onEndingThread(t, func() { wait, err = Start(cmd) })
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	werr := wait()
	if sig := endedBy(t, cmd, werr); sig != syscall.SIGTERM {
		t.Fatalf("the child ended by %v, want SIGTERM (the test's): it died with the thread that started it", sig)
	}
	if cmd.SysProcAttr.Pdeathsig != syscall.SIGKILL {
		t.Errorf("Pdeathsig = %v, want SIGKILL", cmd.SysProcAttr.Pdeathsig)
	}
}

// TestPlainStartDiesWithStartingThread is the positive control: the same
// child started with exec.Cmd.Start and Pdeathsig from such a thread is
// killed when the thread ends.
func TestPlainStartDiesWithStartingThread(t *testing.T) {
	cmd := exec.Command("sleep", "60")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var err error
	onEndingThread(t, func() { err = cmd.Start() })
	if err != nil {
		t.Fatal(err)
	}
	cmd.Process.Signal(syscall.SIGTERM) // unreaped, so it can still be signalled
	werr := cmd.Wait()
	if sig := endedBy(t, cmd, werr); sig != syscall.SIGKILL {
		t.Fatalf("the child ended by %v, want SIGKILL: its parent-death signal did not come when its thread ended", sig)
	}
}

// TestStartError: a command that cannot start is an error, with nothing
// to wait for.
func TestStartError(t *testing.T) {
	wait, err := Start(exec.Command("/nonexistent/jobrun-pdeath-test"))
	if err == nil || wait != nil {
		t.Fatalf("Start of a missing program: wait %v, err %v; want an error", wait != nil, err)
	}
}
