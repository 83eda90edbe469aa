package sandbox

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestCABundleResolvesInRoot: writeCABundle follows an image's links as
// the container would, inside its root, never out of it; takes each file
// once; skips what is not a regular file (a directory, a FIFO that would
// block a plain open); and writes nothing into the image.
func TestCABundleResolvesInRoot(t *testing.T) {
	host := t.TempDir()
	secret := filepath.Join(host, "secret.pem")
	if err := os.WriteFile(secret, []byte("HOST-SECRET\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	mk := func(p, body string) {
		t.Helper()
		p = filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	link := func(p, to string) {
		t.Helper()
		p = filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(to, p); err != nil {
			t.Fatal(err)
		}
	}
	// Debian's file without a final newline, Alpine's link to it; RHEL's
	// absolute link, which means the image's file, not the host's.
	mk("etc/ssl/certs/ca-certificates.crt", "IMAGE-DEBIAN")
	link("etc/ssl/cert.pem", "certs/ca-certificates.crt")
	mk("etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem", "IMAGE-RHEL\n")
	link("etc/pki/tls/certs/ca-bundle.crt", "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem")
	// A FIFO: opening it without O_NONBLOCK would hang the start.
	if err := unix.Mkfifo(filepath.Join(root, "etc/ssl/ca-bundle.pem"), 0o644); err != nil {
		t.Fatal(err)
	}
	// A bundle of the image's own, named by its environment; a relative
	// name is no path, and a repeated one counts once.
	mk("opt/ca.pem", "IMAGE-OWN\n")
	files := t.TempDir()
	targets, err := writeCABundle(files, root, []byte("EXTRA\n"), "/opt/ca.pem", "opt/ca.pem", "/etc/ssl/cert.pem")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"/etc/ssl/certs/ca-certificates.crt", "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem", "/opt/ca.pem"}
	if !slices.Equal(targets, want) {
		t.Errorf("targets %q, want %q", targets, want)
	}
	b, err := os.ReadFile(filepath.Join(files, caBundleFile))
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != "IMAGE-DEBIAN\nIMAGE-RHEL\nIMAGE-OWN\nEXTRA\n" {
		t.Errorf("bundle %q", b)
	}
	if b, _ := os.ReadFile(filepath.Join(files, caExtraFile)); string(b) != "EXTRA\n" {
		t.Errorf("extra certificates alone: %q", b)
	}

	// The same paths as links out of the root: absolute, climbing, through
	// /proc, at a directory. None leads anywhere inside the root.
	hostile := t.TempDir()
	for p, to := range map[string]string{
		"etc/ssl/certs/ca-certificates.crt":                secret,
		"etc/ssl/cert.pem":                                 strings.Repeat("../", 10) + strings.TrimPrefix(secret, "/"),
		"etc/pki/tls/certs/ca-bundle.crt":                  "/proc/self/root" + secret,
		"etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem": host,
		"etc/ssl/ca-bundle.pem":                            "/proc/bundle",
	} {
		p = filepath.Join(hostile, p)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(to, p); err != nil {
			t.Fatal(err)
		}
	}
	// An image file at /proc/bundle: the container's /proc hides it.
	if err := os.MkdirAll(filepath.Join(hostile, "proc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(hostile, "proc/bundle"), []byte("IMAGE-PROC\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	targets, err = writeCABundle(files, hostile, []byte("EXTRA\n"))
	if err != nil || len(targets) != 0 {
		t.Errorf("hostile image: targets %q, %v; want none", targets, err)
	}
	if b, _ := os.ReadFile(filepath.Join(files, caBundleFile)); string(b) != "EXTRA\n" {
		t.Errorf("hostile image: bundle %q, want the extra certificates alone", b)
	}
	// Positive control: the same absolute link resolves where the root
	// has the file.
	inRoot := filepath.Join(hostile, secret)
	if err := os.MkdirAll(filepath.Dir(inRoot), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(inRoot, []byte("IMAGE-FILE-AT-THAT-PATH\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if targets, err = writeCABundle(files, hostile, []byte("EXTRA\n")); err != nil || !slices.Contains(targets, secret) {
		t.Errorf("image file at the link's path: targets %q, %v; want %s", targets, err, secret)
	}
	if b, _ := os.ReadFile(filepath.Join(files, caBundleFile)); !strings.HasPrefix(string(b), "IMAGE-FILE-AT-THAT-PATH\n") {
		t.Errorf("bundle %q", b)
	}
}

// TestCABundleImageTooLarge: an image's bundle beyond the bound is an
// error naming the path, not a read of all of it.
func TestCABundleImageTooLarge(t *testing.T) {
	root := t.TempDir()
	p := filepath.Join(root, "etc/ssl/certs/ca-certificates.crt")
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(p, maxImageBundle+1); err != nil {
		t.Fatal(err)
	}
	_, err := writeCABundle(t.TempDir(), root, []byte("EXTRA\n"))
	if err == nil || !strings.Contains(err.Error(), "/etc/ssl/certs/ca-certificates.crt") || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("err = %v", err)
	}
}

// BenchmarkCABundle is what a container start with a CA file adds: the
// host's own root as the image (Debian's bundle, 144 certificates) and the
// same bundle as the extra certificates, written to a fresh files dir on
// a tmpfs, as the containers' runtime state is (see RunDir).
func BenchmarkCABundle(b *testing.B) {
	extra, err := os.ReadFile("/etc/ssl/certs/ca-certificates.crt")
	if err != nil {
		b.Skip("no host bundle")
	}
	dir, err := os.MkdirTemp("/dev/shm", "cabundle-")
	if err != nil {
		b.Skip("no /dev/shm")
	}
	defer os.RemoveAll(dir)
	for b.Loop() {
		files := filepath.Join(dir, "c")
		if err := os.Mkdir(files, 0o700); err != nil {
			b.Fatal(err)
		}
		if _, err := writeCABundle(files, "/", extra); err != nil {
			b.Fatal(err)
		}
		os.RemoveAll(files)
	}
}
