package cache

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
)

// TestReleaseBesideReleasesOnWait: a volume ReleaseBeside started is
// released, its size measured and recorded, once the returned func has
// returned; a second release is refused.
func TestReleaseBesideReleasesOnWait(t *testing.T) {
	m, _ := newManager(t, Options{})
	v := acquire(t, m, Request{Repo: "r", Name: "c"})
	writeFile(t, filepath.Join(v.Path(), "f"), strings.Repeat("x", 64<<10))
	if err := v.ReleaseBeside(context.Background(), true)(); err != nil {
		t.Fatal(err)
	}
	list, err := m.List()
	if err != nil || len(list) != 1 || list[0].InUse || list[0].Size < 64<<10 {
		t.Fatalf("after the wait: %+v, %v; want the volume idle, measured at 64 KiB or more", list, err)
	}
	if err := v.ReleaseBeside(context.Background(), true)(); err == nil {
		t.Error("second release: no error")
	}
	if err := v.Release(context.Background(), true); err == nil {
		t.Error("third release (Release): no error")
	}
}
