package main

import (
	"bytes"
	"os/exec"
	"strings"
	"testing"
)

// TestLocalServiceStopsQuietly: stopping a job's service at teardown is
// the expected path, so a real jobrun logs no "step outcome unknown"
// warning for it (it did for every job with a service).
func TestLocalServiceStopsQuietly(t *testing.T) {
	file := project(t, `
job "with-web" {
  image = "IMAGE"
  service "web" {
    image   = "IMAGE"
    command = ["httpd", "-f", "-p", "8080", "-h", "/"]
    port    = 8080
  }
  step "get" { run = "wget -q -O /dev/null http://web:8080/etc/passwd && echo reached-web" }
}
`, map[string]string{})
	bin := buildJobrun(t)
	h := newTestHost(t)
	cmd := exec.Command(bin, "--state-dir", h.state, "--log-level", "warn", "local", "--artifacts", h.artifacts, file)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := runChild(t, cmd)
	t.Logf("jobrun: %v\n%s%s", err, stdout.String(), stderr.String())
	if err != nil {
		t.Fatal(err)
	}
	order(t, stdout.String(), `with-web › get \| reached-web`, `with-web job succeeded`)
	if strings.Contains(stderr.String(), "step outcome unknown") {
		t.Error("the service's teardown warned")
	}
}
