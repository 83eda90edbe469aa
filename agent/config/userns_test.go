package config

import (
	"strings"
	"testing"
)

// TestParseUserns: userns is "on" unless the file says "off", and any
// other value is refused at its file:line:col.
func TestParseUserns(t *testing.T) {
	for src, want := range map[string]string{"": UsernsOn, `userns = "on"`: UsernsOn, `userns = "off"`: UsernsOff} {
		c, err := Parse("config.hcl", []byte(src))
		if err != nil || c.Userns != want {
			t.Errorf("%q: userns %q, %v; want %q", src, c.Userns, err, want)
		}
	}
	if c := defaults(); c.Userns != UsernsOn {
		t.Errorf("a missing file: userns %q, want on", c.Userns)
	}
	for src, want := range map[string]string{
		"pull = \"always\"\n\nuserns =  \"maybe\"\n": `config: config.hcl:3:11: userns "maybe": want "on"`,
		`userns = "ON"`:   `config: config.hcl:1:10: userns "ON": want "on"`,
		`userns = true`:   `config: config.hcl:1:10: userns "true"`,
		`userns = ["on"]`: `config.hcl:1:10: Unsuitable value type`,
	} {
		_, err := Parse("config.hcl", []byte(src))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want an error containing %q", src, err, want)
		}
	}
}
