package main

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jobrun/jobrun/internal/testenv"
)

// versionedImages pushes nothing yet: it returns the layout dirs of two
// images, v1 (busybox) and v2 (busybox with VERSION=v2), and a fresh
// :latest tag on the test registry.
func versionedImages(t *testing.T) (v1, v2, tag string) {
	t.Helper()
	reg := testenv.RequireEnv(t, "JOBRUN_TEST_REGISTRY", "a registry (scripts/services.sh)")
	v1 = strings.TrimSuffix(strings.TrimPrefix(busybox(t), "oci-layout:"), ":latest")
	v2 = strings.TrimSuffix(strings.TrimPrefix(derivedImage(t, v1, nil, "VERSION=v2"), "oci-layout:"), ":latest")
	var b [4]byte
	rand.Read(b[:])
	return v1, v2, reg + "/pull-" + hex.EncodeToString(b[:]) + ":latest"
}

// registryConfig writes an agent config that lets jobrun speak plain HTTP
// to the test registry, plus extra, and returns its path.
func registryConfig(t *testing.T, extra string) string {
	t.Helper()
	reg := testenv.RequireEnv(t, "JOBRUN_TEST_REGISTRY", "a registry (scripts/services.sh)")
	cfg := filepath.Join(t.TempDir(), "config.hcl")
	if err := os.WriteFile(cfg, []byte("registry \""+reg+"\" { insecure = true }\n"+extra), 0o644); err != nil {
		t.Fatal(err)
	}
	return cfg
}

func versionJob(tag, pull string) string {
	if pull != "" {
		pull = "pull = \"" + pull + "\""
	}
	return `
job "which" {
  image   = "` + tag + `"
  ` + pull + `
  network = "none"
  step "v" { run = "echo version=$${VERSION:-v1}" }
}
`
}

// TestLocalPullsMovedTag: by default a job's tag is checked at the
// registry and pulled again when it moved: after v2 is pushed as :latest,
// the next run sees v2, on a host that has v1 stored. Before, nothing set
// the pull policy and a stored tag was never pulled again. With pull =
// "if-missing" in the job file, or --pull if-missing, the stored image is
// kept; with never, an image not stored is refused.
func TestLocalPullsMovedTag(t *testing.T) {
	v1, v2, tag := versionedImages(t)
	cfg := registryConfig(t, "")
	h := newTestHost(t)
	run := func(job string, args ...string) localRun {
		t.Helper()
		file := project(t, job, map[string]string{})
		return h.local(t, file, append([]string{"--config", cfg}, args...)...)
	}
	want := func(r localRun, version string) {
		t.Helper()
		if r.code != 0 || !strings.Contains(r.out, "version="+version) {
			t.Fatalf("exit %d, want a run that prints version=%s:\n%s%s", r.code, version, r.out, r.err)
		}
	}
	push(t, v1, tag)
	want(run(versionJob(tag, "")), "v1")
	push(t, v2, tag)
	want(run(versionJob(tag, "")), "v2")

	// The tag moves back to v1; if-missing keeps the stored v2.
	push(t, v1, tag)
	want(run(versionJob(tag, "if-missing")), "v2")
	want(run(versionJob(tag, ""), "--pull", "if-missing"), "v2")
	want(run(versionJob(tag, ""), "--pull", "never"), "v2")
	// The job's always wins over the flag's if-missing.
	want(run(versionJob(tag, "always"), "--pull", "if-missing"), "v1")

	// never with nothing stored: refused, saying why.
	_, _, other := versionedImages(t)
	push(t, v1, other)
	if r := run(versionJob(other, "never")); r.code == 0 || !strings.Contains(r.out+r.err, `pull policy is "never"`) {
		t.Fatalf("pull = never of an image not stored: exit %d\n%s%s", r.code, r.out, r.err)
	}
	if r := run(versionJob(other, ""), "--pull", "sometimes"); r.code != 2 || !strings.Contains(r.err, "--pull") {
		t.Fatalf("--pull sometimes: exit %d, stderr %q", r.code, r.err)
	}
}

// TestAgentConfigPull: the agent config's pull sets the policy of jobs
// that set none, and --pull replaces it.
func TestAgentConfigPull(t *testing.T) {
	v1, v2, tag := versionedImages(t)
	cfg := registryConfig(t, `pull = "if-missing"`)
	h := newTestHost(t)
	file := project(t, versionJob(tag, ""), map[string]string{})
	push(t, v1, tag)
	if r := h.local(t, file, "--config", cfg); r.code != 0 || !strings.Contains(r.out, "version=v1") {
		t.Fatalf("first run: exit %d", r.code)
	}
	push(t, v2, tag)
	if r := h.local(t, file, "--config", cfg); r.code != 0 || !strings.Contains(r.out, "version=v1") {
		t.Fatalf("config pull = if-missing: exit %d, want the stored v1", r.code)
	}
	if r := h.local(t, file, "--config", cfg, "--pull", "always"); r.code != 0 || !strings.Contains(r.out, "version=v2") {
		t.Fatalf("--pull always over the config: exit %d, want v2", r.code)
	}
}
