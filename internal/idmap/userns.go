// Package idmap makes idmapped mounts: a view of a directory tree in which
// every file's owner is shifted onto a job's host id range, without
// chowning or copying anything. It is what lets image layers unpacked
// once, owned by the image's own ids, serve every job in its own user
// namespace (Linux 5.12 for idmapped mounts, 5.19 for overlayfs to take
// them as lower layers).
//
// A user namespace holding the mapping is made by a child process that is
// stopped before it runs a single instruction and is killed as soon as its
// namespace file is open; the open file keeps the namespace. Mounts made
// with it keep their own reference, so a Userns can be closed once its
// mounts are made.
//
// Not yet wired into jobs: the image store and sandbox do not call it.
package idmap

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// Mapping maps Size ids from 0 up, in the namespace and on mounts made
// with it, onto host uids from UID and host gids from GID.
type Mapping struct {
	UID, GID, Size uint32
}

func (m Mapping) String() string {
	return fmt.Sprintf("uids 0-%d on %d-%d, gids on %d-%d", m.Size-1, m.UID, m.UID+m.Size-1, m.GID, m.GID+m.Size-1)
}

func (m Mapping) check() error {
	if m.Size == 0 || uint64(m.UID)+uint64(m.Size) > 1<<32-1 || uint64(m.GID)+uint64(m.Size) > 1<<32-1 {
		return fmt.Errorf("id mapping %+v: want a size above 0 and no id past 4294967294", m)
	}
	return nil
}

// Userns is a user namespace holding one Mapping, kept alive by an open
// file of it (/proc/PID/ns/user of the process that made it).
type Userns struct {
	f *os.File
	m Mapping
}

// NewUserns makes a user namespace with mapping m. Close it when its
// mounts are made.
func NewUserns(m Mapping) (*Userns, error) {
	if err := m.check(); err != nil {
		return nil, err
	}
	maps := func(host uint32) []syscall.SysProcIDMap {
		return []syscall.SysProcIDMap{{ContainerID: 0, HostID: int(host), Size: int(m.Size)}}
	}
	// Ptrace stops the child at its execve, before any code of the new
	// program runs; it never gets further.
	p, err := os.StartProcess("/proc/self/exe", []string{"jobrun-userns"}, &os.ProcAttr{
		Sys: &syscall.SysProcAttr{
			Cloneflags:  syscall.CLONE_NEWUSER,
			UidMappings: maps(m.UID),
			GidMappings: maps(m.GID),
			Ptrace:      true,
			Pdeathsig:   syscall.SIGKILL,
		},
	})
	if err != nil {
		return nil, fmt.Errorf("make user namespace (%s): %w", m, err)
	}
	// The child is ours and not yet waited for, so its pid cannot name
	// another process while we open its namespace.
	f, err := os.Open(fmt.Sprintf("/proc/%d/ns/user", p.Pid))
	kerr := p.Kill()
	_, werr := p.Wait()
	if err != nil {
		return nil, fmt.Errorf("make user namespace (%s): %w", m, err)
	}
	if err := errors.Join(kerr, werr); err != nil {
		f.Close()
		return nil, fmt.Errorf("make user namespace (%s): end its process: %w", m, err)
	}
	return &Userns{f: f, m: m}, nil
}

// Mapping is the namespace's mapping.
func (u *Userns) Mapping() Mapping { return u.m }

// Fd is the namespace's file descriptor, valid until Close.
func (u *Userns) Fd() int { return int(u.f.Fd()) }

// Close drops this reference to the namespace; mounts made with it keep
// theirs. Calling it again does nothing.
func (u *Userns) Close() error {
	if u == nil || u.f == nil {
		return nil
	}
	err := u.f.Close()
	u.f = nil
	return err
}
