package mount

import (
	"strings"
	"testing"
)

// TestChooseUserOverlayBadValue: an unknown JOBRUN_ROOTLESS_OVERLAY is
// refused, naming the variable and what it takes, before any probe.
func TestChooseUserOverlayBadValue(t *testing.T) {
	t.Setenv(OverlayEnv, "fusee")
	dir := t.TempDir()
	_, err := ChooseUserOverlay(dir)
	if err == nil || !strings.Contains(err.Error(), `JOBRUN_ROOTLESS_OVERLAY="fusee": want native or fuse`) {
		t.Fatalf("got %v", err)
	}
}
