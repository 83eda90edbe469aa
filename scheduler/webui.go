package scheduler

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/jobrun/jobrun/api"
	"github.com/jobrun/jobrun/artifacts"
	"github.com/jobrun/jobrun/scheduler/web"
)

// webBackend is what the web UI reads and does, over the store and the
// artifact store.
type webBackend struct{ s *Server }

// mountUI serves the metrics at /metrics (to the read role) and the web UI
// at "/" (the API's own routes are more specific, so they keep
// precedence).
func (s *Server) mountUI() {
	s.metrics = newMetrics(s)
	s.mux.Handle("GET /metrics", s.need(api.RoleRead, s.metrics.handler(s.log).ServeHTTP))
	s.mux.Handle("/", web.Handler(webBackend{s}, web.Options{PublicRead: s.cfg.PublicRead,
		Secure: strings.HasPrefix(s.cfg.Triggers.PublicURL, "https://"), Log: s.log.Named("web"),
		Progress: s.cfg.Timeouts.Progress}))
}

// MetricsHandler serves the metrics to anyone, for a listener of its own
// (--metrics-listen) that only the monitoring system reaches.
func (s *Server) MetricsHandler() http.Handler {
	m := http.NewServeMux()
	m.Handle("GET /metrics", s.metrics.handler(s.log))
	return m
}

// webError keeps err's text and tells the UI which kind it is.
type webError struct{ err, kind error }

func (e webError) Error() string   { return e.err.Error() }
func (e webError) Unwrap() []error { return []error{e.err, e.kind} }

func toWeb(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, errSwept):
		return webError{err, web.ErrGone}
	case errors.Is(err, errNotFound), errors.Is(err, artifacts.ErrNotFound), errors.Is(err, artifacts.ErrInvalidPath):
		return webError{err, web.ErrNotFound}
	case errors.Is(err, errConflict):
		return webError{err, web.ErrConflict}
	}
	return err
}

func (b webBackend) Runs(ctx context.Context, repo, branch string, limit int) ([]api.Run, error) {
	rs, err := b.s.st.Runs(ctx, repo, branch, limit)
	return rs, toWeb(err)
}

func (b webBackend) Run(ctx context.Context, id int64) (*api.Run, error) {
	r, err := b.s.st.Run(ctx, id)
	return r, toWeb(err)
}

func (b webBackend) Job(ctx context.Context, id int64) (*api.Job, error) {
	j, err := b.s.st.Job(ctx, id)
	return j, toWeb(err)
}

func (b webBackend) Agents(ctx context.Context) ([]api.Agent, error) {
	as, err := b.s.st.Agents(ctx, b.s.cfg.LeaseTimeout, time.Now())
	return as, toWeb(err)
}

func (b webBackend) Log(ctx context.Context, a api.Attempt, from, max int64) ([]byte, error) {
	data, err := b.s.st.Log(ctx, a, from, max)
	return data, toWeb(err)
}

func (b webBackend) LogSize(ctx context.Context, a api.Attempt) (int64, error) {
	n, err := b.s.st.LogSize(ctx, a)
	return n, toWeb(err)
}

func (b webBackend) Artifacts(ctx context.Context, a api.Attempt) ([]web.Artifact, error) {
	ref, err := b.s.ref(ctx, a)
	if err != nil {
		return nil, toWeb(err)
	}
	m, err := b.s.cfg.Artifacts.Manifest(ctx, ref)
	if err != nil {
		return nil, toWeb(err)
	}
	out := make([]web.Artifact, 0, len(m.Files))
	for _, f := range m.Files {
		out = append(out, web.Artifact{Path: f.Path, Size: f.Size})
	}
	return out, nil
}

func (b webBackend) OpenArtifact(ctx context.Context, a api.Attempt, path string) (io.ReadCloser, error) {
	ref, err := b.s.ref(ctx, a)
	if err != nil {
		return nil, toWeb(err)
	}
	rc, err := b.s.cfg.Artifacts.Open(ctx, ref, path)
	return rc, toWeb(err)
}

func (b webBackend) Cancel(ctx context.Context, job int64) error {
	return toWeb(b.s.st.Cancel(ctx, job, "cancelled by a user (web UI)", time.Now()))
}

func (b webBackend) Retry(ctx context.Context, job int64) error {
	if err := b.s.st.Retry(ctx, job, b.s.cfg.MaxAttempts, time.Now()); err != nil {
		return toWeb(err)
	}
	b.s.queue.wake(1)
	return nil
}
