package local

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"
)

// recorder runs tasks, recording order and the most that ran at once.
type recorder struct {
	mu       sync.Mutex
	order    []string
	now, max int
	fail     map[string]bool
	hold     time.Duration
}

func (r *recorder) run(ctx context.Context, name string) bool {
	r.mu.Lock()
	r.order = append(r.order, name)
	r.now++
	if r.now > r.max {
		r.max = r.now
	}
	r.mu.Unlock()
	select {
	case <-time.After(r.hold):
	case <-ctx.Done():
	}
	r.mu.Lock()
	r.now--
	r.mu.Unlock()
	return !r.fail[name] && ctx.Err() == nil
}

func TestScheduleOrderAndSkips(t *testing.T) {
	tasks := []Task{
		{Name: "lint"},
		{Name: "test"},
		{Name: "build", Needs: []string{"test"}},
		{Name: "deploy", Needs: []string{"build", "lint"}},
		{Name: "docs", Needs: []string{"lint"}},
	}
	r := &recorder{fail: map[string]bool{"test": true}, hold: time.Millisecond}
	var told []string
	out := Schedule(context.Background(), tasks, 4, r.run, func(name string, o Outcome) { told = append(told, name+" "+string(o.State)) })
	if strings.Join(told, ",") != "build skipped,deploy skipped" {
		t.Errorf("notRun told %q", told)
	}
	want := map[string]State{"lint": Succeeded, "test": Failed, "build": Skipped, "deploy": Skipped, "docs": Succeeded}
	for n, s := range want {
		if out[n].State != s {
			t.Errorf("%s: %s (%s), want %s", n, out[n].State, out[n].Reason, s)
		}
	}
	if out["build"].Reason != "needs test failed" {
		t.Errorf("build skip reason %q", out["build"].Reason)
	}
	if out["deploy"].Reason != "needs build skipped" {
		t.Errorf("deploy skip reason %q", out["deploy"].Reason)
	}
	for _, n := range r.order {
		if n == "build" || n == "deploy" {
			t.Errorf("%s ran although a need failed", n)
		}
	}
}

func TestScheduleParallelLimit(t *testing.T) {
	var tasks []Task
	for _, n := range []string{"a", "b", "c", "d", "e", "f"} {
		tasks = append(tasks, Task{Name: n})
	}
	r := &recorder{hold: 20 * time.Millisecond}
	Schedule(context.Background(), tasks, 2, r.run, nil)
	if r.max != 2 {
		t.Errorf("at most %d ran at once, want 2", r.max)
	}
	r = &recorder{hold: 20 * time.Millisecond}
	Schedule(context.Background(), tasks, 1, r.run, nil)
	if r.max != 1 {
		t.Errorf("parallel 1: %d at once", r.max)
	}
}

func TestScheduleConcurrencyGroup(t *testing.T) {
	tasks := []Task{{Name: "a", Group: "deploy"}, {Name: "b", Group: "deploy"}, {Name: "c", Group: "deploy"}}
	r := &recorder{hold: 10 * time.Millisecond}
	out := Schedule(context.Background(), tasks, 3, r.run, nil)
	if r.max != 1 {
		t.Errorf("%d jobs of one concurrency group ran at once", r.max)
	}
	// Positive control: without a group they overlap.
	for i := range tasks {
		tasks[i].Group = ""
	}
	r2 := &recorder{hold: 50 * time.Millisecond}
	Schedule(context.Background(), tasks, 3, r2.run, nil)
	if r2.max < 2 {
		t.Errorf("without a group, at most %d ran at once", r2.max)
	}
	for _, n := range []string{"a", "b", "c"} {
		if out[n].State != Succeeded {
			t.Errorf("%s: %v", n, out[n])
		}
	}
}

func TestScheduleCancel(t *testing.T) {
	tasks := []Task{{Name: "slow"}, {Name: "after", Needs: []string{"slow"}}}
	ctx, cancel := context.WithCancel(context.Background())
	r := &recorder{hold: time.Minute}
	go func() { time.Sleep(20 * time.Millisecond); cancel() }()
	out := Schedule(ctx, tasks, 2, r.run, nil)
	if out["slow"].State != Cancelled || out["after"].State != Cancelled {
		t.Errorf("after cancel: %v", out)
	}
}
