package main

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/hashicorp/go-hclog"
	"github.com/spf13/cobra"
)

// globals are the options every command shares.
type globals struct {
	stateDir string
	config   string
	logLevel string
	log      hclog.Logger
}

// exitError carries an exit code out of a command; msg, if set, is printed.
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return fmt.Sprintf("exit %d: %s", e.code, e.msg) }

// usageError marks errors in how jobrun was called (exit code 2).
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func isUsageError(err error) bool {
	var ue *usageError
	if errors.As(err, &ue) {
		return true
	}
	// cobra reports unknown commands and bad arguments as plain errors.
	msg := err.Error()
	return strings.HasPrefix(msg, "unknown command") || strings.HasPrefix(msg, "unknown flag") ||
		strings.HasPrefix(msg, "unknown shorthand flag") || strings.Contains(msg, "arg(s), received")
}

func newRootCmd() *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:           "jobrun",
		Short:         "A CI job executor: OCI images, Linux namespaces, cgroup limits, warm caches",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			if err := flagsFromEnv(cmd, cmd.ErrOrStderr()); err != nil {
				return &usageError{err}
			}
			if err := g.absPaths(); err != nil {
				return &usageError{err}
			}
			level := hclog.LevelFromString(g.logLevel)
			if level == hclog.NoLevel {
				return &usageError{fmt.Errorf("invalid --log-level %q: want trace, debug, info, warn or error", g.logLevel)}
			}
			g.log = hclog.New(&hclog.LoggerOptions{Name: "jobrun", Level: level, Output: os.Stderr})
			return rootlessCommand(cmd, g) // without root: rootless.go
		},
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &usageError{err} })
	pf := root.PersistentFlags()
	pf.StringVar(&g.stateDir, "state-dir", "/var/lib/jobrun", "directory holding images, snapshots, caches and local artifacts")
	pf.StringVar(&g.config, "config", "", "agent configuration file (HCL; default STATE_DIR/config.hcl)")
	pf.StringVar(&g.logLevel, "log-level", "warn", "log level: trace, debug, info, warn, error")

	root.AddCommand(newVersionCmd())
	for _, add := range commands {
		root.AddCommand(add(g))
	}
	nameEnv(root)
	return root
}

// commands are the subcommands that need the shared options; each file that
// defines one registers it from an init function, so adding a command never
// edits this file.
var commands []func(*globals) *cobra.Command
