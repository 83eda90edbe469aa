package cache

import (
	"context"
	"testing"
)

// TestReleaseBesideReleasesOnWait: a volume ReleaseBeside started is
// released, its size measured and recorded, once the returned func has
// returned; a second release is refused.
func TestReleaseBesideReleasesOnWait(t *testing.T) {
	m, v := usedVolume(t)
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
