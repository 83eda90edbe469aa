package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jobrun/jobrun/internal/testenv"
)

// TestRootlessPastaFailureErrorsTheJob: a rootless bridge job's container
// starts while pasta configures its namespace (issue #18's bench); when
// pasta ends instead (here the real pasta, refusing an option a wrapper
// first on PATH adds), the job errors before its first step with pasta's
// own words, and nothing is left: no process, no namespace, no state. The
// control: the same job with the plain pasta runs its step.
func TestRootlessPastaFailureErrorsTheJob(t *testing.T) {
	tunForUsers(t)
	real := testenv.RequireTool(t, "pasta")
	u := newRLUser(t, true)
	wrap := filepath.Join(u.home, "badpasta")
	if err := os.MkdirAll(wrap, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(wrap, "pasta"), []byte("#!/bin/sh\nexec "+real+" --no-such-option \"$@\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	file := u.write(t, `
job "net" {
  image = "IMAGE"
  step "s" { run = "echo STEP-RAN" }
}
`)
	run := func(path string) localRun {
		cmd := u.command("local", "--artifacts", filepath.Join(u.home, "artifacts"), file)
		for i, e := range cmd.Env {
			if strings.HasPrefix(e, "PATH=") {
				cmd.Env[i] = "PATH=" + path
			}
		}
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		t.Logf("exit %d\n%s%s", code, out.String(), errb.String())
		return localRun{out.String(), errb.String(), code}
	}
	plain := "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"
	r := run(plain)
	if r.code != 0 || !strings.Contains(r.out, "STEP-RAN") {
		t.Fatalf("control: exit %d", r.code)
	}
	u.checkLeaks(t)

	r = run(wrap + ":" + plain)
	if r.code != 1 || strings.Contains(r.out, "STEP-RAN") {
		t.Errorf("with pasta failing: exit %d, or the step ran", r.code)
	}
	if !strings.Contains(r.out, "pasta ended before the network was ready") || !strings.Contains(r.out, "unrecognized option '--no-such-option'") {
		t.Errorf("the job's reason does not say pasta failed and why:\n%s", r.out)
	}
	netDir := filepath.Join(u.stateDir(), "network")
	if ents, _ := os.ReadDir(netDir); len(ents) > 0 {
		t.Errorf("%s left: %v", netDir, ents)
	}
}
