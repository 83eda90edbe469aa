package web

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/jobrun/jobrun/api"
	"github.com/jobrun/jobrun/internal/deadline"
)

// What the job page shows of a log: its last lines, at most maxPageLines
// of them in at most maxPageBytes; the rest is in the text download. A
// live log sends at most LogPage bytes an event, and reloads the page
// (which shows the tail) when more than maxPageLines come at once.
const (
	maxPageLines = 10000
	maxPageBytes = 512 << 10
)

// logLine is one rendered line of a log.
type logLine struct {
	N      int // from 1, what #L<N> links to
	Time   time.Time
	Kind   string // "notice", "step", "out", "end"
	Step   string
	Stream string
	HTML   template.HTML
}

// logView is a log rendered for a page or a stream.
type logView struct {
	Lines []logLine
	// Skipped lines at the start are not shown (see maxPageLines).
	Skipped int
	// Size is the byte offset just past the last whole line, Next the
	// number the next line gets: where a stream goes on from.
	Size int64
	Next int
}

// renderLine renders one line of a log (a JSON api.LogLine; a line that is
// not JSON is shown as text) as line n.
func renderLine(l Line, n int) logLine {
	if l.TooLong {
		return logLine{N: n, Kind: "notice", HTML: template.HTML(template.HTMLEscapeString(fmt.Sprintf(
			"a line of %d bytes, too long to show; it is in the raw JSON lines download", l.Size)))}
	}
	var ll api.LogLine
	if err := json.Unmarshal(l.Data, &ll); err != nil {
		ll = api.LogLine{Kind: "out", Text: string(l.Data)}
	}
	out := logLine{N: n, Time: ll.Time, Kind: ll.Kind, Step: ll.Step, Stream: ll.Stream}
	switch ll.Kind {
	case "step":
		out.HTML = template.HTML(template.HTMLEscapeString(ll.Text))
	case "end":
		out.HTML = template.HTML(template.HTMLEscapeString(ll.Step + ": " + ll.Text))
	default:
		out.HTML = ANSI(ll.Text)
	}
	return out
}

// readLog is the ReadLogFunc of an attempt's log.
func (u *ui) readLog(a api.Attempt) ReadLogFunc {
	return func(ctx context.Context, from, max int64) ([]byte, error) { return u.b.Log(ctx, a, from, max) }
}

// tailLog renders the end of a log of size bytes for the job page: the
// whole lines of its last maxPageBytes, at most maxPageLines of them,
// numbered by their place in the whole log.
func tailLog(ctx context.Context, read ReadLogFunc, size int64) (logView, error) {
	start, before, err := LineStart(ctx, read, max(0, size-maxPageBytes))
	if err != nil {
		return logView{}, err
	}
	v := logView{Skipped: before, Size: start, Next: before + 1}
	r := NewLineReader(read, start)
	for r.Offset() < size {
		l, ok, err := r.Next(ctx)
		if err != nil {
			return logView{}, err
		}
		if !ok {
			break
		}
		v.Lines = append(v.Lines, renderLine(l, v.Next))
		v.Next++
	}
	v.Size = r.Offset()
	if n := len(v.Lines) - maxPageLines; n > 0 {
		v.Lines, v.Skipped = v.Lines[n:], v.Skipped+n
	}
	return v, nil
}

// logEvents streams an attempt's new log lines as server-sent events:
// "lines" (rendered HTML, with the offset and line number to resume from
// as the event id), "status" when the job's status changes, "steps" (the
// rendered steps table) when a step starts or ends, and "end" when the
// attempt has ended (the page then reloads for its result). It starts at
// the log's end unless ?from=OFFSET&line=N or Last-Event-ID says where.
func (u *ui) logEvents(w http.ResponseWriter, r *http.Request) {
	id, ok := u.pathID(w, r, "id")
	if !ok {
		return
	}
	ctx := r.Context()
	q := r.URL.Query()
	attempt, _ := strconv.Atoi(q.Get("attempt"))
	off, next, asked := int64(-1), 0, q.Has("from")
	if asked {
		off, _ = strconv.ParseInt(q.Get("from"), 10, 64)
		next, _ = strconv.Atoi(q.Get("line"))
	}
	if le := r.Header.Get("Last-Event-ID"); le != "" {
		// A reconnect goes on from the last event the browser got.
		if o, n, ok := strings.Cut(le, ":"); ok {
			off, _ = strconv.ParseInt(o, 10, 64)
			next, _ = strconv.Atoi(n)
			asked = true
		}
	}
	if asked && (off < 0 || next < 1) {
		off, next = 0, 1
	}
	j, err := u.b.Job(ctx, id)
	if err != nil {
		u.fail(w, r, err)
		return
	}
	at := api.Attempt{Job: id, Attempt: attempt}
	if !asked {
		off, next = 0, 1
		if attempt > 0 {
			size, err := u.b.LogSize(ctx, at)
			if err == nil {
				var before int
				off, before, err = LineStart(ctx, u.readLog(at), size)
				next = before + 1
			}
			if err != nil {
				u.fail(w, r, err)
				return
			}
		}
	}
	// The stream lasts as long as the client reads it.
	dw := deadline.NewWriter(w, u.opts.Progress)
	w, fl := dw, dw
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no") // nginx: pass events on at once
	w.WriteHeader(http.StatusOK)
	fmt.Fprintf(w, "retry: 2000\n\n")
	fl.Flush()

	lr := NewLineReader(u.readLog(at), off)
	status, steps := j.Status, stepsKey(j.Steps)
	ping := time.Now()
	for {
		ended := j.Attempt != attempt || api.Final(j.Status)
		// The job's state was read before the log, so the lines written
		// before it ended are all in this read.
		if attempt > 0 {
			sent := 0
			for {
				var b bytes.Buffer
				n := 0
				for b.Len() < LogPage {
					l, ok, err := lr.Next(ctx)
					if err != nil {
						if ctx.Err() == nil {
							u.log.Error("read log", "job", id, "attempt", attempt, "error", err)
						}
						return
					}
					if !ok {
						break
					}
					if err := u.pages["job"].ExecuteTemplate(&b, "line", renderLine(l, next)); err != nil {
						u.log.Error("render log line", "error", err)
						return
					}
					next++
					n++
				}
				if n == 0 {
					break
				}
				if sent += n; sent > maxPageLines {
					// A burst larger than a page: the page has its tail.
					u.event(w, "reload", "", "too many lines at once")
					fl.Flush()
					return
				}
				u.event(w, "lines", fmt.Sprintf("%d:%d", lr.Offset(), next), b.String())
				fl.Flush()
			}
		}
		if j.Status != status {
			status = j.Status
			u.event(w, "status", "", status)
		}
		if k := stepsKey(j.Steps); k != steps && j.Attempt == attempt {
			steps = k
			var b bytes.Buffer
			if err := u.pages["job"].ExecuteTemplate(&b, "steps", j.Steps); err != nil {
				u.log.Error("render steps", "error", err)
				return
			}
			u.event(w, "steps", "", b.String())
		}
		if ended {
			u.event(w, "end", "", j.Status)
			fl.Flush()
			return
		}
		if time.Since(ping) > 15*time.Second {
			io.WriteString(w, ": ping\n\n") // keeps proxies from closing an idle stream
			ping = time.Now()
		}
		fl.Flush()
		select {
		case <-ctx.Done():
			return
		case <-time.After(u.opts.Poll):
		}
		if j, err = u.b.Job(ctx, id); err != nil {
			if ctx.Err() == nil {
				u.log.Error("follow job", "job", id, "error", err)
			}
			return
		}
	}
}

// stepsKey changes when a step starts or ends.
func stepsKey(steps []api.Step) string {
	var b strings.Builder
	for _, s := range steps {
		fmt.Fprintf(&b, "%d %s %d|", s.Index, s.Status, s.Duration)
	}
	return b.String()
}

// event writes one server-sent event; data may span lines. A stream's
// lines end in CR, LF or CR LF, so every one of them in data starts a new
// data field: a bare CR from an agent's text cannot end the field and
// start a field or event of its own.
func (u *ui) event(w io.Writer, name, id, data string) {
	var b strings.Builder
	b.WriteString("event: " + oneLine(name) + "\n")
	if id != "" {
		b.WriteString("id: " + oneLine(id) + "\n")
	}
	for _, l := range sseLines(data) {
		b.WriteString("data: " + l + "\n")
	}
	b.WriteString("\n")
	io.WriteString(w, b.String())
}

// sseLines splits s where an event stream's parser ends a line: at CR LF,
// LF or CR.
func sseLines(s string) []string {
	s = strings.ReplaceAll(s, "\r\n", "\n")
	return strings.Split(strings.ReplaceAll(s, "\r", "\n"), "\n")
}

// oneLine drops line ends from a field that must stay one line.
func oneLine(s string) string {
	return strings.NewReplacer("\r", "", "\n", "").Replace(s)
}
