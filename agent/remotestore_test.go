package agent

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jobrun/jobrun/api"
	"github.com/jobrun/jobrun/artifacts"
)

func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func upload(t *testing.T, st artifacts.Store, ref artifacts.Ref, ws string) (*artifacts.Manifest, error) {
	t.Helper()
	c, err := artifacts.Collect(context.Background(), ws, []string{"out/**"}, artifacts.CollectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return artifacts.Upload(context.Background(), st, ref, c, artifacts.UploadOptions{})
}

// TestSchedulerStoreUploadThenFetchAsNeed: a job's artifacts go up through
// the scheduler (a 5xx and a lost reply on the way are retried), and a
// later job that needs it fetches them by the needed job's key and
// attempt, mapped to the scheduler's job id.
func TestSchedulerStoreUploadThenFetchAsNeed(t *testing.T) {
	f := newFakeScheduler(t)
	ws := t.TempDir()
	writeFiles(t, ws, map[string]string{"out/app": "binary", "out/sub/notes.txt": "notes"})
	build := &api.Lease{Attempt: api.Attempt{Job: 41, Attempt: 2}, Repo: "example.com/app", Run: "r1"}
	own := artifacts.Ref{Repo: build.Repo, Run: build.Run, Job: "build", Attempt: 2}
	f.injectNext("put", "500", "drop")
	st := newSchedulerStore(f.client(), build, own, func() { t.Error("gone called") })
	m, err := upload(t, st, own, ws)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Files) != 2 {
		t.Fatalf("manifest lists %d files, want 2", len(m.Files))
	}

	ship := &api.Lease{Attempt: api.Attempt{Job: 42, Attempt: 1}, Repo: build.Repo, Run: build.Run,
		Needs: []api.Need{{ID: 41, Key: "build", Attempt: 2}}}
	shipRef := artifacts.Ref{Repo: build.Repo, Run: build.Run, Job: "ship", Attempt: 1}
	st2 := newSchedulerStore(f.client(), ship, shipRef, func() { t.Error("gone called") })
	dst := t.TempDir()
	f.injectNext("manifest", "500")
	if _, err := artifacts.Fetch(context.Background(), st2, own, dst); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"out/app": "binary", "out/sub/notes.txt": "notes"} {
		if b, err := os.ReadFile(filepath.Join(dst, name)); err != nil || string(b) != want {
			t.Errorf("%s = %q, %v; want %q", name, b, err, want)
		}
	}

	// A needed job that stored nothing: ErrNotFound, which the Runner
	// skips. The positive control is the fetch above.
	none := artifacts.Ref{Repo: build.Repo, Run: build.Run, Job: "lint", Attempt: 1}
	ship.Needs = append(ship.Needs, api.Need{ID: 40, Key: "lint", Attempt: 1})
	st3 := newSchedulerStore(f.client(), ship, shipRef, func() {})
	if _, err := st3.Manifest(context.Background(), none); !errors.Is(err, artifacts.ErrNotFound) {
		t.Errorf("manifest of a job with no artifacts: %v, want ErrNotFound", err)
	}
	// Refs the lease does not name are refused before any request.
	if err := st2.Put(context.Background(), own, "x", strings.NewReader("x"), 1); err == nil {
		t.Error("a lease wrote a needed job's artifacts")
	}
	if _, err := st2.Manifest(context.Background(), artifacts.Ref{Repo: build.Repo, Run: build.Run, Job: "other", Attempt: 1}); err == nil {
		t.Error("a lease read a job it does not need")
	}
	if _, err := st2.List(context.Background(), build.Repo, build.Run); err == nil || !strings.Contains(err.Error(), "not supported by the scheduler store") {
		t.Errorf("List: %v", err)
	}
	if _, err := st2.Sweep(context.Background(), time.Now()); err == nil {
		t.Error("Sweep worked on the scheduler store")
	}
}

// TestSchedulerStoreGone: a 410 on an upload means the attempt is no
// longer this agent's: the upload fails, the lease is told, and nothing
// is committed.
func TestSchedulerStoreGone(t *testing.T) {
	f := newFakeScheduler(t)
	ws := t.TempDir()
	writeFiles(t, ws, map[string]string{"out/app": "binary"})
	l := &api.Lease{Attempt: api.Attempt{Job: 50, Attempt: 1}, Repo: "example.com/app", Run: "r1"}
	own := artifacts.Ref{Repo: l.Repo, Run: l.Run, Job: "build", Attempt: 1}
	var gone atomic.Int32
	st := newSchedulerStore(f.client(), l, own, func() { gone.Add(1) })
	f.injectNext("put", "410")
	_, err := upload(t, st, own, ws)
	if err == nil || !api.IsStatus(err, 410) {
		t.Fatalf("upload after a 410: %v, want the 410", err)
	}
	if gone.Load() == 0 {
		t.Error("the lease was not told the attempt is gone")
	}
	f.mu.Lock()
	_, committed := f.manifests[l.Attempt]
	f.mu.Unlock()
	if committed {
		t.Error("a gone attempt's manifest was committed")
	}
}
