package agent

import (
	"bytes"
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/jobrun/jobrun/internal/units"
)

// maxLine bounds a line held while waiting for its newline; a longer one is
// passed on in pieces, so a process writing without newlines cannot grow
// memory without bound.
const maxLine = 64 << 10

// lineWriter turns a byte stream into lines, each passed to emit without its
// newline. Close flushes a last unterminated line.
type lineWriter struct {
	mu   sync.Mutex
	buf  []byte
	emit func(line string)
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
				w.emit(string(w.buf))
				w.buf = w.buf[:0]
			}
			break
		}
		w.buf = append(w.buf, p[:i]...)
		w.emit(strings.TrimSuffix(string(w.buf), "\r"))
		w.buf = w.buf[:0]
		p = p[i+1:]
	}
	return n, nil
}

// Close passes on the last line if it had no newline.
func (w *lineWriter) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buf) > 0 {
		w.emit(string(w.buf))
		w.buf = nil
	}
	return nil
}

// masker replaces secret values in log lines with ***. A multi-line secret
// (a key file, say) is also masked line by line, because output arrives one
// line at a time.
type masker struct {
	r *strings.Replacer
}

// minMaskedPart keeps a multi-line secret's short lines (a lone "}" or a
// blank line) from masking unrelated output.
const minMaskedPart = 4

func newMasker(secrets []string) *masker {
	var vals []string
	seen := map[string]bool{}
	add := func(s string) {
		if s != "" && !seen[s] {
			seen[s] = true
			vals = append(vals, s)
		}
	}
	for _, s := range secrets {
		add(s)
		if strings.Contains(s, "\n") {
			for _, part := range strings.Split(s, "\n") {
				if part = strings.TrimSpace(part); len(part) >= minMaskedPart {
					add(part)
				}
			}
		}
	}
	if len(vals) == 0 {
		return &masker{}
	}
	// Longest first, so a secret containing another is masked whole.
	sort.Slice(vals, func(i, j int) bool { return len(vals[i]) > len(vals[j]) })
	pairs := make([]string, 0, 2*len(vals))
	for _, v := range vals {
		pairs = append(pairs, v, "***")
	}
	return &masker{r: strings.NewReplacer(pairs...)}
}

func (m *masker) mask(s string) string {
	if m.r == nil {
		return s
	}
	return m.r.Replace(s)
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
