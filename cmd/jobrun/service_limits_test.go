package main

import (
	"regexp"
	"testing"

	"github.com/jobrun/jobrun/internal/units"
)

// TestServiceBoundByJobLimits: a job's `resources` bound its services
// too: a service that allocates past the job's memory limit is OOM-killed
// and the job says so. The control: a service allocating less than the
// limit runs, and the job's reported peak memory counts what it used.
func TestServiceBoundByJobLimits(t *testing.T) {
	file := project(t, `
job "hog" {
  image = "IMAGE"
  resources { memory = "32MiB" }
  service "eater" {
    image   = "IMAGE"
    command = ["sh", "-c", "head -c 200m /dev/zero | tail > /dev/null && httpd -f -p 8080 -h /"]
    port    = 8080
  }
  step "x" { run = "echo MUST-NOT-RUN" }
}
job "fits" {
  image = "IMAGE"
  resources { memory = "64MiB" }
  service "holder" {
    image   = "IMAGE"
    command = ["sh", "-c", "head -c 24m /dev/zero | tail > /dev/null && httpd -f -p 8080 -h /"]
    port    = 8080
  }
  step "x" { run = "echo step-ran" }
}
`, map[string]string{})
	h := newTestHost(t)
	r := h.local(t, file)
	if r.code != 1 {
		t.Errorf("exit %d, want 1", r.code)
	}
	order(t, r.out, `hog +error .*service eater: out of memory \(limit 32 MiB\) before it accepted connections`)
	order(t, r.out, `fits › x \| step-ran`, `fits +succeeded`)
	if regexp.MustCompile(`\| MUST-NOT-RUN`).MatchString(r.out) {
		t.Error("the job ran its step with its service dead")
	}
	// The summary's PEAK MEM of "fits" counts its service's 24 MiB; the
	// job's own container (a shell and an echo) uses a few MiB at most.
	m := regexp.MustCompile(`(?m)^fits +succeeded +\S+ +\S+ +(\S+ [KMG]iB) `).FindStringSubmatch(r.out)
	if m == nil {
		t.Fatalf("no peak memory for fits in the summary:\n%s", r.out)
	}
	peak, err := units.ParseSize(m[1])
	if err != nil {
		t.Fatal(err)
	}
	if peak < 24<<20 {
		t.Errorf("fits' peak memory %s leaves out its service's 24 MiB", m[1])
	}
}
