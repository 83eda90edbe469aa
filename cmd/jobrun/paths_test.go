package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jobrun/jobrun/cache"
)

// TestRelativeStateDir: a relative --state-dir (or JOBRUN_STATE_DIR) means
// the directory under the working directory for every command; `cache ls`
// and `cache prune` used to fail on it with "not an absolute path".
func TestRelativeStateDir(t *testing.T) {
	parent := t.TempDir()
	state := filepath.Join(parent, "state")
	m, err := cache.Open(filepath.Join(state, "caches"), cache.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	v, err := m.Acquire(ctx, cache.Request{Repo: "github.com/a/app", Name: "gomod"})
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(v.Path(), "f"), []byte("x"), 0o644)
	if err := v.Release(ctx, true); err != nil {
		t.Fatal(err)
	}
	t.Chdir(parent)
	for _, tc := range []struct {
		name string
		args []string
		env  string
	}{
		{"flag", []string{"--state-dir", "state"}, ""},
		{"flag ./", []string{"--state-dir", "./state/"}, ""},
		{"env", nil, "state"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.env != "" {
				t.Setenv("JOBRUN_STATE_DIR", tc.env)
			}
			for _, sub := range [][]string{{"cache", "ls"}, {"cache", "prune", "--keep", "1GiB"}} {
				cmd := newRootCmd()
				var out bytes.Buffer
				cmd.SetOut(&out)
				cmd.SetErr(&out)
				cmd.SetArgs(append(append([]string{}, tc.args...), sub...))
				if err := cmd.ExecuteContext(ctx); err != nil {
					t.Fatalf("jobrun %v: %v\n%s", sub, err, out.String())
				}
				if sub[1] == "ls" && !strings.Contains(out.String(), "gomod") {
					t.Errorf("cache ls lacks the volume:\n%s", out.String())
				}
			}
		})
	}
}
