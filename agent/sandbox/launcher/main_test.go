package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/jobrun/jobrun/agent/sandbox/internal/wire"
)

func TestLookPath(t *testing.T) {
	dir := t.TempDir()
	for name, mode := range map[string]os.FileMode{"a/tool": 0o755, "b/tool": 0o755, "a/data": 0o644, "rel/tool": 0o755} {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, nil, mode); err != nil {
			t.Fatal(err)
		}
	}
	env := func(path string) []string { return []string{"HOME=/", "PATH=" + path, "PATH=/ignored"} }
	for _, tc := range []struct {
		path, prog, dir, want string
	}{
		{dir + "/a:" + dir + "/b", "tool", "/", dir + "/a/tool"},
		{dir + "/b:" + dir + "/a", "tool", "/", dir + "/b/tool"},
		// Not executable: skipped, as execvp does.
		{dir + "/a:" + dir + "/b", "data", "/", ""},
		// Relative entries are taken from the step's directory.
		{"rel", "tool", dir, dir + "/rel/tool"},
		// With a slash, as given.
		{"", "./x/y", "/", "./x/y"},
		{dir + "/a", "missing", "/", ""},
	} {
		got, err := lookPath(&wire.Proc{Path: tc.prog, Env: env(tc.path), Dir: tc.dir})
		if got != tc.want || (tc.want == "") != (err != nil) {
			t.Errorf("%s in %s: %q %v, want %q", tc.prog, tc.path, got, err, tc.want)
		}
	}
}
