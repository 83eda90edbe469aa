package web

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/jobrun/jobrun/api"
)

// maxPageLines is how many lines of a log the job page shows; the rest
// is in the download.
const maxPageLines = 10000

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

// renderLog renders the whole lines of data (JSON lines of api.LogLine),
// numbering them from first. A line that is not JSON is shown as text.
func renderLog(data []byte, first int) logView {
	v := logView{Next: first + 1}
	cut := bytes.LastIndexByte(data, '\n') + 1
	v.Size = int64(cut)
	sc := bufio.NewScanner(bytes.NewReader(data[:cut]))
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		var l api.LogLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			l = api.LogLine{Kind: "out", Text: sc.Text()}
		}
		ll := logLine{N: v.Next, Time: l.Time, Kind: l.Kind, Step: l.Step, Stream: l.Stream}
		switch l.Kind {
		case "step":
			ll.HTML = template.HTML(template.HTMLEscapeString(l.Text))
		case "end":
			ll.HTML = template.HTML(template.HTMLEscapeString(l.Step + ": " + l.Text))
		default:
			ll.HTML = ANSI(l.Text)
		}
		v.Lines = append(v.Lines, ll)
		v.Next++
	}
	if n := len(v.Lines) - maxPageLines; n > 0 {
		v.Lines, v.Skipped = v.Lines[n:], n
	}
	return v
}

// logEvents streams an attempt's new log lines as server-sent events:
// "lines" (rendered HTML, with the offset and line number to resume from
// as the event id), "status" when the job's status changes, "steps" (the
// rendered steps table) when a step starts or ends, and "end" when the
// attempt has ended (the page then reloads for its result).
func (u *ui) logEvents(w http.ResponseWriter, r *http.Request) {
	id, ok := u.pathID(w, r, "id")
	if !ok {
		return
	}
	ctx := r.Context()
	q := r.URL.Query()
	attempt, _ := strconv.Atoi(q.Get("attempt"))
	off, _ := strconv.ParseInt(q.Get("from"), 10, 64)
	next, _ := strconv.Atoi(q.Get("line"))
	if le := r.Header.Get("Last-Event-ID"); le != "" {
		// A reconnect goes on from the last event the browser got.
		if o, n, ok := strings.Cut(le, ":"); ok {
			off, _ = strconv.ParseInt(o, 10, 64)
			next, _ = strconv.Atoi(n)
		}
	}
	if off < 0 || next < 1 {
		off, next = 0, 1
	}
	j, err := u.b.Job(ctx, id)
	if err != nil {
		u.fail(w, r, err)
		return
	}
	fl, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming is not supported here", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no") // nginx: pass events on at once
	w.WriteHeader(http.StatusOK)
	fmt.Fprintf(w, "retry: 2000\n\n")
	fl.Flush()

	status, steps := j.Status, stepsKey(j.Steps)
	ping := time.Now()
	for {
		ended := j.Attempt != attempt || api.Final(j.Status)
		// The job's state was read before the log, so the lines written
		// before it ended are all in this read.
		if attempt > 0 {
			data, err := u.b.Log(ctx, api.Attempt{Job: id, Attempt: attempt}, off)
			if err != nil {
				if ctx.Err() == nil {
					u.log.Error("read log", "job", id, "attempt", attempt, "error", err)
				}
				return
			}
			if v := renderLog(data, next-1); len(v.Lines) > 0 || v.Skipped > 0 {
				if v.Skipped > 0 {
					// A burst larger than a page: the page has the rest.
					u.event(w, "reload", "", "too many lines at once")
					fl.Flush()
					return
				}
				var b bytes.Buffer
				for _, l := range v.Lines {
					if err := u.pages["job"].ExecuteTemplate(&b, "line", l); err != nil {
						u.log.Error("render log line", "error", err)
						return
					}
				}
				off, next = off+v.Size, v.Next
				u.event(w, "lines", fmt.Sprintf("%d:%d", off, next), b.String())
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
