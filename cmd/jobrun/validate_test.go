package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func runValidate(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	cmd := newRootCmd()
	var out, errOut bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	cmd.SetArgs(append([]string{"validate"}, args...))
	err = cmd.ExecuteContext(context.Background())
	return out.String(), errOut.String(), err
}

func exitCode(err error) int {
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	if err != nil {
		return -1
	}
	return 0
}

func TestValidatePlan(t *testing.T) {
	out, errOut, err := runValidate(t, "../../examples/matrix/.ci.hcl")
	if err != nil || errOut != "" {
		t.Fatalf("validate: %v\n%s", err, errOut)
	}
	for _, want := range []string{"6 jobs", "build (arch=amd64, os=linux)", "package", "busybox"} {
		if !strings.Contains(out, want) {
			t.Errorf("plan lacks %q:\n%s", want, out)
		}
	}
	// The plan lists jobs in order: lint before the builds before package.
	if i, j, k := strings.Index(out, "lint"), strings.Index(out, "build (arch=amd64, os=linux)"), strings.LastIndex(out, "\n6  package"); i < 0 || i > j || j > k {
		t.Errorf("plan out of order:\n%s", out)
	}
}

func TestValidateDefaultFile(t *testing.T) {
	dir := t.TempDir()
	wd, _ := os.Getwd()
	t.Chdir(dir)
	_, _, err := runValidate(t)
	if exitCode(err) != 1 {
		t.Fatalf("validate without .ci.hcl: %v", err)
	}
	src, err := os.ReadFile(filepath.Join(wd, "../../examples/hello/.ci.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(".ci.hcl", src, 0o644)
	out, _, err := runValidate(t)
	if err != nil || !strings.Contains(out, ".ci.hcl: 1 job") {
		t.Fatalf("validate of default file: %v\n%s", err, out)
	}
}

func TestValidateInvalid(t *testing.T) {
	out, errOut, err := runValidate(t, "../../examples/invalid/cycle.ci.hcl")
	if exitCode(err) != 1 {
		t.Fatalf("exit %d (%v), want 1", exitCode(err), err)
	}
	if out != "" {
		t.Errorf("a plan was printed for an invalid file:\n%s", out)
	}
	for _, want := range []string{
		"Error: Dependency cycle",
		"../../examples/invalid/cycle.ci.hcl:7:12",
		`   7:   needs = ["b"]`,
		"\n                 ^^^\n",
		"a -> b -> c -> a",
		"cycle.ci.hcl:21:12",
	} {
		if !strings.Contains(errOut, want) {
			t.Errorf("diagnostics lack %q:\n%s", want, errOut)
		}
	}
}

func TestValidateJSON(t *testing.T) {
	out, _, err := runValidate(t, "--json", "../../examples/invalid/unknown-need.ci.hcl")
	if exitCode(err) != 1 {
		t.Fatalf("exit %d, want 1", exitCode(err))
	}
	var res jsonResult
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("%v:\n%s", err, out)
	}
	if res.Valid || len(res.Diagnostics) != 2 {
		t.Fatalf("result = %+v", res)
	}
	d := res.Diagnostics[0]
	if d.Filename != "../../examples/invalid/unknown-need.ci.hcl" || d.Line != 7 || d.Column != 12 || d.Severity != "error" ||
		!strings.Contains(d.Detail, `Did you mean "build"?`) {
		t.Errorf("diagnostic = %+v", d)
	}

	out, _, err = runValidate(t, "--json", "../../examples/go/.ci.hcl")
	if err != nil {
		t.Fatal(err)
	}
	res = jsonResult{}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatal(err)
	}
	if !res.Valid || len(res.Jobs) != 2 || res.Jobs[1].Name != "build" || res.Jobs[1].Needs[0] != "test" ||
		res.Jobs[0].Image != "golang:1.26" || len(res.Jobs[0].Caches) != 2 {
		t.Errorf("plan = %+v", res)
	}
}

// TestValidateBinary runs the built binary, so that the exit code and the
// output streams are what a user sees.
func TestValidateBinary(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("needs the go tool to build jobrun")
	}
	bin := filepath.Join(t.TempDir(), "jobrun")
	build := exec.Command("go", "build", "-tags", "seccomp", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	for _, tc := range []struct {
		file, where string
		code        int
	}{
		{"../../examples/invalid/cycle.ci.hcl", "cycle.ci.hcl:7:12", 1},
		{"../../examples/invalid/bad-size.ci.hcl", "bad-size.ci.hcl:6:14", 1},
		{"../../examples/invalid/syntax.ci.hcl", "syntax.ci.hcl:7:13", 1},
		{"../../examples/hello/.ci.hcl", "hello", 0},
	} {
		cmd := exec.Command(bin, "validate", tc.file)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if code != tc.code || !strings.Contains(stdout.String()+stderr.String(), tc.where) {
			t.Errorf("jobrun validate %s: exit %d (want %d)\nstdout:\n%s\nstderr:\n%s", tc.file, code, tc.code, stdout.String(), stderr.String())
		}
	}
	if err := exec.Command(bin, "validate", "a", "b").Run(); err == nil || err.(*exec.ExitError).ExitCode() != 2 {
		t.Errorf("two files: %v, want exit 2", err)
	}
}
