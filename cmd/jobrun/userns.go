package main

import (
	"context"
	"fmt"
	"io"
	"path/filepath"

	"github.com/jobrun/jobrun/agent/config"
	"github.com/jobrun/jobrun/agent/idrange"
	"github.com/jobrun/jobrun/internal/idmap"
)

// usernsSetup is how a command decides, once at its start, whether its
// jobs run in user namespaces, and where their id ranges come from.
type usernsSetup struct {
	// mode is config.UsernsOn or config.UsernsOff; why says who turned it
	// off (`--userns off`, `userns = "off" in FILE`).
	mode, why string
	// howOff tells the user how to run without user namespaces, for
	// messages: `userns = "off" in FILE`, `--userns off`.
	howOff string
	// stateDir is where layers and snapshots live: the probe's filesystem.
	stateDir string
	// slots is how many jobs run at once: the ranges the entries must hold.
	slots int
	// fallback runs jobs without user namespaces, after one warning, when
	// the kernel or state dir cannot give them (`jobrun local`); without
	// it that is an error (the agent: never a silent downgrade).
	fallback bool
	// probe checks the kernel and the state dir's filesystem; nil is
	// idmap.ProbeOnce.
	probe func(dir string) error
	// ids says where the jobrun user's entries are; its Slots is set
	// from slots. The zero value is the host's /etc.
	ids idrange.Options
}

// openUserns returns the pool jobs take their id ranges from, nil when
// they run without user namespaces, and one line saying which mode runs
// and why, for the agent's start log and `jobrun local`'s header.
func openUserns(ctx context.Context, s usernsSetup, warn io.Writer) (*idrange.Pool, string, error) {
	if s.mode == config.UsernsOff {
		return nil, "user namespaces: off: " + s.why, nil
	}
	probe := s.probe
	if probe == nil {
		probe = idmap.ProbeOnce
	}
	if err := probe(s.stateDir); err != nil {
		if !s.fallback {
			return nil, "", fmt.Errorf("jobs run in user namespaces, which this host cannot give: %w; "+
				"set %s to run jobs without them (a job's root is then the host's root, behind capabilities and seccomp)", err, s.howOff)
		}
		fmt.Fprintf(warn, "jobrun: warning: jobs run without user namespaces (a job's root is the host's root): %v; %s runs without this warning\n", err, s.howOff)
		return nil, "user namespaces: off: " + err.Error(), nil
	}
	o := s.ids
	o.Slots = max(s.slots, 1)
	p, err := idrange.Open(ctx, o)
	if err != nil {
		return nil, "", fmt.Errorf("user namespaces: %w (or set %s to run jobs without them)", err, s.howOff)
	}
	root, user := o.Root, o.User
	if root == "" {
		root = "/"
	}
	if user == "" {
		user = idrange.DefaultUser
	}
	return p, fmt.Sprintf("user namespaces: on (%d ranges of %s from %s)", p.Len(), user, filepath.Join(root, "etc/subuid")), nil
}
