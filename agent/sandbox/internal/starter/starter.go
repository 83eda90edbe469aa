// Package starter is the inside of jobrun-starter (cmd
// agent/sandbox/starter), the small process that starts job containers
// through libcontainer, and the protocol package sandbox speaks with it.
//
// libcontainer starts a container by re-executing the binary of the
// process that asks, and that copy runs all its package initialisers
// before it can set anything up. In jobrun (300 packages: the scheduler,
// the stores, the clients of S3, git and registries) that costs about
// 10 ms per container; in this program, which links little more than
// libcontainer, about 1 ms. So the agent keeps one starter per sandbox
// Runtime and asks it to start each container; everything else (Exec,
// Stats, Destroy) the agent does itself.
//
// The agent holds one end of a SOCK_SEQPACKET socket pair; the starter
// gets the other as file descriptor 3 (ControlFD). The starter first sends
// a one-byte Ready message; then for each container the agent sends on
// it a one-byte Start message carrying, with SCM_RIGHTS, a
// new SOCK_SEQPACKET socket for that start and the descriptor the
// container's init gets as its fd 3 (the launcher's control socket). On
// the start socket the agent sends the Request as JSON, and the starter
// answers with a Reply, carrying a pidfd of the container's init if it
// started. The starter is the init's parent: it reaps it when it exits,
// and the init gets SIGKILL if the starter dies (parent-death signal), as
// the starter does if the agent dies.
package starter

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"

	// Registers the devices cgroup driver; without it device rules fail.
	_ "github.com/opencontainers/cgroups/devices"
	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/configs"
	"golang.org/x/sys/unix"
)

// ControlFD is the starter's end of the control socket.
const ControlFD = 3

// Message tags on the control socket: the starter says Ready once, when
// it can take starts; then the agent sends a Start per container.
const (
	Ready byte = 'R'
	Start byte = 'C'
)

// CompileSeccompEnv, set in its environment, makes the starter compile a
// seccomp filter instead (see CompileSeccomp).
const CompileSeccompEnv = "_JOBRUN_SANDBOX_COMPILE_SECCOMP"

// Request asks for one container.
type Request struct {
	// Root is libcontainer's state root; the container's state goes in
	// Root/ID.
	Root   string
	ID     string
	Config *configs.Config
	// Args and Env are the init's; it starts in "/".
	Args []string
	Env  []string
}

// Reply answers a Request: the init's pid (with its pidfd attached), or
// why the container could not be started. On failure nothing of it is
// left: no process, cgroup or state.
type Reply struct {
	Pid   int    `json:",omitempty"`
	Error string `json:",omitempty"`
}

// MaxMessage bounds a Request: a container's configuration with a
// seccomp profile that libcontainer compiles itself is some 100 KiB.
const MaxMessage = 4 << 20

// Serve answers Start messages on the control socket ctl until the agent
// closes it. Starts run on threads that never exit, one per CPU (at
// least two), so parallel jobs do not queue behind each other: the kernel
// sends an init its parent-death signal when the parent *thread* exits,
// and Go ends threads (a goroutine that exits while locked to one, as
// libcontainer's own mount helper does), so a start on an arbitrary
// thread could later kill a healthy job.
func Serve(ctl int) error {
	if err := SendMessage(ctl, []byte{Ready}, nil); err != nil {
		return fmt.Errorf("say ready: %w", err)
	}
	work := make(chan func())
	for range max(2, runtime.NumCPU()) {
		go func() {
			runtime.LockOSThread()
			for f := range work {
				f()
			}
		}()
	}
	// Starts under way when the agent closes the socket finish first:
	// one whose agent gave up (its reply fails) takes its container
	// back, which a starter killed mid-start could not (an init left
	// waiting to be started, for good).
	var inflight sync.WaitGroup
	for {
		conn, initCtl, err := recvStart(ctl)
		if err != nil || conn < 0 {
			inflight.Wait()
			return err
		}
		inflight.Add(1)
		go func() {
			defer inflight.Done()
			handle(work, conn, initCtl)
		}()
	}
}

// recvStart receives a Start message and its two descriptors. It returns
// conn -1 when the agent has closed the socket.
func recvStart(ctl int) (conn, initCtl int, err error) {
	var b [1]byte
	oob := make([]byte, unix.CmsgSpace(2*4))
	for {
		n, oobn, _, _, err := unix.Recvmsg(ctl, b[:], oob, unix.MSG_CMSG_CLOEXEC)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return -1, -1, fmt.Errorf("read control socket: %w", err)
		}
		if n == 0 && oobn == 0 {
			return -1, -1, nil
		}
		fds := rights(oob[:oobn])
		if n != 1 || b[0] != Start || len(fds) != 2 {
			for _, fd := range fds {
				unix.Close(fd)
			}
			return -1, -1, errors.New("bad message on control socket")
		}
		return fds[0], fds[1], nil
	}
}

func rights(oob []byte) []int {
	var fds []int
	cmsgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil
	}
	for _, m := range cmsgs {
		if r, err := unix.ParseUnixRights(&m); err == nil {
			fds = append(fds, r...)
		}
	}
	return fds
}

// handle serves one start: it reads the Request from conn, starts the
// container on a starter thread and replies.
func handle(work chan<- func(), conn, initCtl int) {
	defer unix.Close(conn)
	ctlFile := os.NewFile(uintptr(initCtl), "init-control")
	defer ctlFile.Close()
	var req Request
	msg, err := RecvMessage(conn)
	if err == nil {
		err = json.Unmarshal(msg, &req)
	}
	if err != nil {
		_ = reply(conn, Reply{Error: fmt.Sprintf("read request: %v", err)}, -1)
		return
	}
	var (
		c *libcontainer.Container
		p *libcontainer.Process
	)
	done := make(chan struct{})
	work <- func() {
		defer close(done)
		c, p, err = start(&req, ctlFile)
	}
	<-done
	if err != nil {
		_ = reply(conn, Reply{Error: err.Error()}, -1)
		return
	}
	pid, _ := p.Pid()
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err == nil {
		err = reply(conn, Reply{Pid: pid}, pidfd)
		unix.Close(pidfd)
	}
	if err != nil {
		// The agent cannot know of this container: take it back.
		_ = p.Signal(unix.SIGKILL)
		_, _ = p.Wait()
		_ = c.Destroy()
		return
	}
	// Reap the init when it exits; the agent learns of it by its pidfd.
	go func() { _, _ = p.Wait() }()
}

// start creates and starts the container of req, its init getting
// initCtl as fd 3. On failure it leaves nothing behind.
func start(req *Request, initCtl *os.File) (*libcontainer.Container, *libcontainer.Process, error) {
	c, err := libcontainer.Create(req.Root, req.ID, req.Config)
	if err != nil {
		return nil, nil, fmt.Errorf("create: %w", err)
	}
	p := &libcontainer.Process{
		Args:       req.Args,
		Env:        req.Env,
		Cwd:        "/",
		ExtraFiles: []*os.File{initCtl},
		Init:       true,
	}
	if err := c.Run(p); err != nil {
		_ = c.Destroy()
		return nil, nil, fmt.Errorf("run init: %w", err)
	}
	return c, p, nil
}

// reply sends r on conn with fd attached unless it is negative.
func reply(conn int, r Reply, fd int) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	var oob []byte
	if fd >= 0 {
		oob = unix.UnixRights(fd)
	}
	return SendMessage(conn, b, oob)
}

// SendMessage sends msg (with the control message oob) as one message on
// the SOCK_SEQPACKET socket fd, making the socket's send buffer big
// enough for it.
func SendMessage(fd int, msg, oob []byte) error {
	if len(msg) > MaxMessage {
		return fmt.Errorf("message of %d bytes is over the limit of %d", len(msg), MaxMessage)
	}
	if size, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF); err == nil && size < 2*len(msg) {
		// The kernel doubles what it is given; FORCE passes the
		// system's cap, which a root process may.
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, len(msg)+4096); err != nil {
			_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, len(msg)+4096)
		}
	}
	for {
		err := unix.Sendmsg(fd, msg, oob, nil, unix.MSG_NOSIGNAL)
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}

// RecvMessage receives one whole message from the blocking SOCK_SEQPACKET
// socket fd, however long (up to MaxMessage). End of file is an error.
func RecvMessage(fd int) ([]byte, error) {
	var one [1]byte
	for {
		n, _, _, _, err := unix.Recvmsg(fd, one[:], nil, unix.MSG_PEEK|unix.MSG_TRUNC)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if n == 0 {
			return nil, errors.New("connection closed")
		}
		if n > MaxMessage {
			return nil, fmt.Errorf("message of %d bytes is over the limit of %d", n, MaxMessage)
		}
		buf := make([]byte, n)
		if n, _, _, _, err = unix.Recvmsg(fd, buf, nil, 0); err != nil {
			return nil, err
		}
		return buf[:n], nil
	}
}
