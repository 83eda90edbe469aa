package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jobrun/jobrun/internal/testenv"
)

// TestExamplesRun runs every example as written, with its ordinary image
// names (busybox, golang:1.26) served by a real registry configured as a
// mirror of Docker Hub, as `make demo` does.
func TestExamplesRun(t *testing.T) {
	testenv.RequireRoot(t)
	cfg := filepath.Join(t.TempDir(), "config.hcl")
	os.WriteFile(cfg, []byte(examplesMirror(t)), 0o644)

	h := newTestHost(t)
	dirs, _ := filepath.Glob("../../examples/*/.ci.hcl")
	if len(dirs) < 4 {
		t.Fatalf("found %d examples", len(dirs))
	}
	for _, file := range dirs {
		name := filepath.Base(filepath.Dir(file))
		if name == "image-build" {
			// It needs a registry of its own, an allow entry and a CA:
			// TestImageBuildExampleLocal and TestImageBuildExamplePool.
			continue
		}
		t.Run(name, func(t *testing.T) {
			args := []string{"--config", cfg}
			if name == "services" {
				args = append(args, "--secret", "DATABASE_PASSWORD=example")
			}
			r := h.local(t, file, args...)
			if name == "services" && !strings.Contains(r.out, "service web: ready on port 8080") {
				t.Error("services example: the service was not reported ready")
			}
			if r.code != 0 {
				t.Errorf("examples/%s: exit %d", name, r.code)
			}
		})
	}
}
