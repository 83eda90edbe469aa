package main

import (
	"fmt"
	"path/filepath"
)

// absPaths makes the shared path options (--state-dir, --config) absolute,
// once, after flags and their environment twins are read and before any
// command runs: every package jobrun hands them to then sees the same
// directory, and those that want an absolute path (the cache manager's
// volume records, libcontainer) get one.
func (g *globals) absPaths() error {
	for _, p := range []struct {
		flag string
		v    *string
	}{{"--state-dir", &g.stateDir}, {"--config", &g.config}} {
		if *p.v == "" {
			continue
		}
		abs, err := filepath.Abs(*p.v)
		if err != nil {
			return fmt.Errorf("%s %q: %w", p.flag, *p.v, err)
		}
		*p.v = abs
	}
	return nil
}
