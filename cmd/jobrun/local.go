package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/jobrun/jobrun/agent"
	"github.com/jobrun/jobrun/agent/sandbox"
	"github.com/jobrun/jobrun/jobs"
	"github.com/jobrun/jobrun/local"
)

func init() { commands = append(commands, newLocalCmd) }

type localFlags struct {
	jobs      []string
	env       []string
	secrets   []string
	noCache   bool
	artifacts string
	parallel  int
	clean     bool
	logLimit  string
	keep      bool
	shell     bool
	caFile    string
	artLimit  string
	pull      string
	// Disk budgets and the shared cache remote (see hostOptions).
	cacheBudget, imageBudget, minFree string
	cacheRemote                       string
	cacheUpload                       bool
	userns                            string
	allow                             []string
}

func newLocalCmd(g *globals) *cobra.Command {
	f := &localFlags{}
	cmd := &cobra.Command{
		Use:   "local [FILE]",
		Short: "Run a workflow's jobs on this machine, as the pool would",
		Long: `Run the jobs of a job file (default .ci.hcl) on this machine, in the order
their needs allow, independent jobs in parallel. The workspace is a
copy-on-write view of the job file's directory: the jobs never modify your
files. With --clean, it is HEAD of the repository instead.

The first Ctrl-C cancels the running jobs cleanly (no further step runs, not
even if = "always" ones; those do run after a job's timeout); a second one
kills them at once. Either way nothing is left behind.

Each job runs in a user namespace of its own, its root mapped onto a host id
range of the jobrun user's /etc/subuid and /etc/subgid entries (created when
missing, one range per --parallel job). On a kernel or state dir filesystem
that cannot give a job its root without chown (idmapped mounts), jobs run
without, after one warning naming what is missing. --userns off runs them
without user namespaces: a job's root is the host's root behind
capabilities and seccomp, and sudo and setuid programs do not work.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			file := ".ci.hcl"
			if len(args) == 1 {
				file = args[0]
			}
			return runLocal(cmd, g, f, file)
		},
	}
	fl := cmd.Flags()
	fl.StringArrayVar(&f.jobs, "job", nil, "run only this job and the jobs it needs (repeatable; one name per flag, commas and all, e.g. 'build (arch=amd64, os=linux)' for one matrix combination)")
	fl.StringArrayVar(&f.env, "env", nil, "set K=V in every job's environment (repeatable)")
	fl.StringArrayVar(&f.secrets, "secret", nil, "set secret K=V, or K from the environment; masked as *** in all output (repeatable)")
	fl.BoolVar(&f.noCache, "no-cache", false, "give every cache an empty directory that is thrown away")
	fl.StringVar(&f.artifacts, "artifacts", ".jobrun/artifacts", "directory that receives the jobs' artifacts")
	fl.IntVar(&f.parallel, "parallel", runtime.NumCPU(), "most jobs run at once")
	fl.BoolVar(&f.clean, "clean", false, "run on HEAD of the git repository, leaving uncommitted files out")
	fl.StringVar(&f.logLimit, "log-limit", "64MiB", "most output kept per job")
	fl.BoolVar(&f.keep, "keep", false, "keep a failed job's container until Ctrl-C, and print how to enter it")
	fl.BoolVar(&f.shell, "shell-on-failure", false, "open a shell in a failed job's container, in its state at the failure; clean up on exit")
	fl.StringVar(&f.pull, "pull", "", "when a job's image is checked at the registry, for jobs whose file sets no pull: always (a HEAD per tag; pulls when it moved), if-missing or never; default the config's pull, else always")
	fl.StringVar(&f.artLimit, "artifact-limit", defaultArtifactLimit, "most bytes of artifacts one job may store; the job fails over it (0: no cap)")
	fl.StringVar(&f.caFile, "ca-file", "", "PEM file of CA certificates every job trusts on top of its image's (the host's bundle, a proxy's CA); replaces the config's ca_file")
	fl.StringVar(&f.cacheBudget, "cache-budget", "", "most disk the caches keep: a size (50GiB) or a percentage of the state dir's filesystem (20%); replaces the config's cache budget")
	fl.StringVar(&f.imageBudget, "image-budget", "", "most disk the image store keeps, as --cache-budget; replaces the config's image budget")
	fl.StringVar(&f.minFree, "min-free", "", "free space (size or percentage) the caches and images shrink to keep on the state dir's filesystem; replaces the config's min_free")
	fl.StringVar(&f.cacheRemote, "cache-remote", "", "restore caches missing here from the pool's bucket: s3://BUCKET[/PREFIX]?endpoint=HOST:PORT (keys in JOBRUN_S3_ACCESS_KEY, JOBRUN_S3_SECRET_KEY); replaces the config's cache remote; read-only unless --cache-upload")
	fl.BoolVar(&f.cacheUpload, "cache-upload", false, "let successful jobs upload changed caches to the cache remote")
	fl.StringSliceVar(&f.allow, "allow", nil, "let jobs reach this TCP `ADDR:PORT` of the host's, and no other of its ports (repeatable, or comma-separated; e.g. a registry on the host's 192.0.2.10:5000 that jobs push to and later jobs' images come from; never loopback or the jobs' subnet); replaces the config's network allow")
	fl.StringVar(&f.userns, "userns", "", "on: each job in a user namespace of its own id range; off: a job's root is the host's root; default the config's userns, else on")
	return cmd
}

func runLocal(cmd *cobra.Command, g *globals, f *localFlags, file string) error {
	out := cmd.OutOrStdout()
	env, err := keyValues(f.env, "--env", false)
	if err != nil {
		return &usageError{err}
	}
	secrets, err := keyValues(f.secrets, "--secret", true)
	if err != nil {
		return &usageError{err}
	}
	wf, diags := jobs.Load(file)
	if diags.HasErrors() {
		jobs.WriteDiagnostics(cmd.ErrOrStderr(), diags, wf, isTerminal(cmd.ErrOrStderr()))
		return &exitError{code: 1}
	}
	plan := wf.Jobs
	if len(f.jobs) > 0 {
		if plan, err = wf.Select(f.jobs...); err != nil {
			return &exitError{code: 1, msg: err.Error()}
		}
	}
	if err := rootlessCheck(g, plan); err != nil {
		return &exitError{code: 1, msg: err.Error()}
	}
	host, err := openHost(cmd.Context(), g, hostOptions{noCache: f.noCache, artifacts: f.artifacts, logLimit: f.logLimit, caFile: f.caFile, artifactLimit: f.artLimit, pull: f.pull,
		cacheBudget: f.cacheBudget, imageBudget: f.imageBudget, minFree: f.minFree,
		cacheRemote: f.cacheRemote, cacheReadOnly: !f.cacheUpload,
		userns: f.userns, allow: f.allow, slots: f.parallel, local: true, builders: buildsImages(plan)}, cmd.ErrOrStderr())
	if err != nil {
		return err
	}
	defer host.Close()
	// Each job's end brings the stores back within their budgets before
	// the next job starts; a sweep's failure is only logged.
	host.runner.AfterJob = func() {
		if err := host.keeper.Sweep(context.WithoutCancel(cmd.Context())); err != nil {
			g.log.Warn("disk budget sweep", "error", err)
		}
	}

	host.runner.Inspect = inspector(f, cmd.ErrOrStderr())
	ctx, force := interrupts(cmd.Context(), cmd.ErrOrStderr(), host.runner)
	defer force()
	fmt.Fprintln(out, host.userns)
	tty := isTerminal(out)
	printer := local.NewPrinter(out, tty)
	base := filepath.Dir(file)
	results := local.Run(ctx, plan, local.Options{
		Runner: host.runner, Sink: printer,
		Source: base, BaseDir: base, Clean: f.clean,
		Parallel: f.parallel, Env: env, Secrets: secrets,
	})
	printer.Close()
	fmt.Fprintln(out)
	local.Summary(out, results)
	rootlessLimits(out, plan, host.sandbox)
	fmt.Fprintf(out, "\nartifacts: %s\n", f.artifacts)
	for _, r := range results {
		if r.Status != agent.Succeeded {
			return &exitError{code: 1}
		}
	}
	return nil
}

// buildsImages reports whether a job of plan builds images.
func buildsImages(plan []*jobs.Job) bool {
	return slices.ContainsFunc(plan, func(j *jobs.Job) bool { return j.BuildsImages })
}

// inspector is what --keep and --shell-on-failure do with a failed job's
// container; one at a time, since they share the terminal.
func inspector(f *localFlags, w io.Writer) func(context.Context, string, *sandbox.Container) {
	if !f.keep && !f.shell {
		return nil
	}
	var mu sync.Mutex
	return func(ctx context.Context, job string, c *sandbox.Container) {
		mu.Lock()
		defer mu.Unlock()
		if f.shell {
			fmt.Fprintf(w, "jobrun: %s failed: a shell in its container (exit it to clean up)\n", job)
			c.Exec(ctx, sandbox.Process{Args: []string{"/bin/sh", "-i"}, Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr})
			return
		}
		fmt.Fprintf(w, "jobrun: %s failed; its container is kept. Enter it with:\n  %s\nIts workspace is /workspace. Press Ctrl-C to clean up.\n", job, enterCommand(c.Pid()))
		<-ctx.Done()
	}
}

// interrupts makes the first Ctrl-C (or SIGTERM) cancel ctx, which stops
// every job cleanly, and the second kill the jobs' processes at once.
func interrupts(parent context.Context, w interface{ Write([]byte) (int, error) }, r *agent.Runner) (context.Context, func()) {
	ctx, cancel := context.WithCancel(parent)
	sig := make(chan os.Signal, 2)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		n := 0
		for {
			select {
			case <-done:
				return
			case <-sig:
				n++
				if n == 1 {
					fmt.Fprintln(w, "\njobrun: cancelling the running jobs (Ctrl-C again to kill them at once)")
					cancel()
				} else {
					fmt.Fprintln(w, "\njobrun: killing the running jobs")
					r.KillAll()
				}
			}
		}
	}()
	return ctx, func() {
		signal.Stop(sig)
		close(done)
		cancel()
	}
}

// keyValues parses K=V arguments. With fromEnv, a bare K takes its value
// from jobrun's own environment.
func keyValues(args []string, flag string, fromEnv bool) (map[string]string, error) {
	m := map[string]string{}
	for _, a := range args {
		k, v, ok := strings.Cut(a, "=")
		if !ok && fromEnv {
			v, ok = os.LookupEnv(k)
			if !ok {
				return nil, fmt.Errorf("%s %s: no such variable in the environment", flag, k)
			}
		}
		if !ok {
			return nil, fmt.Errorf("%s %q: want KEY=VALUE", flag, a)
		}
		if k == "" || strings.ContainsAny(k, "= \t\n") {
			return nil, fmt.Errorf("%s %q: invalid variable name", flag, k)
		}
		m[k] = v
	}
	return m, nil
}
