package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"sync"
	"time"

	"github.com/jobrun/jobrun/agent/sandbox/internal/starter"
	"github.com/opencontainers/runc/libcontainer/configs"
	"golang.org/x/sys/unix"
)

// starterName is the file name of the starter binary, which starts the
// containers (see package sandbox/internal/starter). `make build` puts it
// next to jobrun.
const starterName = "jobrun-starter"

// starterProc is a running starter.
type starterProc struct {
	cmd    *exec.Cmd
	ctl    *os.File
	exited chan struct{}
}

// spawner owns the Runtime's starter process: it runs it, runs a new one
// if it died, and stops it on close. It runs the starter from a thread
// that stays alive until then: the starter dies with that thread (its
// parent-death signal), and the containers with the starter.
type spawner struct {
	path string
	mu   sync.Mutex
	cur  *starterProc
	// pending, if set, will carry the starter being run.
	pending chan spawned
	// reqs carries spawn requests to the spawning thread; closed by
	// close.
	reqs chan chan spawned
}

type spawned struct {
	p   *starterProc
	err error
}

func newSpawner(path string) *spawner {
	s := &spawner{path: path, reqs: make(chan chan spawned)}
	go func() {
		runtime.LockOSThread()
		// Never unlocked: when close ends this loop the goroutine
		// exits and takes the thread with it, after the starter.
		for r := range s.reqs {
			p, err := s.run()
			r <- spawned{p, err}
		}
	}()
	return s
}

// run starts a starter process.
func (s *spawner) run() (*starterProc, error) {
	ours, theirs, err := socketPair(unix.SOCK_SEQPACKET, "starter-control")
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(s.path)
	cmd.Env = []string{"PATH=" + defaultPath}
	cmd.Stderr = os.Stderr
	cmd.ExtraFiles = []*os.File{theirs} // fd 3, starter.ControlFD
	cmd.SysProcAttr = &unix.SysProcAttr{Pdeathsig: unix.SIGKILL}
	err = cmd.Start()
	// Only the starter's copy left: its exit is end of file on ours.
	theirs.Close()
	if err != nil {
		ours.Close()
		return nil, fmt.Errorf("run %s: %w", s.path, err)
	}
	p := &starterProc{cmd: cmd, ctl: ours, exited: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(p.exited)
	}()
	if err := awaitReady(ours); err != nil {
		_ = cmd.Process.Kill()
		<-p.exited
		ours.Close()
		return nil, fmt.Errorf("run %s: %w", s.path, err)
	}
	return p, nil
}

// awaitReady waits for the starter's Ready message on ctl: it has sealed
// itself (see starter.Seal) and takes starts.
func awaitReady(ctl *os.File) error {
	if err := ctl.SetReadDeadline(time.Now().Add(30 * time.Second)); err != nil {
		return err
	}
	defer ctl.SetReadDeadline(time.Time{})
	var b [16]byte
	n, err := ctl.Read(b[:])
	switch {
	case errors.Is(err, io.EOF):
		return errors.New("it exited before it was ready")
	case err != nil:
		return fmt.Errorf("wait for it to be ready: %w", err)
	case n != 1 || b[0] != starter.Ready:
		return fmt.Errorf("it said %q, not that it is ready", b[:n])
	}
	return nil
}

// prepare starts running a starter, if none runs or is being run, without
// waiting for it: New calls it, so that a starter gets ready (some 10 ms)
// while the first job prepares its image and workspace.
func (s *spawner) prepare() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.reqs != nil && s.cur == nil && s.pending == nil {
		s.pending = s.request()
	}
}

// request asks the spawning thread for a starter; the answer comes on
// the returned channel. The caller holds s.mu.
func (s *spawner) request() chan spawned {
	r := make(chan spawned, 1)
	s.reqs <- r
	return r
}

// get returns a live starter, running a new one if there is none, or
// waiting for the one being run.
func (s *spawner) get() (*starterProc, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.reqs == nil {
		return nil, errors.New("sandbox runtime is closed")
	}
	if s.cur != nil {
		select {
		case <-s.cur.exited:
			s.cur.ctl.Close()
			s.cur = nil
		default:
			return s.cur, nil
		}
	}
	if s.pending == nil {
		s.pending = s.request()
	}
	res := <-s.pending
	s.pending = nil
	if res.err != nil {
		return nil, res.err
	}
	s.cur = res.p
	return s.cur, nil
}

// starterExitWait bounds how long close waits for the starter to finish
// the starts under way and exit before it kills it.
const starterExitWait = 30 * time.Second

// close stops the starter (which kills the inits of containers still
// running) and the spawning thread.
func (s *spawner) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.reqs == nil {
		return
	}
	if s.pending != nil {
		s.cur = (<-s.pending).p
		s.pending = nil
	}
	if p := s.cur; p != nil {
		// End of file on its control socket: the starter finishes the
		// starts under way (one whose caller gave up takes its container
		// back) and exits, its containers' inits with it. Killed only
		// if it does not.
		p.ctl.Close()
		select {
		case <-p.exited:
		case <-time.After(starterExitWait):
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
		s.cur = nil
	}
	close(s.reqs)
	s.reqs = nil
}

// startInit has the starter create container id with cfg and start its
// init (the launcher, with initCtl as its fd 3). It returns the init's
// pid and a pidfd of it.
func (rt *Runtime) startInit(ctx context.Context, id string, cfg *configs.Config, initCtl *os.File) (int, *os.File, error) {
	p, err := rt.starter.get()
	if err != nil {
		return 0, nil, err
	}
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, nil, fmt.Errorf("starter socket: %w", err)
	}
	conn := fds[0]
	defer unix.Close(conn)
	err = sendControl(p.ctl, []byte{starter.Start}, []int{fds[1], int(initCtl.Fd())})
	unix.Close(fds[1])
	if err != nil {
		return 0, nil, fmt.Errorf("ask starter: %w", err)
	}
	req, err := json.Marshal(&starter.Request{Root: rt.runc, ID: id, Config: cfg, Args: []string{initPath}, Env: []string{"PATH=" + defaultPath}})
	if err != nil {
		return 0, nil, fmt.Errorf("ask starter: %w", err)
	}
	if err := starter.SendMessage(conn, req, nil); err != nil {
		return 0, nil, fmt.Errorf("ask starter: %w", err)
	}
	// A start takes milliseconds; if ctx ends first, shutting the
	// socket down ends the wait, and the starter, finding nobody to
	// tell, takes the container back.
	stop := context.AfterFunc(ctx, func() { _ = unix.Shutdown(conn, unix.SHUT_RDWR) })
	defer stop()
	r, pidfd, err := recvReply(conn)
	switch {
	case err != nil && ctx.Err() != nil:
		return 0, nil, ctx.Err()
	case err != nil:
		return 0, nil, fmt.Errorf("starter: %w", err)
	case r.Error != "":
		if pidfd != nil {
			pidfd.Close()
		}
		return 0, nil, errors.New(r.Error)
	case pidfd == nil:
		return 0, nil, errors.New("starter: reply without a pidfd")
	}
	return r.Pid, pidfd, nil
}

// recvReply reads the starter's Reply and the pidfd it carries.
func recvReply(conn int) (starter.Reply, *os.File, error) {
	var r starter.Reply
	buf := make([]byte, 64<<10)
	oob := make([]byte, unix.CmsgSpace(4))
	var n, oobn int
	var err error
	for {
		n, oobn, _, _, err = unix.Recvmsg(conn, buf, oob, unix.MSG_CMSG_CLOEXEC)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if err != nil {
		return r, nil, err
	}
	var pidfd *os.File
	if cmsgs, perr := unix.ParseSocketControlMessage(oob[:oobn]); perr == nil {
		for _, m := range cmsgs {
			fds, _ := unix.ParseUnixRights(&m)
			for _, fd := range fds {
				if pidfd == nil {
					pidfd = os.NewFile(uintptr(fd), "pidfd")
				} else {
					unix.Close(fd)
				}
			}
		}
	}
	if n == 0 {
		return r, pidfd, errors.New("it exited")
	}
	if err := json.Unmarshal(buf[:n], &r); err != nil {
		if pidfd != nil {
			pidfd.Close()
		}
		return r, nil, fmt.Errorf("bad reply: %w", err)
	}
	return r, pidfd, nil
}

// waitPidfd waits up to d for the process of pidfd to exit.
func waitPidfd(pidfd *os.File, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		left := time.Until(deadline)
		if left < 0 {
			return false
		}
		fds := []unix.PollFd{{Fd: int32(pidfd.Fd()), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, int(left/time.Millisecond)+1)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		return err == nil && n == 1
	}
}
