package main

// The registries and certificates the tests pull from and trust: a test
// CA and the HTTPS servers it signs, images pushed from the test images'
// OCI layouts, the services' registry as a mirror, a registry with an
// htpasswd login, and scripts/example-registry.sh's TLS registry with a
// login (the image-build example's).

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"golang.org/x/crypto/bcrypt"

	"github.com/jobrun/jobrun/internal/testenv"
)

// testCA is a certificate authority made for one test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

// newTestCA makes a CA named name, valid from an hour ago for a day.
func newTestCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := certTemplate(name)
	tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
	tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// certTemplate is a certificate of cn, valid from an hour ago for a day.
func certTemplate(cn string) *x509.Certificate {
	return &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
	}
}

// serve starts an HTTPS server on 127.0.0.1 whose certificate ca signed.
func (ca *testCA) serve(t *testing.T, h http.Handler) *httptest.Server {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := certTemplate("127.0.0.1")
	tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	s := httptest.NewUnstartedServer(h)
	s.TLS = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
	s.StartTLS()
	t.Cleanup(s.Close)
	return s
}

// layoutImage is the only image (the index's first) of the OCI layout at
// dir.
func layoutImage(t *testing.T, dir string) v1.Image {
	t.Helper()
	p, err := layout.FromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := p.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	m, err := idx.IndexManifest()
	if err != nil || len(m.Manifests) == 0 {
		t.Fatalf("layout %s: %v", dir, err)
	}
	img, err := idx.Image(m.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// pushRef copies the only image of the OCI layout at dir to ref.
func pushRef(t *testing.T, dir string, ref name.Reference, opts ...remote.Option) {
	t.Helper()
	if err := remote.Write(ref, layoutImage(t, dir), opts...); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
}

// push copies the only image of an OCI layout to a registry reference,
// plain HTTP allowed (name.Insecure), with opts (a login: asCI).
func push(t *testing.T, dir, ref string, opts ...remote.Option) {
	t.Helper()
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	pushRef(t, dir, r, opts...)
}

// mirrorConfig is a config's registry blocks that make reg, the plain
// HTTP registry of the tests' services, the mirror of each of hosts.
func mirrorConfig(reg string, hosts ...string) string {
	var b strings.Builder
	for _, h := range hosts {
		fmt.Fprintf(&b, "\nregistry %q {\n  mirrors = [%q]\n}", h, reg)
	}
	fmt.Fprintf(&b, "\nregistry %q {\n  insecure = true\n}\n", reg)
	return b.String()
}

// examplesMirror pushes the images the examples name (busybox,
// golang:1.26) to the services' registry (JOBRUN_TEST_REGISTRY) from the
// test images, and returns the config that makes it Docker Hub's mirror,
// as `make demo` does.
func examplesMirror(t *testing.T) string {
	t.Helper()
	images := testenv.RequireEnv(t, "JOBRUN_TEST_IMAGES", "test images built by scripts/testimages.sh")
	reg := testenv.RequireEnv(t, "JOBRUN_TEST_REGISTRY", "Debian's docker-registry, started by scripts/services.sh")
	push(t, filepath.Join(images, "busybox"), reg+"/library/busybox:latest")
	push(t, filepath.Join(images, "debian-go"), reg+"/library/golang:1.26")
	return mirrorConfig(reg, "docker.io")
}

// The login of authRegistry.
const authUser, authPass = "ci", "pull-s3cret-77"

// asCI is the remote option that logs in to authRegistry as authUser.
func asCI() remote.Option {
	return remote.WithAuth(&authn.Basic{Username: authUser, Password: authPass})
}

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

// privateBusybox starts an authRegistry, pushes the busybox test image to
// it as user ci, and returns the registry's host:port and the image's
// reference there (REGISTRY/private/ci:latest).
func privateBusybox(t *testing.T) (reg, tag string) {
	t.Helper()
	reg = authRegistry(t)
	dir := strings.TrimSuffix(strings.TrimPrefix(busybox(t), "oci-layout:"), ":latest")
	tag = reg + "/private/ci:latest"
	push(t, dir, tag, asCI())
	return reg, tag
}

// exRegistry is a registry of scripts/example-registry.sh: TLS with a
// test CA, htpasswd auth, on a host address that is not loopback.
type exRegistry struct {
	addr, user, pass string
	ca               string // the CA's PEM file
}

// exampleRegistry starts scripts/example-registry.sh in a temp dir and
// stops it when t ends (the registry killed, its address taken off lo).
func exampleRegistry(t *testing.T) exRegistry {
	t.Helper()
	testenv.RequireRoot(t)
	for _, tool := range []string{"docker-registry", "openssl", "ip"} {
		testenv.RequireTool(t, tool)
	}
	dir := t.TempDir()
	script, err := filepath.Abs("../../scripts/example-registry.sh")
	if err != nil {
		t.Fatal(err)
	}
	// stop leaves nothing: no registry process, no address on lo.
	t.Cleanup(func() {
		addr, _ := os.ReadFile(filepath.Join(dir, "addr"))
		pid, _ := os.ReadFile(filepath.Join(dir, "registry.pid"))
		if out, err := exec.Command(script, "stop", dir).CombinedOutput(); err != nil {
			t.Errorf("example-registry.sh stop: %v\n%s", err, out)
		}
		if a := strings.TrimSpace(string(addr)); a != "" {
			out, err := exec.Command("ip", "-4", "-o", "addr", "show", "dev", "lo").CombinedOutput()
			if err != nil || strings.Contains(string(out), " "+a+"/32 ") {
				t.Errorf("example-registry.sh stop left %s on lo: %v\n%s", a, err, out)
			}
		}
		if p := strings.TrimSpace(string(pid)); p != "" {
			if _, err := os.Stat("/proc/" + p); err == nil {
				t.Errorf("example-registry.sh stop left docker-registry (pid %s) running", p)
			}
		}
	})
	if out, err := exec.Command(script, "start", dir).CombinedOutput(); err != nil {
		t.Fatalf("example-registry.sh start: %v\n%s", err, out)
	}
	f, err := os.Open(filepath.Join(dir, "env"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	env := map[string]string{}
	for s := bufio.NewScanner(f); s.Scan(); {
		k, v, _ := strings.Cut(strings.TrimPrefix(s.Text(), "export "), "=")
		env[k] = v
	}
	r := exRegistry{addr: env["EXAMPLE_REGISTRY"], user: env["EXAMPLE_REGISTRY_USER"], pass: env["EXAMPLE_REGISTRY_PASSWORD"], ca: env["EXAMPLE_REGISTRY_CA"]}
	if r.addr == "" || r.user == "" || r.pass == "" || r.ca == "" || strings.HasPrefix(r.addr, "127.") {
		t.Fatalf("example-registry.sh env: %v", env)
	}
	return r
}

// remote are the options that reach r over TLS trusting its CA only, as
// its user with password pass.
func (r exRegistry) remote(t *testing.T, pass string) []remote.Option {
	t.Helper()
	pem, err := os.ReadFile(r.ca)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatalf("%s: no certificate", r.ca)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: pool}
	return []remote.Option{remote.WithTransport(tr), remote.WithAuth(&authn.Basic{Username: r.user, Password: pass})}
}

// push copies the only image of an OCI layout to repo:tag on r.
func (r exRegistry) push(t *testing.T, dir, repo string) {
	t.Helper()
	ref, err := name.ParseReference(r.addr + "/" + repo)
	if err != nil {
		t.Fatal(err)
	}
	pushRef(t, dir, ref, r.remote(t, r.pass)...)
}

// has reports whether r has repo:tag, asking with the right password.
func (r exRegistry) has(t *testing.T, repo string) bool {
	t.Helper()
	ref, err := name.ParseReference(r.addr + "/" + repo)
	if err != nil {
		t.Fatal(err)
	}
	_, err = remote.Head(ref, r.remote(t, r.pass)...)
	var te *transport.Error
	switch {
	case err == nil:
		return true
	case errors.As(err, &te) && te.StatusCode == http.StatusNotFound:
		return false
	default:
		t.Fatalf("HEAD %s: %v", ref, err)
		return false
	}
}
