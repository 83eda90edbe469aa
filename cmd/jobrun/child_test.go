package main

import (
	"bytes"
	"context"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jobrun/jobrun/agent/sandbox"
	"github.com/jobrun/jobrun/internal/testenv"
)

// child is a jobrun process a test started from the built binary, tied to
// the test binary (testenv.StartChild): a test that panics or runs out of
// -timeout leaves no jobrun, and so no job, behind. Its stdout and stderr
// are read to their end as it runs.
type child struct {
	cmd            *exec.Cmd
	stdout, stderr *lines
	done           chan struct{} // closed once cmd has exited and its output is read
	err            error         // cmd's end, once done is closed
}

// lines is an output stream of a child, kept whole and as lines; changed
// is closed (and replaced) at every write.
type lines struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	changed chan struct{}
}

func newLines() *lines { return &lines{changed: make(chan struct{})} }

func (l *lines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Write(p)
	close(l.changed)
	l.changed = make(chan struct{})
	return len(p), nil
}

// String is everything written so far.
func (l *lines) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// find returns the first whole line that match accepts, and a channel
// closed at the next write.
func (l *lines) find(match func(string) bool) (string, bool, <-chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	text := l.buf.String()
	if i := strings.LastIndexByte(text, '\n'); i >= 0 {
		for _, line := range strings.Split(text[:i], "\n") {
			if match(line) {
				return line, true, l.changed
			}
		}
	}
	return "", false, l.changed
}

// startChild starts cmd as a child (see child). It is killed when the test
// ends if it still runs.
func startChild(t *testing.T, cmd *exec.Cmd) *child {
	t.Helper()
	c := &child{cmd: cmd, stdout: newLines(), stderr: newLines(), done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = c.stdout, c.stderr
	// A process of the job's that kept jobrun's output open must not
	// keep the test waiting once jobrun has exited.
	cmd.WaitDelay = time.Minute
	wait, err := testenv.StartChild(cmd)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		c.err = wait()
		close(c.done)
	}()
	t.Cleanup(func() {
		select {
		case <-c.done:
		default:
			cmd.Process.Kill()
			<-c.done
		}
	})
	return c
}

// runChild runs cmd as a child (see child) to its end, its output going
// where cmd says.
func runChild(t *testing.T, cmd *exec.Cmd) error {
	t.Helper()
	wait, err := testenv.StartChild(cmd)
	if err != nil {
		t.Fatal(err)
	}
	return wait()
}

// has matches a line containing s.
func has(s string) func(string) bool {
	return func(l string) bool { return strings.Contains(l, s) }
}

// line waits for a line of out (c.stdout or c.stderr) that match accepts
// and returns it; it fails the test, killing c, if c exits or a minute
// passes first.
func (c *child) line(t *testing.T, out *lines, match func(string) bool) string {
	t.Helper()
	timeout := time.After(time.Minute)
	for {
		l, ok, changed := out.find(match)
		if ok {
			return l
		}
		select {
		case <-changed:
		case <-c.done:
			if l, ok, _ := out.find(match); ok {
				return l
			}
			t.Fatalf("jobrun exited (%v) without the line looked for:\n%s%s", c.err, c.stdout, c.stderr)
		case <-timeout:
			c.cmd.Process.Kill()
			<-c.done
			t.Fatalf("no line looked for within a minute:\n%s%s", c.stdout, c.stderr)
		}
	}
}

// signal sends sig to c and waits for its end, which it returns; it fails
// the test, killing c, if c does not end within a minute.
func (c *child) signal(t *testing.T, sig syscall.Signal) error {
	t.Helper()
	c.cmd.Process.Signal(sig)
	select {
	case <-c.done:
		return c.err
	case <-time.After(time.Minute):
		c.cmd.Process.Kill()
		<-c.done
		t.Fatalf("jobrun did not end within a minute of %s:\n%s%s", sig, c.stdout, c.stderr)
		return nil
	}
}

// holdStateDir keeps other processes' start-up clean-ups (which reclaim
// what killed processes left in state dirs nobody uses, see
// reclaimOrphans) off state until the returned release is called, or
// the test ends: a test that kills a jobrun and then looks at what it
// left would otherwise race every jobrun started meanwhile, by another
// package's tests too. Take it before the kill.
func holdStateDir(t *testing.T, state string) (release func()) {
	t.Helper()
	rel, err := sandbox.Hold(context.Background(), state)
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	release = func() { once.Do(rel) }
	t.Cleanup(release)
	return release
}
