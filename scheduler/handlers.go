package scheduler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/jobrun/jobrun/api"
	"github.com/jobrun/jobrun/artifacts"
	"github.com/jobrun/jobrun/internal/deadline"
	"github.com/jobrun/jobrun/internal/redact"
	"github.com/jobrun/jobrun/jobs"
)

// maxBody caps JSON request bodies; log chunks and artifacts have their own.
const (
	maxBody      = 4 << 20
	maxLogChunk  = 8 << 20
	maxLeaseWait = 60 * time.Second
	maxSlots     = 1024
	// recheck is how often a waiting lease request looks again without a
	// wake-up: for jobs queued by another server on a shared database, and
	// for affinity waits running out.
	recheck = 250 * time.Millisecond
)

func (s *Server) routes() {
	m := s.mux
	m.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") })
	m.HandleFunc("POST /api/v1/agents", s.register)
	m.HandleFunc("GET /api/v1/agents", s.need(api.RoleRead, s.agents))
	m.HandleFunc("DELETE /api/v1/agents/{id}", s.agent(s.deregister))
	m.HandleFunc("POST /api/v1/agents/{id}/lease", s.agent(s.lease))
	m.HandleFunc("POST /api/v1/agents/{id}/heartbeat", s.agent(s.heartbeat))

	m.HandleFunc("PUT /api/v1/jobs/{id}/attempts/{n}/log", s.attempt(s.appendLog))
	m.HandleFunc("POST /api/v1/jobs/{id}/attempts/{n}/steps", s.attempt(s.step))
	m.HandleFunc("POST /api/v1/jobs/{id}/attempts/{n}/finish", s.attempt(s.finish))
	m.HandleFunc("PUT /api/v1/jobs/{id}/attempts/{n}/artifacts/{path...}", s.attempt(s.putArtifact))
	m.HandleFunc("POST /api/v1/jobs/{id}/attempts/{n}/artifacts", s.attempt(s.commitArtifacts))
	m.HandleFunc("DELETE /api/v1/jobs/{id}/attempts/{n}/artifacts", s.attempt(s.abortArtifacts))
	m.HandleFunc("GET /api/v1/jobs/{id}/attempts/{n}/artifacts", s.manifest)
	m.HandleFunc("GET /api/v1/jobs/{id}/attempts/{n}/artifacts/{path...}", s.artifact)

	m.HandleFunc("POST /api/v1/runs", s.admin(s.createRun))
	m.HandleFunc("GET /api/v1/runs", s.need(api.RoleRead, s.runs))
	m.HandleFunc("GET /api/v1/runs/{id}", s.need(api.RoleRead, getByID(s, s.st.Run)))
	m.HandleFunc("GET /api/v1/jobs/{id}", s.need(api.RoleRead, getByID(s, s.st.Job)))
	m.HandleFunc("GET /api/v1/jobs/{id}/log", s.need(api.RoleRead, s.jobLog))
	m.HandleFunc("POST /api/v1/jobs/{id}/cancel", s.need(api.RoleOperate, s.act(s.cancel)))
	m.HandleFunc("POST /api/v1/jobs/{id}/retry", s.need(api.RoleOperate, s.act(s.retry)))
	m.HandleFunc("PUT /api/v1/secrets/{name}", s.admin(s.setSecret))
	m.HandleFunc("GET /api/v1/secrets", s.admin(s.listSecrets))
	m.HandleFunc("POST /api/v1/tokens", s.admin(s.addToken))
	m.HandleFunc("GET /api/v1/tokens", s.admin(s.listTokens))
	m.HandleFunc("DELETE /api/v1/tokens/{name}", s.admin(s.removeToken))
	s.leaseGitRoutes() // a leased commit from the server's mirror (leasegit.go)
	s.mountUI()        // the web UI at "/" and /metrics (webui.go)
	s.triggerRoutes()
}

func reply(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	err = redact.Error(err) // credentials in a URL are never shown
	code := httpStatus(err)
	if code == http.StatusInternalServerError {
		s.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "error", err)
	}
	reply(w, code, api.Error{Error: err.Error()})
}

func bad(w http.ResponseWriter, format string, args ...any) {
	reply(w, http.StatusBadRequest, api.Error{Error: fmt.Sprintf(format, args...)})
}

func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody)).Decode(v); err != nil {
		bad(w, "request body: %v", err)
		return false
	}
	return true
}

func pathInt(w http.ResponseWriter, r *http.Request, name string) (int64, bool) {
	v, err := strconv.ParseInt(r.PathValue(name), 10, 64)
	if err != nil || v < 1 {
		bad(w, "%s %q: want a positive number", name, r.PathValue(name))
		return 0, false
	}
	return v, true
}

// admin requires a token with the admin role (the server's admin token
// or a stored admin token).
func (s *Server) admin(h http.HandlerFunc) http.HandlerFunc { return s.need(api.RoleAdmin, h) }

type agentHandler func(w http.ResponseWriter, r *http.Request, a *agentRec)

// authAgent finds the agent the bearer token belongs to.
func (s *Server) authAgent(w http.ResponseWriter, r *http.Request) *agentRec {
	t := bearer(r)
	if t == "" {
		reply(w, http.StatusUnauthorized, api.Error{Error: "missing agent token"})
		return nil
	}
	a, err := s.st.AgentByToken(r.Context(), hashToken(t))
	if errors.Is(err, errNotFound) {
		reply(w, http.StatusUnauthorized, api.Error{Error: "unknown agent token"})
		return nil
	}
	if err != nil {
		s.fail(w, r, err)
		return nil
	}
	return a
}

// agent requires the token of the agent the path names.
func (s *Server) agent(h agentHandler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		a := s.authAgent(w, r)
		if a == nil {
			return
		}
		if a.ID != r.PathValue("id") {
			reply(w, http.StatusForbidden, api.Error{Error: "token of another agent"})
			return
		}
		h(w, r, a)
	}
}

type attemptHandler func(w http.ResponseWriter, r *http.Request, a *agentRec, at api.Attempt)

// attempt requires an agent token and parses the attempt in the path;
// whether the agent holds its lease the store checks with the change.
func (s *Server) attempt(h attemptHandler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		a := s.authAgent(w, r)
		if a == nil {
			return
		}
		job, ok := pathInt(w, r, "id")
		if !ok {
			return
		}
		n, ok := pathInt(w, r, "n")
		if !ok {
			return
		}
		h(w, r, a, api.Attempt{Job: job, Attempt: int(n)})
	}
}

func (s *Server) register(w http.ResponseWriter, r *http.Request) {
	scope, err := s.registrationScope(r.Context(), bearer(r))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if scope == nil {
		reply(w, http.StatusUnauthorized, api.Error{Error: "wrong or missing registration token"})
		return
	}
	var req api.RegisterRequest
	if !decode(w, r, &req) {
		return
	}
	if req.Name == "" || req.Slots < 1 || req.Slots > maxSlots {
		bad(w, "an agent needs a name and 1 to %d slots", maxSlots)
		return
	}
	if err := scope.admits(req.Labels); err != nil {
		s.log.Warn("agent refused", "agent", req.Name, "error", err)
		reply(w, http.StatusForbidden, api.Error{Error: "agent " + req.Name + ": " + err.Error()})
		return
	}
	token := NewToken()
	a := agentRec{ID: NewToken()[:16], Name: req.Name, Labels: req.Labels, Slots: req.Slots, Version: req.Version,
		RegToken: scope.name, Repos: scope.repos}
	if err := s.st.RegisterAgent(r.Context(), a, hashToken(token), time.Now()); err != nil {
		s.fail(w, r, err)
		return
	}
	s.log.Info("agent registered", "agent", a.Name, "id", a.ID, "labels", a.Labels, "slots", a.Slots)
	reply(w, http.StatusCreated, api.Registration{ID: a.ID, Token: token,
		LeaseTimeout: api.Duration(s.cfg.LeaseTimeout), Heartbeat: api.Duration(s.cfg.LeaseTimeout / 4)})
}

func (s *Server) deregister(w http.ResponseWriter, r *http.Request, a *agentRec) {
	if err := s.st.Deregister(r.Context(), a.ID, time.Now()); err != nil {
		s.fail(w, r, err)
		return
	}
	s.log.Info("agent left", "agent", a.Name, "id", a.ID)
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) lease(w http.ResponseWriter, r *http.Request, a *agentRec) {
	wait, err := time.ParseDuration(r.URL.Query().Get("wait"))
	if err != nil {
		wait = 0
	}
	ctx := r.Context()
	wait = max(0, min(wait, maxLeaseWait))
	deadline.Wait(w, wait, s.cfg.Timeouts.Write)
	timer := time.NewTimer(wait)
	defer timer.Stop()
	p := LeaseParams{Timeout: s.cfg.LeaseTimeout, AffinityWait: s.cfg.AffinityWait}
	hops := -1 // not woken yet
	for {
		woken, cancel := s.queue.wait()
		l, err := s.st.Lease(ctx, a, p, time.Now())
		if err != nil {
			cancel()
			s.fail(w, r, err)
			return
		}
		if l != nil {
			cancel()
			s.sendLease(w, r, a, l)
			return
		}
		if hops >= 0 {
			s.queue.pass(1, hops+1) // the job was not for us
		}
		hops = -1
		select {
		case hops = <-woken:
		case <-time.After(recheck):
		case <-timer.C:
			cancel()
			w.WriteHeader(http.StatusNoContent)
			return
		case <-ctx.Done():
			cancel()
			return
		}
		cancel()
	}
}

func (s *Server) sendLease(w http.ResponseWriter, r *http.Request, a *agentRec, l *leaseRec) {
	secrets, mask, err := s.leaseSecrets(r.Context(), l)
	if err != nil {
		// The lease stands; it expires and is retried, and the error is
		// in the server log, not in the job's.
		s.fail(w, r, err)
		return
	}
	l.Secrets, l.Mask = secrets, mask
	if err := s.fillCheckout(r.Context(), l); err != nil {
		s.fail(w, r, err) // as for secrets: the lease expires and is retried
		return
	}
	l.Expires = api.Duration(s.cfg.LeaseTimeout)
	s.metrics.leased(r.Context(), s.st, l.Attempt)
	s.log.Debug("leased", "job", l.Attempt.Job, "attempt", l.Attempt.Attempt, "agent", a.Name)
	reply(w, http.StatusOK, l.Lease)
}

func (s *Server) heartbeat(w http.ResponseWriter, r *http.Request, a *agentRec) {
	var hb api.Heartbeat
	if !decode(w, r, &hb) {
		return
	}
	if len(hb.Running) > maxSteps {
		bad(w, "heartbeat names %d attempts", len(hb.Running))
		return
	}
	kill, err := s.st.Heartbeat(r.Context(), a.ID, hb.Running, s.cfg.LeaseTimeout, time.Now())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	reply(w, http.StatusOK, api.HeartbeatReply{Kill: kill})
}

func (s *Server) appendLog(w http.ResponseWriter, r *http.Request, a *agentRec, at api.Attempt) {
	off, err := strconv.ParseInt(r.URL.Query().Get("offset"), 10, 64)
	if err != nil || off < 0 {
		bad(w, "offset %q: want a byte offset", r.URL.Query().Get("offset"))
		return
	}
	body := deadline.Body(w, r, s.cfg.Timeouts.Progress, progressBytes)
	data, err := io.ReadAll(io.LimitReader(body, maxLogChunk+1))
	if err == nil && len(data) > maxLogChunk {
		err = fmt.Errorf("%w: a log chunk may be %d bytes at most", errQuota, maxLogChunk)
	}
	if errors.Is(err, errQuota) {
		s.fail(w, r, err)
		return
	}
	if err != nil {
		bad(w, "log chunk: %v", err)
		return
	}
	size, err := s.st.AppendLog(r.Context(), a.ID, at, off, data, s.cfg.Limits.logQuota())
	switch {
	case errors.Is(err, errConflict):
		reply(w, http.StatusConflict, api.LogAck{Size: size})
	case err != nil:
		s.fail(w, r, err)
	default:
		reply(w, http.StatusOK, api.LogAck{Size: size})
	}
}

func (s *Server) step(w http.ResponseWriter, r *http.Request, a *agentRec, at api.Attempt) {
	var st api.Step
	if !decode(w, r, &st) {
		return
	}
	if err := checkStep(st); err != nil {
		bad(w, "step of %s: %v", at, err)
		return
	}
	if err := s.st.Step(r.Context(), a.ID, at, st); err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) finish(w http.ResponseWriter, r *http.Request, a *agentRec, at api.Attempt) {
	var res api.Result
	if !decode(w, r, &res) {
		return
	}
	// Checked before anything is stored: the numbers go on to metrics,
	// which take no negative count.
	if err := checkResult(res, s.cfg.Limits); err != nil {
		bad(w, "finish report of %s: %v", at, err)
		return
	}
	queued, err := s.st.Finish(r.Context(), a.ID, at, res, time.Now())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.log.Info("job finished", "job", at.Job, "attempt", at.Attempt, "agent", a.Name, "status", res.Status)
	s.metrics.finished(res)
	s.queue.wake(queued) // the jobs that needed it
	w.WriteHeader(http.StatusNoContent)
}

// ref is where an attempt's artifacts live in the store.
func (s *Server) ref(ctx context.Context, at api.Attempt) (artifacts.Ref, error) {
	in, err := s.st.AttemptInfo(ctx, at)
	if err != nil {
		return artifacts.Ref{}, err
	}
	return artifacts.Ref{Repo: in.Repo, Run: in.Run, Job: in.Key, Attempt: in.Attempt}, nil
}

// leasedRef is ref for an agent that must hold the attempt's lease.
func (s *Server) leasedRef(ctx context.Context, a *agentRec, at api.Attempt) (artifacts.Ref, error) {
	if err := s.st.CheckLease(ctx, a.ID, at); err != nil {
		return artifacts.Ref{}, err
	}
	return s.ref(ctx, at)
}

func (s *Server) putArtifact(w http.ResponseWriter, r *http.Request, a *agentRec, at api.Attempt) {
	ctx := r.Context()
	p := r.PathValue("path")
	if err := checkArtifactPath(p); err != nil {
		bad(w, "upload to %s: %v", at, err)
		return
	}
	ref, err := s.leasedRef(ctx, a, at)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if r.ContentLength < 0 {
		reply(w, http.StatusLengthRequired, api.Error{Error: "an artifact upload needs a Content-Length"})
		return
	}
	if r.ContentLength > s.cfg.Limits.ArtifactFile {
		s.fail(w, r, fmt.Errorf("%w: %s", errQuota, quotaText(fmt.Sprintf("artifact %s of %s is %d bytes", p, at, r.ContentLength), s.cfg.Limits.ArtifactFile)))
		return
	}
	// Counted before the bytes are read, so an upload past the attempt's
	// quota costs nothing.
	if err := s.st.ReserveArtifact(ctx, a.ID, at, p, r.ContentLength, s.cfg.Limits); err != nil {
		s.fail(w, r, err)
		return
	}
	if err := s.cfg.Artifacts.Begin(ctx, ref); err != nil && !errors.Is(err, artifacts.ErrAttemptExists) {
		s.fail(w, r, err)
		return
	}
	if _, err := s.cfg.Artifacts.Manifest(ctx, ref); err == nil {
		s.fail(w, r, fmt.Errorf("%w: the artifacts of %s are committed", errConflict, at))
		return
	}
	// The store reads at offsets (parallel parts to S3), so the body is
	// spooled to a temp file first.
	f, err := os.CreateTemp(s.cfg.TempDir, "upload-")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	defer os.Remove(f.Name())
	defer f.Close()
	n, err := io.Copy(f, io.LimitReader(deadline.Body(w, r, s.cfg.Timeouts.Progress, progressBytes), r.ContentLength))
	if err == nil && n != r.ContentLength {
		err = fmt.Errorf("got %d of %d bytes", n, r.ContentLength)
	}
	if err != nil {
		bad(w, "upload %s: %v", r.PathValue("path"), err)
		return
	}
	if err := s.cfg.Artifacts.Put(ctx, ref, r.PathValue("path"), f, n); err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) commitArtifacts(w http.ResponseWriter, r *http.Request, a *agentRec, at api.Attempt) {
	ctx := r.Context()
	var m artifacts.Manifest
	if !decode(w, r, &m) {
		return
	}
	ref, err := s.leasedRef(ctx, a, at)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	m.Repo, m.Run, m.Job, m.Attempt = ref.Repo, ref.Run, ref.Job, ref.Attempt
	up, err := s.st.UploadedArtifacts(ctx, at)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if err := checkManifest(&m, up, s.cfg.Limits); err != nil {
		if errors.Is(err, errQuota) {
			s.fail(w, r, err)
		} else {
			bad(w, "manifest of %s: %v", at, err)
		}
		return
	}
	if err := s.cfg.Artifacts.Commit(ctx, &m); err != nil {
		s.fail(w, r, err)
		return
	}
	s.metrics.committed(&m)
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) abortArtifacts(w http.ResponseWriter, r *http.Request, a *agentRec, at api.Attempt) {
	ctx := r.Context()
	ref, err := s.leasedRef(ctx, a, at)
	if err == nil {
		err = s.cfg.Artifacts.Abort(ctx, ref)
	}
	if err == nil {
		err = s.st.ForgetArtifacts(ctx, at)
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// readAttempt finds the attempt an artifact read names, for a caller with
// the read role or an agent whose registration token admits the
// attempt's repository (the artifacts its jobs need).
func (s *Server) readAttempt(w http.ResponseWriter, r *http.Request) (artifacts.Ref, bool) {
	role, given, err := s.userRole(r)
	if err != nil {
		s.fail(w, r, err)
		return artifacts.Ref{}, false
	}
	reader := role.Allows(api.RoleRead)
	if !reader && !given {
		denied(w, api.RoleRead, role, given)
		return artifacts.Ref{}, false
	}
	job, ok := pathInt(w, r, "id")
	if !ok {
		return artifacts.Ref{}, false
	}
	n, ok := pathInt(w, r, "n")
	if !ok {
		return artifacts.Ref{}, false
	}
	if !reader {
		// Agents may read what their token admits; the repository is
		// looked up first, so an unknown job answers as a forbidden one.
		in, err := s.st.AttemptInfo(r.Context(), api.Attempt{Job: job, Attempt: int(n)})
		if err != nil && !errors.Is(err, errNotFound) {
			s.fail(w, r, err)
			return artifacts.Ref{}, false
		}
		ok, err := false, error(nil)
		if in != nil {
			ok, err = s.agentMayRead(r, in.Repo)
		}
		if err != nil {
			s.fail(w, r, err)
			return artifacts.Ref{}, false
		}
		if !ok {
			denied(w, api.RoleRead, role, given)
			return artifacts.Ref{}, false
		}
	}
	ref, err := s.ref(r.Context(), api.Attempt{Job: job, Attempt: int(n)})
	if err != nil {
		s.fail(w, r, err)
		return ref, false
	}
	return ref, true
}

func (s *Server) manifest(w http.ResponseWriter, r *http.Request) {
	ref, ok := s.readAttempt(w, r)
	if !ok {
		return
	}
	m, err := s.cfg.Artifacts.Manifest(r.Context(), ref)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	reply(w, http.StatusOK, m)
}

func (s *Server) artifact(w http.ResponseWriter, r *http.Request) {
	ref, ok := s.readAttempt(w, r)
	if !ok {
		return
	}
	if p, ok := s.cfg.Artifacts.(presigner); ok {
		// An S3 store serves the bytes itself, through a URL that needs no
		// credentials and expires.
		u, err := p.Presign(r.Context(), ref, r.PathValue("path"), presignFor)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		http.Redirect(w, r, u.String(), http.StatusTemporaryRedirect)
		return
	}
	rc, err := s.cfg.Artifacts.Open(r.Context(), ref, r.PathValue("path"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	defer rc.Close()
	p := r.PathValue("path")
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", "attachment; filename*=UTF-8''"+url.PathEscape(p[strings.LastIndexByte(p, '/')+1:]))
	io.Copy(deadline.NewWriter(w, s.cfg.Timeouts.Progress), rc)
}

// presigner is a store that can hand out download URLs: artifacts.S3.
type presigner interface {
	Presign(ctx context.Context, ref artifacts.Ref, path string, expiry time.Duration) (*url.URL, error)
}

// presignFor is how long a download URL lives.
const presignFor = 15 * time.Minute

func (s *Server) createRun(w http.ResponseWriter, r *http.Request) {
	var nr api.NewRun
	if !decode(w, r, &nr) {
		return
	}
	if nr.Repo == "" || nr.Branch == "" || nr.Source == "" {
		bad(w, "a run needs repo, branch and source (the job file's text)")
		return
	}
	if nr.File == "" {
		nr.File = ".ci.hcl"
	}
	if nr.Trigger == "" {
		nr.Trigger = "api"
	}
	id, err := s.createRunOf(r.Context(), nr)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	run, err := s.st.Run(r.Context(), id)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	reply(w, http.StatusCreated, run)
}

// createRunOf plans and queues a run; a job file with errors makes a run
// that failed with the diagnostics as its reason.
func (s *Server) createRunOf(ctx context.Context, nr api.NewRun) (int64, error) {
	p, diags := plan(nr)
	opts := RunOptions{MaxAttempts: s.cfg.MaxAttempts, SupersedeRunning: s.cfg.SupersedeRunning, Reason: diags}
	id, err := s.st.CreateRun(ctx, nr, p, opts, time.Now())
	if err != nil {
		return 0, err
	}
	s.log.Info("run queued", "run", id, "repo", nr.Repo, "branch", nr.Branch, "jobs", len(p))
	ready := 0
	for _, j := range p {
		if len(j.Needs) == 0 {
			ready++
		}
	}
	s.queue.wake(ready)
	return id, nil
}

func (s *Server) runs(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit, err := strconv.Atoi(q.Get("limit"))
	if err != nil || limit < 1 || limit > 500 {
		limit = 50
	}
	runs, err := s.st.Runs(r.Context(), q.Get("repo"), q.Get("branch"), limit)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	reply(w, http.StatusOK, runs)
}

// getByID serves GET .../{id} with what read returns for the id.
func getByID[T any](s *Server, read func(context.Context, int64) (T, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, ok := pathInt(w, r, "id")
		if !ok {
			return
		}
		v, err := read(r.Context(), id)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		reply(w, http.StatusOK, v)
	}
}

func (s *Server) agents(w http.ResponseWriter, r *http.Request) {
	as, err := s.st.Agents(r.Context(), s.cfg.LeaseTimeout, time.Now())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	reply(w, http.StatusOK, as)
}

// act serves POST .../{id}/VERB by doing it to the job.
func (s *Server) act(do func(ctx context.Context, id int64) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, ok := pathInt(w, r, "id")
		if !ok {
			return
		}
		if err := do(r.Context(), id); err != nil {
			s.fail(w, r, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}
}

func (s *Server) cancel(ctx context.Context, id int64) error {
	return s.st.Cancel(ctx, id, "cancelled by a user", time.Now())
}

func (s *Server) retry(ctx context.Context, id int64) error {
	if err := s.st.Retry(ctx, id, s.cfg.MaxAttempts, time.Now()); err != nil {
		return err
	}
	s.queue.wake(1)
	return nil
}

func (s *Server) setSecret(w http.ResponseWriter, r *http.Request) {
	var req api.SetSecret
	if !decode(w, r, &req) {
		return
	}
	repo, name := r.URL.Query().Get("repo"), r.PathValue("name")
	if repo == "" || name == "" {
		bad(w, "a secret needs ?repo= and a name")
		return
	}
	if s.cfg.Secrets == nil {
		reply(w, http.StatusNotImplemented, api.Error{Error: "the server has no secret key file"})
		return
	}
	for _, p := range req.Branches {
		if _, err := jobs.NewGlob(p); err != nil {
			bad(w, "branch pattern %q: %v", p, err)
			return
		}
	}
	rec := secretRec{Name: name, Branches: req.Branches, Sealed: s.cfg.Secrets.Seal(repo, name, req.Value)}
	if err := s.st.SetSecret(r.Context(), repo, rec); err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) listSecrets(w http.ResponseWriter, r *http.Request) {
	repo := r.URL.Query().Get("repo")
	recs, err := s.st.Secrets(r.Context(), repo)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := []api.Secret{}
	for _, rec := range recs {
		out = append(out, api.Secret{Repo: repo, Name: rec.Name, Branches: rec.Branches})
	}
	reply(w, http.StatusOK, out)
}
