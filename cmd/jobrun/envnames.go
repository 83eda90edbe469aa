package main

import (
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/jobrun/jobrun/jobs"
)

// envAnnotation is the flag annotation that holds a flag's variable.
const envAnnotation = "jobrun-env"

// sharedAnnotation marks a flag whose variable every command that takes it
// shares, because it means the same thing on each (sharedEnv).
const sharedAnnotation = "jobrun-env-shared"

// sharedEnv gives f the variable key on every command that takes it, in
// place of the per-command name nameEnv would give: --api-token is
// JOBRUN_API_TOKEN on every command that calls the API, one token a user
// exports once.
func sharedEnv(f *pflag.Flag, key string) {
	if f.Annotations == nil {
		f.Annotations = map[string][]string{}
	}
	f.Annotations[envAnnotation] = []string{key}
	f.Annotations[sharedAnnotation] = []string{"true"}
	f.Usage += " [env " + key + "]"
}

// nameEnv gives every flag of root's tree its environment variable and shows
// it in the flag's help. The flags of the root command, shared by every
// command, are JOBRUN_<FLAG> (JOBRUN_STATE_DIR); a command's own flags carry
// the command's path, so that no two commands share a name and none is a
// variable jobrun sets in jobs: --token of `jobrun agent` is
// JOBRUN_AGENT_TOKEN, --token of `jobrun repo add` JOBRUN_REPO_ADD_TOKEN,
// --job of `jobrun local` JOBRUN_LOCAL_JOB (never JOBRUN_JOB, which every
// step has).
func nameEnv(root *cobra.Command) {
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		prefix := "JOBRUN_"
		if c != root {
			path := strings.Fields(c.CommandPath())[1:]
			prefix += strings.ToUpper(strings.Join(path, "_")) + "_"
		}
		name := func(f *pflag.Flag) {
			if _, ok := f.Annotations[envAnnotation]; ok {
				return
			}
			key := prefix + envKey(f.Name)
			if f.Annotations == nil {
				f.Annotations = map[string][]string{}
			}
			f.Annotations[envAnnotation] = []string{key}
			f.Usage += " [env " + key + "]"
		}
		c.PersistentFlags().VisitAll(name)
		c.Flags().VisitAll(name)
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
}

// envKey is a flag's name as a variable's: drain-timeout is DRAIN_TIMEOUT.
func envKey(flag string) string {
	return strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// flagsFromEnv sets the flags of cmd not given on the command line from
// their variables (nameEnv). Until the next release it also reads a flag's
// old name, JOBRUN_<FLAG>, with a warning on stderr naming the new one; an
// old name that is a variable jobs receive (JOBRUN_JOB) is never read, so
// jobrun run inside a job does not take the job's settings for its own.
func flagsFromEnv(cmd *cobra.Command, stderr io.Writer) error {
	var err error
	seen := map[*pflag.Flag]bool{}
	set := func(f *pflag.Flag) {
		if f.Changed || err != nil || seen[f] {
			return
		}
		seen[f] = true
		names := f.Annotations[envAnnotation]
		if len(names) == 0 {
			return // cobra's own, --help
		}
		key := names[0]
		v, ok := os.LookupEnv(key)
		if old := "JOBRUN_" + envKey(f.Name); !ok && old != key && !slices.Contains(jobs.Variables(), old) {
			if v, ok = os.LookupEnv(old); ok {
				fmt.Fprintf(stderr, "jobrun: warning: %s is deprecated and will be ignored in the next release: set %s (--%s of %q)\n",
					old, key, f.Name, cmd.CommandPath())
				key = old
			}
		}
		if !ok {
			return
		}
		if e := f.Value.Set(v); e != nil {
			err = fmt.Errorf("%s=%q: %w", key, v, e)
		}
	}
	cmd.Flags().VisitAll(set)
	cmd.InheritedFlags().VisitAll(set)
	return err
}

// flagEnv is the variable of cmd's flag name, for messages.
func flagEnv(cmd *cobra.Command, name string) string {
	if f := cmd.Flags().Lookup(name); f != nil {
		if names := f.Annotations[envAnnotation]; len(names) > 0 {
			return names[0]
		}
	}
	return "JOBRUN_" + envKey(name)
}
