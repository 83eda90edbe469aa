//go:build cgo

package idmap

/*
#define _GNU_SOURCE
#include <sched.h>
#include <signal.h>
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

// jobrun_idmap_hold is the holder's whole life: it shares the caller's
// memory (CLONE_VM) but touches nothing but its own stack, with every
// signal blocked, so only SIGKILL ends it. Raw syscalls: it shares the
// caller thread's errno too.
static int jobrun_idmap_hold(void *arg) {
	long parent = (long)arg;
	syscall(SYS_prctl, PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
	if (syscall(SYS_getppid) != parent)
		syscall(SYS_exit, 1);
	for (;;) {
		sigset_t all;
		sigfillset(&all);
		syscall(SYS_rt_sigsuspend, &all, _NSIG / 8);
	}
	return 0;
}

// jobrun_idmap_clone clones a holder into new namespaces (flags) on
// stack (size bytes); it returns its pid or -errno. The holder starts
// with every signal blocked: none of the Go runtime's handlers, which it
// inherits, can run on it.
static int jobrun_idmap_clone(int flags, void *stack, size_t size) {
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	int pid = clone(jobrun_idmap_hold, (char *)stack + size, flags | CLONE_VM | SIGCHLD, (void *)(long)getpid());
	int e = errno;
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return pid < 0 ? -e : pid;
}
*/
import "C"

import (
	"fmt"
	"os"
	"syscall"
)

// holderStack is the holder's stack: it makes one syscall at a time.
const holderStack = 64 << 10

// startHolder makes a process in new namespaces (flags, CLONE_NEWUSER
// among them) that does nothing until killed, and sets the user
// namespace's mapping m (setgroups allowed). A clone sharing our memory,
// neither a fork of the agent's address space nor an exec of its binary,
// which os.StartProcess would do for CLONE_NEWUSER (it cannot vfork
// there): 0.05 ms against ~1 ms. end kills and reaps it.
func startHolder(m Mapping, flags uintptr) (pid int, end func() error, err error) {
	stack := C.malloc(holderStack)
	if stack == nil {
		return 0, nil, fmt.Errorf("holder stack: out of memory")
	}
	p := int(C.jobrun_idmap_clone(C.int(flags), stack, holderStack))
	if p < 0 {
		C.free(stack)
		return 0, nil, fmt.Errorf("clone: %w", syscall.Errno(-p))
	}
	end = func() error {
		kerr := syscall.Kill(p, syscall.SIGKILL)
		var ws syscall.WaitStatus
		_, werr := syscall.Wait4(p, &ws, 0, nil)
		for werr == syscall.EINTR {
			_, werr = syscall.Wait4(p, &ws, 0, nil)
		}
		if werr == nil {
			// It is gone: nothing runs on its stack any more.
			C.free(stack)
		}
		if kerr != nil || werr != nil {
			return fmt.Errorf("kill %d: %v, wait: %v", p, kerr, werr)
		}
		return nil
	}
	if err := writeMaps(p, m); err != nil {
		return 0, nil, fmt.Errorf("%w (and %v)", err, end())
	}
	return p, end, nil
}

// writeMaps writes m to process pid's uid_map and gid_map.
func writeMaps(pid int, m Mapping) error {
	for _, f := range []struct {
		name string
		host uint32
	}{{"uid_map", m.UID}, {"gid_map", m.GID}} {
		path := fmt.Sprintf("/proc/%d/%s", pid, f.name)
		if err := os.WriteFile(path, []byte(fmt.Sprintf("0 %d %d\n", f.host, m.Size)), 0); err != nil {
			return fmt.Errorf("write %s: %w", f.name, err)
		}
	}
	return nil
}
