// Package web is jobrun's web UI: runs by repository and branch, a run as
// its job graph, a job with its steps, usage, artifacts and a log that
// streams live (server-sent events), the agents of the pool, and cancel
// and retry for whoever signs in with a token with the operate role.
//
// Pages are html/template with embedded CSS and a little vanilla
// JavaScript; every page reads without JavaScript. The package reads and
// acts through Backend, which the scheduler implements, so it never
// imports the scheduler.
package web

import (
	"context"
	"embed"
	"errors"
	"html/template"
	"io"
	"io/fs"
	"net/http"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/jobrun/jobrun/api"
)

// Backend is what the pages read and do.
type Backend interface {
	// Runs lists the newest runs, of repo and branch when set.
	Runs(ctx context.Context, repo, branch string, limit int) ([]api.Run, error)
	// Run returns a run with its jobs.
	Run(ctx context.Context, id int64) (*api.Run, error)
	// Job returns a job with its current attempt's steps.
	Job(ctx context.Context, id int64) (*api.Job, error)
	// Agents lists the pool's agents.
	Agents(ctx context.Context) ([]api.Agent, error)
	// Log returns at most max bytes of an attempt's log (JSON lines of
	// api.LogLine) from byte offset from on.
	Log(ctx context.Context, a api.Attempt, from, max int64) ([]byte, error)
	// LogSize returns the size of an attempt's log in bytes.
	LogSize(ctx context.Context, a api.Attempt) (int64, error)
	// Artifacts lists an attempt's stored files; ErrNotFound when it
	// stored none.
	Artifacts(ctx context.Context, a api.Attempt) ([]Artifact, error)
	// OpenArtifact opens one stored file of an attempt.
	OpenArtifact(ctx context.Context, a api.Attempt, path string) (io.ReadCloser, error)
	// Cancel ends a job that has not started or asks its agent to stop it.
	Cancel(ctx context.Context, job int64) error
	// Retry queues an ended job again.
	Retry(ctx context.Context, job int64) error
	// SignIn opens a session for a token (ErrBadToken when it opens
	// none); Session finds a live one by its id (ErrNotFound when ended
	// or expired); SignOut ends one.
	SignIn(ctx context.Context, token string) (*Session, error)
	Session(ctx context.Context, id string) (*Session, error)
	SignOut(ctx context.Context, id string) error
}

// Artifact is one stored file of an attempt.
type Artifact struct {
	Path string
	Size int64
}

// Errors a Backend wraps so the pages answer with the right status.
var (
	ErrNotFound = errors.New("not found")
	ErrConflict = errors.New("conflict")
	// ErrGone is a run or job the server's retention removed.
	ErrGone = errors.New("gone")
)

// Options configure the UI.
type Options struct {
	// PublicRead lets anyone read the pages without signing in; else a
	// user signs in with a token with the read role (operate to cancel
	// and retry).
	PublicRead bool
	// Secure marks the session cookie Secure: the server's public URL is
	// https (behind a TLS-terminating proxy r.TLS is nil).
	Secure bool
	Log    hclog.Logger
	// Poll is how often a live log looks for new lines (default 250ms).
	Poll time.Duration
	// Progress is how long each write of a live log or a download may
	// take (default 1m); they are not bound by the server's WriteTimeout.
	Progress time.Duration
}

//go:embed templates static
var assets embed.FS

// ui serves the pages.
type ui struct {
	b     Backend
	opts  Options
	log   hclog.Logger
	pages map[string]*template.Template
	mux   *http.ServeMux
}

// Handler returns the UI's handler, to be mounted at "/".
func Handler(b Backend, opts Options) http.Handler {
	if opts.Log == nil {
		opts.Log = hclog.NewNullLogger()
	}
	if opts.Poll == 0 {
		opts.Poll = 250 * time.Millisecond
	}
	if opts.Progress == 0 {
		opts.Progress = time.Minute
	}
	u := &ui{b: b, opts: opts, log: opts.Log, mux: http.NewServeMux()}
	u.pages = parsePages()
	static, _ := fs.Sub(assets, "static")
	m := u.mux
	m.Handle("GET /static/", http.StripPrefix("/static/", cacheFor(time.Hour, http.FileServerFS(static))))
	m.HandleFunc("GET /{$}", u.runsPage)
	m.HandleFunc("GET /runs/{id}", u.runPage)
	m.HandleFunc("GET /jobs/{id}", u.jobPage)
	m.HandleFunc("GET /jobs/{id}/events", u.logEvents)
	m.HandleFunc("GET /jobs/{id}/attempts/{n}/artifacts/{path...}", u.artifact)
	m.HandleFunc("GET /agents", u.agentsPage)
	m.HandleFunc("GET /login", u.loginPage)
	m.HandleFunc("POST /login", u.login)
	m.HandleFunc("POST /logout", u.logout)
	m.HandleFunc("POST /jobs/{id}/cancel", u.act(u.b.Cancel, "cancel"))
	m.HandleFunc("POST /jobs/{id}/retry", u.act(u.b.Retry, "retry"))
	m.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		u.error(w, r, http.StatusNotFound, "There is no page at "+r.URL.Path+".")
	})
	return u
}

// ServeHTTP sets the headers every page carries: no framing (clickjacking
// of the buttons), no sniffing, and a policy that runs only our own
// script and style.
func (u *ui) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Content-Security-Policy", "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'")
	r, err := u.withSession(w, r)
	if err != nil {
		u.fail(w, r, err)
		return
	}
	if !u.mayRead(w, r) {
		return
	}
	u.mux.ServeHTTP(w, r)
}

func cacheFor(d time.Duration, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age="+itoa(int64(d/time.Second)))
		h.ServeHTTP(w, r)
	})
}
