// Package launcher_test builds jobrun-launcher, the containers' static
// init (launcher.c), and tests it outside a container: the wire protocol
// against package wire, the PATH lookup, the start errors, the steps'
// credentials and stdio, wait statuses, signal forwarding and reaping.
// The sandbox package's tests run it as the init of real containers.
package launcher_test

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jobrun/jobrun/agent/sandbox/internal/wire"
	"github.com/jobrun/jobrun/internal/testenv"
	"golang.org/x/sys/unix"
)

// launcher is a running jobrun-launcher and our end of its control socket.
type launcher struct {
	cmd *exec.Cmd
	ctl int
}

// build builds the launcher as scripts/helpers.sh does, into a temporary
// directory. Running steps needs root: they set groups and ids.
func build(t *testing.T) string {
	t.Helper()
	testenv.RequireCC(t)
	testenv.RequireRoot(t)
	dir := t.TempDir()
	if err := testenv.BuildHelpers(dir); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, "jobrun-launcher")
}

// startLauncher starts bin with a control socket as its fd 3 and sends it
// setup, a Setup message; it returns the launcher and its answer.
func startLauncher(t *testing.T, bin string, setup []byte) (*launcher, []byte) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	theirs := os.NewFile(uintptr(fds[1]), "control")
	cmd := exec.Command(bin)
	cmd.ExtraFiles = []*os.File{theirs}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	theirs.Close()
	l := &launcher{cmd: cmd, ctl: fds[0]}
	t.Cleanup(func() { l.close() })
	if err := unix.Sendmsg(l.ctl, setup, nil, nil, 0); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	n, _, _, _, err := unix.Recvmsg(l.ctl, buf, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	return l, buf[:n]
}

// close closes the control socket, on which the launcher exits, and
// returns how it exited.
func (l *launcher) close() error {
	if l.ctl >= 0 {
		unix.Close(l.ctl)
		l.ctl = -1
		return l.cmd.Wait()
	}
	return nil
}

func ready(t *testing.T, bin string) *launcher {
	t.Helper()
	l, answer := startLauncher(t, bin, append([]byte{wire.Setup}, (&wire.Filter{}).Marshal()...))
	if string(answer) != string(wire.Ready) {
		t.Fatalf("answer to setup: %q", answer)
	}
	return l
}

// step is a step's conversation with the launcher: its step socket and
// the read ends of its stdout and stderr.
type step struct {
	conn           *os.File
	stdout, stderr *os.File
}

// send sends a Run message and the request payload; stdin nil is
// /dev/null.
func (l *launcher) send(t *testing.T, payload []byte, stdin *os.File) *step {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	conn, theirs := os.NewFile(uintptr(fds[0]), "step"), os.NewFile(uintptr(fds[1]), "step")
	if stdin == nil {
		if stdin, err = os.Open(os.DevNull); err != nil {
			t.Fatal(err)
		}
		defer stdin.Close()
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	err = unix.Sendmsg(l.ctl, []byte{wire.Run}, unix.UnixRights(int(theirs.Fd()), int(stdin.Fd()), int(outW.Fd()), int(errW.Fd())), nil, 0)
	theirs.Close()
	outW.Close()
	errW.Close()
	if err != nil {
		t.Fatal(err)
	}
	if err := wire.WriteFrame(conn, wire.Request, payload); err != nil {
		t.Fatal(err)
	}
	s := &step{conn: conn, stdout: outR, stderr: errR}
	t.Cleanup(func() { conn.Close(); outR.Close(); errR.Close() })
	return s
}

// started returns "" if the step started, else the launcher's reason.
func (s *step) started(t *testing.T) string {
	t.Helper()
	tag, msg, err := wire.ReadFrame(s.conn)
	switch {
	case err != nil:
		t.Fatalf("read answer: %v", err)
	case tag == wire.Failed:
		return string(msg)
	case tag != wire.Started || len(msg) != 0:
		t.Fatalf("answer %q %q, want Started", tag, msg)
	}
	return ""
}

// wait reads the step's output until it is closed, then its wait status.
func (s *step) wait(t *testing.T) (ws unix.WaitStatus, stdout, stderr string) {
	t.Helper()
	errc := make(chan []byte)
	go func() { b, _ := io.ReadAll(s.stderr); errc <- b }()
	out, _ := io.ReadAll(s.stdout)
	errOut := <-errc
	tag, msg, err := wire.ReadFrame(s.conn)
	if err != nil || tag != wire.Exited {
		t.Fatalf("exit: %q %q %v", tag, msg, err)
	}
	st, err := wire.ParseStatus(msg)
	if err != nil {
		t.Fatal(err)
	}
	return unix.WaitStatus(st), string(out), string(errOut)
}

// run runs p to its end.
func (l *launcher) run(t *testing.T, p *wire.Proc) (ws unix.WaitStatus, stdout, stderr, failed string) {
	t.Helper()
	s := l.send(t, p.Marshal(), nil)
	if failed = s.started(t); failed != "" {
		return 0, "", "", failed
	}
	ws, stdout, stderr = s.wait(t)
	return ws, stdout, stderr, ""
}

var pathEnv = "PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"

func sh(script string) *wire.Proc {
	return &wire.Proc{Path: "/bin/sh", Args: []string{"sh", "-c", script}, Env: []string{pathEnv}, Dir: "/"}
}

// TestSetup: the launcher answers Ready and loads the filter it is given
// (a step has one filter more than the test), or Failed with the reason
// and exits 1; it exits 0 when the control socket closes.
func TestSetup(t *testing.T) {
	bin := build(t)
	l := ready(t, bin)
	ws, out, _, failed := l.run(t, sh(`grep Seccomp_filters /proc/self/status`))
	own, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	base := 0
	for line := range strings.SplitSeq(string(own), "\n") {
		if v, ok := strings.CutPrefix(line, "Seccomp_filters:"); ok {
			base, _ = strconv.Atoi(strings.TrimSpace(v))
		}
	}
	if failed != "" || !ws.Exited() || ws.ExitStatus() != 0 || out != "Seccomp_filters:\t"+strconv.Itoa(base)+"\n" {
		t.Errorf("no filter: %v %q %s", ws, out, failed)
	}
	if err := l.close(); err != nil {
		t.Errorf("exit after the control socket closed: %v", err)
	}

	// SECCOMP_RET_ALLOW for every call: BPF_RET|BPF_K, 0x7fff0000.
	allow := []byte{0x06, 0, 0, 0, 0, 0, 0xff, 0x7f}
	l, answer := startLauncher(t, bin, append([]byte{wire.Setup}, (&wire.Filter{Program: allow}).Marshal()...))
	if string(answer) != string(wire.Ready) {
		t.Fatalf("answer to setup with a filter: %q", answer)
	}
	ws, out, _, failed = l.run(t, sh(`grep Seccomp_filters /proc/self/status`))
	if failed != "" || ws.ExitStatus() != 0 || out != "Seccomp_filters:\t"+strconv.Itoa(base+1)+"\n" {
		t.Errorf("filter: %v %q %s, want %d filters", ws, out, failed, base+1)
	}
	l.close()

	for _, tc := range []struct {
		setup []byte
		want  string
	}{
		{append([]byte{wire.Setup}, (&wire.Filter{Program: allow[:7]}).Marshal()...), "seccomp filter: bad length"},
		{append([]byte{wire.Setup}, (&wire.Filter{Flags: 1 << 30, Program: allow}).Marshal()...), "load seccomp filter: invalid argument"},
		{[]byte{wire.Setup, 0, 0}, "decode filter: truncated"},
		{[]byte{wire.Run}, "first message is not a setup message"},
	} {
		l, answer := startLauncher(t, bin, tc.setup)
		if string(answer) != string(wire.Failed)+tc.want {
			t.Errorf("setup %q: answer %q, want Failed %q", tc.setup, answer, tc.want)
		}
		var exit *exec.ExitError
		if err := l.close(); !errors.As(err, &exit) || exit.ExitCode() != 1 {
			t.Errorf("setup %q: launcher exited with %v, want status 1", tc.setup, err)
		}
	}
}

// TestLookPath: a name without a slash is looked up in the step's PATH as
// execvp does; the launcher execs what it found (a script printing $0,
// which is that path).
func TestLookPath(t *testing.T) {
	bin := build(t)
	l := ready(t, bin)
	dir := t.TempDir()
	for name, mode := range map[string]os.FileMode{"a/tool": 0o755, "b/tool": 0o755, "a/data": 0o644, "rel/tool": 0o755, "x/y": 0o755, "a/sub/tool": 0o755} {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("#!/bin/sh\necho \"$0\"\n"), mode); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		path, prog, dir, want string
	}{
		{dir + "/a:" + dir + "/b", "tool", "/", dir + "/a/tool"},
		{dir + "/b:" + dir + "/a", "tool", "/", dir + "/b/tool"},
		// Not executable, or a directory: skipped, as execvp does.
		{dir + "/a:" + dir + "/b", "data", "/", ""},
		{dir + ":" + dir + "/a", "sub", "/", ""},
		// Relative entries are taken from the step's directory; an
		// empty one is ".". Paths come out cleaned.
		{"rel", "tool", dir, dir + "/rel/tool"},
		{"/nowhere::", "tool", dir + "/a", dir + "/a/tool"},
		{dir + "/b/../a/", "tool", "/", dir + "/a/tool"},
		// With a slash, as given.
		{"", "./x/y", dir, "./x/y"},
		{"", "sub/tool", dir + "/a", "sub/tool"},
		{dir + "/a", "missing", "/", ""},
		{"", "tool", "/", ""},
	} {
		// Only the first PATH counts.
		p := &wire.Proc{Path: tc.prog, Args: []string{tc.prog}, Env: []string{"HOME=/", "PATH=" + tc.path, "PATH=" + dir + "/a"}, Dir: tc.dir}
		ws, out, errOut, failed := l.run(t, p)
		if tc.want == "" {
			if want := "exec " + tc.prog + ": executable file not found in $PATH"; failed != want {
				t.Errorf("%s in %s: %q, want failure %q", tc.prog, tc.path, failed, want)
			}
			continue
		}
		if failed != "" || ws.ExitStatus() != 0 || out != tc.want+"\n" {
			t.Errorf("%s in %s: %v %q %q %s, want %s", tc.prog, tc.path, ws, out, errOut, failed, tc.want)
		}
	}
}

// TestStartErrors: a step that cannot start is a Failed answer in the
// Go launcher's words, and the launcher goes on.
func TestStartErrors(t *testing.T) {
	bin := build(t)
	l := ready(t, bin)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "notelf"), []byte("no shebang"), 0o755); err != nil {
		t.Fatal(err)
	}
	private := filepath.Join(dir, "private")
	if err := os.Mkdir(private, 0o700); err != nil {
		t.Fatal(err)
	}
	nobody := func(p *wire.Proc) *wire.Proc { p.UID, p.GID = 65534, 65534; return p }
	for _, tc := range []struct {
		p    *wire.Proc
		want string
	}{
		{&wire.Proc{Path: "/no/such/command", Dir: "/"}, "exec /no/such/command: no such file or directory"},
		{&wire.Proc{Path: "no-such-command", Env: []string{pathEnv}, Dir: "/"}, "exec no-such-command: executable file not found in $PATH"},
		{&wire.Proc{Path: "/bin/true", Dir: "/no/such/dir"}, "working directory /no/such/dir: no such file or directory"},
		{&wire.Proc{Path: "/bin/true", Dir: "/etc/passwd"}, "working directory /etc/passwd: not a directory"},
		{&wire.Proc{Path: filepath.Join(dir, "notelf"), Dir: "/"}, "exec " + dir + "/notelf: exec format error"},
		// The directory is there, but not for this user.
		{nobody(&wire.Proc{Path: "/bin/true", Dir: private}), "exec /bin/true: permission denied"},
		{&wire.Proc{Path: "/bin/true", Args: []string{"a\x00b"}, Dir: "/"}, "exec /bin/true: invalid argument"},
	} {
		if _, _, _, failed := l.run(t, tc.p); failed != tc.want {
			t.Errorf("%s in %s: %q, want failure %q", tc.p.Path, tc.p.Dir, failed, tc.want)
		}
	}
	// Positive control: the same user runs where it may.
	if ws, out, _, failed := l.run(t, nobody(&wire.Proc{Path: "/bin/sh", Args: []string{"sh", "-c", "id -u"}, Dir: "/"})); failed != "" || ws.ExitStatus() != 0 || out != "65534\n" {
		t.Errorf("nobody: %v %q %s", ws, out, failed)
	}
}

// TestRequestDecoding: a request that does not decode is Failed with the
// error wire.Proc.Unmarshal gives for the same bytes, for every truncation
// of a request; one that is no request frame is dropped without an answer.
func TestRequestDecoding(t *testing.T) {
	bin := build(t)
	l := ready(t, bin)
	full := (&wire.Proc{Path: "/bin/true", Args: []string{"true", "x"}, Env: []string{"A=1"}, Dir: "/", UID: 1, GID: 2, Groups: []uint32{3, 4}}).Marshal()
	for n := range len(full) + 2 {
		b := full[:min(n, len(full))]
		if n > len(full) {
			b = append(append([]byte{}, full...), 0) // a byte too many
		}
		var p wire.Proc
		want := ""
		if err := p.Unmarshal(b); err != nil {
			want = err.Error()
		}
		s := l.send(t, b, nil)
		got := s.started(t)
		if got != want {
			t.Errorf("request of %d bytes: %q, want %q", len(b), got, want)
		}
		if got == "" {
			if ws, _, _ := s.wait(t); ws.ExitStatus() != 0 {
				t.Errorf("request of %d bytes: %v", len(b), ws)
			}
		}
	}
	fds, _ := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	conn := os.NewFile(uintptr(fds[0]), "step")
	defer conn.Close()
	null, _ := os.Open(os.DevNull)
	defer null.Close()
	unix.Sendmsg(l.ctl, []byte{wire.Run}, unix.UnixRights(fds[1], int(null.Fd()), int(null.Fd()), int(null.Fd())), nil, 0)
	unix.Close(fds[1])
	wire.WriteFrame(conn, wire.Started, full)
	if b, err := io.ReadAll(conn); err != nil || len(b) != 0 {
		t.Errorf("answer to a frame that is no request: %q %v", b, err)
	}
	// Still serving.
	if ws, out, _, failed := l.run(t, sh("echo ok")); failed != "" || ws.ExitStatus() != 0 || out != "ok\n" {
		t.Errorf("after bad requests: %v %q %s", ws, out, failed)
	}
}

// TestStep: a step gets its args, environment, directory, ids, groups and
// stdio, leads its own session, and its wait status comes back as is;
// steps run at once.
func TestStep(t *testing.T) {
	bin := build(t)
	l := ready(t, bin)
	inR, inW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer inR.Close()
	// The first step waits for its input while the others run.
	first := l.send(t, sh(`cat; exit 3`).Marshal(), inR)
	if failed := first.started(t); failed != "" {
		t.Fatal(failed)
	}
	p := &wire.Proc{
		Path: "sh",
		Args: []string{"step", "-c", `echo "$0 $1 $FOO"; id -u; id -g; id -G; pwd; [ "$(cut -d' ' -f6 /proc/$$/stat)" = $$ ] && echo leader; grep SigBlk /proc/self/status; echo to stderr >&2`, "zero", "one"},
		Env:  []string{pathEnv, "FOO=bar"},
		Dir:  "/usr",
		UID:  1000, GID: 1001, Groups: []uint32{1002, 1003},
	}
	ws, out, errOut, failed := l.run(t, p)
	want := "zero one bar\n1000\n1001\n1001 1002 1003\n/usr\nleader\nSigBlk:\t0000000000000000\n"
	if failed != "" || !ws.Exited() || ws.ExitStatus() != 0 || out != want || errOut != "to stderr\n" {
		t.Errorf("step: %v %q %q %s, want %q", ws, out, errOut, failed, want)
	}
	// No groups means none, not the launcher's.
	if ws, out, _, failed := l.run(t, sh(`id -G`)); failed != "" || ws.ExitStatus() != 0 || out != "0\n" {
		t.Errorf("no groups: %v %q %s", ws, out, failed)
	}
	if ws, _, _, failed := l.run(t, sh(`kill -KILL $$`)); failed != "" || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Errorf("killed step: %v %s", ws, failed)
	}
	inW.WriteString("input\n")
	inW.Close()
	ws, out, _ = first.wait(t)
	if ws.ExitStatus() != 3 || out != "input\n" {
		t.Errorf("first step: %v %q", ws, out)
	}
}

// TestSignalsAndOrphans: a termination signal sent to the launcher reaches
// each running step's process group; a step's orphans are reaped (the
// launcher is their subreaper here).
func TestSignalsAndOrphans(t *testing.T) {
	bin := build(t)
	l := ready(t, bin)
	s := l.send(t, sh(`trap 'echo got TERM; exit 0' TERM; echo ready; while :; do sleep 0.05; done`).Marshal(), nil)
	if failed := s.started(t); failed != "" {
		t.Fatal(failed)
	}
	line := make([]byte, 6)
	if _, err := io.ReadFull(s.stdout, line); err != nil || string(line) != "ready\n" {
		t.Fatalf("%q %v", line, err)
	}
	if err := l.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if ws, out, _ := s.wait(t); ws.ExitStatus() != 0 || out != "got TERM\n" {
		t.Errorf("step after SIGTERM: %v %q", ws, out)
	}

	// (Their output elsewhere: the step's output ends when every writer
	// has closed it.)
	if ws, _, _, failed := l.run(t, sh(`(sleep 1 >/dev/null 2>&1 &); (setsid sleep 1 >/dev/null 2>&1 &); true`)); failed != "" || ws.ExitStatus() != 0 {
		t.Fatalf("%v %s", ws, failed)
	}
	// The launcher's children, zombies included, from every process's
	// stat: pid (comm) state ppid ...
	children := func() string {
		var pids []string
		procs, err := os.ReadDir("/proc")
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range procs {
			b, err := os.ReadFile("/proc/" + p.Name() + "/stat")
			if i := bytes.LastIndexByte(b, ')'); err == nil && i > 0 {
				if f := strings.Fields(string(b[i+1:])); len(f) > 1 && f[1] == strconv.Itoa(l.cmd.Process.Pid) {
					pids = append(pids, p.Name())
				}
			}
		}
		return strings.Join(pids, " ")
	}
	// Positive control: the orphans are the launcher's now.
	if c := children(); len(strings.Fields(c)) != 2 {
		t.Errorf("launcher's children after the step: %q, want the 2 orphans", c)
	}
	deadline := time.Now().Add(10 * time.Second)
	for children() != "" {
		if time.Now().After(deadline) {
			t.Fatalf("children left (zombies not reaped?): %s", children())
		}
		time.Sleep(20 * time.Millisecond)
	}
}
