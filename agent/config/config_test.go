package config

import (
	"path/filepath"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	c, err := Parse("c.hcl", []byte(`
registry "docker.io" {
  mirrors = ["127.0.0.1:5000", "mirror.local"]
}
registry "127.0.0.1:5000" {
  insecure = true
}
`))
	if err != nil {
		t.Fatal(err)
	}
	if m := c.Registry("index.docker.io").Mirrors; len(m) != 2 || m[0] != "127.0.0.1:5000" {
		t.Errorf("docker.io mirrors = %v", m)
	}
	if !c.Registry("127.0.0.1:5000").Insecure || c.Registry("docker.io").Insecure {
		t.Error("insecure applies to the listed host only")
	}
	if r := c.Registry("ghcr.io"); r.Insecure || len(r.Mirrors) > 0 {
		t.Errorf("unlisted host has settings: %+v", r)
	}
}

func TestErrors(t *testing.T) {
	cases := map[string]string{
		`registry "docker.io" { mirors = ["x"] }`: `c.hcl:1:24: Unsupported argument`,
		"registry \"a\" {}\nregistry \"a\" {}":    `"a" is configured twice`,
		`registry "http://x/y" {}`:                `want a host name`,
		`registry "x" { insecure = "maybe" }`:     `c.hcl:1:28: Unsuitable value type`,
		`registry "x" {`:                          `c.hcl:1:`,
	}
	for src, want := range cases {
		_, err := Parse("c.hcl", []byte(src))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Parse(%q) = %v, want an error containing %q", src, err, want)
		}
	}
}

func TestLoadMissingIsDefault(t *testing.T) {
	c, err := Load(filepath.Join(t.TempDir(), "none.hcl"))
	if err != nil || c == nil || len(c.Registries) != 0 {
		t.Errorf("Load(missing) = %+v, %v", c, err)
	}
}

func TestNetwork(t *testing.T) {
	c, err := Parse("c.hcl", []byte(`
network {
  allow_host = true
  subnet     = "10.50.0.0/24"
  deny       = ["192.0.2.0/24", "198.51.100.7"]
}
`))
	if err != nil {
		t.Fatal(err)
	}
	n := c.Network
	if !n.AllowHost || n.Subnet.String() != "10.50.0.0/24" || len(n.Deny) != 2 || n.Deny[0].String() != "192.0.2.0/24" || n.Deny[1].String() != "198.51.100.7/32" {
		t.Errorf("network = %+v", n)
	}
	c, err = Parse("c.hcl", []byte(`network {}`))
	if err != nil || c.Network.AllowHost || c.Network.Deny != nil {
		t.Errorf("empty network block: %+v, %v: want host refused, default deny-list", c.Network, err)
	}
	c, err = Parse("c.hcl", []byte(`network { deny = [] }`))
	if err != nil || c.Network.Deny == nil || len(c.Network.Deny) != 0 {
		t.Errorf("deny = []: %+v, %v: want an empty, non-nil list", c.Network.Deny, err)
	}
	for src, want := range map[string]string{
		`network { subnet = "nope" }`:    `c.hcl: network: subnet "nope"`,
		`network { deny = ["::1/128"] }`: `c.hcl: network: deny "::1/128"`,
		`network { allow = true }`:       `c.hcl:1:19: Unsuitable value type`, // not allow_host: a list of ADDR:PORT
	} {
		if _, err := Parse("c.hcl", []byte(src)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Parse(%q) = %v, want %q", src, err, want)
		}
	}
}

func TestBudgetsAndCacheRemote(t *testing.T) {
	c, err := Parse("config.hcl", []byte(`
cache {
  budget   = "50GiB"
  min_free = "5%"
  remote   = "s3://jobrun-cache/ci?endpoint=minio.internal:9000"
}
image {
  budget = "30%"
}
`))
	if err != nil {
		t.Fatal(err)
	}
	want := Budget{Limit: Space{Bytes: 50 << 30}, MinFree: Space{Percent: 5}}
	if c.Cache.Budget != want || c.Cache.Remote != "s3://jobrun-cache/ci?endpoint=minio.internal:9000" {
		t.Errorf("cache = %+v", c.Cache)
	}
	if want := (Budget{Limit: Space{Percent: 30}, MinFree: DefaultBudget().MinFree}); c.Image.Budget != want {
		t.Errorf("image budget = %+v, want %+v", c.Image.Budget, want)
	}
	// No file, no blocks: the defaults, which bound both stores.
	d, err := Parse("config.hcl", nil)
	if err != nil {
		t.Fatal(err)
	}
	if d.Cache.Budget != DefaultBudget() || d.Image.Budget != DefaultBudget() || d.Cache.Budget.Limit.Percent == 0 || d.Cache.Budget.MinFree.Percent == 0 {
		t.Errorf("defaults: %+v %+v", d.Cache, d.Image)
	}
	for src, msg := range map[string]string{
		`cache { budget = "lots" }`:       `config.hcl: cache: budget: invalid size "lots"`,
		`cache { budget = "120%" }`:       `config.hcl: cache: budget: invalid percentage "120%"`,
		`image { min_free = "0" }`:        `config.hcl: image: min_free: invalid size "0"`,
		`cache { remote = "http://x/y" }`: `config.hcl: cache: remote "http://x/y": want s3://`,
		`cache { budgte = "1GiB" }`:       `Unsupported argument`,
	} {
		if _, err := Parse("config.hcl", []byte(src)); err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("%s: got %v, want %q", src, err, msg)
		}
	}
}

func TestBudgetEffective(t *testing.T) {
	b := Budget{Limit: Space{Percent: 20}, MinFree: Space{Bytes: 100}}
	for _, c := range []struct{ total, avail, used, want int64 }{
		{1000, 500, 50, 200}, // plenty free: the limit
		{1000, 60, 150, 110}, // 40 short of the floor: shrink by 40
		{1000, 0, 50, 0},     // more short than the store holds
	} {
		if got := b.Effective(c.total, c.avail, c.used); got != c.want {
			t.Errorf("Effective(%d, %d, %d) = %d, want %d", c.total, c.avail, c.used, got, c.want)
		}
	}
}
