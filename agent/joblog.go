package agent

import (
	"io"
	"strings"
	"time"
)

// jobLog is the one path a job's events take to the sink: it stamps them,
// masks secrets in every text and caps the job's output.
type jobLog struct {
	job  string
	sink Sink
	mask *masker
	cap  *logCap
	now  func() time.Time
}

func newJobLog(job string, sink Sink, secrets []string, limit int64) *jobLog {
	return &jobLog{job: job, sink: sink, mask: newMasker(secrets), cap: &logCap{limit: limit}, now: time.Now}
}

func (l *jobLog) emit(e Event) {
	e.Text = l.mask.mask(e.Text)
	l.send(e)
}

// send stamps an event whose text is masked and passes it to the sink.
func (l *jobLog) send(e Event) {
	e.Time = l.now()
	e.Job = l.job
	l.sink.Event(e)
}

// notice logs a line from jobrun itself.
func (l *jobLog) notice(step, text string) {
	l.emit(Event{Kind: Notice, Step: step, Text: text})
}

// output is where a step's process writes; it frames lines, masks and caps.
// A line cut into pieces is masked as one stream, so a secret across a cut
// is masked too; the pieces are logged as lines of their own.
func (l *jobLog) output(step, stream string) io.WriteCloser {
	ms := &maskStream{m: l.mask}
	cont := false // the line in progress was cut: an empty last piece logs nothing
	return &lineWriter{emit: func(line string, more bool) {
		text := ms.piece(line, more)
		if !more {
			text = strings.TrimSuffix(text, "\r")
		}
		skip := text == "" && (more || cont)
		cont = more
		if skip {
			return
		}
		ok, notice := l.cap.admit(text)
		if notice != "" {
			l.notice(step, notice)
		}
		if ok {
			l.send(Event{Kind: Output, Step: step, Stream: stream, Text: text})
		}
	}}
}
