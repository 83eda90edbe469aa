package testenv

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// ImagesEnv names the directory of OCI image layouts scripts/testimages.sh
// builds (one image each, named by its layout's directory); `make test`
// and `make test-vm` set it.
const ImagesEnv = "JOBRUN_TEST_IMAGES"

// The test images a test names to Image.
const (
	// Busybox is busybox-static's applets, root's image.
	Busybox = "busybox:latest"
	// Debian is Debian's minbase root (as debian:bookworm-slim).
	Debian = "debian:bookworm"
	// DebianSudo is Debian's minbase root plus sudo, its image user
	// builder (1000:1000) with passwordless sudo, and /opt/test.deb
	// (package jobrun-test: /opt/jobrun-test and a file in it, owned by
	// builder) in a flat apt repository at /opt, the image's only apt
	// source (file:, trusted): `sudo dpkg -i /opt/test.deb`, and
	// `sudo apt-get update` (its file method runs as _apt) then `sudo
	// apt-get install jobrun-test`, all offline.
	DebianSudo = "debian-sudo:latest"
)

// Image skips t unless scripts/testimages.sh's images are there
// (ImagesEnv), and returns the reference of the test image name (as
// "debian-sudo:latest") that jobrun resolves: oci-layout:DIR/NAME:TAG.
// An image set without that image (built by an older script) fails t.
func Image(t testing.TB, name string) string {
	t.Helper()
	dir := RequireEnv(t, ImagesEnv, "test images built by scripts/testimages.sh")
	repo, _, ok := strings.Cut(name, ":")
	if !ok {
		t.Fatalf("test image %q: want NAME:TAG", name)
	}
	if _, err := os.Stat(filepath.Join(dir, repo, "index.json")); err != nil {
		t.Fatalf("test image %s: %v (rerun scripts/testimages.sh)", name, err)
	}
	return "oci-layout:" + filepath.Join(dir, name)
}
