package agent

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/jobrun/jobrun/agent/sandbox"
)

// TestUsernsWorkspaceBehindPrivateDir: the jobs' workspaces directory is
// 0700, so a job's root (a range id on the host) has no way through it to
// any workspace, its own or another job's; the job still gets its own at
// /workspace, since the container's bind of it is made from the host side
// (libcontainer opens a source its init cannot reach with open_tree and
// hands it over).
func TestUsernsWorkspaceBehindPrivateDir(t *testing.T) {
	r := usernsRunner(t, 1, false, "")
	f := parseJobs(t, busybox(t), `
job "w" {
  image   = "IMAGE"
  network = "none"
  step "write" { run = "echo built > /workspace/out && cat /workspace/out; exit 1" }
}
`)
	base := filepath.Join(r.WorkDir, "workspaces")
	inspected := false
	r.Inspect = func(ctx context.Context, name string, ct *sandbox.Container) {
		inspected = true
		fi, err := os.Stat(base)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o700 {
			t.Errorf("%s is %s, want 0700", base, fi.Mode().Perm())
		}
		ents, err := os.ReadDir(base)
		if err != nil {
			t.Fatal(err)
		}
		var merged string
		for _, e := range ents {
			if p := filepath.Join(base, e.Name(), "merged"); e.IsDir() && fileExists(p+"/out") {
				merged = p
			}
		}
		if merged == "" {
			t.Fatalf("no workspace with the job's out under %s: %v", base, ents)
		}
		ls := func(uid uint32) (string, error) {
			cmd := exec.Command("/bin/ls", merged)
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: uid}}
			out, err := cmd.CombinedOutput()
			return string(out), err
		}
		// The job's root, on the host, cannot reach the workspace by
		// its path; the host's root (the positive control) can.
		if out, err := ls(firstRange); err == nil || !strings.Contains(out, "ermission denied") {
			t.Errorf("the job's root listed its workspace by its host path: %v %s", err, out)
		}
		if out, err := ls(0); err != nil || !strings.Contains(out, "out") {
			t.Errorf("root's ls of %s: %v %s", merged, err, out)
		}
	}
	var ev events
	res := r.Run(context.Background(), job(t, f, "w"), &ev)
	if res.Status != Failed || !inspected {
		t.Fatalf("w: %s %s (inspected %v)\n%s", res.Status, res.Reason, inspected, ev.text())
	}
	if !strings.Contains(ev.text(), "built") {
		t.Errorf("the job did not write and read its workspace:\n%s", ev.text())
	}
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
