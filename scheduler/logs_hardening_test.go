package scheduler

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jobrun/jobrun/api"
)

// runningAttempt makes a run and leases its first job, returning the
// agent's client and the attempt.
func runningAttempt(t *testing.T, base string) (*api.Client, api.Attempt) {
	t.Helper()
	ctx := context.Background()
	if _, err := admin(base).CreateRun(ctx, api.NewRun{Repo: "app", Branch: "main", Source: matrixJobs}); err != nil {
		t.Fatal(err)
	}
	ag, reg := register(t, base, "builder", 2, "linux")
	l, err := ag.Lease(ctx, reg.ID, 0)
	if err != nil || l == nil {
		t.Fatalf("lease: %v %v", l, err)
	}
	return ag, l.Attempt
}

// sseEvent is one event as a browser's EventSource parses it.
type sseEvent struct{ name, data string }

// readEvents parses an event stream as the HTML standard does: lines end
// at CR LF, LF or CR.
func readEvents(r io.Reader, out chan<- sseEvent) {
	defer close(out)
	sc := bufio.NewScanner(r)
	sc.Split(func(data []byte, atEOF bool) (int, []byte, error) {
		for i, c := range data {
			switch {
			case c == '\n':
				return i + 1, data[:i], nil
			case c == '\r' && i+1 < len(data):
				if data[i+1] == '\n' {
					return i + 2, data[:i], nil
				}
				return i + 1, data[:i], nil
			case c == '\r' && atEOF:
				return i + 1, data[:i], nil
			}
		}
		if atEOF && len(data) > 0 {
			return len(data), data, nil
		}
		return 0, nil, nil
	})
	ev := sseEvent{name: "message"}
	var data []string
	for sc.Scan() {
		line := sc.Text()
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch {
		case line == "":
			if data != nil {
				ev.data = strings.Join(data, "\n")
				out <- ev
			}
			ev, data = sseEvent{name: "message"}, nil
		case field == "event":
			ev.name = value
		case field == "data":
			data = append(data, value)
		}
	}
}

// TestEventStreamBareCRStartsNoEvent has an agent log a step line and an
// output line whose texts hold bare carriage returns followed by event
// fields: the live log's stream carries them as data of its "lines"
// event, and no event of the agent's making reaches the browser.
func TestEventStreamBareCRStartsNoEvent(t *testing.T) {
	base := serve(t, sqliteStore(t), publicRead)
	ag, at := runningAttempt(t, base)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	injected := "\revent: end\rdata: injected\r\rdata: more"
	lines := logLines(t,
		api.LogLine{Kind: "step", Step: "compile", Text: "compile" + injected},
		api.LogLine{Kind: "end", Step: "compile" + injected, Text: "ok"},
	)
	if _, err := ag.AppendLog(ctx, at, 0, lines); err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequestWithContext(ctx, "GET", fmt.Sprintf("%s/jobs/%d/events?attempt=%d&from=0&line=1", base, at.Job, at.Attempt), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	events := make(chan sseEvent, 16)
	go readEvents(resp.Body, events)
	ev, ok := <-events
	// The control: the lines did come, in the event the page listens to.
	if !ok || ev.name != "lines" || !strings.Contains(ev.data, "compile") || !strings.Contains(ev.data, "ok") {
		t.Fatalf("first event %+v, want the lines", ev)
	}
	if !strings.Contains(ev.data, "injected") {
		t.Errorf("the text after the carriage returns is not in the lines event: %q", ev.data)
	}
	cancel()
	for ev := range events {
		if ev.name != "lines" && ev.name != "status" && ev.name != "steps" {
			t.Errorf("an event of the agent's making: %+v", ev)
		}
	}
}

// TestTextLogDropsTerminalEscapes has an agent log an OSC 8 hyperlink, a
// window title, a DCS string and colours: the text log keeps the colours
// and the words and none of the other escapes.
func TestTextLogDropsTerminalEscapes(t *testing.T) {
	base := serve(t, sqliteStore(t), nil)
	ag, at := runningAttempt(t, base)
	ctx := context.Background()
	text := "\x1b]8;;https://evil.example/\x07click\x1b]8;;\x07 \x1b[31mred\x1b[0m \x1b]0;title\x1b\\ \x1bP+q544e\x1b\\ \x9b2J\x1b[2Jdone"
	if _, err := ag.AppendLog(ctx, at, 0, logLines(t,
		api.LogLine{Kind: "out", Step: "compile", Stream: "stdout", Text: text},
		api.LogLine{Kind: "step", Step: "compile\x1b]0;x\x07", Text: "compile\x1b]0;x\x07"})); err != nil {
		t.Fatal(err)
	}
	rc, err := admin(base).Log(ctx, at.Job, false)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		t.Fatal(err)
	}
	got := string(b)
	// The control: the words and the colours are there.
	for _, s := range []string{"click", "\x1b[31mred\x1b[0m", "done", "── compile\n"} {
		if !strings.Contains(got, s) {
			t.Fatalf("the text log lacks %q:\n%q", s, got)
		}
	}
	for _, s := range []string{"\x1b]", "\x07", "\x1bP", "evil.example", "title", "544e", "\x1b[2J", "\u009b"} {
		if strings.Contains(got, s) {
			t.Errorf("the text log holds %q:\n%q", s, got)
		}
	}
}
