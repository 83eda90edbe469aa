package agent

import (
	"context"
	"errors"
	"fmt"

	"github.com/jobrun/jobrun/agent/sandbox"
	"github.com/jobrun/jobrun/agent/workspace"
	"github.com/jobrun/jobrun/artifacts"
	"github.com/jobrun/jobrun/cache"
	"github.com/jobrun/jobrun/internal/idmap"
	"github.com/jobrun/jobrun/internal/units"
)

// volume is a cache mounted into the job, released when the job ends with
// whether the job succeeded (only a successful job updates a remote copy).
type volume struct {
	v   *cache.Volume
	tmp *scratch // with no cache manager: a scratch dir removed afterwards
	hit bool
	ok  bool
	// released, set by release, waits for the rest of the volume's
	// release (cache.Volume.ReleaseBeside) and returns its error.
	released func() error
}

// release starts releasing the volume: the rest (the walk that measures
// it, its metadata) goes on beside the later steps of the job's teardown
// until awaitReleases.
func (v *volume) release() error {
	if v.v != nil {
		v.released = v.v.ReleaseBeside(context.Background(), v.ok)
		return nil
	}
	return v.tmp.remove()
}

// awaitReleases waits for the releases of vols that release started and
// returns their errors.
func awaitReleases(vols []*volume) error {
	var errs []error
	for _, v := range vols {
		if v.released != nil {
			errs = append(errs, v.released())
			v.released = nil
		}
	}
	return errors.Join(errs...)
}

// acquireCaches gets each of the job's caches, evaluating keys such as
// hashfiles("go.sum") against the workspace. u is the job's user
// namespace, nil for a job without one: a plain directory (a shared or
// locked volume, a scratch dir) is then bound idmapped, and a private
// volume is an overlay already built for the range, bound as it is.
func (r *Runner) acquireCaches(ctx context.Context, j *Job, ws string, u *idmap.Userns, l *jobLog) ([]*volume, []sandbox.Mount, error) {
	var vols []*volume
	var mounts []sandbox.Mount
	for _, c := range j.Caches {
		v, err := r.acquireCache(ctx, j, c.Name, string(c.Sharing), func() (string, error) { return c.EvalKey(ws) }, u, l)
		if err != nil {
			return vols, nil, fmt.Errorf("cache %q: %w", c.Name, err)
		}
		vols = append(vols, v)
		var src string
		plain := true // a scratch dir, a shared or locked volume
		if v.v != nil {
			src, plain = v.v.Path(), v.v.Sharing() != cache.Private
		} else {
			src = v.tmp.dir
		}
		mounts = append(mounts, sandbox.Mount{Source: src, Target: c.Path, Chown: true, IDMap: u != nil && plain})
	}
	return vols, mounts, nil
}

func (r *Runner) acquireCache(ctx context.Context, j *Job, name, sharing string, key func() (string, error), u *idmap.Userns, l *jobLog) (*volume, error) {
	if r.Caches == nil {
		s, err := newScratch(r.WorkDir)
		if err != nil {
			return nil, err
		}
		return &volume{tmp: s}, nil
	}
	k, err := key()
	if err != nil {
		return nil, err
	}
	v, err := r.Caches.Acquire(ctx, cache.Request{
		Repo: j.Repo, Name: name, Key: k, Sharing: cache.Sharing(sharing),
		Untrusted: j.Untrusted, Upload: !j.Untrusted, Userns: u,
		Wait: func(msg string) { l.notice("", msg) },
	})
	if err != nil {
		return nil, err
	}
	state := "cold"
	if v.Hit() {
		state = "warm"
	}
	if rs, ok := v.Restored(); ok {
		l.notice("", fmt.Sprintf("cache %s: restored from remote in %.2f s (%s)", name, rs.Took.Seconds(), units.FormatSize(rs.Size)))
	}
	l.notice("", fmt.Sprintf("cache %s: %s (%s)", name, state, v.Sharing()))
	return &volume{v: v, hit: v.Hit()}, nil
}

// fetchNeeds places the artifacts of the jobs j needs into its workspace.
func (r *Runner) fetchNeeds(ctx context.Context, j *Job, ws string, l *jobLog) error {
	for _, need := range j.NeedAttempts {
		ref := artifacts.Ref{Repo: j.Repo, Run: j.Run, Job: need.ID, Attempt: need.Attempt}
		m, err := artifacts.Fetch(ctx, r.artifactStore(j), ref, ws)
		if errors.Is(err, artifacts.ErrNotFound) {
			continue // the needed job stored no artifacts
		}
		if err != nil {
			return fmt.Errorf("artifacts of %s: %w", need.ID, err)
		}
		paths := make([]string, len(m.Files))
		for i, f := range m.Files {
			paths[i] = f.Path
		}
		// In a range's overlay they belong to the job's root, not the
		// host's (which the job would see as the overflow id).
		if err := workspace.Adopt(ws, paths); err != nil {
			return fmt.Errorf("artifacts of %s: %w", need.ID, err)
		}
		l.notice("", fmt.Sprintf("artifacts of %s: %d files", need.ID, len(m.Files)))
	}
	return nil
}

// storeArtifacts collects and uploads the job's artifacts when its `when`
// says so.
func (r *Runner) storeArtifacts(ctx context.Context, j *Job, ws string, ok bool, l *jobLog, res *Result) error {
	a := j.Artifacts
	if a == nil || len(a.Paths) == 0 {
		return nil
	}
	if up, err := artifacts.ShouldUpload(string(a.When), ok); err != nil || !up {
		return err
	}
	c, err := artifacts.Collect(ctx, ws, a.Paths, artifacts.CollectOptions{Required: a.Required, MaxTotal: r.ArtifactLimit})
	if err != nil {
		return fmt.Errorf("artifacts: %w", err)
	}
	for _, w := range c.Warnings {
		l.notice("", "artifacts: "+w)
	}
	for _, s := range c.Skipped {
		l.notice("", fmt.Sprintf("artifacts: skipped %s: %s", s.Path, s.Reason))
	}
	ref := artifacts.Ref{Repo: j.Repo, Run: j.Run, Job: j.ID, Attempt: j.Attempt}
	m, err := artifacts.Upload(ctx, r.artifactStore(j), ref, c, artifacts.UploadOptions{ExpireIn: a.ExpireIn})
	if err != nil {
		return err
	}
	for _, f := range m.Files {
		res.Artifacts = append(res.Artifacts, f.Path)
		l.emit(Event{Kind: ArtifactStored, Text: f.Path})
	}
	return nil
}
