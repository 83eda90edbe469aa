// Command jobrun-launcher is PID 1 of every jobrun job container. It is
// static (built with CGO_ENABLED=0, so it runs in any image) and bound
// read-only into the container by package sandbox, which talks to it over
// an inherited socket (see package wire).
//
// It loads the container's seccomp filter into itself before it does
// anything else, then starts each step the agent asks for as its own
// child, with the step's user, groups, environment, working directory and
// stdio, and reports how the step ended. Steps so inherit the container's
// namespaces, cgroup, seccomp filter, no_new_privs and capability bounding
// set from one place, with no setup process per step. Like tini it reaps
// every orphan in the container (as PID 1, or as a child subreaper when it
// shares the host's pid namespace), forwards termination signals to the
// running steps, and dies with a SIGKILL when the agent thread that
// started it ends, which takes the whole pid namespace with it.
//
// It exits when the agent closes its end of the control socket.
package main

import (
	"errors"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"unsafe"

	"github.com/jobrun/jobrun/agent/sandbox/internal/wire"
	"golang.org/x/sys/unix"
)

func main() {
	if err := run(); err != nil {
		os.Stderr.WriteString("jobrun-launcher: " + err.Error() + "\n")
		os.Exit(1)
	}
}

// launcher is the state shared by the request handlers and the reaper.
type launcher struct {
	// mu is held from fork to registration and while reaping, so the
	// reaper never collects a step before its waiter is registered.
	mu    sync.Mutex
	steps map[int]chan uint32
}

func run() error {
	// A killed agent must not leave a job running: this process dies with
	// the thread that started it, and with PID 1 the pid namespace.
	if err := unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(unix.SIGKILL), 0, 0, 0); err != nil {
		return errors.New("set parent-death signal: " + err.Error())
	}
	// Orphans are reparented here even when this is not PID 1 (a
	// privileged container shares the host's pid namespace).
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return errors.New("become child subreaper: " + err.Error())
	}
	// Steps must not inherit the control socket.
	unix.CloseOnExec(wire.ControlFD)
	// Steps cannot ptrace this process or read its memory or /proc
	// files, even as root: it holds the control socket. (Without this it
	// would become undumpable anyway at the first step run as another
	// user: the forked child shares this memory map until it execs, and
	// its setuid marks the map. Deterministic is better.)
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return errors.New("set not dumpable: " + err.Error())
	}

	l := &launcher{steps: map[int]chan uint32{}}
	chld := make(chan os.Signal, 1)
	signal.Notify(chld, unix.SIGCHLD)
	fwd := make(chan os.Signal, 8)
	signal.Notify(fwd, unix.SIGTERM, unix.SIGINT, unix.SIGHUP, unix.SIGQUIT, unix.SIGUSR1, unix.SIGUSR2)
	go l.reap(chld)
	go l.forward(fwd)

	if err := setup(); err != nil {
		// Tell the agent why; the container is of no use.
		send(wire.ControlFD, append([]byte{wire.Failed}, err.Error()...))
		return err
	}
	for {
		fds, err := recvRun(wire.ControlFD)
		if err != nil {
			return err
		}
		if fds == nil {
			return nil // the agent closed the control socket
		}
		go l.serve(fds)
	}
}

// setup reads the Setup message, loads its seccomp filter (if any) into
// every thread of this process, and answers Ready. Nothing the agent asks
// for runs before the filter is in place.
func setup() error {
	msg, err := recvAll(wire.ControlFD)
	if err != nil {
		return errors.New("read setup: " + err.Error())
	}
	if len(msg) == 0 || msg[0] != wire.Setup {
		return errors.New("first message is not a setup message")
	}
	var f wire.Filter
	if err := f.Unmarshal(msg[1:]); err != nil {
		return err
	}
	if len(f.Program) > 0 {
		if err := loadFilter(f.Program, f.Flags); err != nil {
			return err
		}
	}
	return send(wire.ControlFD, []byte{wire.Ready})
}

// loadFilter loads prog, a raw classic BPF program (struct sock_filter
// entries), with flags as the seccomp filter of every thread of this
// process (TSYNC: the Go runtime has several), so all children inherit it.
func loadFilter(prog []byte, flags uint32) error {
	const insn = int(unsafe.Sizeof(unix.SockFilter{}))
	if len(prog)%insn != 0 || len(prog)/insn > 0xffff {
		return errors.New("seccomp filter: bad length")
	}
	filter := make([]unix.SockFilter, len(prog)/insn)
	copy(unsafe.Slice((*byte)(unsafe.Pointer(&filter[0])), len(prog)), prog)
	fprog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
	r, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, uintptr(flags|unix.SECCOMP_FILTER_FLAG_TSYNC), uintptr(unsafe.Pointer(&fprog)))
	if errno != 0 {
		return errors.New("load seccomp filter: " + errno.Error())
	}
	if r != 0 {
		return errors.New("load seccomp filter: thread " + strconv.Itoa(int(r)) + " could not be synchronised")
	}
	return nil
}

// recvAll receives one whole message from the SOCK_SEQPACKET socket fd,
// however long.
func recvAll(fd int) ([]byte, error) {
	var one [1]byte
	for {
		n, _, _, _, err := unix.Recvmsg(fd, one[:], nil, unix.MSG_PEEK|unix.MSG_TRUNC)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, err
		}
		buf := make([]byte, n)
		if n, _, _, _, err = unix.Recvmsg(fd, buf, nil, 0); err != nil {
			return nil, err
		}
		return buf[:n], nil
	}
}

// recvRun receives a Run message and its four descriptors (step socket,
// stdin, stdout, stderr), close-on-exec so that no other step inherits
// them. It returns nil at end of file.
func recvRun(fd int) ([]int, error) {
	var b [1]byte
	oob := make([]byte, unix.CmsgSpace(4*4))
	for {
		n, oobn, _, _, err := unix.Recvmsg(fd, b[:], oob, unix.MSG_CMSG_CLOEXEC)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, errors.New("read control socket: " + err.Error())
		}
		if n == 0 && oobn == 0 {
			return nil, nil
		}
		var fds []int
		if cmsgs, err := unix.ParseSocketControlMessage(oob[:oobn]); err == nil {
			for _, m := range cmsgs {
				if rights, err := unix.ParseUnixRights(&m); err == nil {
					fds = append(fds, rights...)
				}
			}
		}
		if n != 1 || b[0] != wire.Run || len(fds) != 4 {
			for _, f := range fds {
				unix.Close(f)
			}
			return nil, errors.New("bad message on control socket")
		}
		return fds, nil
	}
}

func send(fd int, msg []byte) error {
	for {
		err := unix.Sendmsg(fd, msg, nil, nil, unix.MSG_NOSIGNAL)
		if err != unix.EINTR {
			return err
		}
	}
}

// serve runs one step: it reads the request from the step socket, starts
// the process, answers Started or Failed, and Exited when it ends.
func (l *launcher) serve(fds []int) {
	sock := os.NewFile(uintptr(fds[0]), "step")
	defer sock.Close()
	stdio := fds[1:]
	closeStdio := func() {
		for _, f := range stdio {
			unix.Close(f)
		}
	}
	tag, payload, err := wire.ReadFrame(sock)
	if err != nil || tag != wire.Request {
		closeStdio()
		return
	}
	var p wire.Proc
	if err := p.Unmarshal(payload); err != nil {
		closeStdio()
		wire.WriteFrame(sock, wire.Failed, []byte(err.Error()))
		return
	}
	done := make(chan uint32, 1)
	err = l.start(&p, stdio, done)
	closeStdio()
	if err != nil {
		wire.WriteFrame(sock, wire.Failed, []byte(err.Error()))
		return
	}
	if wire.WriteFrame(sock, wire.Started, nil) != nil {
		// The agent gave up on this step; it still gets reaped.
		return
	}
	ws := <-done
	wire.WriteFrame(sock, wire.Exited, wire.Status(ws))
}

// start forks and execs p with stdio as fds 0, 1 and 2, in a new session,
// and registers done to receive its wait status.
func (l *launcher) start(p *wire.Proc, stdio []int, done chan uint32) error {
	path, err := lookPath(p)
	if err != nil {
		return err
	}
	groups := p.Groups
	if groups == nil {
		groups = []uint32{} // set no supplementary groups, not keep ours
	}
	attr := &syscall.ProcAttr{
		Dir:   p.Dir,
		Env:   p.Env,
		Files: []uintptr{uintptr(stdio[0]), uintptr(stdio[1]), uintptr(stdio[2])},
		Sys: &syscall.SysProcAttr{
			// Each step leads its own session, as libcontainer's
			// processes do: no controlling terminal, its own group
			// for forwarded signals.
			Setsid: true,
			// setgroups, setgid, setuid, then chdir as that user.
			// Leaving uid 0 clears the permitted and effective
			// capabilities; no_new_privs keeps execve from granting
			// any (set-uid bits and file capabilities are ignored).
			Credential: &syscall.Credential{Uid: p.UID, Gid: p.GID, Groups: groups},
		},
	}
	l.mu.Lock()
	pid, err := syscall.ForkExec(path, p.Args, attr)
	if err == nil {
		l.steps[pid] = done
	}
	l.mu.Unlock()
	if err != nil {
		if st, serr := os.Stat(p.Dir); serr != nil {
			return errors.New("working directory " + p.Dir + ": " + strings.TrimPrefix(serr.Error(), "stat "+p.Dir+": "))
		} else if !st.IsDir() {
			return errors.New("working directory " + p.Dir + ": not a directory")
		}
		return errors.New("exec " + path + ": " + err.Error())
	}
	return nil
}

// lookPath finds p's program: as given if it has a "/", else in the PATH
// of p's environment, as execvp would (relative entries against p.Dir).
func lookPath(p *wire.Proc) (string, error) {
	if strings.Contains(p.Path, "/") {
		return p.Path, nil
	}
	path := ""
	for _, e := range p.Env {
		if v, ok := strings.CutPrefix(e, "PATH="); ok {
			path = v
			break
		}
	}
	for _, dir := range filepath.SplitList(path) {
		if dir == "" {
			dir = "."
		}
		f := filepath.Join(dir, p.Path)
		if !filepath.IsAbs(f) {
			f = filepath.Join(p.Dir, f)
		}
		if st, err := os.Stat(f); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return f, nil
		}
	}
	return "", errors.New("exec " + p.Path + ": executable file not found in $PATH")
}

// reap collects every child that ends, steps and orphans alike, and hands
// each step's wait status to its waiter.
func (l *launcher) reap(sig <-chan os.Signal) {
	for range sig {
		l.mu.Lock()
		for {
			var ws unix.WaitStatus
			pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
			if err == unix.EINTR {
				continue
			}
			if pid <= 0 || err != nil {
				break
			}
			if done, ok := l.steps[pid]; ok {
				delete(l.steps, pid)
				done <- uint32(ws)
			}
		}
		l.mu.Unlock()
	}
}

// forward passes termination signals sent to the launcher on to every
// running step's process group.
func (l *launcher) forward(sig <-chan os.Signal) {
	for s := range sig {
		l.mu.Lock()
		for pid := range l.steps {
			unix.Kill(-pid, s.(syscall.Signal))
		}
		l.mu.Unlock()
	}
}
