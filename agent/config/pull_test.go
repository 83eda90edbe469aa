package config

import (
	"fmt"
	"os"
	"path/filepath"
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

// TestRegistryPasswordNeverPrinted: a registry login's password is read
// from its file or variable, and the parsed config prints it as ***.
func TestRegistryPasswordNeverPrinted(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "pw"), []byte("hunter2-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("P22_PW", "hunter2-env")
	for pw, attr := range map[string]string{"hunter2-file": `password_file = "pw"`, "hunter2-env": `password_env = "P22_PW"`} {
		c, err := Parse(filepath.Join(dir, "config.hcl"), []byte("registry \"r.example\" {\n username = \"ci\"\n "+attr+"\n}"))
		if err != nil {
			t.Fatal(err)
		}
		if r := c.Registry("r.example"); r.Username != "ci" || string(r.Password) != pw {
			t.Errorf("%s: got user %q", attr, r.Username)
		}
		if s := fmt.Sprintf("%v %+v %#v %v", c, c, c.Registries, c.Registry("r.example")); strings.Contains(s, pw) {
			t.Errorf("the password prints: %s", s)
		}
	}
	for body, msg := range map[string]string{
		`registry "r" { username = "ci" }`:                                         "without password_file or password_env",
		`registry "r" { password_env = "P22_PW" }`:                                 "without a username",
		`registry "r" { username = "ci" password_file = "nope" }`:                  "password_file",
		`registry "r" { username = "ci" password_env = "P22_UNSET_VARIABLE_XYZ" }`: "empty or unset",
	} {
		body = strings.ReplaceAll(strings.Replace(body, "{ ", "{\n", 1), `" password_`, "\"\npassword_")
		body = strings.Replace(body, " }", "\n}", 1)
		_, err := Parse(filepath.Join(dir, "config.hcl"), []byte(body))
		if err == nil || !strings.Contains(err.Error(), msg) || strings.Contains(err.Error(), "hunter2") {
			t.Errorf("%s: %v, want %q", body, err, msg)
		}
	}
}
