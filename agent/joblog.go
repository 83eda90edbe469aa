package agent

import (
	"io"
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
	e.Time = l.now()
	e.Job = l.job
	e.Text = l.mask.mask(e.Text)
	l.sink.Event(e)
}

// notice logs a line from jobrun itself.
func (l *jobLog) notice(step, text string) {
	l.emit(Event{Kind: Notice, Step: step, Text: text})
}

// output is where a step's process writes; it frames lines, masks and caps.
func (l *jobLog) output(step, stream string) io.WriteCloser {
	return &lineWriter{emit: func(line string) {
		ok, notice := l.cap.admit(line)
		if notice != "" {
			l.notice(step, notice)
		}
		if ok {
			l.emit(Event{Kind: Output, Step: step, Stream: stream, Text: line})
		}
	}}
}
