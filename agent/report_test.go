package agent

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/jobrun/jobrun/api"
)

// logLines decodes a stored log, failing on any line that is not one
// whole api.LogLine: a duplicated or lost byte range would break one.
func logLines(t *testing.T, data []byte) []api.LogLine {
	t.Helper()
	var out []api.LogLine
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 4<<20)
	for sc.Scan() {
		var l api.LogLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("log line %d is not a LogLine: %v: %q", len(out)+1, err, sc.Bytes())
		}
		out = append(out, l)
	}
	if len(data) > 0 && data[len(data)-1] != '\n' {
		t.Fatalf("log ends inside a line: %q", data[max(0, len(data)-80):])
	}
	return out
}

// outputTexts are the texts of the "out" lines, in order.
func outputTexts(lines []api.LogLine) []string {
	var out []string
	for _, l := range lines {
		if l.Kind == "out" {
			out = append(out, l.Text)
		}
	}
	return out
}

func emitLines(r *reporter, from, to int) {
	for i := from; i < to; i++ {
		r.Event(Event{Time: time.Now(), Kind: Output, Step: "build", Stream: "stdout", Text: fmt.Sprintf("line %05d %s", i, strings.Repeat("x", 200))})
	}
}

func wantSequence(t *testing.T, got []string, n int) {
	t.Helper()
	if len(got) != n {
		t.Fatalf("the log holds %d output lines, want %d", len(got), n)
	}
	for i, s := range got {
		if !strings.HasPrefix(s, fmt.Sprintf("line %05d ", i)) {
			t.Fatalf("output line %d is %.20q: lost, duplicated or out of order", i, s)
		}
	}
}

func newTestReporter(f *fakeScheduler, a api.Attempt, gone func()) *reporter {
	if gone == nil {
		gone = func() {}
	}
	return newReporter(f.client(), a, []string{"build", "test"}, hclog.NewNullLogger(), gone)
}

// TestLogUploadExactlyOnce: replies lost after the scheduler stored the
// chunk, and 5xx before it did, neither lose nor duplicate a line. The
// positive control is the same upload with no failures.
func TestLogUploadExactlyOnce(t *testing.T) {
	for _, tc := range []struct {
		name   string
		inject []string
	}{
		{"clean", nil},
		{"lost replies and 5xx", []string{"drop", "", "500", "drop", "drop", "", "500", "", "drop"}},
		{"replies that never come", []string{"hang", "", "hang", "hang"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeScheduler(t)
			f.injectNext("log", tc.inject...)
			a := api.Attempt{Job: 7, Attempt: 1}
			r := newTestReporter(f, a, nil)
			r.timeout = 500 * time.Millisecond
			ctx := context.Background()
			go r.run(ctx)
			left := func() int {
				f.mu.Lock()
				defer f.mu.Unlock()
				return len(f.inject["log"])
			}
			// Lines in batches until every injected failure was hit, and
			// enough to go up in several chunks, some over logChunk.
			n := 0
			for n < 3000 || left() > 0 {
				if n >= 100000 {
					t.Fatalf("%d injected failures never hit after %d lines", left(), n)
				}
				emitLines(r, n, n+100)
				n += 100
				time.Sleep(30 * time.Millisecond)
			}
			r.close()
			r.wait()
			wantSequence(t, outputTexts(logLines(t, f.log(a))), n)
		})
	}
}

// TestLogGapResendsFromSchedulerSize: a scheduler that lost acknowledged
// bytes answers 409 with its size; the agent goes on from there with a
// line saying so, and every line after the gap arrives once.
func TestLogGapResendsFromSchedulerSize(t *testing.T) {
	f := newFakeScheduler(t)
	a := api.Attempt{Job: 8, Attempt: 2}
	r := newTestReporter(f, a, nil)
	go r.run(context.Background())
	emitLines(r, 0, 100)
	// Wait for the first lines to be acknowledged.
	deadline := time.Now().Add(30 * time.Second)
	for len(outputTexts(logLines(t, f.log(a)))) < 100 {
		if time.Now().After(deadline) {
			t.Fatal("the first 100 lines never arrived")
		}
		time.Sleep(10 * time.Millisecond)
	}
	whole := f.log(a)
	last := bytes.LastIndexByte(whole[:len(whole)-1], '\n') + 1
	f.lose(a, len(whole)-last) // the scheduler loses line 99
	emitLines(r, 100, 200)
	r.close()
	r.wait()

	lines := logLines(t, f.log(a))
	var texts []string
	gap := -1
	for _, l := range lines {
		if l.Kind == "notice" && strings.Contains(l.Text, "lost") {
			gap = len(texts)
			if !strings.Contains(l.Text, fmt.Sprint(len(whole)-last)) {
				t.Errorf("gap notice %q does not say how many bytes were lost (%d)", l.Text, len(whole)-last)
			}
		}
		if l.Kind == "out" {
			texts = append(texts, l.Text)
		}
	}
	if gap != 99 {
		t.Fatalf("gap notice after %d output lines, want after 99 (the lost line's place)", gap)
	}
	// Lines 0-98, then 100-199, each once, in order.
	want := append(seq(0, 99), seq(100, 200)...)
	if len(texts) != len(want) {
		t.Fatalf("%d output lines, want %d", len(texts), len(want))
	}
	for i, n := range want {
		if !strings.HasPrefix(texts[i], fmt.Sprintf("line %05d ", n)) {
			t.Fatalf("output line %d is %.20q, want line %05d", i, texts[i], n)
		}
	}
}

func seq(from, to int) []int {
	var s []int
	for i := from; i < to; i++ {
		s = append(s, i)
	}
	return s
}

// TestReporterGone: a 410 for the log stops the reporter and says the
// attempt is gone; nothing more is sent.
func TestReporterGone(t *testing.T) {
	f := newFakeScheduler(t)
	a := api.Attempt{Job: 9, Attempt: 1}
	var gone atomic.Int32
	r := newTestReporter(f, a, func() { gone.Add(1) })
	f.injectNext("log", "410")
	go r.run(context.Background())
	emitLines(r, 0, 10)
	r.close()
	done := make(chan struct{})
	go func() { r.wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("reporter still running after a 410")
	}
	if gone.Load() != 1 {
		t.Fatalf("gone called %d times, want once", gone.Load())
	}
	if len(f.log(a)) != 0 {
		t.Fatalf("scheduler holds %d log bytes of a gone attempt", len(f.log(a)))
	}
}

// TestReporterSteps: step states go up in order (running, then final)
// with their index in the job, through a 5xx; the result lists each
// step's last state.
func TestReporterSteps(t *testing.T) {
	f := newFakeScheduler(t)
	a := api.Attempt{Job: 10, Attempt: 1}
	r := newTestReporter(f, a, nil)
	f.injectNext("step", "500", "drop")
	go r.run(context.Background())
	t0 := time.Now()
	r.Event(Event{Time: t0, Kind: StepStarted, Step: "build"})
	r.Event(Event{Time: t0.Add(time.Second), Kind: StepFinished, Step: "build", StepResult: &StepResult{Name: "build", Status: Failed, Duration: time.Second, Exit: "exit code 2"}})
	r.Event(Event{Time: t0.Add(time.Second), Kind: StepFinished, Step: "test", StepResult: &StepResult{Name: "test", Status: Skipped}})
	r.close()
	r.wait()

	f.mu.Lock()
	got := f.steps[a]
	f.mu.Unlock()
	// The dropped reply's step was stored and then sent again: the
	// scheduler upserts by index, so the last state per index counts.
	byIndex := map[int]api.Step{}
	for _, s := range got {
		byIndex[s.Index] = s
	}
	if b := byIndex[0]; b.Name != "build" || b.Status != "failed" || b.Exit != "exit code 2" || !b.Started.Equal(t0) || time.Duration(b.Duration) != time.Second {
		t.Errorf("step 0 = %+v", b)
	}
	if s := byIndex[1]; s.Name != "test" || s.Status != "skipped" {
		t.Errorf("step 1 = %+v", s)
	}
	if got[0].Status != api.StepRunning {
		t.Errorf("first state sent is %q, want running", got[0].Status)
	}
	res := r.result(Result{Status: Failed, Reason: "step build: exit code 2", Duration: 2 * time.Second})
	if len(res.Steps) != 2 || res.Steps[0].Status != "failed" || res.Steps[1].Status != "skipped" || res.Status != api.Failed {
		t.Errorf("result = %+v", res)
	}
	kinds := ""
	for _, l := range logLines(t, f.log(a)) {
		kinds += l.Kind + " "
	}
	if kinds != "step end end " {
		t.Errorf("log line kinds %q, want step end end", kinds)
	}
}
