package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/jobrun/jobrun/api"
	"github.com/jobrun/jobrun/artifacts"
)

// schedulerStore is the artifacts.Store of one leased attempt when
// artifacts go through the scheduler (its store is a local directory):
// the attempt's own files go up with the agent's token, which the
// scheduler accepts only from the lease holder, and the needed jobs'
// files come down from it. It knows only the refs of its lease: the
// scheduler names attempts by job id, the store by the job's key.
type schedulerStore struct {
	c     *api.Client
	own   artifacts.Ref
	a     api.Attempt
	needs map[artifacts.Ref]api.Attempt
	gone  func() // the attempt is no longer leased to this agent (410)
	// tries bounds the attempts at one call; the job waits meanwhile.
	tries int
}

// errNoList is what List and Sweep report: the scheduler owns its store.
var errNoList = errors.New("artifacts: listing and sweeping are not supported by the scheduler store; the scheduler keeps its own")

func newSchedulerStore(c *api.Client, l *api.Lease, own artifacts.Ref, gone func()) *schedulerStore {
	s := &schedulerStore{c: c, own: own, a: l.Attempt, needs: map[artifacts.Ref]api.Attempt{}, gone: gone, tries: 5}
	for _, n := range l.Needs {
		ref := artifacts.Ref{Repo: own.Repo, Run: own.Run, Job: n.Key, Attempt: n.Attempt}
		s.needs[ref] = api.Attempt{Job: n.ID, Attempt: n.Attempt}
	}
	return s
}

// attempt maps ref to the scheduler's attempt; writes only to the lease's own.
func (s *schedulerStore) attempt(ref artifacts.Ref, write bool) (api.Attempt, error) {
	if ref == s.own {
		return s.a, nil
	}
	if a, ok := s.needs[ref]; ok && !write {
		return a, nil
	}
	if write {
		return api.Attempt{}, fmt.Errorf("artifacts: %s is not the attempt leased as %s, so not one it may write", ref, s.a)
	}
	return api.Attempt{}, fmt.Errorf("artifacts: %s is neither the attempt leased as %s nor one it needs", ref, s.a)
}

// call runs fn until it goes through, a few times on network errors and
// 5xx; a 410 means the attempt is gone and a 404 is ErrNotFound.
func (s *schedulerStore) call(ctx context.Context, fn func() error) error {
	b := &backoff{min: 250 * time.Millisecond, max: 5 * time.Second}
	for i := 1; ; i++ {
		err := fn()
		switch verdict(err) {
		case sent:
			return nil
		case gone:
			s.gone()
			return fmt.Errorf("%w (%s is no longer leased to this agent)", err, s.a)
		case refused:
			if api.IsStatus(err, http.StatusNotFound) {
				return fmt.Errorf("%w: %w", artifacts.ErrNotFound, err)
			}
			return err
		}
		if i >= s.tries || !b.wait(ctx) {
			return err
		}
	}
}

// Begin checks that ref is the lease's attempt; the scheduler makes the
// claim when it leases the attempt.
func (s *schedulerStore) Begin(ctx context.Context, ref artifacts.Ref) error {
	_, err := s.attempt(ref, true)
	return err
}

// Put uploads one file; each try reads it again from the start.
func (s *schedulerStore) Put(ctx context.Context, ref artifacts.Ref, path string, r io.ReaderAt, size int64) error {
	a, err := s.attempt(ref, true)
	if err != nil {
		return err
	}
	return s.call(ctx, func() error {
		return s.c.PutArtifact(ctx, a, path, io.NewSectionReader(r, 0, size), size)
	})
}

// Commit sends the manifest, which completes the attempt's artifacts.
func (s *schedulerStore) Commit(ctx context.Context, m *artifacts.Manifest) error {
	a, err := s.attempt(m.Ref(), true)
	if err != nil {
		return err
	}
	return s.call(ctx, func() error { return s.c.CommitArtifacts(ctx, a, m) })
}

// Abort drops what was uploaded.
func (s *schedulerStore) Abort(ctx context.Context, ref artifacts.Ref) error {
	a, err := s.attempt(ref, true)
	if err != nil {
		return err
	}
	return s.call(ctx, func() error { return s.c.AbortArtifacts(ctx, a) })
}

// Manifest reads the manifest of the lease's attempt or of a needed one.
func (s *schedulerStore) Manifest(ctx context.Context, ref artifacts.Ref) (*artifacts.Manifest, error) {
	a, err := s.attempt(ref, false)
	if err != nil {
		return nil, err
	}
	var m artifacts.Manifest
	if err := s.call(ctx, func() error { return s.c.Manifest(ctx, a, &m) }); err != nil {
		return nil, err
	}
	return &m, nil
}

// Open reads one file of the lease's attempt or of a needed one.
func (s *schedulerStore) Open(ctx context.Context, ref artifacts.Ref, path string) (io.ReadCloser, error) {
	a, err := s.attempt(ref, false)
	if err != nil {
		return nil, err
	}
	var rc io.ReadCloser
	err = s.call(ctx, func() error {
		var err error
		rc, err = s.c.OpenArtifact(ctx, a, path)
		return err
	})
	return rc, err
}

// List is not supported: see errNoList.
func (s *schedulerStore) List(ctx context.Context, repo, run string) ([]artifacts.Ref, error) {
	return nil, errNoList
}

// Sweep is not supported: see errNoList.
func (s *schedulerStore) Sweep(ctx context.Context, now time.Time) ([]artifacts.Ref, error) {
	return nil, errNoList
}
