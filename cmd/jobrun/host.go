package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/jobrun/jobrun/agent"
	"github.com/jobrun/jobrun/agent/config"
	"github.com/jobrun/jobrun/agent/image"
	"github.com/jobrun/jobrun/agent/network"
	"github.com/jobrun/jobrun/agent/sandbox"
	"github.com/jobrun/jobrun/agent/workspace"
	"github.com/jobrun/jobrun/artifacts"
	"github.com/jobrun/jobrun/cache"
	"github.com/jobrun/jobrun/internal/s3client"
	"github.com/jobrun/jobrun/internal/units"
)

// host is what one machine keeps for running jobs, all under the state dir.
type host struct {
	runner  *agent.Runner
	sandbox *sandbox.Runtime
	// keeper keeps the caches and images within their budgets.
	keeper *agent.Housekeeper
	// userns says whether jobs run in user namespaces, and why not.
	userns string
}

type hostOptions struct {
	noCache   bool
	artifacts string // local artifact store directory
	logLimit  string
	caFile    string // --ca-file: replaces the config's ca_file
	// artifactLimit is --artifact-limit: the most bytes of artifacts one
	// job may store; "0" means no cap.
	artifactLimit string
	// pull is --pull: the pull policy of jobs that set none; empty means
	// the config's pull, else always.
	pull string
	// Flags replacing the config's cache and image sections; "" keeps it.
	cacheBudget, imageBudget, minFree string
	cacheRemote                       string
	// cacheReadOnly restores from the remote but never uploads (jobrun
	// local without --cache-upload).
	cacheReadOnly bool
	// userns is --userns of `jobrun local`: "on" or "off"; empty means
	// the config's userns.
	userns string
	// allow is --allow of `jobrun local`: ADDR:PORTs of the host jobs may
	// reach; non-empty, it replaces the config's network allow.
	allow []string
	// slots is how many jobs run at once: the id ranges to hold.
	slots int
	// local runs jobs without user namespaces after a warning when the
	// host cannot give them; the agent refuses to start.
	local bool
	// builders: a job may build images (builds_images): the sandbox
	// compiles a building container's seccomp filter ahead, while the
	// store and the first job get ready.
	builders bool
}

// allowList is the host's address:ports jobs may reach: --allow if given,
// else the config's network allow; an entry no job may have is refused,
// naming where it came from.
func (o hostOptions) allowList(cfg *config.Config, configPath string) ([]netip.AddrPort, error) {
	allow, where := cfg.Network.Allow, configPath+": network:"
	if len(o.allow) > 0 {
		allow, where = nil, "--"
		for _, s := range o.allow {
			a, err := config.ParseAllow(s)
			if err != nil {
				return nil, &usageError{fmt.Errorf("--%w", err)}
			}
			allow = append(allow, a)
		}
	}
	subnet := cfg.Network.Subnet
	if !subnet.IsValid() {
		subnet = network.DefaultSubnet
	}
	for _, a := range allow {
		if err := network.CheckAllow(a, subnet); err != nil {
			if where == "--" {
				return nil, &usageError{fmt.Errorf("--%w", err)}
			}
			return nil, fmt.Errorf("%s %w", where, err)
		}
	}
	return allow, nil
}

// usernsSetup is how o and the config ask for user namespaces.
func (o hostOptions) usernsSetup(cfg *config.Config, configPath, stateDir string) (usernsSetup, error) {
	s := usernsSetup{mode: cfg.Userns, why: fmt.Sprintf("userns = %q in %s", cfg.Userns, configPath),
		howOff: fmt.Sprintf("userns = \"off\" in %s", configPath), stateDir: stateDir, slots: o.slots, fallback: o.local}
	if o.local {
		s.howOff = "--userns off"
	}
	switch o.userns {
	case "":
	case config.UsernsOn, config.UsernsOff:
		s.mode, s.why = o.userns, "--userns "+o.userns
	default:
		return s, &usageError{fmt.Errorf("--userns %q: want on or off", o.userns)}
	}
	if rootlessChild() { // without root: rootless.go
		s.mode, s.why = config.UsernsOff, rootlessWhy()
	}
	return s, nil
}

// budgets applies the flags to the config's budgets and remote.
func (o hostOptions) budgets(cfg *config.Config) error {
	for _, f := range []struct {
		flag, val string
		dst       *config.Space
	}{
		{"--cache-budget", o.cacheBudget, &cfg.Cache.Budget.Limit},
		{"--image-budget", o.imageBudget, &cfg.Image.Budget.Limit},
		{"--min-free", o.minFree, &cfg.Cache.Budget.MinFree},
		{"--min-free", o.minFree, &cfg.Image.Budget.MinFree},
	} {
		if f.val == "" {
			continue
		}
		sp, err := config.ParseSpace(f.val)
		if err != nil {
			return &usageError{fmt.Errorf("%s: %w", f.flag, err)}
		}
		*f.dst = sp
	}
	if o.cacheRemote != "" {
		cfg.Cache.Remote = o.cacheRemote
	}
	return nil
}

// cacheOptions are the cache manager's options from the config: its
// remote, with keys from the environment.
func cacheOptions(ctx context.Context, cfg *config.Config, readOnly bool, log hclog.Logger) (cache.Options, error) {
	opts := cache.Options{Logger: log, ReadOnly: readOnly}
	if cfg.Cache.Remote == "" {
		return opts, nil
	}
	rc, err := s3client.ParseURL(cfg.Cache.Remote, os.Getenv)
	if err != nil {
		return opts, fmt.Errorf("cache remote: %w", err)
	}
	if !readOnly {
		// Like the artifact store: the first agent makes the bucket.
		c, err := s3client.New(rc)
		if err != nil {
			return opts, fmt.Errorf("cache remote: %w", err)
		}
		if err := s3client.EnsureBucket(ctx, c, rc); err != nil {
			return opts, fmt.Errorf("cache remote: %w", err)
		}
	}
	opts.Remote = &rc
	return opts, nil
}

// defaultArtifactLimit is the agent's and `jobrun local`'s cap on one
// job's artifacts: the server's default --artifact-quota per attempt, so a
// job over it fails on the agent before uploading, not at the server.
const defaultArtifactLimit = "10GiB"

// stateDir makes the state dir absolute and creates it.
func (g *globals) absStateDir() (string, error) {
	dir, err := filepath.Abs(g.stateDir)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o711); err != nil {
		return "", fmt.Errorf("state dir: %w", err)
	}
	return dir, nil
}

// loadConfig reads --config, by default STATE_DIR/config.hcl.
func (g *globals) loadConfig(stateDir string) (*config.Config, error) {
	return config.Load(g.configPath(stateDir))
}

// configPath is --config, by default STATE_DIR/config.hcl.
func (g *globals) configPath(stateDir string) string {
	if g.config != "" {
		return g.config
	}
	return filepath.Join(stateDir, "config.hcl")
}

// openImages opens the image store of the state dir.
func (g *globals) openImages(progress io.Writer) (*image.Store, string, error) {
	st, dir, _, err := g.openImagesConfig(progress)
	return st, dir, err
}

// openImagesConfig is openImages that also returns the agent config.
func (g *globals) openImagesConfig(progress io.Writer) (*image.Store, string, *config.Config, error) {
	dir, err := g.absStateDir()
	if err != nil {
		return nil, "", nil, err
	}
	cfg, err := g.loadConfig(dir)
	if err != nil {
		return nil, "", nil, err
	}
	cas, err := readCAs(cfg.CAFile, "")
	if err != nil {
		return nil, "", nil, err
	}
	st, err := g.openStore(dir, cfg, cas, progress)
	return st, dir, cfg, err
}

// openStore opens the image store of the state dir; its pulls trust cas
// (PEM, the config's ca_file or --ca-file) on top of the system's CAs.
func (g *globals) openStore(dir string, cfg *config.Config, cas []byte, progress io.Writer) (*image.Store, error) {
	opts := image.Options{Config: cfg, Log: g.log, Progress: progress, CACerts: cas}
	if err := rootlessMappedIDs(&opts); err != nil {
		return nil, err
	}
	return image.Open(filepath.Join(dir, "images"), opts)
}

// openHost opens every store of the state dir and removes what killed
// processes left behind (only what no live process holds).
func openHost(ctx context.Context, g *globals, o hostOptions, progress io.Writer) (_ *host, err error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("running jobs needs root (namespaces, mounts and cgroups)")
	}
	dir, err := g.absStateDir()
	if err != nil {
		return nil, err
	}
	cfg, err := g.loadConfig(dir)
	if err != nil {
		return nil, err
	}
	if err := o.budgets(cfg); err != nil {
		return nil, err
	}
	allow, err := o.allowList(cfg, g.configPath(dir))
	if err != nil {
		return nil, err
	}
	cas, err := readCAs(cfg.CAFile, o.caFile)
	if err != nil {
		return nil, err
	}
	us, err := o.usernsSetup(cfg, g.configPath(dir), dir)
	if err != nil {
		return nil, err
	}
	// The config is good; the state dir may be touched now. First, the
	// Runtime gets its container starter ready in the background (~10 ms),
	// beside the rest of the set-up here and the first job's, rather than
	// making that job's container wait for it.
	sb, err := sandbox.New(dir, g.log.Named("sandbox"))
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			sb.Close()
		}
	}()
	// Once, before anything is made: a host that cannot give jobs user
	// namespaces says so here, not in every job.
	ids, mode, err := openUserns(ctx, us, progress)
	if err != nil {
		return nil, err
	}
	images, err := g.openStore(dir, cfg, cas, progress)
	if err != nil {
		return nil, err
	}
	if o.builders && ids != nil {
		sb.PrepareBuilder()
	}
	// Without root, jobs' networks are namespaces connected by pasta
	// (agent/network/rootless.go).
	nm, err := network.New(network.Options{StateDir: dir, Subnet: cfg.Network.Subnet, Deny: cfg.Network.Deny,
		Allow: allow, Rootless: rootlessChild(), Log: g.log.Named("network")})
	if err != nil {
		return nil, err
	}
	r := &agent.Runner{Images: images, Sandbox: sb, WorkDir: filepath.Join(dir, "work"), Log: g.log,
		Network: nm, AllowHostNetwork: cfg.Network.AllowHost, IDs: ids}
	r.CACerts = cas
	if r.PullPolicy, err = pullPolicy(o.pull, cfg.Pull); err != nil {
		return nil, err
	}
	if o.logLimit != "" {
		if r.LogLimit, err = units.ParseSize(o.logLimit); err != nil {
			return nil, &usageError{fmt.Errorf("--log-limit: %w", err)}
		}
	}
	if o.artifactLimit != "" {
		if r.ArtifactLimit, err = units.ParseSize(o.artifactLimit); err != nil {
			return nil, &usageError{fmt.Errorf("--artifact-limit: %w", err)}
		}
	}
	if !o.noCache {
		copts, err := cacheOptions(ctx, cfg, o.cacheReadOnly, g.log.Named("cache"))
		if err != nil {
			return nil, err
		}
		if r.Caches, err = cache.Open(filepath.Join(dir, "caches"), copts); err != nil {
			return nil, err
		}
	}
	art, err := filepath.Abs(o.artifacts)
	if err != nil {
		return nil, err
	}
	local, err := artifacts.NewLocal(art)
	if err != nil {
		return nil, err
	}
	r.Artifacts = local
	if err := os.MkdirAll(r.WorkDir, 0o700); err != nil {
		return nil, err
	}
	cleanups := []func(context.Context) error{
		images.Cleanup, sb.Cleanup,
		// The rest of what killed processes left in the state dirs
		// whose run dirs sb.Cleanup swept; before nm.Cleanup, which
		// removes the bridge and the table once their jobs are gone.
		func(ctx context.Context) error {
			reclaimOrphans(ctx, g.log, sb.OrphanedStateDirs(), rootlessChild())
			return nil
		},
		func(ctx context.Context) error { return workspace.Cleanup(ctx, filepath.Join(r.WorkDir, "workspaces")) },
		func(ctx context.Context) error { return agent.CleanupScratch(ctx, r.WorkDir) },
	}
	if nm != nil {
		cleanups = append(cleanups, nm.Cleanup)
	}
	if r.Caches != nil {
		cleanups = append(cleanups, r.Caches.Cleanup)
	}
	// expire_in is enforced here for the local store: expired attempts go
	// when the next run starts.
	cleanups = append(cleanups, func(ctx context.Context) error {
		_, err := local.Sweep(ctx, time.Now())
		return err
	})
	for _, c := range cleanups {
		if err := c(ctx); err != nil {
			g.log.Warn("start-up cleanup", "error", err)
		}
	}
	keeper := &agent.Housekeeper{Caches: r.Caches, Images: images, CacheBudget: cfg.Cache.Budget,
		ImageBudget: cfg.Image.Budget, Log: g.log.Named("budget")}
	if err := keeper.Sweep(ctx); err != nil {
		g.log.Warn("start-up disk budget sweep", "error", err)
	}
	return &host{runner: r, sandbox: sb, keeper: keeper, userns: mode}, nil
}

// Close stops the host's container starter and removes the jobs' bridge
// and firewall table if no job on the host needs them; its jobs must be
// over.
func (h *host) Close() error {
	// The image store's idmapped views of the layers (kept per id range)
	// come off with it.
	if h.runner.Network == nil {
		return errors.Join(h.sandbox.Close(), h.runner.Images.Close())
	}
	return errors.Join(h.sandbox.Close(), h.runner.Network.Close(), h.runner.Images.Close())
}

// readCAs reads the CA certificates of --ca-file (flag), else of the
// config's ca_file; with neither, jobs trust their images' CAs only.
func readCAs(configured, flag string) ([]byte, error) {
	path, what := flag, "--ca-file"
	if path == "" {
		path, what = configured, "config ca_file"
	}
	if path == "" {
		return nil, nil
	}
	b, err := config.ReadCAFile(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return b, nil
}

// pullPolicy is --pull (flag), else the config's pull, else always: a
// moved tag (a new myorg/ci:latest) is pulled, as CI runners do.
func pullPolicy(flag, configured string) (image.Policy, error) {
	p := image.Policy(flag)
	if p == "" {
		p = image.Policy(configured)
	}
	if p == "" {
		return image.Always, nil
	}
	if err := p.Check(); err != nil {
		return "", &usageError{fmt.Errorf("--pull: %w", err)}
	}
	return p, nil
}
