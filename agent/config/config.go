// Package config reads the agent's configuration file, an HCL file under the
// state directory (or --config):
//
//	registry "docker.io" {
//	  mirrors  = ["127.0.0.1:5000"]   # tried in order before the registry itself
//	}
//	registry "127.0.0.1:5000" {
//	  insecure = true                 # plain HTTP; only for hosts listed here
//	}
//	registry "ghcr.io" {
//	  username      = "ci"            # a login for pulls from this host,
//	  password_file = "ghcr.pass"     # its password read from a file (relative:
//	                                  # to this file) or from password_env = "VAR"
//	}
//	ca_file = "/etc/ssl/certs/ca-certificates.crt"  # CAs every job and pull trusts too
//	pull    = "always"    # when jobs' images are checked at the registry:
//	                      # always (the default), if-missing or never
//	network {
//	  allow_host = false              # let jobs ask for network = "host"
//	  subnet     = "10.213.0.0/16"    # the jobs' bridge network
//	  deny       = ["169.254.169.254/32", "10.0.0.0/8"]  # replaces the default list
//	  allow      = ["192.0.2.10:5000"]  # TCP address:ports of the host jobs may
//	                                    # reach (a registry the agent pulls from
//	                                    # too), one port each; none by default;
//	                                    # never loopback or the jobs' subnet
//	}
//	cache {
//	  budget   = "50GiB"  # or "20%" of the state dir's filesystem (the default)
//	  min_free = "5GiB"   # shrink below budget while less is free (default "10%")
//	  remote   = "s3://jobrun-cache/ci?endpoint=minio.internal:9000"  # shared by the pool
//	}
//	image {
//	  budget   = "30GiB"  # default "20%"
//	  min_free = "5GiB"   # default "10%"
//	}
//	userns = "on"   # each job in a user namespace of its own id range (the
//	                # default); "off": a job's root is the host's root
//
// A missing file means the defaults. Sections for other parts of the agent
// are added as blocks of their own.
package config

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// Config is the agent's configuration.
type Config struct {
	// Registries by host, as written ("docker.io", "ghcr.io",
	// "127.0.0.1:5000").
	Registries map[string]Registry
	// Network configures jobs' networking.
	Network Network
	// CAFile, if set, is a file of PEM certificates every job trusts on
	// top of its image's own (see ReadCAFile), and the agent's image pulls
	// on top of the host's: the host's bundle, a TLS-intercepting proxy's
	// CA, a private registry's. A relative path is relative to the
	// config file's directory.
	CAFile string
	// Pull is the pull policy of jobs whose file sets none: "always",
	// "if-missing" or "never"; empty means the command's default.
	Pull string
	// Cache configures the dependency caches.
	Cache Cache
	// Image configures the image store.
	Image Image
	// Userns is "on" (the default): every job runs in a user namespace
	// mapping its ids 0-65535 onto a host range of its own; or "off": a
	// job's root is the host's root, behind capabilities and seccomp.
	Userns string
}

// Userns values.
const (
	UsernsOn  = "on"
	UsernsOff = "off"
)

// Cache configures the dependency caches.
type Cache struct {
	// Budget bounds their size on disk.
	Budget Budget
	// Remote, if set, is the bucket the pool's agents share volumes
	// through, as an s3:// URL like an artifact store's (keys come from
	// the environment when it is opened).
	Remote string
}

// Image configures the image store.
type Image struct {
	// Budget bounds its size on disk.
	Budget Budget
}

// Network configures jobs' networking.
type Network struct {
	// AllowHost lets jobs use network = "host": the host's own network,
	// its loopback services included. Off by default.
	AllowHost bool
	// Subnet is the jobs' bridge subnet; invalid (zero) means the
	// network package's default.
	Subnet netip.Prefix
	// Deny are destination ranges jobs may not reach. Nil means the
	// network package's defaults (cloud metadata addresses); a deny
	// attribute replaces them, and deny = [] denies nothing.
	Deny []netip.Prefix
	// Allow are TCP address:ports of the host jobs may reach, one port
	// each (network.Options.Allow); none by default. The network package
	// checks them against the jobs' subnet (network.CheckAllow).
	Allow []netip.AddrPort
}

// Registry is how to reach one registry host.
type Registry struct {
	// Mirrors are hosts tried in order before the registry itself.
	Mirrors []string
	// Insecure allows plain HTTP to this host.
	Insecure bool
	// Username and Password, if set, log in to this host for pulls.
	Username string
	Password Secret
}

// Secret is a password from the config: it prints as "***".
type Secret string

// String hides the secret.
func (Secret) String() string { return "***" }

// GoString hides the secret.
func (Secret) GoString() string { return `"***"` }

// Registry returns the settings of host; "index.docker.io" and
// "registry-1.docker.io" are "docker.io".
func (c *Config) Registry(host string) Registry {
	if c == nil {
		return Registry{}
	}
	switch host {
	case "index.docker.io", "registry-1.docker.io":
		host = "docker.io"
	}
	return c.Registries[host]
}

type fileSchema struct {
	Registries []struct {
		Host     string   `hcl:"host,label"`
		Mirrors  []string `hcl:"mirrors,optional"`
		Insecure bool     `hcl:"insecure,optional"`
		Username string   `hcl:"username,optional"`
		PassFile string   `hcl:"password_file,optional"`
		PassEnv  string   `hcl:"password_env,optional"`
	} `hcl:"registry,block"`
	Network *struct {
		AllowHost bool      `hcl:"allow_host,optional"`
		Subnet    string    `hcl:"subnet,optional"`
		Deny      *[]string `hcl:"deny,optional"`
		Allow     []string  `hcl:"allow,optional"`
	} `hcl:"network,block"`
	CAFile string `hcl:"ca_file,optional"`
	Pull   string `hcl:"pull,optional"`
	Cache  *struct {
		Budget  string `hcl:"budget,optional"`
		MinFree string `hcl:"min_free,optional"`
		Remote  string `hcl:"remote,optional"`
	} `hcl:"cache,block"`
	Image  *storeSchema `hcl:"image,block"`
	Userns string       `hcl:"userns,optional"`
}

// Load reads the file at path. A missing file gives the defaults; a bad one
// gives an error with file:line:col.
func Load(path string) (*Config, error) {
	src, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return defaults(), nil
	}
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return Parse(path, src)
}

// Parse parses src, naming it filename in errors.
func Parse(filename string, src []byte) (*Config, error) {
	f, diags := hclparse.NewParser().ParseHCL(src, filename)
	var s fileSchema
	if !diags.HasErrors() {
		diags = append(diags, gohcl.DecodeBody(f.Body, nil, &s)...)
	}
	if diags.HasErrors() {
		return nil, diagError(diags)
	}
	err := checkMirrors(f, s)
	if err != nil {
		return nil, err
	}
	c := defaults()
	for _, r := range s.Registries {
		if r.Host == "" || strings.ContainsAny(r.Host, "/ ") {
			return nil, fmt.Errorf("%s: registry %q: want a host name, with an optional :port", filename, r.Host)
		}
		if _, dup := c.Registries[r.Host]; dup {
			return nil, fmt.Errorf("%s: registry %q is configured twice", filename, r.Host)
		}
		reg := Registry{Mirrors: r.Mirrors, Insecure: r.Insecure, Username: r.Username}
		pw, err := password(filename, r.Host, r.Username, r.PassFile, r.PassEnv)
		if err != nil {
			return nil, err
		}
		reg.Password = pw
		c.Registries[r.Host] = reg
	}
	if s.CAFile != "" {
		c.CAFile = s.CAFile
		if !filepath.IsAbs(c.CAFile) {
			c.CAFile = filepath.Join(filepath.Dir(filename), c.CAFile)
		}
	}
	switch s.Pull {
	case "", "always", "if-missing", "never":
		c.Pull = s.Pull
	default:
		return nil, fmt.Errorf("%s: pull %q: want \"always\", \"if-missing\" or \"never\"", filename, s.Pull)
	}
	if c.Userns, err = userns(f, s.Userns); err != nil {
		return nil, err
	}
	var cs *storeSchema
	if s.Cache != nil {
		cs = &storeSchema{Budget: s.Cache.Budget, MinFree: s.Cache.MinFree}
		c.Cache.Remote = s.Cache.Remote
		if r := c.Cache.Remote; r != "" && !strings.HasPrefix(r, "s3://") {
			return nil, fmt.Errorf("%s: cache: remote %q: want s3://BUCKET[/PREFIX]?endpoint=HOST:PORT", filename, r)
		}
	}
	if c.Cache.Budget, err = cs.budget(filename, "cache", DefaultBudget()); err != nil {
		return nil, err
	}
	if c.Image.Budget, err = s.Image.budget(filename, "image", DefaultBudget()); err != nil {
		return nil, err
	}
	if n := s.Network; n != nil {
		c.Network.AllowHost = n.AllowHost
		if n.Subnet != "" {
			p, err := netip.ParsePrefix(n.Subnet)
			if err != nil || !p.Addr().Is4() {
				return nil, fmt.Errorf("%s: network: subnet %q: want an IPv4 prefix like \"10.213.0.0/16\"", filename, n.Subnet)
			}
			c.Network.Subnet = p
		}
		if n.Deny != nil {
			c.Network.Deny = []netip.Prefix{}
			for _, d := range *n.Deny {
				p, err := netip.ParsePrefix(d)
				if err != nil {
					if a, aerr := netip.ParseAddr(d); aerr == nil && a.Is4() {
						p, err = netip.PrefixFrom(a, 32), nil
					}
				}
				if err != nil || !p.Addr().Is4() {
					return nil, fmt.Errorf("%s: network: deny %q: want an IPv4 address or prefix like \"169.254.169.254/32\"", filename, d)
				}
				c.Network.Deny = append(c.Network.Deny, p.Masked())
			}
		}
		for _, a := range n.Allow {
			ap, err := ParseAllow(a)
			if err != nil {
				return nil, fmt.Errorf("%s: network: %w", filename, err)
			}
			if p := c.Network.Subnet; p.IsValid() && p.Contains(ap.Addr()) {
				return nil, fmt.Errorf("%s: network: allow %q: inside the jobs' subnet %s: the gateway is the host's every port and the rest are jobs; use an address of the host outside it", filename, a, p)
			}
			c.Network.Allow = append(c.Network.Allow, ap)
		}
	}
	return c, nil
}

// ParseAllow parses one allow entry, an IPv4 address:port of the host
// (network { allow = ["192.0.2.10:5000"] }, jobrun local --allow),
// refusing what no job could use: another form, port 0, loopback (a job's
// 127.0.0.1 is its own), an address that is not one host's. The jobs'
// subnet is the network package's to check (network.CheckAllow), where
// the default one is known.
func ParseAllow(s string) (netip.AddrPort, error) {
	a, err := netip.ParseAddrPort(s)
	switch {
	case err != nil || !a.Addr().Is4():
		return a, fmt.Errorf("allow %q: want an IPv4 address:port like \"192.0.2.10:5000\" (TCP; jobs have no IPv6 route)", s)
	case a.Port() == 0:
		return a, fmt.Errorf("allow %q: want a port from 1 to 65535", s)
	case a.Addr().IsLoopback():
		return a, fmt.Errorf("allow %q: a job cannot reach the host's loopback (its 127.0.0.1 is its own); use an address of the host that jobs route to, and have the service listen there", s)
	case a.Addr().IsUnspecified() || a.Addr().IsMulticast() || a.Addr() == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return a, fmt.Errorf("allow %q: want one unicast address of the host", s)
	}
	return a, nil
}

// checkMirrors refuses a mirror that is not a plain host[:port] (a scheme
// or a path), pointing at the mirrors attribute that holds it.
func checkMirrors(f *hcl.File, s fileSchema) error {
	body, ok := f.Body.(*hclsyntax.Body)
	if !ok {
		return nil
	}
	i := -1 // the registry blocks decode in order
	for _, b := range body.Blocks {
		if b.Type != "registry" {
			continue
		}
		if i++; i >= len(s.Registries) {
			break
		}
		for _, m := range s.Registries[i].Mirrors {
			if m != "" && !strings.ContainsAny(m, "/ ") {
				continue
			}
			rng := b.DefRange()
			if a, ok := b.Body.Attributes["mirrors"]; ok {
				rng = a.Expr.Range()
			}
			return fmt.Errorf("config: %s:%d:%d: registry %q: mirror %q: want a host name with an optional :port, no scheme or path",
				rng.Filename, rng.Start.Line, rng.Start.Column, s.Registries[i].Host, m)
		}
	}
	return nil
}

// userns checks the userns attribute's value v, pointing at it when it
// is neither "on" nor "off".
func userns(f *hcl.File, v string) (string, error) {
	switch v {
	case "":
		return UsernsOn, nil
	case UsernsOn, UsernsOff:
		return v, nil
	}
	where := ""
	if body, ok := f.Body.(*hclsyntax.Body); ok {
		if a, ok := body.Attributes["userns"]; ok {
			r := a.Expr.Range()
			where = fmt.Sprintf("%s:%d:%d: ", r.Filename, r.Start.Line, r.Start.Column)
		}
	}
	return "", fmt.Errorf("config: %suserns %q: want \"on\" (each job in a user namespace of its own) or \"off\" (a job's root is the host's root)", where, v)
}

func defaults() *Config {
	return &Config{
		Userns:     UsernsOn,
		Registries: map[string]Registry{},
		Cache:      Cache{Budget: DefaultBudget()},
		Image:      Image{Budget: DefaultBudget()},
	}
}

func diagError(diags hcl.Diagnostics) error {
	var msgs []string
	for _, d := range diags {
		if d.Severity != hcl.DiagError {
			continue
		}
		m := d.Summary
		if d.Detail != "" {
			m += ": " + d.Detail
		}
		if d.Subject != nil {
			m = fmt.Sprintf("%s:%d:%d: %s", d.Subject.Filename, d.Subject.Start.Line, d.Subject.Start.Column, m)
		}
		msgs = append(msgs, m)
	}
	return errors.New("config: " + strings.Join(msgs, "; "))
}

// password reads a registry's password from its file or environment
// variable; errors name the file or variable, never the password.
func password(filename, host, user, file, env string) (Secret, error) {
	switch {
	case user == "" && file == "" && env == "":
		return "", nil
	case user == "":
		return "", fmt.Errorf("%s: registry %q: a password without a username", filename, host)
	case file != "" && env != "":
		return "", fmt.Errorf("%s: registry %q: password_file and password_env both set; want one", filename, host)
	case file != "":
		if !filepath.IsAbs(file) {
			file = filepath.Join(filepath.Dir(filename), file)
		}
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("%s: registry %q: password_file: %w", filename, host, err)
		}
		pw := strings.TrimRight(string(b), "\r\n")
		if pw == "" {
			return "", fmt.Errorf("%s: registry %q: password_file %s is empty", filename, host, file)
		}
		return Secret(pw), nil
	case env != "":
		pw := os.Getenv(env)
		if pw == "" {
			return "", fmt.Errorf("%s: registry %q: password_env: $%s is empty or unset", filename, host, env)
		}
		return Secret(pw), nil
	}
	return "", fmt.Errorf("%s: registry %q: username %q without password_file or password_env", filename, host, user)
}
