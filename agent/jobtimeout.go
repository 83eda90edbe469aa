package agent

import (
	"context"
	"time"

	"github.com/jobrun/jobrun/agent/sandbox"
	"github.com/jobrun/jobrun/internal/units"
)

// jobClock holds a job's timeout, which bounds the whole job from its
// start: the image pull, a wait for a locked cache, the services' start
// and readiness, the steps and the artifacts' upload. Once it is spent,
// what is left to do that must still happen (clean-up steps, artifacts)
// gets CleanupGrace, once, from then; teardown is bound by neither.
type jobClock struct {
	parent  context.Context // cancel: ends everything at once
	ctx     context.Context // the job's timeout, under parent
	timeout time.Duration
	grace   context.Context
	cancels []context.CancelFunc
}

func newJobClock(ctx context.Context, timeout time.Duration) *jobClock {
	c := &jobClock{parent: ctx, ctx: ctx, timeout: timeout}
	if timeout > 0 {
		var cancel context.CancelFunc
		c.ctx, cancel = context.WithTimeoutCause(ctx, timeout, sandbox.Timeout(timeout))
		c.cancels = append(c.cancels, cancel)
	}
	return c
}

// timedOut says the job's timeout is spent (and the job not cancelled).
func (c *jobClock) timedOut() bool {
	return c.ctx.Err() != nil && c.parent.Err() == nil
}

// reason is the job's end after its timeout.
func (c *jobClock) reason() string {
	return "timed out after " + units.FormatDuration(c.timeout)
}

// afterTimeout is the context of what still runs once the timeout is
// spent: CleanupGrace from the first call, under the parent. The first
// call notes it in the job's log, saying what for.
func (c *jobClock) afterTimeout(l *jobLog, what string) context.Context {
	if c.grace == nil {
		g, cancel := context.WithTimeoutCause(c.parent, CleanupGrace, sandbox.Timeout(CleanupGrace))
		c.grace = g
		c.cancels = append(c.cancels, cancel)
		l.notice("", c.reason()+": "+what+" get up to "+units.FormatDuration(CleanupGrace))
	}
	return c.grace
}

// stop releases the clock's timers.
func (c *jobClock) stop() {
	for _, f := range c.cancels {
		f()
	}
}
