//go:build !cgo

package idmap

import (
	"os"
	"syscall"
)

// startHolder makes a process in new namespaces (flags, CLONE_NEWUSER
// among them) with the user namespace's mapping m (setgroups allowed)
// that does nothing until killed: without cgo, a fork of this process
// stopped (ptraced) at its exec of /proc/self/exe, before any code of the
// new program runs. end kills and reaps it.
func startHolder(m Mapping, flags uintptr) (pid int, end func() error, err error) {
	maps := func(host uint32) []syscall.SysProcIDMap {
		return []syscall.SysProcIDMap{{ContainerID: 0, HostID: int(host), Size: int(m.Size)}}
	}
	p, err := os.StartProcess("/proc/self/exe", []string{"jobrun-userns"}, &os.ProcAttr{
		Sys: &syscall.SysProcAttr{
			Cloneflags:  flags,
			UidMappings: maps(m.UID),
			GidMappings: maps(m.GID),
			// Steps switch groups (setgroups) as in any container.
			GidMappingsEnableSetgroups: true,
			Ptrace:                     true,
			Pdeathsig:                  syscall.SIGKILL,
		},
	})
	if err != nil {
		return 0, nil, err
	}
	return p.Pid, func() error {
		kerr := p.Kill()
		_, werr := p.Wait()
		if kerr != nil {
			return kerr
		}
		return werr
	}, nil
}
