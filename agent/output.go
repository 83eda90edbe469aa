package agent

import (
	"bytes"
	"fmt"
	"strings"
	"sync"

	"github.com/jobrun/jobrun/internal/units"
)

// maxLine bounds a line held while waiting for its newline; a longer one is
// passed on in pieces, so a process writing without newlines cannot grow
// memory without bound.
const maxLine = 64 << 10

// lineWriter turns a byte stream into lines, each passed to emit without its
// newline. A line longer than maxLine is passed on in pieces, each but the
// last with more set. Close flushes a last unterminated line.
type lineWriter struct {
	mu   sync.Mutex
	buf  []byte
	cut  bool // the line in buf goes on from a piece passed on
	emit func(line string, more bool)
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			w.buf = append(w.buf, p...)
			if len(w.buf) >= maxLine {
				w.emit(string(w.buf), true)
				w.buf, w.cut = w.buf[:0], true
			}
			break
		}
		w.buf = append(w.buf, p[:i]...)
		w.emit(strings.TrimSuffix(string(w.buf), "\r"), false)
		w.buf, w.cut = w.buf[:0], false
		p = p[i+1:]
	}
	return n, nil
}

// Close passes on the last line if it had no newline.
func (w *lineWriter) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buf) > 0 || w.cut {
		w.emit(string(w.buf), false)
		w.buf, w.cut = nil, false
	}
	return nil
}

// logCap stops a job's log at limit bytes and says so once, so a runaway
// build cannot fill the disk or the server.
type logCap struct {
	mu      sync.Mutex
	limit   int64
	written int64
	cut     bool
}

// admit reports whether line may be logged, and the notice to log instead
// the first time the limit is crossed.
func (c *logCap) admit(line string) (ok bool, notice string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.limit <= 0 {
		return true, ""
	}
	c.written += int64(len(line)) + 1
	if c.written <= c.limit {
		return true, ""
	}
	if c.cut {
		return false, ""
	}
	c.cut = true
	return false, fmt.Sprintf("log truncated: the job's output passed the %s limit; later lines are not kept", units.FormatSize(c.limit))
}
