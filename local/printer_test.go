package local

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/jobrun/jobrun/agent"
)

func events(p *Printer) {
	t0 := time.Unix(0, 0)
	p.Event(agent.Event{Time: t0, Kind: agent.JobStarted, Job: "build"})
	p.Event(agent.Event{Time: t0, Kind: agent.StepStarted, Job: "build", Step: "compile"})
	p.Event(agent.Event{Time: t0, Kind: agent.Output, Job: "build", Step: "compile", Text: "ok"})
	p.Event(agent.Event{Time: t0, Kind: agent.StepFinished, Job: "build", Step: "compile",
		StepResult: &agent.StepResult{Name: "compile", Status: agent.Failed, Duration: 1500 * time.Millisecond, Exit: "exit code 2"}})
	p.Event(agent.Event{Time: t0, Kind: agent.JobFinished, Job: "build",
		Result: &agent.Result{Job: "build", Status: agent.Failed, Duration: 2 * time.Second, Reason: "step compile: exit code 2"}})
}

func TestPrinterPlain(t *testing.T) {
	var b bytes.Buffer
	p := NewPrinter(&b, false)
	events(p)
	p.Close()
	want := "build › compile ▶ started\n" +
		"build › compile | ok\n" +
		"build › compile ■ failed in 1.5s: exit code 2\n" +
		"build job failed in 2s: step compile: exit code 2\n"
	if b.String() != want {
		t.Errorf("plain output:\n%s\nwant:\n%s", b.String(), want)
	}
	if strings.Contains(b.String(), "\033[") {
		t.Error("colours off a terminal")
	}
}

func TestPrinterTerminal(t *testing.T) {
	var b bytes.Buffer
	p := NewPrinter(&b, true)
	p.now = func() time.Time { return time.Unix(3, 0) }
	p.mu.Lock()
	p.running["build"] = &live{jobStart: time.Unix(0, 0), step: "compile", stepStart: time.Unix(1, 0), haveStepTime: true}
	p.drawStatus()
	p.mu.Unlock()
	p.Close()
	out := b.String()
	if !strings.Contains(out, "running: build 3s (compile 2s)") {
		t.Errorf("no live status line with timers in %q", out)
	}
	if !strings.Contains(out, "\r\033[K") {
		t.Error("the status line is not cleared before other output")
	}
}

func TestSummary(t *testing.T) {
	var b bytes.Buffer
	Summary(&b, []agent.Result{
		{Job: "test", Status: agent.Succeeded, Duration: 3 * time.Second, Usage: agent.Usage{CPU: 2 * time.Second, PeakMemory: 64 << 20}, Caches: 2, CacheHits: 1, Artifacts: []string{"a"}},
		{Job: "deploy", Status: agent.Skipped, Reason: "needs test failed"},
	})
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("summary:\n%s", b.String())
	}
	for _, f := range []string{"test", "succeeded", "3s", "2s", "64 MiB", "1/2", "1"} {
		if !strings.Contains(lines[1], f) {
			t.Errorf("row %q lacks %q", lines[1], f)
		}
	}
	if !strings.Contains(lines[2], "needs test failed") {
		t.Errorf("row %q lacks the skip reason", lines[2])
	}
}
