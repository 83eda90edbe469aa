package config

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
)

// maxCAFile bounds a CA file: the host's whole bundle is about 200 KiB.
const maxCAFile = 8 << 20

// ReadCAFile reads a file of PEM CA certificates for jobs to trust (the
// agent config's ca_file, `jobrun local --ca-file`) and returns them
// re-encoded, one CERTIFICATE block each. Text between blocks (the
// comments of some distributions' bundles) is dropped. Anything else is an
// error naming the file: no certificate at all, a block that is not a
// certificate (a private key must never reach every job), a certificate
// that does not parse, or a broken block.
func ReadCAFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("CA file: %w", err)
	}
	defer f.Close()
	src, err := io.ReadAll(io.LimitReader(f, maxCAFile+1))
	if err != nil {
		return nil, fmt.Errorf("CA file %s: %w", path, err)
	}
	if len(src) > maxCAFile {
		return nil, fmt.Errorf("CA file %s: larger than %d MiB; want PEM certificates", path, maxCAFile>>20)
	}
	var out bytes.Buffer
	n := 0
	rest := src
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		n++
		if b.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("CA file %s: block %d is a %q, not a CERTIFICATE; the file is given to every job, so it must hold certificates only", path, n, b.Type)
		}
		if _, err := x509.ParseCertificate(b.Bytes); err != nil {
			return nil, fmt.Errorf("CA file %s: certificate %d: %w", path, n, err)
		}
		pem.Encode(&out, &pem.Block{Type: "CERTIFICATE", Bytes: b.Bytes})
	}
	if bytes.Contains(rest, []byte("-----BEGIN")) {
		return nil, fmt.Errorf("CA file %s: a broken PEM block after certificate %d", path, n)
	}
	if n == 0 {
		return nil, errors.New("CA file " + path + ": no PEM certificate (want -----BEGIN CERTIFICATE----- blocks)")
	}
	return out.Bytes(), nil
}
