// Package idmap makes idmapped mounts: a view of a directory tree in which
// every file's owner is shifted onto a job's host id range, without
// chowning or copying anything. It is what lets image layers unpacked
// once, owned by the image's own ids, serve every job in its own user
// namespace (Linux 5.12 for idmapped mounts, 5.19 for overlayfs to take
// them as lower layers).
//
// A user namespace holding the mapping is made by a child process that
// does nothing (a clone sharing the agent's memory, every signal blocked;
// without cgo a fork stopped at its exec) and is killed as soon as its
// namespace file is open; the open file keeps the namespace. Mounts made
// with it keep their own reference, so a Userns can be closed once its
// mounts are made. The sandbox keeps a job's namespaces held by nsfs bind
// mounts (sandbox.Runtime.NewNamespaces) and builds its root on Overlay.
package idmap

import (
	"fmt"
	"os"
	"runtime"
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
	u, _, err := newNamespaces(m, false)
	return u, err
}

// NewUsernsNet makes a user namespace with mapping m and a network
// namespace owned by it (one process cloned into both), for a job whose
// containers join both: root in the job then holds CAP_SYS_ADMIN over its
// network namespace and can mount its sysfs. The network namespace has a
// loopback device, down. The caller closes both files.
func NewUsernsNet(m Mapping) (*Userns, *os.File, error) {
	return newNamespaces(m, true)
}

func newNamespaces(m Mapping, net bool) (*Userns, *os.File, error) {
	if err := m.check(); err != nil {
		return nil, nil, err
	}
	flags := uintptr(syscall.CLONE_NEWUSER)
	if net {
		flags |= syscall.CLONE_NEWNET
	}
	// The holder dies with the thread that made it (PR_SET_PDEATHSIG):
	// keep this one until it is killed.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	pid, end, err := startHolder(m, flags)
	if err != nil {
		return nil, nil, fmt.Errorf("make user namespace (%s): %w", m, err)
	}
	// The holder is ours and not yet waited for, so its pid cannot name
	// another process while we open its namespaces.
	f, err := os.Open(fmt.Sprintf("/proc/%d/ns/user", pid))
	var nf *os.File
	if err == nil && net {
		if nf, err = os.Open(fmt.Sprintf("/proc/%d/ns/net", pid)); err != nil {
			f.Close()
		}
	}
	eerr := end()
	if err != nil {
		return nil, nil, fmt.Errorf("make user namespace (%s): %w", m, err)
	}
	if eerr != nil {
		f.Close()
		if nf != nil {
			nf.Close()
		}
		return nil, nil, fmt.Errorf("make user namespace (%s): end its process: %w", m, eerr)
	}
	return &Userns{f: f, m: m}, nf, nil
}

// OpenUserns opens the user namespace at path (an nsfs file, such as a
// bind mount of one) as a Userns with mapping m, which the caller knows
// it holds.
func OpenUserns(path string, m Mapping) (*Userns, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open user namespace: %w", err)
	}
	return &Userns{f: f, m: m}, nil
}

// Path is a path of the namespace while u is open: /proc/self/fd/N.
func (u *Userns) Path() string { return fmt.Sprintf("/proc/self/fd/%d", u.f.Fd()) }

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
