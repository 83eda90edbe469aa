package sandbox

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// linger is how long Exec keeps copying output after the step's process
// has exited: a background process it started may still hold the pipe.
const linger = 500 * time.Millisecond

// copier carries one output stream of a step from a pipe to the caller's
// writer. The process gets the pipe's write end directly (no copying
// goroutine inside libcontainer), so a background process that keeps the
// pipe open cannot make Exec hang: after the step ends and linger passes,
// the copier drops further output instead of writing it, and keeps
// draining the pipe until the writers close it or the container is
// destroyed, so such a process never dies of SIGPIPE.
type copier struct {
	r, w *os.File
	dst  io.Writer
	done chan struct{}

	mu       sync.Mutex
	detached bool
}

// newCopier returns a copier to dst, or one that discards if dst is nil.
// It is registered with c so that Destroy closes it.
func (c *Container) newCopier(dst io.Writer) (*copier, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("output pipe: %w", err)
	}
	if dst == nil {
		dst = io.Discard
	}
	cp := &copier{r: r, w: w, dst: dst, done: make(chan struct{})}
	c.mu.Lock()
	c.outputs = append(c.outputs, cp)
	c.mu.Unlock()
	return cp, nil
}

// start closes our copy of the write end (the process has its own) and
// starts copying.
func (cp *copier) start() {
	cp.w.Close()
	go func() {
		defer close(cp.done)
		buf := make([]byte, 32<<10)
		for {
			n, err := cp.r.Read(buf)
			if n > 0 {
				cp.mu.Lock()
				if !cp.detached {
					cp.dst.Write(buf[:n])
				}
				cp.mu.Unlock()
			}
			if err != nil {
				cp.r.Close()
				return
			}
		}
	}()
}

// finish waits up to linger for the stream to end, then detaches dst.
func (cp *copier) finish() {
	select {
	case <-cp.done:
	case <-time.After(linger):
	}
	cp.mu.Lock()
	cp.detached = true
	cp.mu.Unlock()
}

// close stops the copier at once.
func (cp *copier) close() {
	cp.w.Close()
	cp.r.Close()
}
