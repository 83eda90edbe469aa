package sandbox

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/hashicorp/go-hclog"
)

// TestCompiledFiltersKeptOnDisk: a filter compiled by one Runtime is
// found, compiled, at first sight by the next one on the same state dir
// (a process of its own per `jobrun local` run), byte for byte; a stored
// file that does not read back whole, or one a different starter
// binary compiled, is not used (the filter is compiled again).
func TestCompiledFiltersKeptOnDisk(t *testing.T) {
	rt, dir := newRuntime(t)
	cfg, err := defaultSeccomp(rt.launcher, true)
	if err != nil {
		t.Fatal(err)
	}
	want := rt.filters.filter(cfg, true)
	if want == nil {
		t.Fatal("no filter compiled")
	}
	next := func(starter string) *filterCache {
		fc := newFilterCache(starter, hclog.NewNullLogger())
		fc.store = newFilterStore(dir, starter)
		if fc.store == nil {
			t.Fatal("no filter store")
		}
		return fc
	}
	starter := rt.filters.starter
	got := next(starter).filter(cfg, false)
	if got == nil {
		t.Fatal("the next Runtime did not find the compiled filter")
	}
	if got.Flags != want.Flags || !bytes.Equal(got.Program, want.Program) {
		t.Fatalf("stored filter differs: flags %#x, %d bytes; compiled %#x, %d bytes", got.Flags, len(got.Program), want.Flags, len(want.Program))
	}

	// A damaged file is not loaded; the filter is compiled again, and
	// stored whole.
	p := next(starter).store.path(mustJSON(t, cfg))
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	b[len(filterMagic)+8] ^= 0xff
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	fc := next(starter)
	if f := fc.filter(cfg, false); f != nil {
		t.Fatal("a damaged stored filter was loaded")
	}
	// libseccomp may order an equal filter's instructions differently
	// from one compile to the next: what is stored is what was compiled
	// again, whatever its order.
	again := fc.filter(cfg, true)
	if again == nil || again.Flags != want.Flags {
		t.Fatal("not compiled again")
	}
	if f := next(starter).filter(cfg, false); f == nil || !bytes.Equal(f.Program, again.Program) {
		t.Fatal("the filter compiled again was not stored")
	}

	// Another starter binary (a new build of the helpers) does not use
	// what this one compiled.
	other := filepath.Join(t.TempDir(), "jobrun-starter")
	sb, err := os.ReadFile(starter)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(other, sb, 0o755); err != nil {
		t.Fatal(err)
	}
	if f := next(other).filter(cfg, false); f != nil {
		t.Error("another starter's Runtime used this starter's stored filter")
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestStoredFilterMustBeOurs: a stored filter confines jobs, so one that
// another user could have written is not loaded: a group- or
// world-writable file, or a file of another owner; a store dir others
// may write is not used at all. Control: the same file, 0600 and ours,
// is loaded.
func TestStoredFilterMustBeOurs(t *testing.T) {
	rt, dir := newRuntime(t)
	cfg, err := defaultSeccomp(rt.launcher, false)
	if err != nil {
		t.Fatal(err)
	}
	if rt.filters.filter(cfg, true) == nil {
		t.Fatal("no filter compiled")
	}
	starter := rt.filters.starter
	fs := newFilterStore(dir, starter)
	p := fs.path(mustJSON(t, cfg))
	if fs.loadFor(mustJSON(t, cfg)) == nil {
		t.Fatal("control: our own stored filter was not loaded")
	}
	if err := os.Chmod(p, 0o622); err != nil {
		t.Fatal(err)
	}
	if fs.loadFor(mustJSON(t, cfg)) != nil {
		t.Error("a group- and world-writable stored filter was loaded")
	}
	if err := os.Chmod(p, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(p, 1234, 1234); err != nil {
		t.Fatal(err)
	}
	if fs.loadFor(mustJSON(t, cfg)) != nil {
		t.Error("another user's stored filter was loaded")
	}
	if err := os.Chown(p, 0, 0); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(dir, "seccomp"), 0o777); err != nil {
		t.Fatal(err)
	}
	if newFilterStore(dir, starter) != nil {
		t.Error("a world-writable store dir was used")
	}
	if err := os.Chmod(filepath.Join(dir, "seccomp"), 0o700); err != nil {
		t.Fatal(err)
	}
}
