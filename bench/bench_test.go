// Package bench_test runs every bench under bench/ in its tiny mode (a few
// rounds each), so that a broken bench fails `make test` instead of
// waiting for someone to run `make bench`; it asserts what the benches
// write, never how fast anything was.
package bench_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/jobrun/jobrun/bench/internal/result"
	"github.com/jobrun/jobrun/internal/testenv"
)

// benches lists the directories here with a run.sh: what bench/run.sh runs.
func benches(t *testing.T) []string {
	t.Helper()
	paths, err := filepath.Glob("*/run.sh")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range paths {
		names = append(names, filepath.Dir(p))
	}
	if len(names) == 0 {
		t.Fatal("no bench/*/run.sh")
	}
	return names
}

// TestBenchesRunTiny runs each bench with TINY=1 and checks its JSON, then
// the report made from them all.
func TestBenchesRunTiny(t *testing.T) {
	testenv.RequireRoot(t)
	for _, tool := range []string{"runc", "podman", "umoci", "skopeo", "docker-registry", "minio", "mc", "psql", "git", "tar"} {
		testenv.RequireTool(t, tool)
	}
	testenv.RequireEnv(t, "JOBRUN_TEST_POSTGRES", "PostgreSQL")
	testenv.RequireEnv(t, "JOBRUN_TEST_MINIO", "MinIO")
	out := t.TempDir()
	tools := t.TempDir()
	// One build of jobrun, its helpers and every bench's command, shared
	// by the benches through BENCH_BIN, as bench/run.sh does. Without a
	// symbol table and DWARF (-s -w) the eleven links take 40% less time;
	// stack traces keep their function names and lines.
	build := exec.Command("go", "build", "-tags", "seccomp", "-ldflags=-s -w", "-o", tools+"/", "../cmd/jobrun", "./...")
	build.Env = append(os.Environ(), "CGO_ENABLED=1")
	if b, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building jobrun and the benches: %v\n%s", err, b)
	}
	if b, err := exec.Command("../scripts/helpers.sh", tools).CombinedOutput(); err != nil {
		t.Fatalf("building jobrun's helpers: %v\n%s", err, b)
	}
	env := append(os.Environ(), "TINY=1", "BENCH_OUT="+out, "BENCH_BIN="+tools, "BENCHRESULT="+filepath.Join(tools, "benchresult"))
	var ran []string // the benches run (-run may pick some)
	for _, n := range benches(t) {
		t.Run(n, func(t *testing.T) {
			ran = append(ran, n)
			cmd := exec.Command(filepath.Join(n, "run.sh"))
			cmd.Env = env
			b, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("bench/%s/run.sh: %v\n%s", n, err, b)
			}
			f, err := result.Read(filepath.Join(out, n+".json"))
			if err != nil {
				t.Fatalf("bench/%s wrote no valid result: %v\n%s", n, err, b)
			}
			if f.Bench != n || f.Title == "" {
				t.Errorf("bench/%s: result names bench %q, title %q", n, f.Bench, f.Title)
			}
			if f.Machine.Kernel == "" || f.Machine.Cores == 0 || f.Machine.Cgroup == "" {
				t.Errorf("bench/%s: machine facts missing: %+v", n, f.Machine)
			}
			peers := 0
			for _, m := range f.Metrics {
				if len(m.Samples) == 0 {
					t.Errorf("bench/%s: %s of %s has no samples", n, m.Metric, m.Tool)
				}
				if m.Peer != "" {
					peers++
					if m.Ratio <= 0 {
						t.Errorf("bench/%s: %s of %s: ratio to %s is %v", n, m.Metric, m.Tool, m.Peer, m.Ratio)
					}
				}
			}
			if peers == 0 {
				t.Errorf("bench/%s compares no tool with a peer", n)
			}
		})
	}
	if t.Failed() || len(ran) == 0 {
		return
	}
	cmd := exec.Command(filepath.Join(tools, "report"), "-in", out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("report: %v\n%s", err, b)
	}
	md, err := os.ReadFile(filepath.Join(out, "REPORT.md"))
	if err != nil {
		t.Fatal(err)
	}
	page, err := os.ReadFile(filepath.Join(out, "report.html"))
	if err != nil {
		t.Fatal(err)
	}
	svgs, _ := filepath.Glob(filepath.Join(out, "*.svg"))
	for _, n := range ran {
		if !strings.Contains(string(md), "\n## "+n+"\n") {
			t.Errorf("REPORT.md has no section for %s", n)
		}
		if !slices.ContainsFunc(svgs, func(p string) bool { return strings.HasPrefix(filepath.Base(p), n+"-") }) {
			t.Errorf("no chart of %s in %v", n, svgs)
		}
	}
	for _, p := range svgs {
		if !strings.Contains(string(page), `<img src="`+filepath.Base(p)+`"`) {
			t.Errorf("report.html does not embed %s", filepath.Base(p))
		}
		if b, err := os.ReadFile(p); err != nil || !strings.Contains(string(b), "<svg") {
			t.Errorf("%s is not an SVG: %v", p, err)
		}
	}
}

// TestRunReportsEachFailedBench runs bench/run.sh over three benches: one
// that fails, one that writes no figures and one that works. The working
// one must still run and be in the report, each failure must be named, and
// the run must fail saying how many did.
func TestRunReportsEachFailedBench(t *testing.T) {
	testenv.RequireEnv(t, "JOBRUN_TEST_POSTGRES", "PostgreSQL")
	testenv.RequireEnv(t, "JOBRUN_TEST_MINIO", "MinIO")
	root, out := t.TempDir(), t.TempDir()
	scripts := map[string]string{
		"bad":    "echo 'bad: broken on purpose' >&2\nexit 3\n",
		"silent": "echo 'silent: ran, wrote nothing'\n",
		"good": `r=$(mktemp)
"$BENCHRESULT" new "$r" good "a bench that works"
printf '3\n4\n5\n' | "$BENCHRESULT" add -peer peer "$r" "wall time" jobrun ms
printf '6\n8\n10\n' | "$BENCHRESULT" add "$r" "wall time" peer ms
"$BENCHRESULT" finish "$r" "$BENCH_OUT/good.json"
rm -f "$r"
`,
	}
	for name, body := range scripts {
		if err := os.MkdirAll(filepath.Join(root, name), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, name, "run.sh"), []byte("#!/usr/bin/env bash\nset -euo pipefail\n"+body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command("./run.sh")
	cmd.Env = append(os.Environ(), "BENCH_DIR="+root, "BENCH_OUT="+out, "BENCH_NO_DEPS=1")
	b, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Fatalf("run.sh: %v, want exit status 1\n%s", err, b)
	}
	for _, want := range []string{"bad: FAILED (exit status 3)", "silent: FAILED: it wrote no", "2 of 3 benches failed: bad silent"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("run.sh's output lacks %q:\n%s", want, b)
		}
	}
	f, err := result.Read(filepath.Join(out, "good.json"))
	if err != nil {
		t.Fatalf("the working bench's figures: %v\n%s", err, b)
	}
	if m := f.Find("wall time", "jobrun"); m == nil || m.Ratio != 0.5 {
		t.Errorf("good's jobrun/peer ratio: %+v, want 0.5 (medians 4 and 8)", m)
	}
	md, err := os.ReadFile(filepath.Join(out, "REPORT.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"**Failed in this run:** bad, silent", "\n## good\n", "good-wall-time.svg"} {
		if !strings.Contains(string(md), want) {
			t.Errorf("REPORT.md lacks %q:\n%s", want, md)
		}
	}
}
