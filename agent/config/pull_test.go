package config

import (
	"strings"
	"testing"
)

// TestParsePull: the config's pull takes the three policies and refuses
// anything else, saying where.
func TestParsePull(t *testing.T) {
	for _, p := range []string{"always", "if-missing", "never"} {
		c, err := Parse("config.hcl", []byte(`pull = "`+p+`"`))
		if err != nil || c.Pull != p {
			t.Errorf("pull = %q: %+v %v", p, c, err)
		}
	}
	if c, err := Parse("config.hcl", nil); err != nil || c.Pull != "" {
		t.Errorf("no pull: %+v %v", c, err)
	}
	if _, err := Parse("config.hcl", []byte(`pull = "sometimes"`)); err == nil || !strings.Contains(err.Error(), `config.hcl: pull "sometimes"`) {
		t.Errorf("pull = sometimes: %v", err)
	}
}
