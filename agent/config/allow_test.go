package config

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
)

// TestAllowOffByDefault: without an allow attribute jobs may reach no
// address:port of the host; with one, exactly the entries written.
func TestAllowOffByDefault(t *testing.T) {
	for _, src := range []string{``, `network {}`, `network { deny = [] }`} {
		c, err := Parse("c.hcl", []byte(src))
		if err != nil || c.Network.Allow != nil {
			t.Errorf("Parse(%q): allow %v, %v: want none", src, c.Network.Allow, err)
		}
	}
	c, err := Parse("c.hcl", []byte(`network {
  allow = ["192.0.2.10:5000", "198.51.100.7:443"]
}`))
	if err != nil {
		t.Fatal(err)
	}
	want := []netip.AddrPort{netip.MustParseAddrPort("192.0.2.10:5000"), netip.MustParseAddrPort("198.51.100.7:443")}
	if !slices.Equal(c.Network.Allow, want) {
		t.Errorf("allow = %v, want %v", c.Network.Allow, want)
	}
}

// TestAllowRefusesWhatNoJobCanUse: an entry that is not one IPv4
// address:port of the host a job routes to is refused, naming the file
// and the entry, with the reason.
func TestAllowRefusesWhatNoJobCanUse(t *testing.T) {
	for src, want := range map[string]string{
		`network { allow = ["192.0.2.10"] }`:                                        `c.hcl: network: allow "192.0.2.10": want an IPv4 address:port`,
		`network { allow = ["registry.local:5000"] }`:                               `c.hcl: network: allow "registry.local:5000": want an IPv4 address:port`,
		`network { allow = ["[2001:db8::1]:5000"] }`:                                `c.hcl: network: allow "[2001:db8::1]:5000": want an IPv4`,
		`network { allow = ["192.0.2.10:0"] }`:                                      `c.hcl: network: allow "192.0.2.10:0": want a port from 1 to 65535`,
		`network { allow = ["192.0.2.10:70000"] }`:                                  `c.hcl: network: allow "192.0.2.10:70000": want an IPv4 address:port`,
		`network { allow = ["127.0.0.1:5000"] }`:                                    `c.hcl: network: allow "127.0.0.1:5000": a job cannot reach the host's loopback`,
		`network { allow = ["127.8.0.1:5000"] }`:                                    `allow "127.8.0.1:5000": a job cannot reach the host's loopback`,
		`network { allow = ["0.0.0.0:5000"] }`:                                      `allow "0.0.0.0:5000": want one unicast address`,
		`network { allow = ["224.0.0.1:5000"] }`:                                    `allow "224.0.0.1:5000": want one unicast address`,
		`network { allow = "192.0.2.10:5000" }`:                                     `c.hcl:1:20: Unsuitable value type`,
		"network {\n  subnet = \"10.50.0.0/24\"\n  allow = [\"10.50.0.1:5000\"]\n}": `c.hcl: network: allow "10.50.0.1:5000": inside the jobs' subnet 10.50.0.0/24`,
	} {
		_, err := Parse("c.hcl", []byte(src))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Parse(%q) = %v, want an error containing %q", src, err, want)
		}
	}
	// Positive control: the same subnet with an address outside it.
	if _, err := Parse("c.hcl", []byte("network {\n  subnet = \"10.50.0.0/24\"\n  allow = [\"10.50.1.1:5000\"]\n}")); err != nil {
		t.Errorf("an address outside the subnet: %v", err)
	}
}
