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
