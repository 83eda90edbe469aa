// Package jobs reads .ci.hcl job files: it parses them with HCL, checks
// every field once (sizes, durations, cron expressions, globs, names),
// expands matrices into one job per combination and orders the jobs by
// their needs. Every problem is reported as an hcl.Diagnostic that points
// at the file, line and column it comes from, all of them in one pass.
package jobs

import (
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/robfig/cron/v3"
	"github.com/zclconf/go-cty/cty"
)

// DefaultTimeout is how long a job may run when it sets no timeout.
const DefaultTimeout = time.Hour

// File is a parsed job file.
type File struct {
	// Path is the file's name as given to Load or Parse.
	Path string
	// Workflow says which events start the jobs; it is empty (no
	// triggers) when the file has no workflow block.
	Workflow Workflow
	// Jobs are the expanded jobs (one per matrix combination) in a
	// deterministic topological order: every job comes after the jobs it
	// needs, and otherwise in the order the file declares them.
	Jobs []*Job

	src    []byte
	byName map[string]*Job
	bases  map[string][]*Job
}

// Workflow holds the triggers of a job file.
type Workflow struct {
	Triggers  []Trigger
	DeclRange hcl.Range
}

// TriggerKind is the event an `on` block reacts to.
type TriggerKind string

// The trigger kinds a workflow accepts.
const (
	OnPush        TriggerKind = "push"
	OnPullRequest TriggerKind = "pull_request"
	OnTag         TriggerKind = "tag"
	OnCron        TriggerKind = "cron"
	OnManual      TriggerKind = "manual"
)

// Trigger is one `on "kind" { ... }` block.
type Trigger struct {
	Kind TriggerKind
	// Branches limits push and pull_request triggers (for pull requests:
	// the target branch); empty means every branch.
	Branches []Glob
	// Tags limits tag triggers; empty means every tag.
	Tags []Glob
	// Schedule is a cron trigger's expression as written, and Cron the
	// parsed schedule (robfig/cron standard syntax, with descriptors
	// such as @daily).
	Schedule string
	Cron     cron.Schedule
	// Branch is the branch a cron trigger runs on; empty means the
	// repository's default branch.
	Branch    string
	DeclRange hcl.Range
}

// Job is one expanded job: a job block, or one combination of its matrix.
type Job struct {
	// Name is the block's name, followed for a matrix job by its values:
	// "build (arch=amd64, goos=linux)".
	Name string
	// ID is derived from Name by JobID: safe for hostnames, cgroup names
	// and storage keys, and distinct for distinct names.
	ID string
	// Base is the job block's name, the same for all combinations.
	Base string
	// Matrix holds this combination's values; nil without a matrix.
	Matrix map[string]string
	// Image is the OCI image reference the job runs in.
	Image string
	// Pull is when the agent asks the registry for the image (its tag's
	// digest); empty means the agent's setting.
	Pull Pull
	// ImageCredentials names the secret holding the login ("USER:PASSWORD")
	// for the registry of Image; empty means the agent's own. It is not
	// put in the job's environment.
	ImageCredentials string
	// Agent lists the labels an agent must carry to run the job.
	Agent []string
	// Needs are the expanded names of the jobs that must succeed first.
	Needs []string
	// Timeout bounds the whole job; DefaultTimeout when unset.
	Timeout   time.Duration
	Resources Resources
	// Env is added to the container's environment.
	Env       map[string]string
	Caches    []Cache
	Steps     []Step
	Artifacts *Artifacts
	// Network is the job's network mode; NetworkBridge when unset.
	Network  Network
	Services []Service
	// Secrets name the secrets the job receives as environment variables.
	Secrets []string
	// Concurrency is the job's concurrency group: at most one job of a
	// group runs at a time (in `jobrun local` within the run; on a pool
	// across the repository's runs). Empty means no group.
	Concurrency string
	// BuildsImages lets the job build container images with rootless
	// builders (buildah, podman build): inside its own user namespace it
	// may make nested user namespaces, mounts and a procfs of its own
	// (see agent/sandbox/builder.go). Runners without user namespaces
	// refuse such a job before it starts.
	BuildsImages bool
	// DeclRange is the job block's header, for diagnostics about the job.
	DeclRange hcl.Range
}

// Resources are a job's cgroup limits; zero means no limit.
type Resources struct {
	CPUs   float64
	Memory int64 // bytes
	Pids   int64
}

// Sharing is how concurrent jobs share a cache volume.
type Sharing string

// The sharing modes of a cache.
const (
	// Shared lets concurrent jobs mount the same directory (the default).
	Shared Sharing = "shared"
	// Locked lets one job at a time use the volume; others wait.
	Locked Sharing = "locked"
	// Private gives each job a copy-on-write view that is thrown away.
	Private Sharing = "private"
)

// Cache is a named dependency cache mounted into the job.
type Cache struct {
	Name string
	// Path is the absolute path in the container the cache is mounted at.
	Path    string
	Sharing Sharing
	// Key is the key expression as written (empty if none); the runner
	// evaluates it after checkout with EvalKey.
	Key       string
	DeclRange hcl.Range

	keyExpr hcl.Expression
	vars    map[string]cty.Value
}

// StepIf is when a step runs, given how the steps before it went.
type StepIf string

// The conditions of a step.
const (
	// IfSuccess runs the step while every earlier step succeeded (the
	// default).
	IfSuccess StepIf = "success"
	// IfFailure runs the step only after an earlier step failed.
	IfFailure StepIf = "failure"
	// IfAlways runs the step whatever happened before.
	IfAlways StepIf = "always"
)

// Step is one shell command of a job; steps run in order.
type Step struct {
	Name string
	// Run is the script, run by the image's shell.
	Run string
	If  StepIf
	// AllowFailure lets the job go on as if the step had succeeded.
	AllowFailure bool
	// Workdir is the directory the step runs in, relative to the
	// workspace unless absolute; empty means the workspace.
	Workdir   string
	DeclRange hcl.Range
}

// When is when a job's artifacts are stored.
type When string

// The values of artifacts' when.
const (
	OnSuccess When = "on_success" // the default
	OnFailure When = "on_failure"
	Always    When = "always"
)

// Artifacts are the files a job keeps once it ends.
type Artifacts struct {
	// Paths are globs relative to the workspace (doublestar syntax).
	Paths []string
	When  When
	// ExpireIn is how long the artifacts are kept; zero means forever.
	ExpireIn time.Duration
	// Required makes a path that matches nothing fail the job.
	Required  bool
	DeclRange hcl.Range
}

// Pull is a job's image pull policy.
type Pull string

// The pull policies.
const (
	// PullAlways checks the tag's digest at the registry (one HEAD) and
	// pulls when it moved.
	PullAlways Pull = "always"
	// PullIfMissing pulls only an image the agent does not have.
	PullIfMissing Pull = "if-missing"
	// PullNever uses the agent's images only.
	PullNever Pull = "never"
)

// Network is a job's network mode.
type Network string

// The network modes.
const (
	// NetworkNone gives the job a loopback device only.
	NetworkNone Network = "none"
	// NetworkHost shares the host's network.
	NetworkHost Network = "host"
	// NetworkBridge (the default) gives the job its own network with
	// outbound access and its services reachable by name.
	NetworkBridge Network = "bridge"
)

// Service is a container started next to the job, such as a database.
type Service struct {
	Name    string
	Image   string
	Env     map[string]string
	Command []string
	// Port is the port the service listens on; zero if unset.
	Port      int
	DeclRange hcl.Range
}
