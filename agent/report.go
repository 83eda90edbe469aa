package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/jobrun/jobrun/api"
)

// How the log goes up: a chunk when this much is buffered, or at this
// interval, whichever comes first; and no request larger than maxChunk,
// so a backlog after an outage goes up in pieces the scheduler can take.
const (
	logChunk      = 64 << 10
	logFlushEvery = 250 * time.Millisecond
	maxChunk      = 1 << 20
)

// reporter is the Sink of one leased attempt: it turns the job's events
// into the attempt's log (api.LogLine JSON, one per line) and step states,
// and sends them to the scheduler from its own goroutine, so a slow or
// unreachable scheduler never blocks the job's output.
//
// The log is uploaded by byte offset: the buffer holds what the scheduler
// has not acknowledged, base is the log offset of its first byte. A chunk
// whose reply was lost is sent again from the same offset, and the
// scheduler keeps only the bytes past what it holds, so nothing is stored
// twice; acknowledged bytes are dropped.
type reporter struct {
	c     *api.Client
	a     api.Attempt
	log   hclog.Logger
	gone  func() // the attempt is no longer leased to this agent (410)
	index map[string]int
	// timeout bounds each request; callTimeout unless a test shortens it.
	timeout time.Duration

	mu      sync.Mutex
	buf     []byte
	base    int64
	steps   []api.Step // step states not yet sent, oldest first
	final   []api.Step // every step's last state, for the result
	started map[string]time.Time
	closed  bool
	dropLog bool // the scheduler refused the log for good

	wake chan struct{}
	done chan struct{}
}

// newReporter makes the reporter of attempt a; steps are the job's steps,
// in order, whose positions are their indexes. Start it with run.
func newReporter(c *api.Client, a api.Attempt, steps []string, log hclog.Logger, gone func()) *reporter {
	idx := make(map[string]int, len(steps))
	for i, s := range steps {
		idx[s] = i
	}
	return &reporter{
		c: c, a: a, log: log, gone: gone, index: idx, timeout: callTimeout,
		started: map[string]time.Time{},
		wake:    make(chan struct{}, 1),
		done:    make(chan struct{}),
	}
}

// Event records e as a log line and, for step events, a step state.
func (r *reporter) Event(e Event) {
	line := api.LogLine{Time: e.Time, Step: e.Step, Text: e.Text}
	var step *api.Step
	switch e.Kind {
	case JobStarted:
		line.Kind, line.Text = "notice", "job started"
	case Notice:
		line.Kind = "notice"
	case StepStarted:
		line.Kind, line.Text = "step", e.Step
		step = &api.Step{Index: r.index[e.Step], Name: e.Step, Status: api.StepRunning, Started: e.Time}
	case Output:
		line.Kind, line.Stream = "out", e.Stream
	case StepFinished:
		sr := e.StepResult
		line.Kind, line.Text = "end", stepText(sr)
		step = &api.Step{Index: r.index[e.Step], Name: e.Step, Status: string(sr.Status), Started: e.Time.Add(-sr.Duration),
			Duration: api.Duration(sr.Duration), Exit: sr.Exit, AllowedFailure: sr.AllowedFailure}
	case ArtifactStored:
		line.Kind, line.Text = "notice", "artifact "+e.Text
	case JobFinished:
		line.Kind, line.Text = "notice", jobText(e.Result)
	default:
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if step != nil {
		if step.Status == api.StepRunning {
			r.started[step.Name] = step.Started
		} else if t, ok := r.started[step.Name]; ok {
			step.Started = t
		}
		r.steps = append(r.steps, *step)
		r.final = append(r.final, *step)
	}
	r.appendLine(line)
	if step != nil || len(r.buf) >= logChunk {
		r.poke()
	}
}

// notice adds a line from jobrun itself, outside any Runner event: the
// reasons a job could not start.
func (r *reporter) notice(text string) {
	r.Event(Event{Time: time.Now(), Kind: Notice, Text: text})
}

func (r *reporter) appendLine(line api.LogLine) {
	if r.dropLog {
		return
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false) // the log is read with curl: keep <, > and & as they are
	if err := enc.Encode(line); err != nil {
		return // a LogLine of strings and a time always encodes
	}
	r.buf = append(r.buf, b.Bytes()...)
}

func (r *reporter) poke() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

func stepText(sr *StepResult) string {
	s := string(sr.Status)
	if sr.Exit != "" {
		s += ": " + sr.Exit
	}
	if sr.Status != Skipped {
		s += fmt.Sprintf(" (%s)", sr.Duration.Round(time.Millisecond))
	}
	if sr.AllowedFailure {
		s += ", failure allowed"
	}
	return s
}

func jobText(res *Result) string {
	if res == nil {
		return "job ended"
	}
	s := fmt.Sprintf("job %s in %s", res.Status, res.Duration.Round(time.Millisecond))
	if res.Reason != "" {
		s += ": " + res.Reason
	}
	return s
}

// run sends what the job reports until close was called and all of it is
// sent, or until ctx ends (the lease expired, or the attempt is gone).
func (r *reporter) run(ctx context.Context) {
	defer close(r.done)
	t := time.NewTicker(logFlushEvery)
	defer t.Stop()
	for {
		if !r.flush(ctx) {
			return
		}
		r.mu.Lock()
		finished := r.closed && len(r.steps) == 0 && len(r.buf) == 0
		r.mu.Unlock()
		if finished {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-r.wake:
		case <-t.C:
		}
	}
}

// close says no more events come; the reporter then sends what it holds
// and run returns. wait waits for that.
func (r *reporter) close() {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	r.poke()
}

func (r *reporter) wait() { <-r.done }

// flush sends the pending step states, then the buffered log. It returns
// false when the reporter must stop: ctx ended or the attempt is gone.
func (r *reporter) flush(ctx context.Context) bool {
	b := newBackoff()
	for {
		r.mu.Lock()
		if len(r.steps) == 0 {
			r.mu.Unlock()
			break
		}
		s := r.steps[0]
		r.mu.Unlock()
		err := within(ctx, r.timeout, func(ctx context.Context) error { return r.c.Step(ctx, r.a, s) })
		switch verdict(err) {
		case sent, refused:
			if err != nil {
				r.log.Error("scheduler refused a step state; dropping it", "attempt", r.a, "step", s.Name, "error", err)
			}
			r.mu.Lock()
			r.steps = r.steps[1:]
			r.mu.Unlock()
			b.reset()
		case gone:
			r.gone()
			return false
		case retry:
			r.log.Warn("step state not sent; retrying", "attempt", r.a, "step", s.Name, "error", err)
			if !b.wait(ctx) {
				return false
			}
		}
	}
	for {
		r.mu.Lock()
		if len(r.buf) == 0 {
			r.mu.Unlock()
			return true
		}
		// Appends may move buf, but never change the bytes already in it,
		// so the chunk can be sent without the lock.
		chunk, off := r.buf[:min(len(r.buf), maxChunk)], r.base
		r.mu.Unlock()
		var ack api.LogAck
		err := within(ctx, r.timeout, func(ctx context.Context) (err error) {
			ack, err = r.c.AppendLog(ctx, r.a, off, chunk)
			return err
		})
		if api.IsStatus(err, http.StatusConflict) {
			r.mu.Lock()
			r.gap(ack.Size)
			r.mu.Unlock()
			b.reset()
			continue
		}
		switch verdict(err) {
		case sent:
			r.mu.Lock()
			r.ack(ack.Size)
			r.mu.Unlock()
			b.reset()
		case refused:
			r.log.Error("scheduler refused the log; no more of it is sent", "attempt", r.a, "error", err)
			r.mu.Lock()
			r.buf, r.dropLog = nil, true
			r.mu.Unlock()
			return true
		case gone:
			r.gone()
			return false
		case retry:
			r.log.Warn("log chunk not sent; retrying", "attempt", r.a, "offset", off, "error", err)
			if !b.wait(ctx) {
				return false
			}
		}
	}
}

// ack drops the bytes the scheduler says it holds.
func (r *reporter) ack(size int64) {
	n := size - r.base
	switch {
	case n <= 0:
		return
	case n > int64(len(r.buf)):
		// The scheduler holds more than was ever sent: trust it, so that
		// what comes next is appended after what it has.
		r.log.Warn("scheduler holds more log than was sent", "attempt", r.a, "size", size, "sent", r.base+int64(len(r.buf)))
		r.buf, r.base = r.buf[:0], size
	default:
		r.buf, r.base = r.buf[n:], size
	}
}

// gap handles a 409: the scheduler holds only size bytes, fewer than it
// had acknowledged, so it lost some. Those bytes are no longer here to
// resend; the log goes on from size with a line saying what was lost, so
// that the gap is visible and nothing after it is refused.
func (r *reporter) gap(size int64) {
	if size >= r.base {
		r.ack(size)
		return
	}
	lost := r.base - size
	r.log.Error("scheduler lost acknowledged log bytes", "attempt", r.a, "lost", lost)
	rest := r.buf
	r.buf, r.base = nil, size
	r.appendLine(api.LogLine{Time: time.Now(), Kind: "notice",
		Text: fmt.Sprintf("jobrun: the scheduler lost %d bytes of this log that it had acknowledged", lost)})
	r.buf = append(r.buf, rest...)
}

// result is the attempt's result as the scheduler takes it.
func (r *reporter) result(res Result) api.Result {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := api.Result{
		Status: string(res.Status), Reason: res.Reason, Duration: api.Duration(res.Duration),
		Usage:     api.Usage{CPU: api.Duration(res.Usage.CPU), PeakMemory: res.Usage.PeakMemory, PeakPids: res.Usage.PeakPids},
		CacheHits: res.CacheHits, Caches: res.Caches, Artifacts: res.Artifacts,
	}
	// The last state of each step, in the job's order.
	last := map[string]api.Step{}
	var order []string
	for _, s := range r.final {
		if _, ok := last[s.Name]; !ok {
			order = append(order, s.Name)
		}
		last[s.Name] = s
	}
	for _, name := range order {
		out.Steps = append(out.Steps, last[name])
	}
	return out
}

// outcome is what to do after a call to the scheduler.
type outcome int

const (
	sent    outcome = iota // it went through
	retry                  // a network error, 5xx or 429: try again later
	refused                // a 4xx: the same request will never succeed
	gone                   // 410: the attempt is no longer leased to this agent
)

func verdict(err error) outcome {
	if err == nil {
		return sent
	}
	var se *api.StatusError
	if !errors.As(err, &se) {
		return retry
	}
	switch {
	case se.Code == http.StatusGone:
		return gone
	case se.Code == http.StatusTooManyRequests || se.Code == http.StatusRequestTimeout || se.Code >= 500:
		return retry
	}
	return refused
}
