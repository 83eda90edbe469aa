package main

import (
	"regexp"
	"slices"
	"testing"

	"github.com/jobrun/jobrun/jobs"
)

// twoJobs are two independent jobs whose steps print the jobrun variables
// they see, one a line, as "var NAME=VALUE".
const twoJobs = `
job "first" {
  image   = "IMAGE"
  network = "none"
  step "vars" { run = "env | grep -E '^(CI|JOBRUN[A-Z_]*)=' | sed 's/^/var /'" }
}
job "second" {
  image   = "IMAGE"
  network = "none"
  step "vars" { run = "echo second ran" }
}
`

// TestLocalInJobRunsAllJobs is `jobrun local` run inside a job: JOBRUN_JOB,
// which jobrun sets in every step, no longer selects the jobs to run; the
// variables a step sees are all in jobs.Variables (which no flag reads:
// TestFlagVariablesNeverJobVariables); --job and JOBRUN_LOCAL_JOB still
// select.
func TestLocalInJobRunsAllJobs(t *testing.T) {
	file := project(t, twoJobs, map[string]string{})
	h := newTestHost(t)
	ran := func(r localRun) []string {
		var names []string
		for _, j := range []string{"first", "second"} {
			if regexp.MustCompile(`(?m)^` + j + ` job succeeded`).MatchString(r.out) {
				names = append(names, j)
			}
		}
		return names
	}

	t.Run("JOBRUN_JOB", func(t *testing.T) {
		t.Setenv(jobs.VarJob, "first") // as in a step of a job named first
		r := h.local(t, file)
		if r.code != 0 {
			t.Fatalf("exit %d", r.code)
		}
		if got := ran(r); !slices.Equal(got, []string{"first", "second"}) {
			t.Errorf("with JOBRUN_JOB=first in the environment, ran %v, want both jobs", got)
		}
		// Every jobrun variable the step saw is one jobs.Variables lists.
		seen := regexp.MustCompile(`var ([A-Z_]+)=`).FindAllStringSubmatch(r.out, -1)
		if len(seen) < 4 {
			t.Fatalf("the step printed %d jobrun variables:\n%s", len(seen), r.out)
		}
		for _, m := range seen {
			if !slices.Contains(jobs.Variables(), m[1]) {
				t.Errorf("a step sees %s, which jobs.Variables does not list", m[1])
			}
		}
	})
	t.Run("JOBRUN_LOCAL_JOB", func(t *testing.T) {
		t.Setenv("JOBRUN_LOCAL_JOB", "second")
		r := h.local(t, file)
		if got := ran(r); r.code != 0 || !slices.Equal(got, []string{"second"}) {
			t.Errorf("JOBRUN_LOCAL_JOB=second: exit %d, ran %v, want only second", r.code, got)
		}
	})
	t.Run("--job", func(t *testing.T) {
		r := h.local(t, file, "--job", "first")
		if got := ran(r); r.code != 0 || !slices.Equal(got, []string{"first"}) {
			t.Errorf("--job first: exit %d, ran %v, want only first", r.code, got)
		}
	})
}
