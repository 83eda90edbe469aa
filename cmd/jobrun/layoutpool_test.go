package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jobrun/jobrun/api"
	"github.com/jobrun/jobrun/internal/gittest"
	"github.com/jobrun/jobrun/internal/testenv"
)

// TestAgentRelativeLayoutFromCheckout: on the pool, a job of a repository
// whose job file (ci/.ci.hcl) names a relative oci-layout: image finds it in
// its checkout, beside the job file, as `jobrun local` does. Before, the
// agent resolved it against an empty directory and the job ended in error.
// A relative path that leaves the checkout, by .. or by a symbolic link
// committed in the repository, is refused: the agent's own files are not
// the repository's to name.
func TestAgentRelativeLayoutFromCheckout(t *testing.T) {
	busyboxDir := testenv.RequireEnv(t, "JOBRUN_TEST_IMAGES_BUSYBOX", "test images built by scripts/testimages.sh")
	busybox(t)
	bin := buildJobrun(t)
	ctx := context.Background()

	w := gittest.New(t)
	if err := os.MkdirAll(filepath.Join(w.Dir, "ci", "images"), 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("cp", "-r", busyboxDir, filepath.Join(w.Dir, "ci", "images", "busybox")).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	// An image the jobs' user namespaces cannot map is refused, and
	// forgotten like the others.
	high := derivedImage(t, busyboxDir, []layerFile{{name: "opt", dir: true}, {name: "opt/x", body: "x", uid: 100000}})
	high = strings.TrimSuffix(strings.TrimPrefix(high, "oci-layout:"), ":latest")
	if out, err := exec.Command("cp", "-r", high, filepath.Join(w.Dir, "ci", "images", "high")).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	if err := os.Symlink(busyboxDir, filepath.Join(w.Dir, "ci", "link")); err != nil {
		t.Fatal(err)
	}
	escape := strings.Repeat("../", 30) + strings.TrimPrefix(busyboxDir, "/")
	source := `
job "relative" {
  image   = "oci-layout:images/busybox:latest"
  agent   = ["e2e"]
  network = "none"
  step "x" { run = "echo from-the-checkout" }
}
job "dotdot" {
  image   = "oci-layout:` + escape + `:latest"
  agent   = ["e2e"]
  network = "none"
  step "x" { run = "echo escaped" }
}
job "symlink" {
  image   = "oci-layout:link:latest"
  agent   = ["e2e"]
  network = "none"
  step "x" { run = "echo escaped" }
}
job "highids" {
  image   = "oci-layout:images/high:latest"
  agent   = ["e2e"]
  network = "none"
  step "x" { run = "echo unmappable-ran" }
}
`
	w.Git("add", "-A")
	head := w.Commit("layouts", map[string]string{"ci/.ci.hcl": source})
	bare := w.Bare()
	w.Git("push", "-q", "origin", "main")
	cloneURL := gittest.Serve(t, filepath.Dir(bare), "") + "/" + filepath.Base(bare)

	p := startPool(t, bin, "10s")
	h := agentHost(t)
	a := p.startAgent(t, bin, h, "layout-agent")
	logs := p.logs(map[string]*daemon{"agent": a})
	run, err := p.c.CreateRun(ctx, api.NewRun{Repo: "layouts", Branch: "main", Commit: head, CloneURL: cloneURL,
		File: "ci/.ci.hcl", Source: source})
	if err != nil {
		t.Fatal(err)
	}
	r := waitRunDone(t, p.c, run.ID, logs)
	want := map[string]string{"relative": api.Succeeded, "dotdot": api.Errored, "symlink": api.Errored, "highids": api.Errored}
	for _, rj := range r.Jobs {
		j, err := p.c.Job(ctx, rj.ID)
		if err != nil {
			t.Fatal(err)
		}
		reason := j.Reason
		if j.Result != nil {
			reason += " " + j.Result.Reason
		}
		t.Logf("job %s: %s (%s)", j.Name, j.Status, reason)
		if j.Status != want[j.Name] {
			t.Errorf("job %s: %s (%s), want %s%s", j.Name, j.Status, reason, want[j.Name], logs())
		}
		if j.Name == "highids" {
			if !strings.Contains(reason, "has /opt/x owned by 100000:0; a job's user namespace maps ids 0-65535 only") {
				t.Errorf("job highids: reason %q does not name the unmappable file", reason)
			}
			continue
		}
		if j.Name != "relative" && !strings.Contains(reason, "leaves the checkout") {
			t.Errorf("job %s: reason %q does not say the path leaves the checkout", j.Name, reason)
		}
	}
	if l := runLog(t, p.c, r); !strings.Contains(l, "from-the-checkout") || strings.Contains(l, "escaped") || strings.Contains(l, "unmappable-ran") {
		t.Errorf("run log:\n%s", l)
	}
	a.stop(t)
	// The checkout's image is forgotten with the job: no record of a path
	// under work/ piles up in the store.
	recs, _ := filepath.Glob(filepath.Join(h.state, "images", "images", "*.json"))
	for _, rec := range recs {
		if b, _ := os.ReadFile(rec); strings.Contains(string(b), "/work/") {
			t.Errorf("image record %s names a job's workspace: %s", rec, b)
		}
	}
}
