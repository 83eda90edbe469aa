package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"golang.org/x/crypto/bcrypt"

	"github.com/jobrun/jobrun/internal/testenv"
)

const authUser, authPass = "ci", "pull-s3cret-77"

// authRegistry runs Debian's docker-registry with htpasswd auth (user ci)
// on a free port until t ends, and returns its host:port.
func authRegistry(t *testing.T) string {
	t.Helper()
	testenv.RequireTool(t, "docker-registry")
	dir := t.TempDir()
	hash, err := bcrypt.GenerateFromPassword([]byte(authPass), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "htpasswd"), []byte(authUser+":"+string(hash)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cfg := fmt.Sprintf(`version: 0.1
storage:
  filesystem:
    rootdirectory: %s/data
http:
  addr: %s
auth:
  htpasswd:
    realm: jobrun-test
    path: %s/htpasswd
`, dir, addr, dir)
	if err := os.WriteFile(filepath.Join(dir, "config.yml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(dir, "log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("docker-registry", "serve", filepath.Join(dir, "config.yml"))
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait(); logf.Close() })
	for i := 0; ; i++ {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			break
		}
		if i == 200 {
			b, _ := os.ReadFile(filepath.Join(dir, "log"))
			t.Fatalf("docker-registry never listened on %s:\n%s", addr, b)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return addr
}

// pushAuth copies the only image of an OCI layout to ref as user ci.
func pushAuth(t *testing.T, dir, ref string) {
	t.Helper()
	p, err := layout.FromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	idx, _ := p.ImageIndex()
	m, err := idx.IndexManifest()
	if err != nil || len(m.Manifests) == 0 {
		t.Fatalf("layout %s: %v", dir, err)
	}
	img, err := idx.Image(m.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img, remote.WithAuth(&authn.Basic{Username: authUser, Password: authPass})); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
}

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
	reg := authRegistry(t)
	v1 := strings.TrimSuffix(strings.TrimPrefix(busybox(t), "oci-layout:"), ":latest")
	tag := reg + "/private/ci:latest"
	pushAuth(t, v1, tag)
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
	reg := authRegistry(t)
	v1 := strings.TrimSuffix(strings.TrimPrefix(busybox(t), "oci-layout:"), ":latest")
	tag := reg + "/private/ci:latest"
	pushAuth(t, v1, tag)
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
