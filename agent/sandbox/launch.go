package sandbox

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/jobrun/jobrun/agent/sandbox/internal/wire"
	"golang.org/x/sys/unix"
)

// launcherName is the file name of the launcher binary, the container's
// PID 1 (see agent/sandbox/launcher). `make build` puts it next to jobrun.
const launcherName = "jobrun-launcher"

// socketPair returns the two ends of a new AF_UNIX socket pair of type
// typ (SOCK_SEQPACKET, SOCK_STREAM) named name: ours non-blocking, so
// that reads can have deadlines, and theirs blocking, for the other
// process (the launcher, the starter).
func socketPair(typ int, name string) (ours, theirs *os.File, err error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, typ|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("%s socket: %w", name, err)
	}
	if err := unix.SetNonblock(fds[0], true); err != nil {
		unix.Close(fds[0])
		unix.Close(fds[1])
		return nil, nil, fmt.Errorf("%s socket: %w", name, err)
	}
	return os.NewFile(uintptr(fds[0]), name), os.NewFile(uintptr(fds[1]), name), nil
}

// setupLauncher sends the launcher its seccomp filter (an empty one for
// none) and waits until it has loaded it and is ready for steps.
func setupLauncher(ctx context.Context, ctl *os.File, filter *wire.Filter) error {
	if err := sendControl(ctl, append([]byte{wire.Setup}, filter.Marshal()...), nil); err != nil {
		return fmt.Errorf("set up launcher: %w", err)
	}
	// The launcher answers within milliseconds; a deadline keeps a hung
	// one from hanging Start.
	deadline := time.Now().Add(10 * time.Second)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	if err := ctl.SetReadDeadline(deadline); err != nil {
		return fmt.Errorf("set up launcher: %w", err)
	}
	defer ctl.SetReadDeadline(time.Time{})
	buf := make([]byte, 4096)
	n, err := ctl.Read(buf)
	switch {
	case err != nil:
		return fmt.Errorf("set up launcher: %w", err)
	case n == 0:
		return errors.New("set up launcher: it exited")
	case buf[0] == wire.Ready:
		return nil
	case buf[0] == wire.Failed:
		return fmt.Errorf("set up launcher: %s", buf[1:n])
	}
	return fmt.Errorf("set up launcher: unexpected answer %q", buf[:n])
}

// sendControl sends one message with descriptors on the control socket.
func sendControl(ctl *os.File, msg []byte, fds []int) error {
	raw, err := ctl.SyscallConn()
	if err != nil {
		return err
	}
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	var serr error
	err = raw.Write(func(fd uintptr) bool {
		serr = unix.Sendmsg(int(fd), msg, oob, nil, unix.MSG_NOSIGNAL)
		return !errors.Is(serr, unix.EAGAIN)
	})
	if err != nil {
		return err
	}
	return serr
}

// step is one step's conversation with the launcher.
type step struct {
	conn *os.File
}

// launch asks the launcher to start p with the given stdio and returns once
// it runs (or could not be started: the error says why).
func (c *Container) launch(p *wire.Proc, stdin, stdout, stderr *os.File) (*step, error) {
	conn, theirs, err := socketPair(unix.SOCK_STREAM, "step")
	if err != nil {
		return nil, err
	}
	err = sendControl(c.ctl, []byte{wire.Run}, []int{int(theirs.Fd()), int(stdin.Fd()), int(stdout.Fd()), int(stderr.Fd())})
	theirs.Close()
	if err == nil {
		err = wire.WriteFrame(conn, wire.Request, p.Marshal())
	}
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("send step to launcher: %w", err)
	}
	tag, msg, err := wire.ReadFrame(conn)
	switch {
	case err != nil:
		conn.Close()
		return nil, fmt.Errorf("launcher: %w", err)
	case tag == wire.Failed:
		conn.Close()
		return nil, errors.New(string(msg))
	case tag != wire.Started:
		conn.Close()
		return nil, fmt.Errorf("launcher: unexpected answer %q", tag)
	}
	return &step{conn: conn}, nil
}

// wait returns the step's wait status once it has ended, or an error if
// the launcher went away first (the container was destroyed).
func (s *step) wait() (unix.WaitStatus, error) {
	defer s.conn.Close()
	tag, msg, err := wire.ReadFrame(s.conn)
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = errors.New("launcher exited")
		}
		return 0, err
	}
	if tag != wire.Exited {
		return 0, fmt.Errorf("launcher: unexpected answer %q", tag)
	}
	ws, err := wire.ParseStatus(msg)
	return unix.WaitStatus(ws), err
}
