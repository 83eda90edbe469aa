package image

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/jobrun/jobrun/internal/units"
)

type layerState int

const (
	stateWaiting layerState = iota
	stateFetching
	stateUnpacking
	stateDone // was already in the store
	stateNew  // downloaded or unpacked now
	stateFailed
)

var stateNames = [...]string{"waiting", "downloading", "unpacking", "already present", "done", "failed"}

// progress shows one pull: on a terminal a bar per layer, redrawn in place;
// otherwise a line per layer when it is done.
type progress struct {
	w     io.Writer
	tty   bool
	ref   string
	mu    sync.Mutex
	ls    []Layer
	state []layerState
	got   []int64
	start []time.Time
	drawn int
	last  time.Time
}

// newProgress returns nil (which shows nothing) when the store has no
// progress writer.
func (s *Store) newProgress(ref string, ls []Layer) *progress {
	if s.opts.Progress == nil {
		return nil
	}
	p := &progress{w: s.opts.Progress, tty: isTerminal(s.opts.Progress), ref: ref, ls: ls,
		state: make([]layerState, len(ls)), got: make([]int64, len(ls)), start: make([]time.Time, len(ls))}
	if p.tty {
		fmt.Fprintf(p.w, "%s\n", ref)
		p.draw()
	}
	return p
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

func (p *progress) update(i int, st layerState, n int64) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.got[i] += n
	changed := p.state[i] != st
	if changed && p.start[i].IsZero() {
		p.start[i] = time.Now()
	}
	p.state[i] = st
	if !p.tty {
		if changed && st >= stateDone {
			fmt.Fprintf(p.w, "%s: layer %s %s: %s in %s\n", p.ref, short(p.ls[i].Digest),
				units.FormatSize(p.ls[i].Size), stateNames[st], units.FormatDuration(time.Since(p.start[i])))
		}
		return
	}
	if changed || time.Since(p.last) > 100*time.Millisecond {
		p.draw()
	}
}

func (p *progress) finish() {
	if p == nil || !p.tty {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.draw()
}

// draw rewrites the bars in place: cursor up over the last drawing, then
// one cleared line per layer.
func (p *progress) draw() {
	var b strings.Builder
	if p.drawn > 0 {
		fmt.Fprintf(&b, "\x1b[%dA", p.drawn)
	}
	for i, l := range p.ls {
		frac := 0.0
		switch {
		case p.state[i] >= stateUnpacking && p.state[i] != stateFailed:
			frac = 1
		case l.Size > 0:
			frac = min(float64(p.got[i])/float64(l.Size), 1)
		}
		const width = 30
		n := int(frac * width)
		bar := strings.Repeat("=", n) + strings.Repeat(" ", width-n)
		fmt.Fprintf(&b, "\r\x1b[K  %s [%s] %9s / %-9s %s\n", short(l.Digest), bar,
			units.FormatSize(p.got[i]), units.FormatSize(l.Size), stateNames[p.state[i]])
	}
	p.drawn = len(p.ls)
	p.last = time.Now()
	io.WriteString(p.w, b.String())
}
