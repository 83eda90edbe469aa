// Package local runs a whole workflow on one machine, as `jobrun local`
// does: jobs in the order their needs allow, independent ones in parallel,
// each through the same agent.Runner the pool uses.
package local

import (
	"context"
	"fmt"
	"strings"
	"sync"
)

// Task is one job as the scheduler sees it.
type Task struct {
	Name  string
	Needs []string
	// Group is the job's concurrency group: at most one job of a group
	// runs at a time. Empty means no group.
	Group string
}

// State is how a task ended.
type State string

// The states a task ends in.
const (
	Succeeded State = "succeeded"
	Failed    State = "failed"
	Skipped   State = "skipped"   // a job it needs did not succeed
	Cancelled State = "cancelled" // the run was cancelled before or while it ran
)

// Outcome is a task's end state, with the reason for a skip.
type Outcome struct {
	State  State
	Reason string
}

// Schedule runs tasks, given in a topological order, with at most parallel
// of them at once. run is called for each task whose needs all succeeded
// and reports whether the task succeeded; when ctx is done, no new task
// starts and run is expected to return promptly. notRun, if set, is told at
// once of each task that will not run, and why.
func Schedule(ctx context.Context, tasks []Task, parallel int, run func(ctx context.Context, name string) bool, notRun func(name string, o Outcome)) map[string]Outcome {
	if parallel < 1 {
		parallel = 1
	}
	s := &scheduler{
		tasks:   tasks,
		out:     make(map[string]Outcome, len(tasks)),
		running: map[string]bool{},
		groups:  map[string]bool{},
		done:    make(chan struct{}, len(tasks)),
		notRun:  notRun,
	}
	var wg sync.WaitGroup
	for {
		s.mu.Lock()
		s.settle(ctx)
		started := 0
		for _, t := range s.ready() {
			if len(s.running) >= parallel {
				break
			}
			s.start(t)
			started++
			wg.Add(1)
			go func(t Task) {
				defer wg.Done()
				ok := run(ctx, t.Name)
				s.finish(ctx, t, ok)
			}(t)
		}
		idle := len(s.running) == 0
		s.mu.Unlock()
		if idle && started == 0 {
			break
		}
		<-s.done
	}
	wg.Wait()
	return s.out
}

type scheduler struct {
	mu      sync.Mutex
	tasks   []Task
	out     map[string]Outcome
	running map[string]bool
	groups  map[string]bool // groups with a running task
	done    chan struct{}
	notRun  func(string, Outcome)
}

// settle ends tasks that can no longer run: after cancellation, and those
// whose needs did not succeed.
func (s *scheduler) settle(ctx context.Context) {
	for _, t := range s.tasks {
		if _, ended := s.out[t.Name]; ended || s.running[t.Name] {
			continue
		}
		if ctx.Err() != nil {
			s.end(t.Name, Outcome{State: Cancelled, Reason: "the run was cancelled before it started"})
			continue
		}
		var bad []string
		for _, n := range t.Needs {
			if o, ok := s.out[n]; ok && o.State != Succeeded {
				bad = append(bad, fmt.Sprintf("%s %s", n, o.State))
			}
		}
		if len(bad) > 0 {
			s.end(t.Name, Outcome{State: Skipped, Reason: "needs " + strings.Join(bad, ", ")})
		}
	}
}

func (s *scheduler) end(name string, o Outcome) {
	s.out[name] = o
	if s.notRun != nil {
		s.notRun(name, o)
	}
}

// ready lists tasks, in order, whose needs all succeeded and whose group is
// free.
func (s *scheduler) ready() []Task {
	var r []Task
	claimed := map[string]bool{}
	for _, t := range s.tasks {
		if _, ended := s.out[t.Name]; ended || s.running[t.Name] {
			continue
		}
		if t.Group != "" && (s.groups[t.Group] || claimed[t.Group]) {
			continue
		}
		ok := true
		for _, n := range t.Needs {
			if s.out[n].State != Succeeded {
				ok = false
				break
			}
		}
		if ok {
			r = append(r, t)
			if t.Group != "" {
				claimed[t.Group] = true
			}
		}
	}
	return r
}

func (s *scheduler) start(t Task) {
	s.running[t.Name] = true
	if t.Group != "" {
		s.groups[t.Group] = true
	}
}

func (s *scheduler) finish(ctx context.Context, t Task, ok bool) {
	s.mu.Lock()
	delete(s.running, t.Name)
	if t.Group != "" {
		delete(s.groups, t.Group)
	}
	switch {
	case ok:
		s.out[t.Name] = Outcome{State: Succeeded}
	case ctx.Err() != nil:
		s.out[t.Name] = Outcome{State: Cancelled, Reason: "cancelled while running"}
	default:
		s.out[t.Name] = Outcome{State: Failed}
	}
	s.mu.Unlock()
	s.done <- struct{}{}
}
