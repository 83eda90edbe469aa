package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/jobrun/jobrun/agent"
	"github.com/jobrun/jobrun/api"
	"github.com/jobrun/jobrun/artifacts"
)

func init() { commands = append(commands, newAgentCmd) }

type agentFlags struct {
	servers      []string
	token        string
	labels       []string
	jobs         int
	name         string
	drainTimeout time.Duration
	noCache      bool
	logLimit     string
	metrics      string
	artifacts    string
	artLimit     string
	pull         string
}

func newAgentCmd(g *globals) *cobra.Command {
	f := &agentFlags{}
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Join a scheduler's pool and run the jobs it leases",
		Long: `Register with the scheduler at --server using the pool's registration
token, then lease jobs whose agent labels are among --labels, up to --jobs at
once, and run them as 'jobrun local' would, streaming their logs back.

SIGTERM (or Ctrl-C) drains: no new jobs are leased, the running ones finish
(or are cancelled after --drain-timeout), their results are reported, and
the agent leaves the pool. A second signal cancels the running jobs at once.

Each job runs in a user namespace of its own: its ids 0-65535 map onto a
host id range no other running job holds, taken from the /etc/subuid and
/etc/subgid entries of the jobrun user (created, with entries for --jobs
ranges, when missing), so a job's root is nobody on the host. The agent
checks at start that the kernel and the state dir's filesystem can give a
job its root filesystem without chown (idmapped mounts) and refuses to start
if not. userns = "off" in the config runs jobs without user namespaces: a
job's root is then the host's root behind capabilities and seccomp, and
no_new_privs is set, so sudo and setuid programs do not work in jobs.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runAgent(cmd, g, f) },
	}
	host, _ := os.Hostname()
	fl := cmd.Flags()
	fl.StringSliceVar(&f.servers, "server", nil, "the scheduler's URL (http://host:port); several servers sharing one database: repeat the flag or separate them with commas, and the agent fails over between them")
	fl.StringVar(&f.token, "token", "", "the pool's registration token")
	fl.StringSliceVar(&f.labels, "labels", nil, "labels this agent offers to jobs' agent lists (comma-separated)")
	fl.IntVar(&f.jobs, "jobs", 1, "most jobs run at once")
	fl.StringVar(&f.name, "name", host, "the agent's name in the pool")
	fl.DurationVar(&f.drainTimeout, "drain-timeout", 10*time.Minute, "on SIGTERM, how long running jobs may go on before they are cancelled")
	fl.BoolVar(&f.noCache, "no-cache", false, "give every cache an empty directory that is thrown away")
	fl.StringVar(&f.logLimit, "log-limit", "64MiB", "most output kept per job")
	fl.StringVar(&f.pull, "pull", "", "when a job's image is checked at the registry, for jobs whose file sets no pull: always (a HEAD per tag; pulls when it moved), if-missing or never; default the config's pull, else always")
	fl.StringVar(&f.artLimit, "artifact-limit", defaultArtifactLimit, "most bytes of artifacts one job may store; the job fails over it (0: no cap)")
	fl.StringVar(&f.artifacts, "artifacts", "", "the server's artifact store, to write to it directly: s3://BUCKET[/PREFIX]?endpoint=HOST:PORT (TLS; add &insecure=true, or give http://HOST:PORT, for a plain-HTTP MinIO; keys in JOBRUN_S3_ACCESS_KEY, JOBRUN_S3_SECRET_KEY) or a directory it shares; empty uploads through the server")
	fl.StringVar(&f.metrics, "metrics-listen", "", "address to serve Prometheus metrics on at /metrics (running jobs, image pulls, unpack time, cache volumes and bytes, budget evictions); off when empty")
	return cmd
}

func runAgent(cmd *cobra.Command, g *globals, f *agentFlags) error {
	switch {
	case len(f.servers) == 0:
		return &usageError{fmt.Errorf("--server is required (or %s)", flagEnv(cmd, "server"))}
	case f.token == "":
		return &usageError{fmt.Errorf("--token is required (or %s)", flagEnv(cmd, "token"))}
	case f.jobs < 1:
		return &usageError{fmt.Errorf("--jobs %d: want at least 1", f.jobs)}
	case f.name == "":
		return &usageError{errors.New("--name is required: the host name is unknown")}
	}
	servers, err := api.ParseServers(f.servers)
	if err != nil {
		return &usageError{fmt.Errorf("--server: %w", err)}
	}
	dir, err := g.absStateDir()
	if err != nil {
		return err
	}
	// The pool's jobs store their artifacts through the scheduler; the
	// host's local store is only the Runner's default and stays empty.
	h, err := openHost(cmd.Context(), g, hostOptions{noCache: f.noCache, artifacts: filepath.Join(dir, "artifacts"), logLimit: f.logLimit, artifactLimit: f.artLimit, pull: f.pull,
		slots: f.jobs, builders: true}, cmd.ErrOrStderr())
	if err != nil {
		return err
	}
	defer h.Close()
	// Take no job before containers can be started: a broken install
	// fails here, not on every job.
	if err := h.sandbox.Ready(); err != nil {
		return err
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "jobrun: agent %s: %s\n", f.name, h.userns)
	pool := &agent.Pool{
		Client:    &api.Client{Servers: servers, HTTP: &http.Client{}},
		PoolToken: f.token,
		Runner:    h.runner,
		Name:      f.name,
		Labels:    f.labels,
		Slots:     f.jobs,
		Version:   version,
		Log:       g.log.Named("agent"),
	}
	if f.artifacts != "" {
		if pool.Artifacts, err = artifacts.Open(cmd.Context(), f.artifacts, os.Getenv); err != nil {
			return fmt.Errorf("--artifacts: %w", err)
		}
	}
	if f.metrics != "" {
		stop, err := serveAgentMetrics(f.metrics, h.runner, pool, cmd.ErrOrStderr())
		if err != nil {
			return err
		}
		defer stop()
	}
	// Eviction runs after each job and on a timer, beside the jobs.
	h.keeper.Metrics = pool.Metrics
	h.runner.AfterJob = h.keeper.Kick
	kctx, stopKeeper := context.WithCancel(context.WithoutCancel(cmd.Context()))
	defer stopKeeper()
	go h.keeper.Run(kctx, agent.DefaultSweepInterval)
	if err := pool.Cleanup(cmd.Context()); err != nil {
		g.log.Warn("start-up cleanup", "error", err)
	}
	// The command's context ends at the first signal; the pool's must
	// outlive it, since that signal only drains.
	ctx, stop := drainSignals(context.WithoutCancel(cmd.Context()), g, pool, h.runner, f.drainTimeout)
	defer stop()
	return pool.Run(ctx)
}

// drainSignals makes the first SIGTERM or SIGINT drain the pool, and
// cancels the returned context (the running jobs) when the drain timeout
// passes or a second signal comes, which also kills the jobs' processes
// at once.
func drainSignals(parent context.Context, g *globals, pool *agent.Pool, r *agent.Runner, timeout time.Duration) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(parent)
	sig := make(chan os.Signal, 2)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		var expired <-chan time.Time
		n := 0
		for {
			select {
			case <-done:
				return
			case <-expired:
				g.log.Warn("drain timeout: cancelling the running jobs", "timeout", timeout)
				cancel(fmt.Errorf("cancelled: the agent shut down and its drain timeout (%s) passed", timeout))
			case s := <-sig:
				n++
				if n == 1 {
					g.log.Info("draining: running jobs may finish", "signal", s, "timeout", timeout)
					pool.Drain()
					t := time.NewTimer(timeout)
					defer t.Stop()
					expired = t.C
					continue
				}
				g.log.Warn("second signal: cancelling the running jobs at once", "signal", s)
				cancel(errors.New("cancelled: the agent was stopped"))
				r.KillAll()
			}
		}
	}()
	return ctx, func() {
		signal.Stop(sig)
		close(done)
		cancel(nil)
	}
}

// serveAgentMetrics serves the pool's and its image store's metrics on
// addr until stop is called.
func serveAgentMetrics(addr string, r *agent.Runner, pool *agent.Pool, stderr io.Writer) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--metrics-listen: %w", err)
	}
	m := agent.NewMetrics()
	pool.Metrics = m
	r.Images.SetObserver(m)
	if r.Caches != nil {
		m.WatchCaches(r.Caches)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.Handler())
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go hs.Serve(ln)
	fmt.Fprintf(stderr, "jobrun: agent metrics listening on %s\n", ln.Addr())
	return func() { hs.Close() }, nil
}
