package scheduler

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/jobrun/jobrun/api"
	"github.com/jobrun/jobrun/scheduler/web"
)

// followPoll is how often a followed log looks for new chunks.
const followPoll = 200 * time.Millisecond

// jobLog serves a job's log as text (?raw=1: the JSON lines the agent
// sent), of its latest attempt or ?attempt=N; ?follow=1 streams until the
// attempt ends.
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
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if raw {
		w.Header().Set("Content-Type", "application/x-ndjson")
	}
	var off int64
	var partial []byte
	for {
		data, err := s.st.Log(ctx, at, off)
		if err != nil {
			s.log.Error("read log", "job", id, "error", err)
			return
		}
		off += int64(len(data))
		// Only whole lines go out, so a line split between chunks is not
		// rendered as two.
		data = append(partial, data...)
		cut := bytes.LastIndexByte(data, '\n') + 1
		partial = append([]byte(nil), data[cut:]...)
		if raw {
			w.Write(data[:cut])
		} else {
			renderLog(w, data[:cut])
		}
		if !follow {
			return
		}
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
		// The job's state is read before the last chunks are, so what
		// came before its end is not missed.
		if j, err := s.st.Job(ctx, id); err != nil || j.Attempt != at.Attempt || api.Final(j.Status) {
			rest, err := s.st.Log(ctx, at, off)
			if err != nil {
				return
			}
			rest = append(partial, rest...)
			if raw {
				w.Write(rest)
			} else {
				renderLog(w, rest)
			}
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(followPoll):
		}
	}
}

// renderLog writes JSON log lines as text: the time, then the step or
// jobrun's own notices, then the line.
func renderLog(w io.Writer, data []byte) {
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	bw := bufio.NewWriter(w)
	defer bw.Flush()
	for sc.Scan() {
		var l api.LogLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			fmt.Fprintln(bw, web.TerminalText(sc.Text()))
			continue
		}
		fmt.Fprintln(bw, FormatLine(l))
	}
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
