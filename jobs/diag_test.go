package jobs

import (
	"strings"
	"testing"
)

// TestDiagnostics covers the diagnostic kinds the invalid examples do not,
// each with the exact number of diagnostics expected.
func TestDiagnostics(t *testing.T) {
	const ok = "  image = \"busybox\"\n  step \"x\" { run = \"true\" }\n"
	for _, tc := range []struct {
		name string
		src  string
		want []string // substrings of summary or detail, one per diagnostic
	}{
		{"matrix without key", `job "a" {
` + ok + `  matrix { os = ["linux"] }
  env = { A = "${matrix}" }
}`, []string{"Name one matrix key"}},
		{"matrix key too deep", `job "a" {
` + ok + `  matrix { os = ["linux"] }
  env = { A = "${matrix.os.x}" }
}`, []string{"with nothing after it"}},
		{"matrix index syntax works", `job "a" {
` + ok + `  matrix { os = ["linux"] }
  env = { A = "${matrix["os"]}", B = "${matrix["nope"]}" }
}`, []string{`no key "nope"`}},
		{"null value", `job "a" {
` + ok + `  timeout = null
}`, []string{"timeout must not be null"}},
		{"hashfiles bad args", `job "a" {
` + ok + `  cache "c" {
    path = "/c"
    key  = "${hashfiles("/etc/passwd")}-${hashfiles()}-${hashfiles("a/../../b")}"
  }
}`, []string{"is absolute", "needs at least one glob", "leaves the workspace"}},
		{"key not a string", `job "a" {
` + ok + `  cache "c" {
    path = "/c"
    key  = ["a"]
  }
}`, []string{"key must be a string"}},
		{"cache paths and names", `job "a" {
` + ok + `  cache "c" {}
  cache "d" { path = "/" }
  cache "e f" { path = "/e" }
}`, []string{`Cache "c" needs the absolute path`, "over the container's root", `Invalid cache name "e f"`}},
		{"service problems", `job "a" {
` + ok + `  service "DB" { image = "postgres" }
  service "db" {
    image = "postgres"
    port  = 70000
  }
  service "db" { image = "postgres" }
}`, []string{`Invalid service name "DB"`, "port must be greater than 0 and at most 65535", `Duplicate service "db"`}},
		{"env problems", `job "a" {
` + ok + `  env = { A = ["x"], A = "y", "1X" = "z" }
}`, []string{`env["A"] must be a string`, `sets "A" twice`, `"1X" is not a valid variable name`}},
		{"env not an object", `job "a" {
` + ok + `  env = "A=b"
}`, []string{"env must be an object of strings"}},
		{"needs not a list", `job "a" {
` + ok + `  needs = "b"
}`, []string{"needs must be a list of strings"}},
		{"artifacts without paths", `job "a" {
` + ok + `  artifacts { when = "always" }
}
job "b" {
` + ok + `  artifacts { paths = [] }
}`, []string{"An artifacts block needs paths", "List at least one path"}},
		{"workdir", `job "a" {
  image = "busybox"
  step "x" {
    run     = "true"
    workdir = ""
  }
}`, []string{"workdir must be a directory path"}},
		{"step names", `job "a" {
  image = "busybox"
  step "" { run = "true" }
}`, []string{"A step name is non-empty"}},
		{"long job name", `job "` + strings.Repeat("a", 101) + `" {
` + ok + `}`, []string{"at most 100 characters"}},
		{"duplicate trigger", `workflow {
  on "push" {}
  on "push" {}
}
job "a" {
` + ok + `}`, []string{`Duplicate on "push" block`}},
		{"defaults schema", `defaults {
  needs = ["x"]
  step "x" { run = "true" }
}
defaults {}
job "a" {
` + ok + `}`, []string{`argument named "needs" is not expected`, `Blocks of type "step" are not expected`, "Duplicate defaults block"}},
		{"defaults errors reported once", `defaults {
  timeout = "soon"
  cache "x" {}
}
job "a" {
` + ok + `}
job "b" {
` + ok + `}`, []string{`invalid duration "soon"`, `Cache "x" needs the absolute path`}},
		{"matrix errors reported once", `job "a" {
` + ok + `  matrix { os = ["a", "b", "c"] }
  timeout = "soon"
  env = { X = "${HOME}" }
}`, []string{`invalid duration "soon"`, "escape it as $${HOME}"}},
		{"matrix values must be a list", `job "a" {
` + ok + `  matrix { os = "linux" }
}`, []string{"matrix.os must be a list of strings"}},
		{"matrix value types", `job "a" {
` + ok + `  matrix { v = [1, true, ["x"]] }
}`, []string{"each element of matrix.v must be a string"}},
		{"unknown top-level attribute", `version = 2
job "a" {
` + ok + `}`, []string{`argument named "version" is not expected`}},
		{"missing labels", `job {
` + ok + `}`, []string{"Missing name for job"}},
		{"cpus too high and agent type", `job "a" {
` + ok + `  agent = [["x"]]
  resources { cpus = 5000 }
}`, []string{"each element of agent must be a string", "at most 1024"}},
		{"bad tag glob and schedule type", `workflow {
  on "tag" { tags = ["v{1"] }
  on "cron" { schedule = 5 }
}
job "a" {
` + ok + `}`, []string{`invalid pattern "v{1"`, "Invalid cron schedule"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			diags := parseErr(t, tc.src)
			used := make([]bool, len(diags))
			for _, w := range tc.want {
				found := false
				for i, d := range diags {
					if !used[i] && (strings.Contains(d.Summary, w) || strings.Contains(d.Detail, w)) {
						used[i], found = true, true
						if d.Subject == nil || d.Subject.Start.Line == 0 {
							t.Errorf("diagnostic %q has no position", d.Summary)
						}
						break
					}
				}
				if !found {
					t.Errorf("missing diagnostic %q", w)
				}
			}
			for i, d := range diags {
				if !used[i] {
					t.Errorf("unexpected diagnostic %s: %s: %s", d.Subject, d.Summary, d.Detail)
				}
			}
		})
	}
}

// TestEveryErrorInOnePass checks that unrelated errors in different jobs
// and blocks are all reported by one Parse.
func TestEveryErrorInOnePass(t *testing.T) {
	diags := parseErr(t, `
workflow {
  on "cron" { schedule = "nope" }
}
job "a" {
  image = "busybox"
  timeout = "x"
  step "x" { run = "true" }
}
job "b" {
  image = "busybox"
  resources { memory = "lots" }
  step "x" { run = "true" }
  needs = ["c"]
}`)
	if len(diags) != 4 {
		t.Fatalf("got %d diagnostics, want 4: %v", len(diags), diags)
	}
	for i := 1; i < len(diags); i++ {
		if diags[i].Subject.Start.Line < diags[i-1].Subject.Start.Line {
			t.Errorf("diagnostics not in file order: %v", diags)
		}
	}
}
