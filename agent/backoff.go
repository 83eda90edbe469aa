package agent

import (
	"context"
	"math/rand/v2"
	"time"
)

// callTimeout bounds one request to the scheduler (a long poll: beyond its
// wait). A connection that died without a reset would otherwise hold the
// caller until the kernel gives up on it, many minutes later.
const callTimeout = 30 * time.Second

// within runs fn under a context that ends after d.
func within(ctx context.Context, d time.Duration, fn func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	return fn(ctx)
}

// backoff spaces out retries of a failing call: doubling from min up to
// max, each wait drawn from its upper half so that agents cut off by one
// outage do not all come back in the same instant.
type backoff struct {
	min, max time.Duration
	next     time.Duration
}

func newBackoff() *backoff { return &backoff{min: 100 * time.Millisecond, max: 5 * time.Second} }

// wait sleeps for the next interval, or until ctx ends (false).
func (b *backoff) wait(ctx context.Context) bool {
	if b.next == 0 {
		b.next = b.min
	}
	d := b.next/2 + rand.N(b.next/2+1)
	b.next = min(2*b.next, b.max)
	return sleep(ctx, d)
}

// reset starts the next failure over at min.
func (b *backoff) reset() { b.next = 0 }

// sleep waits for d, or until ctx ends (false).
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
