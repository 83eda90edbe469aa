// Package api is the wire protocol between the scheduler and its agents,
// and the clients' view of runs, jobs and agents: JSON over HTTP, easy to
// follow with curl. The scheduler and the agent both import it, so neither
// imports the other.
package api

import (
	"encoding/json"
	"fmt"
	"time"
)

// Duration is a time.Duration that travels as Go's duration text ("2s"),
// so a human reading the JSON need not count nanoseconds.
type Duration time.Duration

// MarshalJSON writes d as "1m30s".
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// UnmarshalJSON reads "1m30s".
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration: %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// RegisterRequest is what an agent says of itself when it joins the pool,
// sent with the pool's registration token.
type RegisterRequest struct {
	Name    string   `json:"name"`
	Labels  []string `json:"labels"`
	Slots   int      `json:"slots"`
	Version string   `json:"version,omitempty"`
}

// Registration is the scheduler's answer: the agent's own id and token,
// and the lease timing it must keep.
type Registration struct {
	ID    string `json:"id"`
	Token string `json:"token"`
	// LeaseTimeout is how long a lease lives without a heartbeat. An
	// agent that could not renew a lease for this long kills the job
	// before the scheduler gives it to another agent.
	LeaseTimeout Duration `json:"lease_timeout"`
	// Heartbeat is how often the agent should renew its leases.
	Heartbeat Duration `json:"heartbeat"`
}

// Attempt names one attempt at one job: the unit a lease is for.
type Attempt struct {
	Job     int64 `json:"job"`
	Attempt int   `json:"attempt"`
}

// String is "job 12 attempt 2".
func (a Attempt) String() string { return fmt.Sprintf("job %d attempt %d", a.Job, a.Attempt) }

// Lease hands one attempt to an agent: everything it needs to run the job
// with agent.Runner.
type Lease struct {
	Attempt
	// Run is the run's id, a single path segment.
	Run string `json:"run"`
	// Repo names the repository (caches and artifacts are scoped by it);
	// CloneURL, if set, is where the agent checks Commit out from.
	Repo     string `json:"repo"`
	Branch   string `json:"branch"`
	Commit   string `json:"commit,omitempty"`
	CloneURL string `json:"clone_url,omitempty"`
	// File is the job file's name and Source its text; Job names the job
	// in it ("build (goos=linux)").
	File   string `json:"file"`
	Source string `json:"source"`
	Job    string `json:"job_name"`
	// Needs are the attempts whose artifacts the job receives.
	Needs []Need `json:"needs,omitempty"`
	// Env is added to the job's environment; Secrets too, and masked.
	Env     map[string]string `json:"env,omitempty"`
	Secrets map[string]string `json:"secrets,omitempty"`
	// Mask holds the values of the secrets the run's other jobs name: the
	// agent masks them in this job's output (one may reach it through an
	// artifact) and puts them nowhere else. Untrusted runs get none.
	Mask []string `json:"mask,omitempty"`
	// Untrusted runs (pull requests from forks) get private caches.
	Untrusted bool `json:"untrusted,omitempty"`
	// Checkout, for a registered repository, carries the credentials
	// and refs to fetch Commit with.
	Checkout *Checkout `json:"checkout,omitempty"`
	// Expires is how long the lease lives from when it was sent, unless
	// renewed by a heartbeat.
	Expires Duration `json:"expires"`
}

// Need is one finished job whose artifacts a job receives.
type Need struct {
	// ID is the needed job's id in the scheduler, Key its sanitised id as
	// the artifact store names it, and Attempt the attempt that succeeded.
	ID      int64  `json:"id"`
	Key     string `json:"key"`
	Attempt int    `json:"attempt"`
}

// Heartbeat lists the attempts an agent is running.
type Heartbeat struct {
	Running []Attempt `json:"running"`
}

// HeartbeatReply lists the attempts the agent must kill: cancelled by a
// user, superseded, or no longer leased to it.
type HeartbeatReply struct {
	Kill []Attempt `json:"kill,omitempty"`
}

// LogAck says how many bytes of an attempt's log the scheduler holds.
// Chunks go up with their byte offset: one that starts at or before Size
// is taken from Size on (a retried chunk is not stored twice); one that
// starts after it is refused with 409 and this reply, so the agent
// resends from Size and nothing is lost.
type LogAck struct {
	Size int64 `json:"size"`
}

// Step statuses beside the final ones: a step that is running.
const StepRunning = "running"

// Step is a step's state as the agent reports it.
type Step struct {
	Index    int       `json:"index"`
	Name     string    `json:"name"`
	Status   string    `json:"status"`
	Started  time.Time `json:"started"`
	Duration Duration  `json:"duration"`
	// Exit is the cause of death in words; empty on success.
	Exit           string `json:"exit,omitempty"`
	AllowedFailure bool   `json:"allowed_failure,omitempty"`
}

// Usage is what a job's processes consumed.
type Usage struct {
	CPU        Duration `json:"cpu"`
	PeakMemory int64    `json:"peak_memory"`
	PeakPids   int64    `json:"peak_pids"`
}

// Result closes an attempt.
type Result struct {
	// Status is one of the final statuses below.
	Status    string   `json:"status"`
	Reason    string   `json:"reason,omitempty"`
	Steps     []Step   `json:"steps,omitempty"`
	Duration  Duration `json:"duration"`
	Usage     Usage    `json:"usage"`
	CacheHits int      `json:"cache_hits"`
	Caches    int      `json:"caches"`
	Artifacts []string `json:"artifacts,omitempty"`
}

// The statuses of runs and jobs. A job waits for its needs, is queued,
// runs, and ends in one of the last six.
const (
	Waiting    = "waiting"
	Queued     = "queued"
	Running    = "running"
	Succeeded  = "succeeded"
	Failed     = "failed"
	Cancelled  = "cancelled"
	Skipped    = "skipped"
	Errored    = "error"
	Superseded = "superseded"
)

// Final reports whether a job or run in status s has ended.
func Final(s string) bool {
	switch s {
	case Waiting, Queued, Running:
		return false
	}
	return true
}

// NewRun asks for a run of a job file.
type NewRun struct {
	Repo     string `json:"repo"`
	Branch   string `json:"branch"`
	Commit   string `json:"commit,omitempty"`
	CloneURL string `json:"clone_url,omitempty"`
	// File names the job file (".ci.hcl") and Source is its text.
	File   string `json:"file"`
	Source string `json:"source"`
	// Jobs selects jobs by name (with what they need); empty means all.
	Jobs []string `json:"jobs,omitempty"`
	// Trigger says what started the run: "push", "api", "cron"...
	Trigger   string            `json:"trigger,omitempty"`
	Env       map[string]string `json:"env,omitempty"`
	Untrusted bool              `json:"untrusted,omitempty"`
	// FetchRef is the ref the server fetched Commit by (a pull request's
	// refs/pull/N/head, a GitLab merge request's
	// refs/merge-requests/N/head); its leases tell the agent to fetch
	// the same. Only the server sets it: it is not part of the API.
	FetchRef string `json:"-"`
}

// Run is a run as clients see it.
type Run struct {
	ID       int64      `json:"id"`
	Repo     string     `json:"repo"`
	Branch   string     `json:"branch"`
	Commit   string     `json:"commit,omitempty"`
	File     string     `json:"file"`
	Trigger  string     `json:"trigger"`
	Status   string     `json:"status"`
	Reason   string     `json:"reason,omitempty"`
	Created  time.Time  `json:"created"`
	Finished *time.Time `json:"finished,omitempty"`
	Jobs     []Job      `json:"jobs,omitempty"`
}

// Job is a job as clients see it.
type Job struct {
	ID      int64    `json:"id"`
	Run     int64    `json:"run"`
	Name    string   `json:"name"`
	Key     string   `json:"key"`
	Labels  []string `json:"labels,omitempty"`
	Needs   []string `json:"needs,omitempty"`
	Status  string   `json:"status"`
	Reason  string   `json:"reason,omitempty"`
	Attempt int      `json:"attempt"`
	Agent   string   `json:"agent,omitempty"`
	// Queued, Started and Finished are the current attempt's times.
	Queued   time.Time  `json:"queued"`
	Started  *time.Time `json:"started,omitempty"`
	Finished *time.Time `json:"finished,omitempty"`
	Result   *Result    `json:"result,omitempty"`
	Steps    []Step     `json:"steps,omitempty"`
}

// Agent is an agent as clients see it.
type Agent struct {
	ID       string    `json:"id"`
	Name     string    `json:"name"`
	Labels   []string  `json:"labels"`
	Slots    int       `json:"slots"`
	Busy     int       `json:"busy"`
	Running  []Attempt `json:"running,omitempty"`
	LastSeen time.Time `json:"last_seen"`
	Online   bool      `json:"online"`
	Version  string    `json:"version,omitempty"`
}

// Secret is a secret as clients see it: never its value.
type Secret struct {
	Repo     string   `json:"repo"`
	Name     string   `json:"name"`
	Branches []string `json:"branches,omitempty"`
}

// SetSecret stores a secret's value, optionally only for branches
// matching one of the patterns.
type SetSecret struct {
	Value    string   `json:"value"`
	Branches []string `json:"branches,omitempty"`
}

// LogLine is one line of a job's log as the agent uploads it: the log is
// a sequence of these in JSON, one per line, so the scheduler can show
// steps, streams and timestamps apart.
type LogLine struct {
	Time time.Time `json:"t"`
	// Kind is "notice" (a line from jobrun), "step" (a step starts),
	// "out" (a line the step wrote) or "end" (a step ended).
	Kind   string `json:"k"`
	Step   string `json:"s,omitempty"`
	Stream string `json:"o,omitempty"`
	Text   string `json:"x"`
}

// Error is the body of every error reply.
type Error struct {
	Error string `json:"error"`
}
