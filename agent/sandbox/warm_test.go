package sandbox

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/jobrun/jobrun/internal/testenv"
)

// waitFor polls cond for up to a few seconds.
func waitFor(cond func() bool) bool {
	for deadline := time.Now().Add(testenv.Scale(5 * time.Second)); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if cond() {
			return true
		}
	}
	return cond()
}

// TestWarmer checks that the warmer moves this process into its own
// cgroup while a start is under way, stops when none is, and turns itself
// off where it cannot.
func TestWarmer(t *testing.T) {
	testenv.RequireRoot(t)
	w := newWarmer(hclog.NewNullLogger())
	if w.off {
		t.Fatalf("warmer off: no cgroup.procs of this process found")
	}
	end := w.begin()
	if !waitFor(func() bool { return w.moves.Load() >= 3 }) {
		t.Fatalf("warmer made %d moves while a start was under way", w.moves.Load())
	}
	end()
	end() // a second call does nothing
	n := w.moves.Load()
	time.Sleep(5 * warmEvery)
	if d := w.moves.Load() - n; d > 1 {
		t.Errorf("warmer made %d moves after the start ended", d)
	}
	if w.off {
		t.Error("warmer turned itself off")
	}

	// Where the move is refused, the warmer turns itself off.
	bad := newWarmer(hclog.NewNullLogger())
	bad.procs = filepath.Join(t.TempDir(), "no-such-dir", "cgroup.procs")
	end = bad.begin()
	if !waitFor(func() bool { bad.mu.Lock(); defer bad.mu.Unlock(); return bad.off }) {
		t.Error("warmer with no cgroup to move into stayed on")
	}
	end()
	if bad.moves.Load() != 0 {
		t.Errorf("refused moves counted: %d", bad.moves.Load())
	}
}
