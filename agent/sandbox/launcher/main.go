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
//
// Every container waits for it to start, so it reads its setup and loads
// the filter first, on the main goroutine, before it starts any goroutine
// or signal handler of its own: each of those wakes another runtime thread
// first. And it keeps the GOMAXPROCS it starts with: the runtime would
// otherwise start a goroutine for updates and re-read the cgroup's CPU
// limit every second, in every container, for a process that mostly waits.
//
//go:debug updatemaxprocs=0
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

// launcher is the state shared by the request handler and the reaper.
type launcher struct {
	// mu is held from fork to registration and while reaping, so the
	// reaper never collects a step before it is registered.
	mu sync.Mutex
	// steps maps each running step's pid to its step socket, on which
	// the reaper reports how it ended.
	steps map[int]*os.File
	// forked wakes the reaper, idle while there are no children, after
	// a fork.
	forked chan struct{}
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

	// Before Ready there is no step to reap or to forward signals to,
	// and no child that could leave an orphan; a termination signal ends
	// the launcher, and so the container, which is what it asks for.
	if err := setup(); err != nil {
		// Tell the agent why; the container is of no use.
		send(wire.ControlFD, append([]byte{wire.Failed}, err.Error()...))
		return err
	}

	l := &launcher{steps: map[int]*os.File{}, forked: make(chan struct{}, 1)}
	fwd := make(chan os.Signal, 8)
	signal.Notify(fwd, unix.SIGTERM, unix.SIGINT, unix.SIGHUP, unix.SIGQUIT, unix.SIGUSR1, unix.SIGUSR2)
	go l.reap()
	go l.forward(fwd)
	for {
		fds, err := recvRun(wire.ControlFD)
		if err != nil {
			return err
		}
		if fds == nil {
			return nil // the agent closed the control socket
		}
		// On this goroutine: the agent writes the request right
		// after the Run message, and a hand-off to another goroutine
		// would wake another thread for every step.
		l.serve(fds)
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

// serve starts one step: it reads the request from the step socket, starts
// the process and answers Started, or Failed. The reaper answers Exited
// when the process ends, and closes the socket.
func (l *launcher) serve(fds []int) {
	sock := os.NewFile(uintptr(fds[0]), "step")
	stdio := fds[1:]
	closeStdio := func() {
		for _, f := range stdio {
			unix.Close(f)
		}
	}
	tag, payload, err := wire.ReadFrame(sock)
	if err != nil || tag != wire.Request {
		closeStdio()
		sock.Close()
		return
	}
	var p wire.Proc
	if err := p.Unmarshal(payload); err != nil {
		closeStdio()
		wire.WriteFrame(sock, wire.Failed, []byte(err.Error()))
		sock.Close()
		return
	}
	if err := l.start(&p, stdio, sock); err != nil {
		closeStdio()
		wire.WriteFrame(sock, wire.Failed, []byte(err.Error()))
		sock.Close()
	}
}

// start forks and execs p with stdio as fds 0, 1 and 2, in a new session,
// closes stdio, answers Started on sock and registers sock for the reaper.
func (l *launcher) start(p *wire.Proc, stdio []int, sock *os.File) error {
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
		// Our copies of the pipes go at once: the agent reads the
		// output until every writer has closed it.
		for _, f := range stdio {
			unix.Close(f)
		}
		// Started goes out before the reaper, which needs mu, can
		// answer Exited. If the agent gave up on the step, the write
		// fails and the process still gets reaped. (Started and
		// Exited are a few bytes: the write cannot block.)
		wire.WriteFrame(sock, wire.Started, nil)
		l.steps[pid] = sock
	}
	l.mu.Unlock()
	select {
	case l.forked <- struct{}{}:
	default: // a wake-up is pending already
	}
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

// reap collects every child that ends, steps and orphans alike, and
// answers Exited with each step's wait status on its step socket.
func (l *launcher) reap() {
	type ended struct {
		sock *os.File
		ws   unix.WaitStatus
	}
	var steps []ended
	for {
		// Wait until a child has ended without collecting it: only
		// wait4 under mu collects, after the fork's registration.
		// (Waiting here wakes this thread directly; SIGCHLD would
		// come through the runtime's signal goroutine, a hand-off
		// between threads more.)
		var info unix.Siginfo
		switch err := unix.Waitid(unix.P_ALL, 0, &info, unix.WEXITED|unix.WNOWAIT, nil); err {
		case nil:
		case unix.EINTR:
			continue
		case unix.ECHILD:
			// No children, and so no orphans to come either
			// (they would descend from a child) until a fork.
			<-l.forked
			continue
		default:
			os.Stderr.WriteString("jobrun-launcher: wait for children: " + err.Error() + "\n")
			os.Exit(1)
		}
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
			if sock, ok := l.steps[pid]; ok {
				delete(l.steps, pid)
				steps = append(steps, ended{sock, ws})
			}
		}
		l.mu.Unlock()
		for i, s := range steps {
			wire.WriteFrame(s.sock, wire.Exited, wire.Status(uint32(s.ws)))
			s.sock.Close()
			steps[i] = ended{}
		}
		steps = steps[:0]
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
