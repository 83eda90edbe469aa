package main

import (
	"strings"
	"testing"
	"time"
)

func TestServerRetainFlags(t *testing.T) {
	for _, c := range []struct {
		age  string
		runs int
		want time.Duration
		err  string
	}{
		{"90d", 20, 90 * 24 * time.Hour, ""},
		{"36h", 0, 36 * time.Hour, ""},
		{"0", 5, 0, ""},
		{"soon", 20, 0, "--retain"},
		{"-1d", 20, 0, "--retain"},
		{"7d", -1, 0, "--retain-runs -1"},
	} {
		r, err := retention(c.age, c.runs)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("--retain %q --retain-runs %d: %v, want an error about %s", c.age, c.runs, err, c.err)
			}
			continue
		}
		if err != nil || r.Age != c.want || r.KeepRuns != c.runs {
			t.Errorf("--retain %q --retain-runs %d: %+v %v, want %v and %d", c.age, c.runs, r, err, c.want, c.runs)
		}
	}
}
