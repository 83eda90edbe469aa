package cache

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/jobrun/jobrun/internal/lockfile"
)

// Volume is one job's use of a cache volume, from Acquire to Release.
type Volume struct {
	m       *Manager
	id      string
	req     Request
	mode    Sharing
	path    string
	hit     bool
	user    *lockfile.Lock
	userLck string
	excl    *lockfile.Lock
	priv    *overlay
	done    bool
	restore Restore
}

// Restore says how a volume missing on this host was filled from the
// remote.
type Restore struct {
	// Took is the time from the first request to the last file written.
	Took time.Duration
	// Size is the restored content's size on disk.
	Size int64
}

// Restored reports whether this Acquire restored the volume from the
// remote, and how.
func (v *Volume) Restored() (Restore, bool) { return v.restore, v.restore.Took > 0 }

// Path is the host directory to mount into the job.
func (v *Volume) Path() string { return v.path }

// Hit reports whether the volume already had content (locally or restored
// from the remote) when it was acquired.
func (v *Volume) Hit() bool { return v.hit }

// ID is the volume's on-disk name (see VolumeID).
func (v *Volume) ID() string { return v.id }

// Sharing is the mode in effect, which is Private for untrusted requests.
func (v *Volume) Sharing() Sharing { return v.mode }

// Acquire prepares the volume req names and registers this job as a user,
// so that no eviction removes it until Release. A Locked volume waits here
// while another job holds it; ctx bounds the wait.
func (m *Manager) Acquire(ctx context.Context, req Request) (*Volume, error) {
	if err := req.validate(); err != nil {
		return nil, err
	}
	mode, err := ParseSharing(string(req.Sharing))
	if err != nil {
		return nil, fmt.Errorf("cache %q: %w", req.Name, err)
	}
	if req.Untrusted {
		mode = Private
	}
	v := &Volume{m: m, id: VolumeID(req.Repo, req.Name, req.Key), req: req, mode: mode}
	if err := m.withGuard(ctx, v.id, func() error { return m.register(ctx, v) }); err != nil {
		return nil, err
	}
	v.path = m.dataDir(v.id)
	var setupErr error
	switch mode {
	case Locked:
		setupErr = v.lockExclusive(ctx)
	case Private:
		v.priv, setupErr = m.mountPrivate(v.id, req.Userns)
		if setupErr == nil {
			v.path = v.priv.merged
		}
	}
	if setupErr != nil {
		return nil, errors.Join(fmt.Errorf("cache %q: %w", req.Name, setupErr), v.unregister(context.WithoutCancel(ctx), nil))
	}
	return v, nil
}

// register runs under the guard: it creates (or restores) the volume if it
// is missing and takes a user lock on it.
func (m *Manager) register(ctx context.Context, v *Volume) error {
	md, err := m.readMeta(v.id)
	_, statErr := os.Stat(m.dataDir(v.id))
	if err != nil || statErr != nil {
		md, err = m.create(ctx, v.id, v.req, &v.restore)
		if err != nil {
			return err
		}
	}
	if err := os.MkdirAll(m.usersDir(v.id), 0o700); err != nil {
		return fmt.Errorf("cache %s: %w", v.id, err)
	}
	v.userLck = filepath.Join(m.usersDir(v.id), nonce()+".lock")
	if v.user, err = lockfile.TryAcquire(v.userLck); err != nil {
		return err
	}
	md.LastUsed = time.Now()
	md.Uses++
	if err := m.writeMeta(v.id, md); err != nil {
		return errors.Join(err, removeLock(v.user, v.userLck))
	}
	// An empty volume is no warmer than a missing one; a restored one is.
	v.hit = !isEmptyDir(m.dataDir(v.id))
	return nil
}

// create makes volume id, filling it from the remote when it has a copy.
// A restore interrupted by a crash leaves data.partial, never data.
func (m *Manager) create(ctx context.Context, id string, req Request, rs *Restore) (meta, error) {
	md := meta{Repo: req.Repo, Name: req.Name, Key: req.Key, Created: time.Now()}
	partial := filepath.Join(m.volDir(id), "data.partial")
	// A data dir without metadata was never handed out (the metadata is
	// written before register returns), so it is a crash's leftover.
	for _, d := range []string{partial, m.dataDir(id)} {
		if err := os.RemoveAll(d); err != nil {
			return md, fmt.Errorf("cache %s: %w", id, err)
		}
	}
	if err := os.MkdirAll(m.volDir(id), 0o700); err != nil {
		return md, fmt.Errorf("cache %s: %w", id, err)
	}
	if err := os.MkdirAll(partial, 0o755); err != nil {
		return md, fmt.Errorf("cache %s: %w", id, err)
	}
	if m.remote != nil {
		start := time.Now()
		ok, err := m.remote.restore(ctx, id, partial)
		switch {
		case err != nil:
			// The remote only saves time: a failed restore means a cold
			// cache, not a failed job.
			m.log.Warn("cache restore failed; starting empty", "cache", req.Name, "id", id, "remote", m.remote.cfg.Endpoint, "error", err)
			if err := resetDir(partial); err != nil {
				return md, fmt.Errorf("cache %s: %w", id, err)
			}
		case ok:
			u, err := measure(partial)
			if err != nil {
				return md, err
			}
			md.Size, md.Digest, md.RemoteDigest = u.size, u.digest, u.digest
			*rs = Restore{Took: max(time.Since(start), time.Nanosecond), Size: u.size}
		}
	}
	if err := os.Rename(partial, m.dataDir(id)); err != nil {
		return md, fmt.Errorf("cache %s: %w", id, err)
	}
	return md, nil
}

func resetDir(dir string) error {
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	return os.MkdirAll(dir, 0o755)
}

func isEmptyDir(dir string) bool {
	f, err := os.Open(dir)
	if err != nil {
		return true
	}
	defer f.Close()
	names, _ := f.Readdirnames(1)
	return len(names) == 0
}

func (v *Volume) lockExclusive(ctx context.Context) error {
	path := filepath.Join(v.m.volDir(v.id), "exclusive.lock")
	l, err := lockfile.TryAcquire(path)
	if errors.Is(err, lockfile.ErrLocked) {
		if v.req.Wait != nil {
			v.req.Wait(fmt.Sprintf("cache %q is locked by another job; waiting", v.req.Name))
		}
		l, err = lockfile.Acquire(ctx, path)
	}
	if err != nil {
		return err
	}
	v.excl = l
	return nil
}

// Release ends this job's use of the volume. ok says the job succeeded: a
// shared or locked volume of an Upload request is then saved to the remote
// if its content changed. A private overlay is unmounted and removed. The
// volume is always released; an error reports what could not be done
// (an upload, the metadata, the overlay teardown). Without an upload it
// does not walk the volume for its size: it marks the size stale, and
// List, which every eviction decision reads, measures it first.
func (v *Volume) Release(ctx context.Context, ok bool) error {
	return v.ReleaseBeside(ctx, ok)()
}

// ReleaseBeside is Release in two halves, so that a runner can go on
// with the rest of a job's teardown meanwhile: what the job's id range
// must not outlive (a private overlay's removal) is done when it
// returns; the rest (for an upload, the walk and the upload; the
// metadata, the user lock) runs in a goroutine. The returned func waits
// for it and returns Release's error; it must be called, once, for the
// volume to be released.
func (v *Volume) ReleaseBeside(ctx context.Context, ok bool) (wait func() error) {
	if v.done {
		err := fmt.Errorf("cache %q: released twice", v.req.Name)
		return func() error { return err }
	}
	v.done = true
	if v.priv != nil {
		err := v.release(ctx, ok)
		return func() error { return err }
	}
	done := make(chan error, 1)
	go func() { done <- v.release(ctx, ok) }()
	return func() error { return <-done }
}

// release is Release, after its check that it runs once.
func (v *Volume) release(ctx context.Context, ok bool) error {
	var errs []error
	var u *usage
	switch {
	case v.priv != nil:
		errs = append(errs, v.priv.remove())
	case v.uploads(ok):
		got, err := measure(v.m.dataDir(v.id))
		if err != nil {
			errs = append(errs, err)
		} else {
			u = &got
		}
	}
	var remoteDigest string
	if u != nil && v.uploads(ok) {
		d, err := v.m.save(ctx, v.id, *u)
		if err != nil {
			errs = append(errs, fmt.Errorf("cache %q: save to remote %s: %w", v.req.Name, v.m.remote.cfg.Endpoint, err))
		}
		remoteDigest = d
	}
	if v.excl != nil {
		errs = append(errs, v.excl.Release())
	}
	errs = append(errs, v.unregister(ctx, func(md *meta) {
		switch {
		case u != nil:
			md.Size, md.Digest, md.SizeStale = u.size, u.digest, false
		case v.priv == nil:
			// Not measured here (the walk, ~20 ms for a builder's
			// storage, was the largest cost of a job's way out): the
			// job may have changed it. List measures it before any
			// eviction decision reads it, and a sweep that cannot
			// evict whatever the sizes does not read them.
			md.Digest, md.SizeStale = "", true
		}
		if remoteDigest != "" {
			md.RemoteDigest = remoteDigest
		}
	}))
	if v.m.budget > 0 {
		if _, err := v.m.Prune(context.WithoutCancel(ctx), v.m.budget); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// uploads reports whether Release(ok) saves the volume to the remote
// (when its content changed): only then does it need the tree's digest.
func (v *Volume) uploads(ok bool) bool {
	return ok && v.req.Upload && v.m.remote != nil && !v.m.readOnly
}

// unregister records the use in the metadata and drops the user lock.
func (v *Volume) unregister(ctx context.Context, update func(*meta)) error {
	return v.m.withGuard(context.WithoutCancel(ctx), v.id, func() error {
		var err error
		if md, rerr := v.m.readMeta(v.id); rerr != nil {
			err = rerr
		} else {
			md.LastUsed = time.Now()
			if update != nil {
				update(&md)
			}
			err = v.m.writeMeta(v.id, md)
		}
		return errors.Join(err, removeLock(v.user, v.userLck))
	})
}

// save uploads the volume if the remote does not hold this content yet,
// and returns the digest the remote now holds.
func (m *Manager) save(ctx context.Context, id string, u usage) (string, error) {
	md, err := m.readMeta(id)
	if err != nil {
		return "", err
	}
	if md.RemoteDigest == u.digest {
		m.log.Debug("cache unchanged; not uploading", "id", id)
		return u.digest, nil
	}
	if err := m.remote.upload(ctx, id, m.dataDir(id), u.digest); err != nil {
		return "", err
	}
	return u.digest, nil
}
