package local

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/jobrun/jobrun/agent"
	"github.com/jobrun/jobrun/internal/units"
)

// Printer shows a workflow's events to a person: every line prefixed with
// its job and step, and, on a terminal, colours and a live status line of
// the running jobs and steps with their timers.
type Printer struct {
	mu      sync.Mutex
	w       io.Writer
	tty     bool
	now     func() time.Time
	running map[string]*live // by job
	status  bool             // a status line is on screen
	colors  map[string]string
	stop    chan struct{}
}

type live struct {
	step         string
	jobStart     time.Time
	stepStart    time.Time
	haveStepTime bool
}

// NewPrinter prints to w; tty turns on colours and the live status line.
func NewPrinter(w io.Writer, tty bool) *Printer {
	p := &Printer{w: w, tty: tty, now: time.Now, running: map[string]*live{}, colors: map[string]string{}, stop: make(chan struct{})}
	if tty {
		go p.tick()
	}
	return p
}

// Close stops the live status line.
func (p *Printer) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.stop:
	default:
		close(p.stop)
	}
	p.clearStatus()
}

func (p *Printer) tick() {
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
			p.mu.Lock()
			p.clearStatus()
			p.drawStatus()
			p.mu.Unlock()
		}
	}
}

const (
	reset = "\033[0m"
	dim   = "\033[2m"
	red   = "\033[31m"
	green = "\033[32m"
	bold  = "\033[1m"
)

var palette = []string{"\033[36m", "\033[35m", "\033[34m", "\033[33m", "\033[96m", "\033[95m"}

// Event implements agent.Sink.
func (p *Printer) Event(e agent.Event) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.track(e)
	line := p.format(e)
	if line == "" {
		return
	}
	p.clearStatus()
	fmt.Fprintln(p.w, line)
	p.drawStatus()
}

func (p *Printer) track(e agent.Event) {
	switch e.Kind {
	case agent.JobStarted:
		p.running[e.Job] = &live{jobStart: e.Time}
	case agent.StepStarted:
		if l := p.running[e.Job]; l != nil {
			l.step, l.stepStart, l.haveStepTime = e.Step, e.Time, true
		}
	case agent.JobFinished:
		delete(p.running, e.Job)
	}
}

func (p *Printer) format(e agent.Event) string {
	prefix := e.Job
	if e.Step != "" {
		prefix += " › " + e.Step
	}
	if p.tty {
		c, ok := p.colors[e.Job]
		if !ok {
			c = palette[len(p.colors)%len(palette)]
			p.colors[e.Job] = c
		}
		prefix = c + prefix + reset
	}
	switch e.Kind {
	case agent.Output:
		return prefix + " | " + e.Text
	case agent.Notice:
		return prefix + " " + p.paint(dim, "· "+e.Text)
	case agent.StepStarted:
		return prefix + " " + p.paint(dim, "▶ started")
	case agent.StepFinished:
		r := e.StepResult
		msg := fmt.Sprintf("%s in %s", r.Status, units.FormatDuration(r.Duration))
		if r.Exit != "" {
			msg += ": " + r.Exit
		}
		if r.AllowedFailure {
			msg += " (allowed to fail)"
		}
		return prefix + " " + p.paint(statusColor(r.Status), "■ "+msg)
	case agent.ArtifactStored:
		return prefix + " " + p.paint(dim, "artifact "+e.Text)
	case agent.JobFinished:
		r := e.Result
		msg := fmt.Sprintf("job %s in %s", r.Status, units.FormatDuration(r.Duration))
		if r.Reason != "" {
			msg += ": " + r.Reason
		}
		return prefix + " " + p.paint(bold+statusColor(r.Status), msg)
	}
	return ""
}

func statusColor(s agent.Status) string {
	if s == agent.Succeeded {
		return green
	}
	return red
}

func (p *Printer) paint(color, s string) string {
	if !p.tty {
		return s
	}
	return color + s + reset
}

func (p *Printer) clearStatus() {
	if p.status {
		fmt.Fprint(p.w, "\r\033[K")
		p.status = false
	}
}

func (p *Printer) drawStatus() {
	if !p.tty || len(p.running) == 0 {
		return
	}
	now := p.now()
	var parts []string
	for job, l := range p.running {
		s := fmt.Sprintf("%s %s", job, units.FormatDuration(now.Sub(l.jobStart).Truncate(100*time.Millisecond)))
		if l.haveStepTime {
			s += fmt.Sprintf(" (%s %s)", l.step, units.FormatDuration(now.Sub(l.stepStart).Truncate(100*time.Millisecond)))
		}
		parts = append(parts, s)
	}
	sort.Strings(parts)
	fmt.Fprint(p.w, dim+"running: "+strings.Join(parts, " · ")+reset)
	p.status = true
}

// Summary writes the final table: job, result, duration, CPU, peak memory,
// cache hits and artifacts.
func Summary(w io.Writer, results []agent.Result) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "JOB\tRESULT\tDURATION\tCPU\tPEAK MEM\tCACHE HITS\tARTIFACTS\tREASON")
	for _, r := range results {
		mem, cpu := "-", "-"
		if r.Usage.PeakMemory > 0 {
			mem = units.FormatSize(r.Usage.PeakMemory)
		}
		if r.Usage.CPU > 0 {
			cpu = units.FormatDuration(r.Usage.CPU)
		}
		hits := "-"
		if r.Caches > 0 {
			hits = fmt.Sprintf("%d/%d", r.CacheHits, r.Caches)
		}
		dur := "-"
		if r.Duration > 0 {
			dur = units.FormatDuration(r.Duration)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n", r.Job, r.Status, dur, cpu, mem, hits, len(r.Artifacts), r.Reason)
	}
	tw.Flush()
}
