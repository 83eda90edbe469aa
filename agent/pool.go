package agent

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/jobrun/jobrun/api"
	"github.com/jobrun/jobrun/artifacts"
	"github.com/jobrun/jobrun/internal/lockfile"
	"github.com/jobrun/jobrun/internal/redact"
	"github.com/jobrun/jobrun/jobs"
)

// Pool is an agent of the scheduler's pool: it registers, leases jobs on
// each of its slots, runs them with Runner, streams their logs and step
// states, keeps their leases alive with heartbeats, and reports their
// results.
//
// A lease it cannot renew is killed on this side before the scheduler
// would give the job to another agent (self-fencing), so a partitioned
// agent never runs a job alongside its retry. Everything the scheduler
// answers 410 Gone for is killed and no longer reported.
type Pool struct {
	// Client reaches the scheduler; its Token is replaced by the agent's
	// own once registered.
	Client *api.Client
	// PoolToken is the pool's registration token.
	PoolToken string
	Runner    *Runner
	Name      string
	Labels    []string
	// Slots is how many jobs run at once.
	Slots   int
	Version string
	// LeaseWait is how long one lease request waits for a job; zero means
	// 5s. It bounds how long a drain waits for the requests it finds
	// open (see Drain). The scheduler looks for jobs every 250ms while a
	// request waits, so a shorter wait costs one more request now and
	// then, little more work in its database.
	LeaseWait time.Duration
	Log       hclog.Logger
	// Metrics, if set, count the jobs run (see NewMetrics).
	Metrics *Metrics
	// Artifacts, if set, is the scheduler's own artifact store (its S3
	// bucket, or a directory it shares), which the jobs write to and read
	// their needs from directly. Nil sends them through the scheduler,
	// which takes them only from the lease holder.
	Artifacts artifacts.Store

	mu      sync.Mutex
	drainCh chan struct{} // closed by Drain
	polls   int           // lease requests open
	c       *api.Client   // with the agent's token
	reg     *api.Registration
	running map[api.Attempt]*leased
}

// Causes of a job's cancellation, as its result's reason says them.
var (
	errKilled = errors.New("killed at the scheduler's request (cancelled, superseded or given to another agent)")
	errGone   = errors.New("the scheduler no longer leases this attempt to this agent")
	errFenced = errors.New("lease not renewed")
)

// Drain stops leasing: no lease request starts once it has returned. A
// request already open is let end (within LeaseWait) and a job it brings
// is run like the others: cutting it could lose a job the scheduler had
// just leased to this agent, as its reply would go nowhere and the API has
// no call to hand a lease back (the job would wait for its lease to
// expire and lose an attempt). Run returns once the running jobs have
// finished and been reported. Cancel Run's context to stop them sooner.
func (p *Pool) Drain() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.drained():
	default:
		close(p.drainCh)
		if p.polls == 0 {
			p.log().Info(leasingStopped)
		}
	}
}

// leasingStopped is logged once a drain has no lease request left open.
const leasingStopped = "draining: leasing stopped, no lease request open"

// startPoll counts a lease request about to be sent, unless the pool is
// draining or ctx has ended (false). Drain holds the same lock, so a
// request either is counted before it or never starts.
func (p *Pool) startPoll(ctx context.Context) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.drained():
		return false
	default:
	}
	if ctx.Err() != nil {
		return false
	}
	p.polls++
	return true
}

// endPoll uncounts a lease request that has ended and reports whether the
// pool is draining; the last one to end in a drain says leasing stopped.
func (p *Pool) endPoll(log hclog.Logger) (draining bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.polls--
	select {
	case <-p.drained():
		if p.polls == 0 {
			log.Info(leasingStopped)
		}
		return true
	default:
		return false
	}
}

// drained is closed by Drain. Callers hold p.mu.
func (p *Pool) drained() chan struct{} {
	if p.drainCh == nil {
		p.drainCh = make(chan struct{})
	}
	return p.drainCh
}

func (p *Pool) log() hclog.Logger {
	if p.Log == nil {
		return hclog.NewNullLogger()
	}
	return p.Log
}

// Run registers and serves leases until Drain was called and every job has
// been reported, then deregisters. Cancelling ctx cancels the running jobs
// (their results are still reported, while their leases last) and stops
// at once after that, cutting the open lease requests. It returns an
// error only when it could not register.
func (p *Pool) Run(ctx context.Context) error {
	if p.Slots < 1 {
		return fmt.Errorf("agent: %d slots: need at least one", p.Slots)
	}
	p.mu.Lock()
	drain := p.drained()
	p.mu.Unlock()
	// A drain before registration completes stops it: no job was taken.
	// leaseCtx also ends the slots' waits between failed lease requests,
	// but never a lease request itself (see slot).
	leaseCtx, stopLeasing := context.WithCancel(ctx)
	defer stopLeasing()
	go func() {
		select {
		case <-drain:
			stopLeasing()
		case <-leaseCtx.Done():
		}
	}()
	reg, err := p.register(leaseCtx)
	if err != nil {
		select {
		case <-drain:
			return nil
		default:
			return err
		}
	}
	c := *p.Client
	c.Token = reg.Token
	p.mu.Lock()
	p.c, p.reg, p.running = &c, reg, map[api.Attempt]*leased{}
	p.mu.Unlock()
	log := p.log().With("agent", reg.ID)
	log.Info("registered", "name", p.Name, "labels", strings.Join(p.Labels, ","), "slots", p.Slots,
		"lease_timeout", time.Duration(reg.LeaseTimeout), "heartbeat", time.Duration(reg.Heartbeat))

	// Reports outlive ctx: a cancelled job's result still goes up.
	bg := context.WithoutCancel(ctx)
	hbCtx, stopHB := context.WithCancel(bg)
	hbDone := make(chan struct{})
	go func() {
		defer close(hbDone)
		p.heartbeats(hbCtx, log)
	}()

	var wg sync.WaitGroup
	for range p.Slots {
		wg.Go(func() { p.slot(ctx, leaseCtx, log) })
	}
	wg.Wait()
	stopHB()
	<-hbDone

	dctx, cancel := context.WithTimeout(bg, 10*time.Second)
	defer cancel()
	if err := c.Deregister(dctx, reg.ID); err != nil {
		log.Warn("deregister", "error", err)
	} else {
		log.Info("deregistered")
	}
	return nil
}

// register joins the pool, retrying while the scheduler is unreachable or
// failing; a refusal (a bad pool token) is returned.
func (p *Pool) register(ctx context.Context) (*api.Registration, error) {
	b := newBackoff()
	for {
		var reg *api.Registration
		err := within(ctx, callTimeout, func(ctx context.Context) (err error) {
			reg, err = p.Client.Register(ctx, p.PoolToken, api.RegisterRequest{Name: p.Name, Labels: p.Labels, Slots: p.Slots, Version: p.Version})
			return err
		})
		switch verdict(err) {
		case sent:
			if reg.ID == "" || reg.Token == "" {
				return nil, fmt.Errorf("register with %s: the reply has no agent id or token", p.Client.Server())
			}
			return reg, nil
		case refused, gone:
			return nil, fmt.Errorf("register with %s: %w", p.Client.Server(), err)
		}
		p.log().Warn("register: retrying", "server", p.Client.Server(), "error", err)
		if !b.wait(ctx) {
			return nil, fmt.Errorf("register with %s: %w (last error: %v)", p.Client.Server(), context.Cause(ctx), err)
		}
	}
}

// slot leases and runs one job at a time until leasing stops: at a drain
// (leaseCtx ends), or when ctx ends. A lease request runs under ctx, not
// leaseCtx: one open when the drain begins is let end, and the job it
// brings is run (see Drain).
func (p *Pool) slot(ctx, leaseCtx context.Context, log hclog.Logger) {
	wait := p.LeaseWait
	if wait <= 0 {
		wait = 5 * time.Second
	}
	b := newBackoff()
	for p.startPoll(ctx) {
		var l *api.Lease
		err := within(ctx, wait+callTimeout, func(ctx context.Context) (err error) {
			l, err = p.c.Lease(ctx, p.reg.ID, wait)
			return err
		})
		draining := p.endPoll(log)
		if err != nil {
			if ctx.Err() != nil || draining {
				return
			}
			if verdict(err) == refused {
				log.Error("lease refused", "error", err)
			} else {
				log.Warn("lease", "error", err)
			}
			b.wait(leaseCtx)
			continue
		}
		b.reset()
		if l != nil {
			if draining {
				log.Info("draining: a lease request open when the drain began brought a job; running it", "attempt", l.Attempt)
			}
			p.run(ctx, l, log)
		}
	}
}

// leased is the agent's side of one lease.
type leased struct {
	a    api.Attempt
	kill context.CancelCauseFunc // the job
	stop context.CancelCauseFunc // reporting it

	mu      sync.Mutex
	expires time.Time // when the scheduler takes the lease back, as far as we know
	fence   *time.Timer
	expiry  *time.Timer
	margin  time.Duration
}

// goneNow kills the job and stops reporting it: the scheduler answered 410.
func (l *leased) goneNow() {
	l.kill(errGone)
	l.stop(errGone)
}

// arm sets the fence and expiry timers for a lease that expires at t;
// renew moves them later.
func (l *leased) arm(t time.Time, log hclog.Logger) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.expires = t
	l.fence = time.AfterFunc(time.Until(t)-l.margin, func() {
		l.mu.Lock()
		left := time.Until(l.expires)
		l.mu.Unlock()
		err := fmt.Errorf("%w: killed %s before it expires on the scheduler, which then gives the job to another agent", errFenced, left.Round(time.Millisecond))
		log.Error("self-fencing: cannot renew the lease; killing the job", "attempt", l.a, "expires_in", left)
		l.kill(err)
	})
	l.expiry = time.AfterFunc(time.Until(t), func() {
		log.Error("lease expired; no longer reporting the job", "attempt", l.a)
		l.stop(errors.New("the lease expired before the job was reported"))
	})
}

func (l *leased) renew(t time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !t.After(l.expires) {
		return
	}
	l.expires = t
	// A timer that already fired stays fired: a fenced job is not revived.
	if l.fence.Stop() {
		l.fence.Reset(time.Until(t) - l.margin)
	}
	if l.expiry.Stop() {
		l.expiry.Reset(time.Until(t))
	}
}

func (l *leased) disarm() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.fence.Stop()
	l.expiry.Stop()
}

// heartbeats renews the leases of the running attempts every heartbeat
// interval and kills those the scheduler names.
func (p *Pool) heartbeats(ctx context.Context, log hclog.Logger) {
	every := time.Duration(p.reg.Heartbeat)
	if every <= 0 {
		every = 10 * time.Second
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		p.mu.Lock()
		hb := api.Heartbeat{Running: []api.Attempt{}}
		leases := make([]*leased, 0, len(p.running))
		for a, l := range p.running {
			hb.Running = append(hb.Running, a)
			leases = append(leases, l)
		}
		p.mu.Unlock()
		sort.Slice(hb.Running, func(i, j int) bool {
			return hb.Running[i].Job < hb.Running[j].Job || hb.Running[i].Job == hb.Running[j].Job && hb.Running[i].Attempt < hb.Running[j].Attempt
		})
		// The scheduler counts a renewed lease from when it received the
		// heartbeat, which is after it was sent: counting from here errs
		// on the side of fencing early.
		sentAt := time.Now()
		hctx, cancel := context.WithTimeout(ctx, every)
		reply, err := p.c.Heartbeat(hctx, p.reg.ID, hb)
		cancel()
		if err != nil {
			if ctx.Err() == nil {
				log.Warn("heartbeat", "running", len(hb.Running), "error", err)
			}
			continue
		}
		for _, l := range leases {
			l.renew(sentAt.Add(time.Duration(p.reg.LeaseTimeout)))
		}
		for _, a := range reply.Kill {
			p.mu.Lock()
			l := p.running[a]
			p.mu.Unlock()
			if l != nil {
				log.Info("the scheduler asks to kill a job", "attempt", a)
				l.kill(errKilled)
			}
		}
	}
}

// run runs one leased attempt and reports it.
func (p *Pool) run(ctx context.Context, lease *api.Lease, log hclog.Logger) {
	log = log.With("attempt", lease.Attempt, "job", lease.Job)
	log.Info("leased", "run", lease.Run, "repo", lease.Repo, "commit", lease.Commit)
	jctx, kill := context.WithCancelCause(ctx)
	defer kill(nil)
	rctx, stop := context.WithCancelCause(context.WithoutCancel(ctx))
	defer stop(nil)

	margin := time.Duration(p.reg.Heartbeat)
	if lt := time.Duration(p.reg.LeaseTimeout); margin <= 0 || margin > lt/2 {
		margin = lt / 2
	}
	l := &leased{a: lease.Attempt, kill: kill, stop: stop, margin: margin}
	l.arm(time.Now().Add(time.Duration(lease.Expires)), log)
	defer l.disarm()
	p.mu.Lock()
	p.running[l.a] = l
	p.mu.Unlock()
	p.Metrics.jobStarted()
	// The attempt stays in the heartbeats until its result is reported,
	// so its lease lasts while the result is retried.
	defer func() {
		p.mu.Lock()
		delete(p.running, l.a)
		p.mu.Unlock()
	}()

	f, diags := jobs.Parse(lease.File, []byte(lease.Source))
	var steps []string
	job := f.Job(lease.Job)
	if job != nil {
		for _, s := range job.Steps {
			steps = append(steps, s.Name)
		}
	}
	rep := newReporter(p.c, lease.Attempt, steps, log, l.goneNow)
	go rep.run(rctx)

	var res Result
	switch {
	case diags.HasErrors():
		var b strings.Builder
		jobs.WriteDiagnostics(&b, diags, f, false)
		res = Result{Job: lease.Job, Status: Errored, Reason: fmt.Sprintf("job file %s does not parse:\n%s", lease.File, b.String())}
		rep.notice(res.Reason)
	case job == nil:
		res = Result{Job: lease.Job, Status: Errored, Reason: fmt.Sprintf("job %q is not in %s", lease.Job, lease.File)}
		rep.notice(res.Reason)
	default:
		res = p.runJob(jctx, lease, job, rep, l.goneNow)
	}
	cause := context.Cause(jctx)
	if cause != nil && res.Status != Succeeded {
		res.Reason = cause.Error()
		if errors.Is(cause, errKilled) || errors.Is(cause, errGone) {
			res.Status = Cancelled
		} else {
			// The agent shut down: not the job's doing.
			res.Status = Errored
		}
	}
	log.Info("job ended", "status", res.Status, "reason", res.Reason, "duration", res.Duration)
	p.Metrics.jobEnded(res.Status)

	fenced := errors.Is(cause, errFenced)
	if fenced {
		rep.notice(cause.Error())
	}
	rep.close()
	rep.wait()
	switch {
	case rctx.Err() != nil:
		log.Warn("result not reported", "status", res.Status, "why", context.Cause(rctx))
	case fenced:
		// No result: the lease runs out once the heartbeats stop naming
		// the attempt, and the scheduler runs the job again (or fails it
		// after its retry budget). A result would end the job for a fault
		// of the agent's connection, not of the job.
		log.Warn("fenced job not reported; the scheduler takes it back when its lease expires")
	default:
		p.finish(rctx, l, rep.result(res), log)
	}
}

// runJob prepares the job's source and runs it.
func (p *Pool) runJob(ctx context.Context, lease *api.Lease, job *jobs.Job, rep *reporter, gone func()) Result {
	secrets, err := leaseSecrets(job, lease)
	var login string
	if err == nil {
		login, err = leaseImageLogin(job, lease)
	}
	if err != nil {
		rep.notice(err.Error())
		return Result{Job: job.Name, Status: Errored, Reason: err.Error()}
	}
	src, err := p.source(ctx, lease, rep)
	if err != nil {
		err = redact.Error(err) // a clone URL's credentials stay out of the log and the reason
		rep.notice(err.Error())
		return Result{Job: job.Name, Status: Errored, Reason: err.Error()}
	}
	defer func() {
		if err := src.remove(); err != nil {
			p.log().Error("remove job source", "dir", src.dir, "error", err)
		}
	}()
	own := artifacts.Ref{Repo: lease.Repo, Run: lease.Run, Job: job.ID, Attempt: lease.Attempt.Attempt}
	j := &Job{
		Job: job, Repo: lease.Repo, Run: lease.Run, Attempt: lease.Attempt.Attempt,
		Source: src.source(), BaseDir: src.dir, FileDir: jobFileDir(lease.File), Clean: src.rev != "", Rev: src.rev,
		Env: lease.Env, Secrets: secrets, Mask: lease.Mask, ImageLogin: login, Untrusted: lease.Untrusted,
		ArtifactStore: p.Artifacts,
	}
	if p.Artifacts == nil {
		j.ArtifactStore = newSchedulerStore(p.c, lease, own, gone)
	}
	for _, n := range lease.Needs {
		j.NeedAttempts = append(j.NeedAttempts, NeedAttempt{ID: n.Key, Attempt: n.Attempt})
	}
	return p.Runner.Run(ctx, j, rep)
}

// leaseSecrets gives the job the secrets its `secrets` list names, and no
// others, as `jobrun local` does. The scheduler withholds secrets from
// untrusted runs, which then run without them.
func leaseSecrets(job *jobs.Job, lease *api.Lease) (map[string]string, error) {
	out := make(map[string]string, len(job.Secrets))
	for _, name := range job.Secrets {
		v, ok := lease.Secrets[name]
		if !ok && !lease.Untrusted {
			return nil, fmt.Errorf("job %q needs secret %s, which the scheduler did not send: store it for repository %s", job.Name, name, lease.Repo)
		}
		if ok {
			out[name] = v
		}
	}
	return out, nil
}

// leaseImageLogin is the value of the job's image_credentials secret, sent
// beside its other secrets but kept out of its environment. An untrusted
// run gets none and pulls without it.
func leaseImageLogin(job *jobs.Job, lease *api.Lease) (string, error) {
	name := job.ImageCredentials
	if name == "" {
		return "", nil
	}
	v, ok := lease.Secrets[name]
	if !ok && !lease.Untrusted {
		return "", fmt.Errorf("job %q needs secret %s (image_credentials), which the scheduler did not send: store it for repository %s", job.Name, name, lease.Repo)
	}
	return v, nil
}

// jobSource is the directory a leased job's workspace is made from: a
// clone of its repository, whose commit rev the Runner exports, or an
// empty directory. A lock file beside it marks it live, so start-up
// clean-up removes only what a killed agent left.
type jobSource struct {
	dir, rev string
	// repo is the agent's mirror of the repository, if the job has one.
	repo string
	lock *lockfile.Lock
}

func (s *jobSource) remove() error {
	err := os.RemoveAll(s.dir)
	os.Remove(s.dir + ".lock")
	if rerr := s.lock.Release(); err == nil {
		err = rerr
	}
	return err
}

func (p *Pool) sourcesDir() string { return filepath.Join(p.Runner.WorkDir, "sources") }

func (p *Pool) source(ctx context.Context, lease *api.Lease, rep *reporter) (*jobSource, error) {
	base := p.sourcesDir()
	if err := os.MkdirAll(base, 0o700); err != nil {
		return nil, fmt.Errorf("job source: %w", err)
	}
	var b [4]byte
	rand.Read(b[:])
	dir := filepath.Join(base, fmt.Sprintf("%d-%d-%s", lease.Attempt.Job, lease.Attempt.Attempt, hex.EncodeToString(b[:])))
	lock, err := lockfile.TryAcquire(dir + ".lock")
	if err != nil {
		return nil, fmt.Errorf("job source %s: %w", dir, err)
	}
	s := &jobSource{dir: dir, lock: lock}
	if err := os.Mkdir(dir, 0o700); err != nil {
		s.remove()
		return nil, fmt.Errorf("job source: %w", err)
	}
	if lease.CloneURL == "" {
		return s, nil
	}
	if s.repo, s.rev, err = p.checkout(ctx, lease, dir, rep); err != nil { // checkout.go
		s.remove()
		return nil, err
	}
	return s, nil
}

// Cleanup removes the job sources a killed agent left under the work
// directory: those whose lock no live process holds.
func (p *Pool) Cleanup(ctx context.Context) error {
	err := lockfile.Sweep(ctx, p.sourcesDir(), func(dir string, lock *lockfile.Lock) error {
		return (&jobSource{dir: dir, lock: lock}).remove()
	})
	if err != nil {
		return fmt.Errorf("job sources cleanup: %w", err)
	}
	return nil
}

// finish reports the result, retrying until it goes through, the
// scheduler refuses it, or the lease ends (ctx).
func (p *Pool) finish(ctx context.Context, l *leased, res api.Result, log hclog.Logger) {
	b := newBackoff()
	for {
		err := within(ctx, callTimeout, func(ctx context.Context) error { return p.c.Finish(ctx, l.a, res) })
		switch verdict(err) {
		case sent:
			log.Info("reported", "status", res.Status)
			return
		case gone:
			log.Warn("result not reported: "+errGone.Error(), "status", res.Status)
			return
		case refused:
			log.Error("result refused", "status", res.Status, "error", err)
			return
		}
		log.Warn("result not reported; retrying", "error", err)
		if !b.wait(ctx) {
			log.Error("result not reported", "status", res.Status, "why", context.Cause(ctx))
			return
		}
	}
}
