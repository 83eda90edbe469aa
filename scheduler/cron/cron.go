// Package cron drives robfig/cron schedules from a clock that can be
// replaced: robfig's own runner reads the wall clock and keeps its state
// in memory, while the scheduler needs ticks it can claim in a shared
// database and tests need time they can move.
package cron

import (
	"sync"
	"time"

	robfig "github.com/robfig/cron/v3"
)

// Clock is where the time comes from.
type Clock interface {
	Now() time.Time
	// After sends the time once d has passed.
	After(d time.Duration) <-chan time.Time
}

// RealClock is the wall clock.
type RealClock struct{}

// Now is time.Now.
func (RealClock) Now() time.Time { return time.Now() }

// After is time.After.
func (RealClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// MaxDue caps how many ticks Due returns, so a schedule of every minute
// over a long window cannot make an unbounded list.
const MaxDue = 1000

// Due returns the ticks of s after after and up to upTo, oldest first (at
// most MaxDue, the newest ones).
func Due(s robfig.Schedule, after, upTo time.Time) []time.Time {
	var out []time.Time
	for t := s.Next(after); !t.IsZero() && !t.After(upTo); t = s.Next(t) {
		out = append(out, t)
		if len(out) > MaxDue {
			out = out[1:]
		}
	}
	return out
}

// Fake is a Clock that moves only when told to.
type Fake struct {
	mu      sync.Mutex
	now     time.Time
	waiters []fakeWaiter
}

type fakeWaiter struct {
	at time.Time
	ch chan time.Time
}

// NewFake makes a fake clock reading now.
func NewFake(now time.Time) *Fake { return &Fake{now: now} }

// Now returns the fake time.
func (f *Fake) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

// After sends once Advance has moved the time d past now.
func (f *Fake) After(d time.Duration) <-chan time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	ch := make(chan time.Time, 1)
	if d <= 0 {
		ch <- f.now
		return ch
	}
	f.waiters = append(f.waiters, fakeWaiter{at: f.now.Add(d), ch: ch})
	return ch
}

// Advance moves the time forward by d, waking the waiters it passes.
func (f *Fake) Advance(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.now = f.now.Add(d)
	kept := f.waiters[:0]
	for _, w := range f.waiters {
		if !w.at.After(f.now) {
			w.ch <- f.now
			continue
		}
		kept = append(kept, w)
	}
	f.waiters = kept
}

// Waiters reports how many After calls wait on the clock: a test advances
// once the loop it drives is waiting.
func (f *Fake) Waiters() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.waiters)
}
