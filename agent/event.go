package agent

import (
	"time"
)

// Kind says what an Event reports.
type Kind int

// The kinds of event a job emits, in the order of its life.
const (
	JobStarted     Kind = iota // the job was accepted by the runner
	Notice                     // a line from jobrun itself: pulling, waiting for a lock, skipped...
	StepStarted                // a step's process is about to start
	Output                     // a line the step wrote
	StepFinished               // a step ended; Event.Step has its result
	ArtifactStored             // an artifact file was stored; Event.Text is its path
	JobFinished                // the job ended; Event.Result has its result
)

// Event is one thing that happened to a job. Sinks receive events from
// several jobs at once.
type Event struct {
	Time   time.Time
	Kind   Kind
	Job    string // the job's name, e.g. "build (goos=linux)"
	Step   string // the step's name, for step events and output
	Stream string // "stdout" or "stderr", for Output
	Text   string // the line, notice or artifact path, masked and capped

	StepResult *StepResult // for StepFinished
	Result     *Result     // for JobFinished
}

// Sink receives a job's events. The CLI prints them; the pool agent sends
// them to the scheduler. Event must be safe for concurrent use and should
// not block for long: it is called from the job's output path.
type Sink interface {
	Event(Event)
}

// SinkFunc adapts a function to a Sink.
type SinkFunc func(Event)

// Event calls f(e).
func (f SinkFunc) Event(e Event) { f(e) }

// Status is how a step or job ended.
type Status string

// The statuses of steps and jobs.
const (
	Succeeded Status = "succeeded"
	Failed    Status = "failed"
	Skipped   Status = "skipped"
	Cancelled Status = "cancelled"
	// Errored means jobrun itself could not run the job: a bad image, a
	// full disk, a feature not supported yet. The job's own code never ran
	// or was not to blame.
	Errored Status = "error"
)

// StepResult is how one step ended.
type StepResult struct {
	Name     string
	Status   Status
	Duration time.Duration
	// Exit is the cause of death in words: "exit code 2", "timed out
	// after 20m", "out of memory (limit 2 GiB)"; empty on success.
	Exit string
	// AllowedFailure marks a failed step with allow_failure set: it did
	// not fail the job.
	AllowedFailure bool
}

// Usage is what a job's processes consumed, from its cgroup.
type Usage struct {
	CPU        time.Duration
	PeakMemory int64
	PeakPids   int64
}

// Result is how a job ended.
type Result struct {
	Job      string
	Status   Status
	Steps    []StepResult
	Duration time.Duration
	Usage    Usage
	// Reason explains a status other than Succeeded, in words.
	Reason    string
	CacheHits int
	Caches    int
	Artifacts []string
	// Kept names the container left running for inspection (--keep).
	Kept string
}
