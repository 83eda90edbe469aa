// Package scheduler is jobrun's server: it queues the jobs of runs,
// leases them to the agents of a pool (labels, capacity, branch affinity),
// takes back what a silent agent held, and keeps logs, steps, results and
// artifacts for its HTTP API.
package scheduler

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/jobrun/jobrun/api"
	"github.com/jobrun/jobrun/artifacts"
	"github.com/jobrun/jobrun/jobs"
)

// Store is what the server keeps its state in. *SQL implements it over
// SQLite and PostgreSQL.
type Store interface {
	CreateRun(ctx context.Context, nr api.NewRun, plan []Planned, opts RunOptions, now time.Time) (int64, error)
	RegisterAgent(ctx context.Context, a agentRec, tokenHash string, now time.Time) error
	AgentByToken(ctx context.Context, tokenHash string) (*agentRec, error)
	Deregister(ctx context.Context, id string, now time.Time) error
	Lease(ctx context.Context, a *agentRec, p LeaseParams, now time.Time) (*leaseRec, error)
	Heartbeat(ctx context.Context, agent string, running []api.Attempt, timeout time.Duration, now time.Time) ([]api.Attempt, error)
	CheckLease(ctx context.Context, agent string, a api.Attempt) error
	AppendLog(ctx context.Context, agent string, a api.Attempt, off int64, data []byte, q logQuota) (int64, error)
	ReserveArtifact(ctx context.Context, agent string, a api.Attempt, path string, size int64, lim Limits) error
	UploadedArtifacts(ctx context.Context, a api.Attempt) (map[string]int64, error)
	ForgetArtifacts(ctx context.Context, a api.Attempt) error
	Log(ctx context.Context, a api.Attempt, from, max int64) ([]byte, error)
	LogSize(ctx context.Context, a api.Attempt) (int64, error)
	Step(ctx context.Context, agent string, a api.Attempt, st api.Step) error
	Finish(ctx context.Context, agent string, a api.Attempt, r api.Result, now time.Time) (int, error)
	Expire(ctx context.Context, now time.Time) (int, error)
	Cancel(ctx context.Context, job int64, why string, now time.Time) error
	Retry(ctx context.Context, job int64, budget int, now time.Time) error
	Run(ctx context.Context, id int64) (*api.Run, error)
	Runs(ctx context.Context, repo, branch string, limit int) ([]api.Run, error)
	Job(ctx context.Context, id int64) (*api.Job, error)
	Agents(ctx context.Context, timeout time.Duration, now time.Time) ([]api.Agent, error)
	AttemptInfo(ctx context.Context, a api.Attempt) (*attemptInfo, error)
	SetSecret(ctx context.Context, repo string, r secretRec) error
	Secrets(ctx context.Context, repo string) ([]secretRec, error)
	// Tokens and web sessions (tokens.go, sessions.go).
	AddToken(ctx context.Context, t tokenRec) error
	TokenByHash(ctx context.Context, hash string, now time.Time) (*tokenRec, error)
	Tokens(ctx context.Context) ([]tokenRec, error)
	RemoveToken(ctx context.Context, name string, now time.Time) error
	CreateSession(ctx context.Context, rec sessionRec) error
	Session(ctx context.Context, idHash string, now time.Time) (*sessionRec, error)
	DeleteSession(ctx context.Context, idHash string) error
}

// Config configures a Server.
type Config struct {
	Store     Store
	Artifacts artifacts.Store
	// TempDir holds uploads on their way into Artifacts.
	TempDir string
	// RegistrationToken admits agents to the pool with any labels, to the
	// jobs of every repository (stored agent tokens admit less, tokens.go);
	// AdminToken has the admin role (runs, cancel, retry, repositories,
	// secrets, tokens).
	RegistrationToken string
	AdminToken        string
	// PublicRead lets anyone read runs, logs, artifacts, agents and
	// metrics without a token (open source servers).
	PublicRead bool
	Secrets    *Sealer
	// LeaseTimeout is how long a lease lives without a heartbeat
	// (default 30 s); AffinityWait how long a job waits for the agent
	// that last ran its branch (default 2 s).
	LeaseTimeout time.Duration
	AffinityWait time.Duration
	// MaxAttempts is how many times a job is leased before a lost lease
	// fails it (default 3).
	MaxAttempts int
	// SupersedeRunning makes a new run of a branch cancel the running
	// jobs of older runs too, not only the queued ones.
	SupersedeRunning bool
	Log              hclog.Logger
	// Triggers configures registered repositories: webhooks, cron,
	// manual runs and commit statuses (hooks.go).
	Triggers TriggerConfig
	// Limits bound what an agent may store per attempt (limits.go).
	Limits Limits
	// Timeouts bound connections (timeouts.go).
	Timeouts Timeouts
	// Retention removes expired artifacts and old runs (retention.go).
	Retention Retention
}

// Server is the scheduler's HTTP API.
type Server struct {
	cfg   Config
	st    Store
	log   hclog.Logger
	queue waker
	mux   *http.ServeMux
	// metrics are set by mountUI (webui.go).
	metrics *Metrics
	// hookWarn bounds the warnings refused webhooks write (hookguard.go).
	hookWarn warnLimiter
}

// New makes a server; Run starts its background work and Handler serves it.
func New(cfg Config) *Server {
	if cfg.LeaseTimeout == 0 {
		cfg.LeaseTimeout = 30 * time.Second
	}
	if cfg.AffinityWait == 0 {
		cfg.AffinityWait = 2 * time.Second
	}
	if cfg.MaxAttempts == 0 {
		cfg.MaxAttempts = 3
	}
	if cfg.Log == nil {
		cfg.Log = hclog.NewNullLogger()
	}
	cfg.Limits = cfg.Limits.withDefaults()
	cfg.Timeouts = cfg.Timeouts.withDefaults()
	s := &Server{cfg: cfg, st: cfg.Store, log: cfg.Log, mux: http.NewServeMux()}
	s.routes()
	return s
}

// Handler serves the API.
func (s *Server) Handler() http.Handler { return noSniff(s.mux) }

// noSniff keeps browsers from reading any reply as another type than it
// says: a log or an artifact as HTML.
func noSniff(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Content-Type-Options", "nosniff")
		h.ServeHTTP(w, r)
	})
}

// Run takes back expired leases until ctx ends. Every server on a shared
// database runs it; the store makes that safe.
func (s *Server) Run(ctx context.Context) {
	go s.runTriggers(ctx)
	go s.sweepLoop(ctx)
	tick := time.NewTicker(min(s.cfg.LeaseTimeout/4, time.Second))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		n, err := s.st.Expire(ctx, time.Now())
		if err != nil && ctx.Err() == nil {
			s.log.Error("expire leases", "error", err)
		}
		if n > 0 {
			s.log.Info("requeued jobs of silent agents", "jobs", n)
			s.queue.wake(n)
		}
	}
}

// waker lets lease requests sleep until something is queued. It wakes as
// many waiters as jobs were queued, oldest first, rather than all of them:
// fifty agents racing for one job cost fifty transactions.
type waker struct {
	mu      sync.Mutex
	waiters []chan int
}

// wait registers a waiter. Its channel receives the number of waiters
// already woken in vain for the same job (see pass) when woken; cancel
// removes it.
func (w *waker) wait() (ch chan int, cancel func()) {
	ch = make(chan int, 1)
	w.mu.Lock()
	w.waiters = append(w.waiters, ch)
	w.mu.Unlock()
	return ch, func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		for i, c := range w.waiters {
			if c == ch {
				w.waiters = append(w.waiters[:i], w.waiters[i+1:]...)
				return
			}
		}
	}
}

// wake wakes n waiters.
func (w *waker) wake(n int) { w.pass(n, 0) }

// pass wakes n waiters, telling them how many were woken in vain before:
// a waiter that finds no job it may run (labels, affinity) passes its
// wake-up on, at most once around the queue.
func (w *waker) pass(n, hops int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if hops > len(w.waiters) {
		return
	}
	for ; n > 0 && len(w.waiters) > 0; n-- {
		w.waiters[0] <- hops
		w.waiters = w.waiters[1:]
	}
}

func hashToken(t string) string {
	h := sha256.Sum256([]byte(t))
	return hex.EncodeToString(h[:])
}

// NewToken makes a random token.
func NewToken() string {
	b := make([]byte, 24)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func bearer(r *http.Request) string {
	const p = "Bearer "
	h := r.Header.Get("Authorization")
	if len(h) > len(p) && h[:len(p)] == p {
		return h[len(p):]
	}
	return ""
}

func sameToken(given, want string) bool {
	return want != "" && subtle.ConstantTimeCompare([]byte(hashToken(given)), []byte(hashToken(want))) == 1
}

// plan reads a run's job file and returns its jobs, or the diagnostics
// as text.
func plan(nr api.NewRun) ([]Planned, string) {
	f, diags := jobs.Parse(nr.File, []byte(nr.Source))
	if diags.HasErrors() {
		var b strings.Builder
		jobs.WriteDiagnostics(&b, diags, f, false)
		return nil, b.String()
	}
	sel := f.Jobs
	if len(nr.Jobs) > 0 {
		var err error
		if sel, err = f.Select(nr.Jobs...); err != nil {
			return nil, err.Error()
		}
	}
	out := make([]Planned, 0, len(sel))
	for _, j := range sel {
		out = append(out, Planned{Name: j.Name, Key: j.ID, Labels: j.Agent, Needs: j.Needs, Secrets: plannedSecrets(j),
			Concurrency: j.Concurrency})
	}
	return out, ""
}

// leaseSecrets opens the secrets a leased job names and may see: none for
// untrusted runs, and only those whose branch patterns match. The values
// of the secrets the run's other jobs name come back as mask: the agent
// masks them in this job's output (one may reach it through an artifact)
// and never puts them in its environment.
func (s *Server) leaseSecrets(ctx context.Context, l *leaseRec) (secrets map[string]string, mask []string, err error) {
	if l.Untrusted || len(l.runSecrets) == 0 || s.cfg.Secrets == nil {
		return nil, nil, nil
	}
	recs, err := s.st.Secrets(ctx, l.Repo)
	if err != nil {
		return nil, nil, err
	}
	secrets = map[string]string{}
	for _, r := range recs {
		if !contains(l.runSecrets, r.Name) || !branchMatches(r.Branches, l.Branch) {
			continue
		}
		v, err := s.cfg.Secrets.Open(l.Repo, r.Name, r.Sealed)
		if err != nil {
			return nil, nil, err
		}
		if contains(l.secrets, r.Name) {
			secrets[r.Name] = v
		} else {
			mask = append(mask, v)
		}
	}
	return secrets, mask, nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func branchMatches(patterns []string, branch string) bool {
	if len(patterns) == 0 {
		return true
	}
	for _, p := range patterns {
		if g, err := jobs.NewGlob(p); err == nil && g.Match(branch) {
			return true
		}
	}
	return false
}

// httpError maps store errors to statuses.
func httpStatus(err error) int {
	switch {
	case errors.Is(err, errSwept):
		return http.StatusGone
	case errors.Is(err, errNotFound), errors.Is(err, artifacts.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, errGone):
		return http.StatusGone
	case errors.Is(err, errConflict), errors.Is(err, artifacts.ErrAttemptExists):
		return http.StatusConflict
	case errors.Is(err, errQuota):
		return http.StatusRequestEntityTooLarge
	case errors.Is(err, artifacts.ErrInvalidPath):
		return http.StatusBadRequest
	case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, context.Canceled):
		// The client sent too slowly for the route's deadline, or went
		// away: its fault, not the server's.
		return http.StatusRequestTimeout
	}
	return http.StatusInternalServerError
}

// plannedSecrets are the secrets a job's lease carries: those it names,
// and its image_credentials, which the agent keeps out of its environment.
func plannedSecrets(j *jobs.Job) []string {
	if j.ImageCredentials == "" || slices.Contains(j.Secrets, j.ImageCredentials) {
		return j.Secrets
	}
	return append(slices.Clone(j.Secrets), j.ImageCredentials)
}
