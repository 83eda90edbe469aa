package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/jobrun/jobrun/bench/internal/result"
)

// TestNewAddFinish writes a file as a shell bench does and reads it back.
func TestNewAddFinish(t *testing.T) {
	dir := t.TempDir()
	work, out := filepath.Join(dir, "w.json"), filepath.Join(dir, "out", "b.json")
	steps := []struct {
		args  []string
		stdin string
	}{
		{[]string{"new", "-param", "rounds=3", work, "b", "a bench"}, ""},
		{[]string{"add", "-scale", "0.001", "-peer", "podman", "-target", "ratio<=0.5", work, "wall", "jobrun", "ms"}, "1000 2000\n3000\n"},
		{[]string{"add", "-scale", "0.001", work, "wall", "podman", "ms"}, "8000\n"},
		{[]string{"finish", work, out}, ""},
	}
	for _, s := range steps {
		if err := run(s.args, strings.NewReader(s.stdin)); err != nil {
			t.Fatalf("benchresult %s: %v", strings.Join(s.args, " "), err)
		}
	}
	f, err := result.Read(out)
	if err != nil {
		t.Fatal(err)
	}
	m := f.Find("wall", "jobrun")
	if f.Params["rounds"] != "3" || m == nil || m.Ratio != 0.25 || !m.Target.Met || len(m.Samples) != 3 {
		t.Errorf("read back %+v, metric %+v", f, m)
	}
}

func TestAddRejectsBadInput(t *testing.T) {
	work := filepath.Join(t.TempDir(), "w.json")
	if err := run([]string{"new", work, "b", "t"}, strings.NewReader("")); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args  []string
		stdin string
		want  string
	}{
		{[]string{"add", work, "wall", "jobrun", "ms"}, "1 two 3", "sample 2"},
		{[]string{"add", work, "wall", "jobrun", "ms"}, "", "no samples"},
		{[]string{"add", "-target", "fast", work, "wall", "jobrun", "ms"}, "1", "target"},
		{[]string{"add", work, "wall"}, "1", "usage"},
		{[]string{"frobnicate"}, "", "unknown command"},
	} {
		err := run(tc.args, strings.NewReader(tc.stdin))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("benchresult %v: %v, want an error saying %q", tc.args, err, tc.want)
		}
	}
	// The control: the same file takes a good metric.
	if err := run([]string{"add", work, "wall", "jobrun", "ms"}, strings.NewReader("1 2 3")); err != nil {
		t.Errorf("a good add: %v", err)
	}
}
