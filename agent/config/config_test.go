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
		`network { allow = true }`:       `Unsupported argument`,
	} {
		if _, err := Parse("c.hcl", []byte(src)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Parse(%q) = %v, want %q", src, err, want)
		}
	}
}
