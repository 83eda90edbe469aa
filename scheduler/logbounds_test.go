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

// leased registers an agent on base, queues a run and leases its first job.
func leased(t *testing.T, base string) (*api.Client, api.Attempt) {
	t.Helper()
	ctx := context.Background()
	ag, reg := register(t, base, "a", 1)
	if _, err := admin(base).CreateRun(ctx, api.NewRun{Repo: "org/app", Branch: "main", Source: twoJobs}); err != nil {
		t.Fatal(err)
	}
	l, err := ag.Lease(ctx, reg.ID, 5*time.Second)
	if err != nil || l == nil {
		t.Fatalf("lease: %v %v", l, err)
	}
	return ag, l.Attempt
}

// appendAll stores data as the agent does, in chunks the server takes.
func appendAll(t *testing.T, ag *api.Client, at api.Attempt, off int64, data []byte) int64 {
	t.Helper()
	for len(data) > 0 {
		n := min(len(data), maxLogChunk)
		if _, err := ag.AppendLog(context.Background(), at, off, data[:n]); err != nil {
			t.Fatal(err)
		}
		off, data = off+int64(n), data[n:]
	}
	return off
}

// bigLines are n log lines of 8 KiB of output each, "line I" first.
func bigLines(t *testing.T, n int) []byte {
	var b []byte
	for i := 1; i <= n; i++ {
		b = append(b, logLines(t, api.LogLine{Kind: "out", Stream: "stdout", Text: fmt.Sprintf("line %d %s", i, strings.Repeat("y", 8<<10))})...)
	}
	return b
}

// TestJobPageShowsLogTail: the job page of a long log renders only its
// end (a byte budget, not the whole log: eight readers of a 64 MiB log
// took 1.7 GB), numbered by place, and links to the text download, which
// has every line.
func TestJobPageShowsLogTail(t *testing.T) {
	eachStore(t, func(t *testing.T, open func() *SQL) {
		base := serve(t, open(), publicRead)
		ag, at := leased(t, base)
		const n = 400 // 3.2 MiB
		appendAll(t, ag, at, 0, bigLines(t, n))

		code, body := get(t, http.DefaultClient, fmt.Sprintf("%s/jobs/%d", base, at.Job))
		if code != 200 {
			t.Fatalf("job page: %d\n%s", code, body)
		}
		if strings.Contains(body, "line 1 y") || strings.Contains(body, `id="L1"`) {
			t.Fatal("the job page rendered the start of a 3 MiB log")
		}
		mustContain(t, "job page", body, fmt.Sprintf(`id="L%d"`, n), fmt.Sprintf("line %d y", n),
			fmt.Sprintf(`lines are only in the <a href="/api/v1/jobs/%d/log?attempt=1">text download</a>`, at.Job))
		if len(body) > 2*maxPageBytesForTest {
			t.Fatalf("the job page is %d bytes", len(body))
		}

		resp, err := authGet(fmt.Sprintf("%s/api/v1/jobs/%d/log", base, at.Job))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		text, _ := io.ReadAll(resp.Body)
		if c := strings.Count(string(text), "\n"); c != n || !strings.Contains(string(text), " line 1 y") || !strings.Contains(string(text), fmt.Sprintf(" line %d y", n)) {
			t.Fatalf("text download: %d lines, want all %d", c, n)
		}
		if cd := resp.Header.Get("Content-Disposition"); cd != fmt.Sprintf("attachment; filename=job-%d-1.log", at.Job) {
			t.Fatalf("text download: Content-Disposition %q", cd)
		}
	})
}

// maxPageBytesForTest bounds the web package's page budget (512 KiB).
const maxPageBytesForTest = 1 << 20

// TestLiveLogStartsAtEnd: the live log without ?from= sends the lines
// that come after it started, not the whole log again from its start.
func TestLiveLogStartsAtEnd(t *testing.T) {
	eachStore(t, func(t *testing.T, open func() *SQL) {
		base := serve(t, open(), publicRead)
		ag, at := leased(t, base)
		off := appendAll(t, ag, at, 0, bigLines(t, 20))

		events := sse(t, fmt.Sprintf("%s/jobs/%d/events?attempt=1", base, at.Job))
		off = appendAll(t, ag, at, off, logLines(t, api.LogLine{Kind: "out", Text: "after the start"}))
		ev := <-events
		if ev[0] != "lines" || !strings.Contains(ev[1], "after the start") || strings.Contains(ev[1], "line 1 ") || !strings.Contains(ev[1], `id="L21"`) {
			t.Fatalf("first event %.300q; want only line 21, appended after the stream started", ev)
		}
		// The positive control: asked for, it starts where it is told.
		events = sse(t, fmt.Sprintf("%s/jobs/%d/events?attempt=1&from=0&line=1", base, at.Job))
		if ev := <-events; ev[0] != "lines" || !strings.Contains(ev[1], `id="L1"`) || !strings.Contains(ev[1], "line 1 y") {
			t.Fatalf("first event from 0: %.300q", ev)
		}
		_ = off
	})
}

// sse reads the server-sent events of url: name and data.
func sse(t *testing.T, url string) <-chan [2]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		t.Fatalf("%s: %s", url, resp.Status)
	}
	t.Cleanup(func() { resp.Body.Close() })
	events := make(chan [2]string, 64)
	go func() {
		defer close(events)
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(nil, 16<<20)
		var name, data string
		for sc.Scan() {
			switch line := sc.Text(); {
			case strings.HasPrefix(line, "event: "):
				name = line[7:]
			case strings.HasPrefix(line, "data: "):
				data += line[6:]
			case line == "":
				if name != "" {
					events <- [2]string{name, data}
				}
				name, data = "", ""
			}
		}
	}()
	return events
}

// TestTextLogKeepsLinesAfterOverlongLine: a line over 16 MiB in a log no
// longer makes the text download drop every line after it.
func TestTextLogKeepsLinesAfterOverlongLine(t *testing.T) {
	eachStore(t, func(t *testing.T, open func() *SQL) {
		base := serve(t, open(), nil)
		ag, at := leased(t, base)
		log := logLines(t, api.LogLine{Kind: "out", Text: "before"})
		log = append(log, logLines(t, api.LogLine{Kind: "out", Text: strings.Repeat("z", 17<<20)})...)
		log = append(log, logLines(t, api.LogLine{Kind: "out", Text: "after the long line"})...)
		appendAll(t, ag, at, 0, log)
		if err := ag.Finish(context.Background(), at, api.Result{Status: api.Succeeded}); err != nil {
			t.Fatal(err)
		}
		rc, err := admin(base).Log(context.Background(), at.Job, false)
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		text, _ := io.ReadAll(rc)
		if !strings.Contains(string(text), " after the long line\n") {
			t.Fatalf("the line after a 17 MiB line is missing from the text log (%d bytes)", len(text))
		}
		mustContain(t, "text log", string(text), " before\n", "too long to show")
	})
}
