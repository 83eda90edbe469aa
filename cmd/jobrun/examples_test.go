package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/jobrun/jobrun/internal/testenv"
)

// TestExamplesRun runs every example as written, with its ordinary image
// names (busybox, golang:1.26) served by a real registry configured as a
// mirror of Docker Hub, as `make demo` does.
func TestExamplesRun(t *testing.T) {
	testenv.RequireRoot(t)
	images := testenv.RequireEnv(t, "JOBRUN_TEST_IMAGES", "test images built by scripts/testimages.sh")
	reg := testenv.RequireEnv(t, "JOBRUN_TEST_REGISTRY", "Debian's docker-registry, started by scripts/services.sh")
	push(t, filepath.Join(images, "busybox"), reg+"/library/busybox:latest")
	push(t, filepath.Join(images, "debian-go"), reg+"/library/golang:1.26")
	cfg := filepath.Join(t.TempDir(), "config.hcl")
	os.WriteFile(cfg, []byte(`
registry "docker.io" {
  mirrors = ["`+reg+`"]
}
registry "`+reg+`" {
  insecure = true
}
`), 0o644)

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

// push copies the only image of an OCI layout to a registry reference.
func push(t *testing.T, dir, ref string) {
	t.Helper()
	p, err := layout.FromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := p.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	m, err := idx.IndexManifest()
	if err != nil || len(m.Manifests) == 0 {
		t.Fatalf("layout %s: %v", dir, err)
	}
	img, err := idx.Image(m.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
}
