package config

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func testCert(t *testing.T) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func TestCAFileRelativeToConfig(t *testing.T) {
	c, err := Parse("/etc/jobrun/config.hcl", []byte(`ca_file = "proxy-ca.pem"`))
	if err != nil || c.CAFile != "/etc/jobrun/proxy-ca.pem" {
		t.Errorf("relative ca_file: %q, %v", c.CAFile, err)
	}
	c, err = Parse("/etc/jobrun/config.hcl", []byte(`ca_file = "/etc/ssl/certs/ca-certificates.crt"`))
	if err != nil || c.CAFile != "/etc/ssl/certs/ca-certificates.crt" {
		t.Errorf("absolute ca_file: %q, %v", c.CAFile, err)
	}
	if _, err := Parse("c.hcl", []byte(`ca_file = ["a"]`)); err == nil || !strings.Contains(err.Error(), "c.hcl:1:") {
		t.Errorf("ca_file of the wrong type: %v", err)
	}
}

// TestReadCAFile: certificates are kept (text between them dropped), and
// anything else is refused with the file's name; a private key above all,
// since the file goes to every job.
func TestReadCAFile(t *testing.T) {
	dir := t.TempDir()
	cert := testCert(t)
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.pem", "# a comment, as RHEL's bundle has\n"+string(cert)+"\n"+string(cert))
	b, err := ReadCAFile(good)
	if err != nil || string(b) != string(cert)+string(cert) {
		t.Errorf("ReadCAFile(good) = %q, %v", b, err)
	}
	if host := "/etc/ssl/certs/ca-certificates.crt"; fileExists(host) {
		if _, err := ReadCAFile(host); err != nil {
			t.Errorf("the host's own bundle: %v", err)
		}
	}
	key := "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIBvZ0oEX3ZsRk5FT1Y8kbhUJKZc7/yMOqVXnJ6iD8LBd\n-----END PRIVATE KEY-----\n"
	for name, c := range map[string]struct{ body, want string }{
		"empty.pem":  {"", "no PEM certificate"},
		"der.crt":    {"\x30\x82\x01\x0a garbage", "no PEM certificate"},
		"key.pem":    {string(cert) + key, `block 2 is a "PRIVATE KEY", not a CERTIFICATE`},
		"bad.pem":    {"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "certificate 1: x509: "},
		"broken.pem": {string(cert) + "-----BEGIN CERTIFICATE-----\nMIIB\n", "a broken PEM block after certificate 1"},
	} {
		p := write(name, c.body)
		_, err := ReadCAFile(p)
		if err == nil || !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("ReadCAFile(%s) = %v, want an error naming the file and saying %q", name, err, c.want)
		}
	}
	if _, err := ReadCAFile(filepath.Join(dir, "missing.pem")); err == nil || !strings.Contains(err.Error(), "missing.pem") {
		t.Errorf("missing file: %v", err)
	}
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
