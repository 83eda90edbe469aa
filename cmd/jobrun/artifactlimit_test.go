package main

import (
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

const bigArtifact = `
job "big" {
  image   = "IMAGE"
  network = "none"
  step "write" { run = "mkdir -p out && head -c 65536 /dev/zero > out/big" }
  artifacts { paths = ["out/big"] }
}
`

// TestLocalArtifactLimit: --artifact-limit caps the bytes a job stores; a
// job over it fails and says why. Before the flag, Runner.ArtifactLimit
// stayed 0 and nothing was ever capped.
func TestLocalArtifactLimit(t *testing.T) {
	file := project(t, bigArtifact, map[string]string{})
	h := newTestHost(t)
	r := h.local(t, file, "--artifact-limit", "16KiB")
	if r.code == 0 {
		t.Fatal("a 64KiB artifact passed a 16KiB cap")
	}
	if !strings.Contains(r.out+r.err, "limit") {
		t.Fatalf("the failure does not name the limit:\n%s%s", r.out, r.err)
	}
	// Positive control: the same job under a cap it fits.
	if r := h.local(t, file, "--artifact-limit", "1MiB"); r.code != 0 {
		t.Fatalf("a 64KiB artifact failed a 1MiB cap: exit %d", r.code)
	}
}

// TestArtifactLimitDefault: the agent and `jobrun local` cap a job's
// artifacts by default, at the server's default --artifact-quota, and
// refuse a cap that is not a size.
func TestArtifactLimitDefault(t *testing.T) {
	g := &globals{}
	for _, c := range []*cobra.Command{newLocalCmd(g), newAgentCmd(g)} {
		fl := c.Flags().Lookup("artifact-limit")
		if fl == nil {
			t.Fatalf("jobrun %s has no --artifact-limit", c.Name())
		}
		if fl.DefValue != "10GiB" {
			t.Errorf("jobrun %s --artifact-limit defaults to %q, want 10GiB", c.Name(), fl.DefValue)
		}
	}
	srv := newServerCmd(g).Flags().Lookup("artifact-quota")
	if srv == nil || srv.DefValue != defaultArtifactLimit {
		t.Errorf("the server's --artifact-quota default %v differs from the agent's cap %s", srv, defaultArtifactLimit)
	}
	h := newTestHost(t)
	file := project(t, bigArtifact, map[string]string{})
	if r := h.local(t, file, "--artifact-limit", "lots"); r.code == 0 || !strings.Contains(r.err, "--artifact-limit") {
		t.Fatalf("--artifact-limit lots: exit %d, stderr %q", r.code, r.err)
	}
}
