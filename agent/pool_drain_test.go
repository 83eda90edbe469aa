package agent

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/jobrun/jobrun/api"
)

// heldLease queues a job on f whose lease reply f holds: the job leaves
// f's queue when a lease request asks, as the scheduler commits a lease,
// and the reply goes out only once release is closed and then either the
// agent has cut the request or two seconds have passed (the time a
// cutting agent has to show it does). leased is closed when the job has
// left the queue. The job's file does not parse, so running it takes no
// container: it is reported "error" at once.
func heldLease(t *testing.T, f *fakeScheduler, job int64) (l *api.Lease, leased, release chan struct{}) {
	l = &api.Lease{Attempt: api.Attempt{Job: job, Attempt: 1}, Run: "r1", Repo: "example.com/app",
		File: ".ci.hcl", Source: "not a job file", Job: "build"}
	leased, release = make(chan struct{}), make(chan struct{})
	f.mu.Lock()
	f.hold = func(r *http.Request, got *api.Lease) {
		if got != l {
			return
		}
		close(leased)
		<-release
		select {
		case <-r.Context().Done():
		case <-time.After(2 * time.Second):
		}
	}
	f.mu.Unlock()
	f.add(l)
	return l, leased, release
}

func waitClosed(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(time.Minute):
		t.Fatalf("%s: not within a minute", what)
	}
}

// TestDrainNeverDropsLeasedJob: a lease request open when Drain is
// called, whose job the scheduler leased before its reply came back, is
// not cut: the draining agent runs the job and reports it, rather than
// leaving it leased to nobody until its lease expires. No lease request
// starts after Drain has returned, so a job queued then stays queued.
func TestDrainNeverDropsLeasedJob(t *testing.T) {
	f := newFakeScheduler(t)
	held, leased, release := heldLease(t, f, 10)
	p, _ := testPool(t, f)
	p.Slots = 1
	done := runPool(t, p, context.Background())
	waitClosed(t, leased, "the job leased")
	p.Drain()
	later := &api.Lease{Attempt: api.Attempt{Job: 11, Attempt: 1}, Run: "r1", Repo: "example.com/app",
		File: ".ci.hcl", Source: "not a job file", Job: "build"}
	f.add(later)
	close(release)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(time.Minute):
		t.Fatal("Run still running a minute after Drain")
	}
	if r, ok := f.result(held.Attempt); !ok {
		t.Errorf("%s, leased by a request open at the drain, was dropped: never run nor reported", held.Attempt)
	} else if r.Status != string(Errored) {
		t.Errorf("%s ended %s (%s), want error (its file does not parse)", held.Attempt, r.Status, r.Reason)
	}
	f.mu.Lock()
	_, leasedLater := f.leasedAt[later.Attempt]
	dereg := f.deregistered
	f.mu.Unlock()
	if leasedLater {
		t.Errorf("%s, queued after Drain returned, was leased", later.Attempt)
	}
	if !dereg {
		t.Error("the agent did not deregister")
	}
}

// TestDrainNeverDropsLeasedJobControl is the positive control: with no
// drain, the same held reply reaches the agent, which runs the job and
// goes on leasing, so it takes the next job too.
func TestDrainNeverDropsLeasedJobControl(t *testing.T) {
	f := newFakeScheduler(t)
	held, leased, release := heldLease(t, f, 12)
	p, _ := testPool(t, f)
	p.Slots = 1
	runPool(t, p, context.Background())
	waitClosed(t, leased, "the job leased")
	next := &api.Lease{Attempt: api.Attempt{Job: 13, Attempt: 1}, Run: "r1", Repo: "example.com/app",
		File: ".ci.hcl", Source: "not a job file", Job: "build"}
	f.add(next)
	close(release)
	f.waitFor("finish " + held.Attempt.String() + " error")
	f.waitFor("finish " + next.Attempt.String() + " error")
}
