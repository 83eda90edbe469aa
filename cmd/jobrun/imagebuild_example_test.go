package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jobrun/jobrun/api"
	"github.com/jobrun/jobrun/internal/gittest"
	"github.com/jobrun/jobrun/internal/testenv"
)

// The example's files and what its "run" job prints.
const (
	imageBuildDir   = "../../examples/image-build"
	imageBuildHello = "hello from image-build 1.0, running as app"
	// imageBuildRef is the image the example pushes, by the address the
	// job pushes to (the file's registry.jobrun.test maps onto it).
	imageBuildRepo = "example/hello:latest"
)

// imageBuildSetup makes what the example needs around a host (the
// agent's side): its builder image by the name the file uses
// (quay.io/buildah/stable, the debian-buildah test image, from the
// services' registry as a mirror of quay.io), the Dockerfile's base in
// the example registry, and the agent config: the mirrors, the login to
// the example registry from a password file, and with pool, the network
// allow entry and ca_file (`jobrun local` gets them as flags). It returns
// the config's text and the env that points the job at the registry.
func imageBuildSetup(t *testing.T, ex exRegistry, pool bool) (string, map[string]string) {
	t.Helper()
	images := testenv.RequireEnv(t, "JOBRUN_TEST_IMAGES", "test images built by scripts/testimages.sh")
	reg := testenv.RequireEnv(t, "JOBRUN_TEST_REGISTRY", "Debian's docker-registry, started by scripts/services.sh")
	push(t, filepath.Join(images, "debian-buildah"), reg+"/buildah/stable:latest")
	ex.push(t, filepath.Join(images, "busybox"), "library/busybox:latest")
	passFile := filepath.Join(t.TempDir(), "registry.pass")
	if err := os.WriteFile(passFile, []byte(ex.pass), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := mirrorConfig(reg, "quay.io") + `registry "registry.jobrun.test" {
  mirrors = ["` + ex.addr + `"]
}
registry "` + ex.addr + `" {
  username      = "` + ex.user + `"
  password_file = "` + passFile + `"
}
`
	if pool {
		cfg += `
ca_file = "` + ex.ca + `"
network {
  allow = ["` + ex.addr + `"]
}
`
	}
	env := map[string]string{"REGISTRY": ex.addr, "BASE_IMAGE": ex.addr + "/library/busybox:latest"}
	return cfg, env
}

// TestImageBuildExampleLocal runs examples/image-build as written with
// `jobrun local`, as scripts/demo.sh does: "build" builds the Dockerfile
// with buildah in an unprivileged job and pushes it over TLS (the test CA
// through --ca-file) with the login of a jobrun secret to a registry on a
// host address that --allow opens; "run" runs the pushed image by its
// reference, pulled by the agent through the config's login. First with a
// wrong password: the login fails, saying so, nothing is pushed and "run"
// does not start; then (the control) with the right one; then again, the
// build taking its layers from the cache volume.
func TestImageBuildExampleLocal(t *testing.T) {
	ex := exampleRegistry(t)
	cfgText, env := imageBuildSetup(t, ex, false)
	cfg := filepath.Join(t.TempDir(), "config.hcl")
	if err := os.WriteFile(cfg, []byte(cfgText), 0o644); err != nil {
		t.Fatal(err)
	}
	h := newTestHost(t)
	args := func(pass string) []string {
		a := []string{"--config", cfg, "--allow", ex.addr, "--ca-file", ex.ca, "--secret", "REGISTRY_PASSWORD=" + pass}
		for k, v := range env {
			a = append(a, "--env", k+"="+v)
		}
		return a
	}
	file := filepath.Join(imageBuildDir, ".ci.hcl")

	bad := h.local(t, file, args("not-"+ex.pass)...)
	out := bad.out + bad.err
	if bad.code == 0 {
		t.Fatalf("a wrong password: exit 0")
	}
	if !strings.Contains(out, "invalid username/password") || !strings.Contains(out, ex.addr) {
		t.Errorf("a wrong password: no message naming the registry and the login")
	}
	if strings.Contains(out, imageBuildHello) {
		t.Error("a wrong password: the run job ran")
	}
	if ex.has(t, imageBuildRepo) {
		t.Error("a wrong password: the image was pushed")
	}

	good := h.local(t, file, args(ex.pass)...)
	out = good.out + good.err
	if good.code != 0 {
		t.Fatalf("exit %d", good.code)
	}
	if !ex.has(t, imageBuildRepo) {
		t.Error("the image is not in the registry")
	}
	if !strings.Contains(out, imageBuildHello) {
		t.Errorf("the run job did not print %q", imageBuildHello)
	}
	if strings.Contains(out, ex.pass) {
		t.Error("the password was printed")
	}

	// The next run's build takes every layer from the builder's storage
	// on the cache volume: "Using cache" for each step after the FROMs
	// (3 in the first stage, 4 in the second), its RUN steps among them.
	again := h.local(t, file, args(ex.pass)...)
	out = again.out + again.err
	if again.code != 0 {
		t.Fatalf("second run: exit %d", again.code)
	}
	if n := strings.Count(out, "Using cache"); n < 7 {
		t.Errorf("second run: the build used the layer cache %d times, want 7", n)
	}
	if !strings.Contains(out, imageBuildHello) {
		t.Errorf("second run: the run job did not print %q", imageBuildHello)
	}
}

// TestImageBuildExamplePool runs examples/image-build on a pool agent: a
// run of the example's repository (served over git's HTTP protocol) whose
// env points the job at the example registry; the agent's config has the
// allow entry, ca_file and the login; REGISTRY_PASSWORD is a secret of the
// repository. "run" prints what the pushed image says.
func TestImageBuildExamplePool(t *testing.T) {
	ex := exampleRegistry(t)
	cfgText, env := imageBuildSetup(t, ex, true)
	bin := buildJobrun(t)
	ctx := context.Background()
	p := startPool(t, bin, "30s")
	h := agentHost(t)
	if err := os.WriteFile(filepath.Join(h.state, "config.hcl"), []byte(cfgText), 0o644); err != nil {
		t.Fatal(err)
	}
	a := p.startAgent(t, bin, h, "imagebuild-agent")
	logs := p.logs(map[string]*daemon{"agent": a})

	files := map[string]string{}
	for _, f := range []string{".ci.hcl", "Dockerfile", "hello.sh", "VERSION"} {
		b, err := os.ReadFile(filepath.Join(imageBuildDir, f))
		if err != nil {
			t.Fatal(err)
		}
		files[f] = string(b)
	}
	w := gittest.New(t)
	head := w.Commit("image-build example", files)
	bare := w.Bare()
	w.Git("push", "-q", "origin", "main")
	url := gittest.Serve(t, filepath.Dir(bare), "") + "/" + filepath.Base(bare)

	const repo = "example.com/image-build"
	if err := p.c.SetSecret(ctx, repo, "REGISTRY_PASSWORD", api.SetSecret{Value: ex.pass}); err != nil {
		t.Fatal(err)
	}
	run, err := p.c.CreateRun(ctx, api.NewRun{Repo: repo, Branch: "main", Commit: head, CloneURL: url,
		File: ".ci.hcl", Source: files[".ci.hcl"], Env: env})
	if err != nil {
		t.Fatal(err)
	}
	r := waitRunLong(t, p.c, run.ID, logs)
	l := runLog(t, p.c, r)
	if r.Status != api.Succeeded {
		t.Fatalf("run %s (%s):\n%s%s", r.Status, r.Reason, l, logs())
	}
	if !strings.Contains(l, imageBuildHello) {
		t.Errorf("the run job did not print %q:\n%s", imageBuildHello, l)
	}
	if !ex.has(t, imageBuildRepo) {
		t.Error("the image is not in the registry")
	}
	if strings.Contains(l, ex.pass) || strings.Contains(a.log(), ex.pass) {
		t.Error("the password was printed")
	}
	a.stop(t)
}

// waitRunLong is waitRunDone for a run that builds an image (a pull of
// the builder image and a build on a busy machine): 10 minutes, scaled by
// the lane's JOBRUN_TEST_TIMESCALE (make test-vm's guests run under TCG).
func waitRunLong(t *testing.T, c *api.Client, id int64, logs func() string) *api.Run {
	t.Helper()
	return waitRunWithin(t, c, id, testenv.Scale(10*time.Minute), 200*time.Millisecond, logs)
}
