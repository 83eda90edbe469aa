package scheduler

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/jobrun/jobrun/api"
	"github.com/jobrun/jobrun/git"
	"github.com/jobrun/jobrun/internal/redact"
	"github.com/jobrun/jobrun/jobs"
	"github.com/jobrun/jobrun/scheduler/cron"
	"github.com/jobrun/jobrun/scheduler/webhook"
)

// TriggerConfig configures what starts runs of registered repositories
// besides the runs API: webhooks, cron and manual triggers, and the commit
// statuses sent back to the forge.
type TriggerConfig struct {
	// MirrorDir holds the server's bare mirror of each repository, from
	// which it reads the job file at a pushed commit (STATE/mirrors).
	// Empty turns webhooks, cron and manual triggers off.
	MirrorDir string
	// PublicURL is the server's address as users reach it, for the
	// links in commit statuses.
	PublicURL string
	// MaxHookBody caps a webhook delivery (default 1 MiB).
	MaxHookBody int64
	// CronWindow is how far back a tick missed while no server ran
	// still fires (default 1h); CronEvery how often schedules are
	// looked at (default 15s). Clock is the time they are read from
	// (default the real one).
	CronWindow time.Duration
	CronEvery  time.Duration
	Clock      cron.Clock
	// StatusEvery is how often run states are compared with the commit
	// statuses sent (default 1s); HTTP sends them (default a client
	// with a 10 s timeout).
	StatusEvery time.Duration
	HTTP        *http.Client
}

// jobFile is the job file a repository's runs read.
const jobFile = ".ci.hcl"

// triggerRoutes adds the routes of repositories, webhooks and manual
// triggers.
func (s *Server) triggerRoutes() {
	t := &s.cfg.Triggers
	if t.MaxHookBody == 0 {
		t.MaxHookBody = 1 << 20
	}
	if t.CronWindow == 0 {
		t.CronWindow = time.Hour
	}
	if t.CronEvery == 0 {
		t.CronEvery = 15 * time.Second
	}
	if t.Clock == nil {
		t.Clock = cron.RealClock{}
	}
	if t.StatusEvery == 0 {
		t.StatusEvery = time.Second
	}
	if t.HTTP == nil {
		t.HTTP = &http.Client{Timeout: 10 * time.Second}
	}
	s.mux.HandleFunc("POST /hooks/{forge}/{repo...}", s.hook)
	s.mux.HandleFunc("POST /api/v1/repos", s.admin(s.addRepo))
	s.mux.HandleFunc("GET /api/v1/repos", s.admin(s.listRepos))
	s.mux.HandleFunc("POST /api/v1/repos/{name}/trigger", s.need(api.RoleOperate, s.trigger))
}

// runTriggers runs the cron loop and the commit status loop until ctx
// ends.
func (s *Server) runTriggers(ctx context.Context) {
	if _, ok := s.st.(RepoStore); !ok || s.cfg.Triggers.MirrorDir == "" {
		return
	}
	go s.cronLoop(ctx)
	s.statusLoop(ctx)
}

// hookWork bounds what one delivery may take: the fetch, mostly.
const hookWork = 10 * time.Minute

// hookReply answers a forge: it shows the message in its delivery log.
type hookReply struct {
	Message string `json:"message"`
	Run     int64  `json:"run,omitempty"`
}

func (s *Server) hook(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	rs := s.repoStore(w)
	if rs == nil {
		return
	}
	if s.cfg.Triggers.MirrorDir == "" {
		reply(w, http.StatusNotImplemented, api.Error{Error: "this server keeps no repository mirrors"})
		return
	}
	forge, name := r.PathValue("forge"), r.PathValue("repo")
	if !knownForge(forge) {
		// Anyone may post here: the forge segment is theirs, so it
		// names no metric series and writes no line above debug.
		s.metrics.WebhookDelivery(otherForge, "unknown_forge")
		s.log.Debug("webhook refused: unknown forge", "forge", forge, "repo", name)
		reply(w, http.StatusNotFound, api.Error{Error: fmt.Sprintf("unknown forge %q: want github, gitlab or gitea", forge)})
		return
	}
	rec, err := rs.Repo(ctx, name)
	var secret, unknown string
	switch {
	case errors.Is(err, errNotFound):
		// An unknown repository is answered as a known one with a wrong
		// signature is, so the answer does not tell which exist.
		unknown, secret = err.Error(), unguessable()
	case err != nil:
		s.fail(w, r, err)
		return
	default:
		if secret, err = s.openRepo(rec, "webhook-secret"); err != nil {
			s.fail(w, r, err)
			return
		}
		if secret == "" {
			// Nor does the answer tell a repository without a secret
			// (which takes no webhooks) from one that does not exist.
			unknown = "the repository has no webhook secret: set one with jobrun repo add --secret"
			secret = unguessable()
		}
	}
	ev, body, err := webhook.Read(r, forge, []byte(secret), s.cfg.Triggers.MaxHookBody)
	if err == nil && unknown != "" {
		// Not reached short of guessing 256 random bits.
		err = &webhook.Error{Code: http.StatusUnauthorized, Msg: "signature check failed"}
	}
	var we *webhook.Error
	if errors.As(err, &we) {
		s.metrics.WebhookDelivery(forge, refusal(we.Code))
		why := we.Msg
		if unknown != "" {
			why = unknown
		}
		s.hookWarn.warn(s.log, "webhook refused", "repo", name, "forge", forge, "code", we.Code, "why", why)
		reply(w, we.Code, api.Error{Error: we.Msg})
		return
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	sum := sha256.Sum256(body)
	// Keys are per repository: one push may be delivered to several
	// registered repositories (a fork's, say) legitimately.
	keys := []string{name + " body:" + hex.EncodeToString(sum[:])}
	if ev.Delivery != "" {
		keys = append(keys, name+" "+forge+":"+ev.Delivery)
	}
	fresh, err := rs.Deliver(ctx, name, keys, time.Now())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	log := s.log.With("repo", name, "forge", forge, "event", ev.Name, "delivery", ev.Delivery)
	switch {
	case !fresh:
		s.metrics.WebhookDelivery(forge, "duplicate")
		log.Warn("webhook delivery seen before: ignored")
		reply(w, http.StatusOK, hookReply{Message: "delivery already received: nothing queued"})
		return
	case ev.Kind == "":
		s.metrics.WebhookDelivery(forge, "ignored")
		log.Info("webhook ignored", "why", ev.Ignored)
		reply(w, http.StatusAccepted, hookReply{Message: ev.Ignored + ": nothing queued"})
		return
	case ev.Deleted:
		s.metrics.WebhookDelivery(forge, "ignored")
		log.Info("ref deleted", "ref", ev.Ref)
		reply(w, http.StatusOK, hookReply{Message: fmt.Sprintf("%s %s deleted: nothing to run", ev.Kind, ev.Ref)})
		return
	}
	c := commitEvent{Kind: jobs.TriggerKind(ev.Kind), Ref: ev.Ref, Commit: ev.Commit, Branch: ev.Ref, Trigger: ev.Kind,
		FetchRef: "refs/heads/" + ev.Ref}
	switch ev.Kind {
	case webhook.Tag:
		c.Branch, c.FetchRef = "tags/"+ev.Ref, "refs/tags/"+ev.Ref
	case webhook.PullRequest:
		// A pull request's runs supersede its own earlier runs, not the
		// target branch's, and see only secrets meant for "pull/*".
		c.Branch = fmt.Sprintf("pull/%d", ev.PR.Number)
		c.FetchRef = ev.PR.FetchRef
		c.Untrusted = ev.PR.Fork()
	}
	// The forge gives up on a slow reply (GitHub after 10 s) and would
	// redeliver; a fetch that outlives the request still queues the run
	// rather than leave the delivery half done.
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), hookWork)
	defer cancel()
	id, msg, err := s.runCommit(wctx, rec, c)
	if err != nil {
		// Forget the delivery, so the forge's redelivery is acted on.
		if uerr := rs.Undeliver(context.WithoutCancel(ctx), keys); uerr != nil {
			log.Error("forget delivery", "error", uerr)
		}
		err = redact.Error(err) // the forge's delivery log is no place for a clone URL's token
		// A ref or commit the repository does not have is the
		// delivery's to answer for; anything else is the fetch's.
		code := httpStatus(err)
		if code == http.StatusInternalServerError {
			code = http.StatusBadGateway
			s.metrics.WebhookDelivery(forge, "error")
			log.Error("webhook not acted on", "error", err)
		} else {
			s.metrics.WebhookDelivery(forge, "not_found")
			log.Warn("webhook not acted on", "error", err)
		}
		reply(w, code, api.Error{Error: err.Error()})
		return
	}
	log.Info("webhook", "ref", ev.Ref, "commit", ev.Commit, "run", id, "message", msg)
	code, result := http.StatusAccepted, "ignored"
	if id != 0 {
		code, result = http.StatusCreated, "queued"
	}
	s.metrics.WebhookDelivery(forge, result)
	reply(w, code, hookReply{Message: msg, Run: id})
}

// refusal names a refused delivery's result for the metrics.
func refusal(code int) string {
	switch code {
	case http.StatusUnauthorized:
		return "bad_signature"
	case http.StatusRequestEntityTooLarge:
		return "too_large"
	case http.StatusNotFound:
		return "unknown_forge"
	}
	return "bad_request"
}

// commitEvent is something that may start a run of a commit.
type commitEvent struct {
	// Kind and Ref are matched against the job file's on blocks.
	Kind jobs.TriggerKind
	Ref  string
	// Commit is the commit to run; empty means the head of Branch.
	Commit string
	// Branch names the run (supersede, affinity, secrets' branches).
	Branch string
	// FetchRef is the ref that moved: only it is fetched (every branch
	// and tag when empty).
	FetchRef  string
	Trigger   string
	Untrusted bool
	Jobs      []string
	Env       map[string]string
	// Scheduled marks a cron tick: the schedule that fired (in the
	// default branch's job file) decided, so the on blocks of the job
	// file at Commit are not asked again.
	Scheduled bool
}

// runCommit brings the repository's mirror up to date, reads the job file
// at the commit and, if its on blocks match, queues a run. It returns the
// run's id (0 if none) and what it did in words.
func (s *Server) runCommit(ctx context.Context, rec *repoRec, c commitEvent) (int64, string, error) {
	if c.FetchRef == "" && c.Commit == "" {
		c.FetchRef = "refs/heads/" + c.Branch
	}
	mirror, err := s.mirror(ctx, rec, c.FetchRef)
	if errors.Is(err, git.ErrNoRef) {
		return 0, "", fmt.Errorf("%w: %v", errNotFound, err)
	}
	if err != nil {
		return 0, "", err
	}
	if c.Commit == "" {
		if c.Commit, err = git.Resolve(ctx, mirror, "refs/heads/"+c.Branch); err != nil {
			return 0, "", fmt.Errorf("branch %s of %s: %w", c.Branch, rec.Name, errNotFound)
		}
	} else if !git.HasCommit(mirror, c.Commit) {
		return 0, "", fmt.Errorf("commit %.40q of %s, after fetching %s: %w", c.Commit, rec.Name, c.FetchRef, errNotFound)
	}
	src, err := git.ReadFile(ctx, mirror, c.Commit, jobFile)
	if errors.Is(err, git.ErrNoFile) {
		src, err = nil, nil
	}
	if err != nil {
		return 0, "", err
	}
	rs := s.st.(RepoStore)
	if c.Kind == jobs.OnPush && c.Ref == rec.DefaultBranch {
		// Cron schedules follow the default branch's job file.
		if err := rs.SetCronSource(ctx, rec.Name, c.Commit, string(src), time.Now()); err != nil {
			return 0, "", fmt.Errorf("keep the cron schedules of %s: %w", rec.Name, err)
		}
	}
	if src == nil {
		return 0, fmt.Sprintf("no %s at %s: nothing to run", jobFile, c.Commit[:12]), nil
	}
	f, diags := jobs.Parse(jobFile, src)
	// A job file with errors still makes a run: a failed one that shows
	// the diagnostics, not a silent nothing.
	if !diags.HasErrors() && !c.Scheduled && !fires(f.Workflow, c.Kind, c.Ref) {
		return 0, fmt.Sprintf("no on %q block of %s matches %s: nothing to run", c.Kind, jobFile, c.Ref), nil
	}
	env := map[string]string{jobs.VarTrigger: c.Trigger, jobs.VarRef: c.Ref}
	for k, v := range c.Env {
		env[k] = v
	}
	id, err := s.createRunOf(ctx, api.NewRun{
		Repo: rec.Name, Branch: c.Branch, Commit: c.Commit, CloneURL: rec.CloneURL, File: jobFile, Source: string(src),
		Jobs: c.Jobs, Trigger: c.Trigger, Env: env, Untrusted: c.Untrusted, FetchRef: c.FetchRef,
	})
	if err != nil {
		return 0, "", err
	}
	if !diags.HasErrors() && rec.Forge != "" && rec.HasToken {
		// Pending at once, not at the loop's next pass: a run that ends
		// within a pass would otherwise show only its result. (A run
		// failed at birth is the loop's to report.)
		go s.sendPending(context.WithoutCancel(ctx), rec, id, c.Commit)
	}
	return id, fmt.Sprintf("run %d queued for %s at %s", id, c.Ref, c.Commit[:12]), nil
}

// fires reports whether a workflow runs for an event. A job file without
// on blocks runs for pushes and pull requests to any branch; a manual
// trigger always runs, since someone asked for it.
func fires(w jobs.Workflow, kind jobs.TriggerKind, ref string) bool {
	switch {
	case kind == jobs.OnManual:
		return true
	case len(w.Triggers) == 0:
		return kind == jobs.OnPush || kind == jobs.OnPullRequest
	}
	return w.Triggered(kind, ref)
}

// mirror fetches what is new into the server's mirror of a repository:
// ref alone, or every branch and tag when ref is empty.
func (s *Server) mirror(ctx context.Context, rec *repoRec, ref string) (string, error) {
	o := git.MirrorOptions{}
	var err error
	if o.Auth.Token, err = s.openRepo(rec, "token"); err != nil {
		return "", err
	}
	key, err := s.openRepo(rec, "ssh-key")
	if err != nil {
		return "", err
	}
	o.Auth.SSHKey = []byte(key)
	if ref != "" {
		o.Refs, o.OnlyRefs = []string{ref}, true
	}
	dir := git.MirrorPath(s.cfg.Triggers.MirrorDir, rec.Name)
	if err := git.Mirror(ctx, dir, rec.CloneURL, o); err != nil {
		return "", err
	}
	return dir, nil
}

// trigger starts a manual run of a branch's head.
func (s *Server) trigger(w http.ResponseWriter, r *http.Request) {
	rs := s.repoStore(w)
	if rs == nil {
		return
	}
	var req api.TriggerRun
	if !decode(w, r, &req) {
		return
	}
	if req.Branch == "" {
		bad(w, "a manual run needs a branch")
		return
	}
	if s.cfg.Triggers.MirrorDir == "" {
		reply(w, http.StatusNotImplemented, api.Error{Error: "this server keeps no repository mirrors"})
		return
	}
	rec, err := rs.Repo(r.Context(), r.PathValue("name"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	id, msg, err := s.runCommit(r.Context(), rec, commitEvent{Kind: jobs.OnManual, Ref: req.Branch, Branch: req.Branch,
		Trigger: "manual", Jobs: req.Jobs, Env: req.Env})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if id == 0 {
		reply(w, http.StatusUnprocessableEntity, api.Error{Error: msg})
		return
	}
	run, err := s.st.Run(r.Context(), id)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	reply(w, http.StatusCreated, run)
}

// fillCheckout gives a lease of a registered repository what the agent
// needs to fetch its commit: the credentials, the pull request's ref, the
// depth. Leases of other runs are left as they are.
func (s *Server) fillCheckout(ctx context.Context, l *leaseRec) error {
	rs, ok := s.st.(RepoStore)
	if !ok || l.CloneURL == "" {
		return nil
	}
	rec, err := rs.Repo(ctx, l.Repo)
	if errors.Is(err, errNotFound) || err == nil && rec.CloneURL != l.CloneURL {
		return nil
	}
	if err != nil {
		return err
	}
	c := &api.Checkout{Depth: rec.Depth, Submodules: rec.Submodules}
	if l.Untrusted {
		// Forge credentials cannot be scoped to one commit: an untrusted
		// job's agent fetches it from the server's mirror, with its lease.
		if l.Commit != "" && s.cfg.Triggers.MirrorDir != "" {
			c.Mirror = mirrorPath(l.Attempt)
		}
	} else {
		if c.Token, err = s.openRepo(rec, "token"); err != nil {
			return err
		}
		if c.SSHKey, err = s.openRepo(rec, "ssh-key"); err != nil {
			return err
		}
	}
	if n, ok := strings.CutPrefix(l.Branch, "pull/"); ok {
		// The ref the server fetched the commit by, as the forge's
		// webhook named it; runs queued before it was recorded guess from
		// the repository's forge.
		c.Ref = l.fetchRef
		if c.Ref == "" {
			c.Ref = "refs/pull/" + n + "/head"
			if rec.Forge == webhook.GitLab {
				c.Ref = "refs/merge-requests/" + n + "/head"
			}
		}
	}
	l.Checkout = c
	return nil
}
