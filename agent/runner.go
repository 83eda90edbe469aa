// Package agent runs jobs: Runner takes one planned job from its workspace
// to its artifacts, the same way for `jobrun local` and for the pool.
package agent

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/jobrun/jobrun/agent/idrange"
	"github.com/jobrun/jobrun/agent/image"
	"github.com/jobrun/jobrun/agent/network"
	"github.com/jobrun/jobrun/agent/sandbox"
	"github.com/jobrun/jobrun/agent/workspace"
	"github.com/jobrun/jobrun/artifacts"
	"github.com/jobrun/jobrun/cache"
	"github.com/jobrun/jobrun/internal/idmap"
	"github.com/jobrun/jobrun/internal/units"
	"github.com/jobrun/jobrun/jobs"
)

// Runner runs one job start to finish: workspace, needed artifacts, image
// snapshot, caches, container, steps, artifacts, teardown. It is safe for
// concurrent use; each Run is independent.
type Runner struct {
	Images  *image.Store
	Sandbox *sandbox.Runtime
	// Caches may be nil: every cache is then an empty directory that is
	// thrown away with the job (--no-cache).
	Caches    *cache.Manager
	Artifacts artifacts.Store
	// WorkDir holds the jobs' workspaces and scratch directories.
	WorkDir string
	// PullPolicy is when a job whose file says no `pull` asks the
	// registry for its image; empty means the image store's.
	PullPolicy image.Policy
	// LogLimit caps each job's output in bytes; zero means no cap.
	LogLimit int64
	// ArtifactLimit caps the bytes one job may store; zero means no cap.
	ArtifactLimit int64
	Log           hclog.Logger
	// Inspect, if set, is called when a job's steps failed, while its
	// container still runs in its state at the failure: `jobrun local
	// --shell-on-failure` opens a shell there, --keep waits. Teardown
	// follows when it returns.
	Inspect func(ctx context.Context, job string, c *sandbox.Container)
	// AfterJob, if set, is called when a job is over and torn down (its
	// caches and snapshot released): the Housekeeper's Kick.
	AfterJob func()
	// Network makes the jobs' bridge networks (network = "bridge", the
	// default, and service containers); nil refuses such jobs.
	Network *network.Manager
	// AllowHostNetwork lets jobs use network = "host" (the agent config's
	// network { allow_host = true }).
	AllowHostNetwork bool
	// CACerts, if set, are PEM certificates every job and service trusts
	// on top of its image's (the agent config's ca_file, `jobrun local
	// --ca-file`): see sandbox.Spec.CACerts and withCAEnv.
	CACerts []byte
	// ServiceTimeout is how long a service gets to accept connections on
	// its port; zero means a minute.
	ServiceTimeout time.Duration
	// IDs, if set, gives each job (with its services) a user namespace
	// of its own: container ids 0-65535 on a host id range leased from
	// the pool for the job's lifetime, its root filesystem and mounts
	// idmapped onto it (see sandbox.Spec.UserNS). Nil: jobs run without
	// user namespaces (userns = "off").
	IDs *idrange.Pool

	live sync.Map // *sandbox.Container of running jobs, for KillAll
}

// KillAll kills every process of every running job at once, with no grace
// period: the second Ctrl-C. The jobs then end as cancelled and are torn
// down as usual.
func (r *Runner) KillAll() {
	r.live.Range(func(k, _ any) bool {
		k.(*sandbox.Container).Kill(0)
		return true
	})
}

// Job is a planned job plus what this run of it needs to know.
type Job struct {
	*jobs.Job
	// Repo scopes caches and names artifacts: a repository URL or a local
	// path.
	Repo string
	// Run and Attempt name this run of the job in the artifact store.
	Run     string
	Attempt int
	// Source is the directory the workspace is made from, and BaseDir the
	// job file's directory, against which oci-layout: references resolve.
	Source  string
	BaseDir string
	// FileDir, if set, is the job file's directory in a checked-out
	// workspace (the pool's jobs): a relative oci-layout: reference is
	// then taken from there inside the workspace, and refused if it
	// leaves it; BaseDir is not used for it.
	FileDir string
	// Clean exports Rev of Source's repository instead of a copy-on-write
	// view of the directory, leaving uncommitted files out.
	Clean bool
	Rev   string
	// Env is added to the job's environment, overriding it.
	Env map[string]string
	// Secrets are put in the environment and masked in every log line.
	Secrets map[string]string
	// Mask holds more values to mask in the job's output, never put in
	// its environment: the run's secrets this job does not name, which
	// may reach it through an artifact.
	Mask []string
	// ImageLogin is the value of the job's image_credentials secret
	// (USER:PASSWORD), offered to the registry of its image; masked too,
	// never in the environment.
	ImageLogin string
	// Untrusted runs (pull requests from forks) get private caches.
	Untrusted bool
	// NeedAttempts are the attempts of the jobs whose artifacts this job
	// receives in its workspace before the first step.
	NeedAttempts []NeedAttempt
	// ArtifactStore, if set, replaces the Runner's store for this job:
	// where its artifacts go and its needs' come from. The pool agent
	// sets one per lease, uploading through the scheduler.
	ArtifactStore artifacts.Store

	instance string // set by Run: see Instance
}

// NeedAttempt names the attempt of a needed job whose artifacts a job
// receives: its ID (the sanitised job id the store names it by) and the
// attempt that succeeded.
type NeedAttempt struct {
	ID      string
	Attempt int
}

// artifactStore is where j's artifacts go: its own store if set, else the
// Runner's.
func (r *Runner) artifactStore(j *Job) artifacts.Store {
	if j.ArtifactStore != nil {
		return j.ArtifactStore
	}
	return r.Artifacts
}

// Run runs j and reports its events to sink. Whatever happens, everything
// the job made is torn down before Run returns, in the reverse order it was
// made: container, caches, snapshot, workspace (the caches' releases,
// which measure them, finish beside the steps after theirs).
func (r *Runner) Run(ctx context.Context, j *Job, sink Sink) (res Result) {
	start := time.Now()
	masked := append(secretValues(j.Secrets), j.Mask...)
	if j.ImageLogin != "" {
		_, pw, _ := strings.Cut(j.ImageLogin, ":")
		masked = append(masked, j.ImageLogin, pw)
	}
	l := newJobLog(j.Name, sink, masked, r.LogLimit)
	res = Result{Job: j.Name}
	jc := *j // this run's instance name is ours, not the caller's
	j = &jc
	j.instance = Instance(j.ID)
	l.emit(Event{Kind: JobStarted})
	var td teardown
	var vols []*volume
	defer func() {
		td.run(l, r.log())
		// The caches' releases (their size walks) ran beside the
		// teardown's later steps (snapshot, workspace, namespaces); the
		// job is over when they are, so the next budget sweep reads
		// their sizes.
		td.report(awaitReleases(vols), l, r.log())
		res.Duration = time.Since(start)
		l.emit(Event{Kind: JobFinished, Result: &res})
		if r.AfterJob != nil {
			r.AfterJob()
		}
	}()
	// The job's timeout runs from here: everything below is under it but
	// the teardown.
	clk := newJobClock(ctx, j.Timeout)
	defer clk.stop()
	phase := "setting up"
	prepFailed := func(err error) Result {
		if clk.timedOut() {
			res.Status, res.Reason = Failed, clk.reason()+" while "+phase
			l.notice("", res.Reason)
			return res
		}
		return errored(res, err)
	}
	if err := r.checkNetwork(j.Job); err != nil {
		return errored(res, err)
	}
	if err := r.checkBuildsImages(j.Job); err != nil {
		return errored(res, err)
	}
	if j.ImageLogin != "" {
		if err := checkImageLogin(j.Name, j.ImageCredentials, j.ImageLogin); err != nil {
			return errored(res, err)
		}
	}
	ns, err := r.namespaces(clk.ctx, j, &td, &phase)
	if err != nil {
		return prepFailed(err)
	}
	jn := r.startNetwork(ctx, j, ns, &td)

	ws, wsIDMap, err := r.workspace(clk.ctx, j, ns.Userns())
	if err != nil {
		return prepFailed(err)
	}
	td.add(ws.Remove)
	phase = "fetching the artifacts of needed jobs"
	if err := r.fetchNeeds(clk.ctx, j, ws.Path(), l); err != nil {
		return prepFailed(err)
	}

	l.notice("", "image "+j.Image)
	phase = "pulling image " + j.Image
	img, err := r.resolveImage(clk.ctx, j, j.Image, ws.Path())
	if err != nil {
		return prepFailed(err)
	}
	r.forgetWorkspaceImage(img, ws.Path(), &td)
	snap, err := r.Images.SnapshotFor(clk.ctx, img, j.instance, ns.Userns())
	if err != nil && clk.ctx.Err() == nil {
		// A budget sweep may have evicted the image between Resolve and
		// Snapshot: eviction must not fail the job, so resolve (pull)
		// it again, once.
		if img, err = r.resolveImage(clk.ctx, j, j.Image, ws.Path()); err == nil {
			snap, err = r.Images.SnapshotFor(clk.ctx, img, j.instance, ns.Userns())
		}
	}
	if err != nil {
		return prepFailed(err)
	}
	td.add(snap.Remove)

	phase = "acquiring caches"
	var mounts []sandbox.Mount
	vols, mounts, err = r.acquireCaches(clk.ctx, j, ws.Path(), ns.Userns(), l)
	for _, v := range vols {
		td.add(v.release)
		res.Caches++
		if v.hit {
			res.CacheHits++
		}
	}
	if err != nil {
		return prepFailed(err)
	}

	if limits := limitText(j.Resources); limits != "" {
		l.notice("", "limits: "+limits)
	}
	spec := jobSpec(j, img.Config, hostParts{Rootfs: snap.Rootfs(), UserNS: ns.UserPath(), Workspace: ws.Path(), WorkspaceIDMap: wsIDMap, Mounts: mounts}, r.CACerts)
	var svcs []*service
	var net *network.Net
	if jn != nil {
		phase = "setting up the network"
		if net, err = jn.wait(); err != nil {
			return prepFailed(err)
		}
		joinNetwork(&spec, net, j.Services)
		// At teardown, once the containers are gone: the network's
		// end (pasta's exit) runs alongside the rest.
		td.add(net.Stop)
		// Services may need egress as they start; a job's container
		// only from its first step (below).
		if len(j.Services) > 0 {
			if err := net.Ready(clk.ctx); err != nil {
				return prepFailed(err)
			}
		}
		phase = "starting services"
		svcs, err = r.startServices(clk.ctx, j, ws.Path(), ns, net, l, &td)
		if err != nil {
			return prepFailed(err)
		}
	}
	phase = "starting the job's container"
	c, err := r.Sandbox.Start(clk.ctx, spec)
	if err != nil {
		return prepFailed(err)
	}
	td.add(c.Destroy)
	// A rootless job's network is configured (by pasta) while the
	// container starts.
	phase = "setting up the network"
	if err := net.Ready(clk.ctx); err != nil {
		return prepFailed(err)
	}
	r.caNotice(c, l)
	phase = "waiting for services"
	if err := r.waitServices(clk.ctx, svcs, net, l); err != nil {
		return prepFailed(err)
	}
	r.live.Store(c, struct{}{})
	defer r.live.Delete(c)

	res.Steps, res.Status, res.Reason = r.steps(clk, j, c, l)
	if u, err := c.Stats(); err == nil {
		res.Usage = Usage{CPU: u.CPU, PeakMemory: u.MemoryPeak, PeakPids: u.PidsPeak}
	}
	addServiceUsage(svcs, &res.Usage, l)
	ok := res.Status == Succeeded
	if res.Status == Failed && r.Inspect != nil && ctx.Err() == nil {
		r.Inspect(ctx, j.Name, c)
	}
	for _, v := range vols {
		v.ok = ok
	}
	// Artifacts are read from the workspace before it is torn down; the
	// container is stopped first so no process of a step still writes them.
	if a := j.Artifacts; a != nil && len(a.Paths) > 0 {
		if err := stopForArtifacts(c); err != nil {
			l.notice("", err.Error())
			if ok {
				res.Status, res.Reason = Failed, err.Error()
			}
			return res
		}
	}
	// The upload is under the job's timeout too; once it is spent, under
	// what is left of the clean-up grace.
	actx := clk.ctx
	if clk.timedOut() {
		actx = clk.afterTimeout(l, "artifacts")
	}
	if err := r.storeArtifacts(actx, j, ws.Path(), ok, l, &res); err != nil {
		l.notice("", err.Error())
		if ok {
			res.Status, res.Reason = Failed, err.Error()
			if clk.timedOut() {
				res.Reason = clk.reason() + " while uploading artifacts"
			}
		}
	}
	return res
}

// namespaces leases an id range for j and makes its user namespace (with
// a network namespace in it for a bridge job), both undone by td after
// everything added later (containers, mounts, the network) is gone, the
// lease last. Waiting for a range is under the job's timeout (ctx). Nil
// without Runner.IDs.
func (r *Runner) namespaces(ctx context.Context, j *Job, td *teardown, phase *string) (*sandbox.Namespaces, error) {
	if r.IDs == nil {
		return nil, nil
	}
	*phase = "waiting for a free id range"
	lease, err := r.IDs.Wait(ctx)
	if err != nil {
		return nil, fmt.Errorf("job %q: %w", j.Name, err)
	}
	td.add(lease.Release)
	*phase = "setting up"
	ns, err := r.Sandbox.NewNamespaces(j.instance, lease.Mapping(), j.Network == jobs.NetworkBridge)
	if err != nil {
		return nil, fmt.Errorf("job %q: %w", j.Name, err)
	}
	td.add(ns.Close)
	return ns, nil
}

// teardown undoes what a job made, last made first. Every error is
// reported; none hides another or stops the rest.
type teardown []func() error

func (t *teardown) add(f func() error) { *t = append(*t, f) }

func (t teardown) run(l *jobLog, log hclog.Logger) {
	for i := len(t) - 1; i >= 0; i-- {
		t.report(t[i](), l, log)
	}
}

// report puts a teardown error, if any, in the job's log and the agent's.
func (teardown) report(err error, l *jobLog, log hclog.Logger) {
	if err != nil {
		l.notice("", "teardown: "+err.Error())
		log.Error("teardown", "job", l.job, "error", err)
	}
}

func errored(res Result, err error) Result {
	res.Status, res.Reason = Errored, err.Error()
	return res
}

func (r *Runner) log() hclog.Logger {
	if r.Log == nil {
		return hclog.NewNullLogger()
	}
	return r.Log
}

// Instance names one run of a job on the host, for its container, snapshot
// and workspace: the job's ID alone is not enough, since two `jobrun local`
// runs of one file may overlap on one host.
func Instance(jobID string) string {
	var b [3]byte
	rand.Read(b[:])
	suffix := "-" + hex.EncodeToString(b[:])
	if max := 63 - len(suffix); len(jobID) > max {
		jobID = strings.TrimRight(jobID[:max], "-")
	}
	return jobID + suffix
}

func secretValues(m map[string]string) []string {
	var v []string
	for _, s := range m {
		v = append(v, s)
	}
	return v
}

// workspace makes j's workspace: a clean export of its source (a plain
// directory, which a job in a user namespace gets idmapped) or a
// copy-on-write view of it (built for the job's range when u is set:
// an overlay over an idmapped source, mounted as it is). It reports
// whether the container mounts it idmapped.
func (r *Runner) workspace(ctx context.Context, j *Job, u *idmap.Userns) (*workspace.Workspace, bool, error) {
	base := filepath.Join(r.WorkDir, "workspaces")
	// 0700 for a job in a user namespace too: its root (a range id)
	// needs no way through to its workspace, since libcontainer makes
	// the bind of a source its init cannot reach from the host side
	// (open_tree), as it makes every idmapped one
	// (TestUsernsWorkspaceBehindPrivateDir).
	if err := os.MkdirAll(base, 0o700); err != nil {
		return nil, false, fmt.Errorf("workspace: %w", err)
	}
	if j.Clean {
		rev := j.Rev
		if rev == "" {
			rev = "HEAD"
		}
		ws, _, err := workspace.Checkout(ctx, base, j.instance, j.Source, rev)
		return ws, true, err
	}
	ws, err := workspace.Overlay(ctx, base, j.instance, j.Source, u)
	return ws, false, err
}

// limitText says what limits a job runs under, for its log.
func limitText(res jobs.Resources) string {
	var parts []string
	if res.CPUs > 0 {
		parts = append(parts, fmt.Sprintf("%g cpus", res.CPUs))
	}
	if res.Memory > 0 {
		parts = append(parts, "memory "+units.FormatSize(res.Memory))
	}
	if res.Pids > 0 {
		parts = append(parts, fmt.Sprintf("%d pids", res.Pids))
	}
	return strings.Join(parts, ", ")
}
