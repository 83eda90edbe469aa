package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/jobrun/jobrun/artifacts"
	"github.com/jobrun/jobrun/internal/atomicfile"
	"github.com/jobrun/jobrun/internal/units"
	"github.com/jobrun/jobrun/scheduler"
)

func init() { commands = append(commands, newServerCmd) }

type serverFlags struct {
	listen           string
	database         string
	regToken         string
	adminToken       string
	secretKey        string
	leaseTimeout     time.Duration
	affinityWait     time.Duration
	maxAttempts      int
	supersedeRunning bool
	artifacts        string
	publicURL        string
	cronWindow       time.Duration
	publicRead       bool
	metricsListen    string
	logQuota         string
	artifactQuota    string
	artifactFile     string
	artifactFiles    int
	retain           string
	retainRuns       int
}

func newServerCmd(g *globals) *cobra.Command {
	var f serverFlags
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Run the scheduler: queue runs, lease jobs to agents, keep logs and artifacts",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runServer(cmd.Context(), g, f, cmd.ErrOrStderr())
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.listen, "listen", ":8080", "address to serve the API on")
	fl.StringVar(&f.database, "database", "sqlite", "store: sqlite (a file in the state dir), sqlite:PATH, or a postgres:// URL (several servers)")
	fl.StringVar(&f.regToken, "registration-token", "", "token agents join the pool with (default: made once, kept in STATE_DIR/registration-token)")
	fl.StringVar(&f.adminToken, "admin-token", "", "token for runs, cancel, retry and secrets (default: made once, kept in STATE_DIR/admin-token)")
	fl.StringVar(&f.secretKey, "secret-key-file", "", "AES-256 key the secrets are encrypted with (default STATE_DIR/secret.key, made if missing)")
	fl.DurationVar(&f.leaseTimeout, "lease-timeout", 30*time.Second, "how long a job stays leased to an agent that stopped heartbeating")
	fl.DurationVar(&f.affinityWait, "affinity-wait", 2*time.Second, "how long a job waits for the agent that last ran its branch")
	fl.IntVar(&f.maxAttempts, "max-attempts", 3, "leases of a job before a lost lease fails it")
	fl.StringVar(&f.artifacts, "artifacts", "", "artifact store: a directory (default STATE_DIR/artifacts) or s3://BUCKET[/PREFIX]?endpoint=HOST:PORT (TLS; add &insecure=true, or give http://HOST:PORT, for a plain-HTTP MinIO; keys in JOBRUN_S3_ACCESS_KEY, JOBRUN_S3_SECRET_KEY)")
	fl.BoolVar(&f.supersedeRunning, "supersede-running", false, "a new run of a branch also cancels the running jobs of older runs")
	fl.StringVar(&f.publicURL, "public-url", "", "the server's URL as users reach it, for the links in commit statuses (https://ci.example.com)")
	fl.DurationVar(&f.cronWindow, "cron-window", time.Hour, "how far back a cron tick missed while no server ran still fires (once)")
	fl.BoolVar(&f.publicRead, "public-read", false, "let anyone read runs, logs, artifacts, agents and metrics without a token (open source projects)")
	fl.StringVar(&f.metricsListen, "metrics-listen", "", "also serve /metrics without a token on this address (for the monitoring system only); on --listen it needs the read role")
	fl.StringVar(&f.logQuota, "log-quota", "128MiB", "most output an attempt's log may hold, counted as the agent's --log-limit counts it")
	fl.StringVar(&f.artifactQuota, "artifact-quota", "10GiB", "most bytes of artifacts an attempt may store")
	fl.StringVar(&f.artifactFile, "artifact-file-limit", "5GiB", "largest artifact file an agent may upload")
	fl.IntVar(&f.artifactFiles, "artifact-files", 10000, "most artifact files an attempt may store")
	fl.StringVar(&f.retain, "retain", "90d", "how long finished runs are kept with their logs, steps and artifacts (0: forever; expired artifacts go either way)")
	fl.IntVar(&f.retainRuns, "retain-runs", 20, "newest runs of every repository and branch kept whatever their age")
	return cmd
}

func runServer(ctx context.Context, g *globals, f serverFlags, stderr interface{ Write([]byte) (int, error) }) error {
	if f.leaseTimeout < time.Second {
		return &usageError{fmt.Errorf("--lease-timeout %v: want at least 1s", f.leaseTimeout)}
	}
	lim := scheduler.Limits{ArtifactFiles: f.artifactFiles}
	for _, q := range []struct {
		flag, v string
		to      *int64
	}{{"--log-quota", f.logQuota, &lim.LogOutput}, {"--artifact-quota", f.artifactQuota, &lim.ArtifactBytes}, {"--artifact-file-limit", f.artifactFile, &lim.ArtifactFile}} {
		n, err := units.ParseSize(q.v)
		if err != nil || n < 1 {
			return &usageError{fmt.Errorf("%s %q: want a size such as 64MiB", q.flag, q.v)}
		}
		*q.to = n
	}
	if f.artifactFiles < 1 {
		return &usageError{fmt.Errorf("--artifact-files %d: want at least 1", f.artifactFiles)}
	}
	ret, err := retention(f.retain, f.retainRuns)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(g.stateDir, "tmp"), 0o700); err != nil {
		return err
	}
	if f.regToken, err = token(f.regToken, filepath.Join(g.stateDir, "registration-token")); err != nil {
		return err
	}
	if f.adminToken, err = token(f.adminToken, filepath.Join(g.stateDir, "admin-token")); err != nil {
		return err
	}
	if f.secretKey == "" {
		f.secretKey = filepath.Join(g.stateDir, "secret.key")
	}
	sealer, err := scheduler.LoadKey(f.secretKey)
	if err != nil {
		return err
	}
	st, err := scheduler.Open(ctx, f.database, g.stateDir)
	if err != nil {
		return err
	}
	defer st.Close()
	if f.artifacts == "" {
		f.artifacts = filepath.Join(g.stateDir, "artifacts")
	}
	store, err := artifacts.Open(ctx, f.artifacts, os.Getenv)
	if err != nil {
		return err
	}
	srv := scheduler.New(scheduler.Config{
		Store: st, Artifacts: store, TempDir: filepath.Join(g.stateDir, "tmp"),
		RegistrationToken: f.regToken, AdminToken: f.adminToken, Secrets: sealer,
		LeaseTimeout: f.leaseTimeout, AffinityWait: f.affinityWait, MaxAttempts: f.maxAttempts,
		SupersedeRunning: f.supersedeRunning, Log: g.log.Named("server"), PublicRead: f.publicRead, Limits: lim,
		Retention: ret,
		// Repositories' mirrors, read for the job file of a pushed commit.
		Triggers: scheduler.TriggerConfig{MirrorDir: filepath.Join(g.stateDir, "mirrors"), PublicURL: f.publicURL, CronWindow: f.cronWindow},
	})

	ln, err := net.Listen("tcp", f.listen)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	go srv.Run(ctx)
	// Read, write and idle timeouts; the long routes (lease long-polls,
	// live logs, uploads, downloads) set their own deadlines.
	hs := srv.HTTPServer()
	// Lease long-polls end with the server's context, not after their wait.
	hs.BaseContext = func(net.Listener) context.Context { return ctx }
	errc := make(chan error, 2)
	if f.metricsListen != "" {
		// Metrics without a token, on an address only the monitoring
		// system reaches.
		mln, err := net.Listen("tcp", f.metricsListen)
		if err != nil {
			ln.Close()
			return fmt.Errorf("--metrics-listen: %w", err)
		}
		ms := &http.Server{Handler: srv.MetricsHandler(), ReadHeaderTimeout: 10 * time.Second,
			ReadTimeout: time.Minute, WriteTimeout: time.Minute, IdleTimeout: 2 * time.Minute}
		defer ms.Close()
		fmt.Fprintf(stderr, "jobrun: metrics on http://%s/metrics\n", mln.Addr())
		go func() { errc <- ms.Serve(mln) }()
	}
	fmt.Fprintf(stderr, "jobrun: server listening on %s\n", ln.Addr())
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shut, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := hs.Shutdown(shut); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return nil
}

// token returns given, or the token kept at path, made and kept there the
// first time.
func token(given, path string) (string, error) {
	if given != "" {
		return given, nil
	}
	data, err := os.ReadFile(path)
	if err == nil {
		return strings.TrimSpace(string(data)), nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	t := scheduler.NewToken()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", err
	}
	if err := atomicfile.Write(filepath.Dir(path), path, []byte(t+"\n")); err != nil {
		return "", fmt.Errorf("keep token: %w", err)
	}
	return t, nil
}

// retention reads --retain and --retain-runs.
func retention(age string, runs int) (scheduler.Retention, error) {
	r := scheduler.Retention{KeepRuns: runs}
	if runs < 0 {
		return r, &usageError{fmt.Errorf("--retain-runs %d: want 0 or more", runs)}
	}
	if strings.TrimSpace(age) == "0" {
		return r, nil
	}
	d, err := units.ParseDuration(age)
	if err != nil {
		return r, &usageError{fmt.Errorf("--retain: %w", err)}
	}
	r.Age = d
	return r, nil
}
