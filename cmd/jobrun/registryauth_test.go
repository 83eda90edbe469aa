package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func privateJob(tag, creds string) string {
	if creds != "" {
		creds = `image_credentials = "` + creds + `"`
	}
	return `
job "private" {
  image   = "` + tag + `"
  ` + creds + `
  network = "none"
  step "x" { run = "echo pulled-private; env | grep -c ` + authPass + ` || true" }
}
`
}

// TestLocalImageCredentialsFromSecret: a private image is refused without
// a login, and pulled with the job's image_credentials secret
// (USER:PASSWORD), which is neither in the job's environment nor printed.
// Before, a job had no way to give the registry a login.
func TestLocalImageCredentialsFromSecret(t *testing.T) {
	reg, tag := privateBusybox(t)
	cfg := filepath.Join(t.TempDir(), "config.hcl")
	if err := os.WriteFile(cfg, []byte(`registry "`+reg+`" { insecure = true }`), 0o644); err != nil {
		t.Fatal(err)
	}
	h := newTestHost(t)

	r := h.local(t, project(t, privateJob(tag, ""), map[string]string{}), "--config", cfg)
	if r.code == 0 || !strings.Contains(strings.ToLower(r.out+r.err), "unauthorized") {
		t.Fatalf("no login: exit %d, want a refusal that says unauthorized:\n%s%s", r.code, r.out, r.err)
	}
	r = h.local(t, project(t, privateJob(tag, "REGISTRY_LOGIN"), map[string]string{}), "--config", cfg,
		"--secret", "REGISTRY_LOGIN="+authUser+":wrong-password")
	if r.code == 0 {
		t.Fatalf("a wrong password pulled the image:\n%s", r.out)
	}
	r = h.local(t, project(t, privateJob(tag, "REGISTRY_LOGIN"), map[string]string{}), "--config", cfg,
		"--secret", "REGISTRY_LOGIN="+authUser+":"+authPass)
	if r.code != 0 || !strings.Contains(r.out, "pulled-private") {
		t.Fatalf("with the login: exit %d\n%s%s", r.code, r.out, r.err)
	}
	// grep -c counts the environment's lines holding the password: none.
	if !strings.Contains(r.out, "x | 0\n") {
		t.Errorf("the password is in the job's environment:\n%s", r.out)
	}
	if strings.Contains(r.out+r.err, authPass) {
		t.Errorf("the password was printed:\n%s%s", r.out, r.err)
	}
	if r := h.local(t, project(t, privateJob(tag, "REGISTRY_LOGIN"), map[string]string{}), "--config", cfg); r.code == 0 || !strings.Contains(r.out+r.err, "--secret REGISTRY_LOGIN") {
		t.Fatalf("image_credentials secret not passed: exit %d\n%s%s", r.code, r.out, r.err)
	}
}

// TestAgentConfigRegistryLogin: a registry login in the agent config,
// its password from a file or from the environment, pulls a private image
// for jobs that carry none; the config never prints the password.
func TestAgentConfigRegistryLogin(t *testing.T) {
	reg, tag := privateBusybox(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "reg.pass"), []byte(authPass+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("P22_REGISTRY_PASSWORD", authPass)
	for what, login := range map[string]string{
		"password_file": `password_file = "reg.pass"`,
		"password_env":  `password_env = "P22_REGISTRY_PASSWORD"`,
	} {
		cfg := filepath.Join(dir, what+".hcl")
		body := `registry "` + reg + `" {
  insecure = true
  username = "` + authUser + `"
  ` + login + `
}`
		if err := os.WriteFile(cfg, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		h := newTestHost(t)
		r := h.local(t, project(t, privateJob(tag, ""), map[string]string{}), "--config", cfg)
		if r.code != 0 || !strings.Contains(r.out, "pulled-private") {
			t.Fatalf("%s: exit %d\n%s%s", what, r.code, r.out, r.err)
		}
		if strings.Contains(r.out+r.err, authPass) {
			t.Errorf("%s: the password was printed:\n%s%s", what, r.out, r.err)
		}
	}
}
