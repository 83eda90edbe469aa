package scheduler

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"

	"github.com/jobrun/jobrun/api"
	"github.com/jobrun/jobrun/git"
)

// maxUploadPackRequest caps the body of a git-upload-pack request: one
// want and the client's haves (41 bytes each).
const maxUploadPackRequest = 1 << 20

// leaseGitRoutes serves a leased commit from the server's mirror over
// git's smart HTTP to the agent holding the lease: untrusted runs'
// agents fetch there instead of receiving forge credentials.
func (s *Server) leaseGitRoutes() {
	s.mux.HandleFunc("GET /api/v1/jobs/{id}/attempts/{n}/git/info/refs", s.attempt(s.gitRefs))
	s.mux.HandleFunc("POST /api/v1/jobs/{id}/attempts/{n}/git/git-upload-pack", s.attempt(s.gitUploadPack))
}

// mirrorPath is the server route an untrusted lease's agent fetches its
// commit from.
func mirrorPath(at api.Attempt) string {
	return fmt.Sprintf("/api/v1/jobs/%d/attempts/%d/git", at.Job, at.Attempt)
}

// leasedCommit returns the server's mirror of the attempt's repository
// and the attempt's commit, for the agent holding its lease.
func (s *Server) leasedCommit(ctx context.Context, a *agentRec, at api.Attempt) (mirror, commit string, err error) {
	if err := s.st.CheckLease(ctx, a.ID, at); err != nil {
		return "", "", err
	}
	j, err := s.st.Job(ctx, at.Job)
	if err != nil {
		return "", "", err
	}
	run, err := s.st.Run(ctx, j.Run)
	if err != nil {
		return "", "", err
	}
	if run.Commit == "" || s.cfg.Triggers.MirrorDir == "" {
		return "", "", fmt.Errorf("%w: job %d has no commit in the server's mirror", errNotFound, at.Job)
	}
	mirror = git.MirrorPath(s.cfg.Triggers.MirrorDir, run.Repo)
	if _, err := os.Stat(mirror); err != nil {
		return "", "", fmt.Errorf("%w: the server has no mirror of %s", errNotFound, run.Repo)
	}
	return mirror, run.Commit, nil
}

func (s *Server) gitRefs(w http.ResponseWriter, r *http.Request, a *agentRec, at api.Attempt) {
	if r.URL.Query().Get("service") != "git-upload-pack" {
		reply(w, http.StatusForbidden, api.Error{Error: "only git-upload-pack (fetch) is served"})
		return
	}
	mirror, commit, err := s.leasedCommit(r.Context(), a, at)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	var b bytes.Buffer
	if err := git.ServeRefs(&b, mirror, commit); err != nil {
		s.fail(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/x-git-upload-pack-advertisement")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(b.Bytes())
}

func (s *Server) gitUploadPack(w http.ResponseWriter, r *http.Request, a *agentRec, at api.Attempt) {
	mirror, commit, err := s.leasedCommit(r.Context(), a, at)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	var body bytes.Buffer
	if _, err := body.ReadFrom(http.MaxBytesReader(w, r.Body, maxUploadPackRequest)); err != nil {
		bad(w, "git-upload-pack request: %v", err)
		return
	}
	// The pack streams as it is made; UploadCommit checks the request
	// before it writes, so a refusal still gets its own status.
	w.Header().Set("Content-Type", "application/x-git-upload-pack-result")
	w.Header().Set("Cache-Control", "no-store")
	cw := &commitWriter{w: w}
	err = git.UploadCommit(r.Context(), cw, &body, mirror, commit)
	switch {
	case err == nil:
	case !cw.wrote && errors.Is(err, git.ErrBadFetch):
		w.Header().Set("Content-Type", "application/json")
		bad(w, "%v", err)
	case !cw.wrote:
		s.fail(w, r, err)
	default:
		s.log.Warn("git fetch of a leased commit broke off", "job", at.Job, "attempt", at.Attempt, "error", err)
	}
}

// commitWriter notes whether the reply has begun.
type commitWriter struct {
	w     http.ResponseWriter
	wrote bool
}

func (c *commitWriter) Write(p []byte) (int, error) {
	c.wrote = true
	return c.w.Write(p)
}
