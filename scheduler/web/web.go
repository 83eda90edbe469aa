// Package web is jobrun's web UI: runs by repository and branch, a run as
// its job graph, a job with its steps, usage, artifacts and a log that
// streams live (server-sent events), the agents of the pool, and cancel
// and retry for whoever holds the admin token.
//
// Pages are html/template with embedded CSS and a little vanilla
// JavaScript; every page reads without JavaScript. The package reads and
// acts through Backend, which the scheduler implements, so it never
// imports the scheduler.
package web

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/hex"
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
)

// Options configure the UI.
type Options struct {
	// AdminToken, when set, lets a user who types it in cancel and retry
	// jobs; without it the pages only read.
	AdminToken string
	Log        hclog.Logger
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
	u.mux.ServeHTTP(w, r)
}

func cacheFor(d time.Duration, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age="+itoa(int64(d/time.Second)))
		h.ServeHTTP(w, r)
	})
}

// The session is a cookie holding a MAC of a fixed text under the admin
// token: it proves the token was typed in without storing it in the
// browser, and changing the token ends every session. The CSRF token of
// its forms is a second MAC, which another site cannot read or make.
const (
	sessionCookie = "jobrun_session"
	sessionTTL    = 12 * time.Hour
)

func (u *ui) mac(what string) string {
	m := hmac.New(sha256.New, []byte(u.opts.AdminToken))
	io.WriteString(m, "jobrun web "+what)
	return hex.EncodeToString(m.Sum(nil))
}

// admin reports whether the request carries a valid session.
func (u *ui) admin(r *http.Request) bool {
	if u.opts.AdminToken == "" {
		return false
	}
	c, err := r.Cookie(sessionCookie)
	return err == nil && hmac.Equal([]byte(c.Value), []byte(u.mac("session")))
}

func (u *ui) csrf() string { return u.mac("csrf") }

// checkCSRF accepts a POST whose form carries the CSRF token and, when
// the browser says where it came from, comes from this site.
func (u *ui) checkCSRF(r *http.Request) bool {
	return sameOrigin(r) && subtle.ConstantTimeCompare([]byte(r.PostFormValue("csrf")), []byte(u.csrf())) == 1
}

// sameOrigin refuses a form another site's page sent, where the browser
// says so (Origin); a request without the header is not from a browser
// that would carry the session cookie across sites (SameSite=Strict).
func sameOrigin(r *http.Request) bool {
	o := r.Header.Get("Origin")
	return o == "" || o == scheme(r)+"://"+r.Host
}

func scheme(r *http.Request) string {
	if r.TLS != nil {
		return "https"
	}
	return "http"
}

func (u *ui) loginPage(w http.ResponseWriter, r *http.Request) {
	u.render(w, r, http.StatusOK, "login", page{Title: "Sign in", Data: map[string]any{"Next": safeNext(r.URL.Query().Get("next")), "Enabled": u.opts.AdminToken != ""}})
}

func (u *ui) login(w http.ResponseWriter, r *http.Request) {
	if !sameOrigin(r) {
		u.error(w, r, http.StatusForbidden, "The sign-in form was sent from another site.")
		return
	}
	next := safeNext(r.PostFormValue("next"))
	if u.opts.AdminToken == "" || subtle.ConstantTimeCompare([]byte(r.PostFormValue("token")), []byte(u.opts.AdminToken)) != 1 {
		u.render(w, r, http.StatusUnauthorized, "login", page{Title: "Sign in", Data: map[string]any{
			"Next": next, "Enabled": u.opts.AdminToken != "", "Error": "That is not the admin token."}})
		return
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: u.mac("session"), Path: "/", HttpOnly: true,
		Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode, MaxAge: int(sessionTTL / time.Second)})
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (u *ui) logout(w http.ResponseWriter, r *http.Request) {
	if !u.checkCSRF(r) {
		u.error(w, r, http.StatusForbidden, "The form was not sent from this site's page (CSRF token missing or wrong).")
		return
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", HttpOnly: true, MaxAge: -1})
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// safeNext keeps redirects after sign-in on this site.
func safeNext(p string) string {
	if len(p) == 0 || p[0] != '/' || (len(p) > 1 && (p[1] == '/' || p[1] == '\\')) {
		return "/"
	}
	return p
}

// act handles a job's cancel or retry button.
func (u *ui) act(do func(context.Context, int64) error, what string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, ok := u.pathID(w, r, "id")
		if !ok {
			return
		}
		if !u.admin(r) {
			u.error(w, r, http.StatusUnauthorized, "Sign in with the admin token to "+what+" jobs.")
			return
		}
		if !u.checkCSRF(r) {
			u.error(w, r, http.StatusForbidden, "The form was not sent from this site's page (CSRF token missing or wrong).")
			return
		}
		if err := do(r.Context(), id); err != nil {
			u.fail(w, r, err)
			return
		}
		u.log.Info("job "+what+" from the web UI", "job", id)
		http.Redirect(w, r, "/jobs/"+itoa(id), http.StatusSeeOther)
	}
}
