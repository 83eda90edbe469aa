package scheduler

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/jobrun/jobrun/api"
	"github.com/jobrun/jobrun/internal/deadline"
	"github.com/jobrun/jobrun/scheduler/web"
)

// followPoll is how often a followed log looks for new chunks.
const followPoll = 200 * time.Millisecond

// jobLog serves a job's log as text (?raw=1: the JSON lines the agent
// sent), of its latest attempt or ?attempt=N; ?follow=1 streams until the
// attempt ends. The log is read and sent in pages (web.LogPage), so a
// request holds a page and one line however large the log is.
func (s *Server) jobLog(w http.ResponseWriter, r *http.Request) {
	id, ok := pathInt(w, r, "id")
	if !ok {
		return
	}
	ctx := r.Context()
	j, err := s.st.Job(ctx, id)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	q := r.URL.Query()
	at := api.Attempt{Job: id, Attempt: j.Attempt}
	if n, err := strconv.Atoi(q.Get("attempt")); err == nil && n >= 1 && n <= j.Attempt {
		at.Attempt = n
	}
	raw, follow := q.Get("raw") == "1", q.Get("follow") == "1"
	// A download or a followed log lasts as long as it keeps moving.
	dw := deadline.NewWriter(w, s.cfg.Timeouts.Progress)
	w = dw
	name := fmt.Sprintf("job-%d-%d.log", id, at.Attempt)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if raw {
		w.Header().Set("Content-Type", "application/x-ndjson")
		name += ".jsonl"
	}
	if !follow {
		w.Header().Set("Content-Disposition", "attachment; filename="+name)
	}
	read := func(ctx context.Context, from, max int64) ([]byte, error) { return s.st.Log(ctx, at, from, max) }
	send := s.textLog(w, read)
	if raw {
		send = rawLog(w, read)
	}
	for {
		// The job's state is read before the log is, so what came before
		// its end is not missed.
		done := !follow
		if follow {
			j, err := s.st.Job(ctx, id)
			done = err != nil || j.Attempt != at.Attempt || api.Final(j.Status)
		}
		if err := send(ctx, done); err != nil {
			if ctx.Err() == nil {
				s.log.Warn("send log", "job", id, "attempt", at.Attempt, "error", err)
			}
			return
		}
		if done {
			return
		}
		dw.Flush()
		select {
		case <-ctx.Done():
			return
		case <-time.After(followPoll):
		}
	}
}

// logSender sends what a log holds past what it sent before; done is set
// once the log is complete, so a last line without a newline goes too.
type logSender func(ctx context.Context, done bool) error

// textLog sends whole lines as text.
func (s *Server) textLog(w io.Writer, read web.ReadLogFunc) logSender {
	lr := web.NewLineReader(read, 0)
	return func(ctx context.Context, done bool) error {
		bw := bufio.NewWriterSize(w, 64<<10)
		for {
			l, ok, err := lr.Next(ctx)
			if err != nil {
				return err
			}
			if !ok {
				break
			}
			writeLine(bw, l)
		}
		if rest := lr.Rest(); done && len(rest) > 0 {
			writeLine(bw, web.Line{Data: rest})
		}
		return bw.Flush()
	}
}

// rawLog sends the log's bytes as they are.
func rawLog(w io.Writer, read web.ReadLogFunc) logSender {
	var off int64
	return func(ctx context.Context, done bool) error {
		for {
			data, err := read(ctx, off, web.LogPage)
			if err != nil || len(data) == 0 {
				return err
			}
			if _, err := w.Write(data); err != nil {
				return err
			}
			off += int64(len(data))
		}
	}
}

// writeLine writes one JSON log line as text; a line that is not JSON
// goes as it is, made safe for a terminal.
func writeLine(w io.Writer, l web.Line) {
	if l.TooLong {
		fmt.Fprintf(w, "** a line of %d bytes, too long to show as text; it is in ?raw=1\n", l.Size)
		return
	}
	var ll api.LogLine
	if err := json.Unmarshal(l.Data, &ll); err != nil {
		fmt.Fprintln(w, web.TerminalText(string(l.Data)))
		return
	}
	fmt.Fprintln(w, FormatLine(ll))
}

// FormatLine is one log line as text, its texts made safe for a terminal
// (web.TerminalText: colours kept, other escapes dropped).
func FormatLine(l api.LogLine) string {
	ts := l.Time.UTC().Format("15:04:05.000")
	l.Step, l.Text = web.TerminalText(l.Step), web.TerminalText(l.Text)
	switch l.Kind {
	case "step":
		return fmt.Sprintf("%s ── %s", ts, l.Text)
	case "end":
		return fmt.Sprintf("%s ── %s: %s", ts, l.Step, l.Text)
	case "notice":
		return fmt.Sprintf("%s ** %s", ts, l.Text)
	}
	return fmt.Sprintf("%s %s", ts, l.Text)
}
