package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/jobrun/jobrun/jobs"
)

// flagVars walks the command tree and returns every command with the
// variables of its flags, by variable.
func flagVars(t *testing.T) (map[*cobra.Command][]string, map[string]*pflag.Flag) {
	t.Helper()
	byCmd := map[*cobra.Command][]string{}
	byVar := map[string]*pflag.Flag{}
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		visit := func(f *pflag.Flag) {
			names := f.Annotations[envAnnotation]
			if len(names) != 1 {
				t.Errorf("%s --%s has no variable", c.CommandPath(), f.Name)
				return
			}
			_, shared := f.Annotations[sharedAnnotation]
			if other, ok := byVar[names[0]]; ok && other != f && !(shared && other.Name == f.Name) {
				t.Errorf("%s names --%s of %s and another flag --%s", names[0], f.Name, c.CommandPath(), other.Name)
			}
			byVar[names[0]] = f
			byCmd[c] = append(byCmd[c], names[0])
		}
		c.Flags().VisitAll(visit)
		c.InheritedFlags().VisitAll(visit)
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(newRootCmd())
	return byCmd, byVar
}

// TestFlagVariablesNeverJobVariables: no two flags share a variable, and no
// flag's variable is one jobrun sets in jobs, so jobrun run inside a job
// (or trigger called from one) takes nothing of the job's for a setting.
func TestFlagVariablesNeverJobVariables(t *testing.T) {
	_, byVar := flagVars(t)
	if len(byVar) < 40 {
		t.Fatalf("only %d flag variables: the walk missed commands", len(byVar))
	}
	for _, v := range jobs.Variables() {
		if f, ok := byVar[v]; ok {
			t.Errorf("--%s reads %s, which jobrun sets in every job", f.Name, v)
		}
	}
	// The names the issue asks for, where the old ones collided.
	for v, flag := range map[string]string{
		"JOBRUN_AGENT_TOKEN": "token", "JOBRUN_REPO_ADD_TOKEN": "token",
		"JOBRUN_REPO_ADD_SECRET": "secret", "JOBRUN_LOCAL_SECRET": "secret",
		"JOBRUN_LOCAL_JOB": "job", "JOBRUN_TRIGGER_JOB": "job",
		"JOBRUN_LOCAL_ARTIFACTS": "artifacts", "JOBRUN_AGENT_ARTIFACTS": "artifacts", "JOBRUN_SERVER_ARTIFACTS": "artifacts",
		"JOBRUN_STATE_DIR": "state-dir",
	} {
		if f := byVar[v]; f == nil || f.Name != flag {
			t.Errorf("%s: want the variable of --%s, have %v", v, flag, f)
		}
	}
}

// TestHelpShowsEveryVariable: each command's --help names the variable of
// every flag it takes, its own and the global ones.
func TestHelpShowsEveryVariable(t *testing.T) {
	byCmd, _ := flagVars(t)
	for c, vars := range byCmd {
		args := append(strings.Fields(c.CommandPath())[1:], "--help")
		var out, errb bytes.Buffer
		if code := run(context.Background(), args, &out, &errb); code != 0 {
			t.Fatalf("jobrun %s: exit %d\n%s", strings.Join(args, " "), code, errb.String())
		}
		for _, v := range vars {
			if !regexp.MustCompile(`(?m)^\s+(-\w, )?--[a-z-]+ .*\[env ` + v + `\]`).MatchString(out.String()) {
				t.Errorf("jobrun %s does not show %s on a flag's line:\n%s", strings.Join(args, " "), v, out.String())
			}
		}
	}
}

// TestOldVariableWarnsAndWorks: the names before this release still set
// their flag, with a warning that names the new one; the new name wins
// over the old. (The old JOBRUN_JOB, which every job has, is never read:
// TestLocalInJobRunsAllJobs.)
func TestOldVariableWarnsAndWorks(t *testing.T) {
	file := "../../examples/matrix/.ci.hcl"
	validate := func(t *testing.T) (string, string) {
		t.Helper()
		var out, errb bytes.Buffer
		if code := run(context.Background(), []string{"validate", file}, &out, &errb); code != 0 {
			t.Fatalf("validate: exit %d\n%s", code, errb.String())
		}
		return out.String(), errb.String()
	}
	isJSON := func(s string) bool { return json.Valid([]byte(s)) }

	t.Run("neither", func(t *testing.T) {
		if out, errb := validate(t); isJSON(out) || errb != "" {
			t.Errorf("without a variable: JSON %v, stderr %q", isJSON(out), errb)
		}
	})
	t.Run("new", func(t *testing.T) {
		t.Setenv("JOBRUN_VALIDATE_JSON", "true")
		if out, errb := validate(t); !isJSON(out) || errb != "" {
			t.Errorf("JOBRUN_VALIDATE_JSON=true: JSON %v, stderr %q", isJSON(out), errb)
		}
	})
	t.Run("old", func(t *testing.T) {
		t.Setenv("JOBRUN_JSON", "true")
		out, errb := validate(t)
		if !isJSON(out) {
			t.Errorf("JOBRUN_JSON=true no longer sets --json:\n%s", out)
		}
		if !strings.Contains(errb, "JOBRUN_JSON is deprecated") || !strings.Contains(errb, "set JOBRUN_VALIDATE_JSON") {
			t.Errorf("JOBRUN_JSON: no warning naming JOBRUN_VALIDATE_JSON: %q", errb)
		}
	})
	t.Run("new wins", func(t *testing.T) {
		t.Setenv("JOBRUN_JSON", "true")
		t.Setenv("JOBRUN_VALIDATE_JSON", "false")
		if out, errb := validate(t); isJSON(out) || errb != "" {
			t.Errorf("JOBRUN_VALIDATE_JSON=false beside JOBRUN_JSON=true: JSON %v, stderr %q", isJSON(out), errb)
		}
	})
	t.Run("agent", func(t *testing.T) {
		// examples/deploy's agent.env of the last release: the agent
		// gets past its required flags and stops at the bad --jobs.
		t.Setenv("JOBRUN_SERVER", "http://127.0.0.1:1")
		t.Setenv("JOBRUN_TOKEN", "pool-token")
		var out, errb bytes.Buffer
		code := run(context.Background(), []string{"--state-dir", t.TempDir(), "agent", "--jobs", "0"}, &out, &errb)
		if code != 2 || !strings.Contains(errb.String(), "--jobs 0") {
			t.Fatalf("agent with the old variables: exit %d, want 2 for --jobs 0\n%s", code, errb.String())
		}
		for _, w := range []string{"set JOBRUN_AGENT_SERVER", "set JOBRUN_AGENT_TOKEN"} {
			if !strings.Contains(errb.String(), w) {
				t.Errorf("no warning %q:\n%s", w, errb.String())
			}
		}
		// Control: without them the same call stops at the missing server.
		os.Unsetenv("JOBRUN_SERVER")
		os.Unsetenv("JOBRUN_TOKEN")
		errb.Reset()
		if code := run(context.Background(), []string{"--state-dir", t.TempDir(), "agent", "--jobs", "0"}, &out, &errb); code != 2 ||
			!strings.Contains(errb.String(), "--server is required (or JOBRUN_AGENT_SERVER)") {
			t.Errorf("agent without variables: exit %d\n%s", code, errb.String())
		}
	})
}
